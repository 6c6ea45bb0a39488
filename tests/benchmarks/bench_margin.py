"""Margins benchmark: margins on N sold records against the time to rate them (the target:
margins on 10M records within 2x the rating time).

As a pytest-benchmark module (skipped by the default options; collected by this folder's
conftest)::

    ICDSL_BENCH_MARGIN_RECORDS=1000000 pytest tests/benchmarks/bench_margin.py --benchmark-only -s

As a script (prints one JSON line: rating and margin times, wall and CPU, and their ratio)::

    python tests/benchmarks/bench_margin.py --records 2000000 --days 31

The workload is bench_lcr's project (a sell deck with CUST, K supplier decks, half of them on
a peak/off-peak calendar, mixed increments and connect fees) with N inbound records of CUST to
numbers under the sell deck's prefixes, spread over ``days`` days; 80% name their supplier
(a ``supplier`` column), the others are costed by the LCR's first choice of their day. The
rating time is the batch executor's on the same records; the margin time is
:func:`icdsl.routing.margin.margins` on the rated records (costing by the batch executor again,
the LCR tables of the days, FX, the reports by the four keys). Both are measured in CPU time as
well as wall time: the machine is shared. The hand-worked exactness is tests/test_margin.py's;
here the totals are checked to add up. For scale, the script also reports the rating of the
calls that name their supplier as the suppliers' outbound records (``outbound_rating_*``): what
the supplier side's cycles rate, with the suppliers' calendars and increments.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_lcr import write_project  # noqa: E402 - this folder's module, beside this one


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def traffic(root: Path, n: int, days: int, suppliers: int, seed: int = 3):
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    sell = pl.read_csv(root / "decks" / "sell.csv", schema_overrides={"prefix": pl.Utf8})["prefix"].to_numpy()
    pick = sell[rng.integers(0, len(sell), n)]
    tail = rng.integers(0, 10**6, n)
    numbers = pl.Series(pick).str.slice(0, 9) + pl.Series(tail).cast(pl.Utf8).str.zfill(6)
    start0 = datetime(2026, 3, 1, tzinfo=UTC)
    secs = rng.integers(0, days * 86400, n)
    codes = np.array([f"SUP{k:02d}" for k in range(suppliers)] + [""], dtype=object)
    sup = np.where(rng.random(n) < 0.8, codes[rng.integers(0, suppliers, n)], "")
    frame = pl.DataFrame({
        "id": pl.Series(np.arange(n)).cast(pl.Utf8), "partner": pl.repeat("CUST", n, eager=True),
        "direction": pl.repeat("inbound", n, eager=True), "service": pl.repeat("voice", n, eager=True),
        "a_number": pl.repeat("33170000000", n, eager=True), "b_number": numbers,
        "supplier": pl.Series(sup.astype(str)),
        "start": pl.select(pl.lit(start0).dt.cast_time_unit("us")
                           + pl.Series(secs * 1_000_000).cast(pl.Duration("us"))).to_series(),
        "duration_s": pl.Series(rng.integers(1, 600, n)),
    })
    return frame.to_arrow()


def run(records: int, days: int = 31, sell: int = 20_000, suppliers: int = 10, deck: int = 10_000,
        batch: int = 500_000) -> dict:
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401 - pa.compute below

    from icdsl.plan.compiler import build
    from icdsl.rating.batch import rate_batch
    from icdsl.routing.margin import margins, sold

    with tempfile.TemporaryDirectory() as tmp:
        root = write_project(Path(tmp), sell, suppliers, deck)
        plan, _, diags = build([root / "bench.icd"])
        assert plan is not None, [str(d) for d in diags]
        policy = plan.lcr_policies[0]
        table = traffic(root, records, days, suppliers)
        t0, c0 = time.perf_counter(), _cpu()
        parts = []
        for off in range(0, table.num_rows, batch):
            rated, _ = rate_batch(plan, table.slice(off, batch))
            parts.append(rated)
        rated = pa.concat_tables(parts)
        t1, c1 = time.perf_counter(), _cpu()
        m = margins(plan, sold(rated, table), policy)
        reports = {by: m.report(by) for by in ("partner", "destination", "supplier", "day")}
        t2, c2 = time.perf_counter(), _cpu()
        # the supplier side's rating of the same calls (what the suppliers' cycles rate), for scale
        named = table.filter(pa.compute.not_equal(table.column("supplier"), ""))
        out = named.set_column(named.column_names.index("partner"), "partner", named.column("supplier")) \
            .set_column(named.column_names.index("direction"), "direction",
                        pa.array(["outbound"] * named.num_rows, type=pa.large_string()))
        # a plan of its own: its kernels are built here, as margins built the suppliers' (cold, both)
        plan2, _, _ = build([root / "bench.icd"])
        t3, c3 = time.perf_counter(), _cpu()
        for off in range(0, out.num_rows, batch):
            rate_batch(plan2, out.slice(off, batch))
        t4, c4 = time.perf_counter(), _cpu()
        total = m.totals()
        for rep in reports.values():
            assert int(rep["margin_n"].sum()) == total["margin_n"]
    rating_cpu, margin_cpu = c1 - c0, c2 - c1
    return {
        "bench": "margin", "records": records, "rated": rated.num_rows, "days": days, "sell": sell,
        "suppliers": suppliers, "deck": deck,
        "rating_wall_s": round(t1 - t0, 3), "rating_cpu_s": round(rating_cpu, 3),
        "margin_wall_s": round(t2 - t1, 3), "margin_cpu_s": round(margin_cpu, 3),
        "ratio_cpu": round(margin_cpu / rating_cpu, 3) if rating_cpu else None,
        "ratio_wall": round((t2 - t1) / (t1 - t0), 3) if t1 > t0 else None,
        "outbound_records": out.num_rows, "outbound_rating_cpu_s": round(c4 - c3, 3),
        # margins against rating both sides (what the customer's and the suppliers' cycles rate)
        "ratio_both_cpu": round(margin_cpu / (rating_cpu + c4 - c3), 3) if rating_cpu + c4 - c3 else None,
        "outbound_rating_wall_s": round(t4 - t3, 3),
        "uncosted": total["uncosted"], "load": os.getloadavg()[0],
    }


@pytest.fixture(scope="module")
def bench_rated(tmp_path_factory):
    from icdsl.plan.compiler import build
    from icdsl.rating.batch import rate_batch
    from icdsl.routing.margin import sold

    n = int(os.environ.get("ICDSL_BENCH_MARGIN_RECORDS", "20000"))
    root = write_project(tmp_path_factory.mktemp("margin"), 2000, 5, 1000)
    plan, _, diags = build([root / "bench.icd"])
    assert plan is not None, diags
    table = traffic(root, n, 7, 5)
    rated, _ = rate_batch(plan, table)
    return plan, sold(rated, table)


def test_margins(benchmark, bench_rated):
    from icdsl.routing.margin import margins

    plan, rated = bench_rated
    result = benchmark.pedantic(margins, args=(plan, rated, plan.lcr_policies[0]), rounds=3)
    assert result.records.height == rated.num_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--sell", type=int, default=20_000)
    ap.add_argument("--suppliers", type=int, default=10)
    ap.add_argument("--deck", type=int, default=10_000)
    args = ap.parse_args()
    print(json.dumps(run(args.records, args.days, args.sell, args.suppliers, args.deck)))


if __name__ == "__main__":
    main()
