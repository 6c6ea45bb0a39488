# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Progressive billing in the store, on both back ends: interim invoices numbered in the
invoice series, finalized and sealed, and the period's final invoice deducting them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
import sqlalchemy as sa
from test_billing_store import db_url, make_plan, store, write_csv  # noqa: F401 - the fixtures (used as test parameters)

from icdsl.billing import models as M
from icdsl.billing.errors import CycleStateError

RULES = """partner HEAVY "Heavy User" {
  currency EUR
  timezone "Europe/Paris"
  due 30 days
  tax vat 20%
}

agreement "Billed as it goes" v1 with HEAVY effective 2026-01-01 .. {
  outbound voice {
    price 0.0100 EUR per minute
  }
  recurring "Platform" 500.00 EUR monthly
  progressive billing at 10_000.00 EUR, 25_000.00 EUR
}
"""


def _calls(day: int, n: int, first: int) -> list[tuple]:
    t0 = datetime(2026, 3, day, 9, 0, tzinfo=UTC)
    return [(f"H{first + i:06d}", "HEAVY", "outbound", "voice", "33170000001", "4420712345",
             (t0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), 60_000) for i in range(n)]


def _invoices(store) -> list[M.Invoice]:
    with store.session() as s:
        return list(s.scalars(sa.select(M.Invoice).order_by(M.Invoice.id)))


def test_interim_invoices_and_the_final_deduction(store, tmp_path):
    # the reference's worked example: 1,050 calls of 1,000 minutes by 12 March (10,500.00 EUR),
    # 950 more on 20 March (20,000.00 in all, under 25,000.00)
    plan, program = make_plan(tmp_path, RULES)
    store.load_plan(plan, program)
    store.ingest(write_csv(tmp_path / "in" / "a.csv", _calls(5, 1050, 0)), None, plan)
    early = store.progressive("HEAVY", "2026-03", plan, date(2026, 3, 4))
    assert early.invoices == [] and early.found.usage == 0
    rep = store.progressive("HEAVY", "2026-03", plan, date(2026, 3, 12))
    ((number, stream, subtotal, tax, total),) = rep.invoices
    assert number == "INV-2026-000001" and stream == "main"
    assert (subtotal, tax, total) == (D("10500.00"), D("2100.00"), D("12600.00"))
    (interim,) = _invoices(store)
    assert (interim.status, interim.doc_type, interim.cycle_id) == ("finalized", "invoice", None)
    assert (interim.interim_period, interim.interim_until, interim.interim_threshold) == (
        "2026-03", date(2026, 3, 12), D("10000.00"))
    assert (interim.issue_date, interim.due_date) == (date(2026, 3, 12), date(2026, 4, 11))
    # no second interim invoice under the next threshold; a day before the last one is refused
    store.ingest(write_csv(tmp_path / "in" / "b.csv", _calls(20, 950, 5000)), None, plan)
    assert store.progressive("HEAVY", "2026-03", plan, date(2026, 3, 25)).invoices == []
    with pytest.raises(CycleStateError, match="already billed the usage to 2026-03-12"):
        store.progressive("HEAVY", "2026-03", plan, date(2026, 3, 10))
    # the final cycle deducts it: 20,000.00 + 500.00 - 10,500.00 = 10,000.00, tax 4,100.00 - 2,100.00
    store.run_cycle("HEAVY", "2026-03", plan)
    fin = store.finalize_cycle("HEAVY", "2026-03")
    (inv,) = fin.invoices
    assert inv.number == "INV-2026-000002"
    assert (inv.subtotal, inv.tax_amount, inv.total) == (D("10000.00"), D("2000.00"), D("12000.00"))
    with store.session() as s:
        lines = list(s.scalars(sa.select(M.InvoiceLine).where(M.InvoiceLine.invoice_id == inv.id)
                               .order_by(M.InvoiceLine.line_no)))
    last = lines[-1]
    assert (last.kind, last.amount, last.group_key) == ("other", D("-10500.00"), "progressive INV-2026-000001")
    assert last.description == "Interim invoice INV-2026-000001: usage to 2026-03-12, already billed"
    assert sum(ln.amount for ln in lines) == inv.subtotal
    # a single invoice would have been 24,600.00
    assert inv.total + total == D("24600.00")
    # sealed, both
    v = store.verify()
    assert v.ok, v
    with store.session() as s:
        sealed = set(s.scalars(sa.select(M.DocumentSeal.number)))
    assert {"INV-2026-000001", "INV-2026-000002"} <= sealed
    # once the cycle is invoiced, no more interim invoices for the period
    with pytest.raises(CycleStateError, match="is finalized: progressive billing is for a period in progress"):
        store.progressive("HEAVY", "2026-03", plan, date(2026, 3, 30))


