"""End-to-end billing benchmark: 200 partners, N records (default 1M; ICDSL_BENCH_CYCLE_N=10000000
for the 10M target), on SQLite and on PostgreSQL: wall time, CPU time (of the process, every
thread: the figure to compare on a shared machine, as ``cpu_ratios`` to the CPU time of
`icdsl rate` measured in the same run) and peak memory (RSS) per stage:
ingest, then per cycle the engine's rate, validate, charges, invoice, then ``files`` (what is
left to wait for the cycle's rated files to be durable: they are written on a thread of their
own while the engine goes on) and ``write`` (the result written to the store), then finalize.
The rate stage's ratio to `icdsl rate` is given alone and with the ``files`` wait.

As a pytest-benchmark module (skipped by the default options; collected by this folder's
conftest)::

    ICDSL_BENCH_CYCLE_N=1000000 pytest tests/benchmarks/bench_cycle.py --benchmark-only -s

As a script (prints one JSON line per back end)::

    python tests/benchmarks/bench_cycle.py --n 1000000 [--db sqlite|postgres|both] [--files 10]

The workload: one "any partner" agreement pricing outbound voice by destination from a deck of
2,000 nested prefixes (60/6 increments), 200 partners billed monthly in EUR with VAT, records of
March 2026 spread over the partners (Zipf-like: a few large partners, many small), ingested as
``--files`` Parquet files; then each partner's cycle is run and finalized.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

PG_URL = os.environ.get("ICDSL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PARTNERS = 200


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Meter:
    """Wall time, CPU time (the process's, every thread) and peak RSS per stage (RSS sampled
    every 20 ms by a thread). CPU time is the figure to compare on a shared machine."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._c = 0.0
        self.peak: dict[str, int] = {}
        self._t = 0.0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._sample, daemon=True)
        self._th.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            if self.stage is not None:
                self.peak[self.stage] = max(self.peak.get(self.stage, 0), _rss())

    def enter(self, stage: str | None) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self.stage is not None:
            self.wall[self.stage] = self.wall.get(self.stage, 0.0) + now - self._t
            self.cpu[self.stage] = self.cpu.get(self.stage, 0.0) + cpu - self._c
            self.peak[self.stage] = max(self.peak.get(self.stage, 0), _rss())
        self.stage, self._t, self._c = stage, now, cpu

    def close(self) -> dict:
        self.enter(None)
        self._stop.set()
        return {k: {"seconds": round(self.wall[k], 2), "cpu_seconds": round(self.cpu[k], 2),
                    "peak_rss_mb": round(self.peak.get(k, 0) / 2**20)}
                for k in self.wall}


def make_project(folder: Path, seed: int = 7) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cc = rng.choice(np.arange(20, 99), 60, replace=False).astype(str)
    prefixes = set(cc.tolist())
    while len(prefixes) < 2000:
        base = rng.choice(sorted(prefixes))
        if len(base) < 7:
            prefixes.add(base + str(rng.integers(0, 10)))
    prefixes = np.array(sorted(prefixes))
    rates = rng.integers(10, 900, len(prefixes)) / 10_000
    lines = ["prefix,destination,rate"] + [f"{p},Zone {p[:2]},{r:.4f}" for p, r in zip(prefixes, rates, strict=True)]
    (folder / "rates.csv").write_text("\n".join(lines) + "\n")
    partners = "\n".join(f'partner P{i:03d} "Partner {i}" {{ currency EUR timezone "UTC" billing monthly tax vat 20% }}'
                         for i in range(1, PARTNERS + 1))
    (folder / "bench.icd").write_text(partners + """
agreement "Bench voice" v1 with any partner effective 2026-01-01 .. {
  currency EUR
  outbound voice {
    price by destination from deck "rates.csv"
    increments 60/6
  }
}
""")
    return folder, prefixes


