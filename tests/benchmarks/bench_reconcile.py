"""Reconciliation benchmark: a month of N of our records against the partner's N CDR detail
records (1 % of them differing: only theirs, only ours, durations off, amounts off), and a
line-level reconciliation of a 5,000-line partner invoice.

Targets (issue 13): the record-level reconciliation in under 3x the time `icdsl rate` takes on
the same records, peak memory under 1 GiB at 10M; the 5,000-line invoice in under 1 s.

As a pytest-benchmark module (skipped by the default options; collected by this folder's
conftest)::

    ICDSL_BENCH_RECON_N=200000 pytest tests/benchmarks/bench_reconcile.py --benchmark-only -s

As a script, side by side in one go (each measurement in a fresh process, so that its peak RSS
is its own; CPU time (user + system of the process) is reported next to wall time because the
machine may be shared)::

    python tests/benchmarks/bench_reconcile.py --n 1000000 [--repeat 3]

Their detail is read a batch at a time (as the store hands it over) and our records are kept as
they are rated: past 1M records a side, both go to disk by called number and are compared half
a million at a time (:mod:`icdsl.recon.spill`), so the peak memory does not grow with N.

prints one JSON object: ``rate`` (`icdsl rate` on the records: ``rate_file``), ``reconcile``
(our records rated by the cycle engine and compared record by record and line by line with
their detail and invoice: :func:`icdsl.recon.engine.reconcile` after :func:`icdsl.recon.ours.run_ours`),
``compare`` (the comparison alone, our view made beforehand, as when a cycle has run), ``lines``
(the 5,000-line invoice), and the ratios to ``rate``. The classes found are checked against the
differences made before anything is timed is reported.

The workload: one partner billed monthly in EUR, an agreement pricing outbound voice by
destination from a deck of 5,000 prefixes each its own destination (60/6 increments) with a
``reconcile`` block (0.5 % or 1.00 EUR a line, starts within 2 s, durations within 1 s); records
of March 2026 (one Parquet file, row groups of 1M); their detail: our records under their own
ids (every other one), starts shifted by up to 1 s, amounts as they would bill them (text with 6
decimals), with 0.25 % each of records only they have, only we have, durations 5 s longer, and
amounts 0.01 higher.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

DESTINATIONS = 5_000
PARTNER = "P001"
SHARE = 0.0025  # of the records, for each kind of difference
# the records table holds the records that differ (all are classed and counted), as `icdsl reconcile`
# keeps them; ICDSL_BENCH_RECON_ALL=1: every record (about 140 bytes a record more)
KEEP_MATCHED = os.environ.get("ICDSL_BENCH_RECON_ALL") == "1"


def make_project(folder: Path, seed: int = 7) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    prefixes = np.array(sorted({str(p) for p in rng.integers(200_000, 999_999, DESTINATIONS * 2)})[:DESTINATIONS])
    rates = rng.integers(10, 900, len(prefixes)) / 10_000
    lines = ["prefix,destination,rate"] + [f"{p},Zone {p},{r:.4f}" for p, r in zip(prefixes, rates, strict=True)]
    (folder / "rates.csv").write_text("\n".join(lines) + "\n")
    (folder / "bench.icd").write_text(f"""\
partner {PARTNER} "Partner 1" {{ currency EUR timezone "UTC" billing monthly }}

