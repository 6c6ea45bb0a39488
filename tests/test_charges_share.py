"""Revenue shares (exact to the minor unit, largest remainder) and netting statements."""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction

import pytest
from charges_fixtures import agreement, charge, ctx, month, price, usage
from hypothesis import given, settings
from hypothesis import strategies as st

from icdsl.charges import netting, share
from icdsl.charges.context import Adjustment
from icdsl.charges.lines import ChargeError
from icdsl.plan.model import Money, Share, ShareTier

SPLIT = (Share("AGGR", fixed=price("0.0200", "message")), Share("CPX", percent=D(70)), Share("us", remainder=True))


def sms(n, amount):
    return usage("outbound", "sms", kind="count", records=n, units=n, amount=amount)


def test_language_reference_worked_example():
    # 26 messages for 36.00: AGGR 0.52, left 35.48, CPX 70% = 24.836, us 10.644 -> one cent short,
    # CPX has the larger remainder: 0.52 + 24.84 + 10.64 = 36.00
    parts = share.split(D("36.00"), SPLIT, "EUR", {"messages": Fraction(26)})
    assert [(p.party, p.amount) for p in parts] == [("AGGR", D("0.52")), ("CPX", D("24.84")), ("us", D("10.64"))]
    assert [p.exact for p in parts] == [Fraction(52, 100), Fraction(24836, 1000), Fraction(10644, 1000)]


def test_ties_go_to_the_party_listed_first():
    # 0.01 split 50/50: both remainders are 0.005: the first listed gets the cent
    parts = share.split(D("0.01"), (Share("A", percent=D(50)), Share("B", percent=D(50))), "EUR")
    assert [p.amount for p in parts] == [D("0.01"), D("0.00")]
    parts = share.split(D("0.01"), (Share("B", percent=D(50)), Share("A", percent=D(50))), "EUR")
    assert [(p.party, p.amount) for p in parts] == [("B", D("0.01")), ("A", D("0.00"))]
    # 0.02 split 50/25/25: exact 0.01, 0.005, 0.005; one cent missing, B and C tie: B (listed first)
    abc = (Share("A", percent=D(50)), Share("B", percent=D(25)), Share("C", remainder=True))
    assert [p.amount for p in share.split(D("0.02"), abc, "EUR")] == [D("0.01"), D("0.01"), D("0.00")]


def test_zero_decimal_currency():
    parts = share.split(D("1000"), (Share("A", percent=D("33.3")), Share("B", remainder=True)), "JPY")
    assert [p.amount for p in parts] == [D("333"), D("667")]


def test_fixed_shares_are_capped_at_the_amount():
    parts = share.split(D("0.30"), SPLIT, "EUR", {"messages": Fraction(26)})
    assert [p.amount for p in parts] == [D("0.30"), D("0.00"), D("0.00")]
    assert "capped" in parts[0].how


def test_shares_must_be_assigned():
    with pytest.raises(ChargeError, match="to nobody"):
        share.split(D("10.00"), (Share("A", percent=D(60)),), "EUR")


@settings(max_examples=300, deadline=None)
@given(cents=st.integers(-10**9, 10**12), currency=st.sampled_from(["EUR", "JPY", "BHD"]),
       pcts=st.lists(st.decimals(min_value=0, max_value=100, places=3), min_size=1, max_size=6),
       remainder=st.booleans(), fixed=st.lists(st.integers(0, 10**6), max_size=2), msgs=st.integers(0, 10**5))
def test_shares_add_up_to_the_amount(cents, currency, pcts, remainder, fixed, msgs):
    from icdsl.charges.lines import minor_units

    amount = D(cents).scaleb(-minor_units(currency))
    total = sum(pcts)
    if total > 100:
        pcts = [p * 100 / total for p in pcts]
        pcts = [D(p).quantize(D("0.001"), rounding="ROUND_DOWN") for p in pcts]
    parties = [Share(f"F{i}", fixed=price(str(D(f).scaleb(-4)), "message", currency=currency))
               for i, f in enumerate(fixed)]
    parties += [Share(f"P{i}", percent=p) for i, p in enumerate(pcts)]
    if remainder or sum(pcts) != 100:
        parties.append(Share("us", remainder=True))
    parts = share.split(amount, tuple(parties), currency, {"messages": Fraction(msgs)})
    assert sum(p.amount for p in parts) == amount
    assert [p.party for p in parts] == [s.party for s in parties]
    for p in parts:
        # every share within one minor unit of its exact value, on the amount's side of zero
        assert abs(Fraction(p.amount) - p.exact) < Fraction(1, 10 ** minor_units(currency))
        assert (p.amount >= 0) if amount >= 0 else (p.amount <= 0)


