"""The cycle engine (icdsl.cycle): run by hand without a store, the columnar line sums checked
against the obvious per-record computation, and the one function deciding local days."""

from __future__ import annotations

import contextlib
import importlib.util
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from helpers import ROOT

from icdsl.charges import groups as groups_mod
from icdsl.cycle import CycleInputs, MemorySinks, day_edges, day_index, local_day, run
from icdsl.cycle.invoicing import BASE_DIMS, DIMENSIONS
from icdsl.cycle.periods import local_days, month, parse_period
from icdsl.cycle.rater import SEP, Rater, decimal_of_int64, unscaled_int64

# --------------------------------------------------------------------------- local days


def test_day_edges_follow_the_zone_and_daylight_saving():
    per = month(2026, 3, "Europe/Paris")
    edges = day_edges(per)
    assert len(edges) == 32 and edges[0] == int(per.start.timestamp()) * 10**6
    assert edges[-1] == int(per.end.timestamp()) * 10**6
    # 29 March (summer time from 02:00) has 23 hours; every other day 24
    lengths = np.diff(edges) // 3_600_000_000
    assert lengths[28] == 23 and set(lengths.tolist()) - {23} == {24}
    # an instant is on the day whose midnight it follows; before and after the period: -1, 31
    us = np.array([edges[0] - 1, edges[0], edges[1] - 1, edges[1], edges[-1] - 1, edges[-1]])
    assert day_index(us, edges).tolist() == [-1, 0, 0, 1, 30, 31]


@pytest.mark.parametrize("tz", ["UTC", "Europe/Paris", "America/Sao_Paulo", "Pacific/Apia", "Asia/Kolkata"])
def test_local_day_is_the_wall_clock_date(tz):
    rng = random.Random(7)
    zone = ZoneInfo(tz)
    instants = [datetime(2011, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 20 * 365 * 86400))
                for _ in range(300)]
    for t in instants:
        assert local_day(t, tz) == t.astimezone(zone).date()
    us = np.array([int(t.timestamp()) * 10**6 for t in instants], np.int64)
    assert local_days(us, tz) == [t.astimezone(zone).date() for t in instants]


# --------------------------------------------------------------------------- columnar line sums


