"""The billing store: a database (SQLite or PostgreSQL) plus a data folder of Parquet files.

::

    store = open_store("sqlite:///icdsl.db")          # or postgresql+psycopg://..., or $ICDSL_DB
    store.load_plan(plan, program)                    # partners, agreement versions, FX rates
    store.ingest("traffic.csv", layout, plan)         # one intake batch per file (idempotent)
    store.run_cycle("ORFR", "2026-03", plan)          # open -> rated -> validated -> invoiced
    store.finalize_cycle("ORFR", "2026-03")           # invoices numbered and immutable
    store.rerate("ORFR", "2026-03-01", "2026-03-31", plan)  # corrections: adjustments on the next cycle
    store.trace(line_id)                              # invoice -> line -> agreement -> rule -> records

:func:`open_store` upgrades the schema to the newest migration shipped in the package (no
alembic.ini needed). The data folder defaults to ``icdsl-data`` next to a SQLite database file
(``$ICDSL_DATA`` or ``data_dir=`` override it; for PostgreSQL it defaults to ``./icdsl-data``).
The database and its data folder belong together: the folder carries the store's id
(``STORE_ID``) and a store refuses a folder of another store.

Transactions: every operation is one database transaction, committed only after the Parquet
files it references are durable (see :mod:`icdsl.billing.files`). On PostgreSQL, operations
that must not run twice at once take an advisory transaction lock (intake: one at a time;
cycles: one per partner, failing fast with :class:`CycleBusy`); on SQLite every transaction
starts with ``BEGIN IMMEDIATE`` (one writer at a time, the others wait up to 60 s).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from icdsl.billing import models as M
from icdsl.billing import partner_invoices

# what the store's parts share lives below it, in billing.base; re-exported for the store's callers
from icdsl.billing.base import actor as _actor
from icdsl.billing.base import canonical_hash as _canonical_hash
from icdsl.billing.base import checkpoint, now, partner_decl, partner_decl_hash, plan_hash
from icdsl.billing.base import jsonable as _jsonable
from icdsl.billing.conflicts import (
    REVIEW_SHOWN,
    conflict_counts,
    conflict_rows,
    conflict_summary,
    review_text,
)
from icdsl.billing.corrections import rerate
from icdsl.billing.cycles import finalize_cycle, latest_findings, resolve_period, run_cycle, write_put_off
from icdsl.billing.disputes import attach_positions, evidence_files, evidence_paths
from icdsl.billing.documents import cycle_documents, find_document
from icdsl.billing.errors import (
    AgreementVersionConflict,
    FxRateConflict,
    RetroactiveChange,
    StoreError,
)
from icdsl.billing.files import STORE_ID_FILE, DataDir, sha256_file
from icdsl.billing.intake import ingest, ingest_files
from icdsl.billing.inventory import import_inventory
from icdsl.billing.late import pending as late_pending
from icdsl.billing.progressive import raise_interim
from icdsl.billing.seal import UNREADABLE, Verification, check_documents, unreadable
from icdsl.billing.seal import verify as verify_seals
from icdsl.billing.trace import trace_line
from icdsl.plan.model import Agreement, Plan, RecordLayout
from icdsl.rating.rejects import REJECTS_SCHEMA

DEFAULT_URL = "sqlite:///icdsl.db"
DATA_FOLDER = "icdsl-data"
SQLITE_BUSY_S = 60


def default_url() -> str:
    return os.environ.get("ICDSL_DB") or DEFAULT_URL


def normalize_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` use psycopg 3; anything else is kept."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _lock_key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def agreement_text(a: Agreement, texts: dict[str, str]) -> str:
    """The agreement's own source text: the lines of its span (what its source_hash covers)."""
    lines = texts.get(a.source_file, "").splitlines()
    return "\n".join(lines[a.span.line - 1 : a.span.end_line]) if a.span.line else ""


def agreement_decks(a: Agreement) -> list[list[str]]:
    decks = []
    for s in a.services:
        if s.rates is not None and s.rates.source != "inline":
            decks.append([s.rates.source, s.rates.source_hash or ""])
        fb = s.rates.fallback if s.rates is not None else None
        if fb is not None and fb.source != "inline":
            decks.append([fb.source, fb.source_hash or ""])
    return decks


_EFFECTIVE = re.compile(r"(effective\s+\d{4}-\d{2}-\d{2}\s*\.\.)\s*(?:\d{4}-\d{2}-\d{2})?\s*")


def _without_end(text: str) -> str:
    """The agreement text with the end date of its period removed (first `effective` only)."""
    return _EFFECTIVE.sub(lambda m: m.group(1) + " ", text, count=1)


def _change_advice(a: Agreement, last: M.AgreementVersion, text: str, decks: list[list[str]], plan: Plan) -> str:
    """How to write a change of a loaded version: in a new version that amends or ends it (the
    loaded text stays as it is)."""
    nxt = max(v.version for v in plan.agreements if v.name == a.name) + 1
    head = f"agreement \"{a.name}\" v{nxt} with {'any partner' if a.partner == '*' else a.partner}"
    was = f"effective {last.effective_from} .. {last.effective_to or ''}".rstrip()
    end = a.written_to
    only_end = (_without_end(last.source_text) == _without_end(text) and last.decks == decks and end is not None
                and last.effective_from == a.effective_from and (last.effective_to is None or end < last.effective_to))
    if not only_end:
        return (f"Agreement versions are immutable once loaded: put v{a.version} back as loaded and write the "
                f"change in a new version (v{nxt}) that takes over from the day it applies, whatever "
                f"v{a.version}'s end date: '{head} effective DATE .. amends v{a.version} {{ ... }}' "
                f"(or '{head} ends v{a.version} on DATE' to end it early).")
    assert end is not None
    day = end + timedelta(days=1)
    succ = next((v for v in plan.agreements if v.name == a.name and v.version > a.version and v.effective_from == day),
                None)
    if succ is not None:
        period = f"{succ.effective_from} .. {succ.written_to or ''}".rstrip()
        return (f"Agreement versions are immutable once loaded: to end v{a.version} on {end} and let "
                f"v{succ.version} take over, put v{a.version} back as loaded ('{was}') and write 'amends "
                f"v{a.version}' on v{succ.version}: 'effective {period} amends v{a.version}'.")
    return (f"Agreement versions are immutable once loaded: put the change in a new version (v{nxt}). Put "
            f"v{a.version} back as loaded ('{was}'); to end it on {end}, add '{head} ends v{a.version} on {end}'; "
            f"to change its terms from {day}, write them in '{head} effective {day} .. amends v{a.version} {{ ... }}'.")


