"""The billing store on both back ends: SQLite (a temporary file) and PostgreSQL (a fresh schema
per test in the database at 127.0.0.1:5432; skipped if the server cannot be reached, unless
ICDSL_REQUIRE_POSTGRES=1, which makes that a failure)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from alembic import command

from icdsl.billing import models as M
from icdsl.billing.errors import (
    AgreementVersionConflict,
    CycleBusy,
    CycleError,
    CycleStateError,
    StoreError,
)
from icdsl.billing.periods import iso_week, month, parse_period, quarter
from icdsl.billing.store import _migrations_config, head_revision, open_store
from icdsl.plan.compiler import build

PG_URL = os.environ.get("ICDSL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("ICDSL_REQUIRE_POSTGRES") == "1"

PARTNER = """partner ORFR "Orange France" {
  kind interconnect currency EUR timezone "Europe/Paris" billing monthly due 30 days tax vat 20%
}
"""
V1_BODY = """{
  outbound voice {
    price by destination in EUR {
      33  "France fixed"  0.0100
      336 "France mobile" 0.0200
    }
    increments 60/6
  }
  outbound sms { price 0.0050 EUR per message }
}
"""
V1_OPEN = 'agreement "ORFR voice" v1 with ORFR effective 2026-01-01 .. ' + V1_BODY
V1_CLOSED = 'agreement "ORFR voice" v1 with ORFR effective 2026-01-01 .. 2026-04-30 ' + V1_BODY
V2 = """agreement "ORFR voice" v2 with ORFR effective 2026-05-01 .. {
  outbound voice { price 0.0090 EUR per minute increments 60/6 }
  outbound sms { price 0.0040 EUR per message }
}
"""
HEADER = "id,partner,direction,service,a_number,b_number,start,duration_s\n"
# march_traffic() has one call to a number no destination matches (1.6 % of its records, more
# than validation lets through by default): these tests accept it (validation has its own tests)
ACCEPT = ("invalid_destination",)


# --------------------------------------------------------------------------- fixtures


@cache
def _pg_unavailable() -> str | None:
    try:
        eng = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(sa.text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        return f"PostgreSQL is not reachable at {PG_URL}: {type(e).__name__}: {str(e).splitlines()[0]}"


def _pg_schema_url() -> tuple[str, str]:
    reason = _pg_unavailable()
    if reason:
        if REQUIRE_PG:
            pytest.fail(f"{reason} (ICDSL_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(PG_URL)
    with eng.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    eng.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return schema, f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def _pg_drop(schema: str) -> None:
    eng = sa.create_engine(PG_URL)
    with eng.begin() as c:
        c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'icdsl.db'}"
        return
    schema, url = _pg_schema_url()
    try:
        yield url
    finally:
        _pg_drop(schema)


@pytest.fixture
def pg_url(tmp_path):
    schema, url = _pg_schema_url()
    try:
        yield url
    finally:
        _pg_drop(schema)


@pytest.fixture
def store(db_url, tmp_path):
    s = open_store(db_url, data_dir=tmp_path / "data")
    try:
        yield s
    finally:
        s.close()


def make_plan(tmp_path: Path, text: str, name: str = "rules.icd"):
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text, encoding="utf-8")
    with contextlib.chdir(d):  # spans name files relative to the working folder
        plan, program, diags = build([name])
    assert plan is not None, [str(x) for x in diags]
    return plan, program


def write_csv(path: Path, rows: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(",".join(str(x) for x in r) + "\n" for r in rows), encoding="utf-8")
    return path


def march_traffic(n: int = 60) -> list[tuple]:
    """Calls and messages of ORFR spread over March 2026 (across the DST change), plus one
    unpriceable number and records just outside the month in Paris time."""
    rows = []
    t0 = datetime(2026, 2, 28, 23, 0, tzinfo=UTC)  # 2026-03-01 00:00 in Paris
    for i in range(n):
        start = t0 + timedelta(hours=12 * i + 1, minutes=i)
        if i % 5 == 4:
            rows.append((f"C{i:04d}", "ORFR", "outbound", "sms", "33170000001", "33612345678",
                         start.strftime("%Y-%m-%dT%H:%M:%SZ"), ""))
        else:
            b = "33612345678" if i % 2 else "33142685300"
            rows.append((f"C{i:04d}", "ORFR", "outbound", "voice", "33170000001", b,
                         start.strftime("%Y-%m-%dT%H:%M:%SZ"), 7 + 13 * i))
    rows.append(("C9001", "ORFR", "outbound", "voice", "33170000001", "4420712345", "2026-03-10T10:00:00Z", 30))
    rows.append(("C9002", "ORFR", "outbound", "voice", "33170000001", "33142685300", "2026-02-28T22:59:59Z", 60))
    rows.append(("C9003", "ORFR", "outbound", "voice", "33170000001", "33142685300", "2026-03-31T22:00:00Z", 60))
    return rows


def load_and_ingest(store, tmp_path, rows=None):
    plan, program = make_plan(tmp_path, PARTNER + V1_OPEN)
    store.load_plan(plan, program)
    store.ingest(write_csv(tmp_path / "in" / "march.csv", rows or march_traffic()), None, plan)
    return plan, program


def snapshot(store, cycle_id: int) -> dict:
    """What a cycle produced, without ids and timestamps."""
    cyc = next(c for c in store.cycles() if c.id == cycle_id)
    invoices = []
    for inv in store.invoices(cycle_id):
        lines = [(ln.line_no, ln.description, ln.quantity, ln.unit, ln.rate, ln.amount, ln.currency,
                  ln.agreement_hash, ln.rule, ln.line_key, ln.record_count, ln.first_start, ln.last_start)
                 for ln in store.invoice_lines(inv.id)]
        invoices.append((inv.stream, inv.currency, inv.status, inv.subtotal, lines))
    with store.session() as s:
        files = sorted((f.kind, f.path, f.sha256, f.rows, str(f.amount_totals))
                       for f in s.scalars(sa.select(M.DataFile).where(M.DataFile.cycle_id == cycle_id)))
        files += [("record_charges", f.path, f.sha256, f.rows, str(f.amount_totals))
                  for f in s.scalars(sa.select(M.RecordChargeFile).where(M.RecordChargeFile.cycle_id == cycle_id))]
    return {"status": cyc.status, "counts": (cyc.records_in, cyc.rated_count, cyc.rejected_count),
            "totals": cyc.totals, "invoices": invoices, "files": files}


def count(store, model, *where) -> int:
    with store.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


def cycle_dir_files(store, partner="ORFR", label="2026-03-01_2026-04-01") -> set[str]:
    d = store.data.root / "cycles" / partner / label
    return {p.relative_to(store.data.root).as_posix() for p in d.iterdir()} if d.exists() else set()


# --------------------------------------------------------------------------- schema


def test_migrations_to_head_on_empty_database(db_url, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = open_store(db_url, data_dir=tmp_path / "data")
    try:
        assert store.revision() == head_revision() == "0019"
        names = set(sa.inspect(store.engine).get_table_names())
        for table in ("partners", "agreement_versions", "source_files", "intake_batches", "intake_reject_counts",
                      "intake_partner_stats", "data_files", "billing_cycles", "cycle_events", "cycle_inputs",
                      "invoices", "invoice_lines", "fx_rates", "inventory_items", "settlement_statements",
                      "number_sequences", "audit_log", "store_meta", "alembic_version", "intake_daily_counts",
                      "validation_findings", "corrections", "adjustments", "charge_lines", "charge_applications",
                      "record_charge_files", "share_statements", "late_records", "reject_resubmissions",
                      "resubmitted_rejects", "document_seals", "disputes", "dispute_lines", "dispute_credits"):
            assert table in names
        # the models describe exactly what the migrations create
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), M.Base.metadata)
        assert diff == []
        store_id = store.store_id
    finally:
        store.close()
    # reopening: nothing to migrate, same store
    again = open_store(db_url, data_dir=tmp_path / "data")
    try:
        assert again.revision() == "0019" and again.store_id == store_id
    finally:
        again.close()
    # a data folder belongs to one store
    other = tmp_path / "other.db"
    with pytest.raises(StoreError, match="belongs to another store"):
        open_store(f"sqlite:///{other}", data_dir=tmp_path / "data")


def test_money_is_exact_never_float(store):
    big = Decimal("1234567890123456.12345678")  # 24 digits, 8 decimals
    with store.session() as s:
        s.add(M.FxRate(source="t", base="EUR", quote="USD", rate=Decimal("1.085012345678"),
                       effective_from=date(2026, 1, 1), origin="manual", loaded_at=datetime.now(UTC)))
        p = M.Partner(code="P", name="P", kind="k", currency="EUR", timezone="UTC", billing="monthly", due_days=30,
                      tax_kind="none", tax_rate=Decimal(0), country=None, attributes={}, decl_hash="x",
                      source_file="f", span="f:1:1", created_at=datetime.now(UTC), updated_at=datetime.now(UTC))
        s.add(p)
        s.flush()
        s.add(M.SettlementStatement(partner_id=p.id, currency="EUR", status="draft", receivable=big,
                                    payable=Decimal("0.00000001"), net=big - Decimal("0.00000001"),
                                    created_at=datetime.now(UTC)))
    with store.session() as s:
        st = s.scalars(sa.select(M.SettlementStatement)).one()
        assert st.receivable == big and isinstance(st.receivable, Decimal)
        assert st.net == Decimal("1234567890123456.12345677")
        assert s.scalars(sa.select(M.FxRate.rate)).one() == Decimal("1.085012345678")
        with pytest.raises(sa.exc.StatementError, match="float"):
            st.payable = 0.1  # type: ignore[assignment]
            s.flush()
    with store.session() as s, pytest.raises(sa.exc.StatementError, match="more than 8 decimals"):
        st = s.scalars(sa.select(M.SettlementStatement)).one()
        st.payable = Decimal("0.000000001")
        s.flush()


# --------------------------------------------------------------------------- partners and agreements


def test_load_plan_idempotent_and_versions_immutable(store, tmp_path):
    plan, program = make_plan(tmp_path, PARTNER + V1_OPEN)
    first = store.load_plan(plan, program)
    assert first.partners_added == ["ORFR"] and first.agreements_added == ["ORFR voice v1"]
    (row,) = store.agreement_versions()
    assert row.partner_code == "ORFR" and row.effective_from == date(2026, 1, 1) and row.effective_to is None
    assert row.content_hash == plan.agreements[0].source_hash and row.revision == 0
    assert row.source_text.startswith('agreement "ORFR voice" v1') and row.source_text.rstrip().endswith("}")
    assert row.source_file == "rules.icd" and row.span.startswith("rules.icd:4:")
    audit_before = count(store, M.AuditEntry)

    again = store.load_plan(plan, program)
    assert not again.changed and again.agreements_unchanged == ["ORFR voice v1"]
    assert "nothing new" in str(again)
    assert count(store, M.AgreementVersion) == 1 and count(store, M.Partner) == 1
    assert count(store, M.AuditEntry) == audit_before

    # the same name and version with another price: refused, nothing written
    changed, changed_prog = make_plan(tmp_path, PARTNER + V1_OPEN.replace("0.0200", "0.0210"), "changed.icd")
    with pytest.raises(AgreementVersionConflict, match=r"immutable once loaded.*new version \(v2\)"):
        store.load_plan(changed, changed_prog)
    assert count(store, M.AgreementVersion) == 1

    # a next version: v1 gets an end date (a revision row), v2 is added; v1's row is untouched
    later, later_prog = make_plan(tmp_path, PARTNER + V1_CLOSED + V2, "later.icd")
    rep = store.load_plan(later, later_prog)
    assert rep.agreements_added == ["ORFR voice v2"] and rep.agreements_closed == ["ORFR voice v1 ends 2026-04-30"]
    rows = store.agreement_versions("ORFR voice")
    assert [(r.version, r.revision, r.effective_from, r.effective_to) for r in rows] == [
        (1, 0, date(2026, 1, 1), None), (1, 1, date(2026, 1, 1), date(2026, 4, 30)), (2, 0, date(2026, 5, 1), None)]
    assert rows[0].content_hash == row.content_hash and rows[0].loaded_at == row.loaded_at
    assert rows[1].amends_id == rows[0].id
    assert not store.load_plan(later, later_prog).changed

    # the database itself refuses to rewrite a version
    for sql in ("UPDATE agreement_versions SET source_text = 'x'", "DELETE FROM agreement_versions"):
        with pytest.raises(sa.exc.DBAPIError, match="immutable once loaded"), store.engine.begin() as c:
            c.execute(sa.text(sql))


# --------------------------------------------------------------------------- intake


def test_ingest_idempotent_reconciled_duplicates_across_batches(store, tmp_path):
    plan, program = make_plan(tmp_path, PARTNER + V1_OPEN)
    store.load_plan(plan, program)
    a = write_csv(tmp_path / "in" / "a.csv", [
        ("A1", "ORFR", "outbound", "voice", "33170000001", "33142685300", "2026-03-02T08:00:00Z", 61),
        ("A2", "ORFR", "outbound", "voice", "33170000001", "33612345678", "2026-03-02T09:00:00Z", 30),
        ("A2", "ORFR", "outbound", "voice", "33170000001", "33612345678", "2026-03-02T09:00:00Z", 30),
        ("A3", "ORFR", "outbound", "voice", "33170000001", "not-a-number", "2026-03-02T10:00:00Z", 30),
        ("A4", "ORFR", "outbound", "voice", "33170000001", "33142685300", "2026-03-02T11:00:00Z", -5),
    ])
    r1 = store.ingest(a, None, plan)
    assert not r1.already_ingested and r1.reconciles
    assert (r1.read, r1.passed, r1.rejected, r1.duplicates) == (5, 2, 2, 1)
    assert r1.by_reason == {"duplicate_id": 1, "invalid_number": 1, "negative_duration": 1}
    assert r1.partners == {"ORFR": 2}

    # the same content again, under another name: nothing added, and it says so
    copy = tmp_path / "in" / "a-again.csv"
    copy.write_bytes(a.read_bytes())
    files_before = count(store, M.DataFile)
    r1b = store.ingest(copy, None, plan)
    assert r1b.already_ingested and r1b.batch_id == r1.batch_id and "already ingested as batch" in str(r1b)
    assert count(store, M.IntakeBatch) == 1 and count(store, M.DataFile) == files_before

    # a second file repeating A1 and A2: duplicates across batches
    b = write_csv(tmp_path / "in" / "b.csv", [
        ("A1", "ORFR", "outbound", "voice", "33170000001", "33142685300", "2026-03-02T08:00:00Z", 61),
        ("B1", "ORFR", "outbound", "voice", "33170000001", "33142685300", "2026-03-03T08:00:00Z", 10),
        ("A2", "ORFR", "outbound", "voice", "33170000001", "33612345678", "2026-03-02T09:00:00Z", 30),
        ("B2", "XXXX", "outbound", "sms", "33170000001", "33612345678", "2026-03-03T09:00:00Z", ""),
    ])
    r2 = store.ingest(b, None, plan)
    assert (r2.read, r2.passed, r2.rejected, r2.duplicates) == (4, 2, 0, 2) and r2.reconciles
    assert r2.by_reason == {"duplicate_id": 2} and r2.unknown_partners == ["XXXX"]
    rejects = store.rejects(r2.batch_id).to_pylist()
    assert sorted(x["id"] for x in rejects) == ["A1", "A2"]
    assert all(f"batch #{r1.batch_id} (a.csv)" in x["detail"] and '"b_number": "33' in x["raw"] for x in rejects)
    records = pq.read_table(store.data.abs(r2.records_file))
    assert sorted(records.column("id").to_pylist()) == ["B1", "B2"]

    # earlier files whose id range cannot hold a batch's ids are not read at all
    from icdsl.billing.intake import Earlier, PreviousIds

    with store.session() as s:
        prev = PreviousIds(store.data, Earlier.of(s))
        seen, _ = prev.lookup(pa.array(["Z1", "Z2"]))
        assert not seen.any() and prev._ids == {}
        seen, owner = prev.lookup(pa.array(["A2", "Z1", "B1"]))
        assert seen.tolist() == [True, False, True]
        assert owner[0] == r1.batch_id and owner[2] == r2.batch_id

    # stored counts reconcile, and the database refuses counts that do not
    with store.session() as s:
        for bt in s.scalars(sa.select(M.IntakeBatch)):
            assert bt.read_count == bt.passed_count + bt.rejected_count + bt.duplicate_count
            reasons = s.scalars(sa.select(M.IntakeRejectCount.count).where(M.IntakeRejectCount.batch_id == bt.id))
            assert sum(reasons) == bt.rejected_count + bt.duplicate_count
    first_rejects = store.rejects(r1.batch_id)
    assert first_rejects.num_rows == 3 and set(first_rejects.column("reason").to_pylist()) == {
        "duplicate_id", "invalid_number", "negative_duration"}
    assert "not-a-number" in " ".join(first_rejects.column("raw").to_pylist())
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO intake_batches (file_name, file_path, sha256, size_bytes, format, status, read_count, "
            "passed_count, rejected_count, duplicate_count, started_at, finished_at) VALUES ('x', 'x', 'x', 1, "
            "'csv', 'complete', 3, 1, 1, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    assert store.verify_files() == []


@pytest.mark.parametrize("many", [False, True], ids=["row_group_per_partner", "many_partners"])
def test_ingest_writes_records_in_partner_then_start_order(store, tmp_path, monkeypatch, many):
    """The records file holds the passed records in partner, then start order (equal starts in file
    order), gathered and written piece by piece; with few partners each row group holds one
    partner's records. Columns holding one value, and a column of nulls, come through as they are."""
    from icdsl.billing import intake

    monkeypatch.setattr(intake, "PIECE_ROWS", 7)  # many pieces, a partner never cut
    if many:
        monkeypatch.setattr(intake, "PARTNER_ROW_GROUPS_MAX", 2)
    plan, program = make_plan(tmp_path, PARTNER + V1_OPEN)
    store.load_plan(plan, program)
    n = 300
    partners = [f"P{(i * 7) % 5}" for i in range(n)]
    starts = [datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=(i * 37) % 101) for i in range(n)]
    src = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "partner": partners,
        "direction": ["outbound"] * n,
        "service": ["voice"] * n,
        "a_number": ["33170000001"] * n,
        "b_number": [f"3361234{i:04d}" for i in range(n)],
        "start": pa.array(starts, pa.timestamp("us", tz="UTC")),
        "duration_s": pa.array([i % 90 for i in range(n)], pa.int64()),
        "note": pa.nulls(n, pa.string()),
    })
    path = tmp_path / "in" / "t.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(src, path)
    rep = store.ingest(path, None, plan)
    assert (rep.read, rep.passed) == (n, n) and rep.reconciles
    got = pq.read_table(store.data.abs(rep.records_file))
    order = sorted(range(n), key=lambda i: (partners[i], starts[i], i))
    assert got.column("id").to_pylist() == order
    for name in ("partner", "b_number", "start", "duration_s", "direction", "a_number"):
        assert got.column(name).to_pylist() == [src.column(name)[i].as_py() for i in order], name
    meta = pq.ParquetFile(store.data.abs(rep.records_file)).metadata
    k = got.schema.get_field_index("partner")
    stats = [(meta.row_group(g).column(k).statistics.min, meta.row_group(g).column(k).statistics.max)
             for g in range(meta.num_row_groups)]
    if many:
        assert any(lo != hi for lo, hi in stats)
    else:
        assert [lo for lo, hi in stats] == sorted(set(partners)) and all(lo == hi for lo, hi in stats)
    assert rep.partners == {p: partners.count(p) for p in set(partners)}


