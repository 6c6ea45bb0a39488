# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Tamper evidence (icdsl.billing.seal, migration 0007): finalizing seals every document and
chains the seals; `icdsl verify` finds a document changed behind the store's back (its triggers
dropped) or a broken chain; `invoice show` and `invoice export` refuse such a document; and the
database refuses changes to every row a finalized document depends on. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command
from helpers import GOLDEN, compare_golden
from test_billing_charges import setup as charges_setup  # its month has every kind of document
from test_billing_cycles import setup_brk  # its month converts with FX and nets a statement
from test_billing_store import (  # noqa: F401 - the fixtures
    ACCEPT,
    PARTNER,
    V1_OPEN,
    _pg_drop,
    _pg_schema_url,
    db_url,
    load_and_ingest,
    make_plan,
    march_traffic,
    pg_url,
    store,
    write_csv,
)
from typer.testing import CliRunner

import icdsl.billing.base as billing_base
import icdsl.billing.cycles as billing_cycles
import icdsl.billing.store as billing_store
from icdsl.billing import models as M
from icdsl.billing import seal
from icdsl.billing.seal import GENESIS, SealBroken
from icdsl.billing.store import _migrations_config, open_store
from icdsl.cli.main import app

GOLDEN_SEAL = GOLDEN / "seal"


@pytest.fixture
def fixed_clock(monkeypatch):
    """Finalization at a fixed instant: the seals are then the same on every run and back end."""
    monkeypatch.setattr(billing_base, "now", lambda: datetime(2026, 4, 2, 12, 0, tzinfo=UTC))


def finalized_store(store, tmp_path):
    """March finalized (one invoice), April finalized (no traffic: one invoice of nothing)."""
    plan, _ = load_and_ingest(store, tmp_path)
    store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    store.finalize_cycle("ORFR", "2026-03", issue_date=date(2026, 4, 2))
    store.run_cycle("ORFR", "2026-04", plan, accept=ACCEPT)
    store.finalize_cycle("ORFR", "2026-04", issue_date=date(2026, 5, 2))
    return plan


def seals(store) -> list[M.DocumentSeal]:
    with store.reading() as s:
        return list(s.scalars(sa.select(M.DocumentSeal).order_by(M.DocumentSeal.position)))


def drop_triggers(store):
    """What an owner of the database can do: SQLite's triggers dropped; PostgreSQL's skipped by
    the session (``session_replication_role = replica``), returned as the connection to use."""
    conn = store.engine.connect()
    if store.is_postgres:
        conn.execute(sa.text("SET session_replication_role = replica"))
    else:
        for (name,) in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all():
            conn.execute(sa.text(f'DROP TRIGGER "{name}"'))
    conn.commit()
    return conn


def tamper(store, *statements: str, **params) -> None:
    conn = drop_triggers(store)
    try:
        for sql in statements:
            conn.execute(sa.text(sql), params)
        conn.commit()
    finally:
        conn.close()


def cli(store_url: str, data, *args: str, code: int) -> str:
    res = CliRunner().invoke(app, [*args, "--db", store_url, "--data", str(data)])
    assert res.exit_code == code, (res.output, res.exception)
    assert "Traceback" not in res.output
    return res.output


def hashes_hidden(text: str) -> str:
    """CLI output without the hashes (they follow the Parquet writer's bytes)."""
    return re.sub(r"[0-9a-f]{64}", "<sha256>", re.sub(r"\b[0-9a-f]{16}\.\.\.", "<sha256>...", text))


# --------------------------------------------------------------------------- sealing


