"""The terminal's billing screens (simulate, what-if, drill-down, dashboard), driven by Pilot on
a copy of examples/interconnect with small generated traffic, and their headless modules.

pytest-asyncio is not a dependency: each scenario runs with ``asyncio.run``.
"""

import asyncio
import shutil
from decimal import Decimal

import pytest
from helpers import ROOT, wait_for

from icdsl.tui.app import IcdslApp
from icdsl.tui.components.documents import DocumentsTable, LinesTable
from icdsl.tui.components.explanation import ExplanationView
from icdsl.tui.components.help_screen import help_table
from icdsl.tui.components.source_picker import parse_records
from icdsl.tui.components.traffic_table import TrafficGrid
from icdsl.tui.messages import OpenLocation
from icdsl.tui.project import Location, Project
from icdsl.tui.revenue import breakdown, totals
from icdsl.tui.simulate import SimulationRequest, simulate
from icdsl.tui.traffic_source import TrafficSource, generate_table, parse_mix, prepare_traffic
from icdsl.tui.whatif import Versions, compare

SIZE = (80, 24)
RECORDS = 3000
RATE_LINE = 32  # lumiere.icd: `33  "Arcadia fixed"  0.0007` (inbound voice, our termination rate)


@pytest.fixture
def interconnect(tmp_path):
    shutil.copytree(ROOT / "examples" / "interconnect", tmp_path / "interconnect",
                    ignore=shutil.ignore_patterns("tools"))
    return tmp_path / "interconnect"


def run(app: IcdslApp, scenario, size=SIZE) -> None:
    async def main():
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: app.good is not None)
            await scenario(pilot)

    asyncio.run(main())


async def simulated(pilot, app: IcdslApp, records: int = RECORDS) -> None:
    await pilot.press("f5")
    await wait_for(pilot, lambda: app.current_mode == "simulate" and len(app.screen.chosen_partners()) == 2)
    app.screen.query_one("#sim-source").set_generated(records)
    await pilot.press("ctrl+g")
    await wait_for(pilot, lambda: app.simulation is not None)
    await pilot.pause()


def status(app: IcdslApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


# ---------------------------------------------------------------- simulate


def test_running_a_cycle_produces_invoices_statements_and_their_lines(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await simulated(pilot, app)
        sim = app.simulation
        assert sim.records == RECORDS
        assert [r.partner for r in sim.runs] == ["LUMFR", "BRKGB"]
        assert all(r.error is None and r.report.status == "invoiced" for r in sim.runs)
        # the store is a temporary one, never the analyst's icdsl.db
        assert sim.workdir.is_relative_to(app.scratch)
        assert not (interconnect / "icdsl.db").exists()
        docs = app.screen.query_one(DocumentsTable)
        kinds = {d["kind"] for _, d in docs.entries if d}
        assert {"invoice", "statement"} <= kinds
        assert docs.row_count == sum(len(r.documents) for r in sim.runs)
        # every line of the selected document, whatever its kind
        docs.focus()
        for i, (_, d) in enumerate(docs.entries):
            if d and d["kind"] == "invoice" and d["stream"] == "traffic":
                docs.move_cursor(row=i)
                break
        await pilot.pause()
        lines = app.screen.query_one(LinesTable)
        assert lines.document is not None and lines.row_count == len(lines.document["lines"]) > 0
        assert "documents" in status(app, "#sim-status")
        assert "records" in status(app, "#sim-status")

    run(app, scenario)


def test_cancel_stops_the_simulation_and_keeps_nothing(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.current_mode == "simulate" and len(app.screen.chosen_partners()) == 2)
        app.screen.query_one("#sim-source").set_generated("200k")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: app.screen.running)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.screen.running)
        assert app.simulation is None
        assert "Cancelled" in status(app, "#sim-status")
        # the terminal carries on: a small run afterwards works
        app.screen.query_one("#sim-source").set_generated(1000)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: app.simulation is not None)

    run(app, scenario)


