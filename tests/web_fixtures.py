"""Fixtures of the portal's tests (tests/test_web_*.py), imported by name: the demo's month billed
once per test session into a SQLite store (four partners, finalized invoices and statements,
their traffic), shared by the portal, API-fuzzing and browser tests; each opens its own users."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from icdsl.demo import run_demo

DEMO_RECORDS = 600  # enough for every cycle to pass validation; the fewest that keep the tests fast


def bill_demo(folder: Path, db: str | None = None) -> None:
    assert run_demo(folder, records=DEMO_RECORDS, db=db, console=Console(file=io.StringIO()), formats=()) == 0


_BUILT: list[Path] = []


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory) -> Path:
    """The demo's folder: icdsl.db (SQLite) and icdsl-data/. Built once per session: each module
    that imports this fixture gets its own copy of it, so the folder is kept here."""
    if not _BUILT:
        folder = tmp_path_factory.mktemp("portal-demo")
        bill_demo(folder)
        _BUILT.append(folder)
    return _BUILT[0]