def test_finalizing_seals_every_document_in_a_chain(store, tmp_path):
    finalized_store(store, tmp_path)
    rows = seals(store)
    assert [(r.position, r.kind, r.number) for r in rows] == [
        (1, "invoice", "INV-2026-000001"), (2, "invoice", "INV-2026-000002")]
    assert rows[0].previous == GENESIS and rows[1].previous == rows[0].seal
    for r in rows:
        assert seal.sha256(r.content) == r.content_hash
        assert seal.seal_of(r.position, r.kind, r.number, r.content_hash, r.previous) == r.seal
    content = json.loads(rows[0].content)
    # what is covered: header, lines with amounts, rates, quantities; the agreement; the files
    assert content["number"] == "INV-2026-000001" and content["subtotal"] == "4.72000000"
    assert content["issue_date"] == "2026-04-02" and content["status"] == "finalized"
    assert sum(Decimal(ln["amount"]) for ln in content["lines"]) == Decimal("4.72")
    for ln in content["lines"]:  # fixed scales: money 8 decimals, rates 12
        assert re.fullmatch(r"-?\d+\.\d{8}", ln["amount"]) and re.fullmatch(r"-?\d+\.\d{8}", ln["quantity"])
        assert ln["rate"] is None or re.fullmatch(r"-?\d+\.\d{12}", ln["rate"])
    assert [a["name"] for a in content["agreements"]] == ["ORFR voice"]
    kinds = sorted(f["kind"] for f in content["cycle"]["files"])
    assert kinds == ["rated", "rating_rejects", "record_charges"]
    intake = content["cycle"]["inputs"][0]
    assert intake["records"] == 61 and {f["kind"] for f in intake["files"]} == {"intake_records", "intake_rejects"}
    v = store.verify()
    assert v.ok and (v.seals, v.documents, v.head_position, v.head) == (2, 2, 2, rows[1].seal)
    assert store.document("INV-2026-000001")["number"] == "INV-2026-000001"
    # the head recorded elsewhere is still in the chain
    assert store.verify(head=rows[1].seal).ok and store.verify(head=rows[0].seal.upper()).ok


def test_the_canonical_form_is_documented_and_stable():
    assert seal.money(Decimal("4.7")) == "4.70000000" and seal.rate(Decimal("0.02")) == "0.020000000000"
    assert seal.instant(datetime(2026, 3, 1, 1, 2, 3, tzinfo=UTC)) == "2026-03-01T01:02:03.000000Z"
    assert seal.canonical({"b": [1, None], "a": "é"}) == '{"a":"\\u00e9","b":[1,null]}'
    assert GENESIS == "0b1de7463446c95d2951adf83a3950fd5f1c545c6a443a5ab425896967cf9859"  # the value docs/billing.md gives


@pytest.mark.postgres
def test_the_same_documents_have_the_same_seals_on_sqlite_and_postgresql(tmp_path, fixed_clock, monkeypatch):
    got = {}
    schema, pg = _pg_schema_url()
    try:
        for name, url in (("sqlite", f"sqlite:///{tmp_path / 'lite' / 'icdsl.db'}"), ("postgres", pg)):
            folder = tmp_path / name
            folder.mkdir(exist_ok=True)
            monkeypatch.chdir(folder)
            store = open_store(url, data_dir=folder / "data")
            try:
                finalized_store(store, folder)
                got[name] = [(r.content, r.content_hash, r.seal) for r in seals(store)]
            finally:
                store.close()
    finally:
        _pg_drop(schema)
    assert got["sqlite"] == got["postgres"] and len(got["sqlite"]) == 2