def test_a_simulation_with_rule_errors_says_so_and_partners_can_be_left_out(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.current_mode == "simulate" and len(app.screen.chosen_partners()) == 2)
        app.screen.set_partners(set())
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: any("at least one partner" in str(n.message) for n in app._notifications))
        assert not app.screen.running  # nobody chosen: refused at once, with a notice
        app.screen.set_partners({"BRKGB"})
        app.screen.query_one("#sim-source").set_generated(1000, "voice=1")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: app.simulation is not None)
        assert [r.partner for r in app.simulation.runs] == ["BRKGB"]

    run(app, scenario)


# ---------------------------------------------------------------- drill-down


def test_drill_down_reaches_the_records_of_a_line_their_explanation_and_the_rule(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await simulated(pilot, app)
        docs = app.screen.query_one(DocumentsTable)
        index = next(i for i, (p, d) in enumerate(docs.entries)
                     if p == "LUMFR" and d and d["kind"] == "invoice" and d["stream"] == "traffic")
        docs.focus()
        docs.move_cursor(row=index)
        lines = app.screen.query_one(LinesTable)
        await wait_for(pilot, lambda: lines.document is docs.entries[index][1])
        row = next(i for i, ln in enumerate(lines.document["lines"])
                   if ln["kind"] == "traffic" and "Arcadia fixed" in ln["description"])
        lines.focus()
        await wait_for(pilot, lambda: app.focused is lines)
        lines.move_cursor(row=row)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "drill")
        drill = app.screen
        await wait_for(pilot, lambda: drill.records is not None)
        line = lines.document["lines"][row]
        assert drill.records.total == line["record_count"] > 0
        grid = drill.query_one(TrafficGrid)
        assert grid.row_count == min(drill.records.total, 500)
        view = drill.query_one(ExplanationView)
        await wait_for(pilot, lambda: view.explanation is not None)
        first = grid.selected
        assert first.record is not None and view.explanation.ok
        assert view.explanation.outcome.startswith(f"=> {first.values['amount']}")
        # another record
        await pilot.press("down")
        await wait_for(pilot, lambda: view.explanation is not None and view.explanation.row == 2)
        # o: the record's rule in the editor
        await pilot.press("o")
        await wait_for(pilot, lambda: app.current_mode == "workspace")
        editor = app.workspace.editor
        assert editor.path == (interconnect / "lumiere.icd").resolve()
        assert editor.cursor_location[0] + 1 == RATE_LINE
        # x: the same records in the Explain screen, rated with the simulation's rules
        await pilot.press("f7")
        await wait_for(pilot, lambda: app.current_mode == "drill")
        await pilot.press("x")
        await wait_for(pilot, lambda: app.current_mode == "explain")
        ex = app.screen
        await wait_for(pilot, lambda: ex.query_one(ExplanationView).explanation is not None)
        assert ex.query_one(TrafficGrid).cursor_row == 1
        assert ex.query_one("#ex-records").border_title.startswith("Records: line")

    run(app, scenario)


def test_a_draft_is_labelled_with_the_prefix_of_the_series_it_will_be_numbered_in():
    from icdsl.billing.cycles import DOCUMENT_SERIES
    from icdsl.tui.drill import PREFIXES, document_label

    assert {k: p for k, (_counter, p) in DOCUMENT_SERIES.items()} == {k: PREFIXES[k] for k in DOCUMENT_SERIES}
    assert document_label({"kind": "credit_note", "id": 7, "number": None}) == "draft CN #7"
    assert document_label({"kind": "debit_note", "id": 8, "number": None}) == "draft DN #8"
    assert document_label({"kind": "credit_note", "id": 7, "number": "CN-2026-000003"}) == "CN-2026-000003"


