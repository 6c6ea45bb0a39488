"""Minimum commitments: shortfall lines and mid-period progress."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from charges_fixtures import agreement, charge, ctx, month, usage

from icdsl.charges import commitment, tiers
from icdsl.charges.context import CycleUsage
from icdsl.charges.evaluate import evaluate_cycle
from icdsl.charges.lines import ChargeHold
from icdsl.charges.periods import Days
from icdsl.plan.model import Tier


def commit(value, unit, period="month", scope=(), **opts):
    return charge("commitment", "Minimum", ("amount", (D(value), unit)), ("period", period),
                  *((f"option:{k}", v) for k, v in opts.items()), scope=scope)


def test_money_shortfall_is_its_own_line():
    # committed 20,000.00 per month; traffic 15,000.00 + surcharges 1,234.56 = 16,234.56 -> shortfall 3,765.44
    c = commit("20000", "EUR")
    u = usage(records=10, seconds=600, amount="15000.00", surcharges="1234.56")
    (ln,) = commitment.evaluate(c, ctx(agreement(c), month(2026, 3), usage=(u,)))
    assert ln.amount == D("3765.44") and ln.stage == "commitment" and ln.line_kind == "commitment"
    assert ln.details["actual"] == "16234.56" and ln.details["committed"] == "20000"
    # reached: nothing
    u = usage(amount="20000.00")
    assert commitment.evaluate(c, ctx(agreement(c), month(2026, 3), usage=(u,))) == []


def test_money_commitment_is_measured_after_discounts():
    t = (Tier(D(1000), percent=D(10)),)
    disc = charge("volume_discount", "Discount", ("mode", "retroactive"), ("on", "minutes"), ("period", "cycle"),
                  ("tiers", t))
    c = commit("10000", "EUR")
    ag = agreement(disc, c)
    u = usage(records=100, seconds=120_000, amount="9500.00")  # 2,000 minutes
    lines = evaluate_cycle(ctx(ag, month(2026, 3), usage=(u,)))
    assert [(ln.kind, ln.amount) for ln in lines] == [("volume_discount", D("-950.00")), ("commitment", D("1450.00"))]
    # the discount alone, for the record
    assert tiers.evaluate_discount(disc, ctx(ag, month(2026, 3), usage=(u,)))[0].amount == D("-950.00")


def test_quantity_shortfall_valued_at_the_average_price():
    # 1,000,000 minutes per year committed, 600,000 used for 4,500.00: average 0.0075 per minute,
    # shortfall 400,000 minutes x 0.0075 = 3,000.00, on the December cycle
    c = commit("1000000", "minutes", period="year")
    ag = agreement(c)
    hist = tuple(CycleUsage(month(2026, m), (usage(records=1, seconds=3_000_000, amount="375.00"),))
                 for m in range(1, 12))  # 11 x 50,000 minutes
    dec = usage(records=1, seconds=3_000_000, amount="375.00")
    assert commitment.evaluate(c, ctx(ag, month(2026, 11), usage=(dec,), history=hist[:10])) == []
    (ln,) = commitment.evaluate(c, ctx(ag, month(2026, 12), usage=(dec,), history=hist))
    assert ln.amount == D("3000.00")
    assert ln.details["shortfall"] == "400000" and ln.details["cycles"] == 12


def test_quantity_shortfall_without_traffic_holds_the_cycle():
    c = commit("1000", "minutes", period="cycle")
    with pytest.raises(ChargeHold, match="cannot be valued"):
        commitment.evaluate(c, ctx(agreement(c), month(2026, 3)))


def test_waived_shortfall_is_shown_not_charged():
    c = commit("500", "EUR", shortfall="waived")
    (ln,) = commitment.evaluate(c, ctx(agreement(c), month(2026, 3), usage=(usage(amount="120.00"),)))
    assert ln.amount == D("0.00") and ln.details["waived_amount"] == "380" and ln.dimensions["waived"] is True


def test_partial_period_in_full_or_prorated():
    # agreement from 2026-03-10: March is committed in full (5,000.00), or 22/31 with prorate daily:
    # 5,000 x 22/31 = 3,548.387... -> shortfall with 1,000.00 used = 2,548.39
    c = commit("5000", "EUR")
    ag = agreement(c, start=date(2026, 3, 10))
    assert commitment.evaluate(c, ctx(ag, month(2026, 3), usage=(usage(amount="1000"),)))[0].amount == D("4000.00")
    c = commit("5000", "EUR", prorate="daily")
    ag = agreement(c, start=date(2026, 3, 10))
    assert commitment.evaluate(c, ctx(ag, month(2026, 3), usage=(usage(amount="1000"),)))[0].amount == D("2548.39")


def test_progress_mid_period():
    # 20,000.00 per month; on 15 April (15 of 30 days) 8,000.00 so far: 40% reached, 10,000.00 expected
    c = commit("20000", "EUR")
    p = commitment.progress(c, D("8000.00"), Days(date(2026, 4, 1), date(2026, 5, 1)), date(2026, 4, 15))
    assert (p.percent, p.expected, p.expected_percent, p.on_track) == (D("40.00"), D("10000"), D("50"), False)
    assert p.shortfall_now == D("12000") and p.elapsed_days == 15 and p.period_days == 30
    p = commitment.progress(c, D("21000"), Days(date(2026, 4, 1), date(2026, 5, 1)), date(2026, 4, 30))
    assert p.on_track and p.percent == D("105.00") and p.shortfall_now == 0