# --------------------------------------------------------------------------- lines and tiers


def rs(*params):
    return charge("revenue_share", "Premium SMS", *params)


def test_share_lines_per_party_and_statements():
    c = rs(("basis", "gross"), ("mode", "split"), ("shares", SPLIT), ("scope", ("outbound sms",)))
    lines = share.evaluate(c, ctx(agreement(c), month(2026, 3), usage=(sms(26, "36.00"),
                                                                        usage(amount="99.00"))))
    assert [(ln.dimensions["party"], ln.amount) for ln in lines] == [
        ("AGGR", D("0.52")), ("CPX", D("24.84")), ("us", D("10.64"))]
    assert all(ln.stage == "share" and ln.line_kind == "revenue_share" for ln in lines)
    st_ = share.party_statements(lines)
    assert st_[("CPX", "EUR")].total == D("24.84")


def test_tiered_share_applies_the_tier_reached_to_the_whole_amount():
    # docs/language.md: at 8,000 EUR net CPX gets 60% of 8,000; at 12,000 EUR, 70% of 12,000
    tiers = (ShareTier(Money(D(0), "EUR"), (Share("CPX", percent=D(60)), Share("us", percent=D(40)))),
             ShareTier(Money(D(10_000), "EUR"), (Share("CPX", percent=D(70)), Share("us", percent=D(30)))))
    c = rs(("basis", "net"), ("mode", "tiered"), ("tiers", tiers), ("scope", ()))
    ag = agreement(c)
    res = share.shares_of(c, ctx(ag, month(2026, 3), usage=(sms(100, "8500.00"),),
                                 adjustments=(Adjustment("outbound", "sms", D("500.00"), "EUR"),)))
    assert [(p.party, p.amount) for p in res[0].shares] == [("CPX", D("4800.00")), ("us", D("3200.00"))]
    assert res[0].amount == D("8000.00") and res[0].deducted == D("500.00")
    res = share.shares_of(c, ctx(ag, month(2026, 3), usage=(sms(100, "12000.00"),)))
    assert [(p.party, p.amount) for p in res[0].shares] == [("CPX", D("8400.00")), ("us", D("3600.00"))]
    assert res[0].tier == "from 10000 EUR"


# --------------------------------------------------------------------------- netting


def test_settlement_statement_nets_both_sides():
    svc_in = usage("inbound", "voice", amount="1234.567891")
    svc_out = usage("outbound", "voice", amount="987.654321")
    ag = agreement(netting=(("outbound", "voice"),))
    items = netting.traffic_items([svc_in, svc_out], [ag])
    assert [(i.side, i.amount) for i in items] == [("receivable", D("1234.57")), ("payable", D("987.65"))]
    (stmt,) = netting.settle("ORFR", items, "2026-03")
    assert (stmt.receivable, stmt.payable, stmt.net, stmt.payer) == (D("1234.57"), D("987.65"), D("246.92"), "partner")
    assert stmt.to_dict()["net"] == "246.92"


def test_revenue_share_due_to_the_partner_is_payable():
    c = rs(("basis", "gross"), ("mode", "split"),
           ("shares", (Share("ORFR", percent=D(85)), Share("us", remainder=True))), ("scope", ()))
    lines = share.evaluate(c, ctx(agreement(c), month(2026, 3), usage=(usage(amount="1000.00"),)))
    (stmt,) = netting.settle("ORFR", lines)
    assert stmt.payable == D("850.00") and stmt.receivable == D("150.00") and stmt.payer == "us"


amounts = st.decimals(min_value=-10**9, max_value=10**9, places=2)


@settings(max_examples=200, deadline=None)
@given(rec=st.lists(st.tuples(amounts, st.sampled_from(["EUR", "USD", "JPY"])), max_size=12),
       pay=st.lists(st.tuples(amounts, st.sampled_from(["EUR", "USD", "JPY"])), max_size=12))
def test_net_is_receivable_minus_payable_exactly(rec, pay):
    items = [netting.StatementItem("receivable", f"r{i}", a, c) for i, (a, c) in enumerate(rec)]
    items += [netting.StatementItem("payable", f"p{i}", a, c) for i, (a, c) in enumerate(pay)]
    stmts = netting.settle("X", items)
    assert sorted(s.currency for s in stmts) == sorted({c for _, c in rec + pay})
    for s in stmts:
        assert s.net == s.receivable - s.payable
        assert s.receivable == sum((a for a, c in rec if c == s.currency), D(0))
        assert s.payable == sum((a for a, c in pay if c == s.currency), D(0))
        assert len(s.receivable_items) + len(s.payable_items) == sum(1 for _, c in rec + pay if c == s.currency)
