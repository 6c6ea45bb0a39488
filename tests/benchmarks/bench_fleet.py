"""Fleet benchmark: every partner's cycle of a month as Dask tasks, end to end (ingest to
finalize), with ``--workers 1`` and ``--workers 2``: records per second and peak memory (RSS) of
each process (the coordinator by stage, each worker process over its life).

The month is the cycle benchmark's (``bench_cycle.make_project`` / ``make_traffic``: 200
partners billed monthly, one deck of 2,000 nested prefixes, a Zipf-like spread of the records
over the partners), N records (default 1M; the issue's target is 50M) in ``--files`` Parquet
files. Each setting bills a fresh store; the invoices' totals of every setting are compared
(with each other and with a run in this process, ``--workers 0``, when it is asked for) before
any figure is printed.

As a script (one JSON line per setting, then one with the ratios)::

    python tests/benchmarks/bench_fleet.py --n 1000000 [--workers 1,2] [--db sqlite|postgres] [--files 10]

As a pytest-benchmark module (skipped by the default options)::

    ICDSL_BENCH_FLEET_N=1000000 pytest tests/benchmarks/bench_fleet.py --benchmark-only -s
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
from decimal import Decimal
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_cycle_for_fleet", Path(__file__).with_name("bench_cycle.py"))
bench_cycle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_cycle)

PERIOD = "2026-03"


def _sample_rss(dask_worker) -> int:
    """Runs in each worker: a thread that keeps the process's peak RSS (sampled every 20 ms).
    Not ``ru_maxrss``: a worker forked from the coordinator inherits the coordinator's peak."""
    import threading

    peak = dask_worker._icdsl_rss_peak = [0]

    def loop() -> None:  # self-contained: the worker knows nothing of this file's modules
        page = os.sysconf("SC_PAGE_SIZE")
        while True:
            with open("/proc/self/statm") as f:
                peak[0] = max(peak[0], int(f.read().split()[1]) * page)
            time.sleep(0.02)

    threading.Thread(target=loop, name="icdsl-bench-rss", daemon=True).start()
    return os.getpid()


def _rss_peak(dask_worker) -> int:
    return dask_worker._icdsl_rss_peak[0]


def run_setting(url: str, work: Path, traffic: list[Path], workers: int, split_rows: int | None = None,
                ingest_on_workers: bool = False) -> dict:
    """A fresh store: ingest, every cycle (in this process when ``workers`` is 0, else as tasks
    of a local cluster of ``workers`` processes; a partner with more than ``split_rows`` records,
    None: ``SPLIT_ROWS``, rated in pieces on the workers), finalize. Figures and invoice totals.
    ``ingest_on_workers``: the files are read and split on the cluster's workers too
    (``Store.ingest_files``; the coordinator records the batches), else ingested here."""
    import cloudpickle

    from icdsl.billing import fleet
    from icdsl.billing.fleet import dask_client, plan_cycles, run_fleet
    from icdsl.billing.store import open_store
    from icdsl.plan.compiler import build

    spent = {"prepare": 0.0, "write": 0.0}  # the coordinator's own steps of the Dask path

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    with contextlib.chdir(work / "project"):
        plan, program, diags = build(["bench.icd"])
        assert plan is not None, [str(d) for d in diags]
    store = open_store(url, data_dir=work / f"data-{workers}")
    meter = bench_cycle.Meter()
    totals: dict[str, Decimal] = {}
    try:
        store.load_plan(plan, program)
        t0 = time.perf_counter()
        workers_rss: dict[str, int] = {}
        with contextlib.ExitStack() as undo:
            client = undo.enter_context(dask_client(workers=workers)) if workers else None
            if client is not None:
                cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this file
                client.run(_sample_rss)
            meter.enter("ingest")
            if client is not None and ingest_on_workers:
                ingested = sum(r.passed for r in store.ingest_files(traffic, None, plan, client=client))
            else:
                ingested = sum(store.ingest(p, None, plan).passed for p in traffic)
            meter.enter("cycles")
            cycles = plan_cycles(store, plan, PERIOD)
            if client is not None:
                real = fleet.prepare, fleet.write_job
                fleet.prepare, fleet.write_job = timed("prepare", fleet.prepare), timed("write", fleet.write_job)
                undo.callback(lambda: setattr(fleet, "prepare", real[0]) or setattr(fleet, "write_job", real[1]))
                t1 = time.perf_counter()
                outcomes = run_fleet(store, plan, cycles, client=client, split_rows=split_rows)
                cycles_s = time.perf_counter() - t1
                workers_rss = {addr: round(peak / 2**20) for addr, peak in client.run(_rss_peak).items()}
            else:
                t1 = time.perf_counter()
                outcomes = run_fleet(store, plan, cycles)
                cycles_s = time.perf_counter() - t1
        bad = [f"{o.planned.partner}: {o.state} {o.message or ''}" for o in outcomes if o.state != "invoiced"]
        assert not bad, bad
        rated = sum(o.report.rated for o in outcomes)
        meter.enter("finalize")
        for c in cycles:
            store.finalize_cycle(c.partner, c.period)
        meter.enter(None)
        total_s = time.perf_counter() - t0
        for inv in store.invoices():
            totals[inv.partner_code] = totals.get(inv.partner_code, Decimal(0)) + inv.total
    finally:
        store.close()
    stages = meter.close()
    return {
        "setting": f"--workers {workers}" if workers else "in process",
        "ingest_on": "workers" if workers and ingest_on_workers else "coordinator",
        "split_rows": split_rows,
        "backend": url.split(":")[0], "records": ingested, "rated": rated, "partners": len(cycles),
        "files": len(traffic), "total_seconds": round(total_s, 1),
        "records_per_s": round(ingested / total_s),
        "cycles_seconds": round(cycles_s, 1), "cycle_records_per_s": round(rated / cycles_s) if cycles_s else None,
        "coordinator": stages,
        "workers_peak_rss_mb": workers_rss,
        "coordinator_steps_seconds": ({k: round(v, 1) for k, v in spent.items()}
                                      | {"waiting": round(cycles_s - sum(spent.values()), 1)}) if workers else None,
        "invoice_totals_sha": _digest(totals),
    }