def _rated_chunk(rng: np.random.Generator, n: int, scale: int, *, huge: bool = False) -> pa.Table:
    """A batch executor's rated table (dictionary strings, decimal amounts), random values."""
    def dict_col(values: list[str | None]) -> pa.Array:
        picks = [values[i] for i in rng.integers(0, len(values), n)]
        return pc.dictionary_encode(pa.array(picks, pa.string()))

    amounts = rng.integers(-5 * 10**scale, 90 * 10**scale, n)
    if huge:
        amounts[: n // 3] = 10**17  # the sum leaves int64: the decimal path
    amount = pa.array([Decimal(int(a)).scaleb(-scale) for a in amounts], pa.decimal128(30, scale))
    ahash = dict_col(["h1", "h2"])
    return pa.table({
        "agreement": pc.dictionary_encode(pc.if_else(pc.equal(pc.cast(ahash, pa.string()), "h1"), "A", "B")),
        "agreement_version": pc.if_else(pc.equal(pc.cast(ahash, pa.string()), "h1"), 1, 2),
        "agreement_hash": ahash,
        "direction": dict_col(["outbound", "inbound"]),
        "service": dict_col(["voice", "sms"]),
        "currency": dict_col(["EUR", "GBP"]),
        "destination": dict_col(["France", "Spain", None, ""]),
        "band": dict_col(["peak", "offpeak"]),
        "prefix": dict_col(["33", "336", "34", None]),
        "rate": dict_col(["0.0100", "0.0150", "0.2"]),
        "rule": dict_col(["a.icd:3:5", "a.icd:4:5"]),
        "billed_units": pa.array(rng.integers(0, 600, n), pa.int64()),
        "amount": amount,
        "start": pa.array(rng.integers(1_772_000_000, 1_775_000_000, n) * 10**6, pa.timestamp("us", tz="UTC")),
    })


def _reference(chunks: list[pa.Table], dims: tuple[str, ...]) -> list[dict]:
    """The lines computed record by record: first-appearance order, exact sums."""
    lines: dict[str, dict] = {}
    for t in chunks:
        for r in t.to_pylist():
            v = {c: "" if r[c] is None else str(r[c]) for c in DIMENSIONS + BASE_DIMS}
            key = SEP.join(v[c] for c in BASE_DIMS + dims)
            g = lines.setdefault(key, {"count": 0, "units": 0, "amount": Decimal(0), "first": r["start"],
                                       "last": r["start"], "values": {c: set() for c in DIMENSIONS}})
            g["count"] += 1
            g["units"] += r["billed_units"]
            g["amount"] += r["amount"]
            g["first"], g["last"] = min(g["first"], r["start"]), max(g["last"], r["start"])
            for c in DIMENSIONS:
                g["values"][c].add(v[c])
    return [dict(g, key=k) for k, g in lines.items()]


class _Keep:
    def __init__(self):
        self.tables = []

    def write(self, t):
        self.tables.append(t)


@pytest.mark.parametrize("dims", [("destination", "band"), (), ("prefix", "rate", "rule"), DIMENSIONS])
@pytest.mark.parametrize("huge", [False, True])
def test_line_sums_on_columns_equal_the_record_by_record_sums(dims, huge):
    rng = np.random.default_rng(len(dims) + 10 * huge)
    chunks = [_rated_chunk(rng, n, 6, huge=huge) for n in (700, 1, 2500, 40)]
    out = _Keep()
    r = Rater(None, out, _Keep(), 8, dims)
    for i, t in enumerate(chunks):
        r.add(t, pa.table({"reason": pa.array([], pa.string())}), i)
    ref = _reference(chunks, dims)
    groups = r.groups()
    assert [g.key for g in groups] == list(range(len(ref)))  # numbered in order of first record
    for g, e in zip(groups, ref, strict=True):
        assert r.line_keys[g.key].as_py() == e["key"]
        assert (g.count, g.units, g.amount, g.first, g.last) == (e["count"], e["units"], e["amount"], e["first"],
                                                                 e["last"])
        for c in DIMENSIONS:
            only = next(iter(e["values"][c])) or None if len(e["values"][c]) == 1 else None
            assert g.only(c) == only, c
    # each record's line column is the line of its values
    written = pa.concat_tables(out.tables)
    for row in written.slice(0, 400).to_pylist():
        key = SEP.join("" if row[c] is None else str(row[c]) for c in BASE_DIMS + dims)
        assert r.line_keys[row["line"]].as_py() == key


def test_line_codes_are_made_dense_when_their_product_would_overflow(monkeypatch):
    rng = np.random.default_rng(3)
    chunks = [_rated_chunk(rng, 500, 6) for _ in range(2)]
    monkeypatch.setattr(groups_mod, "LIMIT", 7)  # every product of sizes "overflows"
    r = Rater(None, _Keep(), _Keep(), 8, DIMENSIONS)
    for i, t in enumerate(chunks):
        r.add(t, pa.table({"reason": pa.array([], pa.string())}), i)
    monkeypatch.undo()
    ref = _reference(chunks, DIMENSIONS)
    assert [(g.count, g.amount) for g in r.groups()] == [(e["count"], e["amount"]) for e in ref]


def test_unscaled_integers_round_trip():
    values = np.array([1500000, -1, 123456789123456, 0, -(2**40)], np.int64)
    arr = decimal_of_int64(values, 6)
    assert arr.to_pylist() == [Decimal(int(v)).scaleb(-6) for v in values]
    assert unscaled_int64(arr).to_pylist() == values.tolist()


# --------------------------------------------------------------------------- the engine by hand


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cycle_engine", ROOT / "tests/benchmarks/bench_cycle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.PARTNERS = 5
    return mod


def test_the_engine_by_hand_bills_what_the_store_bills(tmp_path):
    """The same records through ``run(CycleInputs...)`` (no store) and through the store's
    ``cycle run``: the same lines, invoices and counts."""
    import pyarrow.parquet as pq

    from icdsl.billing.store import open_store
    from icdsl.plan.compiler import build

    bench = _bench()
    project, prefixes = bench.make_project(tmp_path / "project")
    traffic = bench.make_traffic(tmp_path / "traffic", prefixes, 20_000, 1)
    with contextlib.chdir(project):
        plan, program, diags = build(["bench.icd"])
        assert plan is not None, [str(d) for d in diags]
    records = pq.read_table(traffic[0])
    mine = records.filter(pc.equal(records.column("partner"), "P002"))
    chunks = [(7, mine.slice(0, 1000)), (8, mine.slice(1000))]
    result = run(CycleInputs.of(plan, "P002", "2026-03", chunks))

    c = result.counts
    assert c.read == mine.num_rows == c.rated + c.rejected and not c.problems()
    assert c.by_batch == {7: 1000, 8: mine.num_rows - 1000}
    rated = result.sinks.read_rated(["amount", "line", "id"])
    assert rated.num_rows == c.rated
    assert sum(g.amount for g in result.lines) == pc.sum(rated.column("amount")).as_py()
    assert sum(result.daily.values()) == c.records_in
    assert not result.blocked, [str(f) for f in result.findings]
    assert len(result.drafts.invoices) == 1
    inv = result.drafts.invoices[0]
    assert inv.subtotal == sum(ln.amount for ln in inv.lines) and inv.total == inv.subtotal + inv.tax.amount

    with open_store(f"sqlite:///{tmp_path / 's.db'}", data_dir=tmp_path / "data") as store:
        store.load_plan(plan, program)
        store.ingest(traffic[0], None, plan)
        rep = store.run_cycle("P002", "2026-03", plan)
        (row,) = store.invoices(rep.cycle_id)
        lines = store.invoice_lines(row.id)
    assert (rep.records_in, rep.rated, rep.rejected) == (c.records_in, c.rated, c.rejected)
    assert row.subtotal == inv.subtotal and row.total == inv.total
    assert [(ln.description, ln.quantity, ln.amount, ln.line_key, ln.record_count) for ln in lines] == \
           [(ln.description, ln.quantity, ln.amount, ln.line_key, ln.record_count) for ln in inv.lines]


def test_inputs_name_a_declared_partner(tmp_path):
    from icdsl.cycle import CycleError
    from icdsl.plan.compiler import build

    bench = _bench()
    project, _ = bench.make_project(tmp_path / "project")
    with contextlib.chdir(project):
        plan, _program, _ = build(["bench.icd"])
    with pytest.raises(CycleError, match="not declared"):
        CycleInputs.of(plan, "NOPE", "2026-03")
    empty = run(CycleInputs.of(plan, "P001", "2026-03", sinks=MemorySinks()))
    assert empty.counts.read == 0 and empty.lines == [] and empty.drafts is not None
    assert parse_period("2026-03", "UTC").local_start == date(2026, 3, 1)


def test_the_engine_imports_no_store_and_no_ui():
    import subprocess
    import sys

    code = ("import sys, icdsl.cycle, icdsl.cycle.engine; "
            "bad = sorted(m for m in sys.modules if m.startswith(('icdsl.billing', 'icdsl.tui', 'icdsl.cli', "
            "'sqlalchemy', 'textual'))); print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_rating_values_over_batches_finds_what_it_finds_over_the_whole_file():
    from icdsl.cycle.validation import Policy, RatingValues, ValidationContext

    n = 1000
    rng = np.random.default_rng(5)
    pick = rng.random(n)
    t = pa.table({
        "id": pa.array([f"r{i}" for i in range(n)]),
        "rate": pa.array([None if p < .01 else " " if p < .02 else "0.1" for p in pick]),
        "amount": pa.array([Decimal(0) if p > .97 else Decimal("1.5") for p in pick], pa.decimal128(38, 6)),
        "currency": pa.array(["EUR"] * n), "agreement_hash": pa.array(["h"] * n),
        "rule": pa.array([None if .5 < p < .51 else "r" for p in pick]),
        "billed_units": pa.array(rng.integers(0, 3, n), pa.int64()),
        "prefix": pa.array([str(33 + int(p * 5)) for p in pick]),
        "destination": pa.array(["" if .3 < p < .4 else "France" for p in pick]),
    })

    def context(**read):
        return ValidationContext(partner="P", partner_name="P", timezone="UTC", invoice_currency="EUR",
                                 period=month(2026, 3, "UTC"), plan=None, records_in=n, rated_count=n,
                                 rejected_count=0, rejects=pa.table({}), daily={}, history={}, last_data_day=None,
                                 lines=[], fx=None, policy=Policy(), **read)

    whole = RatingValues().validate(context(read_rated=lambda cols: t.select(list(cols))))
    batches = RatingValues().validate(context(
        read_rated_batches=lambda cols: [t.select(list(cols)).slice(i, 70) for i in range(0, n, 70)]))
    assert [f.code for f in whole] == ["empty_rating_values", "unnamed_destination", "zero_amount"]
    assert batches == whole
    assert whole[0].count == int(((pick < .02) | ((pick > .5) & (pick < .51))).sum())

    # seen while rating: the executor's dictionary columns and narrower amounts, chunk by chunk
    from icdsl.cycle.validation import RatedValuesScan

    def executor_like(part: pa.Table) -> pa.Table:
        cols = {c: (pc.dictionary_encode(part.column(c)) if pa.types.is_string(part.column(c).type) and c != "id"
                    else part.column(c)) for c in part.column_names}
        cols["amount"] = pc.cast(part.column("amount"), pa.decimal128(18, 6))
        return pa.table(cols)

    scan = RatedValuesScan(Policy().samples)
    for i in range(0, n, 130):
        scan.add(executor_like(t.slice(i, 130)))
    assert RatingValues().validate(context(rated_values=scan)) == whole
    clean = RatedValuesScan()
    clean.add(executor_like(t.filter(pc.field("rate") == "0.1").filter(pc.field("destination") == "France")
                            .filter(pc.field("rule") == "r").filter(pc.field("billed_units") == 0)))
    assert clean.findings() == []