def test_drill_down_without_a_simulation_explains_what_to_do(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await pilot.press("f7")
        await wait_for(pilot, lambda: app.current_mode == "drill" and "run a simulation" in status(app, "#dr-line"))
        await pilot.press("o")  # nothing to open: a notice, no crash
        await pilot.press("x")
        await pilot.pause()
        assert app.current_mode == "drill"

    run(app, scenario)


# ---------------------------------------------------------------- what-if


def test_what_if_shows_the_difference_after_editing_a_rate(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await simulated(pilot, app, 2000)
        await app.on_open_location(OpenLocation(Location(interconnect / "lumiere.icd", RATE_LINE)))
        await wait_for(pilot, lambda: app.current_mode == "workspace")
        editor = app.workspace.editor
        await wait_for(pilot, lambda: app.focused is editor)
        assert editor.document.get_line(RATE_LINE - 1).rstrip().endswith("0.0007")
        editor.move_cursor((RATE_LINE - 1, len(editor.document.get_line(RATE_LINE - 1))))
        await pilot.press("backspace", "9")  # 0.0007 -> 0.0009 EUR
        await wait_for(pilot, lambda: app.analysis is not None and not app.checking)
        await pilot.press("f6")
        await wait_for(pilot, lambda: app.current_mode == "whatif")
        screen = app.screen
        assert screen.query_one("#wi-source").kind == "last"  # the last simulation's traffic
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: screen.result is not None)
        r = screen.result
        assert r.changed and r.labels == ("saved files", "editor buffers")
        assert r.records == app.simulation.records - sum(i.rejected for i in app.simulation.intake)
        rows = {(x.value("partner"), x.value("service"), x.value("destination")): x for x in r.by(
            ("partner", "service", "destination"))}
        fixed = rows[("LUMFR", "voice", "Arcadia fixed")]
        assert fixed.value("direction") == "inbound"
        assert fixed.a.count == fixed.b.count > 0
        # 0.0007 -> 0.0009 EUR: +2/7 of the amount (each record rounded to 6 decimals)
        assert fixed.diff > 0
        assert abs(fixed.b.amount * 7 - fixed.a.amount * 9) <= Decimal("0.000005") * 16 * fixed.a.count
        assert all(x.diff == 0 for k, x in rows.items() if k != ("LUMFR", "voice", "Arcadia fixed"))
        table = screen.query_one("#wi-table")
        assert table.row_count == len(r.by(("partner", "side")))
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: "service" in screen.query_one("#wi-table-box").border_title)
        assert "revenue EUR" in str(screen.query_one("#wi-summary").render())

    run(app, scenario)


def test_what_if_compares_two_files_over_generated_traffic(interconnect):
    v2 = interconnect / "lumiere-v2.icd"
    text = (interconnect / "lumiere.icd").read_text(encoding="utf-8")
    v2.write_text(text.replace('"Arcadia mobile" 0.0020', '"Arcadia mobile" 0.0010'), encoding="utf-8")
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await wait_for(pilot, lambda: app.analysis is not None)
        assert app.analysis.errors  # both versions in the folder: the folder alone does not check
        await pilot.press("f6")
        await wait_for(pilot, lambda: app.current_mode == "whatif")
        screen = app.screen
        screen.query_one("#wi-mode").value = "files"
        screen.query_one("#wi-old").value = str(interconnect / "lumiere.icd")
        screen.query_one("#wi-new").value = str(v2)
        screen.query_one("#wi-source").set_generated(RECORDS)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: screen.result is not None)
        r = screen.result
        assert r.labels == ("lumiere.icd", "lumiere-v2.icd in its place")
        mobile = [x for x in r.rows if x.value("destination") == "Arcadia mobile" and x.value("partner") == "LUMFR"]
        assert mobile and all(x.diff < 0 for x in mobile)

    async def main():
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    asyncio.run(main())


