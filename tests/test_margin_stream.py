"""Margins streamed (``icdsl margin --rated ... --cdrs ...``): the rated file and the traffic
file read side by side a batch at a time, each batch costed and summed (exact integer partial
sums, combined at the end). Whatever the batch size, the order of the traffic, the records
missing on either side or the rated file's other directions, the reports, totals, findings,
notes and the per-record file are those of :func:`icdsl.routing.margin.margins` on the whole
records at once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_margin import plan_of, run, traffic

from icdsl.plan.compiler import build
from icdsl.rating.batch import rate_batch
from icdsl.routing.margin import (
    BY,
    MarginError,
    RecordsFile,
    margins,
    money_columns,
    sold,
    sold_batches,
    streamed_margins,
)


def _bench():
    path = Path(__file__).parent / "benchmarks" / "bench_margin.py"
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("bench_margin", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """bench_margin's workload, small: 2,000 records over 3 days, 3 suppliers, 20% by the LCR."""
    bench = _bench()
    folder = tmp_path_factory.mktemp("stream")
    root = bench.write_project(folder, 300, 3, 200)
    plan, _, diags = build([root / "bench.icd"])
    assert plan is not None, diags
    t = bench.traffic(root, 2000, 3, 3)
    rated, _ = rate_batch(plan, t)
    return plan, t, rated, folder


def _same(plan, whole: pa.Table, batches, first=None, last=None, decks=None) -> None:
    from datetime import date

    first, last = first or date(2026, 3, 1), last or date(2026, 3, 31)
    from icdsl.routing.margin import in_period, with_decks

    policy = plan.lcr_policies[0]
    want = margins(plan, in_period(whole, first, last), policy)
    got, after = streamed_margins(plan, batches, policy, first, last, decks)
    for by in BY:
        assert got.report(by).equals(want.report(by)), by
        assert got.report(by).schema == want.report(by).schema
    assert got.totals() == want.totals()
    assert got.findings() == want.findings()
    assert got.notes == want.notes
    if decks:
        want_after = margins(with_decks(plan, policy, decks), in_period(whole, first, last), policy)
        assert after.report("destination").equals(want_after.report("destination"))
        assert after.totals() == want_after.totals()


@pytest.mark.parametrize("size", [1, 7, 333, 5000])
def test_batches_of_any_size_give_the_whole_files_figures(workload, size, tmp_path):
    plan, t, rated, _ = workload
    pq.write_table(rated, tmp_path / "rated.parquet", row_group_size=450)
    pq.write_table(t, tmp_path / "cdrs.parquet", row_group_size=700)  # row groups out of step with the rated's
    _same(plan, sold(rated, t), sold_batches(tmp_path / "rated.parquet", tmp_path / "cdrs.parquet", size))


def test_a_period_within_the_files(workload, tmp_path):
    from datetime import date

    plan, t, rated, _ = workload
    pq.write_table(rated, tmp_path / "rated.parquet", row_group_size=300)
    pq.write_table(t, tmp_path / "cdrs.parquet")
    _same(plan, sold(rated, t), sold_batches(tmp_path / "rated.parquet", tmp_path / "cdrs.parquet", 128),
          date(2026, 3, 2), date(2026, 3, 2))


def test_traffic_out_of_step_is_joined_by_id(workload, tmp_path):
    """Records missing from the rated file (rejected), the traffic reordered after its first
    rows, and records of the traffic not rated: from the first batch out of step, by id."""
    plan, t, rated, _ = workload
    n = t.num_rows
    order = list(range(300)) + list(reversed(range(300, n))) + [5, 6]  # repeated ids: the first is taken
    shuffled = t.take(pa.array(order))
    kept = rated.filter(pa.array([i % 97 != 3 for i in range(rated.num_rows)]))
    pq.write_table(kept, tmp_path / "rated.parquet", row_group_size=250)
    pq.write_table(shuffled, tmp_path / "cdrs.parquet", row_group_size=400)
    _same(plan, sold(kept, shuffled), sold_batches(tmp_path / "rated.parquet", tmp_path / "cdrs.parquet", 100))


def test_other_directions_in_the_rated_file_are_left_out(workload, tmp_path):
    plan, t, rated, _ = workload
    direction = pa.array(["outbound" if i % 5 == 0 else "inbound" for i in range(rated.num_rows)])
    mixed = rated.set_column(rated.column_names.index("direction"), "direction", direction)
    pq.write_table(mixed, tmp_path / "rated.parquet", row_group_size=600)
    pq.write_table(t, tmp_path / "cdrs.parquet", row_group_size=600)
    _same(plan, sold(mixed, t), sold_batches(tmp_path / "rated.parquet", tmp_path / "cdrs.parquet", 256))


