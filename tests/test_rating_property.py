"""Row and batch executors agree on random agreements and random records.

Hypothesis builds plans with random prefix trees (nested, duplicated, effective-dated), prices with
up to 6 decimals (some bands without a price), increments, connect fees, calendars in zones with
DST and half-hour offsets, holidays, rounding modes and precisions, slots (with increments per
slot; slot sets chosen per rate row, `slots NAME`), maximum costs per call, fallback tables, band parts (price, connect fee, increments,
data minimum and rounding by band), band splits, volume and count units; and records with edge
durations, instants on DST changes, short or odd numbers and missing fields. Every rated field
and every reject reason and detail must be identical.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rating_batch import assert_same

from icdsl.plan.model import (
    EMPTY_KEY,
    Agreement,
    BandPart,
    BandRule,
    Calendar,
    CellKey,
    HolidayRule,
    Increments,
    NumberRanges,
    Partner,
    Plan,
    RateRow,
    RateTable,
    Rounding,
    ServicePlan,
    Slot,
    SlotSet,
    Span,
    VolumeUnit,
)

ZONES = ["Europe/London", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"]
BANDS = ["peak", "offpeak", "evening"]
# instants around DST changes of the zones above (UTC)
EDGES = [
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # Europe
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # New York
    datetime(2026, 4, 4, 15, 0, tzinfo=UTC),  # Lord Howe: 30-minute change
    datetime(2026, 5, 1, 6, 0, tzinfo=UTC),  # Labour Day / May Day
]
INCREMENTS = [Increments(60, 60), Increments(60, 6), Increments(30, 6), Increments(1, 1), Increments(0, 10)]
DIGITS = "1234"


def spans():
    return st.integers(1, 500).map(lambda n: Span("gen.icd", n, 1, n, 2))


prices = st.builds(
    lambda units, exp: Decimal(units).scaleb(-exp), st.integers(0, 2_000_000), st.integers(0, 6)
)
maybe_dates = st.one_of(st.none(), st.dates(date(2026, 3, 20), date(2026, 4, 10)))


@st.composite
def calendars(draw):
    rules = []
    for _ in range(draw(st.integers(0, 3))):
        days = frozenset(draw(st.sets(st.integers(0, 6), min_size=1)))
        a = draw(st.integers(0, 47)) * 30
        b = draw(st.integers(0, 48)) * 30
        start = time(a // 60, a % 60, draw(st.sampled_from([0, 0, 0, 30])))
        end = time(0) if b == 48 * 30 else time(b // 60, b % 60)
        rules.append(BandRule(draw(st.sampled_from(BANDS)), days, start, end, draw(spans())))
    holidays = draw(
        st.lists(
            st.sampled_from([HolidayRule("FR", None, "offpeak"), HolidayRule("GB", "ENG", "evening")]),
            max_size=1,
        )
    )
    extra = draw(
        st.lists(st.tuples(st.dates(date(2026, 3, 25), date(2026, 4, 5)), st.sampled_from(BANDS)), max_size=2)
    )
    return Calendar(
        "c",
        draw(st.sampled_from(ZONES)),
        tuple(rules),
        draw(st.sampled_from(BANDS)),
        tuple(holidays),
        tuple(extra),
        draw(spans()),
    )


@st.composite
def rate_rows(draw, sets=()):
    """Rows of a rate table; ``sets``: names of slot sets a row may choose (``slots NAME``)."""
    n = draw(st.integers(1, 10))
    rows = []
    prefixes = [""]
    for _ in range(n):
        parent = draw(st.sampled_from(prefixes))
        p = parent + draw(st.text(DIGITS, min_size=0 if parent else 1, max_size=3))
        prefixes.append(p)
        keys = draw(st.lists(st.sampled_from(BANDS + ["*"]), min_size=1, max_size=3, unique=True))
        frm = draw(maybe_dates)
        to = draw(maybe_dates)
        rows.append(
            RateRow(
                p,
                f"dest-{p}",
                tuple((k, draw(prices)) for k in keys),
                draw(st.one_of(st.none(), prices)),
                draw(st.one_of(st.none(), st.sampled_from(INCREMENTS))),
                frm,
                to,
                draw(spans()),
                slots=draw(st.sampled_from((None, *sets))),
            )
        )
    return tuple(rows)


def slot_lists(draw):
    untils = sorted(draw(st.sets(st.integers(1, 400), min_size=1, max_size=3)))
    if draw(st.booleans()):
        untils[-1] = None
    slot_incs = draw(st.booleans())  # increments per slot (some slots keep the row's)
    return tuple(
        Slot(u, draw(prices), draw(spans()),
             draw(st.one_of(st.none(), st.sampled_from(INCREMENTS))) if slot_incs else None)
        for u in untils
    )


@st.composite
def services(draw, direction, service, with_sets=False):
    unit = "minute" if with_sets else draw(st.sampled_from(["minute", "minute", "second", "message", "MB"]))
    time_unit = unit in ("minute", "second")
    price_kind = "rates" if with_sets else draw(st.sampled_from(["rates", "rates", "rates", "flat"]))
    # slots NAME { ... }: sets that rows of a per-minute table choose (some rows none)
    sets = ()
    if unit == "minute" and price_kind == "rates" and (with_sets or draw(st.booleans())):
        sets = tuple(SlotSet(name, slot_lists(draw), draw(spans())) for name in draw(
            st.lists(st.sampled_from(["s1", "s2", "s3"]), min_size=1, max_size=3, unique=True)))
    names = tuple(ss.name for ss in sets)
    rows = draw(rate_rows(names)) if price_kind == "rates" else ()
    slots = ()
    if time_unit and draw(st.booleans()):
        slots = slot_lists(draw)
    volume = None
    if unit == "MB":
        volume = VolumeUnit(
            "MB", 10**6, draw(st.sampled_from([1, 1000, 1024])), draw(st.sampled_from([0, 0, 5000]))
        )
    return ServicePlan(
        direction,
        service,
        unit,
        rates=RateTable(rows, "EUR",
                        fallback=RateTable(draw(rate_rows(names)), "EUR") if draw(st.booleans()) else None)
        if rows else None,
        flat_price=draw(prices) if price_kind == "flat" else None,
        currency="EUR",
        increments=draw(st.sampled_from(INCREMENTS)),
        minimum_s=draw(st.sampled_from([0, 0, 30, 90])),
        connect_fee=draw(prices) if draw(st.booleans()) else Decimal(0),
        slots=slots,
        calendar=draw(st.one_of(st.none(), calendars(), calendars())),
        split_at_band_boundary=time_unit and draw(st.booleans()),
        zero_duration=draw(st.sampled_from(["connect_fee", "free", "reject"])),
        volume=volume,
        rounding=Rounding(
            draw(st.integers(0, 8)), draw(st.sampled_from(["half_up", "half_even", "up", "down"]))
        ),
        span=draw(spans()),
        max_cost=draw(st.one_of(st.none(), st.none(), prices)),  # at most ... per call
        band_parts=tuple(  # band NAME { price, connect fee, increments }
            BandPart(b, draw(st.one_of(st.none(), prices)) if price_kind == "flat" else None,
                     draw(st.one_of(st.none(), prices)), draw(st.one_of(st.none(), st.sampled_from(INCREMENTS))),
                     draw(spans()), draw(st.one_of(st.none(), st.sampled_from([0, 3000, 100_000]))),
                     draw(st.one_of(st.none(), st.sampled_from([1, 1000, 4096]))))
            for b in draw(st.lists(st.sampled_from(BANDS), max_size=3, unique=True))
        ),
        slot_sets=sets,
    )


@st.composite
def plans(draw, with_sets=False):
    agreements = []
    for i in range(draw(st.integers(1, 3))):
        frm = draw(st.dates(date(2026, 1, 1), date(2026, 4, 1)))
        to = draw(st.one_of(st.none(), st.dates(frm, date(2026, 12, 31))))
        svc = draw(services("outbound", draw(st.sampled_from(["voice", "data"])), with_sets))
        agreements.append(
            Agreement(
                f"a{i}",
                draw(st.integers(1, 3)),
                draw(st.sampled_from(["*", "P1", "P2"])),
                frm,
                to,
                "EUR",
                draw(st.sampled_from(ZONES)),
                Rounding(6, "half_up"),
                (svc,),
                source_hash=f"h{i}",
                span=draw(spans()),
            )
        )
    return Plan(partners=(Partner("P1", "one"), Partner("P3", "three")), agreements=tuple(agreements))


@st.composite
def records(draw, n):
    out = []
    for i in range(n):
        if draw(st.booleans()):
            start = draw(st.sampled_from(EDGES)) + timedelta(seconds=draw(st.integers(-7300, 7300)))
        else:
            start = datetime(2026, 3, 20, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 20 * 86400)))
        if draw(st.integers(0, 9)) == 0:
            start += timedelta(microseconds=draw(st.integers(1, 999_999)))
        dur = draw(
            st.one_of(
                st.sampled_from([0, 1, 5, 29, 30, 31, 59, 60, 61, 66, 90, 121, 3600]),
                st.integers(0, 30_000),
                st.just(-1),
            )
        )
        out.append(
            {
                "id": i,
                "partner": draw(st.sampled_from(["P1", "P2", "P3", "P9", None])),
                "direction": draw(st.sampled_from(["outbound", "outbound", "inbound"])),
                "service": draw(st.sampled_from(["voice", "data"])),
                "a_number": "1",
                "b_number": draw(st.one_of(st.text(DIGITS, max_size=8), st.none(), st.just("12x4"))),
                "start": start,
                "duration_s": dur,
                "volume": draw(st.one_of(st.none(), st.integers(-1, 10**7))),
                "units": draw(st.one_of(st.none(), st.integers(-1, 5))),
            }
        )
    return out


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(p=plans(), data=st.data())
def test_row_and_batch_agree(p, data):
    recs = data.draw(records(data.draw(st.integers(1, 40))))
    assert_same(p, recs)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(p=plans(with_sets=True), data=st.data())
def test_row_and_batch_agree_with_slot_sets(p, data):
    """Every service prices by a per-minute table whose rows choose slot sets (``slots NAME``);
    most records are calls the plan rates (an agreement's partner, service, period and prefixes)."""
    recs = data.draw(records(data.draw(st.integers(1, 40))))
    for r in recs:
        if data.draw(st.integers(0, 3)):
            ag = data.draw(st.sampled_from(p.agreements))
            sp = ag.services[0]
            prefix = data.draw(st.sampled_from([row.prefix for row in sp.rates.rows]))
            day = data.draw(st.dates(max(ag.effective_from, date(2026, 3, 21)), date(2026, 4, 9)))
            r.update(partner="P1" if ag.partner == "*" else ag.partner, direction="outbound", service=sp.service,
                     b_number=prefix + data.draw(st.text(DIGITS, max_size=4)),
                     start=datetime.combine(day, time(12), UTC) + timedelta(seconds=data.draw(st.integers(0, 40_000))))
    assert_same(p, recs)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=plans(), data=st.data())