FEE_LINE = 45  # brookline.icd: `recurring "10G port" 750.00 GBP monthly per inventory port_10g, ...`
# March 2026, a first cycle, in advance: P10G-LON-01 March and April in full; P10G-LON-02 (from
# 16 March) 16/31 of March, then April. At 800.00 instead of 750.00 GBP:
#   800 + 800 + 412.90 (800 x 16/31 = 412.903...) + 800 = 2,812.90
#   750 + 750 + 387.10 (750 x 16/31 = 387.096...) + 750 = 2,637.10; the difference: 175.80 GBP
PORT_FEE = "10G port (recurring)"


def test_what_if_shows_the_difference_of_an_edited_recurring_fee_on_that_charge(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await app.workspace.open_file(interconnect / "brookline.icd", FEE_LINE)
        editor = app.workspace.editor
        line = editor.document.get_line(FEE_LINE - 1)
        col = line.index("750.00 GBP")
        editor.replace("800", (FEE_LINE - 1, col), (FEE_LINE - 1, col + 3))  # 750.00 -> 800.00 GBP
        assert editor.document.get_line(FEE_LINE - 1).strip().startswith('recurring "10G port" 800.00 GBP')
        await wait_for(pilot, lambda: app.analysis is not None and not app.checking)
        await pilot.press("f6")
        await wait_for(pilot, lambda: app.current_mode == "whatif")
        screen = app.screen
        assert screen.query_one("#wi-period").value == "2026-03"
        screen.query_one("#wi-source").set_generated(1000)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: screen.result is not None)
        r = screen.result
        assert r.period == "2026-03" and r.changed and not r.notes
        by_charge = {(x.value("partner"), x.value("side"), x.value("charge"), x.value("currency")): x
                     for x in r.by(("partner", "side", "charge"))}
        fee = by_charge[("BRKGB", "revenue", PORT_FEE, "GBP")]
        assert (fee.a.amount, fee.b.amount, fee.diff) == (Decimal("2637.10"), Decimal("2812.90"), Decimal("175.80"))
        assert fee.a.lines == fee.b.lines == 4 and fee.a.count == 0
        assert all(x.diff == 0 for k, x in by_charge.items() if k[2] != PORT_FEE)
        # the other cycle-level charges are there, the same in A and B
        assert ("BRKGB", "revenue", "Monthly inbound commitment (commitment)", "EUR") in by_charge
        assert ("LUMFR", "revenue", "SIP trunk (recurring)", "EUR") in by_charge
        assert r.totals()[("revenue", "GBP")] == (Decimal("2637.10"), Decimal("2812.90"))
        # on screen: grouped by charge, the largest change first
        for _ in range(5):  # ctrl+o steps through the groupings
            if "by charge" in screen.query_one("#wi-table-box").border_title:
                break
            before = screen.query_one("#wi-table-box").border_title
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda before=before: screen.query_one("#wi-table-box").border_title != before)
        assert "by charge" in screen.query_one("#wi-table-box").border_title
        table = screen.query_one("#wi-table")
        first = [str(c) for c in table.get_row_at(0)]
        # the short keys, the currency, the amounts, then the charge (a long key) last
        assert first[:6] == ["BRKGB", "revenue", "GBP", "+175.80", "2,637.10", "2,812.90"]
        assert first[-1] == PORT_FEE
        assert "revenue GBP  2,637.10 → 2,812.90  +175.80" in str(screen.query_one("#wi-summary").render())
        assert "2026-03 charges" in status(app, "#wi-status")

    async def main():
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.good is not None)
            await scenario(pilot)

    asyncio.run(main())


