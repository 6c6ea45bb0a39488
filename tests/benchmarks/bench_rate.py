"""``icdsl rate examples/bench`` end to end on the benchmark workload, checked against DuckDB.

Compiles ``examples/bench/bench.icd`` with the generated 50,000-prefix deck, streams the
generated CDRs through intake and the batch executor (``icdsl.rating.run.rate_file``, what the
``icdsl rate`` command runs) and checks that every amount equals the hand-written DuckDB
reference's, record by record. Data: ``ICDSL_BENCH_N`` records (default 1,000,000) made by
``tests/benchmarks/workload/gen.py`` into a cache folder (``ICDSL_BENCH_CACHE``, default
``/tmp/icdsl-bench``), the reference by ``workload/ref_duckdb.py`` beside them (see
``workload/README.md``). Run with ``pytest tests/benchmarks/bench_rate.py --benchmark-only``
(``ICDSL_BENCH_N=20000`` for a quick run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = Path(__file__).resolve().parent / "workload"
N = int(os.environ.get("ICDSL_BENCH_N", "1000000"))
CACHE = Path(os.environ.get("ICDSL_BENCH_CACHE", "/tmp/icdsl-bench")) / f"n{N}"


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    if not (CACHE / "cdrs.parquet").exists():
        subprocess.run([sys.executable, str(WORKLOAD / "gen.py"), str(CACHE), "--n", str(N)], check=True)
    ref = CACHE / "ref_duckdb"
    if not (ref / "rated.parquet").exists():
        subprocess.run([sys.executable, str(WORKLOAD / "ref_duckdb.py"), str(CACHE / "rates.csv"),
                        str(CACHE / "cdrs.parquet"), str(ref)], check=True)
    project = tmp_path_factory.mktemp("bench")
    shutil.copy(ROOT / "examples" / "bench" / "bench.icd", project / "bench.icd")
    (project / "data").mkdir()
    shutil.copy(CACHE / "rates.csv", project / "data" / "rates.csv")
    from icdsl.plan.compiler import build

    plan, _, diags = build([project])
    assert plan is not None, diags
    return plan, project, pq.read_table(ref / "rated.parquet").sort_by("id")


def test_icdsl_rate_matches_duckdb(benchmark, workload):
    from icdsl.rating.run import choose_layout, rate_file

    plan, project, ref = workload
    out = project / "out"
    summary = benchmark.pedantic(rate_file, args=(plan, CACHE / "cdrs.parquet", out),
                                 kwargs={"layout": choose_layout(plan, None)}, rounds=3, iterations=1)
    assert summary.reconciles() and summary.read == N
    rated = pq.read_table(out / "rated.parquet", columns=["id", "amount"]).sort_by("id")
    ok = ref.filter(pc.equal(ref["status"], "ok"))
    assert rated["id"].equals(ok["id"])
    assert rated["amount"].equals(ok["amount"].cast(rated["amount"].type))
    rejected = pq.read_table(out / "rejects.parquet", columns=["id"])["id"].cast(pa.int64()).sort()
    assert rejected.equals(ref.filter(pc.equal(ref["status"], "no_rate"))["id"].sort())
    benchmark.extra_info["records_per_s"] = round(N / benchmark.stats.stats.median)