def _digest(totals: dict[str, Decimal]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps({k: str(v) for k, v in sorted(totals.items())}).encode()).hexdigest()[:16]


def run_all(work: Path, n: int, files: int, settings: list[int], db: str, split_rows: int | None = None,
            ingest_on_workers: bool = False) -> list[dict]:
    _project, prefixes = bench_cycle.make_project(work / "project")
    traffic = bench_cycle.make_traffic(work / "traffic", prefixes, n, files)
    out = []
    for w in settings:
        with bench_cycle.database(db, work / f"db-{w}" if db == "sqlite" else work) as url:
            out.append(run_setting(url, work, traffic, w, split_rows, ingest_on_workers))
            print(json.dumps(out[-1]), flush=True)
    digests = {r["invoice_totals_sha"] for r in out}
    assert len(digests) == 1, f"the settings billed different invoices: {[r['invoice_totals_sha'] for r in out]}"
    by = {r["setting"]: r for r in out}
    if "--workers 1" in by and "--workers 2" in by:
        print(json.dumps({"ratio_2_over_1": {
            "records_per_s": round(by["--workers 2"]["records_per_s"] / by["--workers 1"]["records_per_s"], 2),
            "cycle_records_per_s": round(by["--workers 2"]["cycle_records_per_s"]
                                         / by["--workers 1"]["cycle_records_per_s"], 2)}}), flush=True)
    return out


N = int(os.environ.get("ICDSL_BENCH_FLEET_N", "1000000"))


def test_fleet_end_to_end(benchmark, tmp_path):
    results: list[dict] = []

    def once():
        results.extend(run_all(tmp_path, N, max(1, N // 1_000_000), [1, 2], "sqlite"))

    benchmark.pedantic(once, rounds=1, iterations=1)
    assert all(r["records"] == N and r["rated"] == N for r in results), results  # every record billed
    benchmark.extra_info.update({"settings": results})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=0, help="Parquet files of traffic (default: one per million).")
    ap.add_argument("--workers", default="1,2", help="Settings, comma-separated (0: in this process, no Dask).")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--split-rows", type=int, default=None,
                    help="Rate a partner with more records than this in pieces on the workers (default: SPLIT_ROWS).")
    ap.add_argument("--ingest-on-workers", action="store_true",
                    help="Read and split the traffic files on the workers too (icdsl ingest --workers).")
    args = ap.parse_args()
    settings = [int(x) for x in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as d:
        run_all(Path(d), args.n, args.files or max(1, args.n // 1_000_000), settings, args.db, args.split_rows,
                args.ingest_on_workers)


if __name__ == "__main__":
    main()