def make_traffic(folder: Path, prefixes: np.ndarray, n: int, files: int, seed: int = 11) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    weights = 1 / np.arange(1, PARTNERS + 1) ** 0.8
    weights /= weights.sum()
    out = []
    per = -(-n // files)
    t0 = int(np.datetime64("2026-03-01T00:00:00", "us").astype(np.int64))
    month = 31 * 86_400 * 1_000_000
    for f in range(files):
        m = min(per, n - f * per)
        ids = np.arange(f * per, f * per + m, dtype=np.int64)
        partner = rng.choice(PARTNERS, m, p=weights) + 1
        pre = prefixes[rng.integers(0, len(prefixes), m)]
        tail = rng.integers(10**6, 10**7, m).astype(str)
        b = np.char.add(pre.astype(str), tail)
        start = np.sort(t0 + rng.integers(0, month, m))
        t = pa.table({
            "id": ids, "partner": pa.array(np.char.add("P", np.char.zfill(partner.astype(str), 3))),
            "direction": pa.array(["outbound"] * m), "service": pa.array(["voice"] * m),
            "a_number": pa.array(["33100000000"] * m), "b_number": pa.array(b),
            "start": pa.array(start, pa.timestamp("us", tz="UTC")),
            "duration_s": pa.array(rng.integers(0, 900, m), pa.int64()),
        })
        p = folder / f"traffic-{f:02d}.parquet"
        pq.write_table(t, p, row_group_size=1 << 20)
        out.append(p)
    return out


def run_end_to_end(url: str, work: Path, n: int, files: int) -> dict:
    from icdsl.billing.store import open_store
    from icdsl.plan.compiler import build

    project, prefixes = make_project(work / "project")
    traffic = make_traffic(work / "traffic", prefixes, n, files)
    with contextlib.chdir(project):
        plan, program, diags = build(["bench.icd"])
        assert plan is not None, [str(d) for d in diags]
        store = open_store(url, data_dir=work / "data")
        store.load_plan(plan, program)
    rate_seconds, rate_cpu = rate_baseline(plan, traffic, work / "rate-out")
    meter = Meter()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        meter.enter("ingest")
        ingested = sum(store.ingest(p, None, plan).passed for p in traffic)
        rated = 0
        for i in range(1, PARTNERS + 1):
            code = f"P{i:03d}"
            rep = store.run_cycle(code, "2026-03", plan, progress=lambda stage, _d, _t: meter.enter(stage))
            meter.enter(None)
            assert rep.status == "invoiced", str(rep)
            rated += rep.rated
        meter.enter("finalize")
        for i in range(1, PARTNERS + 1):
            store.finalize_cycle(f"P{i:03d}", "2026-03")
        meter.enter(None)
    finally:
        store.close()
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    stages = meter.close()
    rate_stage = stages.get("rate", {}).get("seconds", 0.0)
    files_wait = stages.get("files", {}).get("seconds", 0.0)
    return {"backend": url.split(":")[0], "records": n, "partners": PARTNERS, "files": files, "ingested": ingested,
            "rated": rated, "total_seconds": round(total, 1), "stages": stages,
            "total_cpu_seconds": round(total_cpu, 1),
            "icdsl_rate_seconds": round(rate_seconds, 2), "icdsl_rate_cpu_seconds": round(rate_cpu, 2),
            "cpu_ratios": {"cycle_over_rate": round(total_cpu / rate_cpu, 2),
                           **{k: round(v["cpu_seconds"] / rate_cpu, 3) for k, v in stages.items()}},
            "ratios": {"cycle_over_rate": round(total / rate_seconds, 2),
                       "rate_stage_over_rate": round(rate_stage / rate_seconds, 2),
                       "rate_stage_and_files_over_rate": round((rate_stage + files_wait) / rate_seconds, 2)}}


def rate_baseline(plan, traffic: list[Path], out: Path) -> tuple[float, float]:
    """Seconds (wall, CPU) `icdsl rate` takes on the same records (every file, one after the
    other): the yardstick of the targets (the whole cycle within 3x, its rate stage within 1.5x)."""
    from icdsl.rating.run import rate_file

    t0, c0 = time.perf_counter(), time.process_time()
    rated = 0
    for i, p in enumerate(traffic):
        rated += rate_file(plan, p, out / f"{i:02d}" / "rated.parquet").rated
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert rated > 0
    return seconds, cpu


@contextlib.contextmanager
def database(kind: str, work: Path):
    if kind == "sqlite":
        yield f"sqlite:///{work / 'bench.db'}"
        return
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    eng = sa.create_engine(PG_URL)
    with eng.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with eng.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        eng.dispose()


N = int(os.environ.get("ICDSL_BENCH_CYCLE_N", "1000000"))


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_cycle_end_to_end(benchmark, tmp_path, kind):
    results = {}

    def once():
        with database(kind, tmp_path) as url:
            results.update(run_end_to_end(url, tmp_path, N, max(1, N // 1_000_000)))

    benchmark.pedantic(once, rounds=1, iterations=1)
    print(json.dumps(results))
    assert results["ingested"] == N and results["rated"] == N, results  # every record billed
    benchmark.extra_info.update(results)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=0)
    ap.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    args = ap.parse_args()
    for kind in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
        with tempfile.TemporaryDirectory() as d, database(kind, Path(d)) as url:
            print(json.dumps(run_end_to_end(url, Path(d), args.n, args.files or max(1, args.n // 1_000_000))),
                  flush=True)


if __name__ == "__main__":
    main()
