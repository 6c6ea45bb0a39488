"""The batch executor: same answers as the row executor, record for record and field for field."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_rating_row import (
    SCENARIOS,
    UK_DECK,
    _holiday_plan,
    _split_plan,
    agreement,
    plan,
    rec,
    row,
    uk_plan,
    voice,
)

from icdsl.plan.model import Increments, Partner, Plan, RateRow, RateTable, Rounding
from icdsl.rating import batch as batch_module
from icdsl.rating.batch import rate_batch
from icdsl.rating.result import RATED_COLUMNS
from icdsl.rating.row import rate_record
from icdsl.testing import build_plan, rate_both

TYPES = {
    "id": pa.int64(),
    "partner": pa.string(),
    "direction": pa.string(),
    "service": pa.string(),
    "a_number": pa.string(),
    "b_number": pa.string(),
    "start": pa.timestamp("us", tz="UTC"),
    "duration_s": pa.int64(),
    "volume": pa.int64(),
    "units": pa.int64(),
}


def table(records: list[dict]) -> pa.Table:
    cols = {name: pa.array([r.get(name) for r in records], type=t) for name, t in TYPES.items()}
    return pa.table(cols)


def by_id(t: pa.Table) -> dict:
    return {r["id"]: r for r in t.to_pylist()}


def assert_same(p: Plan, records: list[dict], t: pa.Table | None = None) -> tuple[pa.Table, pa.Table]:
    """Batch == row for every record: every rated field, every reject reason and detail."""
    t = table(records) if t is None else t
    rated, rejects = rate_batch(p, t)
    assert rated.num_rows + rejects.num_rows == t.num_rows
    got, bad = by_id(rated), by_id(rejects)
    for r in records:
        want = rate_record(p, r)
        if want.ok:
            assert r["id"] in got, (r, bad.get(r["id"]))
            row_ = got[r["id"]]
            for col in RATED_COLUMNS:
                assert row_[col] == getattr(want, col), (col, row_[col], getattr(want, col), r)
        else:
            assert r["id"] in bad, (r, want)
            assert bad[r["id"]]["reason"] == want.reason, (r, bad[r["id"]], want)
            assert bad[r["id"]]["detail"] == want.detail
    return rated, rejects


@pytest.mark.parametrize(("name", "make", "record", "want"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(name, make, record, want):
    rated, rejects = assert_same(make(), [record])
    if isinstance(want, str):
        assert rejects["reason"].to_pylist() == [want]
    else:
        got = rated.to_pylist()[0]
        for key, value in want.items():
            assert (str(got[key]) if key == "amount" else got[key]) == value, (key, got[key], value)


def test_schema_and_types():
    rated, rejects = rate_batch(uk_plan(), table([rec("447712345", dur=61), rec("33", id=2)]))
    assert rated.schema.field("amount").type == pa.decimal128(18, 6)
    assert rated.schema.field("billed_units").type == pa.int64()
    assert rated.schema.field("agreement_version").type == pa.int64()
    assert pa.types.is_dictionary(rated.schema.field("prefix").type)
    assert rated.column_names == list(RATED_COLUMNS)
    assert rejects.column_names[:3] == ["id", "reason", "detail"]
    assert set(table([rec()]).column_names) <= set(rejects.column_names)
    assert rejects.to_pylist()[0]["b_number"] == "33"


def test_all_scenarios_in_one_batch():
    """Several plans' scenarios mixed in one table would need one plan: use the UK one, many rows."""
    p = uk_plan()
    records = []
    start = datetime(2026, 3, 27, 18, 0, tzinfo=UTC)
    numbers = ["44", "447", "4477", "447712", "441", "33", "4", "", "44a7", "4477123456789"]
    for i in range(5000):
        records.append(
            rec(
                numbers[i % len(numbers)],
                id=i,
                dur=[0, 1, 29, 30, 31, 59, 60, 61, 7200][i % 9],
            )
            | {"start": start + timedelta(minutes=37 * i)}
        )
    assert_same(p, records)