def test_what_if_cycle_charges_to_the_cent_and_as_the_simulated_cycle_bills_them(interconnect, tmp_path):
    project = Project(interconnect)
    brookline = interconnect / "brookline.icd"
    saved = brookline.read_text(encoding="utf-8")
    edited = saved.replace('"10G port" 750.00 GBP', '"10G port" 800.00 GBP').replace(
        '"Monthly inbound commitment" 3_000 EUR', '"Monthly inbound commitment" 3_500 EUR')
    assert edited.count("800.00 GBP") == 1 and edited.count("3_500 EUR") == 1
    sim = simulate(project, SimulationRequest(("LUMFR", "BRKGB"), "2026-03", TrafficSource(records=2000)), {},
                   tmp_path)
    try:
        w = compare(project, Versions(), {brookline: edited}, sim.traffic, ["LUMFR", "BRKGB"], period="2026-03")
        assert w.period == "2026-03" and w.outside == 0 and w.notes == []
        rows = {(x.value("partner"), x.value("charge"), x.value("currency")): x for x in w.by(("partner", "charge"))}
        fee = rows[("BRKGB", PORT_FEE, "GBP")]
        assert (fee.a.amount, fee.b.amount, fee.diff) == (Decimal("2637.10"), Decimal("2812.90"), Decimal("175.80"))
        # the shortfall: the commitment less the inbound voice traffic (exact sum), rounded once
        voice = sum(x.a.amount for x in w.rows if x.key[:4] == ("BRKGB", "revenue", "inbound", "voice")
                    and x.value("charge") == "traffic" and x.value("currency") == "EUR")
        commit = rows[("BRKGB", "Monthly inbound commitment (commitment)", "EUR")]
        assert commit.a.amount == (Decimal(3000) - voice).quantize(Decimal("0.01"))
        assert commit.diff == Decimal("500.00")
        changed = {k for k, x in rows.items() if x.diff != 0}
        assert changed == {("BRKGB", PORT_FEE, "GBP"), ("BRKGB", "Monthly inbound commitment (commitment)", "EUR")}
        # version A's cycle-level charges are what the simulated cycle billed, line for line
        billed: dict[tuple[str, str, str], Decimal] = {}
        for run in sim.runs:
            for d in run.documents:
                for ln in d["lines"]:
                    if ln["kind"] in ("traffic", "surcharge"):  # the batch executor's
                        continue
                    name = ln["description"].split(":")[0]
                    k = (run.partner, name, ln["source_currency"] or ln["currency"])
                    billed[k] = billed.get(k, Decimal(0)) + Decimal(str(ln["source_amount"]))
        ours = {(p, c.rsplit(" (", 1)[0], cur): x.a.amount for (p, c, cur), x in rows.items()
                if x.a.lines and x.a.amount}
        assert billed and ours == billed
    finally:
        sim.close()


# ---------------------------------------------------------------- dashboard, keys


def test_dashboard_charts_revenue_and_cost_and_lists_the_findings(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        await pilot.press("f9")
        await wait_for(pilot, lambda: app.current_mode == "dashboard")
        assert "Nothing to show yet" in status(app, "#db-head")
        await simulated(pilot, app)
        await pilot.press("f9")
        await wait_for(pilot, lambda: app.current_mode == "dashboard" and "EUR revenue" in status(app, "#db-head"))
        screen = app.screen
        head = status(app, "#db-head")
        assert "EUR revenue" in head and "GBP revenue" in head
        numbers = screen.query_one("#db-numbers")
        assert numbers.row_count == len(breakdown(app.simulation, "partner")) == 2
        findings = screen.query_one("#db-findings")
        codes = {f.code for _, f in app.simulation.findings()}
        assert "traffic_gap" in codes  # the generator leaves out a day of Brookline's traffic
        assert findings.row_count == len(app.simulation.findings())
        for dim in ("charge type", "service", "agreement", "month", "partner"):
            await pilot.press("g")
            await wait_for(pilot, lambda dim=dim: dim in screen.query_one("#db-chart-box").border_title)

    run(app, scenario)


def test_the_new_screens_have_keys_help_and_palette_entries_and_fit_80_columns(interconnect):
    app = IcdslApp(interconnect)

    async def scenario(pilot):
        for key, mode in (("f5", "simulate"), ("f6", "whatif"), ("f7", "drill"), ("f9", "dashboard")):
            await pilot.press("f2")
            await wait_for(pilot, lambda: app.current_mode == "workspace")
            app.workspace.editor.focus()  # the editor's own f6/f7 must not win
            await wait_for(pilot, lambda: app.focused is app.workspace.editor)
            await pilot.press(key)
            await wait_for(pilot, lambda mode=mode: app.current_mode == mode)
            nav = str(app.screen.query_one("NavBar").render())
            assert len(nav) <= SIZE[0] and "F9" in nav
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: bool(app.screen.query("CommandList")))
        await pilot.press(*"simulated billing")
        from textual.command import CommandList

        commands = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: commands.option_count > 0)

    run(app, scenario)


