"""Identical invoices, charge lines and statements before and after the cycle engine.

Two months are billed on a fresh SQLite store (the second also on PostgreSQL), end to end (ingest,
cycle, finalize):

- the ``icdsl demo`` month (6,000 records, seed 5: four partners, every kind of charge,
  netting, revenue shares, refunds, events, FX, validation findings);
- a small version of the cycle benchmark's month (``tests/benchmarks/bench_cycle.py``: 20
  partners, 50,000 records, one deck of 2,000 nested prefixes).

Everything a cycle writes is serialized as canonical JSON (row ids, timestamps of the run,
file paths and hashes left out, the standard library's rule paths without the checkout's
folder: they legitimately vary; amounts, quantities, line keys,
descriptions, numbers and the records' line assignment kept) and compared with the golden file
in ``tests/data/cycle_identity/``, made with the code before the engine existed.
``ICDSL_UPDATE_GOLDEN=1`` rewrites it (only when the change of output is intended).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from helpers import ROOT, compare_golden
from test_billing_store import pg_url  # noqa: F401 - the fixture

from icdsl.billing import models as M

GOLDEN = Path(__file__).resolve().parent / "data" / "cycle_identity"
VOLATILE = {"id", "created_at", "opened_at", "rated_at", "validated_at", "invoiced_at", "finalized_at", "path",
            "sha256", "bytes", "at"}
STDLIB = re.compile(r"[^\s\"':]*stdlib_rules/")  # the standard library's files, wherever the checkout is


def _plain(v):
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items() if not _volatile(str(k))}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def normalized(v):
    """The checkout-independent form of a dump: the standard library's paths without the
    checkout's folder, no plan hash (it hashes the rule files' paths)."""
    if isinstance(v, str):
        return STDLIB.sub("<stdlib>/", v)
    if isinstance(v, dict):
        return {k: normalized(x) for k, x in v.items() if k != "plan_hash"}
    if isinstance(v, list):
        return [normalized(x) for x in v]
    return v


def _volatile(name: str) -> bool:
    return name in VOLATILE or name.endswith("_id")


def _row(obj) -> dict:
    return {c.key: _plain(getattr(obj, c.key)) for c in sa.inspect(type(obj)).column_attrs if not _volatile(c.key)}


def _table_digest(path: Path, columns: list[str], order: list[str]) -> dict:
    """The content of a cycle's Parquet file, independent of how it was chunked: rows sorted,
    hashed column by column."""
    t = pq.read_table(path)
    t = t.select([c for c in columns if c in t.column_names])
    if t.num_rows:
        t = t.sort_by([(c, "ascending") for c in order if c in t.column_names])
    out = {"rows": t.num_rows}
    for name in t.column_names:
        col = pc.cast(t.column(name), pa.string()) if not pa.types.is_string(t.column(name).type) else t.column(name)
        text = "\n".join("" if v is None else v for v in col.to_pylist())
        out[name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def dump(url: str, data_dir: Path) -> str:
    """Everything the store's cycles wrote, as canonical JSON."""
    eng = sa.create_engine(url)
    out: dict = {}
    try:
        with eng.connect() as conn, sa.orm.Session(conn) as s:
            for cyc in s.scalars(sa.select(M.BillingCycle).order_by(M.BillingCycle.partner_code,
                                                                   M.BillingCycle.period_start)):
                c = _row(cyc)
                c["inputs"] = [[i.batch_id, i.records] for i in s.scalars(
                    sa.select(M.CycleInput).where(M.CycleInput.cycle_id == cyc.id).order_by(M.CycleInput.batch_id))]
                c["findings"] = [_row(f) for f in s.scalars(
                    sa.select(M.ValidationFinding).where(M.ValidationFinding.cycle_id == cyc.id)
                    .order_by(M.ValidationFinding.attempt, M.ValidationFinding.severity, M.ValidationFinding.code,
                              M.ValidationFinding.id))]
                files = {}
                for f in s.scalars(sa.select(M.DataFile).where(M.DataFile.cycle_id == cyc.id)
                                   .order_by(M.DataFile.kind)):
                    d = _row(f)
                    if f.kind == "rated":
                        d["content"] = _table_digest(data_dir / f.path, [
                            "id", "batch_id", "line", "amount", "currency", "billed_units", "start", "agreement_hash",
                            "destination", "band", "prefix", "rate", "rule"], ["id", "batch_id"])
                    else:
                        d["content"] = _table_digest(data_dir / f.path, ["id", "reason", "detail", "batch_id"],
                                                     ["id", "batch_id", "reason"])
                    files[f.kind] = d
                for f in s.scalars(sa.select(M.RecordChargeFile).where(M.RecordChargeFile.cycle_id == cyc.id)):
                    d = _row(f)
                    d["content"] = _table_digest(data_dir / f.path, [
                        "id", "record", "kind", "charge", "amount", "currency", "rule", "batch_id"],
                        ["id", "batch_id", "charge", "record"])
                    files["record_charges"] = d
                c["files"] = files
                c["invoices"] = []
                for inv in s.scalars(sa.select(M.Invoice).where(M.Invoice.cycle_id == cyc.id)
                                     .order_by(M.Invoice.stream, M.Invoice.id)):
                    d = _row(inv)
                    d["lines"] = [_row(ln) for ln in s.scalars(
                        sa.select(M.InvoiceLine).where(M.InvoiceLine.invoice_id == inv.id)
                        .order_by(M.InvoiceLine.line_no))]
                    c["invoices"].append(d)
                c["settlements"] = [_row(x) for x in s.scalars(
                    sa.select(M.SettlementStatement).where(M.SettlementStatement.cycle_id == cyc.id)
                    .order_by(M.SettlementStatement.id))]
                c["shares"] = [_row(x) for x in s.scalars(
                    sa.select(M.ShareStatement).where(M.ShareStatement.cycle_id == cyc.id)
                    .order_by(M.ShareStatement.party, M.ShareStatement.currency))]
                lines = []
                for ln in s.scalars(sa.select(M.ChargeLine).where(M.ChargeLine.cycle_id == cyc.id)
                                    .order_by(M.ChargeLine.key_hash)):
                    d = _row(ln)
                    d["billed_on_invoice_line"] = ln.invoice_line_id is not None
                    d["applications"] = sorted(
                        [[a.key, str(a.amount), a.currency] for a in s.scalars(
                            sa.select(M.ChargeApplication).where(M.ChargeApplication.charge_line_id == ln.id))])
                    lines.append(d)
                c["charge_lines"] = lines
                out[f"{cyc.partner_code} {cyc.label}"] = c
    finally:
        eng.dispose()
    return json.dumps(normalized(out), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def test_demo_month_bills_as_before(tmp_path):
    from rich.console import Console

    from icdsl.demo import run_demo

    console = Console(file=open(os.devnull, "w"), width=150)  # noqa: SIM115
    folder = tmp_path / "demo"
    assert run_demo(folder, records=6000, seed=5, console=console, formats=("json",)) == 0
    compare_golden(GOLDEN / "demo.json", dump(f"sqlite:///{folder / 'icdsl.db'}", folder / "icdsl-data"))


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_cycle_identity", ROOT / "tests/benchmarks/bench_cycle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_month_bills_as_before(tmp_path):
    _bench_month(tmp_path, f"sqlite:///{tmp_path / 'bench.db'}")


@pytest.mark.postgres
def test_benchmark_month_bills_as_before_on_postgresql(tmp_path, pg_url):  # noqa: F811 - the fixture
    """The same month on PostgreSQL, where rows are written by other statements (arrays
    unnested, upserts returning, the dialect's types and triggers): the same golden file."""
    _bench_month(tmp_path, pg_url)


def _bench_month(tmp_path, url):
    from icdsl.billing.store import open_store
    from icdsl.plan.compiler import build

    bench = _bench_module()
    bench.PARTNERS = 20  # read by make_project and make_traffic
    project, prefixes = bench.make_project(tmp_path / "project")
    traffic = bench.make_traffic(tmp_path / "traffic", prefixes, 50_000, 1)
    with contextlib.chdir(project):
        plan, program, diags = build(["bench.icd"])
        assert plan is not None, [str(d) for d in diags]
    with open_store(url, data_dir=tmp_path / "data") as store:
        store.load_plan(plan, program)
        assert sum(store.ingest(p, None, plan).passed for p in traffic) == 50_000
        for i in range(1, bench.PARTNERS + 1):
            rep = store.run_cycle(f"P{i:03d}", "2026-03", plan)
            assert rep.status == "invoiced", str(rep)
            store.finalize_cycle(f"P{i:03d}", "2026-03")
    compare_golden(GOLDEN / "bench.json", dump(url, tmp_path / "data"))