def test_csv_files_and_no_traffic_file(workload, tmp_path):
    import pyarrow.csv as pacsv

    plan, t, rated, _ = workload
    pacsv.write_csv(rated.select(["id", "partner", "direction", "service", "prefix", "destination", "band",
                                  "amount", "currency", "start", "duration_s"]), tmp_path / "rated.csv")
    pq.write_table(rated, tmp_path / "rated.parquet", row_group_size=500)
    _same(plan, sold(rated), sold_batches(tmp_path / "rated.parquet", None, 300))
    whole = pacsv.read_csv(tmp_path / "rated.csv", convert_options=pacsv.ConvertOptions(
        column_types={"id": pa.string(), "amount": pa.decimal128(38, 9)}))
    pq.write_table(t, tmp_path / "cdrs.parquet", row_group_size=333)
    _same(plan, sold(whole, t), sold_batches(tmp_path / "rated.csv", tmp_path / "cdrs.parquet", 300))


def test_what_if_streamed(workload, tmp_path):
    from icdsl.routing.margin import read_supplier_deck

    plan, t, rated, folder = workload
    deck = pl.read_csv(folder / "decks" / "SUP00.csv", infer_schema_length=0) if (folder / "decks" / "SUP00.csv") \
        .exists() else None
    if deck is None:
        pytest.skip("the bench's supplier deck is named otherwise")
    new = tmp_path / "new.csv"
    deck.head(150).write_csv(new)
    policy = plan.lcr_policies[0]
    decks = {"SUP00": read_supplier_deck(plan, policy, "SUP00", new)}
    pq.write_table(rated, tmp_path / "rated.parquet", row_group_size=500)
    pq.write_table(t, tmp_path / "cdrs.parquet", row_group_size=500)
    _same(plan, sold(rated, t), sold_batches(tmp_path / "rated.parquet", tmp_path / "cdrs.parquet", 400),
          decks=decks)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_records_file_is_the_whole_records(workload, tmp_path, suffix):
    from datetime import date

    plan, t, rated, _ = workload
    policy = plan.lcr_policies[0]
    want = money_columns(margins(plan, sold(rated, t), policy).records)
    out = RecordsFile(tmp_path / f"m{suffix}")
    pq.write_table(rated, tmp_path / "rated.parquet", row_group_size=450)
    pq.write_table(t, tmp_path / "cdrs.parquet", row_group_size=700)
    streamed_margins(plan, sold_batches(tmp_path / "rated.parquet", tmp_path / "cdrs.parquet", 300), policy,
                     date(2026, 3, 1), date(2026, 3, 31), sink=out)
    assert out.finish() == want.height
    if suffix == ".csv":
        assert (tmp_path / "m.csv").read_text(encoding="utf-8") == want.write_csv()
    else:
        got = pl.read_parquet(tmp_path / "m.parquet")
        assert got.equals(want.with_columns(pl.col(pl.Categorical).cast(pl.Utf8)))
    assert not out._folder.exists()  # the batches on disk removed


def test_the_cli_streams_the_same_report(workload, tmp_path):
    plan, t, rated, folder = workload
    pq.write_table(rated, tmp_path / "rated.parquet", row_group_size=450)
    pq.write_table(t, tmp_path / "cdrs.parquet", row_group_size=700)
    want = margins(plan, sold(rated, t), plan.lcr_policies[0])
    for by in BY:
        res = run(["margin", "2026-03", str(folder), "--rated", str(tmp_path / "rated.parquet"), "--cdrs",
                   str(tmp_path / "cdrs.parquet"), "--by", by, "--format", "csv"], tmp_path)
        assert res.exit_code == 0, res.output
        expected = money_columns(want.report(by)).with_columns(pl.lit("EUR").alias("currency")).write_csv()
        assert res.stdout == expected


def test_an_unreadable_file_is_a_located_error(tmp_path):
    plan_of(tmp_path)
    (tmp_path / "rated.parquet").write_bytes(b"not parquet")
    with pytest.raises(MarginError, match="cannot read the rated records .*rated.parquet"):
        list(sold_batches(tmp_path / "rated.parquet"))
    pq.write_table(traffic(), tmp_path / "t.parquet")
    res = run(["margin", "2026-03", ".", "--rated", "t.parquet", "--cdrs", "missing.parquet"], tmp_path)
    assert res.exit_code == 1 and res.output == "error: cannot find the traffic file missing.parquet\n"


def test_empty_files_and_a_traffic_file_without_ids(workload, tmp_path):
    from datetime import date

    plan, t, rated, _ = workload
    pq.write_table(rated.slice(0, 0), tmp_path / "rated.parquet")
    pq.write_table(t.slice(0, 0), tmp_path / "cdrs.parquet")
    _same(plan, sold(rated.slice(0, 0), t.slice(0, 0)),
          sold_batches(tmp_path / "rated.parquet", tmp_path / "cdrs.parquet", 10))
    pq.write_table(t.drop_columns(["id"]), tmp_path / "noid.parquet")
    with pytest.raises(MarginError, match="no 'id' column"):
        list(sold_batches(tmp_path / "rated.parquet", tmp_path / "noid.parquet"))
    got, _ = streamed_margins(plan, sold_batches(tmp_path / "rated.parquet", tmp_path / "cdrs.parquet"),
                              plan.lcr_policies[0], date(2026, 3, 1), date(2026, 3, 31))
    assert got.totals()["records"] == 0 and got.findings() == []