def _finalized_over(s: Session, partner: str, first: date, last: date | None) -> list[tuple[str, M.BillingCycle]]:
    """The finalized cycles (partner code, cycle) holding a day of ``first`` .. ``last``
    (included; None: open) of ``partner`` (``*``: any partner), in date order."""
    q = (select(M.Partner.code, M.BillingCycle).join(M.Partner, M.Partner.id == M.BillingCycle.partner_id)
         .where(M.BillingCycle.status == "finalized", M.BillingCycle.local_end > first))
    if last is not None:
        q = q.where(M.BillingCycle.local_start <= last)
    if partner != "*":
        q = q.where(M.Partner.code == partner)
    return [(code, c) for code, c in s.execute(q.order_by(M.BillingCycle.local_start, M.Partner.code))]


def _refuse_retroactive(s: Session, plan: Plan, a: Agreement, first: date, last: date | None, change: str) -> None:
    """Refuse a change of the days ``a`` is in force that reaches into a finalized cycle."""
    hit = _finalized_over(s, a.partner, first, last)
    if not hit:
        return
    files = sorted({v.source_file for v in plan.agreements} | {p.span.file for p in plan.partners} - {""})
    rules = " ".join(f"--rules {f}" for f in files) or "--rules RULES"
    code, cyc = hit[0]
    end = cyc.local_end - timedelta(days=1)
    after = max(c.local_end for _, c in hit)
    upto = end if last is None else min(last, end)
    raise RetroactiveChange(
        f"{change}, but {code}'s cycle {cyc.label} ({cyc.local_start} .. {end}) is finalized and was billed "
        f"under v{a.version} on those days" + (f" (and {len(hit) - 1} more finalized cycle(s))" if len(hit) > 1 else "")
        + f": finalized cycles are never changed. To correct them, run `icdsl rerate --partner {code} --from "
        f"{first} --to {upto} {rules}`: it loads the change and bills the differences as adjustments on "
        f"the next open cycle. Or let the change start on {after}, after the last finalized day.")


def _reference_tables(a: Agreement) -> list[list[str]]:
    """The number-range tables (ranges, ported numbers) an agreement's services read: kept as
    source files (by hash) like decks, but not part of the agreement version's identity."""
    out = []
    for s in a.services:
        n = s.numbers
        if n is not None:
            out.append([n.source, n.sha256])
            if n.ported_source:
                out.append([n.ported_source, n.ported_sha256 or ""])
    return out


def _deck_texts(plan: Plan, known: set[tuple[str, str]]) -> Iterator[tuple[str, str, str]]:
    seen = set()
    for a in plan.agreements:
        for path, sha in agreement_decks(a) + _reference_tables(a):
            if not sha or (path, sha) in known or (path, sha) in seen:
                continue
            seen.add((path, sha))
            p = Path(path)
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == sha:
                yield path, sha, data.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- reports


@dataclass
class LoadReport:
    partners_added: list[str] = field(default_factory=list)
    partners_changed: list[str] = field(default_factory=list)
    agreements_added: list[str] = field(default_factory=list)
    agreements_closed: list[str] = field(default_factory=list)
    agreements_amended: list[str] = field(default_factory=list)
    agreements_unchanged: list[str] = field(default_factory=list)
    fx_added: int = 0
    sources_added: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.partners_added or self.partners_changed or self.agreements_added
                    or self.agreements_closed or self.agreements_amended or self.fx_added or self.sources_added)

    def __str__(self) -> str:
        if not self.changed:
            return f"nothing new: {len(self.agreements_unchanged)} agreement version(s) already loaded"
        parts = []
        if self.partners_added:
            parts.append(f"partners added: {', '.join(self.partners_added)}")
        if self.partners_changed:
            parts.append(f"partners changed: {', '.join(self.partners_changed)}")
        if self.agreements_added:
            parts.append(f"agreement versions added: {', '.join(self.agreements_added)}")
        if self.agreements_closed:
            parts.append(f"periods closed: {', '.join(self.agreements_closed)}")
        if self.agreements_amended:
            parts.append(f"amended: {', '.join(self.agreements_amended)}")
        if self.agreements_unchanged:
            parts.append(f"{len(self.agreements_unchanged)} unchanged")
        if self.fx_added:
            parts.append(f"{self.fx_added} FX rate(s) added")
        return "; ".join(parts)