agreement "Bench voice" v1 with {PARTNER} effective 2026-01-01 .. {{
  outbound voice {{
    price by destination from deck "rates.csv"
    increments 60/6
  }}
  reconcile {{
    tolerance 0.5 % or 1.00 EUR per line
    start within 2 seconds
    duration within 1 second
  }}
}}
""")
    return folder, prefixes


def make_traffic(path: Path, prefixes: np.ndarray, n: int, seed: int = 11) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = int(np.datetime64("2026-03-01T00:00:00", "us").astype(np.int64))
    month = 31 * 86_400 * 1_000_000
    ids = np.arange(n, dtype=np.int64)
    # every destination has traffic (the 5,000-line invoice), the rest at random
    pick = np.concatenate([np.arange(min(n, len(prefixes))), rng.integers(0, len(prefixes), max(0, n - len(prefixes)))])
    b = np.char.add(prefixes[pick].astype(str), rng.integers(10**5, 10**6, n).astype(str))
    a = np.char.add("331", rng.integers(10**7, 10**8, n).astype(str))
    start = np.sort(t0 + rng.integers(0, month, n) // 1_000_000 * 1_000_000)
    t = pa.table({
        "id": ids, "partner": pa.array([PARTNER] * n), "direction": pa.array(["outbound"] * n),
        "service": pa.array(["voice"] * n), "a_number": pa.array(a), "b_number": pa.array(b),
        "start": pa.array(start, pa.timestamp("us", tz="UTC")),
        "duration_s": pa.array(rng.integers(1, 900, n), pa.int64()),
    })
    pq.write_table(t, path, row_group_size=1 << 20)
    return path


def build_plan(project: Path):
    from icdsl.plan.compiler import build

    with contextlib.chdir(project):
        plan, _program, diags = build(["bench.icd"])
    assert plan is not None, [str(d) for d in diags]
    return plan


def make_detail(traffic: Path, rated: Path, out: Path, seed: int = 13) -> dict[str, int]:
    """Their detail from our records and our rating (``rated``: `icdsl rate`'s output), with the
    differences; returns how many of each were made."""
    rng = np.random.default_rng(seed)
    t = pq.read_table(traffic, columns=["id", "a_number", "b_number", "start", "duration_s"])
    r = pq.read_table(rated, columns=["id", "amount"])
    r = r.set_column(1, "amount", pc.cast(r.column("amount"), pa.decimal128(38, 6)))
    t = t.join(r, "id").sort_by("id")
    n = t.num_rows
    k = max(1, int(n * SHARE))
    order = rng.permutation(n)
    only_ours, longer, dearer = order[:k], order[k:2 * k], order[2 * k:3 * k]
    keep = np.ones(n, bool)
    keep[only_ours] = False
    duration = t.column("duration_s").to_numpy().copy()
    duration[longer] += 5
    amount = t.column("amount").combine_chunks()
    amount_text = pc.cast(amount, pa.string()).to_numpy(zero_copy_only=False).astype(object)
    amount_text[dearer] = [str(Decimal(x) + Decimal("0.01")) for x in amount_text[dearer]]
    start = pc.cast(t.column("start"), pa.int64()).to_numpy() + rng.integers(0, 2, n) * 1_000_000
    ids = t.column("id").to_numpy()
    their_id = np.where(ids % 2 == 0, ids, ids + 10**12).astype(str)  # every other one under their own id
    theirs = pa.table({"id": their_id, "a_number": t.column("a_number"), "b_number": t.column("b_number"),
                       "start": start, "duration_s": duration, "amount": pa.array(amount_text, pa.string())}
                      ).filter(pa.array(keep))
    extra = pa.table({"id": pa.array([f"X{i}" for i in range(k)]), "a_number": pa.array(["33199999999"] * k),
                      "b_number": t.column("b_number").take(pa.array(order[3 * k:4 * k])),
                      "start": pc.cast(t.column("start"), pa.int64()).take(pa.array(order[3 * k:4 * k])),
                      "duration_s": pa.array(np.full(k, 60)), "amount": pa.array(["0.010000"] * k)})
    theirs = pa.concat_tables([theirs.cast(pa.schema([("id", pa.string()), ("a_number", pa.string()),
                                                      ("b_number", pa.string()), ("start", pa.int64()),
                                                      ("duration_s", pa.int64()), ("amount", pa.string())])),
                               extra.cast(pa.schema([("id", pa.string()), ("a_number", pa.string()),
                                                     ("b_number", pa.string()), ("start", pa.int64()),
                                                     ("duration_s", pa.int64()), ("amount", pa.string())]))])
    pq.write_table(theirs, out, row_group_size=1 << 20)
    return {"only_ours": k, "differs_duration": k, "differs_amount": k, "only_theirs": k}


def invoice_of(ours, number: str = "BENCH-1"):
    """Their 5,000-line invoice: one line per destination (half by prefix, half by name),
    quantities in minutes, amounts as ours (2.00 EUR more on every tenth line: outside the tolerance)."""
    from icdsl.recon.model import PartnerInvoice, PartnerInvoiceLine

    lines = []
    for i, o in enumerate(sorted(ours.lines, key=lambda x: x.destination or "")):
        off = Decimal("2.00") if i % 10 == 0 else Decimal(0)  # every tenth line outside 1.00 EUR
        by_prefix = i % 2 == 0
        lines.append(PartnerInvoiceLine(
            number=i + 1, service="voice", destination=None if by_prefix else (o.destination or "").upper(),
            prefix=(o.destination or "Zone ")[5:] if by_prefix else None, calls=o.calls,
            quantity=Decimal(o.quantity) / 60, unit="minute", amount=o.amount + off, currency="EUR"))
    import datetime as dt

    return PartnerInvoice(partner=PARTNER, number=number, issue_date=dt.date(2026, 4, 2),
                          period_start=dt.date(2026, 3, 1), period_end=dt.date(2026, 3, 31), currency="EUR",
                          total=sum((ln.amount for ln in lines), Decimal(0)), lines=tuple(lines))


def ubl_of(inv) -> bytes:
    """``inv`` as the partner would send it: a UBL 2.1 invoice, one cac:InvoiceLine per line with
    its service, destination or prefix and calls as item properties (as the example's)."""
    from xml.sax.saxutils import escape

    lines = []
    for ln in inv.lines:
        props = [("service", ln.service), ("destination", ln.destination), ("prefix", ln.prefix),
                 ("calls", ln.calls)]
        prop = "".join(f"<cac:AdditionalItemProperty><cbc:Name>{k}</cbc:Name><cbc:Value>{escape(str(v))}</cbc:Value>"
                       "</cac:AdditionalItemProperty>" for k, v in props if v is not None)
        lines.append(f"""  <cac:InvoiceLine>
    <cbc:ID>{ln.number}</cbc:ID>
    <cbc:InvoicedQuantity unitCode="MIN">{ln.quantity}</cbc:InvoicedQuantity>
    <cbc:LineExtensionAmount currencyID="EUR">{ln.amount}</cbc:LineExtensionAmount>
    <cac:InvoicePeriod><cbc:StartDate>{inv.period_start}</cbc:StartDate><cbc:EndDate>{inv.period_end}</cbc:EndDate>
    </cac:InvoicePeriod>
    <cac:Item><cbc:Name>Voice termination</cbc:Name>{prop}</cac:Item>
    <cac:Price><cbc:PriceAmount currencyID="EUR">0.0100</cbc:PriceAmount></cac:Price>
  </cac:InvoiceLine>
""")
    total = sum((ln.amount for ln in inv.lines), Decimal(0))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
         xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
         xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:UBLVersionID>2.1</cbc:UBLVersionID>
  <cbc:ID>{inv.number}</cbc:ID>
  <cbc:IssueDate>{inv.issue_date}</cbc:IssueDate>
  <cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>
  <cac:InvoicePeriod><cbc:StartDate>{inv.period_start}</cbc:StartDate><cbc:EndDate>{inv.period_end}</cbc:EndDate>
  </cac:InvoicePeriod>
  <cac:LegalMonetaryTotal>
    <cbc:LineExtensionAmount currencyID="EUR">{total}</cbc:LineExtensionAmount>
    <cbc:TaxExclusiveAmount currencyID="EUR">{total}</cbc:TaxExclusiveAmount>
    <cbc:PayableAmount currencyID="EUR">{total}</cbc:PayableAmount>
  </cac:LegalMonetaryTotal>
{"".join(lines)}</Invoice>
""".encode()


def inputs_of(plan, traffic: Path):
    from icdsl.cycle import CycleInputs

    pf = pq.ParquetFile(traffic)

    def chunks():
        for g in range(pf.num_row_groups):
            yield 0, pf.read_row_group(g)

    base = CycleInputs.of(plan, PARTNER, "2026-03")
    base.records = chunks
    return base


def detail_of(work: Path):
    """Their detail as the store hands it over: read a batch at a time, never whole."""
    from icdsl.recon.spill import parquet_batches

    def batches():
        for b in parquet_batches(work / "theirs.parquet", 500_000):
            yield pa.Table.from_batches([b])
    return batches


# --------------------------------------------------------------------------- the stages (each in its own process)


def stage_rate(work: Path) -> dict:
    from icdsl.rating.run import rate_file

    plan = build_plan(work / "project")
    summary = rate_file(plan, work / "traffic.parquet", work / "rate-out" / "rated.parquet")
    return {"rated": summary.rated}


def stage_reconcile(work: Path) -> dict:
    from icdsl.recon.engine import reconcile
    from icdsl.recon.ours import run_ours

    plan = build_plan(work / "project")
    ours = run_ours(inputs_of(plan, work / "traffic.parquet"), "EUR")
    r = reconcile(invoice_of(ours), ours, plan, detail=detail_of(work), keep_matched=KEEP_MATCHED)
    return {"record_counts": r.record_counts, "lines": len(r.lines), "differing_lines": len(r.differing)}


def stage_compare(work: Path) -> dict:
    """The comparison alone: our view made first (as a cycle that has run gives it), then timed."""
    from icdsl.recon.engine import reconcile
    from icdsl.recon.ours import run_ours

    plan = build_plan(work / "project")
    ours = run_ours(inputs_of(plan, work / "traffic.parquet"), "EUR")
    inv = invoice_of(ours)
    c0, t0 = _cpu(), time.perf_counter()
    r = reconcile(inv, ours, plan, detail=detail_of(work), keep_matched=KEEP_MATCHED)
    return {"timed_seconds": time.perf_counter() - t0, "timed_cpu_seconds": _cpu() - c0,
            "records": r.records.num_rows}


def stage_lines(work: Path) -> dict:
    from icdsl.recon.engine import reconcile
    from icdsl.recon.ours import run_ours

    plan = build_plan(work / "project")
    ours = run_ours(inputs_of(plan, work / "traffic.parquet"), "EUR", records=False)
    inv = invoice_of(ours)
    c0, t0 = _cpu(), time.perf_counter()
    r = reconcile(inv, ours, plan)
    return {"timed_seconds": time.perf_counter() - t0, "timed_cpu_seconds": _cpu() - c0,
            "invoice_lines": len(inv.lines), "differing_lines": len(r.differing)}


def stage_ubl(work: Path) -> dict:
    """The 5,000-line invoice as a UBL file: read (``icdsl partner-invoice import``'s reader),
    then reconciled at line level; both timed."""
    from icdsl.recon.engine import reconcile
    from icdsl.recon.ours import run_ours
    from icdsl.recon.readers import read_invoice

    plan = build_plan(work / "project")
    ours = run_ours(inputs_of(plan, work / "traffic.parquet"), "EUR", records=False)
    data = ubl_of(invoice_of(ours))
    c0, t0 = _cpu(), time.perf_counter()
    inv = read_invoice(data, "bench.xml", PARTNER)
    c1, t1 = _cpu(), time.perf_counter()
    r = reconcile(inv, ours, plan)
    return {"timed_seconds": time.perf_counter() - t0, "timed_cpu_seconds": _cpu() - c0,
            "read_cpu_seconds": round(c1 - c0, 3), "read_seconds": round(t1 - t0, 3), "bytes": len(data),
            "invoice_lines": len(inv.lines), "differing_lines": len(r.differing)}


STAGES = {"rate": stage_rate, "reconcile": stage_reconcile, "compare": stage_compare, "lines": stage_lines,
          "ubl": stage_ubl}


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def run_stage(name: str, work: Path) -> dict:
    """Run one stage in this process: its wall and CPU time and the process's peak RSS."""
    c0, t0 = _cpu(), time.perf_counter()
    out = STAGES[name](work)
    out.update({"seconds": round(time.perf_counter() - t0, 3), "cpu_seconds": round(_cpu() - c0, 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
    return out


def in_process(name: str, work: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--stage", name, "--work", str(work)], capture_output=True,
                         text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"stage {name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def prepare(work: Path, n: int) -> dict[str, int]:
    project, prefixes = make_project(work / "project")
    make_traffic(work / "traffic.parquet", prefixes, n)
    plan = build_plan(project)
    from icdsl.rating.run import rate_file

    rate_file(plan, work / "traffic.parquet", work / "prep" / "rated.parquet")
    return make_detail(work / "traffic.parquet", work / "prep" / "rated.parquet", work / "theirs.parquet")


def best(name: str, work: Path, repeat: int) -> dict:
    """The run of the least CPU time among ``repeat`` runs of a stage (a shared machine's load
    inflates some runs; the least is the closest to the work itself)."""
    runs = [in_process(name, work) for _ in range(repeat)]
    key = "timed_cpu_seconds" if "timed_cpu_seconds" in runs[0] else "cpu_seconds"
    out = min(runs, key=lambda r: r[key])
    out["runs_cpu_seconds"] = [round(r[key], 3) for r in runs]
    return out


def prepared(work: Path, n: int) -> dict[str, int]:
    """``prepare`` in a process of its own: a stage's process is started from this one, and Linux
    carries a process's peak RSS over into the processes it starts (fork, then exec), so this one
    must stay small for each stage's peak to be its own."""
    res = subprocess.run([sys.executable, __file__, "--prepare", "--n", str(n), "--work", str(work)],
                         capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"prepare failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def side_by_side(n: int, work: Path, repeat: int = 1) -> dict:
    made = prepared(work, n)
    rate = best("rate", work, repeat)
    rec = best("reconcile", work, repeat)
    cmp_ = best("compare", work, repeat)
    lines = best("lines", work, repeat)
    ubl = best("ubl", work, repeat)
    counts = rec["record_counts"]
    found = {k: counts.get(k, 0) for k in made}
    return {
        "records": n, "differences_made": made, "differences_found": found, "found_all": found == made,
        "rate": rate, "reconcile": rec, "compare": cmp_, "lines": lines, "ubl": ubl,
        "ratios": {
            "reconcile_over_rate_wall": round(rec["seconds"] / rate["seconds"], 2),
            "reconcile_over_rate_cpu": round(rec["cpu_seconds"] / rate["cpu_seconds"], 2),
            "compare_over_rate_wall": round(cmp_["timed_seconds"] / rate["seconds"], 2),
            "compare_over_rate_cpu": round(cmp_["timed_cpu_seconds"] / rate["cpu_seconds"], 2),
        },
        "load": os.getloadavg(),
    }


# --------------------------------------------------------------------------- pytest-benchmark


N = int(os.environ.get("ICDSL_BENCH_RECON_N", "50000"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("recon")
    made = prepare(w, N)
    return w, made


def test_bench_reconcile_records(benchmark, work):
    w, made = work
    out = benchmark.pedantic(lambda: stage_reconcile(w), rounds=1, iterations=1)
    assert {k: out["record_counts"][k] for k in made} == made


def test_bench_reconcile_lines(benchmark, work):
    w, _made = work
    from icdsl.recon.engine import reconcile
    from icdsl.recon.ours import run_ours

    plan = build_plan(w / "project")
    ours = run_ours(inputs_of(plan, w / "traffic.parquet"), "EUR", records=False)
    inv = invoice_of(ours)
    r = benchmark(lambda: reconcile(inv, ours, plan))
    assert len(r.lines) == len(ours.lines) and len(r.differing) == -(-len(inv.lines) // 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--stage", choices=sorted(STAGES))
    ap.add_argument("--work", type=Path)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each stage; the least CPU time is reported")
    ap.add_argument("--prepare", action="store_true", help="only write the workload into --work (a step of the run)")
    args = ap.parse_args()
    if args.prepare:
        print(json.dumps(prepare(args.work, args.n)))
        return
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.work)))
        return
    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(side_by_side(args.n, Path(d), args.repeat), indent=2))


if __name__ == "__main__":
    main()
