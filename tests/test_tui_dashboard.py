"""The dashboard on a real store (``icdsl tui --db``): finalized and draft cycles over months,
revenue and cost in each currency, validation findings, and the reconciliation, dispute and
assurance panels fed by functions (:mod:`icdsl.tui.feeds`), each with its empty state.

pytest-asyncio is not a dependency: each scenario runs with ``asyncio.run``.
"""

import asyncio
import shutil
from decimal import Decimal

import pytest
from helpers import ROOT, wait_for
from test_billing_store import pg_url  # noqa: F401 - the fixture
from tui_examples import billed_store, disputes, findings, reconciliation
from tui_screen import row_of, screen_text
from typer.testing import CliRunner

from icdsl.billing.errors import StoreError
from icdsl.tui.app import IcdslApp
from icdsl.tui.components.documents import money
from icdsl.tui.feeds import Feeds, dispute_row, finding_row, recon_row
from icdsl.tui.ledger import open_ledger_store, read_ledger, store_url
from icdsl.tui.revenue import breakdown, totals

SIZE = (80, 24)


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    """A store with LUMFR's February finalized and LUMFR's and BRKGB's March drafts."""
    base = tmp_path_factory.mktemp("dashboard")
    folder = base / "interconnect"
    shutil.copytree(ROOT / "examples" / "interconnect", folder, ignore=shutil.ignore_patterns("tools"))
    store, _ = billed_store(folder, base / "store")
    yield folder, store
    store.close()


def run(app: IcdslApp, scenario) -> None:
    async def main():
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.analysis is not None)
            await scenario(pilot)

    asyncio.run(main())


# ---------------------------------------------------------------- headless


def test_the_ledger_reads_finalized_and_draft_cycles_by_month(billed):
    _, store = billed
    ledger = read_ledger(store)
    assert ledger.months == ("2026-02", "2026-03")
    assert [(r.partner, r.period, r.status) for r in ledger.runs] == [
        ("LUMFR", "2026-02", "finalized"), ("BRKGB", "2026-03", "invoiced"), ("LUMFR", "2026-03", "invoiced")]
    assert ledger.finalized == 1 and ledger.drafts == 6
    feb = ledger.runs[0].documents
    assert [d["status"] for d in feb] == ["finalized"] and feb[0]["number"]
    # the month's revenue is the sum of the lines of its invoices, exactly, per currency
    months = {(b.label, b.currency): b for b in breakdown(ledger, "month")}
    assert months[("2026-02", "EUR")].revenue == feb[0]["subtotal"]
    assert (months[("2026-02", "EUR")].documents, months[("2026-02", "EUR")].drafts) == (1, 0)
    assert months[("2026-03", "GBP")].drafts == months[("2026-03", "GBP")].documents > 0
    mar = [d for r in ledger.runs[1:] for d in r.documents if d["kind"] in ("invoice", "credit_note")]
    for ccy in ("EUR", "GBP"):
        assert months[("2026-03", ccy)].revenue == sum(d["subtotal"] for d in mar if d["currency"] == ccy)
    # finalized only / drafts only
    assert {b.label for b in breakdown(ledger, "month", "finalized")} == {"2026-02"}
    assert {b.label for b in breakdown(ledger, "month", "draft")} == {"2026-03"}
    assert totals(ledger, "finalized")["EUR"].revenue == feb[0]["subtotal"]
    assert sum(b.revenue for b in breakdown(ledger, "partner") if b.currency == "EUR") == totals(ledger)["EUR"].revenue
    # the findings of every cycle's latest validation, said with the cycle
    assert all(" 2026-0" in where for where, _ in ledger.findings())
    # one month only
    assert read_ledger(store, months=1).months == ("2026-03",)
    assert [r.partner for r in read_ledger(store, partners=["BRKGB"]).runs] == ["BRKGB"]


