"""Batch executor on the rating benchmark's workload (see tests/benchmarks/workload/SPEC.md).

The Agreement equivalent to the workload is built directly from dataclasses (the deck is read
from rates.csv): one ServicePlan outbound voice per minute, 50,000 rows with peak/offpeak
prices, per-row increments and connect fees, Europe/London peak Mon-Fri 08:00-20:00, default
offpeak, half_up to 6 decimals, partner "*".

As a pytest-benchmark module (skipped by the default options; collected by this folder's
conftest)::

    pytest tests/benchmarks --benchmark-only

rates ``ICDSL_BENCH_N`` records (default 1,000,000; ``ICDSL_BENCH_DIR``, default
/tmp/icdsl-bench/nN, the same folder as bench_rate.py's, made by ``workload/gen.py`` when
missing) and checks every amount, prefix, band and billed second against the DuckDB
reference's output (``ICDSL_BENCH_REF_OUT``, default: ``workload/ref_duckdb.py`` run once into
the cache folder's ``ref_duckdb``, as bench_rate.py does).

As a script, the end-to-end run to compare with ``ref_duckdb.py`` under ``/usr/bin/time -v``::

    python tests/benchmarks/bench_batch.py RATES_CSV CDRS_PARQUET OUT_DIR [--columns ref|all]

streams the Parquet row groups (about 1M rows each) through ``rate_batch`` and writes
OUT_DIR/rated.parquet (the reference's columns, or all rated columns), rejects.parquet,
partners.csv and summary.json in the workload's format (``workload/SPEC.md``).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from icdsl.plan.model import (
    Agreement,
    BandRule,
    Calendar,
    Increments,
    Plan,
    RateRow,
    RateTable,
    Rounding,
    ServicePlan,
    Span,
)
from icdsl.rating.batch import rate_batch

N = int(os.environ.get("ICDSL_BENCH_N", "1000000"))
BENCH_DIR = Path(os.environ.get("ICDSL_BENCH_DIR", Path(os.environ.get("ICDSL_BENCH_CACHE", "/tmp/icdsl-bench"))
                                / f"n{N}"))
WORKLOAD = Path(__file__).resolve().parent / "workload"


def bench_plan(rates_csv: str | Path) -> Plan:
    """The benchmark workload as a Plan (what the compiler would make of the equivalent rules)."""
    rows = []
    decimals: dict[str, Decimal] = {}
    increments: dict[tuple[str, str], Increments] = {}
    source = str(rates_csv)

    def dec(text: str) -> Decimal:
        got = decimals.get(text)
        if got is None:
            got = decimals[text] = Decimal(text)
        return got

    with open(rates_csv, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        assert header[:6] == [
            "prefix",
            "peak_rate",
            "offpeak_rate",
            "initial_increment",
            "subsequent_increment",
            "connect_fee",
        ]
        for line, (prefix, peak, off, initial, sub, fee) in enumerate(reader, start=2):
            inc = increments.get((initial, sub))
            if inc is None:
                inc = increments[(initial, sub)] = Increments(int(initial), int(sub))
            rows.append(
                RateRow(
                    prefix,
                    prefix,
                    (("peak", dec(peak)), ("offpeak", dec(off))),
                    dec(fee),
                    inc,
                    span=Span(source, line, 1, line, 1),
                )
            )
    rounding = Rounding(6, "half_up")
    calendar = Calendar(
        "uk",
        "Europe/London",
        (BandRule("peak", frozenset(range(5)), clock_time(8), clock_time(20)),),
        "offpeak",
    )
    voice = ServicePlan(
        "outbound",
        "voice",
        "minute",
        rates=RateTable(tuple(rows), "EUR", source=str(rates_csv)),
        currency="EUR",
        calendar=calendar,
        rounding=rounding,
    )
    agreement = Agreement("bench", 1, "*", date(2000, 1, 1), None, "EUR", "Europe/London", rounding, (voice,))
    return Plan(agreements=(agreement,))


def records(cdrs: pa.Table) -> pa.Table:
    """The benchmark's CDR columns as a normalized record batch (what intake would hand over)."""
    n = cdrs.num_rows
    const = pa.DictionaryArray.from_arrays

    return pa.table(
        {
            "id": cdrs["id"],
            "partner": cdrs["partner_id"],
            "direction": const(np.zeros(n, dtype=np.int32), pa.array(["outbound"])),
            "service": const(np.zeros(n, dtype=np.int32), pa.array(["voice"])),
            "b_number": cdrs["b_number"],
            "start": cdrs["start_time"],
            "duration_s": cdrs["duration"],
        }
    )