def test_help_lists_the_keys_of_the_new_screens():
    import io

    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(help_table())
    text = console.export_text()
    for title in ("Simulate (billing cycle)", "What-if", "Drill-down", "Dashboard"):
        assert title in text
    for what in ("Run the simulated billing cycle", "Cancel the running simulation", "Group the difference",
                 "Open the rule of the selected record", "Chart by partner"):
        assert what in text


# ---------------------------------------------------------------- headless


def test_mix_and_size_are_read_leniently_and_refused_clearly():
    assert parse_mix("voice=6, sms=3,data") == {"voice": 6.0, "sms": 3.0, "data": 1.0}
    assert parse_mix("") == {}
    for bad in ("voice=x", "=3", "voice=-1", "voice=0"):
        with pytest.raises(ValueError, match="mix"):
            parse_mix(bad)
    assert [parse_records(t) for t in ("5000", "250k", "1m", "1_000_000", "1,000")] == [
        5000, 250_000, 1_000_000, 1_000_000, 1000]
    with pytest.raises(ValueError, match="records"):
        parse_records("lots")


def test_generated_traffic_keeps_the_chosen_partners_and_follows_the_mix(interconnect):
    project = Project(interconnect)
    table = generate_table(project, TrafficSource(records=4000, mix="voice=3,sms=1"), ["LUMFR"])
    assert set(table.column("partner").to_pylist()) == {"LUMFR"}
    services = table.column("service").to_pylist()
    good = [s for s, i in zip(services, table.column("id").to_pylist(), strict=True) if not i.startswith("BAD-")]
    assert len(good) == 4000
    assert good.count("voice") == 3000 and good.count("sms") == 1000
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    with pytest.raises(ValueError, match="no data records"):
        generate_table(project, TrafficSource(records=100, mix="data=1"), ["LUMFR"])


def test_a_folder_that_is_not_the_example_resamples_its_own_traffic(tmp_path):
    shutil.copytree(ROOT / "examples" / "tutorial", tmp_path / "tutorial")
    project = Project(tmp_path / "tutorial")
    table = generate_table(project, TrafficSource(records=50), ["ACME"])
    assert table.num_rows == 50 and set(table.column("partner").to_pylist()) == {"ACME"}
    assert table.column("id").to_pylist()[:2] == ["SIM-00000000", "SIM-00000001"]


def test_simulate_headless_matches_its_documents_and_what_if_agrees_with_invoice_lines(interconnect, tmp_path):
    project = Project(interconnect)
    sim = simulate(project, SimulationRequest(("LUMFR",), "2026-03", TrafficSource(records=2000)), {}, tmp_path)
    try:
        run = sim.run_of("LUMFR")
        assert run.report.status == "invoiced" and run.invoices and run.statements
        t = totals(sim)["EUR"]
        assert t.revenue == sum(Decimal(str(d["subtotal"])) for d in run.invoices)
        assert t.cost == sum(Decimal(str(d["payable"])) for d in run.statements if d["kind"] == "statement") + sum(
            Decimal(str(d["total"])) for d in run.statements if d["kind"] == "share_statement" and d["party"] != "us")
        # the same traffic, rated twice with the same rules: no difference, and the exact sums of
        # the traffic lines' records are the what-if's amounts
        w = compare(project, Versions(), {}, sim.traffic, ["LUMFR"])
        assert not w.changed
        exact = sum(Decimal(str(ln["source_amount"])) for d in run.documents for ln in d["lines"]
                    if ln["kind"] == "traffic")
        traffic = sum(r.a.amount for r in w.rows if r.value("charge") == "traffic")
        assert traffic == exact
    finally:
        sim.close()
    assert not sim.workdir.exists()


