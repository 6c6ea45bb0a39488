"""Tiers written by their ends (``up to 10``, ``up to 20``, ``above 20``), as Lago, Stripe and Kill
Bill write them: each tier includes its end, the next starts above it. Worked examples from
Lago's graduated and volume charge models, and properties that say exactly where the two
conventions differ (docs/charges.md, "Tier bounds")."""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction

from charges_fixtures import fee, price
from hypothesis import given, settings
from hypothesis import strategies as st

from icdsl.charges import tiers
from icdsl.plan.model import Tier


def up_to(*rows):
    """Tiers from (end or None, price per unit or None, flat fee or None): ends included."""
    out, lo = [], D(0)
    for end, unit, flat in rows:
        p = price(unit, "unit") if unit is not None else None
        f = fee(flat) if flat is not None else None
        out.append(Tier(lo, price=p, flat=f, exclusive=True, up_to=None if end is None else D(end)))
        lo = D(end) if end is not None else lo
    return tuple(out)


def starting(starts, rows):
    """The same prices written 'from N' at the given starts."""
    out = []
    for start, (_end, unit, flat) in zip(starts, rows, strict=True):
        out.append(
            Tier(
                D(start),
                price=price(unit, "unit") if unit is not None else None,
                flat=fee(flat) if flat is not None else None,
            )
        )
    return tuple(out)


ROWS = (("10", "1.00", "5.00"), ("20", "0.50", "3.00"), (None, "0.10", "2.00"))
LAGO = up_to(*ROWS)


def test_graduated_flat_fee_of_the_second_tier_from_the_11th_unit():
    # 10 units: 10 x 1.00 + 5.00 = 15.00 (the second tier's fee is not due: 10 is in the first)
    assert tiers.price_tiers(LAGO, Fraction(10), "graduated", "messages")[0] == 15
    # 11 units: 15.00 + 1 x 0.50 + 3.00 = 18.50
    assert tiers.price_tiers(LAGO, Fraction(11), "graduated", "messages")[0] == Fraction(37, 2)
    # 25 units: 15.00 + (10 x 0.50 + 3.00) + (5 x 0.10 + 2.00) = 15 + 8 + 2.5 = 25.50
    assert tiers.price_tiers(LAGO, Fraction(25), "graduated", "messages")[0] == Fraction(51, 2)
    # no usage: no tier reached, no flat fee (as Lago: a flat amount is not charged at zero)
    assert tiers.price_tiers(LAGO, Fraction(0), "graduated", "messages")[0] == 0
    # written 'from 0, from 10, from 20', 10 units reach the second tier: 15.00 + 3.00
    assert tiers.price_tiers(starting((0, 10, 20), ROWS), Fraction(10), "graduated", "messages")[0] == 18


def test_volume_the_end_is_in_its_tier():
    # 10 units: 10 x 1.00 + 5.00 = 15.00; 11 units: 11 x 0.50 + 3.00 = 8.50; 0: nothing
    assert tiers.price_tiers(LAGO, Fraction(10), "volume", "messages")[0] == 15
    assert tiers.price_tiers(LAGO, Fraction(11), "volume", "messages")[0] == Fraction(17, 2)
    assert tiers.price_tiers(LAGO, Fraction(0), "volume", "messages")[0] == 0
    # a fraction above the end is in the next tier: 10.5 x 0.50 + 3.00 = 8.25
    assert tiers.price_tiers(LAGO, Fraction(21, 2), "volume", "messages")[0] == Fraction(33, 4)


def test_retroactive_discount_by_ends():
    disc = (
        Tier(D(0), percent=D(0), exclusive=True, up_to=D(1000)),
        Tier(D(1000), percent=D(5), exclusive=True),
    )
    assert tiers.discount_tiers(disc, Fraction(1000), Fraction(200), "retroactive")[0] == 0
    assert tiers.discount_tiers(disc, Fraction(1001), Fraction(200), "retroactive")[0] == 10


quantities = st.fractions(min_value=0, max_value=40, max_denominator=4)


@settings(max_examples=200)
@given(q=quantities)
def test_graduated_conventions_differ_only_by_flat_fees_at_the_ends(q):
    """Graduated: the parts of each tier are the same either way; at a quantity exactly at an end
    (10, 20) 'from' charges the next tier's flat fee, 'up to' does not; at 0 'from 0' charges the
    first tier's fee, 'up to' nothing."""
    by_start = tiers.price_tiers(starting((0, 10, 20), ROWS), q, "graduated", "messages")[0]
    by_end = tiers.price_tiers(LAGO, q, "graduated", "messages")[0]
    extra = {Fraction(0): Fraction(5), Fraction(10): Fraction(3), Fraction(20): Fraction(2)}.get(
        q, Fraction(0)
    )
    assert by_start == by_end + extra


@settings(max_examples=200)
@given(n=st.integers(1, 40))
def test_volume_by_ends_is_from_the_next_whole_number(n):
    """Volume, whole quantities: 'up to 10, up to 20, above 20' bills as 'from 0, from 11, from 21'."""
    by_start = tiers.price_tiers(starting((0, 11, 21), ROWS), Fraction(n), "volume", "messages")[0]
    assert tiers.price_tiers(LAGO, Fraction(n), "volume", "messages")[0] == by_start


def test_labels_say_the_ends():
    assert tiers.tier_label(LAGO[0]) == "up to 10: 1.00 EUR per unit plus 5.00 EUR flat"
    assert tiers.tier_label(LAGO[2]).startswith("above 20: ")
    assert tiers.tier_text(LAGO[1], "messages").startswith("up to 20 messages: ")


# ------------------------------------------------------------------ tiers prorated over a partial period

LINEAR = (
    Tier(D(0), price=price("0.05", "unit")),
    Tier(D(1000), price=price("0.02", "unit")),
    Tier(D(5000), price=price("0.01", "unit")),
)


@settings(max_examples=200)
@given(q=st.fractions(min_value=0, max_value=20_000, max_denominator=7), days=st.integers(1, 31))
def test_prorated_bounds_scale_the_price_of_linear_tiers(q, days):
    """Bounds x f (f = days in force / days in the period): for prices per unit, the price of q is
    f x the price of q / f with the full bounds (the whole curve shrinks with the period)."""
    f = Fraction(days, 31)
    scaled = tiers.price_tiers(LINEAR, q, "graduated", "messages", None, f)[0]
    assert scaled == f * tiers.price_tiers(LINEAR, q / f, "graduated", "messages")[0]


def test_prorated_bounds_worked_example():
    # in force 15 of 31 days: 1,000 messages, the second tier from 15000/31: 1070/31
    got = tiers.price_tiers(LINEAR[:2], Fraction(1000), "graduated", "messages", None, Fraction(15, 31))[0]
    assert got == Fraction(1070, 31)
