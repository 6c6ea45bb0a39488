"""Rates by origin, side by side: the benchmark deck as it is, and the same deck keyed by origin.

Rates the benchmark CDRs (``tests/benchmarks/workload/gen.py``) with the batch executor twice:
with the plain 50,000-prefix deck, and with a deck keyed by origin built from it (every prefix
also priced for callers from the EEA (``origin_zone EEA``), one in ten for London callers
(``origin 4420``)). Reports the CPU time of each and their ratio, after checking that the batch
executor agrees with the row executor on a sample of records of the origin deck.

    python tests/benchmarks/bench_origin.py [--n 200000] [--cache /tmp/icdsl-bench] [--india]

CPU time (``time.process_time``, all threads) is measured rather than wall time: the machine is
shared. The plain deck's time is the one that must not change with this feature.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = Path(__file__).resolve().parent / "workload"

RULES = """
calendar london_business timezone "Europe/London" {
  peak mon-fri 08:00-20:00
  offpeak otherwise
}
%s
agreement "Benchmark wholesale voice" v1 with any partner effective 2025-01-01 .. {
  currency GBP
  rounding half_up to 6 decimals
  outbound voice {
    price by destination from deck "rates.csv" columns {
      prefix "prefix"
      rate peak "peak_rate"
      rate offpeak "offpeak_rate"
      initial "initial_increment"
      subsequent "subsequent_increment"
      connect_fee "connect_fee"%s
    }
    calendar london_business
  }
}
"""


def project(folder: Path, rates: Path, origins: bool) -> Path:
    folder.mkdir(parents=True)
    mapping = '\n      origin_zone "origin_zone"\n      origin "origin"' if origins else ""
    (folder / "rules.icd").write_text(RULES % ("use stdlib.zones" if origins else "", mapping), encoding="utf-8")
    if not origins:
        shutil.copy(rates, folder / "rates.csv")
        return folder
    with open(rates, newline="", encoding="utf-8") as f, open(folder / "rates.csv", "w", newline="",
                                                              encoding="utf-8") as out:
        reader = csv.reader(f)
        header = next(reader)
        w = csv.writer(out)
        w.writerow(header + ["origin_zone", "origin"])
        for i, row in enumerate(reader):
            w.writerow(row + ["", ""])
            cheaper = [f"{float(v) * 0.5:.6f}" if h.endswith("_rate") else v for h, v in zip(header, row, strict=True)]
            w.writerow(cheaper + ["EEA", ""])
            if i % 10 == 0:
                w.writerow(row + ["", "4420"])
    return folder


def records(cdrs: Path) -> pa.Table:
    t = pq.read_table(cdrs)
    n = t.num_rows
    return pa.table({
        "id": t["id"], "partner": pc.cast(t["partner_id"], pa.string()),
        "direction": pa.array(["outbound"] * n).dictionary_encode(),
        "service": pa.array(["voice"] * n).dictionary_encode(),
        "a_number": t["a_number"], "b_number": t["b_number"], "start": t["start_time"],
        "duration_s": pc.cast(t["duration"], pa.int64()),
    })


def cpu(fn, rounds: int = 3) -> float:
    best = None
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        dt = time.process_time() - t0
        best = dt if best is None else min(best, dt)
    return best


def india(n: int) -> None:
    """An India-size matrix: 20,000 range prefixes, 500,000 ported numbers, 5 operators by 22
    circles (111 cells); n records, 30% from ported numbers. CPU time of the batch executor, a
    sample checked against the row executor first."""
    import random
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from icdsl.plan import model as m
    from icdsl.rating.batch import rate_batch
    from icdsl.rating.row import rate_record

    rnd = random.Random(3)
    ops = ["AIRTEL", "JIO", "VI", "BSNL", "MTNL"]
    circles = [f"C{i}" for i in range(22)]
    prefixes = sorted({"91" + str(rnd.randint(6000, 9999)) + str(rnd.randint(0, 9)) for _ in range(20000)})
    ported: dict[str, str] = {}
    while len(ported) < 500_000:
        ported["91" + str(rnd.randint(6_000_000_000, 9_999_999_999))] = rnd.choice(ops)
    ranges = m.NumberRanges("ranges.csv", "h", tuple(prefixes), tuple(rnd.choice(ops) for _ in prefixes),
                            tuple(rnd.choice(circles) for _ in prefixes), tuple("IN" for _ in prefixes),
                            tuple(range(2, len(prefixes) + 2)),
                            tuple((num, op, None, i + 2) for i, (num, op) in enumerate(ported.items())),
                            "ported.csv", "hp")

    def row(price: str) -> m.RateRow:
        line = len(rows) + 1
        return m.RateRow("91", "India", (("*", Decimal(price)),), span=m.Span("deck.csv", line, 1, line, 2))

    rows: list[m.RateRow] = []
    keys: list[m.CellKey] = []
    rows.append(row("0.0065"))
    keys.append(m.EMPTY_KEY)
    for op in ops:
        for c in circles:
            rows.append(row(f"0.00{rnd.randint(30, 60)}"))
            keys.append(m.CellKey(operator=op, circle=c))
        rows.append(row("0.005"))
        keys.append(m.CellKey(operator=op))
    sp = m.ServicePlan("inbound", "voice", "minute", rates=m.RateTable(tuple(rows), "USD", keys=tuple(keys)),
                       numbers=ranges, numbers_name="india")
    plan = m.Plan(partners=(m.Partner("P", "p"),), agreements=(m.Agreement(
        "a", 1, "P", date(2026, 1, 1), None, "USD", "UTC", m.Rounding(6, "half_up"), (sp,)),))
    numbers = list(ported)
    callers = [rnd.choice(numbers) if rnd.random() < 0.3 else rnd.choice(prefixes) + str(rnd.randint(10000, 99999))
               for _ in range(n)]
    table = pa.table({
        "id": pa.array(range(n), pa.int64()), "partner": ["P"] * n, "direction": ["inbound"] * n,
        "service": ["voice"] * n, "a_number": callers, "b_number": ["919886001122"] * n,
        "start": pa.array([datetime(2026, 3, 2, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
        "duration_s": pa.array([60] * n, pa.int64())})
    rated, _ = rate_batch(plan, table)
    rules = rated.column("rule").to_pylist()
    for i in range(0, n, max(1, n // 500)):
        assert rate_record(plan, table.slice(i, 1).to_pylist()[0]).rule == rules[i], i
    t = cpu(lambda: rate_batch(plan, table))
    print(f"India-size matrix: {t:.3f} s CPU for {n:,} records ({n / t:,.0f}/s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--cache", default="/tmp/icdsl-bench")
    ap.add_argument("--india", action="store_true", help="also an India-size circle-by-operator matrix")
    args = ap.parse_args()
    if args.india:
        india(args.n)
    cache = Path(args.cache) / f"n{args.n}"
    if not (cache / "cdrs.parquet").exists():
        subprocess.run([sys.executable, str(WORKLOAD / "gen.py"), str(cache), "--n", str(args.n)], check=True)
    from icdsl.plan.compiler import build
    from icdsl.rating.batch import rate_batch
    from icdsl.rating.row import rate_record

    table = records(cache / "cdrs.parquet")
    work = Path(tempfile.mkdtemp())
    plans = {}
    for name, origins in (("plain deck", False), ("deck keyed by origin", True)):
        folder = project(work / name.replace(" ", "_"), cache / "rates.csv", origins)
        plan, _, diags = build([folder], root=folder)
        assert plan is not None, [str(d) for d in diags[:5]]
        plans[name] = plan
    # exactness first: the origin deck's batch results equal the row executor's on a sample
    sample = table.slice(0, 2000)
    rated, _ = rate_batch(plans["deck keyed by origin"], sample)
    got = {r["id"]: (r["rule"], r["amount"]) for r in rated.to_pylist()}
    for rec in sample.to_pylist():
        want = rate_record(plans["deck keyed by origin"], rec)
        if want.ok:
            assert got[rec["id"]] == (want.rule, want.amount), (rec, want, got.get(rec["id"]))
        else:
            assert rec["id"] not in got
    for name, p in plans.items():
        rated, rejects = rate_batch(p, table)
        print(f"{name:>22}: {rated.num_rows:,} rated, {rejects.num_rows:,} rejected")
    times = {name: cpu(lambda p=p: rate_batch(p, table)) for name, p in plans.items()}
    for name, t in times.items():
        print(f"{name:>22}: {t:.3f} s CPU for {table.num_rows:,} records ({table.num_rows / t:,.0f}/s)")
    print(f"ratio origin/plain: {times['deck keyed by origin'] / times['plain deck']:.2f}")


if __name__ == "__main__":
    main()
