# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Validation, invoicing (streams, netting, FX, rounding, tax), corrections and the audit trail,
on both back ends where the database matters; pure invoicing arithmetic with hypothesis."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from test_billing_store import PARTNER, V1_OPEN, count, db_url, make_plan, march_traffic, store, write_csv  # noqa: F401 - the fixtures (used as test parameters)

from icdsl.billing import models as M
from icdsl.billing.amounts import REVERSE_CHARGE_NOTE, compute_tax, minor_units, round_line
from icdsl.billing.errors import CycleError, CycleStateError
from icdsl.billing.fx import FxTable
from icdsl.billing.invoicing import Group, draft_documents, route
from icdsl.billing.validation import Finding, register, unregister

BRK = """partner BRK "Brookline" { kind wholesale currency GBP timezone "Europe/London" billing monthly due 45 days
  tax reverse_charge }
fx ecb {
  rounding half_even to 6 decimals
  EUR/GBP 0.8475 from 2026-02-01
  EUR/GBP 0.8511 from 2026-03-01
  EUR/GBP 0.8460 from 2026-04-01
}
agreement "BRK voice" v1 with BRK effective 2026-01-01 .. {
  currency GBP
  fx ecb
  rounding half_even to 6 decimals
  outbound voice {
    price by destination in GBP {
      44  "UK"         0.0100
      447 "UK mobile"  0.0163
    }
    increments 1/1
  }
  inbound voice {
    price by destination in EUR {
      33  "Arcadia fixed"  0.0150
      336 "Arcadia mobile" 0.0480
    }
    increments 1/1
  }
  inbound sms { price 0.0100 EUR per message }
  netting with outbound voice
  invoice streams {
    traffic: inbound voice
    fees: recurring
  }
}
"""
ACCEPT = ("invalid_destination",)


