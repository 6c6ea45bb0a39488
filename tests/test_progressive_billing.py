"""Progressive billing (`progressive billing at ...`): interim invoices raised in a period in
progress as the usage to date passes a threshold, the final invoice deducting them, and a period
cap prorated over a partial period (`at most ... per month, prorate daily`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icdsl.cycle import CycleError, CycleInputs, run
from icdsl.cycle.interim import DEDUCTION, interim_of
from icdsl.cycle.progressive import check
from icdsl.testing import build_plan

RULES = """partner HEAVY "Heavy User" {
  currency EUR
  timezone "Europe/Paris"
  tax vat 20%
}

agreement "Billed as it goes" v1 with HEAVY effective 2026-01-01 .. {
  outbound voice {
    price 0.0100 EUR per minute
  }
  outbound sms {
    price 0.0300 EUR per message
  }
  recurring "Platform" 500.00 EUR monthly
  progressive billing at 10_000.00 EUR, 25_000.00 EUR
}
"""


def _calls(day: int, minutes: int, n: int, first_id: int = 0, *, hour: int = 10) -> list[dict]:
    start = datetime(2026, 3, day, hour, 0, tzinfo=UTC)
    return [{"id": str(first_id + i), "partner": "HEAVY", "direction": "outbound", "service": "voice",
             "b_number": "4420", "start": start + timedelta(seconds=i), "duration_s": minutes * 60}
            for i in range(n)]


def _sms(day: int, n: int, first_id: int) -> list[dict]:
    start = datetime(2026, 3, day, 10, 0, tzinfo=UTC)
    return [{"id": str(first_id + i), "partner": "HEAVY", "direction": "outbound", "service": "sms",
             "b_number": "4420", "start": start + timedelta(seconds=i), "duration_s": 0} for i in range(n)]


def _inputs(plan, rows, **kw) -> CycleInputs:
    return CycleInputs.of(plan, "HEAVY", "2026-03", pa.Table.from_pylist(rows), **kw)


@pytest.fixture(scope="module")
def plan():
    return build_plan(RULES)


def test_the_worked_example_of_the_reference(plan):
    # docs/language.md#progressive-billing: 1,050,000 minutes by 12 March (10,500.00 EUR passes
    # 10,000.00), 2,000,000 in all by 31 March (20,000.00: under 25,000.00)
    early = _calls(5, 1000, 1050)  # 1,050 calls of 1,000 minutes
    late = _calls(20, 1000, 950, first_id=5000)
    rows = early + late
    # on 4 March nothing is used yet; on 12 March the first threshold is passed
    assert check(_inputs(plan, rows), date(2026, 3, 4)).passed is None
    got = check(_inputs(plan, rows), date(2026, 3, 12))
    assert got.usage == D("10500.00") and got.passed == D("10000.00")
    (inv,) = got.invoices
    assert inv.kind == "interim" and [ln.kind for ln in inv.lines] == ["traffic"]
    assert (inv.subtotal, inv.tax.amount, inv.total) == (D("10500.00"), D("2100.00"), D("12600.00"))
    first = interim_of(inv, "INV-1", date(2026, 3, 12), got.passed)
    # later in March, still under 25,000.00: no second interim invoice
    again = check(_inputs(plan, rows), date(2026, 3, 25), [first])
    assert again.usage == D("20000.00") and again.passed is None and again.next_threshold == D("25000.00")
    # the final invoice deducts INV-1
    final = run(_inputs(plan, rows, interims=[first]))
    (fin,) = final.drafts.invoices
    assert [(ln.kind, ln.amount) for ln in fin.lines] == [
        ("traffic", D("20000.00")), ("recurring", D("500.00")), (DEDUCTION, D("-10500.00"))]
    assert fin.lines[-1].description == "Interim invoice INV-1: usage to 2026-03-12, already billed"
    assert (fin.subtotal, fin.tax.amount, fin.total) == (D("10000.00"), D("2000.00"), D("12000.00"))
    single = run(_inputs(plan, rows)).drafts.invoices[0]
    assert single.total == D("24600.00") == fin.total + inv.total
    assert single.subtotal == fin.subtotal + inv.subtotal and single.tax.amount == fin.tax.amount + inv.tax.amount


def test_a_second_interim_invoice_deducts_the_first(plan):
    rows = _calls(3, 1000, 1100) + _calls(10, 1000, 1500, first_id=5000)  # 11,000.00 then 26,000.00
    one = check(_inputs(plan, rows), date(2026, 3, 5))
    first = interim_of(one.invoices[0], "INV-1", date(2026, 3, 5), one.passed)
    two = check(_inputs(plan, rows), date(2026, 3, 11), [first])
    assert two.passed == D("25000.00")
    (inv,) = two.invoices
    assert [(ln.kind, ln.amount) for ln in inv.lines] == [("traffic", D("26000.00")), (DEDUCTION, D("-11000.00"))]
    assert inv.subtotal == D("15000.00") and inv.tax.amount == D("3000.00")
    second = interim_of(inv, "INV-2", date(2026, 3, 11), two.passed)
    # past the last threshold: no more interim invoices
    assert check(_inputs(plan, rows), date(2026, 3, 30), [first, second]).passed is None
    (fin,) = run(_inputs(plan, rows, interims=[first, second])).drafts.invoices
    assert [ln.amount for ln in fin.lines if ln.kind == DEDUCTION] == [D("-11000.00"), D("-15000.00")]
    assert fin.subtotal == D("500.00")  # the platform fee: the usage was billed on the interim invoices


def test_thresholds_passed_at_once_give_one_invoice(plan):
    rows = _calls(3, 1000, 3000)  # 30,000.00 on the 3rd
    got = check(_inputs(plan, rows), date(2026, 3, 3))
    assert got.passed == D("25000.00") and len(got.invoices) == 1


def test_a_check_is_refused_where_it_makes_no_sense(plan):
    rows = _calls(3, 1000, 1100)
    with pytest.raises(CycleError, match="is not a day of 2026-03"):
        check(_inputs(plan, rows), date(2026, 4, 1))
    got = check(_inputs(plan, rows), date(2026, 3, 5))
    first = interim_of(got.invoices[0], "INV-1", date(2026, 3, 5), got.passed)
    with pytest.raises(CycleError, match="already billed the usage to 2026-03-05"):
        check(_inputs(plan, rows), date(2026, 3, 4), [first])
    other = build_plan(RULES.replace("  progressive billing at 10_000.00 EUR, 25_000.00 EUR\n", ""))
    with pytest.raises(CycleError, match="bills progressively"):
        check(_inputs(other, rows), date(2026, 3, 5))


def test_records_after_the_day_checked_are_left_out(plan):
    # a call at 23:30 UTC on 11 March is on 12 March in Paris: not in the usage to 11 March
    rows = _calls(5, 1000, 999) + _calls(11, 1000, 2, first_id=5000, hour=23)
    assert check(_inputs(plan, rows), date(2026, 3, 11)).usage == D("9990.00")
    assert check(_inputs(plan, rows), date(2026, 3, 12)).usage == D("10010.00")


PROPERTY_RULES = (RULES.replace("tax vat 20%", "tax vat 19.6%").replace("0.0100 EUR per minute", "0.0137 EUR per minute")
                  .replace("10_000.00 EUR, 25_000.00 EUR", "50.00 EUR, 120.00 EUR, 200.00 EUR"))
RAISED = []  # how many interim invoices each example raised (the property is not vacuous)


@pytest.fixture(scope="module")
def low_plan():
    plan = build_plan(PROPERTY_RULES)
    yield plan
    assert sum(1 for n in RAISED if n) >= 5, RAISED


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(days=st.lists(st.tuples(st.integers(1, 31), st.integers(1, 9000), st.integers(0, 300)), min_size=1,
                     max_size=6),
       checks=st.lists(st.integers(1, 31), min_size=1, max_size=5, unique=True))
def test_interim_plus_final_is_a_single_invoice(low_plan, days, checks):
    """Whatever the traffic and the days checked: final + interim invoices = one invoice, for
    the subtotal, the tax and the total, exactly (thresholds 50, 120 and 200 EUR, VAT 19.6 %)."""
    plan = low_plan
    rows = []
    for nid, (day, seconds, sms) in enumerate(days):
        rows += [{"id": str(nid), "partner": "HEAVY", "direction": "outbound", "service": "voice",
                  "b_number": "4420", "start": datetime(2026, 3, day, 12, tzinfo=UTC), "duration_s": seconds * 97}]
        rows += _sms(day, sms, 10_000 + nid * 1000)
    interims = []
    for n, day in enumerate(sorted(checks), 1):
        got = check(_inputs(plan, rows), date(2026, 3, day), interims)
        interims += [interim_of(inv, f"INV-{n}", date(2026, 3, day), got.passed) for inv in got.invoices]
    RAISED.append(len(interims))
    finals = run(_inputs(plan, rows, interims=interims)).drafts.invoices
    single = run(_inputs(plan, rows)).drafts.invoices
    assert sum(i.subtotal for i in finals) + sum(i.subtotal for i in interims) == sum(i.subtotal for i in single)
    assert sum(i.total for i in finals) + sum(i.subtotal + i.tax for i in interims) == sum(i.total for i in single)
    assert sum(i.tax.amount for i in finals) + sum(i.tax for i in interims) == sum(i.tax.amount for i in single)
    for inv in finals:
        assert inv.subtotal == sum(ln.amount for ln in inv.lines)


# --------------------------------------------------------------------------- a prorated period cap

CAPPED = """partner LATE "Late Starter" {
  currency EUR
}

