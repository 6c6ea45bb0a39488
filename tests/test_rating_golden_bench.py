"""The rating benchmark's hand-computed golden case (tests/benchmarks/workload/SPEC.md section 5):
both executors reproduce it exactly. The data is in tests/data/bench_golden (see its README).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

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
from icdsl.rating.row import rate_record

DATA = Path(__file__).parent / "data" / "bench_golden"


def golden_plan() -> Plan:
    """The benchmark's rules as a Plan: one outbound voice service, partner "*"."""
    rows = []
    with open(DATA / "rates.csv", newline="") as f:
        for line, r in enumerate(csv.DictReader(f), start=2):
            rows.append(
                RateRow(
                    r["prefix"],
                    r["prefix"],
                    (("peak", Decimal(r["peak_rate"])), ("offpeak", Decimal(r["offpeak_rate"]))),
                    connect_fee=Decimal(r["connect_fee"]),
                    increments=Increments(int(r["initial_increment"]), int(r["subsequent_increment"])),
                    span=Span("rates.csv", line, 1, line, 1),
                )
            )
    rounding = Rounding(6, "half_up")
    peak = BandRule("peak", frozenset(range(5)), time(8), time(20))
    voice = ServicePlan(
        "outbound",
        "voice",
        "minute",
        rates=RateTable(tuple(rows), "EUR"),
        calendar=Calendar("uk", "Europe/London", (peak,), "offpeak"),
        rounding=rounding,
    )
    return Plan(
        agreements=(Agreement("bench", 1, "*", date(2025, 1, 1), None, "EUR", "UTC", rounding, (voice,)),)
    )


def golden_records() -> list[dict]:
    with open(DATA / "cdrs.csv", newline="") as f:
        return [
            {
                "id": int(r["id"]),
                "partner": r["partner_id"],
                "direction": "outbound",
                "service": "voice",
                "a_number": r["a_number"],
                "b_number": r["b_number"],
                "start": datetime.fromisoformat(r["start_time"]),
                "duration_s": int(r["duration"]),
            }
            for r in csv.DictReader(f)
        ]


def expected() -> dict[int, tuple]:
    with open(DATA / "expected_rated.csv", newline="") as f:
        return {
            int(r["id"]): (r["status"], r["prefix"], r["band"], r["billed_seconds"], r["amount"])
            for r in csv.DictReader(f)
        }


def as_expected(status: str, prefix="", band="", billed="", amount="") -> tuple:
    return (status, prefix, band, str(billed), f"{amount:.6f}" if amount != "" else "")


def test_row_executor_matches_golden():
    p, want = golden_plan(), expected()
    for rec in golden_records():
        res = rate_record(p, rec)
        got = (
            as_expected("ok", res.prefix, res.band, res.billed_units, res.amount)
            if res.ok
            else as_expected(res.reason)
        )
        assert got == want[rec["id"]], rec


def test_batch_executor_matches_golden():
    recs = golden_records()
    table = pa.Table.from_pylist(recs)
    table = table.set_column(
        table.column_names.index("start"), "start", table["start"].cast(pa.timestamp("us", tz="UTC"))
    )
    rated, rejects = rate_batch(golden_plan(), table)
    got = {
        r["id"]: as_expected("ok", r["prefix"], r["band"], r["billed_units"], r["amount"])
        for r in rated.to_pylist()
    }
    got |= {r["id"]: as_expected(r["reason"]) for r in rejects.to_pylist()}
    assert got == expected()
    # the partner totals of the golden case
    totals: dict[str, list] = defaultdict(lambda: [0, 0, Decimal(0)])
    for r in rated.to_pylist():
        t = totals[r["partner"]]
        t[0], t[1], t[2] = t[0] + 1, t[1] + r["billed_units"], t[2] + r["amount"]
    with open(DATA / "expected_partners.csv", newline="") as f:
        want = {
            r["partner_id"]: [int(r["n_cdrs"]), int(r["billed_seconds"]), Decimal(r["amount"])]
            for r in csv.DictReader(f)
        }
    assert dict(totals) == want


@pytest.mark.parametrize("rec_id", [3, 10, 12])
def test_golden_edges_explained(rec_id):
    rec = next(r for r in golden_records() if r["id"] == rec_id)
    res = rate_record(golden_plan(), rec, trace=True)
    text = "\n".join(s.text for s in res.trace)
    assert "Europe/London" in text and "rounded once, half_up to 6 decimals" in text


def test_icdsl_rate_on_the_bench_agreement_matches_golden(tmp_path):
    """End to end through the record reader: examples/bench (whose layout says ``numbers e164``)
    rates the golden records exactly; ``0012...`` is not an international prefix there, so that
    record is rejected ``no_rate`` as the benchmark's rules say (a reader that ignored the
    layout's number setting once rated such records)."""
    import pyarrow.parquet as pq

    from icdsl.plan.compiler import build
    from icdsl.rating.run import rate_file

    root = Path(__file__).parent.parent / "examples" / "bench"
    plan, _, diags = build([root], root)
    assert plan is not None, diags
    summary = rate_file(plan, DATA / "cdrs.csv", tmp_path / "rated.parquet", layout=plan.layouts[0])
    rated = {str(r["id"]): r for r in pq.read_table(tmp_path / "rated.parquet").to_pylist()}
    rejected = {str(r["id"]): r["reason"] for r in pq.read_table(tmp_path / "rated.rejects.parquet").to_pylist()}
    with open(DATA / "expected_rated.csv", newline="") as f:
        expected = list(csv.DictReader(f))
    assert summary.read == len(expected) == len(rated) + len(rejected)
    for e in expected:
        i = e["id"]
        if e["status"] == "ok":
            got = rated[i]
            assert (got["prefix"], got["band"], got["amount"]) == (e["prefix"], e["band"], Decimal(e["amount"])), i
        else:
            assert rejected[i] == e["status"], i
