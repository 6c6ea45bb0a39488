"""Usage models of billing platforms (issue 16): a price carried by each record (Lago's dynamic
charge model, ``price from field NAME in EUR [cents]``). Rated by both executors, which must
agree on every field; the amount is the field's decimal number read exactly, rounded once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icdsl.cycle.examples import run_examples
from icdsl.rating.row import explain
from icdsl.testing import build_plan, rate_both

PARTNER = 'partner LDYN "Lago dynamic" {\n  currency EUR\n}\n\n'


def _rules(scale: str = " cents", extra: str = "", rounding: str = "") -> str:
    return PARTNER + (
        'agreement "Dynamic" v1 with LDYN effective 2024-01-01 .. {\n' + rounding
        + f"  outbound api {{\n    price from field price in EUR{scale}\n{extra}  }}\n}}\n")


def _record(rid, price, units=20, **extra):
    rec = {"id": rid, "partner": "LDYN", "direction": "outbound", "service": "api", "b_number": "api",
           "start": "2024-03-04T10:00:00Z", "duration_s": 0, "units": units, **extra}
    if price is not None:
        rec["price"] = price
    return rec


def test_the_record_is_billed_its_own_price():
    """dynamic_service_spec.rb: 20 units whose events carry 40.2 cents cost 0.402."""
    cmp = rate_both(build_plan(_rules()), [_record(1, "40.2"), _record(2, "0"), _record(3, "-12.5")]).assert_agree()
    assert cmp.amounts == [Decimal("0.402000"), Decimal("0.000000"), Decimal("-0.125000")]
    out = cmp.row[0]
    assert (out.billed_units, out.rate, out.currency) == (20, "0.402", "EUR")


def test_a_missing_or_unreadable_price_is_a_located_reject():
    cmp = rate_both(build_plan(_rules()), [_record(1, None), _record(2, "forty"), _record(3, "NaN")]).assert_agree()
    assert [(r.reason, r.detail) for r in cmp.row] == [
        ("missing_field", "price is missing"),
        ("no_rate", "price is not a decimal number ('forty')"),
        ("no_rate", "price is not a decimal number ('NaN')"),
    ]


def test_explain_says_where_the_price_comes_from():
    record = _record(1, "40.2") | {"start": datetime(2024, 3, 4, 10, tzinfo=UTC)}
    text = "\n".join(explain(build_plan(_rules()), record))
    assert "price from field price: 40.2 / 10^2 = 0.402 EUR, the record's own price" in text
    assert "rounded once, half_up to 6 decimals: 0.402 EUR" in text


def test_the_connect_fee_a_cap_and_the_rounding_apply():
    rules = _rules("", "    connect fee 0.0100 EUR\n    at most 1.00 EUR per call\n",
                   "  rounding half_up to 2 decimals\n")
    cmp = rate_both(build_plan(rules), [_record(1, "0.404"), _record(2, "0.405"), _record(3, "7.25")]).assert_agree()
    # 0.0100 + 0.404 = 0.414 -> 0.41; 0.415 -> 0.42 (half up); 7.26 capped at 1.00
    assert cmp.amounts == [Decimal("0.41"), Decimal("0.42"), Decimal("1.00")]


_prices = st.one_of(
    st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), allow_nan=False, allow_infinity=False).map(str),
    st.integers(-10**9, 10**9),
    st.sampled_from(["", "abc", "1e3", " 12.5 ", None]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prices=st.lists(_prices, min_size=1, max_size=10),
    cents=st.booleans(),
    precision=st.integers(0, 6),
    mode=st.sampled_from(["half_up", "half_even", "up", "down"]),
    fee=st.sampled_from([None, "0.0100", "1.5"]),
    surcharge=st.booleans(),
)
def test_both_executors_agree_on_field_prices(prices, cents, precision, mode, fee, surcharge):
    """Any price text or number, in units or cents, any rounding, a connect fee, a per-record
    charge (the batch's exact path): both executors agree on every field and the amount is the
    price (plus the fee) rounded once."""
    extra = (f"    connect fee {fee} EUR\n" if fee else "") + ('    surcharge "Share" 10%\n' if surcharge else "")
    rules = _rules(" cents" if cents else "", extra, f"  rounding {mode} to {precision} decimals\n")
    cmp = rate_both(build_plan(rules), [_record(i, p) for i, p in enumerate(prices)]).assert_agree()
    for p, out in zip(prices, cmp.row, strict=True):
        if not out.ok:
            continue
        exact = Decimal(str(p).strip()).scaleb(-2 if cents else 0) + Decimal(fee or 0)
        assert abs(out.amount - exact) <= Decimal(1).scaleb(-precision)


CAPACITY = PARTNER + """agreement "Capacity" v1 with LDYN effective 2024-01-01 .. {
  outbound unit1 {
    price 0 EUR per message
  }
  outbound unit2 {
    price 0 EUR per message
  }
  outbound unit3 {
    price 0 EUR per message
  }
  tiered "unit1" volume on messages per cycle {
    up to 100: 10.00 EUR flat
    up to 200: 20.00 EUR flat
    above 200: 30.00 EUR flat
  }, of outbound unit1, capacity "Capacity"
  tiered "unit2" volume on messages per cycle {
    up to 1_000: 10.00 EUR flat
    up to 2_000: 20.00 EUR flat
    above 2_000: 30.00 EUR flat
  }, of outbound unit2, capacity "Capacity"
  tiered "unit3" volume on messages per cycle {
    up to 50: 10.00 EUR flat
    up to 100: 20.00 EUR flat
    above 100: 30.00 EUR flat
  }, of outbound unit3, capacity "Capacity"
}
"""
BOUNDS = {"unit1": (100, 200), "unit2": (1_000, 2_000), "unit3": (50, 100)}


def _tier(unit: str, q: int) -> int:
    return sum(q > b for b in BOUNDS[unit])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(st.integers(1, 300), st.integers(1, 3_000), st.integers(1, 150)))
def test_a_capacity_is_priced_at_the_highest_tier_any_unit_reaches(quantities):
    """Kill Bill's capacity: one line, at the price of the highest tier reached (10, 20, 30),
    of the first unit (as written) that reaches it; the others are named in its details."""
    units = dict(zip(("unit1", "unit2", "unit3"), quantities, strict=True))
    top = max(_tier(u, q) for u, q in units.items())
    first = next(u for u, q in units.items() if _tier(u, q) == top)
    traffic = "\n".join(f"  traffic outbound {u} {q} messages" for u, q in units.items())
    text = CAPACITY + (f'\nexample cycle "c" {{\n  period 2024-03\n{traffic}\n'
                       f'  expect line "{first}" {10 * (top + 1)}.00 EUR, total {10 * (top + 1)}.00 EUR\n}}\n')
    [res] = run_examples(build_plan(text))
    assert res.ok, (res.failures, res.error)
    [line] = res.lines
    assert sorted(x.split(":")[0] for x in line.details["capacity_others"]) == sorted(set(units) - {first})