@dataclass
class IngestReport:
    batch_id: int
    file_name: str
    sha256: str
    already_ingested: bool
    read: int
    passed: int
    rejected: int
    duplicates: int
    by_reason: dict[str, int]
    records_file: str | None = None
    rejects_file: str | None = None
    partners: dict[str, int] = field(default_factory=dict)
    unknown_partners: list[str] = field(default_factory=list)
    ingested_at: datetime | None = None
    late: dict[str, int] = field(default_factory=dict)  # "PARTNER PERIOD" of a finalized cycle -> records
    file_format: str = ""  # csv, parquet, or the reader's name (asterisk_csv, ...)
    conflicts: list[Any] = field(default_factory=list)  # intake_conflicts rows of kind conflict (a few)
    suspects: list[Any] = field(default_factory=list)  # ... of kind suspect (icdsl ingest --fingerprint)
    conflict_count: int = 0
    suspect_count: int = 0
    fingerprinted: bool = False

    @property
    def reconciles(self) -> bool:
        return self.read == self.passed + self.rejected + self.duplicates

    def __str__(self) -> str:
        if self.already_ingested:
            when = f" on {self.ingested_at:%Y-%m-%d %H:%M}Z" if self.ingested_at else ""
            return (f"{self.file_name}: already ingested as batch #{self.batch_id}{when} "
                    f"(same sha256 {self.sha256[:12]}...); nothing added")
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.by_reason.items()))
        late_text = "".join(f"\n  {n} late record(s) of finalized {k}: kept, not billed; `icdsl rerate` bills them as "
                       "a correction" for k, n in sorted(self.late.items()))
        return (f"{self.file_name}: batch #{self.batch_id}: read {self.read}, passed {self.passed}, "
                f"rejected {self.rejected}, duplicates {self.duplicates}" + (f" ({reasons})" if reasons else "")
                + late_text + review_text(self))


# --------------------------------------------------------------------------- opening


def _migrations_config(connection: sa.Connection):
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    cfg = _migrations_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    db = url.database
    if db and db != ":memory:" and not db.startswith("file:"):
        Path(db).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_S})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test, as a callback
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_S * 1000}")
        if db and db != ":memory:":
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # pragma: no cover - callback
        # IMMEDIATE: take the write lock at the start, so that two writers queue instead of
        # failing at their first write with "database is locked". Readers (WAL) need no lock.
        if conn.get_execution_options().get("icdsl_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def open_store(url: str | None = None, *, data_dir: str | os.PathLike[str] | None = None,
               upgrade: bool = True) -> Store:
    """Open (creating it if needed) the store at ``url`` (default ``$ICDSL_DB`` or
    ``sqlite:///icdsl.db``) and upgrade its schema to the newest migration."""
    try:
        u = sa.make_url(normalize_url(url or default_url()))
    except sa.exc.ArgumentError as e:
        raise StoreError(f"'{url}' is not a database URL: use sqlite:///FILE or postgresql://USER@HOST/DB") from e
    if u.get_backend_name() == "sqlite":
        engine = _sqlite_engine(u)
    elif u.get_backend_name() == "postgresql":
        engine = sa.create_engine(u, pool_pre_ping=True)
    else:
        raise StoreError(f"unsupported database '{u.get_backend_name()}': use sqlite:///FILE or postgresql://...")
    if data_dir is None:
        data_dir = os.environ.get("ICDSL_DATA")
    if data_dir is None:
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
            data_dir = Path(u.database).expanduser().resolve().parent / DATA_FOLDER
        else:
            data_dir = Path.cwd() / DATA_FOLDER
    store = Store(engine, DataDir(data_dir))
    try:
        if upgrade:
            store.upgrade()
        store._bind_data_dir()
    except sa.exc.OperationalError as e:
        engine.dispose()
        first = str(e.orig if e.orig is not None else e).strip().splitlines()[0]
        raise StoreError(f"cannot open the database {u.render_as_string(hide_password=True)}: {first}") from e
    except Exception:
        engine.dispose()
        raise
    return store


# --------------------------------------------------------------------------- the store


