"""What an analyst sees in an 80x24 terminal (Pilot at size (80, 24)), asserted on the drawn
screen, without scrolling: the editor's width and its problems (root cause first, several),
the amounts and the status of the simulation's tables, a statement's payable in its own column,
the currency of every what-if row, and the dashboard's one chart per currency with exact amounts.

pytest-asyncio is not a dependency: each scenario runs with ``asyncio.run``.
"""

import asyncio
import shutil
from decimal import Decimal

import pytest
from helpers import ROOT, wait_for
from tui_screen import column_of, row_of, screen_lines, screen_text

from icdsl.tui.app import IcdslApp
from icdsl.tui.components.documents import DocumentsTable, LinesTable, money
from icdsl.tui.components.problems import ProblemsList
from icdsl.tui.project import Project
from icdsl.tui.revenue import breakdown, totals

SIZE = (80, 24)
CALENDAR_LINE = 19  # lumiere.icd: `  calendar fr_business` (the deck's banded prices follow it)


@pytest.fixture
def interconnect(tmp_path):
    shutil.copytree(ROOT / "examples" / "interconnect", tmp_path / "interconnect",
                    ignore=shutil.ignore_patterns("tools"))
    return tmp_path / "interconnect"


def run(app: IcdslApp, scenario) -> None:
    async def main():
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.analysis is not None)
            await scenario(pilot)

    asyncio.run(main())


async def simulated(pilot, app: IcdslApp, records: int = 2000) -> None:
    await wait_for(pilot, lambda: app.good is not None)
    await pilot.press("f5")
    await wait_for(pilot, lambda: app.current_mode == "simulate" and len(app.screen.chosen_partners()) == 2)
    app.screen.query_one("#sim-source").set_generated(records)
    await pilot.press("ctrl+g")
    await wait_for(pilot, lambda: app.simulation is not None, timeout=120)
    await pilot.pause()


# ---------------------------------------------------------------- the editor


def test_the_editor_has_the_width_and_the_file_tree_comes_on_ctrl_t(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await app.workspace.open_file(interconnect / "brookline.icd", 1)
        await pilot.pause()
        # line 1 of brookline.icd is a 78-character comment: 72 of its characters show (53 before)
        first = (interconnect / "brookline.icd").read_text().splitlines()[0]
        line = row_of(app, "# Wholesale voice exchange")
        shown = line[column_of(line, "# Wholesale"):].rstrip("│ ▆▄▂")
        assert len(shown) >= 70 and first.startswith(shown.rstrip())
        assert "Rules (" not in screen_text(app)  # no file tree beside it at 80 columns
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: app.focused is app.workspace.query_one("FileTree"))
        assert "Rules (" in screen_text(app)
        tree = app.workspace.query_one("FileTree")
        target = (interconnect / "lumiere.icd")
        for _ in range(12):  # down the tree to lumiere.icd
            node = tree.cursor_node
            if node is not None and node.data is not None and node.data.resolve() == target.resolve():
                break
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.workspace.current == (interconnect / "lumiere.icd").resolve())
        await wait_for(pilot, lambda: "Rules (" not in screen_text(app))  # hidden again once a file is open

    run(app, scenario)


def test_the_root_cause_comes_first_and_several_problems_show(interconnect):
    app = IcdslApp(interconnect)
    lumiere = interconnect / "lumiere.icd"
    assert lumiere.read_text().splitlines()[CALENDAR_LINE - 1].strip() == "calendar fr_business"

    async def scenario(pilot):
        await app.workspace.open_file(lumiere, CALENDAR_LINE)
        editor = app.workspace.editor
        for line in (66, CALENDAR_LINE):  # both agreements' calendars: fr_businessx
            assert editor.document.get_line(line - 1) == "  calendar fr_business"
            editor.insert("x", (line - 1, len("  calendar fr_business")))
        await wait_for(pilot, lambda: app.analysis is not None and app.analysis.errors >= 3 and not app.checking)
        codes = [p.diag.code for p in app.analysis.problems]
        # the unknown calendar is the cause; the deck's "prices per band but no calendar" follows
        # from it (and "decks/..." sorts before "lumiere.icd": source order would show it first)
        assert codes[0] == "E111" and "E308" in codes and codes.index("E308") > codes.index("E111")
        await pilot.pause()
        lines = screen_lines(app)
        shown = [i for i, line in enumerate(lines) if any(f"{p.diag.code} {p.where}" in line
                                                         for p in app.analysis.problems)]
        assert len(shown) >= 3  # several at once: the two causes and the follow-on (a warning below)
        assert "E111 lumiere.icd:19:12 unknown calendar 'fr_businessx'" in lines[shown[0]]
        assert "did you mean 'fr_business'?" in screen_text(app)
        problems = app.workspace.query_one(ProblemsList)
        assert problems.highlighted == 0

    run(app, scenario)


