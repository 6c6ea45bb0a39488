"""Cycle charges that count amounts in several currencies (commitments, tiers and discounts on
revenue, revenue shares), converted at the fx rate in force on each cycle's last day, exactly;
net revenue shares (gross less refunds, credits and adjustments); descriptions that show
quantities with their unit. Worked examples to the cent."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal as D
from fractions import Fraction

import pytest
from charges_fixtures import SPAN, agreement, charge, ctx, fee, month, price, usage

from icdsl.charges import commitment, share, tiers
from icdsl.charges.context import Adjustment, CycleUsage, FxRate
from icdsl.charges.evaluate import evaluate_cycle
from icdsl.charges.lines import ChargeError, shown
from icdsl.plan.model import Money, Share, ShareTier, Tier

#: GBP -> EUR, by the first day each rate is in force
GBP_EUR = {date(2026, 1, 1): D("1.180000"), date(2026, 3, 1): D("1.175000")}


def rates(base, quote, day):
    if (base, quote) != ("GBP", "EUR"):
        return None
    found = [r for d, r in sorted(GBP_EUR.items()) if d <= day]
    return FxRate(base, quote, found[-1], day, "test") if found else None


def fx_agreement(*charges):
    return replace(agreement(*charges), fx="ecb")


def commit(value, unit, period="month"):
    return charge("commitment", "Minimum", ("amount", (D(value), unit)), ("period", period))


def gbp(amount, surcharges="0", **kw):
    return usage(currency="GBP", amount=amount, surcharges=surcharges, **kw)


# --------------------------------------------------------------------------- commitments


def test_money_commitment_counts_traffic_in_other_currencies():
    # 20,000.00 EUR per month. EUR traffic 12,000.00 + surcharges 234.56; GBP traffic 5,000.00 at
    # 1.175 (the rate in force on 31 March) = 5,875.00 EUR. Actual 18,109.56: shortfall 1,890.44.
    c = commit("20000", "EUR")
    eur = usage(records=10, seconds=600, amount="12000.00", surcharges="234.56")
    x = ctx(fx_agreement(c), month(2026, 3), usage=(eur, gbp("5000.00")), fx=rates)
    (ln,) = commitment.evaluate(c, x)
    assert ln.amount == D("1890.44") and ln.currency == "EUR"
    assert ln.details["actual"] == "18109.56"
    assert ln.details["fx"] == [{"amount": "5000", "currency": "GBP", "rate": "1.175000", "on": "2026-03-31",
                                 "converted": "5875", "into": "EUR", "source": "test"}]
    assert ln.description == ("Minimum: shortfall 1,890.44 EUR of 20,000.00 EUR committed (18,109.56 EUR reached), "
                              "2026-03-01..2026-03-31")


def test_each_cycle_converts_at_its_own_last_day_rate_and_nothing_is_rounded_before_the_line():
    # 5,000 EUR per quarter. January: 1,000.01 GBP at 1.18 = 1,180.0118; February nothing;
    # March: 2,000.00 GBP at 1.175 = 2,350.00 and 1,000.00 EUR. Actual 4,530.0118 (exact, never
    # rounded): shortfall 469.9882 -> 469.99 once, on the line.
    c = commit("5000", "EUR", period="quarter")
    hist = (CycleUsage(month(2026, 1), (gbp("1000.01"),)), CycleUsage(month(2026, 2), ()))
    x = ctx(fx_agreement(c), month(2026, 3), usage=(gbp("2000.00"), usage(amount="1000.00")), history=hist, fx=rates)
    (ln,) = commitment.evaluate(c, x)
    assert ln.details["actual"] == "4530.0118" and ln.details["shortfall"] == "469.9882"
    assert ln.amount == D("469.99")
    assert [(f["on"], f["rate"]) for f in ln.details["fx"]] == [("2026-01-31", "1.180000"), ("2026-03-31", "1.175000")]


def test_quantity_shortfall_average_price_counts_every_currency():
    # 100,000 minutes per month; 50,000 used: 30,000 for 300.00 EUR, 20,000 for 200.00 GBP
    # (= 235.00 EUR). Average 535.00 / 50,000 = 0.0107 EUR per minute; 50,000 x 0.0107 = 535.00.
    c = commit("100000", "minutes")
    u = (usage(records=1, seconds=1_800_000, amount="300.00"), gbp("200.00", records=1, seconds=1_200_000))
    (ln,) = commitment.evaluate(c, ctx(fx_agreement(c), month(2026, 3), usage=u, fx=rates))
    assert ln.amount == D("535.00")
    assert ln.description == ("Minimum: shortfall 50,000 minutes of 100,000 minutes committed (50,000 minutes "
                              "reached), 2026-03-01..2026-03-31, valued at the average price 0.0107 EUR per minute")


def test_a_foreign_amount_without_fx_is_a_located_error_never_ignored():
    c = commit("20000", "EUR")
    u = (usage(amount="12000.00"), gbp("5000.00"))
    with pytest.raises(ChargeError, match="names no fx source") as e:
        commitment.evaluate(c, ctx(agreement(c), month(2026, 3), usage=u))
    assert str(e.value).startswith(str(SPAN)) and "counts amounts in GBP in its currency EUR" in str(e.value)
    # an fx source without a rate in force on the cycle's last day
    with pytest.raises(ChargeError, match="'ecb' has no rate between GBP and EUR in force on 2026-03-31"):
        commitment.evaluate(c, ctx(fx_agreement(c), month(2026, 3), usage=u, fx=lambda *a: None))
    # an fx source, but no rates given to the evaluation
    with pytest.raises(ChargeError, match="no exchange rates were given"):
        commitment.evaluate(c, ctx(fx_agreement(c), month(2026, 3), usage=u))


# --------------------------------------------------------------------------- tiers and discounts on revenue


def test_volume_discount_on_revenue_counts_every_currency_and_discounts_each_in_its_own():
    # 6,000.00 EUR + 4,000.00 GBP (x 1.175 = 4,700.00 EUR) = 10,700.00 EUR of revenue: the tier
    # from 10,000 (5%) is reached; 5% off each currency's traffic: -300.00 EUR and -200.00 GBP.
    d = charge("volume_discount", "Revenue discount", ("mode", "retroactive"), ("on", "revenue"), ("period", "cycle"),
               ("tiers", (Tier(D(10_000), percent=D(5)),)))
    x = ctx(fx_agreement(d), month(2026, 3), usage=(usage(amount="6000.00"), gbp("4000.00")), fx=rates)
    lines = tiers.evaluate_discount(d, x)
    assert [(ln.currency, ln.amount) for ln in lines] == [("EUR", D("-300.00")), ("GBP", D("-200.00"))]
    assert lines[0].details["quantity_to_date"] == "10700"
    assert lines[0].description == ("Revenue discount: retroactive discount of 6,000.00 EUR, 10,700.00 EUR "
                                    "(all traffic), tier reached from 10,000.00 EUR: 5%")
    # in EUR alone (6,000.00) the tier is not reached: converting is what reaches it
    assert tiers.evaluate_discount(d, ctx(fx_agreement(d), month(2026, 3), usage=(usage(amount="6000.00"),))) == []


def test_tiered_price_on_revenue_in_its_own_currency():
    # a platform fee by revenue, volume mode: 100.00 EUR flat from 0, 250.00 EUR flat from 10,000.
    # 6,000.00 EUR + 4,000.00 GBP x 1.175 = 10,700.00 EUR: 250.00 EUR.
    t = charge("tiered_price", "Platform fee", ("mode", "volume"), ("on", "revenue"), ("period", "cycle"),
               ("tiers", (Tier(D(0), flat=fee("100.00")), Tier(D(10_000), flat=fee("250.00")))))
    x = ctx(fx_agreement(t), month(2026, 3), usage=(usage(amount="6000.00"), gbp("4000.00")), fx=rates)
    (ln,) = tiers.evaluate_tiered(t, x)
    assert (ln.amount, ln.currency) == (D("250.00"), "EUR")
    assert ln.description == ("Platform fee: 10,700.00 EUR (all traffic), volume, tier reached from 10,000.00 EUR: "
                              "250.00 EUR flat")


def test_commitment_after_a_discount_in_another_currency():
    # 10% off from 1,000 minutes; GBP traffic 1,000.00 for 2,000 minutes -> -100.00 GBP; the EUR
    # commitment of 2,000.00 counts (1,000.00 - 100.00) x 1.175 = 1,057.50: shortfall 942.50.
    d = charge("volume_discount", "Discount", ("mode", "retroactive"), ("on", "minutes"), ("period", "cycle"),
               ("tiers", (Tier(D(1000), percent=D(10)),)))
    c = commit("2000", "EUR")
    x = ctx(fx_agreement(d, c), month(2026, 3), usage=(gbp("1000.00", records=10, seconds=120_000),), fx=rates)
    lines = evaluate_cycle(x)
    assert [(ln.kind, ln.amount, ln.currency) for ln in lines] == [("volume_discount", D("-100.00"), "GBP"),
                                                                   ("commitment", D("942.50"), "EUR")]


# --------------------------------------------------------------------------- revenue shares


SPLIT = (Share("AGGR", fixed=price("0.0200", "message")), Share("CPX", percent=D(70)), Share("us", remainder=True))


def sms(n, amount, currency="EUR", version=1):
    return usage("outbound", "sms", kind="count", records=n, units=n, amount=amount, currency=currency,
                 version=version)


def share_charge(basis="gross", split=SPLIT, tiers_=None):
    params = [("basis", basis), ("mode", "tiered" if tiers_ else "split"), ("scope", ("outbound sms",))]
    params.append(("tiers", tiers_) if tiers_ else ("shares", split))
    return charge("revenue_share", "Premium SMS", *params)


def test_share_in_its_currency_counts_traffic_in_others():
    # CPX 70%, us the rest, of 36.00 EUR + 10.00 GBP x 1.175 (11.75 EUR) = 47.75 EUR: exact
    # 33.425 and 14.325, one cent short, remainders tie: CPX (listed first) 33.43, us 14.32.
    c = share_charge(split=(Share("CPX", percent=D(70)), Share("us", remainder=True)))
    x = ctx(fx_agreement(c), month(2026, 3), usage=(sms(26, "36.00"), sms(8, "10.00", "GBP")), fx=rates)
    (res,) = share.shares_of(c, x)
    assert (res.currency, res.amount) == ("EUR", D("47.75"))
    assert [(p.party, p.amount) for p in res.shares] == [("CPX", D("33.43")), ("us", D("14.32"))]
    assert sum(p.amount for p in res.shares) == res.amount
    lines = share.evaluate(c, x)
    assert {ln.key.rsplit("|", 2)[1] for ln in lines} == {"party:CPX:EUR", "party:us:EUR"}
    assert lines[0].details["fx"][0]["converted"] == "11.75"


def test_a_share_mixing_currencies_is_an_error():
    mixed = (Share("AGGR", fixed=price("0.02", "message", currency="USD")), Share("CPX", remainder=True))
    tiers_ = (ShareTier(Money(D(0), "EUR"), mixed),)
    with pytest.raises(ChargeError, match="mixes currencies"):
        share.shares_of(share_charge(tiers_=tiers_), ctx(fx_agreement(), month(2026, 3), usage=(sms(1, "1.00"),)))


REFUNDS = (
    Adjustment("outbound", "sms", D("1.50"), "EUR", kind="refund", id="R1", refers_to="S001", day=date(2026, 3, 9),
               partner="ORFR", agreement="ORFR voice", agreement_version=1),
    Adjustment("outbound", "sms", D("0.75"), "EUR", kind="refund", id="R2", refers_to="S002", day=date(2026, 3, 12),
               partner="ORFR", agreement="ORFR voice", agreement_version=1),
    Adjustment("outbound", "sms", D("1.00"), "GBP", kind="refund", id="R3", refers_to="S003", day=date(2026, 3, 20),
               partner="ORFR", agreement="ORFR voice", agreement_version=1),
    # not against this traffic: another scope, another version, another partner
    Adjustment("outbound", "mms", D("0.30"), "EUR", kind="credit", id="C1"),
    Adjustment("outbound", "sms", D("5.00"), "EUR", kind="refund", id="R4", agreement="ORFR voice",
               agreement_version=2),
    Adjustment("outbound", "sms", D("5.00"), "EUR", kind="refund", id="R5", partner="OTHER"),
)


def test_net_share_deducts_refunds_and_still_adds_up():
    # gross 36.00 (26 messages); refunds 1.50 + 0.75 EUR + 1.00 GBP x 1.175 = 3.425: net 32.575
    # -> 32.58 (half up, once). AGGR 26 x 0.02 = 0.52; left 32.06; CPX 70% = 22.442, us 9.618
    # -> 22.44 + 9.61 is one cent short, us has the larger remainder (0.008): 9.62.
    # 0.52 + 22.44 + 9.62 = 32.58.
    c = share_charge("net")
    x = ctx(fx_agreement(c), month(2026, 3), usage=(sms(26, "36.00"),), adjustments=REFUNDS, fx=rates)
    (res,) = share.shares_of(c, x)
    assert (res.gross, res.deducted, res.amount) == (D("36.00"), D("3.43"), D("32.58"))
    assert [(p.party, p.amount) for p in res.shares] == [("AGGR", D("0.52")), ("CPX", D("22.44")), ("us", D("9.62"))]
    assert sum(p.amount for p in res.shares) == res.amount
    assert [a.id for a in res.deductions] == ["R1", "R2", "R3"]
    (ln, *_) = share.evaluate(c, x)
    assert ln.details["deducted_exact"] == "3.425" and ln.details["deductions_count"] == 3
    assert ln.details["deductions"][0] == {"kind": "refund", "amount": "1.50", "currency": "EUR",
                                           "scope": "outbound sms", "id": "R1", "refers_to": "S001",
                                           "day": "2026-03-09"}
    assert ln.description == "Premium SMS: AGGR fixed share of 32.58 EUR net: 36.00 EUR gross less 3.43 EUR (3 refunds)"
    # gross ignores them
    (g,) = share.shares_of(share_charge("gross"), x)
    assert g.amount == D("36.00") and g.deducted == D("0.00")


def test_net_tiered_share_chooses_the_tier_by_the_net_amount():
    # 10,200.00 gross, 300.00 refunded: 9,900.00 net stays below from 10,000 EUR: 60% tier
    t = (ShareTier(Money(D(0), "EUR"), (Share("CPX", percent=D(60)), Share("us", remainder=True))),
         ShareTier(Money(D(10_000), "EUR"), (Share("CPX", percent=D(70)), Share("us", remainder=True))))
    refund = Adjustment("outbound", "sms", D("300.00"), "EUR", kind="refund", id="R1", refers_to="S1")
    x = ctx(fx_agreement(), month(2026, 3), usage=(sms(100, "10200.00"),), adjustments=(refund,))
    (res,) = share.shares_of(share_charge("net", tiers_=t), x)
    assert res.tier == "from 0 EUR" and [p.amount for p in res.shares] == [D("5940.00"), D("3960.00")]
    (gross,) = share.shares_of(share_charge("gross", tiers_=t), x)
    assert gross.tier == "from 10000 EUR" and gross.shares[0].amount == D("7140.00")


def test_refunds_beyond_the_revenue_give_a_negative_split_that_adds_up():
    # no sales this cycle, 10.00 refunded: the split is -10.00 (CPX -7.00, us -3.00)
    c = share_charge("net", split=(Share("CPX", percent=D(70)), Share("us", remainder=True)))
    refund = Adjustment("outbound", "sms", D("10.00"), "EUR", kind="refund", id="R1", refers_to="S1")
    (res,) = share.shares_of(c, ctx(fx_agreement(c), month(2026, 3), adjustments=(refund,)))
    assert [p.amount for p in res.shares] == [D("-7.00"), D("-3.00")] and res.amount == D("-10.00")


# --------------------------------------------------------------------------- how quantities are shown


def test_quantities_are_shown_with_their_unit_and_sensible_precision():
    assert shown(Fraction(2_417_790_242_816, 1_048_576), "volume") == "2,305,784.46 MB"
    assert shown(1_000_000, "minutes") == "1,000,000 minutes"
    assert shown(D("1234.5"), "minutes") == "1,234.50 minutes"
    assert shown(Fraction(440_000, 31), "EUR") == "14,193.55 EUR"
    assert shown(D("-1.5"), "JPY") == "-2 JPY"
    assert shown(Fraction(1, 2500), "volume") == "0.0004 MB"


def test_data_discount_description_from_the_demo():
    # the demo's line read "2305784.45703125 volume (outbound data), tier reached from 2_000_000: 5%"
    d = charge("volume_discount", "Data volume discount", ("mode", "retroactive"), ("on", "volume"),
               ("period", "cycle"), ("tiers", (Tier(D(2_000_000), percent=D(5)),)), scope=(("outbound", "data"),))
    u = usage("outbound", "data", kind="volume", records=1, volume=2_417_790_242_816, amount="9223.14")
    (ln,) = tiers.evaluate_discount(d, ctx(agreement(d), month(2026, 3), usage=(u,)))
    assert ln.description == ("Data volume discount: retroactive discount of 9,223.14 EUR, 2,305,784.46 MB "
                              "(outbound data), tier reached from 2,000,000 MB: 5%")
    assert ln.amount == D("-461.16") and ln.details["quantity_to_date"] == "2305784.45703125"  # exact stays exact


# --------------------------------------------------------------------------- the checker


def test_checker_asks_for_fx_on_share_money_and_tier_prices(tmp_path, monkeypatch):
    from icdsl.plan.compiler import build

    (tmp_path / "r.icd").write_text('''partner CPX "Pixel Forge" { kind content currency EUR timezone "Europe/Paris" billing monthly due 30 days tax none }
agreement "Shares" v1 with CPX effective 2026-01-01 .. {
  currency EUR
  outbound sms {
    price 1.5000 EUR per message
  }
  revenue share "Content" tiered on net {
    from 0 USD {
      CPX: 0.0200 USD per message
      us: remainder
    }
  }
  tiered "Platform" volume on revenue per cycle {
    from 0: 100.00 GBP flat
  }
}
''', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    plan, _program, diags = build(["r.icd"])
    got = sorted((d.code, d.span.line) for d in diags)
    assert got == [("E211", 8), ("E211", 9), ("E211", 14)], [str(d) for d in diags]
    assert any("the revenue share is in USD but the agreement bills in EUR, and it names no FX source" in str(d)
               for d in diags)
