"""Percentage charges as payment and usage billing platforms write them (a percentage of each
transaction's value, a fixed amount, a minimum and a maximum per transaction, free allowances),
and percentage tiers with a flat amount per tier (graduated percentage). Worked examples to the
cent and properties against the platforms' aggregate formulas."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from fractions import Fraction

import pytest
from charges_fixtures import agreement, charge, ctx, fee, month
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from icdsl.charges import percentage, tiers
from icdsl.charges.context import EventRecord
from icdsl.charges.evaluate import evaluate_cycle
from icdsl.charges.lines import ChargeHold
from icdsl.plan.model import Tier

F = Fraction


def terms(rate="2.9", fixed="0.30", minimum="0.50", maximum="5.00", free_count=None, free_value=None):
    def f(x):
        return None if x is None else F(D(x))

    return percentage.Terms(F(D(rate)), f(fixed) or F(0), f(minimum), f(maximum), free_count, f(free_value))


def amounts(t, values):
    return [p.amount for p in percentage.price_transactions(t, [F(D(v)) for v in values])]


def test_worked_example_free_allowance_whichever_ends_first():
    # free: the first 2 transactions or 50.00, whichever ends first. 20.00 free (30.00 left);
    # 40.00 charged on 10.00 (the value allowance ends): 0.29 + 0.30 = 0.59; 10.00: 0.59;
    # 300.00: 8.70 + 0.30 = 9.00 -> maximum 5.00. Total 6.18
    got = amounts(terms(free_count=2, free_value="50.00"), ["20.00", "40.00", "10.00", "300.00"])
    assert got == [0, F("0.59"), F("0.59"), 5]
    assert sum(got) == F("6.18")
    # the count ends first: 2 transactions of 5.00 use it, the third is charged in full
    got = amounts(terms(free_count=2, free_value="50.00", minimum=None), ["5.00", "5.00", "10.00"])
    assert got == [0, 0, F("0.59")]
    # a minimum per transaction: 1.00 x 2.9% + 0.30 = 0.329 -> 0.50
    assert amounts(terms(), ["1.00"]) == [F("0.50")]


def test_lago_percentage_without_allowances():
    # 1.3% of 3 events worth 100, 200, 300 (600), plus 2.00 per event: 7.80 + 6.00 = 13.80
    t = terms(rate="1.3", fixed="2", minimum=None, maximum=None)
    assert sum(amounts(t, ["100", "200", "300"])) == F("13.80")


values = st.lists(st.decimals(0, 1000, places=2), min_size=0, max_size=12)


@settings(max_examples=150)
@given(vs=values, n=st.integers(1, 5))
def test_free_count_matches_the_aggregate_formula(vs, n):
    """Count allowance only, no minimum/maximum: rate x (value after the first n) + fixed x (count - n)."""
    t = terms(rate="2.5", fixed="0.10", minimum=None, maximum=None, free_count=n)
    charged = [F(v) for v in vs[n:]]
    expected = sum(charged, F(0)) * F(25, 1000) + F(1, 10) * len(charged)
    assert sum(amounts(t, vs), F(0)) == expected


@settings(max_examples=150)
@given(vs=values, free=st.decimals(1, 2000, places=2))
def test_free_value_matches_the_aggregate_formula(vs, free):
    """Value allowance only, no minimum/maximum: rate x max(0, total - free) + fixed x the
    transactions not wholly free (Lago's aggregate formula; once the free value is used up, even
    a transaction of 0 is charged its fixed amount)."""
    t = terms(rate="2.5", fixed="0.10", minimum=None, maximum=None, free_value=str(free))
    running, not_free = F(0), 0
    for v in vs:  # not wholly free: the free value was used up before it, or it goes beyond it
        before, running = running, running + F(v)
        if before >= F(free) or running > F(free):
            not_free += 1
    expected = max(F(0), sum((F(v) for v in vs), F(0)) - F(free)) * F(25, 1000) + F(1, 10) * not_free
    assert sum(amounts(t, vs), F(0)) == expected


@settings(max_examples=150)
@given(vs=values, n=st.integers(0, 4))
def test_every_charged_transaction_is_within_minimum_and_maximum(vs, n):
    t = terms(free_count=n or None)
    for p in percentage.price_transactions(t, [F(v) for v in vs]):
        assert p.free or F("0.50") <= p.amount <= 5


CARD = charge(
    "percentage",
    "Card processing",
    ("rate", D("2.9")),
    ("event", "payment"),
    ("fixed", fee("0.30")),
    ("minimum", fee("0.50")),
    ("maximum", fee("5.00")),
    ("free_count", 2),
    ("free_value", fee("50.00")),
)


def payment(i: int, day: int, value: str | None) -> EventRecord:
    return EventRecord(f"p{i}", "payment", date(2026, 3, day), 1, "ORFR", value, i)


def test_a_cycle_line_rounded_once_with_the_transactions_in_details():
    evs = [
        payment(1, 2, "20.00"),
        payment(2, 3, "40.00"),
        payment(3, 4, "10.00"),
        payment(4, 5, "300.00"),
        payment(5, 1, "1.00"),
    ]  # the 1st of March comes first: free, 49.00 of the value left
    lines = evaluate_cycle(ctx(agreement(CARD), month(2026, 3), events=evs))
    (line,) = lines
    # 1.00 free; 20.00 free (the count is used up); 40.00: 2.9% x 40 = 1.16 + 0.30 = 1.46; 10.00: 0.59;
    # 300.00: 5.00 (maximum). 1.46 + 0.59 + 5.00 = 7.05
    assert line.amount == D("7.05") and line.currency == "EUR" and line.quantity == 5
    assert line.details["free"] == 2 and len(line.details["per_transaction"]) == 5
    assert line.line_kind == "event" and len(line.applications) == 5
    # billed already (a rerun in a later cycle): nothing again
    again = evaluate_cycle(
        ctx(agreement(CARD), month(2026, 3), events=evs, billed={a: D("0") for a in line.applications})
    )
    assert again == []


def test_a_transaction_without_a_value_holds_the_cycle():
    with pytest.raises(ChargeHold, match="has no value"):
        evaluate_cycle(ctx(agreement(CARD), month(2026, 3), events=[payment(1, 2, None)]))
    with pytest.raises(ChargeHold, match="not a decimal number"):
        evaluate_cycle(ctx(agreement(CARD), month(2026, 3), events=[payment(1, 2, "n/a")]))


# ------------------------------------------------------------------ graduated percentage

GRAD_PCT = (
    Tier(D(0), percent=D(1), flat=fee("200"), exclusive=True, up_to=D(10)),
    Tier(D(10), percent=D(2), flat=fee("300"), exclusive=True, up_to=D(20)),
    Tier(D(20), percent=D(3), flat=fee("400"), exclusive=True),
)


def test_graduated_percentage_with_a_flat_amount_per_tier():
    # Lago's graduated percentage (ranges 0-10, 11-20, 21+): 22 of value:
    # 200 + 1% x 10 + 300 + 2% x 10 + 400 + 3% x 2 = 900.36
    assert tiers.price_tiers(GRAD_PCT, F(22), "graduated", "revenue")[0] == F("900.36")
    # 10 of value stays in the first range: 200 + 0.10
    assert tiers.price_tiers(GRAD_PCT, F(10), "graduated", "revenue")[0] == F("200.10")
    # nothing: no range reached
    assert tiers.price_tiers(GRAD_PCT, F(0), "graduated", "revenue")[0] == 0


def test_explain_says_how_a_transaction_is_counted(tmp_path):
    from icdsl.cli.main import app

    rules = tmp_path / "rules.icd"
    rules.write_text(
        """partner PAYCO "Payments Ltd" { currency EUR timezone "Europe/Paris" }
agreement "Card fees" v1 with PAYCO effective 2026-01-01 .. {
  outbound sms { price 0.01 EUR per message }
  percentage "Card processing" 2.9% of payment {
    fixed 0.30 EUR per transaction
    maximum 5.00 EUR per transaction
    free 2 transactions
  }
}
""",
        encoding="utf-8",
    )
    res = CliRunner().invoke(
        app,
        [
            "explain",
            str(rules),
            "--root",
            str(tmp_path),
            "--record",
            "partner=PAYCO direction=outbound service=payment b_number=123456 "
            "start=2026-03-04T09:15:00+01:00 value=40.00",
        ],
    )
    assert res.exit_code == 0, res.stdout
    assert "2.9% x 40 + 0.3 = 1.46 EUR" in res.stdout and "the first 2 transactions" in res.stdout
