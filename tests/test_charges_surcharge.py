"""Surcharges: evaluated per record by both executors, which agree to the last digit.

Worked examples are written as rule text; the property test builds random plans, surcharges
(conditions over record fields, extra columns, rating results, partner attributes, cycle totals,
functions) and records, and compares the row executor's ``surcharges`` with the batch executor's
record charges table, record by record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from fractions import Fraction

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rating_batch import TYPES
from test_rating_property import INCREMENTS, ZONES, calendars

from icdsl.charges.context import CycleTotals
from icdsl.charges.evaluate import needs_cycle_totals, record_charge_lines
from icdsl.plan.model import (
    Agreement,
    Charge,
    Expr,
    Partner,
    Price,
    RateRow,
    RateTable,
    Rounding,
    ServicePlan,
    Slot,
    Span,
    VolumeUnit,
)
from icdsl.rating.batch import rate_batch, rate_batch_with_charges
from icdsl.rating.row import rate_record
from icdsl.testing import build_plan

RULES = """
partner ORFR "Orange France" {
  currency EUR
  timezone "Europe/Paris"
  tier: "gold"
}

agreement "Voice" v1 with ORFR effective 2026-01-01 .. {
  outbound voice {
    price 0.0200 EUR per minute
    increments 30/6
    connect fee 0.0100 EUR
    surcharge "Premium route" 0.0020 EUR per minute when route_class == "premium"
    surcharge "Gold partners" 1% when partner.tier in ["gold", "platinum"] and not (quality < 3)
    surcharge "Heavy month" 0.0005 EUR per minute when cycle.minutes > 1_000
    surcharge "Evening" 0.0010 EUR per call when hour(start) >= 20
  }

  inbound voice {
    price 0.00027 EUR per minute
    increments 1/1
    surcharge "Tiny" 10%
  }

  outbound sms {
    price 0.0100 EUR per message
    surcharge "Per message" 0.0100 EUR per message when origin == "non_eea"
  }

  outbound data {
    price 0.0040 EUR per MB
    round volume up to 1 KB
  }

  surcharge "Data uplift" 0.5000 EUR per MB when service == "data", of outbound data
}
"""


def record(id_, direction="outbound", service="voice", **kw):
    base = {"id": id_, "partner": "ORFR", "direction": direction, "service": service, "a_number": "1",
            "b_number": "33612345678", "start": datetime(2026, 3, 4, 8, 15, tzinfo=UTC), "duration_s": 61,
            "volume": None, "units": None}
    base.update(kw)
    return base


def table(recs, extras=("route_class", "quality", "origin", "flag")):
    cols = {name: pa.array([r.get(name) for r in recs], type=t) for name, t in TYPES.items()}
    for e in extras:
        cols[e] = pa.array([r.get(e) for r in recs], type=pa.string())
    return pa.table(cols)


def hits_row(p, recs, cycle=None):
    out = {}
    for r in recs:
        res = rate_record(p, r, cycle=cycle)
        if res.ok:
            out[r["id"]] = [(h.kind, h.charge, h.amount, h.currency, h.rule) for h in res.surcharges]
    return out


def hits_batch(p, recs, cycle=None, extras=("route_class", "quality", "origin", "flag")):
    t = table(recs, extras)
    rated, rejects, charges = rate_batch_with_charges(p, t, cycle=cycle)
    plain = rate_batch(p, t)
    assert rated.equals(plain[0]) and rejects.equals(plain[1])
    ids = rated.column("id").to_pylist()
    out = {i: [] for i in ids}
    for row in charges.to_pylist():
        assert ids[row["record"]] == row["id"]
        out[row["id"]].append((row["kind"], row["charge"], row["amount"], row["currency"], row["rule"]))
    return out, charges


def amounts(p, r, cycle=None):
    return {h.charge: h.amount for h in rate_record(p, r, cycle=cycle).surcharges}


# --------------------------------------------------------------------------- worked examples


def test_worked_examples_row_and_batch():
    p = build_plan(RULES)
    recs = [
        # 61 s, 30/6 -> 66 s. Premium: 0.0020 x 66 / 60 = 0.0022. Gold: 1% of the exact amount
        # 0.0100 + 0.0200 x 66/60 = 0.032 -> 0.00032. Evening: no (09:15 in Paris).
        record(1, route_class="premium", quality="4"),
        # quality "2" < 3: no gold uplift; at 20:30 Paris (19:30 UTC): 0.0010 per call
        record(2, quality="2", start=datetime(2026, 3, 4, 19, 30, tzinfo=UTC)),
        # 1 s at 0.00027 per minute = 0.0000045 exactly -> amount 0.000005; 10% of the exact amount
        # (before its rounding) is 0.00000045 -> 0.000000 (10% of the rounded amount would give 0.000001)
        record(3, direction="inbound", duration_s=1),
        # 3 messages from outside the EEA: 0.0100 x 3 = 0.03
        record(4, service="sms", units=3, origin="non_eea"),
        # 100,001 bytes -> 98 KB = 100,352 bytes; 0.5000 x 100,352 / 1,048,576 = 0.0478515625 -> 0.047852
        record(5, service="data", volume=100_001),
        # empty quality: 'not (quality < 3)' holds (a comparison with an empty value is false)
        record(6),
    ]
    want = {
        1: {"Premium route": D("0.002200"), "Gold partners": D("0.000320")},
        2: {"Evening": D("0.001000")},
        3: {"Tiny": D("0.000000")},
        4: {"Per message": D("0.030000")},
        5: {"Data uplift": D("0.047852")},
        6: {"Gold partners": D("0.000320")},
    }
    for r in recs:
        assert amounts(p, r) == want[r["id"]], r["id"]
    assert rate_record(p, recs[2]).amount == D("0.000005")
    batch, charges = hits_batch(p, recs)
    assert batch == hits_row(p, recs)
    assert charges.column("record").to_pylist() == [0, 0, 1, 2, 3, 4, 5]
    assert charges.schema.field("amount").type == pa.decimal128(38, 6)
    # surcharges never change the record's amount
    assert rate_record(p, recs[0]).amount == D("0.032000")


def test_cycle_conditions_need_the_cycle_totals():
    p = build_plan(RULES)
    assert needs_cycle_totals(p)
    r = record(1)
    assert "Heavy month" not in amounts(p, r)
    heavy = CycleTotals({("ORFR", "Voice"): {"minutes": Fraction(2000)}})
    assert amounts(p, r, heavy)["Heavy month"] == D("0.000550")  # 0.0005 x 66 / 60
    light = CycleTotals({("ORFR", "Voice"): {"minutes": Fraction(1000)}})
    assert "Heavy month" not in amounts(p, r, light)
    batch, _ = hits_batch(p, [r, record(2)], heavy)
    assert batch == hits_row(p, [r, record(2)], heavy)


def test_trace_explains_each_surcharge():
    p = build_plan(RULES)
    res = rate_record(p, record(1, route_class="premium"), trace=True)
    texts = [s.text for s in res.trace]
    assert ('surcharge Premium route: route_class == "premium" holds -> 0.0020 x 66 s / 60 = 0.0022 -> rounded once, '
            'half_up to 6 decimals: 0.0022 EUR') in texts
    assert "surcharge Heavy month: cycle.minutes > 1000 does not hold" in texts
    step = next(s for s in res.trace if s.text.startswith("surcharge Premium"))
    assert step.span.file.endswith("rules.icd") and step.span.line == 13


def test_invoice_lines_of_surcharges():
    p = build_plan(RULES)
    recs = [record(i, route_class="premium") for i in range(1, 8)]
    _, charges = hits_batch(p, recs)
    lines = record_charge_lines(p, [charges.slice(0, 5), charges.slice(5)], "2026-03")
    got = {ln.charge_name: ln for ln in lines}
    # 7 x 0.002200 = 0.0154 -> 0.02; 7 x 0.000320 = 0.00224 -> 0.00
    assert got["Premium route"].amount == D("0.02") and got["Premium route"].quantity == 7
    assert got["Premium route"].details["exact"] == "0.0154"
    assert got["Gold partners"].amount == D("0.00")
    assert got["Premium route"].line_kind == "surcharge" and got["Premium route"].rule_span.line == 13


# --------------------------------------------------------------------------- row == batch


S = Span("gen.icd", 3, 1, 3, 2)
FIELDS = ["route_class", "quality", "origin", "flag", "band", "prefix", "destination", "billed_s", "amount",
          "duration_s", "volume", "units", "b_number", "service", "partner.tier", "partner.code", "partner.level",
          "cycle.minutes", "cycle.revenue", "cycle.calls", "nothing"]
CONSTS = st.one_of(
    st.sampled_from(["premium", "standard", "3", "n/a", "", "true", "peak", "offpeak", "all", "gold", "P1", "12",
                     "data", "voice"]),
    st.builds(lambda n, e: D(n).scaleb(-e), st.integers(-5, 5000), st.integers(0, 3)),
    st.booleans(),
)


def field(name):
    return Expr("field", (name,), S)


def const(v):
    return Expr("const", (v,), S)


FIELD = st.sampled_from(FIELDS)
OP = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
LEAF = st.sampled_from(["cmp", "cmp", "cmp", "in", "call", "bare"])
NODE = st.sampled_from(["cmp", "cmp", "cmp", "in", "call", "bare", "and", "or", "not"])
FUNCTION = st.sampled_from(["starts_with", "length", "hour", "weekday"])
PREFIX = st.sampled_from(["1", "12", "4"])
LENGTH_OF = st.sampled_from(["b_number", "route_class"])
DAY = st.sampled_from(["sat", "sun", "mon"])
FN_OP = st.sampled_from(["<", ">=", "=="])
HOUR = st.integers(0, 23)
BARE = st.sampled_from(["flag", "route_class", "duration_s"])
D10 = st.integers(0, 9)
CONST_LIST = st.lists(CONSTS, min_size=1, max_size=3)
UNITS = st.sampled_from(["minute", "second", "hour", "message", "MB", "KB", "call", "event", "item"])
PER = st.sampled_from([1, 1, 1, 100])
SCOPES = st.lists(st.sampled_from([("outbound", "voice"), ("outbound", "data"), ("inbound", "voice")]), max_size=2,
                  unique=True)
BIG = st.integers(0, 10**7)
E8 = st.integers(0, 8)
P5 = st.integers(0, 5_000_000)
E6 = st.integers(0, 6)
N3 = st.integers(2, 3)


def conditions(draw, depth=0):
    kind = draw(NODE if depth < 2 else LEAF)
    if kind == "cmp":
        left, right = field(draw(FIELD)), const(draw(CONSTS))
        if draw(D10) == 0:
            right = field(draw(FIELD))
        if draw(st.booleans()):
            left, right = right, left
        return Expr("cmp", (draw(OP), left, right), S)
    if kind == "in":
        return Expr("in", (field(draw(FIELD)), tuple(draw(CONST_LIST))), S)
    if kind == "call":
        fn = draw(FUNCTION)
        if fn == "starts_with":
            return Expr("call", ("starts_with", (field("b_number"), const(draw(PREFIX)))), S)
        if fn == "weekday":
            call = Expr("call", ("weekday", (field("start"),)), S)
            return Expr("cmp", ("==", call, const(draw(DAY))), S)
        if fn == "length":
            call = Expr("call", ("length", (field(draw(LENGTH_OF)),)), S)
        else:
            call = Expr("call", ("hour", (field("start"),)), S)
        return Expr("cmp", (draw(FN_OP), call, const(D(draw(HOUR)))), S)
    if kind == "bare":
        return field(draw(BARE))
    if kind == "not":
        return Expr("not", (conditions(draw, depth + 1),), S)
    return Expr(kind, tuple(conditions(draw, depth + 1) for _ in range(draw(N3))), S)


def surcharges(draw):
    out = []
    for i in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            amount = D(draw(BIG)).scaleb(-draw(E8))
        else:
            amount = Price(D(draw(P5)).scaleb(-draw(E6)), "EUR", draw(UNITS), draw(PER))
        params = [("amount", amount)]
        if draw(st.integers(0, 4)):
            params.append(("when", conditions(draw)))
        scope = tuple(draw(SCOPES))
        out.append(Charge("surcharge", f"s{i}", tuple(params), scope, Span("gen.icd", 10 + i, 1, 10 + i, 2)))
    return tuple(out)


PRICES = st.builds(lambda u, e: D(u).scaleb(-e), st.integers(0, 2_000_000), st.integers(0, 6))
MAYBE_PRICE = st.one_of(st.none(), PRICES)
MAYBE_INC = st.one_of(st.none(), st.sampled_from(INCREMENTS))
INC = st.sampled_from(INCREMENTS)
TIME_UNIT = st.sampled_from(["minute", "second"])
MINIMUM = st.sampled_from([0, 0, 30])
ZERO = st.sampled_from(["connect_fee", "free"])
CALENDAR = st.one_of(st.none(), calendars())
VOL_ROUND = st.sampled_from([1, 1024])
PRECISION = st.integers(0, 8)
MODE = st.sampled_from(["half_up", "half_even", "up", "down"])
D4 = st.integers(0, 3)
D5 = st.integers(0, 4)
SERVICES = [("outbound", "voice"), ("inbound", "voice"), ("outbound", "data"), ("outbound", "sms")]
PARTNERS_OF = st.sampled_from([["*"], ["*", "P1"]])
ZONE = st.sampled_from(ZONES)


def service(draw, direction, svc):
    unit = {"voice": draw(TIME_UNIT), "data": "MB", "sms": "message"}[svc]
    time_unit = svc == "voice"
    rows = ()
    if draw(st.booleans()):
        rows = tuple(RateRow(pfx, f"dest-{pfx}", (("*", draw(PRICES)),), draw(MAYBE_PRICE), draw(MAYBE_INC), span=S)
                     for pfx in ("", "1", "12", "3"))
    slots = ()
    if time_unit and draw(D4) == 0:
        slots = (Slot(60, draw(PRICES), S), Slot(None, draw(PRICES), S))
    return ServicePlan(
        direction, svc, unit,
        rates=RateTable(rows, "EUR") if rows else None,
        flat_price=None if rows else draw(PRICES),
        increments=draw(INC),
        minimum_s=draw(MINIMUM),
        connect_fee=draw(PRICES) if time_unit and draw(st.booleans()) else D(0),
        slots=slots,
        calendar=draw(CALENDAR) if time_unit else None,
        split_at_band_boundary=time_unit and draw(st.booleans()),
        zero_duration=draw(ZERO),
        volume=VolumeUnit("MB", 2**20, draw(VOL_ROUND), 0) if svc == "data" else None,
        rounding=Rounding(draw(PRECISION), draw(MODE)),
        span=S,
    )


@st.composite
def plans_with_surcharges(draw):
    """Agreements that rate most records (with any partner, open ended), each service with its own
    rounding, and random surcharges."""
    from icdsl.plan.model import Plan

    ags = []
    for i, partner in enumerate(draw(PARTNERS_OF)):
        svcs = tuple(service(draw, d, s) for d, s in SERVICES if draw(D5))
        ags.append(Agreement(f"a{i}", 1, partner, datetime(2026, 1, 1).date(), None, "EUR", draw(ZONE),
                             Rounding(6, "half_up"), svcs, surcharges(draw), source_hash=f"h{i}", span=S))
    partners = (Partner("P1", "one", attributes=(("tier", "gold"), ("level", D("3")))),
                Partner("P3", "three", attributes=(("tier", "silver"),)))
    return Plan(partners=partners, agreements=tuple(ags))


R_SERVICE = st.sampled_from(SERVICES)
R_PARTNER = st.sampled_from(["P1", "P1", "P3", "P9"])
R_NUMBER = st.one_of(st.text("1234", min_size=1, max_size=6), st.none())
R_START = st.integers(0, 5 * 86400)
R_DUR = st.one_of(st.sampled_from([0, 1, 29, 30, 61, 66, 121, 3600]), st.integers(0, 20_000))
R_VOL = st.integers(0, 10**8)
R_UNITS = st.one_of(st.none(), st.integers(0, 7))
R_ROUTE = st.sampled_from([None, "premium", "standard", "", "3"])
R_QUALITY = st.sampled_from([None, "1", "2.5", "3", "4", "n/a", " 3 ", "-1"])
R_ORIGIN = st.sampled_from([None, "non_eea", "eea"])
R_FLAG = st.sampled_from([None, "true", "TRUE", "false", "yes"])


@st.composite
def surcharge_records(draw, n):
    from datetime import timedelta

    out = []
    for i in range(n):
        d, s = draw(R_SERVICE)
        out.append({
            "id": i, "partner": draw(R_PARTNER), "direction": d, "service": s, "a_number": "1",
            "b_number": draw(R_NUMBER),
            "start": datetime(2026, 3, 27, tzinfo=UTC) + timedelta(seconds=draw(R_START)),
            "duration_s": draw(R_DUR), "volume": draw(R_VOL), "units": draw(R_UNITS),
            "route_class": draw(R_ROUTE), "quality": draw(R_QUALITY), "origin": draw(R_ORIGIN), "flag": draw(R_FLAG),
        })
    return out


def cycles(draw, p):
    if not draw(st.booleans()):
        return None
    return CycleTotals({(pc, a.name): {"minutes": Fraction(draw(st.integers(0, 3000)), 7),
                                       "revenue": Fraction(draw(st.integers(0, 50))),
                                       "calls": Fraction(draw(st.integers(0, 10)))}
                        for pc in ("P1", "P3") for a in p.agreements})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(p=plans_with_surcharges(), data=st.data())
def test_row_and_batch_agree_on_surcharges(p, data):
    recs = data.draw(surcharge_records(data.draw(st.integers(1, 30))))
    cycle = cycles(data.draw, p)
    batch, _ = hits_batch(p, recs, cycle)
    assert batch == hits_row(p, recs, cycle)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(p=plans_with_surcharges(), data=st.data())
def test_row_and_batch_agree_on_surcharges_in_bulk(p, data):
    """Many records in small chunks: the chunked, threaded pricing path keeps the numerators right."""
    from datetime import timedelta
    from unittest.mock import patch

    from icdsl.rating import batch as batch_module

    recs = data.draw(surcharge_records(30))
    bulk = [r | {"id": k * 100 + r["id"], "start": r["start"] + timedelta(minutes=k * 17)}
            for k in range(40) for r in recs]
    with patch.object(batch_module, "CHUNK", 64):
        batch, _ = hits_batch(p, bulk)
    assert batch == hits_row(p, bulk)


def test_the_cycle_level_pass_end_to_end():
    """Rate, sum the usage, compute the cycle's totals, evaluate the per-record charges again."""
    from icdsl.charges.context import merge_usage, usage_from_rated

    p = build_plan(RULES)
    recs = [record(i, duration_s=600) for i in range(1, 121)]  # 120 calls x 10 minutes = 1,200 minutes
    t = table(recs)
    rated, _, first = rate_batch_with_charges(p, t)
    assert "Heavy month" not in set(first.column("charge").to_pylist())
    usage = merge_usage(usage_from_rated(p, rated.slice(0, 50), first), usage_from_rated(p, rated.slice(50), None))
    (u,) = usage
    assert (u.records, u.billed_seconds, u.kind) == (120, 72_000, "time")
    # 120 x (0.0100 + 0.0200 x 10) = 25.20
    assert u.amount == D("25.200000")
    totals = CycleTotals.from_usage(usage)
    assert totals.get("ORFR", "Voice", "minutes") == 1200
    _, _, second = rate_batch_with_charges(p, t, cycle=totals)
    heavy = [r for r in second.to_pylist() if r["charge"] == "Heavy month"]
    assert len(heavy) == 120 and heavy[0]["amount"] == D("0.005000")  # 0.0005 x 10 minutes
    (line,) = [ln for ln in record_charge_lines(p, [second]) if ln.charge_name == "Heavy month"]
    assert line.amount == D("0.60")
