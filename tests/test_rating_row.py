"""The row executor on hand-computed examples, to the last digit.

Every expected amount below is worked out by hand in the comment next to it. The same scenarios
run through the batch executor in test_rating_batch.py (``SCENARIOS``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal as D

import pytest

from icdsl.plan.model import (
    Agreement,
    BandRule,
    Calendar,
    HolidayRule,
    Increments,
    Partner,
    Plan,
    RateRow,
    RateTable,
    Rounding,
    ServicePlan,
    Slot,
    Span,
    VolumeUnit,
)
from icdsl.rating.row import rate_record

WEEKDAYS = frozenset(range(5))


def span(line: int) -> Span:
    return Span("rules/test.icd", line, 5, line, 40)


def cal(tz: str = "Europe/London", holidays=(), extra=()) -> Calendar:
    return Calendar(
        "business",
        tz,
        (BandRule("peak", WEEKDAYS, time(8), time(20), span(30)),),
        "offpeak",
        holidays=holidays,
        extra_dates=extra,
        span=span(29),
    )


def row(prefix, peak, off=None, *, fee=None, inc=None, frm=None, to=None, dest=None, line=10) -> RateRow:
    prices = (("peak", D(peak)), ("offpeak", D(off))) if off is not None else (("*", D(peak)),)
    fee = D(fee) if fee is not None else None
    return RateRow(prefix, dest or f"dest {prefix}", prices, fee, inc, frm, to, span(line))


def voice(rows=(), **kw) -> ServicePlan:
    base = dict(
        direction="outbound",
        service="voice",
        unit="minute",
        rates=RateTable(tuple(rows), "EUR", span=span(9)) if rows else None,
        calendar=cal(),
        increments=Increments(60, 60),
        rounding=Rounding(6, "half_up", span(3)),
        span=span(8),
    )
    base.update(kw)
    return ServicePlan(**base)


def agreement(
    *services, partner="*", frm=date(2020, 1, 1), to=None, version=1, name="deal", tz="Europe/London"
):
    return Agreement(
        name, version, partner, frm, to, "EUR", tz, Rounding(6, "half_up"), tuple(services), span=span(1)
    )


def plan(*agreements, partners=("ORANGE", "VODA")) -> Plan:
    return Plan(partners=tuple(Partner(p, p) for p in partners), agreements=tuple(agreements))


def rec(b="4477123456", start="2026-03-04T12:00:00", dur=60, **kw) -> dict:
    r = dict(
        id=kw.pop("id", 1),
        partner="ORANGE",
        direction="outbound",
        service="voice",
        a_number="33123456789",
        b_number=b,
        start=datetime.fromisoformat(start).replace(tzinfo=UTC),
        duration_s=dur,
        volume=None,
        units=None,
    )
    r.update(kw)
    return r


UK_DECK = (
    row("44", "0.01", "0.005", line=11),
    row("447", "0.20", "0.10", fee="0.05", inc=Increments(30, 6), line=12),
    row("4477", "0.012345", "0.006", inc=Increments(1, 1), line=13),
)


def uk_plan(**kw) -> Plan:
    return plan(agreement(voice(UK_DECK, **kw)))


# --------------------------------------------------------------------------- scenarios
# (name, plan factory, record, expected fields or reject reason). Shared with the batch tests.


def _holiday_plan():
    c = cal("Europe/Paris", holidays=(HolidayRule("FR", None, "offpeak", span(31)),))
    return plan(agreement(voice((row("33", "0.10", "0.02"),), calendar=c), tz="Europe/Paris"))


def _slots_plan():
    slots = (Slot(60, D("0.10"), span(40)), Slot(None, D("0.05"), span(41)))
    return plan(agreement(voice((row("44", "9.99"),), slots=slots, increments=Increments(1, 1))))


def _split_plan(inc=Increments(60, 60)):
    return plan(agreement(voice((row("44", "0.10", "0.05", inc=inc),), split_at_band_boundary=True)))


def _flat(unit, price, **kw):
    return plan(agreement(voice((), unit=unit, flat_price=D(price), calendar=None, service="sms", **kw)))


def _data_plan():
    vol = VolumeUnit("MB", 1_000_000, rounding_bytes=1000)
    sp = voice(
        (RateRow("", "anywhere", (("*", D("0.5")),), span=span(10)),),
        unit="MB",
        volume=vol,
        service="data",
        calendar=None,
        rounding=Rounding(6, "half_up"),
    )
    return plan(agreement(sp))


def _rounding_plan(mode):
    sp = voice(
        (row("99", "0.0000005", inc=Increments(1, 1)),),
        unit="second",
        rounding=Rounding(6, mode),
        calendar=None,
    )
    return plan(agreement(sp))


def _dated_plan():
    rows = (
        row("44", "0.01"),
        row("447", "0.20", to=date(2026, 1, 1), line=12),
        row("447", "0.30", frm=date(2026, 1, 1), line=13),
        row("4479", "0.90", frm=date(2026, 6, 1), line=14),
    )
    return plan(agreement(voice(rows)))


SCENARIOS = [
    # longest prefix, not the cheapest: 4477 (0.012345/min, 1/1) wins over 44 (0.01) and 447 (0.20)
    # 61 s peak: 0.012345 * 61 / 60 = 0.01255075 -> 0.012551
    (
        "longest_prefix",
        uk_plan,
        rec("447712345", dur=61),
        dict(prefix="4477", band="peak", billed_units=61, amount="0.012551"),
    ),
    # 447 (30/6, fee 0.05) offpeak 0.10: 31 s -> 36 s; 0.05 + 0.10 * 36/60 = 0.11
    (
        "30_6_31s",
        uk_plan,
        rec("4478", start="2026-03-04T21:00:00", dur=31),
        dict(prefix="447", band="offpeak", billed_units=36, amount="0.110000"),
    ),
    # 30/6, 61 s -> 30 + ceil(31/6)*6 = 66 s; peak 0.20: 0.05 + 0.20*66/60 = 0.27
    ("30_6_61s", uk_plan, rec("4478", dur=61), dict(billed_units=66, amount="0.270000")),
    # 60/60 on 44: 61 s -> 120 s, peak 0.01: 0.02
    ("60_60", uk_plan, rec("441", dur=61), dict(prefix="44", billed_units=120, amount="0.020000")),
    # 1/1 on 4477: 59 s peak: 0.012345*59/60 = 0.01213925 -> 0.012139
    ("1_1", uk_plan, rec("44770", dur=59), dict(billed_units=59, amount="0.012139")),
    # 60/6 service default: 61 s -> 66 s at 0.05/min = 0.055
    (
        "60_6",
        lambda: plan(agreement(voice((row("33", "0.05"),), increments=Increments(60, 6)))),
        rec("331", dur=61),
        dict(billed_units=66, amount="0.055000"),
    ),
    # 0.05/min x 60 s is 0.05 exactly (never 0.0499999...)
    (
        "exact_0_05",
        lambda: plan(agreement(voice((row("33", "0.05"),)))),
        rec("331", dur=60),
        dict(amount="0.050000", rate="0.05"),
    ),
    # minimum 30 s, 1/1: a 5-second call is billed 30 s; 0.10 * 30/60 = 0.05
    (
        "minimum",
        lambda: plan(agreement(voice((row("33", "0.10", inc=Increments(1, 1)),), minimum_s=30))),
        rec("331", dur=5),
        dict(billed_units=30, amount="0.050000"),
    ),
    # 0-second call with policy connect_fee: amount = the fee 0.05, billed 0
    ("zero_connect_fee", uk_plan, rec("4478", dur=0), dict(billed_units=0, amount="0.050000")),
    (
        "zero_free",
        lambda: uk_plan(zero_duration="free"),
        rec("4478", dur=0),
        dict(billed_units=0, amount="0.000000"),
    ),
    ("zero_reject", lambda: uk_plan(zero_duration="reject"), rec("4478", dur=0), "zero_duration"),
    # effective dates: on 2025-12-31 the old 447 row (0.20); from 2026-01-01 the new one (0.30);
    # 4479 only from 2026-06-01, so in March a 4479... number matches 447
    (
        "dated_old",
        _dated_plan,
        rec("44791", start="2025-12-31T12:00:00"),
        dict(prefix="447", amount="0.200000"),
    ),
    (
        "dated_new",
        _dated_plan,
        rec("44791", start="2026-03-04T12:00:00"),
        dict(prefix="447", amount="0.300000"),
    ),
    (
        "dated_later",
        _dated_plan,
        rec("44791", start="2026-06-01T12:00:00"),
        dict(prefix="4479", amount="0.900000"),
    ),
    # Europe/London DST: Mon 2026-03-30 07:00 UTC = 08:00 BST -> peak (it would be 07:00 in UTC)
    (
        "london_bst_peak",
        uk_plan,
        rec("441", start="2026-03-30T07:00:00"),
        dict(band="peak", amount="0.010000"),
    ),
    # Mon 2026-03-30 06:59:59 UTC = 07:59:59 BST -> offpeak
    (
        "london_bst_off",
        uk_plan,
        rec("441", start="2026-03-30T06:59:59"),
        dict(band="offpeak", amount="0.005000"),
    ),
    # Fri 2026-03-27 07:30 UTC = 07:30 GMT -> offpeak
    ("london_gmt_off", uk_plan, rec("441", start="2026-03-27T07:30:00"), dict(band="offpeak")),
    # Fri 2026-10-23 19:30 UTC = 20:30 BST -> offpeak; Mon 2026-10-26 19:30 UTC = 19:30 GMT -> peak
    ("london_autumn_bst", uk_plan, rec("441", start="2026-10-23T19:30:00"), dict(band="offpeak")),
    ("london_autumn_gmt", uk_plan, rec("441", start="2026-10-26T19:30:00"), dict(band="peak")),
    # Europe/Paris: Mon 2026-03-30 06:30 UTC = 08:30 CEST -> peak; Fri 2026-03-27 06:30 = 07:30 CET -> off
    (
        "paris_cest_peak",
        _holiday_plan,
        rec("331", start="2026-03-30T06:30:00"),
        dict(band="peak", amount="0.100000"),
    ),
    (
        "paris_cet_off",
        _holiday_plan,
        rec("331", start="2026-03-27T06:30:00"),
        dict(band="offpeak", amount="0.020000"),
    ),
    # Fri 2026-05-01 is Labour Day in France: offpeak all day although 11:00 CEST is in the peak window
    (
        "fr_holiday",
        _holiday_plan,
        rec("331", start="2026-05-01T09:00:00"),
        dict(band="offpeak", amount="0.020000"),
    ),
    # slots: 150 s (1/1) = 60 s at 0.10/min + 90 s at 0.05/min = 0.10 + 0.075; the row's 9.99 is ignored
    ("slots", _slots_plan, rec("441", dur=150), dict(billed_units=150, amount="0.175000", rate="0.1")),
    # per message: 3 x 0.0123 = 0.0369; null units count as 1
    (
        "message",
        lambda: _flat("message", "0.0123"),
        rec(service="sms", units=3),
        dict(billed_units=3, amount="0.036900", prefix="", band="all"),
    ),
    (
        "message_null_units",
        lambda: _flat("message", "0.0123"),
        rec(service="sms"),
        dict(billed_units=1, amount="0.012300"),
    ),
    # per MB, rounded up to whole KB: 1,234,567 B -> 1,235,000 B; 0.5 * 1.235 = 0.6175
    (
        "per_mb",
        _data_plan,
        rec(service="data", volume=1_234_567),
        dict(billed_units=1_235_000, amount="0.617500"),
    ),
    # ties: 0.0000005/s x 1 s = 0.0000005 exactly
    ("tie_half_up", lambda: _rounding_plan("half_up"), rec("991", dur=1), dict(amount="0.000001")),
    ("tie_half_even", lambda: _rounding_plan("half_even"), rec("991", dur=1), dict(amount="0.000000")),
    ("tie_up", lambda: _rounding_plan("up"), rec("991", dur=1), dict(amount="0.000001")),
    ("tie_down", lambda: _rounding_plan("down"), rec("991", dur=1), dict(amount="0.000000")),
    # 3 s: 0.0000015 -> half_even rounds to the even 0.000002, down to 0.000001
    ("tie3_half_even", lambda: _rounding_plan("half_even"), rec("991", dur=3), dict(amount="0.000002")),
    ("tie3_down", lambda: _rounding_plan("down"), rec("991", dur=3), dict(amount="0.000001")),
    # split: Wed 2026-03-04 19:59:00 GMT + 120 s, 60/60: 60 s peak (0.10) + 60 s offpeak (0.05) = 0.15
    (
        "split",
        _split_plan,
        rec("441", start="2026-03-04T19:59:00", dur=120),
        dict(band="peak+offpeak", billed_units=120, amount="0.150000", rate="0.1"),
    ),
    # split with extra: 19:59:30 + 61 s billed 120: 30 s peak + (31 + 59) s offpeak = 0.05 + 0.075
    (
        "split_extra",
        _split_plan,
        rec("441", start="2026-03-04T19:59:30", dur=61),
        dict(band="peak+offpeak", billed_units=120, amount="0.125000"),
    ),
    # without split the same call is all peak: 0.10 * 120/60 = 0.20
    (
        "no_split",
        lambda: plan(agreement(voice((row("44", "0.10", "0.05"),)))),
        rec("441", start="2026-03-04T19:59:30", dur=61),
        dict(band="peak", amount="0.200000"),
    ),
    # a split call inside one band reports that band
    (
        "split_inside",
        _split_plan,
        rec("441", start="2026-03-04T12:00:00", dur=120),
        dict(band="peak", amount="0.200000"),
    ),
    # rejects
    ("no_destination", uk_plan, rec("33123"), "no_rate"),
    (
        "unknown_partner",
        lambda: plan(agreement(voice(UK_DECK[:1]), partner="VODA")),
        rec(partner="NOBODY"),
        "unknown_partner",
    ),
    ("no_agreement", uk_plan, rec(direction="inbound"), "no_agreement"),
    (
        "outside_period",
        lambda: plan(agreement(voice(UK_DECK[:1]), frm=date(2027, 1, 1))),
        rec(),
        "outside_agreement_period",
    ),
    ("missing_field", uk_plan, rec(b=None), "missing_field"),
    ("missing_start", uk_plan, rec(start="2026-01-01T00:00:00", **{}) | {"start": None}, "missing_field"),
    ("negative_duration", uk_plan, rec(dur=-1), "negative_duration"),
    ("bad_volume", _data_plan, rec(service="data", volume=-5), "bad_volume"),
    ("missing_volume", _data_plan, rec(service="data"), "missing_field"),
    ("bad_units", lambda: _flat("message", "0.01"), rec(service="sms", units=-1), "bad_units"),
    (
        "no_price_for_band",
        lambda: plan(agreement(voice((RateRow("44", "UK", (("peak", D("0.1")),), span=span(10)),)))),
        rec("441", start="2026-03-04T21:00:00"),
        "no_rate",
    ),
    ("no_price_rule", lambda: plan(agreement(voice(()))), rec(), "no_rate"),
    (
        "amount_overflow",
        lambda: plan(agreement(voice((row("44", "999999999999"),)))),
        rec("441", dur=7200),
        "amount_overflow",
    ),
]


@pytest.mark.parametrize(("name", "make", "record", "want"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(name, make, record, want):
    res = rate_record(make(), record, trace=True)
    if isinstance(want, str):
        assert not res.ok, f"{name}: rated {res}"
        assert res.reason == want, res.detail
        assert res.detail
        return
    assert res.ok, f"{name}: rejected {res.reason}: {res.detail}"
    for key, value in want.items():
        got = getattr(res, key)
        if key == "amount":
            assert str(got) == value, (name, got, value)
        else:
            assert got == value, (name, key, got, value)


# --------------------------------------------------------------------------- traces


def _texts(res) -> list[str]:
    return [s.text for s in res.trace]


def test_trace_increments_arithmetic():
    p = plan(agreement(voice((row("33", "0.05"),), increments=Increments(60, 6))))
    res = rate_record(p, rec("331", dur=61), trace=True)
    assert "61 s with 60/6 -> 60 + ceil(1/6)*6 = 66 s" in _texts(res)
    assert any("rounded once, half_up to 6 decimals: 0.055 EUR" in t for t in _texts(res))


def test_trace_band_rule_and_spans():
    res = rate_record(_holiday_plan(), rec("331", start="2026-03-03T08:15:00"), trace=True)
    band = [s for s in res.trace if "within peak" in s.text][0]
    assert band.text == "Tue 09:15:00 Europe/Paris within peak 08:00-20:00 (rule at rules/test.icd:30:5)"
    assert band.span == span(30)
    match = [s for s in res.trace if "longest prefix" in s.text][0]
    assert "longest prefix 33 (dest 33)" in match.text and match.span == span(10)
    assert res.rule == "rules/test.icd:10:5"


def test_trace_holiday():
    res = rate_record(_holiday_plan(), rec("331", start="2026-05-01T09:00:00"), trace=True)
    assert "2026-05-01 is a public holiday in FR (Labor Day) -> offpeak" in _texts(res)


def test_trace_split_and_reject():
    res = rate_record(_split_plan(), rec("441", start="2026-03-04T19:59:00", dur=120), trace=True)
    assert any(t.startswith("split at band changes: 60 s peak + 60 s offpeak") for t in _texts(res))
    bad = rate_record(uk_plan(), rec("33123"), trace=True)
    assert _texts(bad)[-1] == "rejected no_rate: no destination matches b_number 33123"


def test_no_trace_by_default():
    assert rate_record(uk_plan(), rec("441")).trace == ()


# --------------------------------------------------------------------------- selection


def test_agreement_preference():
    deck = (row("44", "0.10"),)
    older = agreement(voice(deck), partner="ORANGE", frm=date(2025, 1, 1), name="old")
    newer = agreement(voice((row("44", "0.20"),)), partner="ORANGE", frm=date(2026, 1, 1), name="new")
    v2 = agreement(voice((row("44", "0.30"),)), partner="ORANGE", frm=date(2026, 1, 1), name="new", version=2)
    star = agreement(voice((row("44", "0.40"),)), partner="*", frm=date(2026, 2, 1), name="any")
    p = plan(older, newer, v2, star)
    got = rate_record(p, rec("441"))
    assert (got.agreement, got.agreement_version, got.amount) == ("new", 2, D("0.300000"))
    other = rate_record(p, rec("441", partner="VODA"))  # declared, no own agreement: the "*" one
    assert other.agreement == "any"
    unknown = rate_record(p, rec("441", partner="WHO"))  # unknown, but "*" exists
    assert unknown.agreement == "any"
    before = rate_record(p, rec("441", start="2025-06-01T12:00:00"))
    assert before.agreement == "old"
    assert (
        rate_record(p, rec("441", partner="VODA", start="2025-06-01T12:00:00")).reason
        == "outside_agreement_period"
    )


def test_agreement_period_uses_local_date():
    # effective_to 2026-03-04 inclusive; 23:30 UTC on the 4th is already the 5th in Paris
    p = plan(agreement(voice((row("33", "0.1"),)), to=date(2026, 3, 4), tz="Europe/Paris"))
    assert rate_record(p, rec("331", start="2026-03-04T22:30:00")).ok
    assert rate_record(p, rec("331", start="2026-03-04T23:30:00")).reason == "outside_agreement_period"


def test_details():
    p = uk_plan()
    assert rate_record(p, rec(b=None)).detail == "b_number is missing"
    assert rate_record(p, rec(dur=-3)).detail == "duration_s is negative (-3)"
    res = rate_record(plan(agreement(voice(UK_DECK[:1]), partner="VODA")), rec(partner="NOBODY"))
    assert res.detail == "partner NOBODY is not declared and no agreement applies to any partner"
    no_band = plan(agreement(voice((RateRow("44", "UK", (("peak", D("0.1")),), span=span(10)),))))
    assert (
        rate_record(no_band, rec("441", start="2026-03-04T21:00:00")).detail
        == "no price for band offpeak at prefix 44"
    )


def test_rated_fields():
    res = rate_record(uk_plan(), rec("447712345", dur=61))
    assert res.as_row() == {
        "id": 1,
        "partner": "ORANGE",
        "direction": "outbound",
        "service": "voice",
        "agreement": "deal",
        "agreement_version": 1,
        "agreement_hash": "",
        "prefix": "4477",
        "destination": "dest 4477",
        "band": "peak",
        "billed_units": 61,
        "rate": "0.012345",
        "amount": D("0.012551"),
        "currency": "EUR",
        "rule": "rules/test.icd:13:5",
        "start": datetime(2026, 3, 4, 12, tzinfo=UTC),
        "duration_s": 61,
    }


def test_extra_dates_and_default_band():
    c = cal(extra=((date(2026, 3, 4), "offpeak"),))
    p = plan(agreement(voice((row("44", "0.10", "0.05"),), calendar=c)))
    assert rate_record(p, rec("441")).band == "offpeak"  # a listed date
    assert rate_record(p, rec("441", start="2026-03-07T12:00:00")).band == "offpeak"  # Saturday: default
    assert rate_record(p, rec("441", start="2026-03-05T12:00:00")).band == "peak"


@pytest.mark.parametrize(("name", "make", "record", "want"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_fast_path_equals_traced_path(name, make, record, want):
    """Without a trace, common records take a shorter path: it must say exactly the same."""
    p = make()
    fast, traced = rate_record(p, record), rate_record(p, record, trace=True)
    assert fast.ok == traced.ok
    if fast.ok:
        assert fast.as_row() == traced.as_row()
    else:
        assert (fast.reason, fast.detail) == (traced.reason, traced.detail)
