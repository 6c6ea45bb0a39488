"""PostgreSQL: what the check refusing new lines of a finalized invoice costs a cycle's insert of
its invoice lines (the store's own bulk path, :func:`icdsl.billing.cycles._insert`, 60 lines
into a draft invoice, rolled back), with the check as 0007 made it (a row-level trigger: one
query per line), as 0008 makes it (a statement-level trigger over the new rows) and without it.
The variants take turns, so that the load of a shared machine falls on each alike.

As a script (prints one JSON line)::

    python tests/benchmarks/bench_line_triggers.py [--rounds 100] [--lines 60]

As a pytest-benchmark module (skipped by the default options; needs the server at
127.0.0.1:5432)::

    pytest tests/benchmarks/bench_line_triggers.py --benchmark-only -s
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from bench_cycle import database, make_project, make_traffic

from icdsl.billing import cycles
from icdsl.billing import models as M
from icdsl.billing.store import open_store
from icdsl.plan.compiler import build

# the variants: which triggers are on (0007's row trigger is made again here, as x_row_0007)
VARIANTS = {"row (0007)": ("x_row_0007",), "statement (0008)": ("icdsl_invoice_lines_finalized_insert",), "none": ()}
TRIGGERS = ("x_row_0007", "icdsl_invoice_lines_finalized_insert")


def _lines(invoice_id: int, n: int) -> list[dict]:
    t = datetime.now(UTC)
    return [dict(invoice_id=invoice_id, line_no=1000 + i, kind="traffic", description=f"Zone {i}",
                 direction="outbound", service="voice", destination=f"Zone {i}", prefix=str(20 + i), band=None,
                 quantity=Decimal("1234.5"), unit="minute", rate=Decimal("0.0125"), rate_unit="minute",
                 amount=Decimal("15.43125"), currency="EUR", agreement_version_id=None, agreement_hash=None,
                 rule="voice", data_file_id=None, line_key=i, record_count=321, first_start=t, last_start=t,
                 corrects_line_id=None, created_at=t, source_amount=None, source_currency=None, fx_rate=None,
                 fx_rate_id=None, rounding=None, group_key=f"zone={i}", adjustment_id=None) for i in range(n)]


def measure(url: str, work: Path, rounds: int, lines: int) -> dict:
    project, prefixes = make_project(work / "project")
    traffic = make_traffic(work / "traffic", prefixes, 2000, 1)
    with contextlib.chdir(project):
        plan, program, diags = build(["bench.icd"])
        assert plan is not None, [str(d) for d in diags]
    store = open_store(url, data_dir=work / "data")
    try:
        store.load_plan(plan, program)
        store.ingest(traffic[0], None, plan)
        store.run_cycle("P001", "2026-03", plan)
        invoice_id = store.invoices()[0].id
        with store.engine.begin() as c:
            c.execute(sa.text("CREATE TRIGGER x_row_0007 BEFORE INSERT ON invoice_lines FOR EACH ROW "
                              "EXECUTE FUNCTION icdsl_refuse_finalized_line()"))
        ms: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(rounds):
            for variant, on in VARIANTS.items():
                with store.session() as s:
                    conn = s.connection()
                    for name in TRIGGERS:  # (every variant pays the same ALTER TABLE)
                        conn.exec_driver_sql(f"ALTER TABLE invoice_lines {'ENABLE' if name in on else 'DISABLE'} "
                                             f"TRIGGER {name}")
                    rows = _lines(invoice_id, lines)
                    t0 = time.perf_counter()
                    cycles._insert(s, M.InvoiceLine, rows)
                    ms[variant].append((time.perf_counter() - t0) * 1000)
                    s.rollback()
    finally:
        store.close()
    return {"lines": lines, "rounds": rounds,
            "median_ms": {v: round(statistics.median(x), 2) for v, x in ms.items()},
            "min_ms": {v: round(min(x), 2) for v, x in ms.items()}}


@pytest.mark.postgres
def test_line_triggers(benchmark, tmp_path):
    results = {}

    def once():
        with database("postgres", tmp_path) as url:
            results.update(measure(url, tmp_path, 50, 60))

    benchmark.pedantic(once, rounds=1, iterations=1)
    print(json.dumps(results))
    assert set(results["median_ms"]) == set(VARIANTS)
    benchmark.extra_info.update(results)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--lines", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, database("postgres", Path(d)) as url:
        print(json.dumps(measure(url, Path(d), args.rounds, args.lines)), flush=True)


if __name__ == "__main__":
    main()
