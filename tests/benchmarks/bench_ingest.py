"""Ingest benchmark: the cycle benchmark's traffic (``bench_cycle.make_project`` /
``make_traffic``: 200 partners, a Zipf-like spread, one Parquet file per million records)
ingested into a fresh store in this process and with ``icdsl ingest --workers N`` (the files
read, checked and split on a local Dask cluster, the database written here), next to
``icdsl rate`` on the same files (the yardstick of issue 10: ingest should cost about one
rating pass). Each setting's batches are compared (the same records files, named by their
content, and counts) before any figure is printed.

As a script (one JSON line per setting)::

    python tests/benchmarks/bench_ingest.py --n 2000000 [--workers 0,1,2] [--db sqlite|postgres]

As a pytest-benchmark module (skipped by the default options)::

    ICDSL_BENCH_INGEST_N=1000000 pytest tests/benchmarks/bench_ingest.py --benchmark-only -s
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

_here = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("bench_cycle_for_ingest", _here / "bench_cycle.py")
bench_cycle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_cycle)
_spec = importlib.util.spec_from_file_location("bench_fleet_for_ingest", _here / "bench_fleet.py")
bench_fleet = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench_fleet  # so that its functions can be pickled by value for the workers
_spec.loader.exec_module(bench_fleet)


def _warm() -> None:
    """Runs in each worker: the imports and the plugin manager that a first task would load."""
    from icdsl.billing import intake  # noqa: F401 - loaded for its cost
    from icdsl.plugins import active_plugin_manager

    active_plugin_manager()


def run_setting(url: str, work: Path, traffic: list[Path], workers: int) -> dict:
    """A fresh store, every file ingested (in this process when ``workers`` is 0)."""
    import cloudpickle

    from icdsl.billing.store import open_store
    from icdsl.plan.compiler import build
    from icdsl.rating.cluster import dask_client

    with contextlib.chdir(work / "project"):
        plan, program, diags = build(["bench.icd"])
        assert plan is not None, [str(d) for d in diags]
    store = open_store(url, data_dir=work / f"data-{workers}")
    workers_rss: dict[str, int] = {}
    try:
        store.load_plan(plan, program)
        with contextlib.ExitStack() as stack:
            if workers:
                client = stack.enter_context(dask_client(workers=workers))
                cloudpickle.register_pickle_by_value(bench_fleet)  # the workers cannot import it
                client.run(bench_fleet._sample_rss)
                client.run(_warm)  # long-lived workers (`dask worker`) have their imports done
            c0, t0 = time.process_time(), time.perf_counter()
            if workers:
                reports = list(store.ingest_files(traffic, None, plan, client=client))
            else:
                reports = [store.ingest(p, None, plan) for p in traffic]
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            if workers:
                workers_rss = {addr: round(peak / 2**20) for addr, peak in client.run(bench_fleet._rss_peak).items()}
        batches = sorted((r.file_name, r.records_file, r.read, r.passed, r.rejected, r.duplicates) for r in reports)
    finally:
        store.close()
    passed = sum(r.passed for r in reports)
    return {"setting": f"--workers {workers}" if workers else "in process", "backend": url.split(":")[0],
            "records": passed, "files": len(traffic), "seconds": round(seconds, 2),
            "coordinator_cpu_seconds": round(cpu, 2), "records_per_s": round(passed / seconds),
            "workers_peak_rss_mb": workers_rss, "batches": batches}


def run_all(work: Path, n: int, files: int, settings: list[int], db: str) -> list[dict]:
    _project, prefixes = bench_cycle.make_project(work / "project")
    traffic = bench_cycle.make_traffic(work / "traffic", prefixes, n, files)
    with contextlib.chdir(work / "project"):
        from icdsl.plan.compiler import build

        plan, _program, _diags = build(["bench.icd"])
    rate_s = bench_cycle.rate_baseline(plan, traffic, work / "rate-out")
    out = []
    for w in settings:
        with bench_cycle.database(db, work / f"db-{w}" if db == "sqlite" else work) as url:
            r = run_setting(url, work, traffic, w)
        r["icdsl_rate_seconds"] = round(rate_s, 2)
        r["ingest_over_rate"] = round(r["seconds"] / rate_s, 2)
        out.append(r)
    assert len({json.dumps(r.pop("batches")) for r in out}) == 1, "the settings made different batches"
    for r in out:
        print(json.dumps(r), flush=True)
    return out


N = int(os.environ.get("ICDSL_BENCH_INGEST_N", "1000000"))


def test_ingest(benchmark, tmp_path):
    results: list[dict] = []

    def once():
        results.extend(run_all(tmp_path, N, max(1, N // 1_000_000), [0, 1, 2], "sqlite"))

    benchmark.pedantic(once, rounds=1, iterations=1)
    assert all(r["records"] == N for r in results), results  # every record ingested
    benchmark.extra_info.update({"settings": results})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=0, help="Parquet files of traffic (default: one per million).")
    ap.add_argument("--workers", default="0,1,2", help="Settings, comma-separated (0: in this process, no Dask).")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = ap.parse_args()
    settings = [int(x) for x in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as d:
        run_all(Path(d), args.n, args.files or max(1, args.n // 1_000_000), settings, args.db)


if __name__ == "__main__":
    main()