class Store:
    """The billing store. Use :func:`open_store`; close it (or use ``with``) when done."""

    def __init__(self, engine: sa.Engine, data: DataDir):
        self.engine = engine
        self.data = data
        self.dialect = engine.dialect.name
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_engine = engine.execution_options(icdsl_readonly=True)
        self._readers = sessionmaker(self._read_engine, expire_on_commit=False)
        self._schema: str | None = None
        self.store_id: str | None = None

    # ------------------------------------------------------------------ plumbing
    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r}, data={str(self.data.root)!r})"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def upgrade(self, revision: str = "head") -> None:
        """Run the migrations up to ``revision`` (one transaction; PostgreSQL: under a lock)."""

        with self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(select(sa.func.pg_advisory_xact_lock(_lock_key("icdsl:migrate"))))
            command.upgrade(_migrations_config(conn), revision)

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def _bind_data_dir(self) -> None:
        with self.session() as s:
            row = s.get(M.StoreMeta, "store_id")
            if row is None:
                row = M.StoreMeta(key="store_id", value=uuid.uuid4().hex)
                s.add(row)
                s.add(M.StoreMeta(key="created_at", value=now().isoformat()))
            self.store_id = row.value
        self.data.root.mkdir(parents=True, exist_ok=True)
        marker = self.data.root / STORE_ID_FILE
        if marker.exists():
            found = marker.read_text().strip()
            if found != self.store_id:
                raise StoreError(
                    f"the data folder {self.data.root} belongs to another store (id {found}, this database's "
                    f"is {self.store_id}): give this store its own folder with --data or ICDSL_DATA"
                )
        else:
            marker.write_text(self.store_id + "\n")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session inside one transaction: committed at the end, rolled back on error."""
        with self._sessions() as s, s.begin():
            yield s
            write_put_off(s)  # cycle events put off to be written with others (billing.cycles)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for queries only (on SQLite it does not wait for, nor block, a writer)."""
        with self._readers() as s, s.begin():
            yield s

    @contextmanager
    def read_rows(self) -> Iterator[sa.Connection]:
        """A connection for Core queries only, inside one transaction (as :meth:`reading`), without
        an ORM session: what a request of the portal reads (rows, not objects), at a third of
        the cost of a session's first query."""
        with self._read_engine.connect() as conn, conn.begin():
            yield conn

    def schema_name(self) -> str:
        if self._schema is None:
            if self.is_postgres:
                with self.engine.connect() as conn:
                    self._schema = conn.execute(sa.text("SELECT current_schema()")).scalar() or "public"
            else:
                self._schema = "main"
        return self._schema

    def lock(self, s: Session, name: str, *, wait: bool) -> bool:
        """Take the named lock for the rest of the transaction. PostgreSQL: an advisory lock
        (scoped to this schema); SQLite: the transaction already holds the write lock."""
        if not self.is_postgres:
            return True
        key = _lock_key(f"icdsl:{self.schema_name()}:{name}")
        if wait:
            s.execute(select(sa.func.pg_advisory_xact_lock(key)))
            return True
        return bool(s.execute(select(sa.func.pg_try_advisory_xact_lock(key))).scalar())

    def audit(self, s: Session, action: str, entity: str, entity_id: int | None, message: str,
              details: dict[str, Any] | None = None) -> None:
        s.add(M.AuditEntry(at=now(), actor=_actor(), action=action, entity=entity, entity_id=entity_id,
                           message=message, details=details))

    def _audit_apart(self, action: str, entity: str, message: str, details: dict[str, Any] | None = None) -> None:
        """Record a failure in its own transaction (the failed one was rolled back)."""
        try:
            with self.session() as s:
                self.audit(s, action, entity, None, message, details)
        except Exception:  # pragma: no cover - the log must not hide the original error
            pass

    def referenced_files(self, s: Session) -> set[str]:
        files = set(s.scalars(select(M.DataFile.path)))
        files.update(p for p in s.scalars(select(M.Correction.file_path)) if p)
        files.update(p for p in s.scalars(select(M.Correction.charges_path)) if p)
        files.update(s.scalars(select(M.RecordChargeFile.path)))
        files.update(evidence_paths(s))  # disputes' evidence (billing.disputes)
        files.update(partner_invoices.referenced_files(s))
        from icdsl.billing.portal import attachment_paths  # lazy: the portal's modules load argon2

        files.update(attachment_paths(s))  # files attached to partners' disputes (icdsl serve)
        return files

    def gc(self, min_age_s: float = 3600.0) -> list[str]:
        """Remove data files the store does not reference (orphans of interrupted runs)."""
        with self.reading() as s:
            keep = self.referenced_files(s)
        return self.data.gc(keep, min_age_s)

    def verify_files(self) -> list[str]:
        """Check every referenced data file against its recorded sha256; returns the problems."""
        problems = []
        with self.reading() as s:
            files = list(s.scalars(select(M.DataFile).order_by(M.DataFile.id)))
            files += list(s.scalars(select(M.RecordChargeFile).order_by(M.RecordChargeFile.id)))
            pairs = ([(f.path, f.sha256) for f in files] + evidence_files(s)  # disputes' evidence too
                     + partner_invoices.file_checks(s))  # partners' invoices and their detail
        for path, sha in pairs:
            try:
                self.data.verify(path, sha)
            except OSError as e:
                problems.append(str(e))
        return problems

    # ------------------------------------------------------------------ partners and agreements
    def load_plan(self, plan: Plan, program: Any, *, retroactive: bool = False) -> LoadReport:
        """Record the plan's rule files, partners, agreement versions and FX rates.

        Idempotent: what is already there (same content hash) adds nothing. Agreement versions
        are immutable: a changed text under a loaded name and version raises
        :class:`AgreementVersionConflict`, except for closing an open-ended period, which adds a
        revision row and leaves the loaded one untouched. A later version that amends an
        earlier one (``amends vN``) or ends it (``ends vN on DATE``) is a new row whose
        ``amends_id`` points at the row of the version it cuts short; that row is not rewritten.

        A change of the days a loaded version is in force that reaches into a finalized cycle
        raises :class:`RetroactiveChange`, unless ``retroactive`` (``icdsl rerate``, which then
        bills the differences as adjustments).
        """
        texts: dict[str, str] = dict(getattr(program, "texts", {}) or {})
        hashes: dict[str, str] = dict(getattr(program, "hashes", {}) or {})
        report = LoadReport()
        t = now()
        with self.session() as s:
            self.lock(s, "plan", wait=True)
            # rule files
            known = {(r.path, r.sha256) for r in s.execute(select(M.SourceFile.path, M.SourceFile.sha256))}
            for path, text in sorted(texts.items()):
                sha = hashes.get(path) or hashlib.sha256(text.encode()).hexdigest()
                if (path, sha) not in known:
                    s.add(M.SourceFile(path=path, sha256=sha, size=len(text.encode()), text=text, loaded_at=t))
                    known.add((path, sha))
                    report.sources_added += 1
            # rate decks too, when readable here with the hash the plan recorded (so that a deck
            # row behind an invoice line can be shown years later)
            for path, sha, text in _deck_texts(plan, known):
                s.add(M.SourceFile(path=path, sha256=sha, size=len(text.encode()), text=text, loaded_at=t))
                known.add((path, sha))
                report.sources_added += 1
            # partners
            partners = {p.code: p for p in s.scalars(select(M.Partner))}
            for p in plan.partners:
                decl = partner_decl(p)
                h = _canonical_hash(decl)
                row = partners.get(p.code)
                values = dict(decl, tax_rate=p.tax.rate, decl_hash=h, source_file=p.span.file, span=str(p.span))
                values.setdefault("party", None)
                if row is None:
                    row = M.Partner(code=p.code, created_at=t, updated_at=t, **values)
                    s.add(row)
                    s.flush()
                    partners[p.code] = row
                    report.partners_added.append(p.code)
                    self.audit(s, "partner_added", "partner", row.id, f"partner {p.code} added", decl)
                elif row.decl_hash != h:
                    before = {k: _jsonable(getattr(row, k)) for k in decl}
                    for k, v in values.items():
                        setattr(row, k, v)
                    row.updated_at = t
                    report.partners_changed.append(p.code)
                    self.audit(s, "partner_changed", "partner", row.id, f"partner {p.code} changed",
                               {"before": before, "after": decl})
            self._load_company(s, plan, t)
            # agreement versions
            by_hash = {a.content_hash: a for a in s.scalars(select(M.AgreementVersion))}
            loaded_before = set(by_hash)
            amended = {(v.name, v.amendment.by): v for v in plan.agreements
                       if v.amendment is not None and not v.amendment.ends}
            # versions in order, so that the version an amendment cuts short has its row first
            for a in sorted(plan.agreements, key=lambda a: a.version):
                key = f"{a.name} v{a.version}"
                target = amended.get((a.name, a.version))
                if a.source_hash in by_hash:
                    report.agreements_unchanged.append(key)
                    self._load_ending(s, a, by_hash, loaded_before, report, t, retroactive, texts, hashes, plan)
                    continue
                text = agreement_text(a, texts)
                if not text:
                    raise StoreError(f"the program does not hold the text of {a.source_file} ({key}): "
                                     "pass the program returned by build() with the plan")
                decks = agreement_decks(a)
                loaded = list(s.scalars(
                    select(M.AgreementVersion)
                    .where(M.AgreementVersion.name == a.name, M.AgreementVersion.version == a.version)
                    .order_by(M.AgreementVersion.revision.desc())
                ))
                amends = None
                revision = 0
                written_to = a.written_to
                if loaded:
                    last = loaded[0]
                    closes = (last.effective_to is None and written_to is not None
                              and last.effective_from == a.effective_from
                              and _without_end(last.source_text) == _without_end(text) and last.decks == decks)
                    if not closes:
                        raise AgreementVersionConflict(
                            f"agreement \"{a.name}\" v{a.version} ({a.span}) differs from the version loaded on "
                            f"{last.loaded_at:%Y-%m-%d} (sha256 {last.content_hash[:12]}..., now "
                            f"{a.source_hash[:12]}...). " + _change_advice(a, last, text, decks, plan)
                        )
                    if not retroactive:
                        assert written_to is not None
                        _refuse_retroactive(s, plan, a, written_to + timedelta(days=1), None,
                                            f"agreement \"{a.name}\" v{a.version} ({a.span}) closes its open "
                                            f"period on {written_to}")
                    amends, revision = last.id, last.revision + 1
                    report.agreements_closed.append(f"{key} ends {written_to}")
                elif target is not None and target.amendment is not None:
                    # this version amends an earlier one: its row points at the row it cuts short
                    cut = target.amendment
                    row_of_target = by_hash.get(target.source_hash)
                    if row_of_target is not None:
                        if target.source_hash in loaded_before and not retroactive:
                            _refuse_retroactive(s, plan, target, cut.last_day + timedelta(days=1), cut.written_to,
                                                f"agreement \"{a.name}\" v{a.version} ({a.span}) amends "
                                                f"v{target.version} from {cut.last_day + timedelta(days=1)}")
                        amends = row_of_target.id
                    report.agreements_amended.append(f"{target.key} in force until {cut.last_day}, then {key}")
                partner = partners.get(a.partner)
                row = M.AgreementVersion(
                    name=a.name, version=a.version, revision=revision, partner_code=a.partner,
                    partner_id=partner.id if partner else None, effective_from=a.effective_from,
                    effective_to=written_to, currency=a.currency, timezone=a.timezone,
                    source_file=a.source_file, source_file_hash=hashes.get(a.source_file, ""),
                    span=str(a.span), source_text=text, content_hash=a.source_hash, decks=decks,
                    amends_id=amends, loaded_at=t,
                )
                s.add(row)
                s.flush()
                by_hash[a.source_hash] = row
                closed = revision > 0
                if not closed:
                    report.agreements_added.append(key)
                self.audit(s, "agreement_period_closed" if closed else "agreement_loaded",
                           "agreement_version", row.id,
                           f"{key}" + (f" revision {revision}: period closed at {written_to}" if closed else
                                       f" loaded ({a.effective_from} .. {written_to or ''})"
                                       + (f", amends {target.key} from {target.amendment.last_day + timedelta(days=1)}"
                                          if target is not None and target.amendment is not None else "")),
                           {"hash": a.source_hash, "span": str(a.span)})
                self._load_ending(s, a, by_hash, loaded_before, report, t, retroactive, texts, hashes, plan)
            # FX rates
            fx = {(r.source, r.base, r.quote, r.effective_from): r for r in s.scalars(select(M.FxRate))}
            # the first day a new rate may take effect: after every finalized period (0013)
            sealed_until = s.scalar(select(sa.func.max(M.BillingCycle.local_end))
                                    .where(M.BillingCycle.status == "finalized"))
            for src in plan.fx_sources:
                for r in src.rates:
                    k = (src.name, r.base, r.quote, r.effective_from)
                    row = fx.get(k)
                    if row is None:
                        if sealed_until is not None and r.effective_from < sealed_until:
                            raise FxRateConflict(
                                f"FX rate {src.name} {r.base}/{r.quote} from {r.effective_from} ({r.span}) would take "
                                f"effect during a finalized billing cycle (finalized periods run to "
                                f"{sealed_until - timedelta(days=1)}): finalized invoices keep the rates they were "
                                f"converted with; give the rate an effective date of {sealed_until} or later"
                            )
                        row = M.FxRate(source=src.name, base=r.base, quote=r.quote, rate=r.rate,
                                       effective_from=r.effective_from, origin=str(r.span), loaded_at=t)
                        s.add(row)
                        fx[k] = row
                        report.fx_added += 1
                    elif row.rate != r.rate:
                        raise FxRateConflict(
                            f"FX rate {src.name} {r.base}/{r.quote} from {r.effective_from} was loaded as {row.rate}, "
                            f"now {r.rate} ({r.span}): loaded rates are kept as they were; "
                            "give the correction a new effective date"
                        )
            if report.changed:
                self.audit(s, "plan_loaded", "plan", None, str(report),
                           {"sources": [list(x) for x in sorted(plan.sources)], "plan_hash": plan_hash(plan)})
        return report

    def partner(self, code: str) -> M.Partner | None:
        with self.reading() as s:
            return s.scalars(select(M.Partner).where(M.Partner.code == code)).first()

    def _load_ending(self, s: Session, a: Agreement, by_hash: dict[str, M.AgreementVersion], loaded_before: set[str],
                     report: LoadReport, t: datetime, retroactive: bool, texts: dict[str, str],
                     hashes: dict[str, str], plan: Plan) -> None:
        """The row of a version that ends ``a`` early (``ends vN on DATE``), once: it is in
        force on no day (``effective_from`` the day after ``effective_to``, the ended version's
        last day) and points at ``a``'s row."""
        cut = a.amendment
        if cut is None or not cut.ends or cut.source_hash in by_hash:
            return
        lines = texts.get(cut.span.file, "").splitlines()
        text = "\n".join(lines[cut.span.line - 1 : cut.span.end_line]) if cut.span.line else ""
        first = cut.last_day + timedelta(days=1)
        if a.source_hash in loaded_before and not retroactive:
            _refuse_retroactive(s, plan, a, first, cut.written_to,
                                f"agreement \"{a.name}\" v{cut.by} ({cut.span}) ends v{a.version} on {cut.last_day}")
        target = by_hash[a.source_hash]
        row = M.AgreementVersion(
            name=a.name, version=cut.by, revision=0, partner_code=a.partner, partner_id=target.partner_id,
            effective_from=first, effective_to=cut.last_day, currency=a.currency, timezone=a.timezone,
            source_file=cut.span.file, source_file_hash=hashes.get(cut.span.file, ""), span=str(cut.span), source_text=text,
            content_hash=cut.source_hash, decks=[], amends_id=target.id, loaded_at=t)
        s.add(row)
        s.flush()
        by_hash[cut.source_hash] = row
        key = f"{a.name} v{cut.by}"
        report.agreements_added.append(key)
        report.agreements_amended.append(f"{a.key} ends on {cut.last_day} (by v{cut.by})")
        self.audit(s, "agreement_loaded", "agreement_version", row.id,
                   f"{key} loaded: ends v{a.version} on {cut.last_day}", {"hash": cut.source_hash, "span": str(cut.span)})

    def agreement_versions(self, name: str | None = None) -> list[M.AgreementVersion]:
        with self.reading() as s:
            q = select(M.AgreementVersion).order_by(M.AgreementVersion.name, M.AgreementVersion.version,
                                                    M.AgreementVersion.revision)
            if name is not None:
                q = q.where(M.AgreementVersion.name == name)
            return list(s.scalars(q))

    # ------------------------------------------------------------------ intake
    def ingest(self, path: str | os.PathLike[str], layout: RecordLayout | str | None = None,
               plan: Plan | None = None, *, batch_rows: int = 1_000_000, reader: str | None = None,
               reader_options: dict[str, str] | None = None, fingerprint: bool = False) -> IngestReport:
        """Ingest a traffic file as one intake batch (see :mod:`icdsl.billing.intake`), read by
        the record reader ``reader`` (default: the one that claims the file) with its options;
        ``fingerprint``: report suspected duplicates under new ids too."""

        return ingest(self, path, layout, plan, batch_rows=batch_rows, reader=reader,
                      reader_options=reader_options, fingerprint=fingerprint)

    def ingest_files(self, paths: Sequence[str | os.PathLike[str]], layout: RecordLayout | str | None = None,
                     plan: Plan | None = None, *, client: Any, batch_rows: int = 1_000_000, reader: str | None = None,
                     reader_options: dict[str, str] | None = None, fingerprint: bool = False) -> Iterator[IngestReport]:
        """Ingest files with the workers of a Dask cluster reading and splitting them (see
        :func:`icdsl.billing.intake.ingest_files`): the same batches as :meth:`ingest` of each
        file in turn; one report per file, in order, as each is committed."""
        return ingest_files(self, list(paths), layout, plan, client=client, batch_rows=batch_rows, reader=reader,
                            reader_options=reader_options, fingerprint=fingerprint)

    def conflicts(self, *, batch_id: int | None = None, partner: str | None = None, kind: str | None = None,
                  limit: int | None = None) -> list[M.IntakeConflict]:
        """Conflicting and suspected duplicates of intake, both versions (``icdsl conflicts``)."""
        with self.reading() as s:
            return conflict_rows(s, batch_id=batch_id, partner=partner, kind=kind, limit=limit)

    def conflict_summary(self, partner: str | None = None) -> list[tuple[str | None, str, int]]:
        """How many conflicts and suspects each partner has: (partner, kind, count)."""
        with self.reading() as s:
            return conflict_summary(s, partner)

    def batches(self) -> list[M.IntakeBatch]:
        with self.reading() as s:
            return list(s.scalars(select(M.IntakeBatch).order_by(M.IntakeBatch.id)))

    def batch_report(self, batch_id: int) -> IngestReport:
        with self.reading() as s:
            b = s.get(M.IntakeBatch, batch_id)
            if b is None:
                raise StoreError(f"no intake batch #{batch_id}")
            return self._report_of(s, b, already=False)

    def _report_of(self, s: Session, b: M.IntakeBatch, *, already: bool) -> IngestReport:
        reasons = {r.reason: r.count for r in s.scalars(
            select(M.IntakeRejectCount).where(M.IntakeRejectCount.batch_id == b.id))}
        partners = {p.partner: p.records for p in s.scalars(
            select(M.IntakePartnerStat).where(M.IntakePartnerStat.batch_id == b.id))}
        files = {f.kind: f.path for f in s.scalars(select(M.DataFile).where(M.DataFile.batch_id == b.id))}
        review = conflict_counts(s, b.id)
        return IngestReport(
            batch_id=b.id, file_name=b.file_name, sha256=b.sha256, already_ingested=already,
            read=b.read_count, passed=b.passed_count, rejected=b.rejected_count, duplicates=b.duplicate_count,
            by_reason=reasons, records_file=files.get("intake_records"), rejects_file=files.get("intake_rejects"),
            partners=partners, ingested_at=b.finished_at, file_format=b.format,
            conflicts=conflict_rows(s, batch_id=b.id, kind="conflict", limit=REVIEW_SHOWN),
            suspects=conflict_rows(s, batch_id=b.id, kind="suspect", limit=REVIEW_SHOWN),
            conflict_count=review.get("conflict", 0), suspect_count=review.get("suspect", 0),
        )

    def rejects(self, batch_id: int) -> pa.Table:
        """The intake rejects of a batch (row, id, reason, detail, raw)."""

        with self.reading() as s:
            f = s.scalars(select(M.DataFile).where(M.DataFile.batch_id == batch_id,
                                                   M.DataFile.kind == "intake_rejects")).first()
        if f is None:
            return REJECTS_SCHEMA.empty_table()
        return pq.read_table(self.data.abs(f.path))

    # ------------------------------------------------------------------ cycles
    def run_cycle(self, partner: str, period: Any, plan: Plan, *, program: Any = None,
                  rerate: bool = False, **options: Any) -> Any:
        """Rate, validate and invoice (draft) one partner's cycle; see :func:`icdsl.billing.cycles.run_cycle`
        (options: ``dims``, ``accept``, ``policy``, ``validators``, ``progress``)."""

        return run_cycle(self, partner, period, plan, program=program, rerate=rerate, **options)

    def _load_company(self, s: Any, plan: Any, t: Any) -> None:
        """Our company as declared (``company``): added, or changed and audited; kept when the
        rules loaded now do not declare it (a partial load does not erase who we are)."""
        company = getattr(plan, "company", None)
        if company is None:
            return
        decl = company.as_json()
        h = _canonical_hash(decl)
        row = s.scalars(select(M.Company).where(M.Company.code == company.code)).first()
        if row is None:
            row = M.Company(code=company.code, name=company.name, party=decl, decl_hash=h,
                            source_file="", span="",
                            created_at=t, updated_at=t)
            s.add(row)
            s.flush()
            self.audit(s, "company_added", "company", row.id, f"company {company.code} added", decl)
        elif row.decl_hash != h:
            before = row.party
            row.name, row.party, row.decl_hash, row.updated_at = company.name, decl, h, t
            self.audit(s, "company_changed", "company", row.id, f"company {company.code} changed",
                       {"before": before, "after": decl})

    def finalize_cycle(self, partner: str, period: Any, *, issue_date: date | None = None) -> Any:
        return finalize_cycle(self, partner, period, issue_date=issue_date)

    def progressive(self, partner: str, period: Any, plan: Plan, until: date, *,
                    issue_date: date | None = None) -> Any:
        """An interim invoice of progressive billing if the usage to ``until`` passed a threshold;
        see :func:`icdsl.billing.progressive.raise_interim`."""
        return raise_interim(self, partner, period, plan, until, issue_date=issue_date)

    def rerate(self, partner: str, first: Any, last: Any, plan: Plan, *, destination: str | None = None,
               **options: Any) -> Any:
        """Rate a partner's records of local days ``first``..``last`` again with ``plan``; see
        :func:`icdsl.billing.corrections.rerate`."""

        return rerate(self, partner, first, last, plan, destination=destination, **options)

    def findings(self, cycle_id: int, *, all_runs: bool = False) -> list[M.ValidationFinding]:
        """The validation findings of a cycle's latest run (or of every run)."""

        with self.reading() as s:
            if all_runs:
                return list(s.scalars(select(M.ValidationFinding).where(M.ValidationFinding.cycle_id == cycle_id)
                                      .order_by(M.ValidationFinding.id)))
            cyc = s.get(M.BillingCycle, cycle_id)
            return latest_findings(s, cyc) if cyc is not None else []

    def statements(self, cycle_id: int | None = None) -> list[M.SettlementStatement]:
        with self.reading() as s:
            q = select(M.SettlementStatement).order_by(M.SettlementStatement.id)
            if cycle_id is not None:
                q = q.where(M.SettlementStatement.cycle_id == cycle_id)
            return list(s.scalars(q))

    def share_statements(self, cycle_id: int | None = None) -> list[M.ShareStatement]:
        """Revenue-share statements (one per cycle, party and currency)."""
        with self.reading() as s:
            q = select(M.ShareStatement).order_by(M.ShareStatement.id)
            if cycle_id is not None:
                q = q.where(M.ShareStatement.cycle_id == cycle_id)
            return list(s.scalars(q))

    def charge_lines(self, cycle_id: int) -> list[M.ChargeLine]:
        """The charge lines of a cycle (surcharges, fees, tiers, discounts, commitments, shares)."""
        with self.reading() as s:
            return list(s.scalars(select(M.ChargeLine).where(M.ChargeLine.cycle_id == cycle_id)
                                  .order_by(M.ChargeLine.id)))

    def import_inventory(self, path: str | os.PathLike[str], *, strict: bool = False) -> Any:
        """Import an inventory CSV (see :mod:`icdsl.billing.inventory`)."""

        return import_inventory(self, path, strict=strict)

    def adjustments(self, *, target_cycle_id: int | None = None) -> list[M.Adjustment]:
        with self.reading() as s:
            q = select(M.Adjustment).order_by(M.Adjustment.id)
            if target_cycle_id is not None:
                q = q.where(M.Adjustment.target_cycle_id == target_cycle_id)
            return list(s.scalars(q))

    def late_records(self, partner: str | None = None) -> list[Any]:
        """The late records of each finalized cycle (:func:`icdsl.billing.late.pending`)."""
        with self.reading() as s:
            return late_pending(self, s, partner)

    def corrections(self) -> list[M.Correction]:
        with self.reading() as s:
            return list(s.scalars(select(M.Correction).order_by(M.Correction.id)))

    def document(self, ref: str) -> dict[str, Any]:
        """An invoice or statement as a document (see :mod:`icdsl.billing.documents`). A
        finalized document whose seal fails is refused (:class:`~icdsl.billing.seal.SealBroken`)."""

        with self.reading() as s:
            try:
                doc = find_document(s, ref)
            except UNREADABLE as e:
                raise unreadable(ref, e) from e
            check_documents(s, [doc])
            attach_positions(self, s, [doc])  # a statement's dispute position: computed now, not sealed
            return doc

    def cycle_documents(self, cycle_id: int) -> list[dict[str, Any]]:
        """A cycle's documents; refused if a finalized one fails its seal (as :meth:`document`)."""
        with self.reading() as s:
            try:
                docs = cycle_documents(s, cycle_id)
            except UNREADABLE as e:
                raise unreadable(f"a document of cycle #{cycle_id}", e) from e
            check_documents(s, docs)
            attach_positions(self, s, docs)  # statements' dispute positions: computed now, not sealed
            return docs

    def verify(self, *, head: str | None = None) -> Verification:
        """Every finalized document's seal recomputed from the store and the chain of seals
        walked (``icdsl verify``); ``head``: a chain head recorded earlier, still to be found."""
        with self.reading() as s:
            return verify_seals(s, head=head)

    def cycles(self, partner: str | None = None) -> list[M.BillingCycle]:
        with self.reading() as s:
            q = select(M.BillingCycle).order_by(M.BillingCycle.partner_code, M.BillingCycle.period_start)
            if partner is not None:
                q = q.where(M.BillingCycle.partner_code == partner)
            return list(s.scalars(q))

    def cycle(self, partner: str, period: Any) -> M.BillingCycle | None:
        with self.reading() as s:
            prow, per = resolve_period(s, partner, period, None)
            return s.scalars(select(M.BillingCycle).where(
                M.BillingCycle.partner_id == prow.id, M.BillingCycle.period_start == per.start,
                M.BillingCycle.period_end == per.end)).first()

    def cycle_events(self, cycle_id: int) -> list[M.CycleEvent]:
        with self.reading() as s:
            return list(s.scalars(select(M.CycleEvent).where(M.CycleEvent.cycle_id == cycle_id)
                                  .order_by(M.CycleEvent.id)))

    def invoices(self, cycle_id: int | None = None) -> list[M.Invoice]:
        with self.reading() as s:
            q = select(M.Invoice).order_by(M.Invoice.id)
            if cycle_id is not None:
                q = q.where(M.Invoice.cycle_id == cycle_id)
            return list(s.scalars(q))

    def invoice_lines(self, invoice_id: int) -> list[M.InvoiceLine]:
        with self.reading() as s:
            return list(s.scalars(select(M.InvoiceLine).where(M.InvoiceLine.invoice_id == invoice_id)
                                  .order_by(M.InvoiceLine.line_no)))

    def rated(self, cycle_id: int, *, verify: bool = True) -> pa.Table:
        """The rated records of a cycle, read from its Parquet file (checked against its sha256)."""
        with self.reading() as s:
            f = s.scalars(select(M.DataFile).where(M.DataFile.cycle_id == cycle_id, M.DataFile.kind == "rated")).first()
        if f is None:
            raise StoreError(f"cycle #{cycle_id} has no rated records (run it first)")
        if verify:
            self.data.verify(f.path, f.sha256)
        return pq.read_table(self.data.abs(f.path))

    def trace(self, line_id: int, *, limit: int | None = None) -> Any:
        """The chain behind an invoice line: see :func:`icdsl.billing.trace.trace_line`."""

        return trace_line(self, line_id, limit=limit)


__all__ = [
    "DEFAULT_URL",
    "IngestReport",
    "LoadReport",
    "Store",
    "checkpoint",
    "default_url",
    "now",
    "partner_decl",
    "partner_decl_hash",
    "plan_hash",
    "open_store",
    "sha256_file",
]