COLUMNS = ["id", "b_number", "start_time", "duration", "partner_id"]


REF_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("prefix", pa.dictionary(pa.int32(), pa.string())),
        ("band", pa.dictionary(pa.int32(), pa.string())),
        ("billed_seconds", pa.int64()),
        ("amount", pa.decimal128(18, 6)),
        ("status", pa.dictionary(pa.int32(), pa.string())),
    ]
)


def reference_layout(rated: pa.Table, rejects: pa.Table) -> pa.Table:
    """The workload's rated.parquet: every CDR, rejected ones with nulls and their status."""
    ok = pa.DictionaryArray.from_arrays(np.zeros(rated.num_rows, dtype=np.int32), pa.array(["ok"]))
    out = pa.table(
        [rated["id"], rated["prefix"], rated["band"], rated["billed_units"], rated["amount"], ok],
        schema=REF_SCHEMA,
    )
    if not rejects.num_rows:
        return out
    m = rejects.num_rows
    bad = pa.table(
        [
            rejects["id"],
            pa.nulls(m, REF_SCHEMA.field("prefix").type),
            pa.nulls(m, REF_SCHEMA.field("band").type),
            pa.nulls(m, pa.int64()),
            pa.nulls(m, pa.decimal128(18, 6)),
            rejects["reason"].dictionary_encode(),
        ],
        schema=REF_SCHEMA,
    )
    return pa.concat_tables([out, bad])