def test_agree_on_single_service_bulk(p, data):
    """Many records on one plan: exercises the chunked, threaded path."""
    recs = data.draw(records(40))
    bulk = []
    for k in range(100):
        for r in recs:
            bulk.append(r | {"id": k * 100 + r["id"], "start": r["start"] + timedelta(minutes=k * 17)})
    assert_same(p, bulk)


# --------------------------------------------------------------------------- rates by origin

OPERATORS = ["OPA", "OPB", "OPC"]
CIRCLES = ["C1", "C2"]
PORTED_POOL = ["1234", "12341", "2143", "3", "41", "1111"]


@st.composite
def number_ranges(draw):
    """A number-range table over DIGITS: distinct prefixes, operators, circles, ported numbers."""
    prefixes = sorted(draw(st.sets(st.text(DIGITS, min_size=1, max_size=4), min_size=0, max_size=6)))
    ported = []
    for num in draw(st.lists(st.sampled_from(PORTED_POOL), unique=True, max_size=3)):
        ported.append((num, draw(st.sampled_from(OPERATORS)), draw(st.sampled_from(CIRCLES + [None])), 2))
    return NumberRanges(
        "ranges.csv", "h", tuple(prefixes),
        tuple(draw(st.sampled_from(OPERATORS)) for _ in prefixes),
        tuple(draw(st.sampled_from(CIRCLES + [None])) for _ in prefixes),
        tuple("IN" for _ in prefixes), tuple(range(2, len(prefixes) + 2)),
        tuple(ported), "ported.csv" if ported else None, "p" if ported else None)


