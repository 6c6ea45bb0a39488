"""The slice plugin end to end through billing: its example agreement and a month of slice
records loaded, ingested and billed with ``icdsl cycle run``; the invoice carries its lines."""

from __future__ import annotations

import shutil

import pytest
from helpers import ROOT
from typer.testing import CliRunner

from icdsl import plugins
from icdsl.cli.main import app

EXAMPLES = ROOT / "plugins" / "icdsl-slices" / "examples"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES.parent / "src"))
    shutil.copytree(EXAMPLES, tmp_path / "rules")
    shutil.move(tmp_path / "rules" / "slice_usage.csv", tmp_path / "march.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICDSL_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("ICDSL_DATA", raising=False)
    plugins.reset_default_plugin_manager()
    yield tmp_path
    plugins.reset_default_plugin_manager()


def run(*args: str) -> str:
    res = CliRunner().invoke(app, ["--plugin", "icdsl_slices", *args])
    assert "Traceback" not in res.output, res.output
    return res.output


def test_slice_charges_on_the_invoice(env):
    run("load", "rules")
    run("ingest", "march.csv", "--rules", "rules")
    out = run("cycle", "run", "ORFR", "2026-03", "--rules", "rules")
    assert "ORFR 2026-03: invoiced" in out, out
    # 744.00 + 2,208.00 - 552.00 + 44.64, worked by hand in the plugin's README
    assert "subtotal 2444.64" in out, out