# --------------------------------------------------------------------------- periods


def test_periods_in_the_partner_time_zone_and_across_dst():
    paris = "Europe/Paris"
    mar = month(2026, 3, paris)  # summer time starts on 29 March
    assert (mar.start, mar.end) == (datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 3, 31, 22, tzinfo=UTC))
    assert mar.end - mar.start == timedelta(days=31, hours=-1)
    octo = month(2026, 10, paris)  # and ends on 25 October
    assert (octo.start, octo.end) == (datetime(2026, 9, 30, 22, tzinfo=UTC), datetime(2026, 10, 31, 23, tzinfo=UTC))
    assert octo.end - octo.start == timedelta(days=31, hours=1)
    assert parse_period("2026-03", paris) == mar and parse_period(date(2026, 3, 17), paris) == mar
    assert datetime(2026, 2, 28, 23, tzinfo=UTC) in mar and datetime(2026, 2, 28, 22, 59, 59, tzinfo=UTC) not in mar
    assert datetime(2026, 3, 31, 21, 59, 59, tzinfo=UTC) in mar and datetime(2026, 3, 31, 22, tzinfo=UTC) not in mar
    wk = iso_week(2026, 13, paris)  # Monday 23 March .. Monday 30 March, across the change
    assert (wk.start, wk.end) == (datetime(2026, 3, 22, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC))
    assert parse_period("2026-W13", paris) == wk
    assert parse_period(date(2026, 3, 25), paris, "weekly") == wk
    q1 = quarter(2026, 1, "America/New_York")
    assert (q1.start, q1.end) == (datetime(2026, 1, 1, 5, tzinfo=UTC), datetime(2026, 4, 1, 4, tzinfo=UTC))
    adhoc = parse_period("2026-03-01..2026-03-15", paris)
    assert adhoc.frequency == "adhoc" and adhoc.end == datetime(2026, 3, 15, 23, tzinfo=UTC)
    # a zone whose clocks jump at midnight: the day starts when the gap ends
    santiago = month(2022, 9, "America/Santiago")
    assert santiago.start == datetime(2022, 9, 1, 4, tzinfo=UTC)
    assert parse_period("2022-09-11..2022-09-11", "America/Santiago").start == datetime(2022, 9, 11, 4, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a period"):
        parse_period("March", paris)


def test_monthly_cycle_takes_records_by_paris_midnight(store, tmp_path):
    rows = [
        ("F1", "ORFR", "outbound", "voice", "1", "33142685300", "2026-02-28T22:59:59Z", 60),  # 23:59:59 Feb 28
        ("M1", "ORFR", "outbound", "voice", "1", "33142685300", "2026-02-28T23:00:00Z", 60),  # 00:00 Mar 1
        ("M2", "ORFR", "outbound", "voice", "1", "33142685300", "2026-03-29T00:59:59Z", 60),  # 01:59:59 CET
        ("M3", "ORFR", "outbound", "voice", "1", "33142685300", "2026-03-29T01:00:00Z", 60),  # 03:00 CEST
        ("M4", "ORFR", "outbound", "voice", "1", "33142685300", "2026-03-31T21:59:59Z", 60),  # 23:59:59 Mar 31
        ("P1", "ORFR", "outbound", "voice", "1", "33142685300", "2026-03-31T22:00:00Z", 60),  # 00:00 Apr 1
    ]
    plan, _ = load_and_ingest(store, tmp_path, rows)
    rep = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    assert rep.status == "invoiced" and rep.records_in == 4
    assert sorted(store.rated(rep.cycle_id).column("id").to_pylist()) == ["M1", "M2", "M3", "M4"]
    cyc = store.cycle("ORFR", "2026-03")
    assert (cyc.period_start, cyc.period_end) == (datetime(2026, 2, 28, 23, tzinfo=UTC),
                                                   datetime(2026, 3, 31, 22, tzinfo=UTC))
    assert (cyc.local_start, cyc.local_end, cyc.timezone) == (date(2026, 3, 1), date(2026, 4, 1), "Europe/Paris")
    feb = store.run_cycle("ORFR", date(2026, 2, 10), plan)
    apr = store.run_cycle("ORFR", "2026-04", plan, accept=ACCEPT)
    assert store.rated(feb.cycle_id).column("id").to_pylist() == ["F1"]
    assert store.rated(apr.cycle_id).column("id").to_pylist() == ["P1"]
    with pytest.raises(CycleError, match="overlaps cycle 2026-03"):
        store.run_cycle("ORFR", "2026-03-15..2026-04-14", plan, accept=ACCEPT)


# --------------------------------------------------------------------------- cycles


def test_cycle_states_lines_and_trace(store, tmp_path):
    plan, _ = load_and_ingest(store, tmp_path)
    rep = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    assert rep.status == "invoiced" and not rep.already
    assert rep.records_in == 61 and rep.rated == 60 and rep.rejected == 1
    assert rep.rejects_by_reason == {"no_rate": 1}
    rated = store.rated(rep.cycle_id)
    assert rated.num_rows == 60 and rated.column("line").null_count == 0
    total = pc.sum(rated.column("amount")).as_py()
    assert rep.totals == {"EUR": total}
    (inv,) = store.invoices(rep.cycle_id)
    lines = store.invoice_lines(inv.id)
    # lines: the exact sum of their records, rounded once to cents; the subtotal adds the lines
    assert sum(ln.source_amount for ln in lines) == total
    assert all(ln.amount == ln.source_amount.quantize(Decimal("0.01"), "ROUND_HALF_UP") for ln in lines)
    assert inv.status == "draft" and inv.subtotal == sum(ln.amount for ln in lines)
    assert (inv.tax_kind, inv.tax_amount) == ("vat", (inv.subtotal * Decimal("0.2")).quantize(Decimal("0.01")))
    assert inv.total == inv.subtotal + inv.tax_amount
    assert [ln.description for ln in lines] == ["outbound sms", "outbound voice to France fixed",
                                                "outbound voice to France mobile"]
    sms = lines[0]
    assert (sms.quantity, sms.unit, sms.rate, sms.record_count) == (Decimal(12), "message", Decimal("0.005"), 12)
    assert {ln.unit for ln in lines[1:]} == {"second"} and {ln.rate_unit for ln in lines[1:]} == {"minute"}
    states = [(e.from_state, e.to_state) for e in store.cycle_events(rep.cycle_id) if e.kind == "state"]
    assert states == [(None, "open"), ("open", "rated"), ("rated", "validated"), ("validated", "invoiced")]
    cyc = store.cycle("ORFR", "2026-03")
    assert cyc.rated_at and cyc.validated_at and cyc.invoiced_at and not cyc.finalized_at
    # the chain behind a line: agreement version, rule, records, intake batch
    for ln in lines:
        tr = store.trace(ln.id)
        assert tr.agreement.content_hash == ln.agreement_hash == plan.agreements[0].source_hash
        assert tr.records.num_rows == ln.record_count
        assert pc.sum(tr.records.column("amount")).as_py() == ln.source_amount
        assert set(tr.records.column("rule").to_pylist()) == {ln.rule}
        assert [b.file_name for b in tr.batches] == ["march.csv"]
        assert tr.rule_source and ("France" in tr.rule_source or "sms" in tr.rule_source)
    assert "march.csv" in str(store.trace(lines[1].id))
    # running it again does nothing
    again = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    assert again.already and again.cycle_id == rep.cycle_id and count(store, M.Invoice) == 1
    # finalize: numbered, dated, immutable; the same number is never given twice
    fin = store.finalize_cycle("ORFR", "2026-03", issue_date=date(2026, 4, 2))
    assert fin.status == "finalized" and fin.invoices[0].number == "INV-2026-000001"
    (inv,) = store.invoices(rep.cycle_id)
    assert (inv.issue_date, inv.due_date, inv.status) == (date(2026, 4, 2), date(2026, 5, 2), "finalized")
    assert store.finalize_cycle("ORFR", "2026-03").already
    with pytest.raises(CycleStateError, match="finalized"):
        store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT, rerate=True)
    apr = store.run_cycle("ORFR", "2026-04", plan, accept=ACCEPT)
    assert store.finalize_cycle("ORFR", "2026-04", issue_date=date(2026, 5, 2)).invoices[0].number == "INV-2026-000002"
    assert apr.records_in == 1