agreement "Capped from mid-March" v1 with LATE effective 2026-03-16 .. {
  outbound voice {
    price 1.0000 EUR per minute
    at most 5000.00 EUR per month, prorate daily
  }
}
"""


@pytest.mark.parametrize(("prorate", "line"), [(True, D("-419.35")), (False, None)])
def test_a_period_cap_prorated_over_a_first_month(prorate, line):
    # 3,000 minutes at 1.00 from 16 March: the cap is 5000.00 x 16/31 = 2580.645161...;
    # 3000.00 - 2580.645161... = 419.354838... -> -419.35 (without the option: under 5000.00)
    plan = build_plan(CAPPED if prorate else CAPPED.replace(", prorate daily", ""))
    rows = [{"id": str(i), "partner": "LATE", "direction": "outbound", "service": "voice", "b_number": "4420",
             "start": datetime(2026, 3, 20, 9, tzinfo=UTC) + timedelta(minutes=i), "duration_s": 3600}
            for i in range(50)]
    (inv,) = run(CycleInputs.of(plan, "LATE", "2026-03", pa.Table.from_pylist(rows))).drafts.invoices
    caps = [ln for ln in inv.lines if ln.kind != "traffic"]
    if line is None:
        assert caps == []
        return
    (cap,) = caps
    assert cap.amount == line and inv.subtotal == D("2580.65") == sum(ln.amount for ln in inv.lines)
    assert "2,580.65 EUR (5,000.00 EUR prorated 16/31 days)" in cap.description
    assert cap.charge.details["cap_prorated"] == "5000.00 x 16/31 days = 80000/31 (~2580.645161290322) EUR"


def test_explain_says_what_progressive_billing_and_a_prorated_cap_do(plan):
    from icdsl.rating.row import explain

    record = {"id": "1", "partner": "HEAVY", "direction": "outbound", "service": "voice", "b_number": "4420",
              "start": datetime(2026, 3, 4, 9, 15, tzinfo=UTC), "duration_s": 300}
    text = "\n".join(explain(plan, record))
    assert ("progressive billing at 10000.00 EUR, 25000.00 EUR: this record counts in the usage of its period to "
            "date; an interim invoice is raised when that usage passes a threshold") in text
    capped = build_plan(CAPPED)
    record = dict(record, partner="LATE", start=datetime(2026, 3, 20, 9, tzinfo=UTC))
    text = "\n".join(explain(capped, record))
    assert "takes off the usage above it, prorated by the days in force in a partial period" in text


STREAMS = """partner HEAVY "Heavy User" {
  currency EUR
  timezone "Europe/Paris"
  tax vat 20%
}

