"""A maximum cost per period (`at most 5000.00 EUR per month`): the usage above it as its own line."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal as D
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pytest
from charges_fixtures import agreement, charge, ctx, month, usage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icdsl.charges import cap, commitment
from icdsl.charges.context import CycleUsage
from icdsl.charges.evaluate import evaluate_cycle
from icdsl.charges.periods import Days
from icdsl.cycle import CycleInputs, run
from icdsl.cycle.examples import report, run_examples
from icdsl.plan.compiler import build
from icdsl.plan.model import Tier
from icdsl.plan.render import render_plan
from icdsl.rating.intake import normalize_record
from icdsl.rating.row import explain
from icdsl.testing import rate_both

VOICE = (("outbound", "voice"),)


def period_cap(value, period="month", scope=VOICE, currency="EUR"):
    return charge("usage_cap", "usage_cap", ("amount", (D(value), currency)), ("period", period), scope=scope)


def test_usage_above_the_cap_is_taken_off_on_its_own_line():
    # 6,000.00 of voice (of which 150.00 surcharges) against a cap of 5,000.00: -1,000.00; sms is not capped
    c = period_cap("5000.00")
    rows = (
        usage(records=10, seconds=600, amount="5850.00", surcharges="150.00"),
        usage(service="sms", kind="event", records=1000, units=1000, amount="20.00"),
    )
    (ln,) = cap.evaluate(c, ctx(agreement(c), month(2026, 3), usage=rows))
    assert ln.amount == D("-1000.00") and ln.stage == "cap" and ln.line_kind == "discount"
    assert ln.description == (
        "Cap: usage above 5,000.00 EUR per month, outbound voice, 2026-03-01..2026-03-31 "
        "(6,000.00 EUR measured)"
    )
    assert ln.details["measured"] == "6000" and ln.details["excess"] == "1000" and ln.scope == VOICE
    # at the cap, or under it: no line
    for amount in ("5000.00", "4999.99"):
        assert cap.evaluate(c, ctx(agreement(c), month(2026, 3), usage=(usage(amount=amount),))) == []


def test_cap_keeps_every_digit_until_the_line_is_rounded():
    # usage of 5,000.006 exact against a cap of 5,000.00: the excess 0.006 is kept exact in the details and
    # rounded once on the line (half up): -0.01
    c = period_cap("5000.00")
    (ln,) = cap.evaluate(c, ctx(agreement(c), month(2026, 3), usage=(usage(amount="5000.006"),)))
    assert ln.amount == D("-0.01") and ln.details["excess"] == "0.006"


def test_quarter_cap_spreads_over_its_cycles():
    # 12,000.00 per quarter: January 5,000.00 and February 6,000.00 are under it; March's 4,000.00
    # crosses it by 3,000.00; a cycle after the cap was reached takes all its usage off
    c = period_cap("12000.00", period="quarter")
    ag = agreement(c)
    jan = CycleUsage(month(2026, 1), (usage(amount="5000.00"),))
    feb = CycleUsage(month(2026, 2), (usage(amount="6000.00"),))
    assert cap.evaluate(c, ctx(ag, month(2026, 2), usage=feb.usage, history=(jan,))) == []
    (ln,) = cap.evaluate(c, ctx(ag, month(2026, 3), usage=(usage(amount="4000.00"),), history=(jan, feb)))
    assert (
        ln.amount == D("-3000.00")
        and ln.details["cycles"] == 3
        and ln.details["period"] == "2026-01-01..2026-03-31"
    )


def test_earlier_cap_lines_count_as_billed():
    # a cycle-based quarter: the first half-month cycle already capped 2,000.00 of 12,000.00
    c = period_cap("10000.00", period="quarter")
    ag = agreement(c)
    first = Days(month(2026, 1).start, month(2026, 1).start.replace(day=16))
    capped_first = cap.evaluate(c, ctx(ag, first, usage=(usage(amount="12000.00"),)))
    assert [ln.amount for ln in capped_first] == [D("-2000.00")]
    hist = (CycleUsage(first, (usage(amount="12000.00"),), lines=tuple(capped_first)),)
    second = Days(first.end, month(2026, 2).start)
    (ln,) = cap.evaluate(c, ctx(ag, second, usage=(usage(amount="700.00"),), history=hist))
    assert ln.amount == D("-700.00")


def test_cap_is_after_discounts_and_before_commitments():
    disc = charge(
        "volume_discount",
        "Discount",
        ("mode", "retroactive"),
        ("on", "minutes"),
        ("period", "cycle"),
        ("tiers", (Tier(D(1000), percent=D(10)),)),
    )
    c = period_cap("8000.00", scope=())
    m = charge("commitment", "Minimum", ("amount", (D("8500"), "EUR")), ("period", "month"))
    ag = agreement(disc, m, c)
    u = usage(records=100, seconds=120_000, amount="9500.00")  # 2,000 minutes: discount -950.00
    lines = evaluate_cycle(ctx(ag, month(2026, 3), usage=(u,)))
    # 9,500.00 - 950.00 = 8,550.00 -> capped at 8,000.00 (-550.00); the commitment sees 8,000.00: 500.00 short
    assert [(ln.kind, ln.amount) for ln in lines] == [
        ("volume_discount", D("-950.00")),
        ("usage_cap", D("-550.00")),
        ("commitment", D("500.00")),
    ]
    assert commitment.measure(
        m, ctx(ag, month(2026, 3), usage=(u,), lines=tuple(lines[:2])), month(2026, 3)
    ).actual == Fraction(8000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cents=st.lists(st.integers(0, 600_000), min_size=1, max_size=3),
    cap_cents=st.integers(1, 1_000_000),
    per=st.sampled_from(["month", "quarter"]),
)
def test_capped_total_is_min_of_uncapped_and_cap_per_period(cents, cap_cents, per):
    # consecutive monthly cycles, each with its usage, the lines of each cycle fed to the next as
    # history: after every cycle, billed to date = min(uncapped to date, cap) in the period
    c = period_cap(str(D(cap_cents) / 100), period=per)
    ag = agreement(c)
    hist: list[CycleUsage] = []
    uncapped = billed = D(0)
    for i, amount in enumerate(cents):
        days = month(2026, 1 + i)  # January .. March: one quarter
        rows = (usage(amount=str(D(amount) / 100)),)
        lines = evaluate_cycle(ctx(ag, days, usage=rows, history=tuple(hist)))
        if per == "month":
            uncapped = billed = D(0)
        uncapped += D(amount) / 100
        billed += D(amount) / 100 + sum((ln.amount for ln in lines), D(0))
        assert billed == min(uncapped, D(cap_cents) / 100)
        assert all(ln.amount < 0 for ln in lines)
        hist.append(CycleUsage(days, rows, lines=tuple(lines)))


# ---------------------------------------------------------------- the language: docs, example, plan, explain
DOCS = Path(__file__).parent.parent / "docs"


def _block(doc: str, title: str) -> str:
    blocks = re.findall(r"```icd\n(.*?)```", (DOCS / doc).read_text(encoding="utf-8"), re.S)
    return next(b for b in blocks if title in b)


@pytest.fixture(scope="module")
def doc_plan(tmp_path_factory):
    d = tmp_path_factory.mktemp("caps")
    f = d / "caps.icd"
    f.write_text(_block("language.md", "Capped satellite traffic"), encoding="utf-8")
    plan, _program, diags = build([f], root=d)
    assert plan is not None, [str(x) for x in diags]
    return plan


def test_the_reference_example_passes_icdsl_test(doc_plan):
    results = run_examples(doc_plan)
    assert len(results) == 2 and all(r.ok for r in results), report(results)  # the record and the cycle
    # charges.md carries the same cycle example
    assert _block("charges.md", "January: voice above the monthly cap").strip() in _block(
        "language.md", "Capped satellite traffic"
    )


def test_the_caps_compile_to_cycle_charges_shown_by_plan(doc_plan):
    (ag,) = doc_plan.agreements
    caps = [
        (c.name, c.applies_to, c.param("amount"), c.param("period"))
        for c in ag.charges
        if c.kind == "usage_cap"
    ]
    assert caps == [
        ("Cap outbound voice", VOICE, (D("5000.00"), "EUR"), "month"),
        ("Cap", (), (D("12000.00"), "EUR"), "quarter"),
    ]
    text = render_plan(doc_plan)
    assert 'charge usage_cap "Cap outbound voice" for outbound voice' in text


def test_explain_says_the_period_cap_applies_at_the_cycle(doc_plan):
    rec = {
        "id": "1",
        "partner": "SATCO",
        "direction": "outbound",
        "service": "voice",
        "b_number": "881612345678",
        "start": "2026-03-04T09:15:00Z",
        "duration_s": 300,
    }
    text = "\n".join(explain(doc_plan, normalize_record(rec)))
    assert (
        'at most 5000.00 EUR per month: the period cap applies at the cycle (a line "Cap outbound voice" '
        "takes off the usage above it); this record keeps its amount"
    ) in text
    assert (
        "at most 12000.00 EUR per quarter" in text and "rounded once, half_up to 6 decimals: 0.05 EUR" in text
    )


def test_both_executors_rate_records_under_a_period_cap_alike(doc_plan):
    recs = [
        {
            "id": str(i),
            "partner": "SATCO",
            "direction": "outbound",
            "service": "voice",
            "b_number": "881612345678",
            "start": "2026-03-04T09:15:00Z",
            "duration_s": s,
        }
        for i, s in enumerate((0, 59, 3_600_000))
    ]
    cmp = rate_both(doc_plan, recs).assert_agree()
    assert cmp.amounts == [D("0"), D("0.010000"), D("600.000000")]  # the period cap never touches a record


def test_the_cycle_engine_puts_the_cap_on_the_invoice(tmp_path):
    # two 60-minute calls at 1.00 per minute (120.00) under a cap of 100.00 per month, and a message
    # (0.10, not capped): traffic 120.00 + 0.10, cap -20.00, subtotal 100.10 = the sum of the lines
    (tmp_path / "r.icd").write_text(
        'partner SATCO "Sat" {\n  currency EUR\n}\n'
        'agreement "Capped" v1 with SATCO effective 2026-01-01 .. {\n'
        "  outbound voice {\n    price 1.0000 EUR per minute\n    at most 100.00 EUR per month\n  }\n"
        "  outbound sms {\n    price 0.1000 EUR per message\n  }\n}\n",
        encoding="utf-8",
    )
    plan, _program, diags = build([tmp_path / "r.icd"], root=tmp_path)
    assert plan is not None, [str(x) for x in diags]
    start = datetime(2026, 3, 4, 9, 15, tzinfo=UTC)
    rows = [
        {
            "id": rid,
            "partner": "SATCO",
            "direction": "outbound",
            "service": svc,
            "b_number": "881612345678",
            "start": start,
            "duration_s": secs,
        }
        for rid, svc, secs in (("1", "voice", 3600), ("2", "voice", 3600), ("3", "sms", 0))
    ]
    result = run(CycleInputs.of(plan, "SATCO", "2026-03", pa.Table.from_pylist(rows)))
    (inv,) = result.drafts.invoices
    got = [(ln.kind, ln.service, ln.amount) for ln in inv.lines]
    assert got == [
        ("traffic", "sms", D("0.10")),
        ("traffic", "voice", D("120.00")),
        ("discount", "voice", D("-20.00")),
    ]
    assert inv.lines[-1].description.startswith("Cap: usage above 100.00 EUR per month, outbound voice")
    assert inv.subtotal == sum(ln.amount for ln in inv.lines) == D("100.10")