def test_the_canonical_contents_are_the_same_bytes_as_when_they_were_sealed(tmp_path, fixed_clock, monkeypatch):
    """Every kind of document (invoices with every kind of line, FX-converted lines, settlement and
    revenue-share statements, two cycles of a partner) in the canonical form of version 1: the
    golden was written by the first (per-document) reader, so a seal made then still verifies.
    The data files' hashes are hidden (they follow the Parquet writer's bytes)."""
    out = []
    for name in ("charges", "brk", "orfr"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        store = open_store(f"sqlite:///{folder / 'db' / 'icdsl.db'}", data_dir=folder / "data")
        try:
            if name == "charges":
                store.run_cycle("ACME", "2026-03", charges_setup(store, folder))
                store.finalize_cycle("ACME", "2026-03")
            elif name == "brk":
                store.run_cycle("BRK", "2026-03", setup_brk(store, folder))
                store.finalize_cycle("BRK", "2026-03")
            else:
                finalized_store(store, folder)
            rows = seals(store)
            assert store.verify().ok
            with store.engine.connect() as c:  # one document read alone reads the same content
                for r in rows:
                    assert seal.canonical(seal.document_content(c, r.kind, r.document_id)) == r.content
            out += [f"{name} #{r.position} {r.kind} {r.number}\n{r.content}\n" for r in rows]
        finally:
            store.close()
    # file hashes and the content-addressed names made of them depend on the Parquet writer's
    # encoding, not on the canonical form this golden pins down
    masked = re.sub(r"-[0-9a-f]{16}\.parquet", "-<sha16>.parquet", re.sub(r"[0-9a-f]{64}", "<sha256>", "".join(out)))
    compare_golden(GOLDEN_SEAL / "contents.txt", masked)


def test_documents_finalized_before_the_seals_are_sealed_by_the_migration(store, tmp_path):
    finalized_store(store, tmp_path)
    rows = seals(store)
    # the documents as a store of 0006 holds them: without what later migrations added (0016: the
    # document's kind and the parties it was finalized with, dropped by the downgrade)
    with store.engine.connect() as c:
        old = seal._Reader(c, schema_0007=True).contents((r.kind, r.document_id) for r in rows)
    before = [(r.kind, r.number, seal.sha256(seal.canonical(old[r.kind, r.document_id]))) for r in rows]
    assert any(b[2] != r.content_hash for b, r in zip(before, rows, strict=True))  # 0016's columns were sealed
    with store.engine.begin() as conn:  # back to a store of 0006: no seals
        command.downgrade(_migrations_config(conn), "0006")
    assert "document_seals" not in sa.inspect(store.engine).get_table_names()
    store.upgrade()
    assert [(r.kind, r.number, r.content_hash) for r in seals(store)] == before
    assert store.verify().ok


def statements_during(engine, monkeypatch, target, name):
    """Wrap ``target.name`` and count the SQL statements run on ``engine`` during its calls."""
    counts = []
    inner = getattr(target, name)

    def counted(*args, **kwargs):
        n = [0]

        def one(*_a):
            n[0] += 1

        sa.event.listen(engine, "before_cursor_execute", one)
        try:
            return inner(*args, **kwargs)
        finally:
            sa.event.remove(engine, "before_cursor_execute", one)
            counts.append(n[0])

    monkeypatch.setattr(target, name, counted)
    return counts


def test_sealing_and_verifying_read_by_table_not_by_document(store, tmp_path, monkeypatch):
    """A few statements per cycle sealed and per verification, however many documents: a cycle
    of 6 documents (invoices, a settlement statement, revenue-share statements) is sealed in as many
    statements as a cycle of one."""
    counts = statements_during(store.engine, monkeypatch, billing_cycles, "seal_cycle")  # finalize_cycle's name
    plan = charges_setup(store, tmp_path)
    store.run_cycle("ACME", "2026-03", plan)
    store.finalize_cycle("ACME", "2026-03")
    rows = seals(store)
    assert len(rows) >= 6 and {r.kind for r in rows} == {"invoice", "settlement", "share"}
    # the lock (PostgreSQL), the documents and the head, invoices with lines and charge lines,
    # settlements, shares, the cycle with its inputs and files, agreements, FX rates, one insert
    assert counts == [counts[0]] and counts[0] <= 9, counts
    checked = statements_during(store.engine, monkeypatch, billing_store, "verify_seals")  # Store.verify's name
    assert store.verify().ok and checked[0] <= 10, checked  # one page, then an empty one


def test_pages_and_chunks_smaller_than_the_documents_read_the_same(store, tmp_path, monkeypatch, fixed_clock):
    """Sealing, verifying and checking by pages of 2 documents (IN lists of 2 ids): the same seals
    as one page, and a document changed on a later page is still named."""
    plan = charges_setup(store, tmp_path)
    store.run_cycle("ACME", "2026-03", plan)
    monkeypatch.setattr(seal, "_CHUNK", 2)
    store.finalize_cycle("ACME", "2026-03")
    rows = seals(store)
    assert len(rows) > 4
    with store.engine.connect() as c:
        for r in rows:
            assert seal.canonical(seal.document_content(c, r.kind, r.document_id)) == r.content
    assert store.verify().ok
    store.cycle_documents(rows[0].cycle_id)  # checked, all at once: they hold
    last = rows[-1]
    table = {"invoice": "invoices", "settlement": "settlement_statements", "share": "share_statements"}[last.kind]
    tamper(store, f"UPDATE {table} SET finalized_at = '2030-01-01 00:00:00' WHERE id = {last.document_id}")
    assert [(p.what, p.document) for p in store.verify().problems] == [("content", last.number)]
    with pytest.raises(SealBroken, match=f"{last.number} fails its seal"):
        store.cycle_documents(rows[0].cycle_id)


# --------------------------------------------------------------------------- tampering


def test_a_line_changed_behind_the_stores_back_is_named_and_refused(store, tmp_path, db_url):
    finalized_store(store, tmp_path)
    data = tmp_path / "data"
    out = cli(db_url, data, "verify", code=0)
    compare_golden(GOLDEN_SEAL / "verify-ok.txt", hashes_hidden(out))
    inv = next(i for i in store.invoices() if i.number == "INV-2026-000001")
    line = store.invoice_lines(inv.id)[1]
    tamper(store, f"UPDATE invoice_lines SET amount = '0.01' WHERE id = {line.id}")
    v = store.verify()
    assert not v.ok and [(p.what, p.document) for p in v.problems] == [("content", "INV-2026-000001")]
    assert "lines[#2].amount: 1.56000000 -> 0.01000000" in v.problems[0].detail
    out = cli(db_url, data, "verify", code=1)
    compare_golden(GOLDEN_SEAL / "verify-content.txt", hashes_hidden(out))
    out = cli(db_url, data, "invoice", "show", "INV-2026-000001", code=1)
    compare_golden(GOLDEN_SEAL / "show-refused.txt", out)
    for args in (("INV-2026-000001",), ("--cycle", "ORFR", "2026-03")):
        out = cli(db_url, data, "invoice", "export", *args, "--format", "csv", "--out", str(tmp_path / "out"), code=1)
        assert out == (GOLDEN_SEAL / "show-refused.txt").read_text(encoding="utf-8")
    assert not (tmp_path / "out").exists()
    # the other document still holds and is shown
    assert "INV-2026-000002" in cli(db_url, data, "invoice", "show", "INV-2026-000002", code=0)
    with pytest.raises(SealBroken, match="INV-2026-000001 fails its seal"):
        store.document("INV-2026-000001")


def test_a_value_that_can_no_longer_be_read_is_named_not_a_traceback(tmp_path):
    """SQLite stores money as text: a hand-written value that is not a number at all."""
    store = open_store(f"sqlite:///{tmp_path / 'db' / 'icdsl.db'}", data_dir=tmp_path / "data")
    try:
        finalized_store(store, tmp_path)
        tamper(store, "UPDATE invoice_lines SET amount = 'abc' WHERE line_no = 1 AND invoice_id = "
                      "(SELECT id FROM invoices WHERE number = 'INV-2026-000001')")
        v = store.verify()
        assert [(p.what, p.document) for p in v.problems] == [("content", "INV-2026-000001")]
        assert "can no longer be read" in v.problems[0].detail
        out = cli(f"sqlite:///{tmp_path / 'db' / 'icdsl.db'}", tmp_path / "data", "invoice", "show",
                  "INV-2026-000001", code=1)
        assert out.startswith("error: INV-2026-000001 cannot be read from the store") and "icdsl verify" in out
    finally:
        store.close()


@pytest.mark.parametrize("change", ["header", "fx", "cycle_input", "intake_file", "agreement", "status"])
def test_every_part_of_the_content_is_covered(store, tmp_path, change):
    finalized_store(store, tmp_path)
    inv = next(i for i in store.invoices() if i.number == "INV-2026-000001")
    cyc = store.cycle("ORFR", "2026-03")
    sql = {
        "header": f"UPDATE invoices SET due_date = '2027-01-01' WHERE id = {inv.id}",
        "fx": f"UPDATE invoices SET fx_rate_id = (SELECT MAX(id) FROM fx_rates) WHERE id = {inv.id}",
        "cycle_input": f"UPDATE cycle_inputs SET records = 1 WHERE cycle_id = {cyc.id}",
        "intake_file": "UPDATE data_files SET sha256 = 'x' WHERE kind = 'intake_records'",
        "agreement": "UPDATE agreement_versions SET effective_to = '2026-03-15'",
        "status": f"UPDATE invoices SET status = 'draft' WHERE id = {inv.id}",
    }[change]
    statements = [sql]
    if change == "fx":
        statements.insert(0, "INSERT INTO fx_rates (source, base, quote, rate, effective_from, origin, loaded_at) "
                             "VALUES ('ecb', 'EUR', 'USD', '1.1', '2026-01-01', 'manual', '2026-01-01 00:00:00')")
    tamper(store, *statements)
    v = store.verify()
    assert ("content", "INV-2026-000001") in [(p.what, p.document) for p in v.problems]
    with pytest.raises(SealBroken, match="INV-2026-000001 fails its seal"):
        store.document("INV-2026-000001")


def test_a_broken_chain_is_named(store, tmp_path, db_url):
    finalized_store(store, tmp_path)
    first, second = seals(store)
    data = tmp_path / "data"
    tamper(store, "DELETE FROM document_seals WHERE position = 1")
    v = store.verify()
    assert sorted((p.what, p.document) for p in v.problems) == [
        ("link", "INV-2026-000002"), ("unsealed", "INV-2026-000001")]
    out = cli(db_url, data, "verify", code=1)
    compare_golden(GOLDEN_SEAL / "verify-chain.txt", hashes_hidden(out))
    with pytest.raises(SealBroken, match="INV-2026-000001 fails its seal: finalized, but it has no seal"):
        store.document("INV-2026-000001")
    with pytest.raises(SealBroken, match="INV-2026-000002 fails its seal: the seal before it \\(#1\\) is missing"):
        store.document("INV-2026-000002")


def test_the_last_seal_removed_with_its_documents_finalization_is_named(store, tmp_path):
    finalized_store(store, tmp_path)
    tamper(store, "DELETE FROM document_seals WHERE position = 2",
           "UPDATE invoices SET status = 'draft' WHERE number = 'INV-2026-000002'")
    v = store.verify()
    assert [(p.what, p.document) for p in v.problems] == [("unsealed", "INV-2026-000002")]
    assert "draft but numbered or of a finalized cycle" in v.problems[0].detail
    with pytest.raises(SealBroken, match="INV-2026-000002 fails its seal"):
        store.document("INV-2026-000002")


def test_an_altered_seal_is_named(store, tmp_path):
    finalized_store(store, tmp_path)
    tamper(store, f"UPDATE document_seals SET previous = '{'0' * 64}' WHERE position = 2")
    v = store.verify()
    assert sorted((p.what, p.document) for p in v.problems) == [
        ("link", "INV-2026-000002"), ("seal", "INV-2026-000002")]


def test_seals_rewritten_consistently_are_found_only_against_a_recorded_head(store, tmp_path, db_url):
    finalized_store(store, tmp_path)
    first, second = seals(store)
    recorded = store.verify().head
    with store.reading() as s:
        inv = s.scalars(sa.select(M.Invoice.id).where(M.Invoice.number == "INV-2026-000002")).one()
    tamper(store, f"UPDATE invoices SET issue_date = '2026-05-03' WHERE id = {inv}")
    assert [p.what for p in store.verify().problems] == ["content"]
    # the owner recomputes the last seal over the changed content: the chain holds again...
    with store.engine.connect() as c:
        new = seal.canonical(seal.document_content(c, "invoice", inv))
    h = seal.sha256(new)
    tamper(store, "UPDATE document_seals SET content = :c, content_hash = :h, seal = :s WHERE position = 2",
           c=new, h=h, s=seal.seal_of(2, "invoice", "INV-2026-000002", h, first.seal))
    assert store.verify().ok
    # ...and only the head recorded elsewhere tells
    v = store.verify(head=recorded)
    assert [(p.what, p.document) for p in v.problems] == [("anchor", "the chain")]
    out = cli(db_url, tmp_path / "data", "verify", "--head", recorded, code=1)
    compare_golden(GOLDEN_SEAL / "verify-anchor.txt", hashes_hidden(out))


# --------------------------------------------------------------------------- the database refuses


def test_every_row_a_finalized_document_depends_on_refuses_change(store, tmp_path):
    with store.session() as s:  # in force in March, loaded before it was finalized
        s.add(M.FxRate(source="ecb", base="EUR", quote="USD", rate=Decimal("1.1"), effective_from=date(2026, 1, 1),
                       origin="manual", loaded_at=datetime.now(UTC)))
    finalized_store(store, tmp_path)
    cyc = store.cycle("ORFR", "2026-03")
    with store.session() as s:  # in force after every finalized cycle
        s.add(M.FxRate(source="ecb", base="EUR", quote="USD", rate=Decimal("1.1"), effective_from=date(2027, 1, 1),
                       origin="manual", loaded_at=datetime.now(UTC)))
    with store.reading() as s:
        used = s.scalars(sa.select(M.FxRate.id).where(M.FxRate.effective_from == date(2026, 1, 1))).one()
        later = s.scalars(sa.select(M.FxRate.id).where(M.FxRate.effective_from == date(2027, 1, 1))).one()
        batch = s.scalars(sa.select(M.IntakeBatch.id)).one()
    refused = [
        (f"UPDATE fx_rates SET rate = '1.2' WHERE id = {used}", "FX rate was in force during a finalized"),
        (f"UPDATE fx_rates SET effective_from = '2026-01-02' WHERE id = {used}", "in force during a finalized"),
        (f"DELETE FROM fx_rates WHERE id = {used}", "in force during a finalized"),
        ("UPDATE number_sequences SET last = 0", "never goes back"),
        ("UPDATE number_sequences SET last = last - 1", "never goes back"),
        ("UPDATE number_sequences SET name = 'x'", "never goes back"),
        ("DELETE FROM number_sequences", "never goes back"),
        (f"DELETE FROM cycle_inputs WHERE cycle_id = {cyc.id}", "finalized billing cycle"),
        (f"UPDATE cycle_inputs SET records = 1 WHERE cycle_id = {cyc.id}", "finalized billing cycle"),
        (f"INSERT INTO cycle_inputs (cycle_id, batch_id, records) VALUES ({cyc.id}, {batch}, 1)",
         "finalized billing cycle"),
        ("UPDATE agreement_versions SET effective_to = '2026-03-15'", "immutable once loaded"),
        ("DELETE FROM agreement_versions", "immutable once loaded"),
        ("UPDATE data_files SET sha256 = 'x' WHERE kind = 'intake_records'", "read by a finalized"),
        ("DELETE FROM data_files WHERE kind = 'intake_rejects'", "read by a finalized"),
        (f"UPDATE data_files SET sha256 = 'x' WHERE cycle_id = {cyc.id}", "finalized billing cycle"),
        (f"DELETE FROM intake_batches WHERE id = {batch}", "read by a finalized"),
        ("UPDATE intake_batches SET sha256 = 'x'", "immutable"),
        ("UPDATE document_seals SET seal = 'x'", "seals are immutable"),
        ("DELETE FROM document_seals", "seals are immutable"),
        ("UPDATE invoice_lines SET amount = '0.01'", "finalized invoice"),
        ("INSERT INTO fx_rates (source, base, quote, rate, effective_from, origin, loaded_at) "
         "VALUES ('ecb', 'EUR', 'USD', '1.2', '2026-04-15', 'manual', '2026-06-01 00:00:00')",
         "take effect during a finalized billing cycle"),
    ]
    if store.is_postgres:
        refused += [(f"TRUNCATE {t} CASCADE", "cannot be truncated")
                    for t in ("document_seals", "number_sequences", "cycle_inputs", "fx_rates")]
    for sql, message in refused:
        with pytest.raises(sa.exc.IntegrityError, match=message), store.engine.begin() as c:
            c.execute(sa.text(sql))
    # what no finalized document depends on stays free: a rate first in force after them, a
    # sequence going forward
    with store.engine.begin() as c:
        c.execute(sa.text(f"UPDATE fx_rates SET rate = '1.3' WHERE id = {later}"))
        c.execute(sa.text("UPDATE number_sequences SET last = last + 1 WHERE name = 'invoice-2026'"))
    assert store.verify().ok


def test_a_sequence_reset_is_refused_and_the_next_finalize_numbers_on(store, tmp_path):
    plan, _ = load_and_ingest(store, tmp_path)
    store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    store.finalize_cycle("ORFR", "2026-03", issue_date=date(2026, 4, 2))
    with pytest.raises(sa.exc.IntegrityError, match="never goes back"), store.engine.begin() as c:
        c.execute(sa.text("UPDATE number_sequences SET last = 0"))
    store.run_cycle("ORFR", "2026-04", plan, accept=ACCEPT)
    report = store.finalize_cycle("ORFR", "2026-04", issue_date=date(2026, 5, 2))
    assert "INV-2026-000002" in str(report)
    assert store.verify().ok


# --------------------------------------------------------------------------- every kind of document


def test_statements_and_revenue_shares_are_sealed_and_checked_too(store, tmp_path):
    plan = charges_setup(store, tmp_path)
    rep = store.run_cycle("ACME", "2026-03", plan)
    assert rep.status == "invoiced", str(rep)
    store.finalize_cycle("ACME", "2026-03")
    rows = seals(store)
    assert sorted({r.kind for r in rows}) == ["invoice", "settlement", "share"]
    assert [r.position for r in rows] == list(range(1, len(rows) + 1))
    assert store.verify().ok
    stm = next(r for r in rows if r.kind == "settlement")
    shr = next(r for r in rows if r.kind == "share")
    assert json.loads(stm.content)["details"]["lines"]  # the statement's lines, as stored
    tamper(store, f"UPDATE settlement_statements SET net = net + 1 WHERE id = {stm.document_id}",
           f"UPDATE share_statements SET finalized_at = '2030-01-01 00:00:00' WHERE id = {shr.document_id}")
    v = store.verify()
    assert sorted((p.what, p.document) for p in v.problems) == [("content", shr.number), ("content", stm.number)]
    for number in (stm.number, shr.number):
        with pytest.raises(SealBroken, match=f"{number} fails its seal"):
            store.document(number)
    with pytest.raises(SealBroken):
        store.cycle_documents(rep.cycle_id)


@pytest.mark.postgres
def test_finalizations_at_the_same_time_append_to_one_chain_on_postgresql(pg_url, tmp_path, monkeypatch):
    """Two partners finalized by two sessions at once: the second waits for the chain (an
    advisory lock) instead of forking it."""
    rules = PARTNER + V1_OPEN
    rules += (PARTNER + V1_OPEN).replace("ORFR", "ORFS").replace("Orange France", "Orange Sud")
    plan, program = make_plan(tmp_path, rules)
    rows = march_traffic() + [(r[0] + "S", "ORFS", *r[2:]) for r in march_traffic()]
    store = open_store(pg_url, data_dir=tmp_path / "data")
    try:
        store.load_plan(plan, program)
        store.ingest(write_csv(tmp_path / "in" / "march.csv", rows), None, plan)
        for code in ("ORFR", "ORFS"):
            assert store.run_cycle(code, "2026-03", plan, accept=ACCEPT).status == "invoiced"
        both_in = threading.Barrier(2, timeout=30)

        def hold(stage):  # each finalization holds its transaction open once it sealed
            if stage == "finalize:before_commit":
                time.sleep(0.5)

        monkeypatch.setattr(billing_base, "checkpoint", hold)
        errors = []

        def finalize(code):
            try:
                both_in.wait()
                # invoices of two years: two number sequences, so nothing but the chain is shared
                store.finalize_cycle(code, "2026-03", issue_date=date(2026 if code == "ORFR" else 2027, 4, 2))
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)

        threads = [threading.Thread(target=finalize, args=(code,)) for code in ("ORFR", "ORFS")]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        chain = seals(store)
        assert [r.position for r in chain] == [1, 2] and chain[1].previous == chain[0].seal
        assert store.verify().ok
    finally:
        store.close()


