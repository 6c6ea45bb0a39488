"""Tiered prices and volume discounts: worked examples to the last digit, boundaries, periods."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from fractions import Fraction

import pytest
from charges_fixtures import agreement, charge, ctx, fee, month, price, usage
from hypothesis import given
from hypothesis import strategies as st

from icdsl.charges import tiers
from icdsl.charges.context import CycleUsage
from icdsl.charges.lines import ChargeError
from icdsl.plan.model import Tier

STRIPE = (Tier(D(0), price=price("5.00", "unit")), Tier(D(5), price=price("4.00", "unit")),
          Tier(D(10), price=price("3.00", "unit")))


def tiered(mode, tier_list, on="messages", period="cycle", scope=()):
    return charge("tiered_price", "Tiers", ("mode", mode), ("on", on), ("period", period), ("tiers", tier_list),
                  scope=scope)


def sms(n: int, amount: str = "0"):
    return usage("outbound", "sms", kind="count", records=n, units=n, amount=amount)


# --------------------------------------------------------------------------- pricing functions


def test_stripe_example_graduated_and_volume():
    # 15 units, tiers 1-5 at 5.00, 6-10 at 4.00, 11+ at 3.00 (from 0 / from 5 / from 10):
    # graduated 5 x 5.00 + 5 x 4.00 + 5 x 3.00 = 60.00; volume 15 x 3.00 = 45.00
    assert tiers.price_tiers(STRIPE, Fraction(15), "graduated", "messages")[0] == 60
    assert tiers.price_tiers(STRIPE, Fraction(15), "volume", "messages")[0] == 45


def test_boundaries_from_is_inclusive_and_fractions_fall_by_value():
    # volume mode: 5 units reach 'from 5' (4.00 each) = 20.00; 4.999 stay in the first tier
    assert tiers.price_tiers(STRIPE, Fraction(5), "volume", "messages")[0] == 20
    assert tiers.price_tiers(STRIPE, Fraction(4999, 1000), "volume", "messages")[0] == Fraction(4999, 1000) * 5
    assert tiers.tier_index(STRIPE, Fraction(9999, 1000)) == 1
    assert tiers.tier_index(STRIPE, Fraction(10)) == 2
    # graduated: 7.5 units = 5 x 5.00 + 2.5 x 4.00 = 35.00
    assert tiers.price_tiers(STRIPE, Fraction(15, 2), "graduated", "messages")[0] == 35


def test_language_reference_example():
    # docs/language.md: graduated 650,000 minutes: 100,000 x 0.0100 + 400,000 x 0.0080 + 150,000 x 0.0060 = 5,100.00;
    # volume: 650,000 x 0.0060 = 3,900.00
    t = (Tier(D(0), price=price("0.0100", "minute")), Tier(D(100_000), price=price("0.0080", "minute")),
         Tier(D(500_000), price=price("0.0060", "minute")))
    assert tiers.price_tiers(t, Fraction(650_000), "graduated", "minutes")[0] == 5100
    assert tiers.price_tiers(t, Fraction(650_000), "volume", "minutes")[0] == 3900


def test_package_pricing_charges_every_started_package():
    # 10.00 per 100 minutes: 250 minutes = 3 started packages = 30.00; 200 = 20.00; 0 = 0
    t = (Tier(D(0), price=price("10.00", "minute", per=100)),)
    assert tiers.price_tiers(t, Fraction(250), "volume", "minutes")[0] == 30
    assert tiers.price_tiers(t, Fraction(200), "volume", "minutes")[0] == 20
    assert tiers.price_tiers(t, Fraction(0), "volume", "minutes")[0] == 0
    # graduated: first 1000 minutes in packages of 100 at 10.00, then 0.05 per minute:
    # 1234.5 minutes = 10 packages (100.00) + 234.5 x 0.05 (11.725) = 111.725
    t = (Tier(D(0), price=price("10.00", "minute", per=100)), Tier(D(1000), price=price("0.05", "minute")))
    assert tiers.price_tiers(t, Fraction(24690, 20), "graduated", "minutes")[0] == Fraction(111725, 1000)


def test_flat_fees_are_due_when_their_tier_is_reached():
    t = (Tier(D(0), flat=fee("50.00")), Tier(D(1000), flat=fee("80.00")), Tier(D(5000), price=price("0.01", "message")))
    # 0 messages: the from-0 flat fee is a base fee, due even without usage
    assert tiers.price_tiers(t, Fraction(0), "graduated", "messages")[0] == 50
    assert tiers.price_tiers(t, Fraction(999), "graduated", "messages")[0] == 50
    # 1000 reaches the second tier: 50 + 80 = 130
    assert tiers.price_tiers(t, Fraction(1000), "graduated", "messages")[0] == 130
    # 6000: 50 + 80 + 1000 x 0.01 = 140; volume mode: 6000 x 0.01 = 60; 1000 in volume mode: 80
    assert tiers.price_tiers(t, Fraction(6000), "graduated", "messages")[0] == 140
    assert tiers.price_tiers(t, Fraction(6000), "volume", "messages")[0] == 60
    assert tiers.price_tiers(t, Fraction(1000), "volume", "messages")[0] == 80


def test_a_price_per_unit_plus_a_flat_fee_in_each_tier():
    # Stripe's tiers with a unit and a flat amount: 1-5 at 5.00 + 10.00 flat, 6+ at 4.00 + 5.00 flat
    t = (Tier(D(0), price=price("5.00", "unit"), flat=fee("10.00")),
         Tier(D(5), price=price("4.00", "unit"), flat=fee("5.00")))
    # graduated, 8 units: 5 x 5.00 + 10.00 + 3 x 4.00 + 5.00 = 52.00
    amount, parts = tiers.price_tiers(t, Fraction(8), "graduated", "messages")
    assert amount == 52 and [p.amount for p in parts] == [35, 17]
    assert "+ 10.00 EUR flat" in parts[0].how
    # volume, 8 units: all at the tier reached, 8 x 4.00 + 5.00 = 37.00; nothing used: the base fee
    assert tiers.price_tiers(t, Fraction(8), "volume", "messages")[0] == 37
    assert tiers.price_tiers(t, Fraction(0), "graduated", "messages")[0] == 10


def test_unit_conversion_between_the_measure_and_the_price():
    # volume is measured in MB; a price per GB counts MB / 1024: 1536 MB at 2.00 per GB = 3.00
    t = (Tier(D(0), price=price("2.00", "GB")),)
    assert tiers.price_tiers(t, Fraction(1536), "volume", "volume")[0] == 3
    with pytest.raises(ChargeError, match="per GB cannot price minutes"):
        tiers.price_tiers(t, Fraction(1), "volume", "minutes")


def test_volume_discount_examples_from_the_language_reference():
    # 1,200,000 minutes for 8,400.00: retroactive 3% of 8,400.00 = 252.00;
    # incremental 3% x 8,400.00 x 200,000 / 1,200,000 = 42.00
    t = (Tier(D(1_000_000), percent=D(3)), Tier(D(5_000_000), percent=D(6)))
    assert tiers.discount_tiers(t, Fraction(1_200_000), Fraction(8400), "retroactive")[0] == 252
    assert tiers.discount_tiers(t, Fraction(1_200_000), Fraction(8400), "incremental")[0] == 42
    # below the first tier: nothing
    assert tiers.discount_tiers(t, Fraction(999_999), Fraction(8400), "retroactive")[0] == 0
    # 6,000,000 minutes for 42,000.00, incremental: 3% x 42,000 x 4/6 + 6% x 42,000 x 1/6 = 840 + 420 = 1,260.00
    assert tiers.discount_tiers(t, Fraction(6_000_000), Fraction(42_000), "incremental")[0] == 1260


@given(q=st.fractions(min_value=0, max_value=100_000, max_denominator=1000))
def test_graduated_is_never_above_first_tier_price_and_continuous(q):
    # graduated prices with decreasing unit prices are continuous and increasing in q
    t = (Tier(D(0), price=price("0.03", "minute")), Tier(D(100), price=price("0.02", "minute")),
         Tier(D(1000), price=price("0.01", "minute")))
    a, _ = tiers.price_tiers(t, q, "graduated", "minutes")
    b, _ = tiers.price_tiers(t, q + Fraction(1, 1000), "graduated", "minutes")
    assert 0 <= b - a <= Fraction(3, 100_000)
    assert a <= q * Fraction(3, 100)


# --------------------------------------------------------------------------- lines


def test_tiered_line_shows_the_tier_reached():
    c = tiered("graduated", STRIPE)
    lines = tiers.evaluate_tiered(c, ctx(agreement(c), month(2026, 3), usage=(sms(15),)))
    (ln,) = lines
    assert ln.amount == D("60.00") and ln.quantity == D("15") and ln.unit == "message"
    assert ln.dimensions["tier"] == "from 10: 3.00 EUR per unit"
    assert [p["amount"] for p in ln.details["tiers"]] == ["25", "20", "15"]
    assert ln.line_kind == "tiered"


def test_discount_is_its_own_negative_line():
    t = (Tier(D(1_000_000), percent=D(3)), Tier(D(5_000_000), percent=D(6)))
    c = charge("volume_discount", "Voice volume", ("mode", "retroactive"), ("on", "minutes"), ("period", "cycle"),
               ("tiers", t))
    u = usage(records=900_000, seconds=72_000_000, amount="8400.00")  # 1,200,000 minutes
    (ln,) = tiers.evaluate_discount(c, ctx(agreement(c), month(2026, 3), usage=(u,)))
    assert ln.amount == D("-252.00") and ln.stage == "discount" and ln.line_kind == "discount"
    assert ln.dimensions["tier"] == "from 1_000_000: 3%"


def test_period_to_date_lines_add_up_to_the_period_price():
    # graduated per quarter on monthly cycles: 3 + 4 + 8 = 15 units over the quarter; each line is
    # the price of the quarter to date minus what the earlier cycles billed; they add up to 60.00
    c = tiered("graduated", STRIPE, period="quarter")
    ag = agreement(c)
    jan = tiers.evaluate_tiered(c, ctx(ag, month(2026, 1), usage=(sms(3),)))
    assert jan[0].amount == D("15.00")  # 3 x 5.00
    hist = (CycleUsage(month(2026, 1), (sms(3),)),)
    feb = tiers.evaluate_tiered(c, ctx(ag, month(2026, 2), usage=(sms(4),), history=hist))
    assert feb[0].amount == D("18.00")  # 7 to date: 5 x 5.00 + 2 x 4.00 = 33.00, minus 15.00
    hist += (CycleUsage(month(2026, 2), (sms(4),)),)
    mar = tiers.evaluate_tiered(c, ctx(ag, month(2026, 3), usage=(sms(8),), history=hist))
    assert mar[0].amount == D("27.00")  # 15 to date: 60.00, minus 33.00
    assert jan[0].amount + feb[0].amount + mar[0].amount == D("60.00")
    # April starts a new quarter: history of Q1 does not count
    apr = tiers.evaluate_tiered(c, ctx(ag, month(2026, 4), usage=(sms(2),), history=hist))
    assert apr[0].amount == D("10.00")
    assert len({jan[0].key, feb[0].key, mar[0].key, apr[0].key}) == 4


def test_scope_limits_the_measure():
    c = tiered("volume", STRIPE, scope=(("outbound", "sms"),))
    u = (sms(15), usage("inbound", "sms", kind="count", records=100, units=100))
    assert tiers.evaluate_tiered(c, ctx(agreement(c), month(2026, 3), usage=u))[0].amount == D("45.00")


def test_measuring_periods():
    c = tiered("volume", STRIPE, period="contract_year")
    x = ctx(agreement(c, start=date(2025, 7, 15)), month(2026, 3))
    assert tiers.measuring_period("contract_year", x).label == "2025-07-15..2026-07-14"
    assert tiers.measuring_period("quarter", x).label == "2026-01-01..2026-03-31"
    assert tiers.measuring_period("cycle", x) == x.cycle