def test_problems_are_ordered_root_cause_first_headless(interconnect):
    lumiere = (interconnect / "lumiere.icd").resolve()
    text = lumiere.read_text().replace("calendar fr_business\n", "calendar fr_businessx\n")
    a = Project(interconnect).analyse({lumiere: text})
    assert [p.diag.code for p in a.problems][:3] == ["E111", "E111", "E308"]
    # a syntax error anywhere comes before everything else
    broken = text.replace('use "partners.icd"', 'use "partners.icd" %', 1)
    b = Project(interconnect).analyse({lumiere: broken})
    assert b.problems[0].diag.code.startswith("E0")


# ---------------------------------------------------------------- simulate, what-if, dashboard


def test_at_80x24_amounts_status_payable_and_currencies_are_on_screen(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await simulated(pilot, app)
        screen = app.screen
        docs = screen.query_one(DocumentsTable)
        header = row_of(app, " document  partner")
        for name in ("status", "ccy", "total / net", "payable"):
            assert name in header  # visible without pressing Right
        # a statement's payable is under "payable", not under "subtotal"
        i = next(i for i, (_, d) in enumerate(docs.entries) if d and d["kind"] == "statement")
        stm = docs.entries[i][1]
        row = row_of(app, docs.get_row_at(i)[0])
        payable = money(stm["payable"])
        end = column_of(row, payable) + len(payable)
        assert abs(end - (column_of(header, "payable") + len("payable"))) <= 1  # right-aligned in its column
        assert column_of(row, money(stm["net"])) < column_of(header, "payable")
        assert "draft" in row  # the status
        docs.move_cursor(row=i)
        await wait_for(pilot, lambda: screen.query_one(LinesTable).document is stm)
        await pilot.pause()
        assert f"receivable {money(stm['receivable'])} - payable {payable} = net" in screen_text(app)
        # an invoice's lines: the amount is the second column, on screen
        docs.move_cursor(row=0)
        lines = screen.query_one(LinesTable)
        await wait_for(pilot, lambda: lines.document is docs.entries[0][1])
        first = lines.document["lines"][0]
        lines_header = row_of(app, "#   ")
        assert column_of(lines_header, "amount") < 15
        assert money(first["amount"]) in row_of(app, first["kind"])

        # what-if: every row says its currency, changed or not
        await app.workspace.open_file(interconnect / "lumiere.icd", 32)
        editor = app.workspace.editor
        line = editor.document.get_line(31)  # `33  "Arcadia fixed"  0.0007`
        editor.replace("0.0009", (31, len(line) - 6), (31, len(line)))
        await pilot.press("f6")
        await wait_for(pilot, lambda: app.current_mode == "whatif")
        wi = app.screen
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: wi.result is not None, timeout=120)
        await pilot.pause()
        table = wi.query_one("#wi-table")
        header = row_of(app, "ccy  B - A")
        assert "partner" in header
        unchanged = [table.get_row_at(r) for r in range(table.row_count) if str(table.get_row_at(r)[3]) == "0.00"]
        assert unchanged, "some partner's revenue or cost does not change"
        for r in range(min(table.row_count, 5)):
            cells = [str(c) for c in table.get_row_at(r)]
            assert cells[2] in ("EUR", "GBP")
            shown = [line for line in screen_lines(app) if f" {cells[0]} " in line and f" {cells[1]} " in line]
            assert any(f" {cells[2]} " in line and cells[3] in line for line in shown), cells  # on screen

        # dashboard: one chart per currency, exact amounts with their currency
        await pilot.press("f9")
        await wait_for(pilot, lambda: app.current_mode == "dashboard")
        db = app.screen
        await wait_for(pilot, lambda: db.shown_currency is not None)
        title = db.query_one("#db-chart-box").border_title
        first_ccy = db.shown_currency
        other = ({"EUR", "GBP"} - {first_ccy}).pop()
        assert title.startswith(f"{first_ccy}: revenue and cost") and f"c: {other}" in title
        text = screen_text(app)
        for ccy, t in totals(app.simulation).items():
            assert f"{ccy} revenue {money(t.revenue)} · cost {money(t.cost)} · net {money(t.net)}" in text.replace(
                "\n ", " ")
        await pilot.press("c")
        await wait_for(pilot, lambda: db.shown_currency == other)
        numbers = db.query_one("#db-numbers")
        for b in breakdown(app.simulation, "partner"):
            rows = [line for line in screen_lines(app) if f" {b.label} " in line and f" {b.currency} " in line]
            assert any(money(b.revenue) in row and money(b.cost) in row and money(b.net).lstrip("-") in row
                       for row in rows), (b, rows)
            assert Decimal(money(b.revenue).replace(",", "")) == b.revenue  # every digit
        assert numbers.row_count == 2

    run(app, scenario)