@st.composite
def cell_keys(draw):
    kind = draw(st.sampled_from(["any", "any", "prefix", "zone", "country", "op", "circle", "op_circle", "dest",
                                 "mixed"]))
    if kind == "any":
        return EMPTY_KEY
    if kind == "prefix":
        return CellKey(origin=draw(st.text(DIGITS, min_size=1, max_size=3)))
    if kind in ("zone", "country"):
        ps = tuple(sorted(draw(st.sets(st.text(DIGITS, min_size=1, max_size=2), min_size=1, max_size=3))))
        return CellKey(zone="Z", zone_prefixes=ps) if kind == "zone" else CellKey(country="XX", country_prefixes=ps)
    if kind == "op":
        return CellKey(operator=draw(st.sampled_from(OPERATORS)))
    if kind == "circle":
        return CellKey(circle=draw(st.sampled_from(CIRCLES)))
    if kind == "op_circle":
        return CellKey(operator=draw(st.sampled_from(OPERATORS)), circle=draw(st.sampled_from(CIRCLES)))
    if kind == "dest":
        return CellKey(d_operator=draw(st.sampled_from(OPERATORS + [None])), d_circle=draw(st.sampled_from(CIRCLES)))
    return CellKey(origin=draw(st.text(DIGITS, min_size=1, max_size=2)), operator=draw(st.sampled_from(OPERATORS)),
                   d_circle=draw(st.sampled_from(CIRCLES + [None])))