def test_a_partner_renamed_after_finalizing_keeps_its_name_on_issued_invoices(store, tmp_path):
    finalized_store(store, tmp_path)
    number = store.cycle_documents(store.cycle("ORFR", "2026-03").id)[0]["number"]
    with store.engine.begin() as c:  # the partner's name changes (a later load of its rules)
        c.execute(sa.text("UPDATE partners SET name = 'Orange Wholesale France' WHERE code = 'ORFR'"))
    doc = store.document(number)
    assert (doc["partner_code"], doc["partner_name"]) == ("ORFR", "Orange France")
    assert store.verify().ok


def test_loading_a_rate_that_would_take_effect_in_a_finalized_period_is_refused(store, tmp_path):
    finalized_store(store, tmp_path)  # March and April 2026 finalized
    late, late_program = make_plan(tmp_path, "fx ecb {\n  EUR/USD 1.0850 from 2026-04-20\n}\n", "fx_late.icd")
    with pytest.raises(billing_store.FxRateConflict) as e:
        store.load_plan(late, late_program)
    assert str(e.value) == (
        "FX rate ecb EUR/USD from 2026-04-20 (fx_late.icd:2:3) would take effect during a finalized billing "
        "cycle (finalized periods run to 2026-04-30): finalized invoices keep the rates they were converted "
        "with; give the rate an effective date of 2026-05-01 or later")
    nxt, nxt_program = make_plan(tmp_path, "fx ecb {\n  EUR/USD 1.0850 from 2026-05-01\n}\n", "fx_next.icd")
    assert store.load_plan(nxt, nxt_program).fx_added == 1
    assert store.verify().ok
