"""How the terminal looks: SVG snapshots of the main screens at 80x24 and 120x40.

Update them after a deliberate change with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and look at the SVGs under ``tests/__snapshots__/test_tui_snapshots/`` before committing.
"""

import shutil

import pytest
from helpers import ROOT, wait_for
from tui_examples import reconciliation

from icdsl.tui.app import IcdslApp
from icdsl.tui.components.explanation import ExplanationView
from icdsl.tui.feeds import Feeds

SMALL, LARGE = (80, 24), (120, 40)


@pytest.fixture
def tutorial(tmp_path):
    # a fixed folder name: the navigation bar shows it
    shutil.copytree(ROOT / "examples" / "tutorial", tmp_path / "tutorial")
    return tmp_path / "tutorial"


async def settle(pilot, predicate, timeout: float = 30.0) -> None:
    """Wait for ``predicate`` (the state the snapshot shows), then for the app to go idle."""
    await wait_for(pilot, predicate, timeout)
    await pilot.pause()


def workspace(app, error: bool = False):
    async def run_before(pilot):
        await settle(pilot, lambda: app.analysis is not None)
        editor = app.workspace.editor
        editor.move_cursor((13, 22))
        if error:
            await pilot.press("x")  # calendar fr_businessx
            await settle(pilot, lambda: app.analysis.errors > 0)

    return run_before


def plan(app):
    async def run_before(pilot):
        await settle(pilot, lambda: app.analysis is not None)
        app.workspace.editor.move_cursor((17, 4))  # inside the agreement: marked in the plan
        await pilot.press("f3")
        await settle(pilot, lambda: app.current_mode == "plan")

    return run_before


def explain(app):
    async def run_before(pilot):
        await settle(pilot, lambda: app.analysis is not None)
        await pilot.press("f4")
        await settle(pilot, lambda: app.current_mode == "explain"
                     and app.screen.query_one(ExplanationView).explanation is not None)

    return run_before


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_workspace(snap_compare, tutorial, size):
    app = IcdslApp(tutorial, cursor_blink=False)
    assert snap_compare(app, terminal_size=size, run_before=workspace(app))


def test_workspace_with_a_problem(snap_compare, tutorial):
    app = IcdslApp(tutorial, cursor_blink=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=workspace(app, error=True))


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_plan(snap_compare, tutorial, size):
    app = IcdslApp(tutorial, cursor_blink=False)
    assert snap_compare(app, terminal_size=size, run_before=plan(app))


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_explain(snap_compare, tutorial, size):
    app = IcdslApp(tutorial, cursor_blink=False)
    assert snap_compare(app, terminal_size=size, run_before=explain(app))


# ---------------------------------------------------------------- the billing screens (80x24)


@pytest.fixture
def interconnect(tmp_path):
    shutil.copytree(ROOT / "examples" / "interconnect", tmp_path / "interconnect",
                    ignore=shutil.ignore_patterns("tools"))
    return tmp_path / "interconnect"


async def simulated(pilot, app, records: int = 2000) -> None:
    await settle(pilot, lambda: app.good is not None)
    await pilot.press("f5")
    await settle(pilot, lambda: app.current_mode == "simulate" and len(app.screen.chosen_partners()) == 2)
    app.screen.query_one("#sim-source").set_generated(records)
    await pilot.press("ctrl+g")
    await settle(pilot, lambda: app.simulation is not None)
    app.simulation.seconds = 1.0  # the time a run took: not part of the look
    app.view("simulate")._show(app.simulation)


def simulate_screen(app):
    async def run_before(pilot):
        await simulated(pilot, app)
        docs = app.screen.query_one("#sim-docs")
        docs.move_cursor(row=1)  # LUMFR's traffic invoice
        lines = app.screen.query_one("#sim-lines")
        await settle(pilot, lambda: lines.document is docs.entries[1][1])

    return run_before


def drill_screen(app):
    async def run_before(pilot):
        await simulated(pilot, app)
        screen = app.screen
        docs = screen.query_one("#sim-docs")
        docs.move_cursor(row=1)
        lines = screen.query_one("#sim-lines")
        await settle(pilot, lambda: lines.document is docs.entries[1][1])
        lines.focus()
        await settle(pilot, lambda: app.focused is lines)
        lines.move_cursor(row=2)
        await pilot.press("enter")
        await settle(pilot, lambda: app.current_mode == "drill")
        drill = app.screen
        await settle(pilot, lambda: drill.records is not None
                     and drill.query_one(ExplanationView).explanation is not None)

    return run_before


def whatif_screen(app, folder):
    async def run_before(pilot):
        await simulated(pilot, app)
        await app.workspace.open_file(folder / "lumiere.icd", 32)
        editor = app.workspace.editor
        line = editor.document.get_line(31)
        editor.replace("0.0009", (31, len(line) - 6), (31, len(line)))
        await pilot.press("f6")
        await settle(pilot, lambda: app.current_mode == "whatif")
        screen = app.screen
        await pilot.press("ctrl+g")
        await settle(pilot, lambda: screen.result is not None)
        screen.result.seconds = 0.5
        screen.show_result()
        await pilot.pause()

    return run_before


def dashboard_screen(app):
    async def run_before(pilot):
        await simulated(pilot, app)
        await pilot.press("f9")
        await settle(pilot, lambda: app.current_mode == "dashboard"
                     and "EUR revenue" in str(app.screen.query_one("#db-head").render()))

    return run_before


def recon_screen(app):
    async def run_before(pilot):
        await settle(pilot, lambda: app.good is not None)
        await pilot.press("f10")
        await settle(pilot, lambda: app.current_mode == "recon" and bool(app.screen._codes))
        screen = app.screen
        screen.query_one("#rc-partner").value = "LUMFR"
        await pilot.press("ctrl+g")
        await settle(pilot, lambda: screen.reconciliation is not None)
        lines = screen.query_one("#rc-lines")
        lines.move_cursor(row=0)
        await pilot.press("enter")
        await settle(pilot, lambda: screen.showing_records)

    return run_before


def test_simulate(snap_compare, interconnect):
    app = IcdslApp(interconnect, cursor_blink=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=simulate_screen(app))


def test_drill(snap_compare, interconnect):
    app = IcdslApp(interconnect, cursor_blink=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=drill_screen(app))


def test_whatif(snap_compare, interconnect):
    app = IcdslApp(interconnect, cursor_blink=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=whatif_screen(app, interconnect))


def test_recon(snap_compare, interconnect):
    rec = reconciliation()
    app = IcdslApp(interconnect, cursor_blink=False, feeds=Feeds(reconcile=lambda partner, period: rec))
    assert snap_compare(app, terminal_size=SMALL, run_before=recon_screen(app))


def test_dashboard(snap_compare, interconnect):
    app = IcdslApp(interconnect, cursor_blink=False)
    assert snap_compare(app, terminal_size=SMALL, run_before=dashboard_screen(app))