def brk_traffic(days: int = 31, skip: date | None = None, per_day: int = 6) -> list[tuple]:
    rows = []
    t0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)  # London is on UTC until 29 March
    k = 0
    for d in range(days):
        day = (t0 + timedelta(days=d)).date()
        if day == skip:
            continue
        for j in range(per_day):
            start = (t0 + timedelta(days=d, minutes=j * (1380 // per_day) + 5)).strftime("%Y-%m-%dT%H:%M:%SZ")
            kind = k % 4
            if kind == 0:
                rows.append((f"B{k:05d}", "BRK", "inbound", "voice", "447700900001", "33142685300", start, 17 + 7 * k % 500))
            elif kind == 1:
                rows.append((f"B{k:05d}", "BRK", "inbound", "voice", "447700900001", "33612345678", start, 5 + 11 * k % 900))
            elif kind == 2:
                rows.append((f"B{k:05d}", "BRK", "outbound", "voice", "33170000001", "447700900123", start, 3 + 13 * k % 700))
            else:
                rows.append((f"B{k:05d}", "BRK", "inbound", "sms", "447700900001", "33612345678", start, ""))
            k += 1
    return rows


def setup_brk(store, tmp_path, rows=None):
    plan, program = make_plan(tmp_path, BRK, "brk.icd")
    store.load_plan(plan, program)
    store.ingest(write_csv(tmp_path / "in" / "brk.csv", rows or brk_traffic()), None, plan)
    return plan


def recompute(store, cycle_id: int, plan) -> dict:
    """The cycle's documents recomputed from its rated Parquet with plain Decimal code: each
    line = its records' exact sum, times the rate of the cycle's last day for EUR, rounded
    half-even (the agreement's mode) to 2 decimals once; subtotal = sum; reverse charge: no tax."""
    f = next(x for x in store_files(store, cycle_id) if x.kind == "rated")
    t = pq.read_table(store.data.abs(f.path)).to_pylist()
    sums: dict[int, Decimal] = defaultdict(Decimal)
    currency: dict[int, str] = {}
    for r in t:
        sums[r["line"]] += r["amount"]
        currency[r["line"]] = r["currency"]
    rate = Decimal("0.8511")  # EUR/GBP in force on 31 March
    out = {}
    for key, total in sums.items():
        converted = total * rate if currency[key] == "EUR" else total
        out[key] = converted.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return out


def store_files(store, cycle_id):
    with store.reading() as s:
        return list(s.scalars(sa.select(M.DataFile).where(M.DataFile.cycle_id == cycle_id)))


# --------------------------------------------------------------------------- invoicing on a store


def test_streams_netting_fx_tax_and_independent_recomputation(store, tmp_path):
    plan = setup_brk(store, tmp_path)
    rep = store.run_cycle("BRK", "2026-03", plan)
    assert rep.status == "invoiced" and not rep.findings, [str(f) for f in rep.findings]
    (inv,) = store.invoices(rep.cycle_id)  # inbound voice (stream traffic) and inbound sms (no stream: the first)
    assert (inv.stream, inv.currency, inv.tax_kind, inv.tax_note) == ("traffic", "GBP", "reverse_charge",
                                                                      REVERSE_CHARGE_NOTE)
    lines = store.invoice_lines(inv.id)
    assert {(ln.direction, ln.service) for ln in lines} == {("inbound", "voice"), ("inbound", "sms")}
    (stm,) = store.statements(rep.cycle_id)  # outbound voice is netted: what we owe Brookline
    assert {ln["direction"] for ln in stm.details["lines"]} == {"outbound"}
    expected = recompute(store, rep.cycle_id, plan)
    for ln in lines:
        assert ln.amount == expected[ln.line_key]
        assert ln.source_currency == "EUR" and ln.fx_rate == Decimal("0.8511") and ln.rounding == "half_even to 2"
    for ln in stm.details["lines"]:
        assert Decimal(ln["amount"]) == expected[ln["line_key"]] and ln["fx_rate"] is None
    assert inv.subtotal == sum(expected[ln.line_key] for ln in lines)
    assert (inv.tax_amount, inv.total) == (Decimal(0), inv.subtotal)
    assert stm.payable == sum(Decimal(x["amount"]) for x in stm.details["lines"])
    assert stm.receivable == inv.subtotal and stm.net == stm.receivable - stm.payable
    # finalized: numbered, dated at the end of the period, due 45 days later
    fin = store.finalize_cycle("BRK", "2026-03")
    assert [i.number for i in fin.invoices] == ["INV-2026-000001"] and fin.statement.number == "STM-2026-000001"
    (inv,) = store.invoices(rep.cycle_id)
    assert (inv.issue_date, inv.due_date) == (date(2026, 3, 31), date(2026, 5, 15))
    doc = store.document("INV-2026-000001")
    assert doc["fx"][0]["rate"] == Decimal("0.8511") and doc["tax_note"] == REVERSE_CHARGE_NOTE
    assert sum(x["amount"] for x in doc["summary"]) == doc["subtotal"] == sum(x["amount"] for x in doc["lines"])


def test_validation_blocks_then_accept_and_profile(store, tmp_path):
    # an unpriceable call: 1 of 61 records (above 1 %) stops invoicing; the cycle stays rated
    plan, program = make_plan(tmp_path, PARTNER + V1_OPEN)
    store.load_plan(plan, program)
    store.ingest(write_csv(tmp_path / "in" / "m.csv", march_traffic()), None, plan)
    rep = store.run_cycle("ORFR", "2026-03", plan)
    assert rep.status == "rated" and rep.blocked and store.invoices(rep.cycle_id) == []
    (f,) = [f for f in rep.findings if f.severity == "error"]
    assert (f.code, f.count, f.samples, f.validator) == ("invalid_destination", 1, ("C9001",), "rating_rejects")
    assert f.details["top_number_prefixes"] == {"4420": 1}
    stored = store.findings(rep.cycle_id)
    assert [(x.code, x.severity, x.accepted, x.attempt) for x in stored] == [("invalid_destination", "error", False, 1)]
    with pytest.raises(CycleStateError, match="validation stopped it"):
        store.finalize_cycle("ORFR", "2026-03")
    # running it again accepting the code: invoiced, the acceptance is audited
    rep2 = store.run_cycle("ORFR", "2026-03", plan, accept=["invalid_destination"])
    assert rep2.status == "invoiced" and not rep2.blocked and rep2.findings[0].accepted
    assert [x.attempt for x in store.findings(rep.cycle_id, all_runs=True)] == [1, 2]
    assert count(store, M.AuditEntry, M.AuditEntry.action == "findings_accepted") == 1
    # the findings log is append-only
    with pytest.raises(sa.exc.IntegrityError, match="append-only"), store.engine.begin() as c:
        c.execute(sa.text("DELETE FROM validation_findings"))


def test_traffic_gap_warning_and_custom_validator(store, tmp_path):
    plan = setup_brk(store, tmp_path, brk_traffic(skip=date(2026, 3, 18), per_day=24))

    class Always:
        name = "always_warn"
        description = "test"

        def validate(self, context):
            assert context.records_in > 0 and context.invoice_currency == "GBP"
            return [Finding("custom", "warning", f"{context.partner} looked at")]

    register(Always)
    try:
        rep = store.run_cycle("BRK", "2026-03", plan)
    finally:
        unregister("always_warn")
    assert rep.status == "invoiced"
    by_code = {f.code: f for f in rep.findings}
    gap = by_code["traffic_gap"]
    assert gap.severity == "warning" and gap.details["days"] == ["2026-03-18"] and gap.details["typical_daily"] == 24
    assert by_code["custom"].validator == "always_warn"


def test_missing_fx_rate_is_an_error(store, tmp_path):
    text = BRK.replace("  EUR/GBP 0.8475 from 2026-02-01\n  EUR/GBP 0.8511 from 2026-03-01\n  EUR/GBP 0.8460 from "
                       "2026-04-01\n", "  EUR/GBP 0.8460 from 2026-04-01\n")
    plan, program = make_plan(tmp_path, text, "brk.icd")
    store.load_plan(plan, program)
    store.ingest(write_csv(tmp_path / "in" / "b.csv", brk_traffic(days=5)), None, plan)
    rep = store.run_cycle("BRK", "2026-03", plan)
    assert rep.status == "rated" and [f.code for f in rep.findings if f.blocking] == ["no_fx_rate"]
    assert "ecb" in rep.findings[0].message and "2026-03-31" in rep.findings[0].message


# --------------------------------------------------------------------------- corrections


def test_rerate_before_and_after_finalization(store, tmp_path):
    plan1, prog1 = make_plan(tmp_path, PARTNER + V1_OPEN)
    store.load_plan(plan1, prog1)
    store.ingest(write_csv(tmp_path / "in" / "m.csv", march_traffic()), None, plan1)
    mar = store.run_cycle("ORFR", "2026-03", plan1, accept=ACCEPT)
    # before finalization: rerate replaces the cycle's results
    rep = store.rerate("ORFR", "2026-03-01", "2026-03-31", plan1, accept=ACCEPT)
    assert [r.period.label for r in rep.rerun] == ["2026-03"] and not rep.corrections
    store.finalize_cycle("ORFR", "2026-03")
    billed = {ln.description: ln for ln in store.invoice_lines(store.invoices(mar.cycle_id)[0].id)}
    # French mobile repriced from March on: v1 closes at the end of February, v2 starts in March
    v1_closed = V1_OPEN.replace("effective 2026-01-01 .. ", "effective 2026-01-01 .. 2026-02-28 ")
    v2 = V1_OPEN.replace('"ORFR voice" v1', '"ORFR voice" v2').replace("2026-01-01 ..", "2026-03-01 ..") \
        .replace("0.0200", "0.0180")
    plan2, prog2 = make_plan(tmp_path, PARTNER + v1_closed + v2, "rules.icd")
    store.load_plan(plan2, prog2, retroactive=True)  # over finalized March: as `icdsl rerate` loads it
    rep = store.rerate("ORFR", "2026-03-10", "2026-03-20", plan2, destination="336")
    (corr,) = rep.corrections
    assert corr.target == "2026-04" and corr.records > 0
    # the calls to French mobiles of those days: a credit at v1's price, a debit at v2's, both
    # correcting the line of the same dimensions. Their SMS move to v2 at the same price: the
    # line splits in two, each rounded once, exactly as a fresh invoice would show them.
    window = (datetime(2026, 3, 9, 23, tzinfo=UTC), datetime(2026, 3, 20, 23, tzinfo=UTC))
    rated = store.rated(mar.cycle_id).to_pylist()

    def moved(line):
        return sum((r["amount"] for r in rated if r["line"] == line.line_key and r["prefix"] in ("336", "")
                    and window[0] <= r["start"] < window[1]), Decimal(0))

    def cents(x):
        return x.quantize(Decimal("0.01"), ROUND_HALF_UP)

    sms_line = billed["outbound sms"]
    sms = [a for a in corr.adjustments if "sms" in a.description]
    assert len(sms) == 2 and all(a.corrects_line_id == sms_line.id for a in sms)
    m = moved(sms_line)
    assert sms_line.amount + sum(a.amount for a in sms) == cents(sms_line.source_amount - m) + cents(m)
    credit, debit = sorted((a for a in corr.adjustments if "France mobile" in a.description), key=lambda a: a.amount)
    mobile = billed["outbound voice to France mobile"]
    assert credit.corrects_line_id == debit.corrects_line_id == mobile.id
    assert credit.amount < 0 < debit.amount and credit.amount + debit.amount < 0 and credit.currency == "EUR"
    assert "credit" in str(rep) and "debit" in str(rep)
    # exact: what is billed for those dimensions now equals each version's records rounded once
    old = moved(mobile)
    new = old * Decimal("0.018") / Decimal("0.02")
    corrected = cents(mobile.source_amount - old) + cents(new)
    assert mobile.amount + credit.amount + debit.amount == corrected
    # the same rerate again changes nothing: nothing is billed twice
    again = store.rerate("ORFR", "2026-03-10", "2026-03-20", plan2, destination="336")
    assert again.corrections[0].correction_id is None and count(store, M.Adjustment) == 4
    # the adjustments are billed with April, on a credit note of their own (April's traffic on its
    # invoice), pointing at the line they correct
    apr = store.run_cycle("ORFR", "2026-04", plan2, accept=ACCEPT)
    invoices = store.invoices(apr.cycle_id)
    assert [i.doc_type for i in invoices] == ["invoice", "credit_note"]
    assert all(ln.kind != "adjustment" for ln in store.invoice_lines(invoices[0].id))
    inv = invoices[1]
    assert inv.total < 0 and all(ln.kind == "adjustment" for ln in store.invoice_lines(inv.id))
    adj_lines = sorted((ln for ln in store.invoice_lines(inv.id) if ln.kind == "adjustment"
                        and ln.destination == "France mobile"), key=lambda x: x.amount)
    assert [(ln.corrects_line_id, ln.amount, ln.adjustment_id) for ln in adj_lines] == [
        (mobile.id, credit.amount, credit.id), (mobile.id, debit.amount, debit.id)]
    tr = store.trace(adj_lines[1].id)
    assert tr.corrects.id == mobile.id and tr.correction is not None and tr.records.num_rows > 0
    assert set(tr.records.column("rate").to_pylist()) == {"0.018"}
    assert "corrects line" in str(tr) and "correction #" in str(tr)
    assert count(store, M.AuditEntry, M.AuditEntry.action == "rerate") == 1
    # corrections are immutable
    with pytest.raises(sa.exc.IntegrityError, match="immutable"), store.engine.begin() as c:
        c.execute(sa.text("UPDATE adjustments SET amount = '0'"))
    # a finalized cycle cannot be rerun
    with pytest.raises(CycleStateError, match="finalized"):
        store.run_cycle("ORFR", "2026-03", plan2, rerate=True)
    with pytest.raises(CycleError, match="not a number prefix"):
        store.rerate("ORFR", "2026-03-10", "2026-03-20", plan2, destination="abc")


# --------------------------------------------------------------------------- pure arithmetic


def _fx_table() -> FxTable:
    rows = [SimpleNamespace(id=1, source="ecb", base="EUR", quote="GBP", rate=Decimal("0.8511"),
                            effective_from=date(2026, 3, 1)),
            SimpleNamespace(id=2, source="ecb", base="EUR", quote="JPY", rate=Decimal("161.23"),
                            effective_from=date(2026, 1, 1))]
    return FxTable(rows)


def test_fx_inverse_rounding_minor_units_and_tax():
    fx = _fx_table()
    q = fx.quote("ecb", "GBP", "EUR", date(2026, 3, 31))
    assert q.inverse and q.rate == Decimal("1.174950")  # 1 / 0.8511 half even to 6 decimals
    assert fx.quote("ecb", "EUR", "GBP", date(2026, 2, 28)) is None  # not in force yet
    assert (minor_units("EUR"), minor_units("JPY"), minor_units("BHD")) == (2, 0, 3)
    assert round_line(Decimal("2.675"), "EUR") == Decimal("2.68")  # half up
    assert round_line(Decimal("2.675"), "EUR", "half_even") == Decimal("2.68")
    assert round_line(Decimal("2.665"), "EUR", "half_even") == Decimal("2.66")
    assert round_line(Decimal("-2.675"), "EUR") == Decimal("-2.68")  # credits round like debits
    assert round_line(Decimal("1234.5"), "JPY") == Decimal("1235")
    assert compute_tax("vat", Decimal(20), Decimal("10.05"), "EUR").amount == Decimal("2.01")
    assert compute_tax("exempt", Decimal(0), Decimal("10.05"), "EUR").note == "Exempt from VAT"
    assert compute_tax("none", Decimal(0), Decimal("10.05"), "EUR").note is None


def _plan_for(currency_rounding: str = "half_up"):
    from icdsl.plan.model import Agreement, InvoiceStream, Plan, Rounding, ServicePlan

    services = (ServicePlan("outbound", "voice", "minute"), ServicePlan("inbound", "voice", "minute"),
                ServicePlan("inbound", "sms", "message"))
    a = Agreement("A", 1, "P", date(2026, 1, 1), None, "GBP", "UTC", Rounding(6, currency_rounding), services,
                  streams=(InvoiceStream("traffic", (("traffic", "inbound", "voice"),)),),
                  netting=(("outbound", "voice"),), fx="ecb", source_hash="h")
    return Plan(agreements=(a,))


amounts = st.decimals(min_value=Decimal("-5000"), max_value=Decimal("100000"), places=6, allow_nan=False,
                      allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([("outbound", "voice"), ("inbound", "voice"), ("inbound", "sms")]),
                          st.sampled_from(["EUR", "GBP"]), amounts), min_size=1, max_size=25),
       st.sampled_from(["half_up", "half_even", "up", "down"]),
       st.sampled_from([("vat", Decimal(20)), ("vat", Decimal("7.7")), ("reverse_charge", Decimal(0))]))
def test_property_totals_are_sums_of_lines_recomputed_independently(items, mode, tax):
    plan = _plan_for(mode)
    groups = [Group(i, "h", "A", 1, d, s, ccy, {"destination": f"D{i}", "band": "all"}, count=1, units=60,
                    amount=amt) for i, ((d, s), ccy, amt) in enumerate(items)]
    drafts = draft_documents(groups, [], plan=plan, invoice_currency="GBP", tax_kind=tax[0], tax_rate=tax[1],
                             fx=_fx_table(), last_day=date(2026, 3, 31))
    rounding = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "up": "ROUND_UP", "down": "ROUND_DOWN"}[mode]
    by_key = {g.key: g for g in groups}
    for ln in drafts.lines:  # each line, recomputed from its group with plain Decimal
        g = by_key[ln.line_key]
        exact = g.amount * Decimal("0.8511") if g.currency == "EUR" else g.amount
        assert ln.amount == exact.quantize(Decimal("0.01"), rounding=rounding)
        assert ln.netted == ((g.direction, g.service) == ("outbound", "voice"))
        assert ln.stream == ("netting" if ln.netted else "traffic")  # inbound sms: no stream, so the first
    for inv in drafts.invoices:
        assert inv.subtotal == sum((ln.amount for ln in inv.lines), Decimal(0))
        want_tax = (inv.subtotal * tax[1] / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert inv.tax.amount == want_tax and inv.total == inv.subtotal + want_tax
    if drafts.statement:
        s = drafts.statement
        assert s.payable == sum((ln.amount for ln in s.lines), Decimal(0))
        assert s.net == sum((i.subtotal for i in drafts.invoices), Decimal(0)) - s.payable
    assert len(drafts.lines) == len(groups)


def test_route_defaults():
    plan = _plan_for()
    a = plan.agreements[0]
    assert route(a, "inbound", "voice") == ("traffic", False)
    assert route(a, "inbound", "sms") == ("traffic", False)  # not selected: the first stream
    assert route(a, "outbound", "voice") == ("netting", True)
    assert route(None, "inbound", "voice") == ("main", False)


def test_unscaled_decimal_sums_are_exact():
    """The cycle sums amounts as unscaled integers read from the decimal buffer: slices,
    negative values and large values give the same as Decimal arithmetic."""
    from decimal import Decimal

    import pyarrow as pa

    from icdsl.billing.cycles import _unscaled_int64

    values = [Decimal("1.500000"), Decimal("-0.000001"), Decimal("123456789.123456"), Decimal("0")]
    arr = pa.array(values, pa.decimal128(18, 6))
    assert _unscaled_int64(arr).to_pylist() == [1500000, -1, 123456789123456, 0]
    assert _unscaled_int64(arr.slice(1, 2)).to_pylist() == [-1, 123456789123456]
    assert _unscaled_int64(pa.array([Decimal("1"), None], pa.decimal128(18, 6))) is None
    huge = pa.array([Decimal("999999999999.999999")] * 10_000, pa.decimal128(18, 6))
    assert _unscaled_int64(huge) is None  # the sum could leave int64: the Decimal path is used