def test_chunks_groups_and_partners():
    """More rows than a chunk, several agreements (own and "*"), dates spanning a DST change."""
    own = agreement(voice(UK_DECK, increments=Increments(60, 6)), partner="ORANGE", name="orange")
    star = agreement(voice(UK_DECK[:2]), partner="*", name="any")
    paris = agreement(
        voice((row("33", "0.07", "0.03"),), service="voice", direction="inbound"),
        partner="VODA",
        tz="Europe/Paris",
    )
    p = plan(own, star, paris, partners=("ORANGE", "VODA", "SFR"))
    rng = np.random.default_rng(7)
    n = batch_module.CHUNK * 2 + 123
    base = datetime(2026, 3, 28, 0, 0, tzinfo=UTC)
    partners = ["ORANGE", "VODA", "SFR", "OTHER"]
    numbers = ["447712", "44770", "4478", "441", "331", "999"]
    records = [
        rec(
            numbers[int(rng.integers(len(numbers)))],
            id=i,
            dur=int(rng.integers(0, 400)),
            partner=partners[int(rng.integers(4))],
            direction=["outbound", "inbound"][int(rng.integers(2))],
        )
        | {"start": base + timedelta(seconds=int(rng.integers(0, 4 * 86400)))}
        for i in range(n)
    ]
    rated, rejects = assert_same(p, records)
    assert set(rated["agreement"].to_pylist()) == {"orange", "any", "deal"}
    assert set(rejects["reason"].to_pylist()) == {"no_rate", "no_agreement"}


def test_mixed_precisions():
    two = agreement(voice((row("44", "0.123"),), rounding=Rounding(2, "half_up")), partner="ORANGE")
    six = agreement(voice((row("44", "0.1234567"),), rounding=Rounding(6, "half_up")), partner="VODA")
    p = plan(two, six)
    rated, _ = assert_same(p, [rec("441", id=1), rec("441", id=2, partner="VODA")])
    assert rated.schema.field("amount").type == pa.decimal128(18, 6)
    assert {r["id"]: r["amount"] for r in rated.to_pylist()} == {1: D("0.12"), 2: D("0.123457")}


def test_overflow_falls_back_to_exact():
    """Quantities whose int64 numerator could overflow are rated exactly, never with wrong digits."""
    rows = (row("44", "1234.123456789"), row("45", "0.000001"))  # 9 decimals: units of 1e-9
    p = plan(agreement(voice(rows, unit="second", increments=Increments(1, 1), calendar=None)))
    records = [
        rec("441", id=1, dur=10**9),  # 1.2e12: does not fit decimal(18, 6)
        rec("441", id=2, dur=10**7),  # numerator 1.2e19 units: beyond int64, exact path
        rec("451", id=3, dur=2**50),  # same, on the cheap row
        rec("441", id=4, dur=60),  # int64 path
    ]
    rated, rejects = assert_same(p, records)
    assert rejects["reason"].to_pylist() == ["amount_overflow"]
    amounts = {r["id"]: r["amount"] for r in rated.to_pylist()}
    assert amounts[2] == D("12341234567.890000")
    assert amounts[3] == D("1125899906.842624")
    assert amounts[4] == D("74047.407407")  # 74047.40740734


def test_exact_only_service():
    p = plan(agreement(voice((row("44", "123456789012345.123456"),), calendar=None)))
    assert_same(p, [rec("441", id=1, dur=60), rec("441", id=2, dur=6000)])


def test_odd_numbers_and_prefixes():
    rows = (
        row("44", "0.1"),
        row("447", "0.2"),
        row("4477123456789", "0.3"),
        row("", "0.9"),
        row("4a", "0.5"),
    )
    p = plan(agreement(voice(rows, calendar=None)))
    numbers = ["4", "44", "447", "4477", "4477123456789", "44771234567890", "4a1", "x", "", "٤٤", "4477 12"]
    assert_same(p, [rec(b, id=i) for i, b in enumerate(numbers)])
    digits_only = plan(agreement(voice(rows[:4], calendar=None)))
    assert_same(digits_only, [rec(b, id=i) for i, b in enumerate(numbers)])