def test_a_store_that_does_not_exist_is_refused_never_created(tmp_path):
    missing = tmp_path / "nothing.db"
    with pytest.raises(StoreError, match="no store at"):
        open_ledger_store(str(missing))
    with pytest.raises(StoreError, match="never creates one"):
        open_ledger_store(f"sqlite:///{missing}")
    assert not missing.exists()
    assert store_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_icdsl_tui_with_a_missing_store_says_so(tmp_path):
    from icdsl.cli.main import app

    result = CliRunner().invoke(app, ["tui", str(ROOT / "examples" / "tutorial"), "--db", str(tmp_path / "x.db")])
    assert result.exit_code != 0
    assert "no store at" in (result.output + str(result.exception or ""))
    assert not (tmp_path / "x.db").exists()


def test_feed_rows_read_the_model_and_plain_records():
    r = recon_row(reconciliation())
    assert (r.partner, r.period, r.invoice, r.currency) == ("LUMFR", "2026-03", "LUM-2026-0042", "EUR")
    assert r.difference == Decimal("49.57") and (r.lines, r.differing) == (4, 3)
    assert r.disputable == Decimal("37.26") + Decimal("12.40")  # they billed more, outside the tolerances
    d = dispute_row(disputes()[1])
    assert (d.number, d.state, d.amount, d.accepted) == ("DSP-2026-000002", "partially_accepted", Decimal("120.00"),
                                                         Decimal("80.00"))
    f = finding_row(findings()[1])
    assert (f.severity, f.code, f.action, f.amount) == ("error", "unbilled_item",
                                                        "add a recurring fee for e1_port to the agreement",
                                                        Decimal("150.00"))


# ---------------------------------------------------------------- on screen


def test_the_dashboard_shows_the_store_by_month_and_the_panels_say_what_is_not_connected(billed):
    folder, store = billed
    app = IcdslApp(folder, store=store)

    async def scenario(pilot):
        await pilot.press("f9")
        await wait_for(pilot, lambda: app.current_mode == "dashboard" and app.ledger is not None)
        screen = app.screen
        await wait_for(pilot, lambda: screen.shown_currency is not None and "recon" in screen.feed_data)
        await pilot.pause()
        text = screen_text(app)
        assert "store billing.db · 3 cycle(s) 2026-02..2026-03 · 1 finalized, 6 draft doc(s)" in text
        for ccy, t in totals(app.ledger).items():
            assert f"{ccy} revenue {money(t.revenue)}" in text.replace("\n ", " ")
        # months: the finalized February and the draft March, each currency apart
        await pilot.press("n")
        await wait_for(pilot, lambda: screen.query_one("#db-tabs").active == "db-p-months")
        await pilot.pause()
        for b in breakdown(app.ledger, "month"):
            row = [line for line in screen_text(app).splitlines() if f" {b.label} " in line and f" {b.currency} " in line]
            assert row and money(b.revenue) in row[0], b
        # finalized only: February alone
        await pilot.press("s")
        await wait_for(pilot, lambda: "finalized documents" in screen.query_one("#db-chart-box").border_subtitle)
        months = screen.query_one("#db-months")
        assert months.row_count == 1 and str(months.get_row_at(0)[0]) == "2026-02"
        # the panels without a feed say so
        for _ in range(3):
            await pilot.press("n")
        await wait_for(pilot, lambda: screen.query_one("#db-tabs").active == "db-p-disputes")
        await pilot.pause()
        assert "does not read disputes yet" in screen_text(app)

    run(app, scenario)