@st.composite
def origin_plans(draw):
    """Plans whose rate tables are keyed by origin: the same destination prefix in several cells."""
    base = draw(plans())
    agreements = []
    for a in base.agreements:
        svc = a.services[0]
        if svc.rates is None:
            agreements.append(a)
            continue
        rows = list(svc.rates.rows)
        keys = [draw(cell_keys()) for _ in rows]
        for _ in range(draw(st.integers(1, 8))):  # more cells on the same prefixes
            r = draw(st.sampled_from(rows))
            rows.append(RateRow(r.prefix, r.destination, tuple((b, draw(prices)) for b, _ in r.prices), r.connect_fee,
                                r.increments, r.effective_from, r.effective_to, draw(spans())))
            keys.append(draw(cell_keys()))
        rates = RateTable(tuple(rows), "EUR", keys=tuple(keys))
        svc = replace(svc, rates=rates, numbers=draw(st.one_of(st.none(), number_ranges(), number_ranges())))
        agreements.append(replace(a, services=(svc,)))
    return replace(base, agreements=tuple(agreements))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(p=origin_plans(), data=st.data())
def test_row_and_batch_agree_with_origins(p, data):
    recs = data.draw(records(data.draw(st.integers(1, 40))))
    callers = st.one_of(st.text(DIGITS, max_size=8), st.none(), st.sampled_from(PORTED_POOL), st.just("1x"))
    for r in recs:
        r["a_number"] = data.draw(callers)
        if data.draw(st.booleans()):
            r["b_number"] = data.draw(st.sampled_from(PORTED_POOL))
    assert_same(p, recs)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(p=origin_plans(), data=st.data())
def test_agree_with_origins_in_bulk(p, data):
    """Many records on tables keyed by origin: several chunks on the thread pool."""
    recs = data.draw(records(40))
    callers = st.one_of(st.text(DIGITS, max_size=8), st.none(), st.sampled_from(PORTED_POOL))
    for r in recs:
        r["a_number"] = data.draw(callers)
    bulk = [r | {"id": k * 100 + r["id"], "start": r["start"] + timedelta(minutes=k * 17)}
            for k in range(900) for r in recs]
    assert_same(p, bulk)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(cell_keys(), min_size=1, max_size=12), ranges=st.one_of(st.none(), number_ranges()),
       callers=st.lists(st.one_of(st.none(), st.text(DIGITS, max_size=7), st.sampled_from(PORTED_POOL)), max_size=12),
       called=st.lists(st.one_of(st.text(DIGITS, max_size=7), st.sampled_from(PORTED_POOL)), min_size=1, max_size=4))
def test_the_cells_that_hold_are_those_of_the_plain_definition(keys, ranges, callers, called):
    """OriginMatcher.holding (worked out per signature) == the key-by-key definition."""
    from icdsl.rating.origins import OriginMatcher
    from icdsl.rating.select import Destinations

    rows = tuple(RateRow("1", "d", (("*", Decimal(1)),), span=Span("g", i + 1, 1, i + 1, 2)) for i in range(len(keys)))
    m = OriginMatcher(rows, keys, Destinations(rows), ranges)
    for a in callers:
        u, j = m.origin_class(a)
        for b in called:
            dr, dj = m.dest_class(b)
            want = tuple(c for c, k in enumerate(m.cells) if m.holds_plainly(k, u, j, dr, dj))
            assert m.holding(u, j, dr, dj) == want, (a, b, m.cells)