def test_duplicate_prefixes_and_dates():
    rows = (
        row("44", "0.1"),
        row("44", "0.2"),  # same prefix, later row wins
        row("447", "0.3", to=date(2026, 3, 1)),
        row("447", "0.4", frm=date(2026, 2, 1)),  # overlaps: the later effective_from wins
        row("4478", "0.5", frm=date(2026, 3, 10), to=date(2026, 3, 12)),
    )
    p = plan(agreement(voice(rows, calendar=None)))
    records = [
        rec(b, id=i * 100 + j) | {"start": datetime(2026, 1, 15, tzinfo=UTC) + timedelta(days=9 * j)}
        for i, b in enumerate(["441", "4471", "44781"])
        for j in range(12)
    ]
    assert_same(p, records)


def test_split_around_dst_and_long_calls():
    p = _split_plan(Increments(1, 1))
    starts = ["2026-03-27T19:58:00", "2026-03-30T06:59:30", "2026-03-28T23:59:59", "2026-03-29T00:30:00"]
    records = [
        rec("441", id=i * 10 + j, dur=d) | {"start": datetime.fromisoformat(s).replace(tzinfo=UTC)}
        for i, s in enumerate(starts)
        for j, d in enumerate([0, 1, 2, 61, 3600, 200_000])
    ]
    rated, _ = assert_same(p, records)
    # Mon 07:59:30 BST + 200,000 s (to Wed 15:32:50 BST)
    assert rated.to_pylist()[-1]["id"] == 35
    assert {r["id"]: r["band"] for r in rated.to_pylist()}[15] == "offpeak+peak+offpeak+peak+offpeak+peak"


def test_split_with_slots_and_missing_band_price():
    from icdsl.plan.model import Slot

    slots = (Slot(30, D("0.2")), Slot(None, D("0.1")))
    p = plan(agreement(voice((row("44", "0.10", "0.05"),), slots=slots, split_at_band_boundary=True)))
    one_band = RateRow("44", "UK", (("peak", D("0.1")),))
    q = plan(agreement(voice((one_band,), split_at_band_boundary=True)))
    records = [
        rec("441", id=i, dur=d, start="2026-03-04T19:59:00") for i, d in enumerate([1, 59, 60, 61, 130])
    ]
    assert_same(p, records)
    _, rejects = assert_same(q, records)
    assert "no price for band offpeak at prefix 44" in rejects["detail"].to_pylist()


def test_holidays_in_batch():
    p = _holiday_plan()
    records = [rec("331", id=h, start=f"2026-04-30T{h:02d}:30:00", dur=3600) for h in range(24)] + [
        rec("331", id=100 + h, start=f"2026-05-01T{h:02d}:30:00") for h in range(24)
    ]
    rated, _ = assert_same(p, records)
    bands = {r["id"]: r["band"] for r in rated.to_pylist()}
    assert bands[9] == "peak" and bands[109] == "offpeak"


def test_column_types_are_normalized():
    p = plan(agreement(voice(UK_DECK), partner="7"), partners=("7",))
    records = [rec("447712", id=i, partner="7", dur=30 + i) for i in range(4)]
    t = table(records)
    t = t.set_column(1, "partner", pa.array([7] * 4, type=pa.int32()))
    t = t.set_column(2, "direction", pa.array(["outbound"] * 4).dictionary_encode())
    t = t.set_column(5, "b_number", pa.array([r["b_number"] for r in records], type=pa.large_string()))
    t = t.set_column(6, "start", t["start"].cast(pa.timestamp("ms", tz="UTC")))
    t = t.set_column(7, "duration_s", t["duration_s"].cast(pa.int32()))
    rated, rejects = rate_batch(p, t)
    assert rejects.num_rows == 0
    want = [rate_record(p, r | {"partner": 7}).amount for r in records]
    assert rated["amount"].to_pylist() == want


