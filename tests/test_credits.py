"""Credit notes' amounts (icdsl.billing.credits): what a user types is the exact amount credited,
or refused with the reason; worked examples and properties."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icdsl.billing.credits import clean_reason, parse_amount
from icdsl.billing.errors import StoreError


@pytest.mark.parametrize(("text", "ccy", "value"), [
    ("125.40", "EUR", D("125.40")), (" 0.01 ", "EUR", D("0.01")), ("250.01000000", "EUR", D("250.01")),
    ("1000", "JPY", D("1000")), ("12.345", "BHD", D("12.345")), ("7", "GBP", D("7")),
])
def test_an_amount_is_read_exactly(text, ccy, value):
    assert parse_amount(text, ccy) == value


@pytest.mark.parametrize(("text", "ccy", "message"), [
    ("0.001", "EUR", "--amount 0.001: a positive amount in EUR with at most 2 decimals"),
    ("1.5", "JPY", "--amount 1.5: a positive amount in JPY with at most 0 decimals"),
    ("0", "EUR", "a positive amount"), ("-3.00", "EUR", "a positive amount"), ("NaN", "EUR", "a positive amount"),
    ("Infinity", "EUR", "a positive amount"), ("12,50", "EUR", "--amount '12,50' is not an amount (e.g. 125.40)"),
])
def test_what_is_not_an_amount_is_refused_with_the_reason(text, ccy, message):
    with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_amount(text, ccy)


@given(cents=st.integers(min_value=1, max_value=10**15), extra_zeros=st.integers(min_value=0, max_value=8))
def test_any_amount_in_cents_is_credited_to_the_cent(cents, extra_zeros):
    value = D(cents).scaleb(-2)
    text = f"{value:f}" + ("0" * extra_zeros if extra_zeros else "")
    assert parse_amount(text, "EUR") == value


@given(cents=st.integers(min_value=0, max_value=10**12), sub=st.integers(min_value=1, max_value=9))
def test_a_fraction_of_a_cent_is_never_rounded_away(cents, sub):
    with pytest.raises(StoreError, match="at most 2 decimals"):
        parse_amount(f"{D(cents).scaleb(-2) + D(sub).scaleb(-3):f}", "EUR")


def test_a_reason_is_one_short_line():
    assert clean_reason("  dispute  PD-2026-000001\naccepted ") == "dispute PD-2026-000001 accepted"
    with pytest.raises(StoreError, match="say why the invoice is credited"):
        clean_reason("   ")
    with pytest.raises(StoreError, match="longer than 600 characters"):
        clean_reason("x" * 601)