def test_the_interim_invoice_as_a_document_and_through_the_cli(store, db_url, tmp_path):
    from typer.testing import CliRunner

    from icdsl.billing.documents import invoice_document
    from icdsl.cli.main import app

    plan, program = make_plan(tmp_path, RULES)
    store.load_plan(plan, program)
    store.ingest(write_csv(tmp_path / "in" / "a.csv", _calls(3, 1100, 0)), None, plan)
    runner = CliRunner()
    args = ["--db", db_url, "--data", str(tmp_path / "data"), "--rules", str(tmp_path / "rules" / "rules.icd")]
    out = runner.invoke(app, ["cycle", "progressive", "HEAVY", "2026-03", "--until", "2026-03-2", *args])
    assert out.exit_code == 2 and "--until '2026-03-2' is not a date" in out.output
    out = runner.invoke(app, ["cycle", "progressive", "HEAVY", "2026-03", "--until", "2026-03-03", *args])
    assert out.exit_code == 0, out.output
    assert "usage to 2026-03-03 11000.00 EUR passed 10000.00 EUR" in out.output
    assert "INV-2026-000001 (main): 11000.00 EUR + tax 2200.00 = 13200.00 EUR, finalized" in out.output
    (interim,) = _invoices(store)
    with store.session() as s:
        rows = list(s.execute(sa.select(M.InvoiceLine).where(M.InvoiceLine.invoice_id == interim.id)).scalars())
        doc = invoice_document(s, interim, rows, {})
    assert (doc["period"], doc["period_start"], doc["period_end"]) == ("2026-03", date(2026, 3, 1), date(2026, 3, 3))
    assert doc["interim"]["note"].startswith("Interim invoice: usage of 2026-03 to 2026-03-03")
    assert doc["kind"] == "invoice" and doc["number"] == "INV-2026-000001"


LOW = (RULES.replace("tax vat 20%", "tax vat 19.6%").replace("0.0100 EUR per minute", "0.0137 EUR per minute")
       .replace("10_000.00 EUR, 25_000.00 EUR", "40.00 EUR, 90.00 EUR, 150.00 EUR"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_interim_and_final_invoices_add_up_to_a_single_invoice_in_the_store(store, tmp_path, seed):
    """Random traffic over March, ingested day by day with a progressive check after some days:
    the interim invoices plus the final one add up, exactly, to the invoice the period would
    have had without progressive billing (the engine's, on the same records)."""
    import random

    import pyarrow as pa

    from icdsl.cycle import CycleInputs, run

    rng = random.Random(seed)
    plan, program = make_plan(tmp_path, LOW)
    store.load_plan(plan, program)
    rows, raised = [], []
    for day in range(1, 32):
        t0 = datetime(2026, 3, day, 8, 0, tzinfo=UTC)
        today = [(f"R{day:02d}{i:04d}", "HEAVY", "outbound", "voice", "33170000001", "4420712345",
                  (t0 + timedelta(seconds=97 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"), rng.randrange(1, 4000))
                 for i in range(rng.randrange(0, 40))]
        if today:
            store.ingest(write_csv(tmp_path / "in" / f"d{day}.csv", today), None, plan)
            rows += today
        if rng.random() < 0.4:
            raised += store.progressive("HEAVY", "2026-03", plan, date(2026, 3, day)).invoices
    assert raised  # the thresholds are low enough for every seed to raise some
    store.run_cycle("HEAVY", "2026-03", plan)
    (fin,) = store.finalize_cycle("HEAVY", "2026-03").invoices
    table = pa.Table.from_pylist([{"id": r[0], "partner": r[1], "direction": r[2], "service": r[3], "a_number": r[4],
                                   "b_number": r[5], "start": datetime.fromisoformat(r[6]), "duration_s": r[7]}
                                  for r in rows])
    (single,) = run(CycleInputs.of(plan, "HEAVY", "2026-03", table)).drafts.invoices
    assert fin.subtotal + sum(r[2] for r in raised) == single.subtotal
    assert fin.tax_amount + sum(r[3] for r in raised) == single.tax.amount
    assert fin.total + sum(r[4] for r in raised) == single.total
    numbers = [r[0] for r in raised] + [fin.number]
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, len(numbers) + 1)]  # one gapless series
    assert store.verify().ok
