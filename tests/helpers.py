import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = bool(os.environ.get("ICDSL_UPDATE_GOLDEN"))


def compare_golden(path: Path, actual: str) -> None:
    """Assert ``actual`` equals the golden file; ICDSL_UPDATE_GOLDEN=1 rewrites it."""
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"missing golden file {path}; run with ICDSL_UPDATE_GOLDEN=1 to create it")
        path.write_text(actual, encoding="utf-8")
        return
    assert actual == path.read_text(encoding="utf-8")


async def wait_for(pilot, predicate, timeout: float = 30.0) -> None:
    """Let a Textual app (driven by ``pilot``) run until ``predicate()`` holds, polling.

    A key press returns once the app has taken the key, not once every message it caused has
    been handled: an action's effect (a focus change, a screen switch, a worker's result) can
    come later on a loaded machine. Assert on a state only after waiting for it here; a fixed
    pause only makes the race rarer. Raises AssertionError after ``timeout`` seconds."""
    import asyncio  # only the TUI tests are asynchronous

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for the app: {predicate.__code__.co_filename}:"
                                 f"{predicate.__code__.co_firstlineno}")
        await pilot.pause(0.02)