def rate_file(rates_csv: str, cdrs_path: str, out_dir: str, columns: str = "ref") -> dict:
    """Stream a Parquet file of CDRs through rate_batch, row group by row group.

    One thread reads the next row group and one writes the previous outputs while the main
    thread rates (Parquet I/O releases the GIL); at most one batch waits on each side.
    ``columns="ref"`` writes the workload's rated.parquet layout (check.py compares it),
    ``"all"`` the full rated table plus rejects.parquet.
    """
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    pf = pq.ParquetFile(cdrs_path)
    reader, writer_pool = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    pending = reader.submit(pf.read_row_group, 0, columns=COLUMNS)  # while the plan is built
    plan = bench_plan(rates_csv)
    writers: dict[str, pq.ParquetWriter] = {}
    written = None
    totals = np.zeros((0, 3), dtype=np.int64)  # by partner: count, billed seconds, micro-units
    n = n_rej = 0

    def write(name: str, t: pa.Table) -> None:
        if name not in writers:
            strings = [f.name for f in t.schema if pa.types.is_dictionary(f.type)]
            writers[name] = pq.ParquetWriter(
                os.path.join(out_dir, name),
                t.schema,
                compression="snappy",
                use_dictionary=strings,
                write_statistics=["id"],
            )
        writers[name].write_table(t)

    def write_outputs(rated: pa.Table, rejects: pa.Table) -> None:
        if columns == "ref":
            write("rated.parquet", reference_layout(rated, rejects))
            return
        write("rated.parquet", rated)
        if rejects.num_rows:
            write("rejects.parquet", rejects)

    for i in range(pf.num_row_groups):
        cdrs = pending.result()
        if i + 1 < pf.num_row_groups:
            pending = reader.submit(pf.read_row_group, i + 1, columns=COLUMNS)
        rated, rejects = rate_batch(plan, records(cdrs))
        del cdrs
        n += rated.num_rows + rejects.num_rows
        n_rej += rejects.num_rows
        if written is not None:
            written.result()
        written = writer_pool.submit(write_outputs, rated, rejects)
        # per-partner totals, exact, in integer micro-units (amounts are decimal128(18, 6))
        micro = np.frombuffer(rated["amount"].combine_chunks().buffers()[1], dtype=np.int64)[0::2]
        partner = rated["partner"].combine_chunks().to_numpy(zero_copy_only=False).astype(np.int64)
        billed = rated["billed_units"].combine_chunks().to_numpy()
        if len(partner):
            size = max(int(partner.max()) + 1, len(totals))
            grown = np.zeros((size, 3), dtype=np.int64)
            grown[: len(totals)] = totals
            totals = grown
            np.add.at(totals[:, 0], partner, 1)
            np.add.at(totals[:, 1], partner, billed)
            np.add.at(totals[:, 2], partner, micro)
    if written is not None:
        written.result()
    for w in writers.values():
        w.close()
    with open(os.path.join(out_dir, "partners.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["partner_id", "n_cdrs", "billed_seconds", "amount"])
        for p in np.flatnonzero(totals[:, 0]).tolist():
            c, s, a = (int(x) for x in totals[p])
            w.writerow([p, c, s, f"{a // 10**6}.{a % 10**6:06d}"])
    total = int(totals[:, 2].sum())
    summary = {
        "n_cdrs": n,
        "n_rejected": n_rej,
        "total_amount": f"{total // 10**6}.{total % 10**6:06d}",
        "seconds": round(time.perf_counter() - t0, 3),
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f)
    return summary


# --------------------------------------------------------------------------- pytest-benchmark

try:
    import pytest
except ImportError:  # pragma: no cover - script use without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="module")
    def workload():
        rates, cdrs = BENCH_DIR / "rates.csv", BENCH_DIR / "cdrs.parquet"
        if not (rates.exists() and cdrs.exists()):
            subprocess.run([sys.executable, str(WORKLOAD / "gen.py"), str(BENCH_DIR), "--n", str(N)], check=True)
        ref_out = os.environ.get("ICDSL_BENCH_REF_OUT")
        if ref_out is None:
            ref_out = str(BENCH_DIR / "ref_duckdb")
            if not Path(ref_out, "rated.parquet").exists():
                subprocess.run([sys.executable, str(WORKLOAD / "ref_duckdb.py"), str(rates), str(cdrs), ref_out],
                               check=True)
        plan = bench_plan(rates)
        table = records(pq.read_table(cdrs, columns=COLUMNS))
        rate_batch(plan, table.slice(0, 1000))  # build the per-plan tables outside the timing
        ref = pq.read_table(Path(ref_out, "rated.parquet")).sort_by("id")
        return plan, table, ref

    def test_batch_matches_duckdb(benchmark, workload):
        plan, table, ref = workload
        rated, rejects = benchmark.pedantic(rate_batch, args=(plan, table), rounds=5, iterations=1)
        ok = ref.filter(pc.equal(ref["status"], "ok"))
        mine = rated.select(["id", "prefix", "band", "billed_units", "amount"]).sort_by("id")
        assert rated.num_rows + rejects.num_rows == table.num_rows
        assert mine["id"].equals(ok["id"])
        assert mine["amount"].equals(ok["amount"].cast(mine["amount"].type))
        assert mine["billed_units"].equals(ok["billed_seconds"].cast(pa.int64()))
        assert mine["prefix"].cast(pa.string()).equals(ok["prefix"])
        assert mine["band"].cast(pa.string()).equals(ok["band"])
        bad = ref.filter(pc.equal(ref["status"], "no_rate"))["id"].sort()
        assert rejects["id"].sort().equals(bad)
        assert set(rejects["reason"].to_pylist()) == {"no_rate"}
        benchmark.extra_info["records_per_s"] = round(table.num_rows / benchmark.stats.stats.median)

    def test_row_executor_rate(benchmark, workload):
        from icdsl.rating.result import RatedRecord
        from icdsl.rating.row import rate_record

        plan, table, ref = workload
        recs = table.slice(0, 20_000).to_pylist()
        out: list = []

        def run():
            out[:] = [rate_record(plan, r) for r in recs]

        benchmark.pedantic(run, rounds=3, iterations=1)
        # the same amounts as the DuckDB reference, record by record
        want = {r["id"]: r["amount"] for r in ref.filter(pc.equal(ref["status"], "ok")).to_pylist()}
        got = {o.id: o.amount for o in out if isinstance(o, RatedRecord)}
        assert len(got) == sum(1 for r in recs if r["id"] in want)
        assert got == {i: want[i] for i in got}
        benchmark.extra_info["records_per_s"] = round(len(recs) / benchmark.stats.stats.median)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="rate a benchmark CDR file with the batch executor")
    ap.add_argument("rates_csv")
    ap.add_argument("cdrs_parquet")
    ap.add_argument("out_dir")
    ap.add_argument("--columns", choices=("ref", "all"), default="ref")
    a = ap.parse_args()
    print(json.dumps(rate_file(a.rates_csv, a.cdrs_parquet, a.out_dir, columns=a.columns)))