def test_rerate_replaces_drafts(store, tmp_path):
    plan, program = load_and_ingest(store, tmp_path)
    first = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    before = snapshot(store, first.cycle_id)
    again = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT, rerate=True)
    assert not again.already and snapshot(store, first.cycle_id) == before
    assert count(store, M.Invoice) == 1 and count(store, M.DataFile, M.DataFile.cycle_id == first.cycle_id) == 2


class Crash(Exception):
    pass


@pytest.mark.parametrize("stage", ["cycle:rated", "cycle:files_committed", "cycle:before_commit"])
def test_crash_half_way_then_rerun_gives_the_same_result(store, db_url, tmp_path, monkeypatch, stage):
    plan, _ = load_and_ingest(store, tmp_path)
    # the reference: the same cycle run without trouble in a store of its own
    ref_dir = tmp_path / "ref"
    ref = open_store(f"sqlite:///{ref_dir / 'ref.db'}", data_dir=ref_dir / "data")
    try:
        load_and_ingest(ref, ref_dir)
        expected = snapshot(ref, ref.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT).cycle_id)
    finally:
        ref.close()

    def crash(at: str) -> None:
        if at == stage:
            raise Crash(at)

    monkeypatch.setattr("icdsl.billing.store.checkpoint", crash)
    monkeypatch.setattr("icdsl.billing.base.checkpoint", crash)  # where the store's parts call it
    with pytest.raises(Crash):
        store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    # no partial results: the cycle is open, with the error logged, and nothing else
    cyc = store.cycle("ORFR", "2026-03")
    assert cyc.status == "open" and cyc.records_in is None and cyc.rated_at is None
    assert count(store, M.Invoice) == 0 and count(store, M.InvoiceLine) == 0 and count(store, M.CycleInput) == 0
    assert count(store, M.DataFile, M.DataFile.cycle_id.is_not(None)) == 0
    errors = [e for e in store.cycle_events(cyc.id) if e.kind == "error"]
    assert len(errors) == 1 and stage in errors[0].message
    left = cycle_dir_files(store)
    if stage != "cycle:rated":
        assert left  # files written, never referenced

    monkeypatch.undo()
    rep = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    assert rep.status == "invoiced"
    got = snapshot(store, rep.cycle_id)
    assert got == expected
    assert cycle_dir_files(store) == {f[1] for f in got["files"]}  # leftovers removed
    assert store.verify_files() == []


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    import icdsl.billing.store as st
    from icdsl.plan.compiler import build
    url, data, rules, stage, what = sys.argv[1:6]
    def die(at):
        if at == stage:
            os._exit(137)
    st.checkpoint = die
    import icdsl.billing.base
    icdsl.billing.base.checkpoint = die  # where the store's parts call it
    os.chdir(os.path.dirname(rules))
    plan, program, _ = build([os.path.basename(rules)])
    store = st.open_store(url, data_dir=data)
    if what == "ingest":
        store.ingest(sys.argv[6], None, plan)
    else:
        store.run_cycle("ORFR", "2026-03", plan, accept=("invalid_destination",))
    print("survived")
