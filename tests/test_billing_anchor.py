# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Billing cycles from an anchor day (`billing monthly from day 15`), percentage charges on
transaction records and a money commitment that counts fees, through a billing store (SQLite)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from test_billing_store import db_url, make_plan, store  # noqa: F401 - the fixtures (used as test parameters)

from icdsl.cycle.periods import parse_period, period_containing

RULES = """partner ANC "Anchor Payments" { currency EUR timezone "Europe/Paris" billing monthly from day 15 }
agreement "Anchor" v1 with ANC effective 2026-01-01 .. {
  outbound sms { price 0.0100 EUR per message }
  percentage "Card processing" 2.9% of payment {
    fixed 0.30 EUR per transaction
    maximum 5.00 EUR per transaction
    free 1 transactions
  }
  recurring "Platform" 100.00 EUR monthly, prorate none
  commit "Minimum spend" 200 EUR per cycle, counts all
}
"""
HEADER = "id,partner,direction,service,a_number,b_number,start,duration_s,event,value\n"


def rows() -> list[str]:
    out = []
    t0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    for i in range(40):  # one message a day, 10 March .. 18 April
        start = (t0 + timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(f"S{i:03d},ANC,outbound,sms,33612345678,33698765432,{start},,,")
    for i, (day, value) in enumerate([(16, "10.00"), (17, "100.00"), (20, "400.00")]):
        out.append(
            f"P{i},ANC,outbound,payment,33612345678,33698765432,2026-03-{day}T10:00:00Z,,payment,{value}"
        )
    return out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cycles_from_the_15th_with_transactions_and_a_commitment_counting_fees(store, tmp_path):
    plan, program = make_plan(tmp_path, RULES, "anchor.icd")
    store.load_plan(plan, program)
    f = tmp_path / "in" / "anc.csv"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(HEADER + "\n".join(rows()) + "\n", encoding="utf-8")
    store.ingest(f, None, plan)
    rep = store.run_cycle("ANC", "2026-03", plan)  # the cycle that starts in March: 15 March .. 14 April
    assert rep.status == "invoiced", [str(x) for x in rep.findings]
    lines = {ln.charge_name: ln for ln in store.charge_lines(rep.cycle_id)}
    # payments: 10.00 free (the first transaction); 100.00: 2.90 + 0.30 = 3.20; 400.00: 11.90 -> 5.00
    assert lines["Card processing"].amount == Decimal("8.20")
    # 31 messages (15 March .. 14 April) x 0.01 = 0.31; fees 100.00 + 8.20; counted: 108.51 -> 91.49 short
    assert lines["Minimum spend"].amount == Decimal("91.49")
    assert lines["Platform"].amount == Decimal("100.00")


def test_anchor_day_periods():
    p = parse_period("2026-03", "Europe/Paris", "monthly@15")
    assert (p.local_start, p.local_end, p.frequency, p.label) == (
        date(2026, 3, 15),
        date(2026, 4, 15),
        "monthly",
        "2026-03-15..2026-04-14",
    )
    # a day before the 15th belongs to the cycle that started the month before; across a year
    assert period_containing(date(2026, 1, 14), "monthly@15", "UTC").local_start == date(2025, 12, 15)
    assert period_containing(date(2026, 12, 20), "monthly@15", "UTC").local_end == date(2027, 1, 15)
    assert parse_period("2026-03-15..2026-04-14", "UTC", "monthly@15").frequency == "monthly"
    # day 1 is the calendar month
    assert parse_period("2026-03", "UTC", "monthly").label == "2026-03"