def test_nulls_and_empty():
    p = uk_plan()
    rated, rejects = rate_batch(p, table([]))
    assert rated.num_rows == rejects.num_rows == 0
    records = [
        rec(id=1, partner=None),
        rec(id=2, direction=None),
        rec(id=3) | {"start": None},
        rec(id=4, dur=None),
    ]
    _, rejects = assert_same(p, records)
    assert rejects["detail"].to_pylist() == [
        "partner is missing",
        "direction is missing",
        "start is missing",
        "duration_s is missing",
    ]


def test_plan_caches_follow_identity():
    p1 = uk_plan()
    p2 = plan(agreement(voice((row("44", "0.5"),))))
    t = table([rec("441")])
    assert rate_batch(p1, t)[0]["amount"].to_pylist() == [D("0.010000")]
    assert rate_batch(p2, t)[0]["amount"].to_pylist() == [D("0.500000")]
    assert rate_batch(p1, t)[0]["amount"].to_pylist() == [D("0.010000")]


def test_threads_do_not_change_answers(monkeypatch):
    p = plan(
        agreement(voice(UK_DECK), partner="ORANGE"),
        agreement(voice((RateTable and row("44", "0.3"),)), partner="*"),
        partners=(Partner("ORANGE", "o").code,),
    )
    n = batch_module.CHUNK * 3
    t = table(
        [
            rec(["447712", "441", "4478"][i % 3], id=i, dur=i % 500, partner=["ORANGE", "X"][i % 2])
            for i in range(n)
        ]
    )
    one, _ = rate_batch(p, t)
    monkeypatch.setattr(batch_module, "_threads", lambda: 1)
    two, _ = rate_batch(p, t)
    assert one["amount"].equals(two["amount"])
    assert pc.sum(one["billed_units"]).as_py() == pc.sum(two["billed_units"]).as_py()


def test_text_where_a_number_goes_is_looked_up_like_the_row_executor_does():
    """A data session or an MMS may carry an APN instead of a number (intake keeps it for
    services that need no number): a rate table finds no digit row for it, a catch-all row
    prices it. The batch's vectorized lookup reads such a value as garbage digits; it must take
    it to the slow path, never index with it (it did: IndexError), and agree with the row
    executor, in a batch mixed with numbers."""
    p = build_plan('partner IOT "IoT" {\n  currency EUR\n}\n\n'
                   'agreement "APN" v1 with IOT effective 2026-01-01 .. {\n'
                   '  outbound data {\n    price by destination in EUR per MB {\n'
                   '      33 "France" 1.0000\n    }\n  }\n\n'
                   '  outbound mms {\n    price by destination in EUR per message {\n'
                   '      "" "Any" 0.5000\n      33 "France" 1.0000\n    }\n  }\n}\n')
    cases = [("data", "internet.m2m", 1500, None), ("data", "33123", 1_048_576, None), ("mms", "apn.x", None, 1),
             ("mms", "33612", None, 1), ("mms", "apn.a.much.longer.name.example", None, 1), ("data", "zz", 5, None)]
    recs = [{"id": str(i), "partner": "IOT", "direction": "outbound", "service": s, "b_number": b,
             "start": "2026-03-04T09:15:00Z", "duration_s": 0, "volume": v, "units": u}
            for i, (s, b, v, u) in enumerate(cases * 50)]
    cmp = rate_both(p, recs)
    assert not cmp.differences, cmp.differences[:5]
    got = [(r.ok, r.destination if r.ok else r.reason) for r in cmp.row[:6]]
    assert got == [(False, "no_rate"), (True, "France"), (True, "Any"), (True, "France"), (True, "Any"),
                   (False, "no_rate")]