""")


def test_process_killed_then_rerun(store, db_url, tmp_path):
    plan, program = make_plan(tmp_path, PARTNER + V1_OPEN)
    store.load_plan(plan, program)
    traffic = write_csv(tmp_path / "in" / "march.csv", march_traffic())
    rules = str(tmp_path / "rules" / "rules.icd")
    data = str(store.data.root)

    def killed(stage: str, what: str, *extra: str) -> None:
        res = subprocess.run([sys.executable, "-c", KILL_SCRIPT, db_url, data, rules, stage, what, *extra],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 137, res.stdout + res.stderr

    killed("ingest:before_commit", "ingest", str(traffic))
    assert count(store, M.IntakeBatch) == 0 and count(store, M.DataFile) == 0
    rep = store.ingest(traffic, None, plan)
    assert (rep.read, rep.passed, rep.rejected, rep.duplicates) == (63, 63, 0, 0)
    intake_dir = store.data.abs(rep.records_file).parent
    assert {p.name for p in intake_dir.iterdir()} == {Path(rep.records_file).name, Path(rep.rejects_file).name}

    killed("cycle:before_commit", "cycle")
    assert store.cycles() == []  # opened and invoiced in one transaction, killed before its commit: no row
    assert count(store, M.Invoice) == 0 and count(store, M.CycleEvent) == 0
    assert count(store, M.DataFile, M.DataFile.cycle_id.is_not(None)) == 0 and count(store, M.CycleInput) == 0
    orphans = cycle_dir_files(store)
    assert orphans
    result = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    got = snapshot(store, result.cycle_id)
    assert got["status"] == "invoiced" and got["counts"] == (61, 60, 1)
    assert {f[1] for f in got["files"]} == orphans == cycle_dir_files(store)  # the same bytes, the same names


# --------------------------------------------------------------------------- immutability


def finalized_and_draft(store, tmp_path):
    """March finalized, April a draft: (plan, March's invoice, April's)."""
    plan, _ = load_and_ingest(store, tmp_path)
    store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    store.run_cycle("ORFR", "2026-04", plan, accept=ACCEPT)  # stays a draft
    store.finalize_cycle("ORFR", "2026-03", issue_date=date(2026, 4, 2))
    fin = next(i for i in store.invoices() if i.status == "finalized")
    draft = next(i for i in store.invoices() if i.status == "draft")
    return plan, fin, draft


def test_finalized_invoice_refuses_raw_sql(store, tmp_path):
    _plan, fin, draft = finalized_and_draft(store, tmp_path)
    line = store.invoice_lines(fin.id)[0]
    cyc = store.cycle("ORFR", "2026-03")
    refused = [
        (f"UPDATE invoices SET subtotal = '1' WHERE id = {fin.id}", "invoice is finalized"),
        (f"UPDATE invoices SET status = 'draft' WHERE id = {fin.id}", "invoice is finalized"),
        (f"UPDATE invoices SET status = 'void' WHERE id = {fin.id}", "invoice is finalized"),
        (f"DELETE FROM invoices WHERE id = {fin.id}", "invoice is finalized"),
        (f"UPDATE invoice_lines SET amount = '0' WHERE id = {line.id}", "finalized invoice"),
        (f"UPDATE invoice_lines SET invoice_id = {draft.id} WHERE id = {line.id}", "finalized invoice"),
        (f"DELETE FROM invoice_lines WHERE id = {line.id}", "finalized invoice"),
        (f"DELETE FROM invoice_lines WHERE invoice_id = {fin.id}", "finalized invoice"),
        ("INSERT INTO invoice_lines (invoice_id, line_no, kind, description, quantity, unit, amount, currency, "
         f"created_at) VALUES ({fin.id}, 99, 'adjustment', 'x', '1', 'unit', '1', 'EUR', CURRENT_TIMESTAMP)",
         "finalized invoice"),
        (f"UPDATE billing_cycles SET status = 'open' WHERE id = {cyc.id}", "cycle is finalized"),
        (f"DELETE FROM data_files WHERE cycle_id = {cyc.id}", "finalized billing cycle"),
        (f"UPDATE data_files SET sha256 = 'x' WHERE cycle_id = {cyc.id}", "finalized billing cycle"),
        ("UPDATE cycle_events SET message = 'x'", "append-only"),
        ("DELETE FROM audit_log", "append-only"),
        ("UPDATE intake_batches SET read_count = read_count", "immutable"),
    ]
    if store.is_postgres:
        refused += [("TRUNCATE invoice_lines, invoices CASCADE", "cannot be truncated")]
    for sql, message in refused:
        with pytest.raises(sa.exc.IntegrityError, match=message), store.engine.begin() as c:
            c.execute(sa.text(sql))
    assert snapshot(store, cyc.id)["invoices"][0][3] == fin.subtotal
    assert [ln.amount for ln in store.invoice_lines(fin.id)][0] == line.amount
    # drafts stay editable (and deletable) by the billing steps
    with store.engine.begin() as c:
        c.execute(sa.text(f"UPDATE invoice_lines SET description = 'edited' WHERE invoice_id = {draft.id}"))
        c.execute(sa.text(f"UPDATE invoices SET tax_amount = '0.5' WHERE id = {draft.id}"))
    assert store.invoice_lines(draft.id)[0].description == "edited"


def _line_values(invoice_id: int, line_no: int) -> str:
    return (f"({invoice_id}, {line_no}, 'adjustment', 'bulk', '1', 'unit', '1', 'EUR', CURRENT_TIMESTAMP)")


def _bulk_refusals(store, fin_id: int, draft_id: int, cycle_id: int, draft_cycle_id: int, batch_id: int) -> None:
    """Inserts of several rows at once into a finalized invoice or cycle: refused as a whole."""
    head = "INSERT INTO invoice_lines (invoice_id, line_no, kind, description, quantity, unit, amount, currency, created_at) "
    lines_before = {i: len(store.invoice_lines(i)) for i in (fin_id, draft_id)}
    refused = [
        head + "VALUES " + ", ".join(_line_values(fin_id, n) for n in (97, 98, 99)),
        # one line of a draft among them: the statement is refused, the draft's line too
        head + "VALUES " + ", ".join([_line_values(draft_id, 97), _line_values(fin_id, 98), _line_values(draft_id, 99)]),
        head + f"SELECT invoice_id, line_no + 1000, kind, description, quantity, unit, amount, currency, created_at "
               f"FROM invoice_lines WHERE invoice_id = {fin_id}",
    ]
    for sql in refused:
        with pytest.raises(sa.exc.IntegrityError, match="finalized invoice"), store.engine.begin() as c:
            c.execute(sa.text(sql))
    # the same through the store's own bulk path (an executemany of the table's INSERT)
    t = datetime.now(UTC)
    rows = [dict(invoice_id=fin_id, line_no=n, kind="adjustment", description="bulk", quantity=Decimal(1), unit="unit",
                 amount=Decimal(1), currency="EUR", created_at=t) for n in (97, 98)]
    with pytest.raises(sa.exc.IntegrityError, match="finalized invoice"), store.engine.begin() as c:
        c.execute(M.InvoiceLine.__table__.insert(), rows)
    inputs = (f"INSERT INTO cycle_inputs (cycle_id, batch_id, records) SELECT {cycle_id}, id, 1 FROM intake_batches "
              f"WHERE id = {batch_id} UNION ALL SELECT {draft_cycle_id}, id, 1 FROM intake_batches WHERE id = {batch_id}")
    with pytest.raises(sa.exc.IntegrityError, match="finalized billing cycle"), store.engine.begin() as c:
        c.execute(sa.text(inputs))
    assert {i: len(store.invoice_lines(i)) for i in (fin_id, draft_id)} == lines_before
    # a bulk insert into drafts only is taken
    with store.engine.begin() as c:
        c.execute(sa.text(head + "VALUES " + ", ".join(_line_values(draft_id, n) for n in (97, 98))))
    assert len(store.invoice_lines(draft_id)) == lines_before[draft_id] + 2
    with store.engine.begin() as c:
        c.execute(sa.text(f"DELETE FROM invoice_lines WHERE invoice_id = {draft_id} AND line_no IN (97, 98)"))


def test_bulk_inserts_into_a_finalized_invoice_or_cycle_are_refused(store, tmp_path):
    plan, fin, draft = finalized_and_draft(store, tmp_path)
    cyc = store.cycle("ORFR", "2026-03")
    # a batch the finalized cycle did not read (an input row of it would be new, not a duplicate)
    store.ingest(write_csv(tmp_path / "in" / "again.csv", march_traffic(3)), None, plan)
    with store.session() as s:
        read = set(s.scalars(sa.select(M.CycleInput.batch_id).where(M.CycleInput.cycle_id == cyc.id)))
        batch_id = max(set(s.scalars(sa.select(M.IntakeBatch.id))) - read)
    _bulk_refusals(store, fin.id, draft.id, cyc.id, draft.cycle_id, batch_id)
    # 0008's downgrade gives back 0007's row triggers, which refuse the same
    with store.engine.begin() as conn:
        command.downgrade(_migrations_config(conn), "0007")
    assert store.revision() == "0007"
    _bulk_refusals(store, fin.id, draft.id, cyc.id, draft.cycle_id, batch_id)
    store.upgrade()
    assert store.revision() == head_revision()
    _bulk_refusals(store, fin.id, draft.id, cyc.id, draft.cycle_id, batch_id)


# --------------------------------------------------------------------------- concurrency


@pytest.mark.postgres
def test_concurrent_cycle_start_on_postgres(pg_url, tmp_path, monkeypatch):
    data = tmp_path / "data"
    a, b = open_store(pg_url, data_dir=data), open_store(pg_url, data_dir=data)
    try:
        plan, _ = load_and_ingest(a, tmp_path)
        inside, go_on = threading.Event(), threading.Event()
        real = __import__("icdsl.billing.store", fromlist=["checkpoint"]).checkpoint

        def hold(at: str) -> None:
            if at == "cycle:locked" and threading.current_thread().name == "first":
                inside.set()
                assert go_on.wait(30)
            real(at)

        monkeypatch.setattr("icdsl.billing.store.checkpoint", hold)
        monkeypatch.setattr("icdsl.billing.base.checkpoint", hold)  # where the store's parts call it
        results: dict[str, object] = {}

        def run(name: str, store) -> None:
            try:
                results[name] = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
            except Exception as e:  # noqa: BLE001 - collected for the assertions
                results[name] = e

        first = threading.Thread(target=run, args=("first", a), name="first")
        first.start()
        assert inside.wait(30)
        second = threading.Thread(target=run, args=("second", b), name="second")
        second.start()
        second.join(30)
        assert not second.is_alive(), "the second run waited instead of failing"
        go_on.set()
        first.join(60)
        assert isinstance(results["second"], CycleBusy)
        assert "being run by another session" in str(results["second"])
        assert results["first"].status == "invoiced"
        assert count(a, M.BillingCycle) == 1 and count(a, M.Invoice) == 1
        # once the first has committed, a new start finds the cycle done
        assert b.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT).already
    finally:
        a.close()
        b.close()


def test_sqlite_readers_do_not_wait_for_a_writer(tmp_path):
    import time

    store = open_store(f"sqlite:///{tmp_path / 'r.db'}", data_dir=tmp_path / "data")
    try:
        with store.engine.begin() as writer:  # BEGIN IMMEDIATE: holds the write lock
            writer.execute(sa.text("INSERT INTO store_meta (key, value) VALUES ('k', 'v')"))
            t0 = time.perf_counter()
            assert store.cycles() == [] and store.batches() == []
            assert time.perf_counter() - t0 < 5
    finally:
        store.close()


def test_a_changed_data_file_is_found_even_after_it_was_verified(tmp_path):
    """verify() hashes a file once per process, but a file changed since (same size) is hashed
    again and refused."""
    import os

    from icdsl.billing.files import DataDir, sha256_file

    data = DataDir(tmp_path)
    f = tmp_path / "records.parquet"
    f.write_bytes(b"0123456789")
    sha = sha256_file(f)
    data.verify("records.parquet", sha)
    data.verify("records.parquet", sha)  # the second time from what the process knows
    f.write_bytes(b"0123456780")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000))
    with pytest.raises(OSError, match="has changed"):
        data.verify("records.parquet", sha)
    f.unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        data.verify("records.parquet", sha)