agreement "Billed as it goes" v1 with HEAVY effective 2026-01-01 .. {
  outbound voice {
    price 0.0100 EUR per minute
  }
  outbound sms {
    price 0.0300 EUR per message
  }
  progressive billing at 100.00 EUR
  invoice streams {
    voice: outbound voice
    messages: outbound sms
  }
}

agreement "Billed as it goes" v2 with HEAVY effective 2026-03-15 .. amends v1 {
  outbound voice {
    price 0.0200 EUR per minute
  }
  outbound sms {
    price 0.0300 EUR per message
  }
  progressive billing at 100.00 EUR, 300.00 EUR
  invoice streams {
    voice: outbound voice
    messages: outbound sms
  }
}
"""


def test_interim_invoices_per_stream_and_across_versions():
    plan = build_plan(STREAMS)
    # 3 March: 6,000 minutes (60.00) and 2,000 messages (60.00): 120.00 passes 100.00 (v1's)
    rows = _calls(3, 100, 60) + _sms(3, 2000, 10_000)
    # 20 March, on v2: 10,000 minutes at 0.02 (200.00): 320.00 in all passes 300.00 (v2's)
    rows += _calls(20, 100, 100, first_id=50_000)
    one = check(_inputs(plan, rows), date(2026, 3, 5))
    assert one.passed == D("100.00") and [i.stream for i in one.invoices] == ["messages", "voice"]
    assert [i.subtotal for i in one.invoices] == [D("60.00"), D("60.00")]
    first = [interim_of(inv, f"INV-{n}", date(2026, 3, 5), one.passed) for n, inv in enumerate(one.invoices, 1)]
    two = check(_inputs(plan, rows), date(2026, 3, 21), first)
    assert (two.usage, two.passed) == (D("320.00"), D("300.00"))
    # only the voice stream has new usage: the messages stream nets to nothing and gets no invoice
    (voice,) = two.invoices
    assert voice.stream == "voice" and voice.subtotal == D("200.00")
    second = interim_of(voice, "INV-3", date(2026, 3, 21), two.passed)
    finals = run(_inputs(plan, rows, interims=[*first, second])).drafts.invoices
    assert {i.stream: i.subtotal for i in finals} == {"messages": D("0.00"), "voice": D("0.00")}
    assert {i.stream: i.total for i in finals} == {"messages": D("0.00"), "voice": D("0.00")}


def test_a_cumulative_tax_one_cent_off_its_own_subtotal_is_a_valid_en16931_invoice():
    """The second of two interim invoices billing 0.03 EUR each at 19.6 %: tax(0.06) - tax(0.03)
    = 0.01 - 0.01 = 0.00, where 19.6 % of its own 0.03 is 0.01. EN 16931 (BR-CO-17) accepts a
    VAT amount within one minor unit of rate x taxable amount: the invoice is valid."""
    from test_einvoice import BUYER_FR, errors, invoice

    from icdsl.cycle.amounts import compute_tax
    from icdsl.cycle.interim import cumulative_tax
    from icdsl.outputs.einvoice import ubl_xml

    first = compute_tax("vat", D("19.6"), D("0.03"), "EUR")
    second = cumulative_tax("vat", D("19.6"), D("0.06"), D("0.03"), first.amount, "EUR")
    assert (first.amount, second.amount, second.taxable) == (D("0.01"), D("0.00"), D("0.03"))
    assert compute_tax("vat", D("19.6"), D("0.03"), "EUR").amount == D("0.01")  # one cent off its own
    line = {"line_no": 1, "kind": "traffic", "description": "outbound voice", "quantity": D("13"), "unit": "minute",
            "amount": D("0.03"), "rate": None, "rate_unit": None, "currency": "EUR"}
    doc = invoice(tax_kind="vat", tax_rate=D("19.6"), tax_note=None, subtotal=D("0.03"), tax_amount=second.amount,
                  total=D("0.03") + second.amount, buyer=BUYER_FR, lines=[line])
    assert errors(ubl_xml(doc)) == []
