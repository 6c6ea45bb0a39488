"""The reconciliation screen (F10): a partner's invoice against ours, line by line, then the
records of a line, theirs and ours, classed; built on icdsl.recon.model with a hand-made
reconciliation (tests/tui_examples.py), the engine being a feed.

pytest-asyncio is not a dependency: each scenario runs with ``asyncio.run``.
"""

import asyncio
import dataclasses
import shutil
from decimal import Decimal

import pytest
from helpers import ROOT, wait_for
from tui_examples import reconciliation
from tui_screen import row_of, screen_text

from icdsl.recon import model as R
from icdsl.tui.app import IcdslApp
from icdsl.tui.feeds import Feeds
from icdsl.tui.reconview import ordered_lines, records, summary, unplaced

SIZE = (80, 24)


@pytest.fixture
def interconnect(tmp_path):
    shutil.copytree(ROOT / "examples" / "interconnect", tmp_path / "interconnect",
                    ignore=shutil.ignore_patterns("tools"))
    return tmp_path / "interconnect"


def run(app: IcdslApp, scenario) -> None:
    async def main():
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.good is not None)
            await scenario(pilot)

    asyncio.run(main())


# ---------------------------------------------------------------- headless


def test_lines_differing_first_and_the_records_of_a_line_classed():
    rec = reconciliation()
    lines = ordered_lines(rec)
    assert [c.status for c in lines] == [R.LINE_DIFFERS, R.LINE_ONLY_THEIRS, R.LINE_ONLY_OURS, R.LINE_MATCHED]
    assert [c.destination for c in ordered_lines(rec, only_differing=True)] == [
        "Arcadia mobile", "Boreal fixed", "Arcadia"]
    mobile = lines[0]
    rows, total = records(rec, mobile)
    assert total == 5  # the records on our line 12, of both sides
    assert [r.cls for r in rows] == [R.DIFFERS_DURATION, R.DIFFERS_RATE, R.ONLY_THEIRS, R.ONLY_OURS, R.MATCHED]
    dur = rows[0]
    assert (dur.their_id, dur.our_id, dur.duration_difference, dur.start_difference) == ("T2", "O2", 7, 1.0)
    assert dur.amount_difference == Decimal("0.07")
    assert rows[2].our_id is None and rows[2].amount_difference == Decimal("3.0")
    assert rows[3].their_id is None and rows[3].amount_difference == Decimal("-0.42")
    assert records(rec, mobile, only_differing=True)[1] == 4
    # a line only they billed has no line of ours: its records are among all of them
    assert records(rec, lines[1]) == ([], 0)
    every, n = records(rec)
    assert n == 7 and unplaced(rec) == 1 and any(r.their_id == "T7" and r.line is None for r in every)
    # without detail: lines only
    bare = dataclasses.replace(rec, records=None, record_counts={})
    assert records(bare, mobile) == ([], 0)
    assert "no record detail" in summary(bare)


def test_the_summary_says_totals_tolerances_and_classes():
    text = summary(reconciliation())
    assert "LUMFR LUM-2026-0042 2026-03: theirs 2,450.71 · ours 2,401.14 · difference +49.57 EUR" in text
    assert "3/4 lines outside the tolerances (0.5 % or 1.00 EUR a line; start ±2 s, duration ±1 s)" in text
    assert "49.66 EUR disputable" in text
    assert "records: matched 2, ≠ duration 1, ≠ rate 1, only theirs 2, only ours 1" in text


# ---------------------------------------------------------------- on screen


def test_reconciling_walks_the_lines_down_to_the_records(interconnect):
    rec = reconciliation()
    asked = []

    def reconcile(partner, period):
        asked.append((partner, period))
        return rec

    app = IcdslApp(interconnect, feeds=Feeds(reconcile=reconcile))

    async def scenario(pilot):
        await pilot.press("f10")
        await wait_for(pilot, lambda: app.current_mode == "recon")
        screen = app.screen
        await wait_for(pilot, lambda: bool(screen._codes))
        screen.query_one("#rc-partner").value = "LUMFR"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: screen.reconciliation is rec)
        await pilot.pause()
        assert asked == [("LUMFR", "2026-03")]
        # the lines: status, both sides, the difference and the calls, on screen at 80 columns (the
        # currency in the title)
        row = row_of(app, "Arcadia mobile").strip("│ ").split()
        assert row[:4] == ["differs", "voice", "Arcadia", "mobile"]
        assert row[4:8] == ["+37.26", "1,234.56", "1,197.30", "52/50"]  # their calls / ours
        assert "(theirs vs ours, EUR)" in screen_text(app)
        assert str(screen.query_one("#rc-lines").get_row_at(0)[6]) == "52/50"
        assert row_of(app, "Boreal fixed").split()[1:3] == ["only", "theirs"]
        assert "0.00" in row_of(app, "Arcadia fixed")
        # enter: the records of the line, classed, both sides
        lines = screen.query_one("#rc-lines")
        lines.focus()
        lines.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.showing_records)
        await pilot.pause()
        assert "Records of voice Arcadia mobile: 5 record(s)" in screen_text(app)
        # class, difference, both ids, durations and both gaps on screen at 80 columns
        first = row_of(app, "+0.070000").strip("│ ").split()
        assert first[:10] == ["≠", "duration", "+0.070000", "T2", "O2", "125/118", "+7", "s", "+1", "s"]
        assert row_of(app, "+0.300000").split()[1:3] == ["≠", "rate"]
        assert "only theirs" in row_of(app, "+3.000000") and "only ours" in row_of(app, "-0.420000")
        # only the differences, then back to the lines
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: screen.query_one("#rc-records").row_count == 4)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.showing_records)
        assert screen.query_one("#rc-lines").row_count == 3  # still only the differing lines
        # every record of the invoice, the one on no line of ours included
        await pilot.press("a")
        await wait_for(pilot, lambda: screen.showing_records and screen.line is None)
        assert screen.query_one("#rc-records").row_count == 5  # differing ones: ctrl+o still on
        table = screen.query_one("#rc-records")
        assert "T7" in {str(table.get_row_at(i)[2]) for i in range(table.row_count)}  # their id

    run(app, scenario)


def test_without_an_engine_the_screen_says_what_is_missing(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await pilot.press("f10")
        await wait_for(pilot, lambda: app.current_mode == "recon")
        assert "Choose a partner and a period" in screen_text(app)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "icdsl tui FOLDER --db URL" in str(app.screen.query_one("#rc-summary").render()))

    run(app, scenario)


def test_an_engine_error_is_said_not_raised(interconnect):
    def reconcile(partner, period):
        raise ValueError(f"no invoice of {partner} imported for {period}: icdsl partner-invoice import FILE")

    app = IcdslApp(interconnect, feeds=Feeds(reconcile=reconcile))

    async def scenario(pilot):
        await pilot.press("f10")
        await wait_for(pilot, lambda: app.current_mode == "recon" and bool(app.screen._codes))
        app.screen.query_one("#rc-partner").value = "BRKGB"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "no invoice of BRKGB" in str(app.screen.query_one("#rc-summary").render()))
        assert "Cannot reconcile BRKGB 2026-03: no invoice of BRKGB imported for 2026-03" in str(
            app.screen.query_one("#rc-summary").render())

    run(app, scenario)
