"""The routing screen (F11): the LCR table of a day and the margins of a period, negative ones
first and in red, down to the records; on the interconnect example (Lumière and Brookline
terminate our calls; its March traffic is what we sold), at 80x24.

pytest-asyncio is not a dependency: each scenario runs with ``asyncio.run``.
"""

import asyncio
import contextlib
import shutil
from datetime import date

import pytest
from helpers import ROOT, wait_for
from tui_screen import row_of, screen_text

from icdsl.plan.compiler import build
from icdsl.rating.batch import rate_batch
from icdsl.rating.intake import read_records
from icdsl.routing.lcr import build_table, choose_policy, money_text
from icdsl.routing.margin import in_period, margins, sold
from icdsl.tui.app import IcdslApp
from icdsl.tui.routingview import lcr_rows, margin_rows, records_of, summary

SIZE = (80, 24)
EXAMPLE = ROOT / "examples" / "interconnect"


@pytest.fixture(scope="module")
def example():
    with contextlib.chdir(EXAMPLE):
        plan, _, diags = build(["."])
    assert plan is not None, [str(d) for d in diags]
    records, _, _ = read_records(EXAMPLE / "traffic.csv")
    rated, _ = rate_batch(plan, records)
    return plan, sold(rated, records)


# ---------------------------------------------------------------- headless


def test_the_lcr_lines_are_the_tables_ranked_lists(example):
    plan, _ = example
    table = build_table(plan, choose_policy(plan), date(2026, 3, 2))
    rows, total = lcr_rows(table)
    assert total == table.routes.select("prefix", "band").unique().height
    for r in rows[:50]:
        assert [(x.rank, x.supplier) for x in r.routes] == [
            (k, s) for k, s, _, _ in table.ranked(r.prefix, r.band)
        ]
    # ranked by cost per minute: the first supplier is never dearer than the next
    for r in rows:
        costs = [x.cost_per_minute_n for x in r.routes]
        assert costs == sorted(costs) or table.policy.prefer  # 'prefer LUMFR for 33' may put LUMFR first
    found, n = lcr_rows(table, "Canada")
    assert n and all(r.destination == "Canada" for r in found)
    assert found[0].ranked_text().startswith(found[0].routes[0].supplier + " ")


def test_margins_rows_negative_first_and_records_add_up(example):
    plan, records = example
    m = margins(plan, records, choose_policy(plan))
    rows = margin_rows(m, "destination")
    margin = [r["margin_n"] for r in rows]
    assert margin == sorted(margin) and margin[0] < 0
    assert sum(margin) == m.totals()["margin_n"]
    recs, total = records_of(m, "destination", rows[0]["destination"])
    assert total == rows[0]["records"] == len(recs)
    assert sum(r["margin_n"] for r in recs) == rows[0]["margin_n"]
    assert "destination(s) at a loss" in summary(m, "2026-03")


# ---------------------------------------------------------------- on screen


def test_the_routing_screen_shows_the_lcr_table_and_the_margins_at_80x24(tmp_path, example):
    plan, records = example
    folder = tmp_path / "interconnect"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("tools"))
    app = IcdslApp(folder)
    m = margins(plan, in_period(records, date(2026, 3, 1), date(2026, 3, 31)), choose_policy(plan))
    worst = margin_rows(m, "destination")[0]

    async def main():
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.good is not None)
            await pilot.press("f11")
            await wait_for(pilot, lambda: app.current_mode == "routing")
            screen = app.screen
            # no store, no simulation: the table, and where to get the records from
            await pilot.press("ctrl+g")
            await wait_for(pilot, lambda: screen.table is not None)
            await pilot.pause()
            assert "Margins need rated records" in screen_text(app)
            await pilot.press("n")
            await pilot.pause()
            assert "Margins: none" in screen_text(app)
            await pilot.press("n")
            screen.records_source = lambda first, last: records
            await pilot.press("ctrl+g")
            await wait_for(pilot, lambda: screen.table is not None and screen.margins is not None)
            await pilot.pause()
            text = screen_text(app)
            assert "LCR 2026-03-01 'outbound_voice'" in text
            row = row_of(app, "1201 ")
            assert "LUMFR" in row and "BRKGB" in row and ">" in row
            assert "destination(s) at a loss" in text
            # the margins, the worst destination first, its margin in red
            await pilot.press("n")
            await wait_for(pilot, lambda: screen.view_name == "margins")
            await pilot.pause()
            table = screen.query_one("#rt-margins")
            first = table.get_row_at(0)
            assert (str(first[0]), str(first[1])) == (worst["destination"], money_text(worst["margin_n"], 4))
            assert money_text(worst["margin_n"], 4) in row_of(app, money_text(worst["revenue_n"], 4))
            assert "red" in str(table.get_row_at(0)[1].style)
            # enter: its records, each with its supplier and how it was chosen
            table.focus()
            table.move_cursor(row=0)
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.view_name == "records")
            await pilot.pause()
            assert f"Records of destination {worst['destination']}: {worst['records']}" in screen_text(app)
            assert "lcr" in screen_text(app) or "record" in screen_text(app)
            await pilot.press("escape")
            await wait_for(pilot, lambda: screen.view_name == "margins")
            # group by supplier
            await pilot.press("g")
            await wait_for(pilot, lambda: screen.by == "supplier")
            await pilot.pause()
            assert "Margins 2026-03 by supplier" in screen_text(app)

    asyncio.run(main())