def test_the_panels_list_reconciliations_disputes_and_findings_and_enter_walks_one(billed):
    folder, store = billed
    rec = reconciliation()
    feeds = Feeds(reconcile=lambda p, per: rec, reconciliations=lambda: [rec], disputes=disputes, assurance=findings)
    app = IcdslApp(folder, store=store, feeds=feeds)

    async def scenario(pilot):
        await pilot.press("f9")
        await wait_for(pilot, lambda: app.current_mode == "dashboard")
        screen = app.screen
        await wait_for(pilot, lambda: screen.feed_data.get("recon", (None,))[0] is not None)
        tabs = screen.query_one("#db-tabs")
        assert str(tabs.get_tab("db-p-recon").label) == "Recon 1≠"
        assert str(tabs.get_tab("db-p-disputes").label) == "Disputes 2"
        assert str(tabs.get_tab("db-p-assurance").label) == "Assurance 2"
        tabs.active = "db-p-recon"
        await pilot.pause()
        row = row_of(app, "+49.57").strip("│ ")
        assert row.split()[:3] == ["LUMFR", "2026-03", "EUR"] and "2,450.71" in row and "2,401.14" in row and "3/4" in row and "49.66" in row
        tabs.active = "db-p-disputes"
        await pilot.pause()
        assert "120.00" in row_of(app, "DSP-2026-000002") and "80.00" in row_of(app, "DSP-2026-000002")
        tabs.active = "db-p-assurance"
        await pilot.pause()
        assert row_of(app, "unbilled_item").split()[:2] == ["error", "unbilled_item"]  # errors first
        # the highlighted finding in full, with what to do
        assert "what to do: add a recurring fee for e1_port to the agreement" in screen_text(app)
        assert "150.00 EUR at stake" in screen_text(app)
        # enter on a reconciliation walks it
        tabs.active = "db-p-recon"
        table = screen.query_one("#db-recon")
        table.focus()
        await wait_for(pilot, lambda: app.focused is table)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "recon" and app.screen.reconciliation is rec)

    run(app, scenario)


def test_a_failing_feed_is_said_in_its_panel(billed):
    folder, store = billed

    def broken():
        raise RuntimeError("the disputes table is locked")

    app = IcdslApp(folder, store=store, feeds=Feeds(disputes=broken, assurance=lambda: []))

    async def scenario(pilot):
        await pilot.press("f9")
        await wait_for(pilot, lambda: app.current_mode == "dashboard")
        screen = app.screen
        await wait_for(pilot, lambda: "disputes" in screen.feed_data)
        screen.query_one("#db-tabs").active = "db-p-disputes"
        await pilot.pause()
        assert "Could not read the disputes: RuntimeError: the disputes table is locked" in screen_text(app)
        screen.query_one("#db-tabs").active = "db-p-assurance"
        await pilot.pause()
        assert "No assurance finding" in screen_text(app)

    run(app, scenario)


def test_a_cycle_whose_seal_fails_is_listed_as_failed_never_added_up(billed, monkeypatch):
    from icdsl.billing.seal import SealBroken

    _, store = billed
    real = store.cycle_documents
    feb = next(c.id for c in store.cycles() if c.label == "2026-02")

    def documents(cycle_id):
        if cycle_id == feb:
            raise SealBroken("INV-2026-000001 fails its seal: run `icdsl verify`")
        return real(cycle_id)

    monkeypatch.setattr(store, "cycle_documents", documents)
    ledger = read_ledger(store)
    broken = next(r for r in ledger.runs if r.period == "2026-02")
    assert broken.documents == [] and "fails its seal" in broken.error
    assert {b.label for b in breakdown(ledger, "month")} == {"2026-03"}


@pytest.mark.postgres
def test_the_ledger_reads_a_postgresql_store(pg_url, tmp_path):  # noqa: F811 - the fixture
    folder = tmp_path / "interconnect"
    shutil.copytree(ROOT / "examples" / "interconnect", folder, ignore=shutil.ignore_patterns("tools"))
    store, _ = billed_store(folder, tmp_path / "store", records=500, url=pg_url)
    store.close()
    reader = open_ledger_store(pg_url, str(tmp_path / "store" / "data"))  # as icdsl tui --db URL opens it
    try:
        ledger = read_ledger(reader)
        assert ledger.months == ("2026-02", "2026-03") and ledger.finalized == 1
        assert ledger.url.startswith("postgresql")  # said without a password (hide_password)
        assert {b.label for b in breakdown(ledger, "month", "finalized")} == {"2026-02"}
    finally:
        reader.close()
