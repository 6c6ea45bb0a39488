"""Recurring fees: proration, day counts, timing (advance/arrears), periods, corrections.

Every amount is hand-computed to the last digit in the comments next to it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from charges_fixtures import agreement, charge, ctx, fee, item, month

from icdsl.charges import recurring
from icdsl.charges.keys import application_key
from icdsl.charges.lines import ChargeError, billed_amounts
from icdsl.charges.periods import Days, count_days, prorate


def rec(amount="150.00", period="monthly", kind="port", **opts):
    params = [("amount", fee(amount)), ("period", period)]
    if kind:
        params.append(("per_inventory", kind))
    params += [(f"option:{k}", v) for k, v in opts.items()]
    return charge("recurring", "E1 port", *params)


def amounts(lines):
    return [ln.amount for ln in lines]


# --------------------------------------------------------------------------- worked examples


def test_mid_month_activation_prorated_daily():
    # 150.00 EUR monthly, activated 2026-03-10: 22 days of March's 31 -> 22/31 x 150.00
    # = 106.451612903... -> 106.45
    c = rec(prorate="daily")
    lines = recurring.evaluate(c, ctx(agreement(c), month(2026, 3), inventory=(item("P1", "port", date(2026, 3, 10)),)))
    assert amounts(lines) == [D("106.45")]
    ln = lines[0]
    assert ln.details["days_active"] == "22" and ln.details["days_in_period"] == "31"
    assert ln.details["factor"] == "22/31"
    assert ln.exact == "3300/31 (~106.451612903225)"
    assert ln.quantity == D("1") and ln.unit == "port" and ln.unit_price == D("150.00")
    assert ln.key == application_key("ORFR voice", 1, "E1 port", "item:port:P1", "2026-03-01..2026-03-31")
    assert ln.applications == (ln.key,)
    assert ln.line_kind == "recurring" and ln.rule == "rules.icd:7:3"


def test_thirty_day_count_ignores_the_31st():
    # thirty: 10 March .. 31 March = days 10..30 = 21 of 30 -> 150.00 x 21/30 = 105.00
    c = rec(prorate="daily", day_count="thirty")
    lines = recurring.evaluate(c, ctx(agreement(c), month(2026, 3), inventory=(item("P1", "port", date(2026, 3, 10)),)))
    assert amounts(lines) == [D("105.00")]
    # active only on the 31st: nothing under thirty
    lines = recurring.evaluate(c, ctx(agreement(c), month(2026, 3), inventory=(item("P2", "port", date(2026, 3, 31)),)))
    assert lines == []


@pytest.mark.parametrize(("y", "m", "days"), [(2026, 2, 28), (2028, 2, 29), (2026, 4, 30), (2026, 1, 31)])
def test_month_lengths_actual(y, m, days):
    # activated on the 11th: days - 10 days active of `days`
    c = rec(amount="310.00", prorate="daily")
    lines = recurring.evaluate(c, ctx(agreement(c), month(y, m), inventory=(item("P", "port", date(y, m, 11)),)))
    want = (D("310.00") * (days - 10) / days).quantize(D("0.01"))
    assert amounts(lines) == [want]
    assert lines[0].details["days_in_period"] == str(days)


def test_leap_year_february():
    # Feb 2028 has 29 days. Activated 2028-02-10: 20 days of 29 -> 150.00 x 20/29 = 103.448275... -> 103.45
    c = rec(prorate="daily")
    got = recurring.evaluate(c, ctx(agreement(c), month(2028, 2), inventory=(item("P", "port", date(2028, 2, 10)),)))
    assert amounts(got) == [D("103.45")]
    # thirty: each February day counts 30/29: 20 x 30/29 of 30 -> the same 20/29 -> 103.45
    c = rec(prorate="daily", day_count="thirty")
    got = recurring.evaluate(c, ctx(agreement(c), month(2028, 2), inventory=(item("P", "port", date(2028, 2, 10)),)))
    assert amounts(got) == [D("103.45")]
    # the whole of February: the full fee under both day counts
    for dc in ("actual", "thirty"):
        c = rec(prorate="daily", day_count=dc)
        got = recurring.evaluate(c, ctx(agreement(c), month(2028, 2), inventory=(item("P", "port", date(2027, 5, 1)),)))
        assert amounts(got) == [D("150.00")]
    # 2026 (not leap): 10 Feb .. 1 Mar = 19 of 28 -> 150.00 x 19/28 = 101.785714... -> 101.79
    c = rec(prorate="daily")
    got = recurring.evaluate(c, ctx(agreement(c), month(2026, 2), inventory=(item("P", "port", date(2026, 2, 10)),)))
    assert amounts(got) == [D("101.79")]


def test_thirty_day_count_totals():
    assert count_days(Days(date(2026, 1, 1), date(2027, 1, 1)), "thirty") == 360
    assert count_days(Days(date(2028, 1, 1), date(2029, 1, 1)), "thirty") == 360
    assert count_days(Days(date(2026, 3, 10), date(2026, 4, 1)), "thirty") == 21
    assert count_days(Days(date(2026, 3, 10), date(2026, 4, 1)), "actual") == 22


def test_activation_and_termination_in_the_same_cycle():
    # active 2026-04-10 .. 2026-04-25 (terminated on the 25th, the first day not billed):
    # 15 days of April's 30 -> 150.00 x 15/30 = 75.00
    c = rec(prorate="daily")
    it = item("P", "port", date(2026, 4, 10), date(2026, 4, 25))
    assert amounts(recurring.evaluate(c, ctx(agreement(c), month(2026, 4), inventory=(it,)))) == [D("75.00")]
    # without proration the whole month is due
    c = rec(prorate="none")
    assert amounts(recurring.evaluate(c, ctx(agreement(c), month(2026, 4), inventory=(it,)))) == [D("150.00")]
    # and nothing in May
    assert recurring.evaluate(c, ctx(agreement(c), month(2026, 5), inventory=(it,))) == []


def test_termination_before_activation_is_an_error():
    with pytest.raises(ValueError, match="not after activated"):
        item("P", "port", date(2026, 4, 10), date(2026, 4, 10))
    with pytest.raises(ValueError):
        prorate(Days(date(2026, 4, 10), date(2026, 4, 1)), Days(date(2026, 4, 1), date(2026, 5, 1)), 1, "daily")


def test_items_of_other_partners_and_kinds_are_ignored():
    c = rec()
    inv = (item("P1", "port", date(2026, 1, 1)), item("X1", "port", date(2026, 1, 1), partner="DTAG"),
           item("T1", "trunk", date(2026, 1, 1)), item("P2", "port", date(2026, 1, 1), quantity="3"))
    lines = recurring.evaluate(c, ctx(agreement(c), month(2026, 3), inventory=inv))
    assert [(ln.dimensions["item"], ln.amount) for ln in lines] == [("P1", D("150.00")), ("P2", D("450.00"))]


def test_flat_fee_follows_the_agreement_days():
    # a flat fee for an agreement starting 2026-03-10, prorated daily: 22/31 of 350.00 = 248.387... -> 248.39
    c = rec(amount="350.00", kind=None, prorate="daily")
    ag = agreement(c, start=date(2026, 3, 10))
    assert amounts(recurring.evaluate(c, ctx(ag, month(2026, 3)))) == [D("248.39")]
    # an agreement ending 2026-06-15 (its last day): 15/30 of 350.00 = 175.00 in June
    ag = agreement(c, end=date(2026, 6, 15))
    assert amounts(recurring.evaluate(c, ctx(ag, month(2026, 6)))) == [D("175.00")]
    assert recurring.evaluate(c, ctx(ag, month(2026, 7))) == []


# --------------------------------------------------------------------------- periods and timing


def test_quarterly_fee_in_arrears_on_the_cycle_where_the_quarter_ends():
    # 360.00 quarterly, calendar quarters: Q1 billed on the March cycle, nothing in Jan/Feb
    c = rec(amount="360.00", period="quarterly")
    inv = (item("R1", "port", date(2025, 6, 1)),)
    assert recurring.evaluate(c, ctx(agreement(c), month(2026, 1), inventory=inv)) == []
    assert recurring.evaluate(c, ctx(agreement(c), month(2026, 2), inventory=inv)) == []
    lines = recurring.evaluate(c, ctx(agreement(c), month(2026, 3), inventory=inv))
    assert amounts(lines) == [D("360.00")]
    assert lines[0].dimensions["period_start"] == "2026-01-01" and lines[0].dimensions["period_end"] == "2026-03-31"


def test_quarter_straddling_the_year_end_from_the_agreement_start():
    # quarters counted from the agreement's start, 2026-11-01: Nov 2026 - Jan 2027 (30 + 31 + 31 = 92 days).
    # A port activated 2026-12-15 is active 48 of the 92 days (17 in Dec, 31 in Jan):
    # 360.00 x 48/92 = 187.826086... -> 187.83, billed in arrears on the January 2027 cycle.
    c = rec(amount="360.00", period="quarterly", prorate="daily", anchor="start")
    ag = agreement(c, start=date(2026, 11, 1))
    inv = (item("R1", "port", date(2026, 12, 15)),)
    assert recurring.evaluate(c, ctx(ag, month(2026, 12), inventory=inv)) == []
    lines = recurring.evaluate(c, ctx(ag, month(2027, 1), inventory=inv))
    assert amounts(lines) == [D("187.83")]
    assert lines[0].details["period"] == "2026-11-01..2027-01-31"
    assert lines[0].details["days_active"] == "48" and lines[0].details["days_in_period"] == "92"
    # thirty: Dec 15..30 = 16 days + January 30 = 46 of 90 -> 360.00 x 46/90 = 184.00
    c = rec(amount="360.00", period="quarterly", prorate="daily", anchor="start", day_count="thirty")
    assert amounts(recurring.evaluate(c, ctx(agreement(c, start=date(2026, 11, 1)), month(2027, 1),
                                             inventory=inv))) == [D("184.00")]


def test_in_advance_bills_the_next_period_and_the_first_one_on_the_first_invoice():
    c = rec(prorate="daily", **{"in": "advance"})
    ag = agreement(c, start=date(2026, 3, 10))
    inv = (item("P", "port", date(2026, 3, 10)),)
    # first cycle (March): March (22/31 -> 106.45) and April in advance (150.00)
    lines = recurring.evaluate(c, ctx(ag, month(2026, 3), inventory=inv))
    assert [(ln.dimensions["period_start"], ln.amount) for ln in lines] == [
        ("2026-03-01", D("106.45")), ("2026-04-01", D("150.00"))]
    # April's cycle bills May; April was billed already
    billed = billed_amounts(lines)
    lines = recurring.evaluate(c, ctx(ag, month(2026, 4), inventory=inv, billed=billed))
    assert [(ln.dimensions["period_start"], ln.amount) for ln in lines] == [("2026-05-01", D("150.00"))]


def test_in_advance_change_is_corrected_on_the_next_invoice():
    c = rec(prorate="daily", **{"in": "advance"})
    ag = agreement(c)
    p1 = item("P1", "port", date(2025, 1, 1))
    history = []
    for m in (1, 2, 3):  # the agreement's first cycles, each run with what was billed before
        history += recurring.evaluate(c, ctx(ag, month(2026, m), inventory=(p1,), billed=billed_amounts(history)))
    # January carried January and February; each later cycle the next month
    assert [ln.dimensions["period_start"] for ln in history] == ["2026-01-01", "2026-02-01", "2026-03-01",
                                                                  "2026-04-01"]
    march = history[-1:]
    billed = billed_amounts(history)
    # in April we learn: P1 terminated 2026-04-21 (20 days of 30 -> 100.00), P2 added 2026-04-16 (15/30 -> 75.00)
    p1b = item("P1", "port", date(2025, 1, 1), date(2026, 4, 21))
    p2 = item("P2", "port", date(2026, 4, 16))
    april = recurring.evaluate(c, ctx(ag, month(2026, 4), inventory=(p1b, p2), billed=billed))
    got = {(ln.dimensions["item"], ln.dimensions["period_start"]): ln for ln in april}
    corr = got[("P1", "2026-04-01")]
    assert corr.amount == D("-50.00") and corr.corrects == march[0].key and corr.applications == ()
    assert corr.key.endswith("|correction@2026-04-01..2026-04-30")
    assert got[("P2", "2026-04-01")].amount == D("75.00")
    assert got[("P2", "2026-05-01")].amount == D("150.00")
    assert ("P1", "2026-05-01") not in got
    # after the correction the application adds up to what is due
    assert billed_amounts(history + april)[march[0].key] == D("100.00")
    # a rerun of April with the same inputs gives the same lines; May sees nothing left to correct
    assert recurring.evaluate(c, ctx(ag, month(2026, 4), inventory=(p1b, p2), billed=billed)) == april
    may = recurring.evaluate(c, ctx(ag, month(2026, 5), inventory=(p1b, p2), billed=billed_amounts(history + april)))
    assert [(ln.dimensions["item"], ln.dimensions["period_start"], ln.amount) for ln in may] == [
        ("P2", "2026-06-01", D("150.00"))]


def test_prorate_none_across_a_version_change_charges_once():
    c = rec(prorate="none")
    v1 = agreement(c, end=date(2026, 3, 15), version=1)
    v2 = agreement(c, start=date(2026, 3, 16), version=2)
    inv = (item("P", "port", date(2025, 1, 1)),)
    l1 = recurring.evaluate(c, ctx(v1, month(2026, 3), inventory=inv, versions=(v1, v2)))
    l2 = recurring.evaluate(c, ctx(v2, month(2026, 3), inventory=inv, versions=(v1, v2)))
    assert amounts(l1) == [D("150.00")] and l2 == []
    # with daily proration each version bills its own days: 15/31 and 16/31 of 150.00 = 72.58 + 77.42
    c = rec(prorate="daily")
    v1, v2 = agreement(c, end=date(2026, 3, 15), version=1), agreement(c, start=date(2026, 3, 16), version=2)
    l1 = recurring.evaluate(c, ctx(v1, month(2026, 3), inventory=inv, versions=(v1, v2)))
    l2 = recurring.evaluate(c, ctx(v2, month(2026, 3), inventory=inv, versions=(v1, v2)))
    assert amounts(l1) == [D("72.58")] and amounts(l2) == [D("77.42")]
    assert l1[0].key != l2[0].key


def test_rerun_gives_the_same_lines():
    c = rec(prorate="daily", **{"in": "advance"})
    inv = (item("P", "port", date(2026, 3, 10)), item("Q", "port", date(2026, 1, 5), date(2026, 3, 20), "2"))
    x = ctx(agreement(c), month(2026, 3), inventory=inv)
    assert recurring.evaluate(c, x) == recurring.evaluate(c, x)


def test_bad_options_are_reported_with_the_rule():
    c = rec(prorate="hourly")
    with pytest.raises(ChargeError, match="prorate hourly") as e:
        recurring.evaluate(c, ctx(agreement(c), month(2026, 3)))
    assert e.value.span.line == 7


# --------------------------------------------------------------------------- advance == arrears, eventually

from datetime import timedelta  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from icdsl.inventory import InventoryItem  # noqa: E402

ITEMS = st.lists(st.tuples(st.dates(date(2025, 11, 1), date(2026, 12, 31)), st.integers(0, 300), st.integers(1, 4)),
                 max_size=5)


def known_at(items, day):
    """The inventory as known on ``day``: items activated before it, terminations that happened."""
    out = []
    for i, (act, length, qty) in enumerate(items):
        if act >= day:
            continue
        term = act + timedelta(days=length) if length else None
        out.append(InventoryItem("ORFR", f"I{i}", "port", D(qty), act, term if term and term < day else None))
    return tuple(out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=ITEMS, prorate_=st.sampled_from(["daily", "none"]), dc=st.sampled_from(["actual", "thirty"]))
def test_in_advance_with_late_changes_ends_up_billing_what_arrears_bills(items, prorate_, dc):
    """Run 2026 month by month, each cycle knowing only what happened before its end: in advance
    bills periods before they start and corrects them afterwards; once the year is over, every
    (item, month) of 2026 has been billed exactly what in arrears bills."""
    totals = {}
    for timing in ("advance", "arrears"):
        c = rec(prorate=prorate_, day_count=dc, **{"in": timing})
        ag = agreement(c)
        lines = []
        for m in range(1, 13):
            cyc = month(2026, m)
            lines += recurring.evaluate(c, ctx(ag, cyc, inventory=known_at(items, cyc.end),
                                               billed=billed_amounts(lines)))
        assert len({ln.key for ln in lines}) == len(lines)
        totals[timing] = {k: v for k, v in billed_amounts(lines).items() if "2027-" not in k}
    assert {k: v for k, v in totals["advance"].items() if v} == {k: v for k, v in totals["arrears"].items() if v}