def test_generated_traffic_is_cached_for_the_session(interconnect, tmp_path):
    project = Project(interconnect)
    plan = None
    first = prepare_traffic(project, plan, TrafficSource(records=1000), ["BRKGB"], tmp_path)
    stamp = first[0].stat().st_mtime_ns
    again = prepare_traffic(project, plan, TrafficSource(records=1000), ["BRKGB"], tmp_path)
    assert again == first and again[0].stat().st_mtime_ns == stamp
    other = prepare_traffic(project, plan, TrafficSource(records=1000, seed=7), ["BRKGB"], tmp_path)
    assert other != first


def test_stale_scratch_folders_of_dead_sessions_are_removed(tmp_path, monkeypatch):
    """A terminal killed rather than quit leaves its icdsl-tui-PID-* folder; the next session
    removes the folders whose process is gone and keeps those of running ones."""
    import os
    import subprocess
    import sys
    import tempfile

    from icdsl.tui import app as tui_app

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"icdsl-tui-{gone.pid}-abc"
    alive = tmp_path / f"icdsl-tui-{os.getppid()}-def"
    other = tmp_path / "icdsl-tui-notapid-ghi"
    for d in (dead, alive, other):
        (d / "store").mkdir(parents=True)
    tui_app._remove_stale_scratch()
    assert not dead.exists() and alive.exists() and other.exists()


def test_what_if_bills_each_version_as_the_simulated_cycle_does_invoices_included(interconnect, tmp_path):
    """Both versions go through the cycle engine: each one's invoices (totals in the invoice
    currency, after conversion, rounding and tax) and statements are the ones a simulated cycle
    of that version issues, document for document."""
    project = Project(interconnect)
    brookline = interconnect / "brookline.icd"
    edited = brookline.read_text(encoding="utf-8").replace('"10G port" 750.00 GBP', '"10G port" 800.00 GBP')
    request = SimulationRequest(("LUMFR", "BRKGB"), "2026-03", TrafficSource(records=1500))
    sims = [simulate(project, request, {}, tmp_path / "a"), simulate(project, request, {brookline: edited},
                                                                      tmp_path / "b")]
    try:
        w = compare(project, Versions(), {brookline: edited}, sims[0].traffic, ["LUMFR", "BRKGB"], period="2026-03")
        assert w.notes == [] and w.method.startswith("cycle engine")
        for i, sim in enumerate(sims):
            issued = {}
            for run in sim.runs:
                for d in run.invoices:
                    issued[(run.partner, f"invoice {d['stream']}", d["currency"])] = Decimal(str(d["total"]))
                for d in run.statements:
                    if d["kind"] == "statement" and Decimal(str(d["payable"])):
                        issued[(run.partner, "statement", d["currency"])] = Decimal(str(d["payable"]))
            ours = {k: v[i] for k, v in w.documents.items() if v[i] is not None}
            assert issued and ours == issued, (i, ours, issued)
        # the fee is billed in GBP on Brookline's invoices; Lumière's documents do not move
        moved = {k for k, (a, b) in w.documents.items() if a != b}
        assert moved and {p for p, _doc, _cur in moved} == {"BRKGB"}
        totals = w.document_totals()
        assert totals[("invoices", "GBP")][1] > totals[("invoices", "GBP")][0]
    finally:
        for sim in sims:
            sim.close()
