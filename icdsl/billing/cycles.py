"""Billing cycles: rate a partner's period, validate it, draft its invoices, finalize them.

States: ``open -> rated -> validated -> invoiced -> finalized``, each with its timestamp on the
cycle row and an event in ``cycle_events`` (the progress and exception log).

:func:`run_cycle` does ``open -> invoiced`` in **one transaction per partner**:

1. take the partner's lock (PostgreSQL: ``pg_try_advisory_xact_lock``, failing at once with
   :class:`CycleBusy` if another session holds it; then ``SELECT ... FOR NO KEY UPDATE NOWAIT``
   on the cycle row, whose (partner, start, end) is unique; SQLite: ``BEGIN IMMEDIATE``);
2. remove leftovers of interrupted runs from the cycle's folder (files no committed row
   references: nobody else can be writing there while we hold the lock);
3. read the partner's passed records of the period from every intake batch that has some,
   rate them with the batch executor, chunk by chunk, streaming the rated records (with a
   ``line`` column: the invoice line each record belongs to, and the ``batch_id`` it came from)
   and the rating rejects to temporary Parquet files;
4. fsync and rename the files (content-addressed names), check that the counts reconcile
   (``records_in == rated + rejected``) and that the amounts read back from the file equal the
   lines' sums (a failure here is a bug: :class:`ValidationError`, nothing is committed);
5. **validate** (:mod:`icdsl.billing.validation`): the findings are stored; an error that is
   not accepted stops here: the cycle is committed ``rated`` with its files and findings, and
   no invoice;
6. draft the invoices (:mod:`icdsl.billing.invoicing`: one per invoice stream, in the partner's
   currency, lines converted and rounded once, tax) and the settlement statement of netted
   services, add the adjustments that corrections of earlier cycles put on this one, and commit.

The cycle's row is opened in that same transaction. Killed at any point before the commit,
the run leaves no row behind (only files no row references, removed by the next run); rerun,
it writes the same bytes under the same names and the same rows. A failed run (an exception)
is rolled back and logged as an ``error`` event on the cycle (opened, in the log's own
transaction, if the run was its first).

A run's fixed cost per partner is kept small (a month is hundreds of partners): what it writes
takes one statement per table where the rows' ids are not needed (an executemany of the table's
INSERT: invoice lines, findings, inputs, events, audit entries), its report is made from what it
wrote, and the statements every run executes are built once with bound parameters (SQLAlchemy
builds and keys a statement in more time than SQLite takes to run it).

:func:`finalize_cycle` numbers the drafts (gapless ``INV-YYYY-NNNNNN``, ``STM-YYYY-NNNNNN``),
dates them (the period's last day unless told otherwise) and makes them immutable.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from sqlite3 import sqlite_version_info
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import Session

from icdsl.billing import assurance, base
from icdsl.billing import models as M
from icdsl.billing import rows as bulk
from icdsl.billing.amounts import present
from icdsl.billing.charging import (
    billed_adjustments,
    history_of,
    other_lines,
    receivable_items,
    share_adjustments,
    store_lines,
    targeted,
    usage_json,
    write_share_statements,
)
from icdsl.billing.documents import buyer_party, invoice_document, seller_party, share_party
from icdsl.billing.errors import CycleBusy, CycleError, CycleStateError, StoreError, ValidationError
from icdsl.billing.files import DataDir, WrittenFile, data_dir, fsync_files
from icdsl.billing.files import fsync_dir as sync_dir
from icdsl.billing.fx import FxQuote, FxTable
from icdsl.billing.inventory import partner_items
from icdsl.billing.late import findings as late_findings
from icdsl.billing.late import record_unread
from icdsl.billing.seal import seal_cycle
from icdsl.billing.types import Money
from icdsl.charges import groups as grouping
from icdsl.charges.keys import parse_key
from icdsl.cycle import engine
from icdsl.cycle import errors as engine_errors
from icdsl.cycle.amounts import EXACT
from icdsl.cycle.charges import event_names
from icdsl.cycle.interim import DEDUCTION, Interim
from icdsl.cycle.invoicing import (  # noqa: F401 - (compatibility)
    BASE_DIMS,
    DIMENSIONS,
    DraftLine,
    Drafts,
    Group,
    check_dims,
    describe,
    draft_documents,
    line_json,
)
from icdsl.cycle.periods import Period, day_edges, local_day, parse_period, period_containing
from icdsl.cycle.rater import (  # noqa: F401 - (compatibility)
    FINE_DIMS,
    REJECT_COLUMNS,
    REJECTS_FILE_SCHEMA,
    SEP,
    Discard,
    RatedPiece,
    from_us,
    plan_scale,
    rated_file_schema,
    record_charges_file_schema,
    unscaled_int64,
    value_counts,
)
from icdsl.cycle.rater import Rater as _EngineRater
from icdsl.cycle.validation import Finding, Policy
from icdsl.plan.model import Partner as PlanPartner
from icdsl.plan.model import Plan, Tax
from icdsl.validators import ValidationContext as DocumentContext
from icdsl.validators import run_validators as run_document_validators

if TYPE_CHECKING:
    from icdsl.billing.store import Store

CHUNK_ROWS = 1 << 18  # records rated at a time (several chunks: writing one overlaps rating the next)
READ_ROWS = 1 << 18
LINE_DIMS = FINE_DIMS  # (compatibility)
HISTORY_DAYS = 28
MAX_VALUES = 64  # (compatibility: a line now knows whether a column has one value or several)

Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- reports


@dataclass
class InvoiceSummary:
    id: int
    stream: str
    currency: str
    status: str
    subtotal: Decimal
    lines: int
    number: str | None = None
    tax_kind: str = "none"
    tax_amount: Decimal | None = None
    total: Decimal | None = None
    tax_note: str | None = None
    kind: str = "invoice"  # invoice | credit_note | debit_note


@dataclass
class StatementSummary:
    id: int
    currency: str
    status: str
    receivable: Decimal
    payable: Decimal
    net: Decimal
    lines: int
    number: str | None = None


@dataclass
class ShareSummary:
    id: int
    party: str
    currency: str
    status: str
    total: Decimal
    lines: int
    number: str | None = None


@dataclass
class CycleReport:
    cycle_id: int
    partner: str
    period: Period
    status: str
    already: bool = False  # nothing was done: the cycle was already at least invoiced
    records_in: int = 0
    rated: int = 0
    rejected: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    totals: dict[str, Decimal] = field(default_factory=dict)  # rated amounts by currency, exact
    invoices: list[InvoiceSummary] = field(default_factory=list)
    statement: StatementSummary | None = None
    findings: list[Finding] = field(default_factory=list)
    rated_file: str | None = None
    rated_sha256: str | None = None
    rejects_file: str | None = None
    batches: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds by stage (this run only)
    shares: list[ShareSummary] = field(default_factory=list)  # revenue-share statements
    charge_lines: int = 0  # lines of charges (surcharges, fees, tiers, commitments, shares...)
    events: int = 0  # event records counted (not rated)
    refunds: int = 0  # refund records (not rated as traffic; ``on net`` revenue shares deduct them)

    @property
    def blocked(self) -> bool:
        """Validation found errors not accepted: the cycle is rated, without invoices."""
        return any(f.blocking for f in self.findings)

    def __str__(self) -> str:
        head = f"{self.partner} {self.period.label}: {self.status}"
        if self.already:
            head += " (already; nothing done)"
        totals = ", ".join(f"{v.normalize():f} {k}" for k, v in sorted(self.totals.items())) or "nothing"
        out = [head, f"  records {self.records_in}: rated {self.rated}, rejected {self.rejected}"
                     + (f" ({', '.join(f'{k} {v}' for k, v in sorted(self.rejects_by_reason.items()))})"
                        if self.rejects_by_reason else ""),
               f"  rated {totals}"
               + (f"; {self.events} event record(s)" if self.events else "")
               + (f"; {self.refunds} refund record(s)" if self.refunds else "")
               + (f"; {self.charge_lines} charge line(s)" if self.charge_lines else "")]
        for f in self.findings:
            out.append(f"  {f}")
        if self.blocked:
            out.append("  invoicing stopped: fix the cause and run the cycle again, or accept the finding "
                       "(--accept CODE)")
        for inv in self.invoices:
            c = inv.currency
            tax = f", tax {present(inv.tax_amount, c)}" if inv.tax_amount is not None else ""
            total = f", total {present(inv.total, c)} {c}" if inv.total is not None else ""
            what = inv.kind.replace("_", " ") if inv.kind in ("credit_note", "debit_note") else "invoice"
            out.append(f"  {what} #{inv.id} {inv.number or '(draft)'} {inv.stream}: {inv.lines} line(s), "
                       f"subtotal {present(inv.subtotal, c)}{tax}{total}")
        if self.statement is not None:
            st, c = self.statement, self.statement.currency
            out.append(f"  statement #{st.id} {st.number or '(draft)'}: receivable {present(st.receivable, c)}, "
                       f"payable {present(st.payable, c)} (netted), net {present(st.net, c)} {c}")
        for sh in self.shares:
            out.append(f"  revenue share {sh.number or '(draft)'} shr:{sh.id} {sh.party}: {sh.lines} line(s), "
                       f"{present(sh.total, sh.currency)} {sh.currency}")
        return "\n".join(out)


# --------------------------------------------------------------------------- helpers


_MONEY = Money()


def money(value: Decimal) -> Decimal:
    """An amount at the store's money scale (8 decimals); raises rather than round."""
    return _MONEY._exact(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def cycle_dir(partner: str, period: Period) -> str:
    return f"cycles/{_safe(partner)}/{period.local_start}_{period.local_end}"


def resolve_period(s: Session, partner: str, period: Any, plan: Plan | None) -> tuple[M.Partner, Period]:
    """The partner's row and the period in its time zone; refuses a plan whose declaration of
    the partner differs from the store's (load the plan first)."""

    row = s.scalars(_PARTNER_BY_CODE, {"code": partner}).first()
    if row is None:
        known = list(s.scalars(select(M.Partner.code).order_by(M.Partner.code)))
        raise CycleError(f"partner {partner} is not in the store: load the rules that declare it first "
                         "with `icdsl load RULES`"
                         + (f"; partners in the store: {', '.join(known)}" if known else ""))
    if plan is not None:
        declared = plan.partner(partner)
        if declared is None:
            raise CycleError(f"partner {partner} is not declared in the rules given")
        if base.partner_decl_hash(declared) != row.decl_hash:
            raise CycleError(f"the rules declare partner {partner} differently from the store: load them first "
                             "with `icdsl load RULES`")
    return row, parse_period(period, row.timezone, row.billing)


def cycles_ending_in(span: Period, billing: str, tz: str) -> list[Period]:
    """The periods of frequency ``billing`` (in zone ``tz``) whose last day falls in ``span``."""
    if billing == span.frequency:
        return [span]
    out = []
    p = period_containing(span.local_start, billing, tz)
    while p.local_start < span.local_end:
        if span.local_start <= p.local_end - timedelta(days=1) < span.local_end:
            out.append(p)
        p = period_containing(p.local_end, billing, tz)
    return out


def frequency_refusal(code: str, billing: str, span: Period, tz: str, spec: str | None = None) -> str | None:
    """Why a cycle ``span`` of a partner billed ``billing`` is refused (None when it is not): a
    period of another frequency than the partner's (an ad hoc range is always allowed) would
    bill the records of its own cycles a second time."""
    if span.frequency in ("adhoc", billing):
        return None
    if "@" in billing and period_containing(span.local_start, billing, tz) == span:
        return None  # one of the cycles of a partner billed monthly from a day of the month
    found = cycles_ending_in(span, billing, tz)
    example = found[0].label if found else period_containing(span.local_start, billing, tz).label
    return (f"{code} is billed {billing} (`billing {billing}` in its declaration): a {span.frequency} "
            f"cycle {span.label} is refused, since its records are billed in {billing} cycles and "
            f"would be billed twice; run its {billing} cycles (for example "
            f"`icdsl cycle run {code} {example}`) or "
            f"`icdsl cycle run --all {spec or span.label}` for every cycle ending in {span.label}")


def _event(s: Session, cycle: M.BillingCycle, kind: str, message: str, *, to: str | None = None,
           details: dict[str, Any] | None = None) -> None:
    """An event of the cycle, written at once (after the events put off before it, and without
    flushing the session: see :func:`run_locked`)."""
    _insert(s, M.CycleEvent, s.info.pop(_PENDING_EVENTS, []) + [_event_row(cycle, kind, message, to, details)])


def _event_row(cycle: M.BillingCycle, kind: str, message: str, to: str | None = None,
               details: dict[str, Any] | None = None, at: datetime | None = None) -> dict[str, Any]:
    return dict(cycle_id=cycle.id, at=at or base.now(), kind=kind, from_state=cycle.status if to else None,
                to_state=to, message=message, details=details)


#: ``Session.info`` key of the cycle events put off (:func:`_put_off`) until the next event
#: written, a :class:`_Log` written, or the transaction's end (:func:`write_put_off`)
_PENDING_EVENTS = "icdsl_pending_cycle_events"


def _put_off(s: Session, row: dict[str, Any]) -> None:
    """A cycle event written with the next ones (one statement for a run's events, in order)."""
    s.info.setdefault(_PENDING_EVENTS, []).append(row)


def write_put_off(s: Session) -> None:
    """The events put off and not written yet (the store calls it before every commit)."""
    rows = s.info.pop(_PENDING_EVENTS, None)
    if rows:
        _insert(s, M.CycleEvent, rows)


def _advance(s: Session, cycle: M.BillingCycle, to: str, message: str, details: dict[str, Any] | None = None) -> None:

    _event(s, cycle, "state", message, to=to, details=details)
    cycle.status = to
    setattr(cycle, f"{to}_at", base.now())


_DATA_FILES = M.DataFile.__table__
_LINES = M.InvoiceLine.__table__
_INPUTS = M.CycleInput.__table__
_CHARGE_LINES = M.ChargeLine.__table__
_VERSIONS = M.AgreementVersion.__table__


def _insert(s: Session, model: type[M.Base], rows: list[dict[str, Any]]) -> None:
    """Rows of ``model`` in one statement (:func:`icdsl.billing.rows.insert`: no ORM objects to
    build, flush and track; a COPY on PostgreSQL). Every row has the same keys, those its ORM
    object was given. On the session's connection: the session is not flushed first (the caller
    flushes what the rows depend on), so that the cycle's row is updated once, not at every insert."""
    bulk.insert(s.connection(), model.__table__, rows)


def _insert_one(s: Session, model: type[M.Base], **values: Any) -> int:
    """One row of ``model`` (as :func:`_insert`); returns its id."""
    return s.connection().execute(model.__table__.insert(), values).inserted_primary_key[0]


# The statements a cycle runs for every partner, built once (building a statement and its
# cache key costs more than SQLite takes to run it). ``bindparam``s take the column's type.
_B = sa.bindparam
_PARTNER_BY_CODE = select(M.Partner).where(M.Partner.code == _B("code"))
_CYCLE_OF = select(M.BillingCycle).where(M.BillingCycle.partner_id == _B("partner_id"),
                                         M.BillingCycle.period_start == _B("start"),
                                         M.BillingCycle.period_end == _B("end"))
_CYCLE_OF_LOCKED = _CYCLE_OF.with_for_update(nowait=True, key_share=True)
_INVOICES_OF = select(M.Invoice).where(M.Invoice.cycle_id == _B("cycle_id")).order_by(M.Invoice.id)
_STATEMENTS_OF = (select(M.SettlementStatement).where(M.SettlementStatement.cycle_id == _B("cycle_id"))
                  .order_by(M.SettlementStatement.id))
_SHARES_OF = select(M.ShareStatement).where(M.ShareStatement.cycle_id == _B("cycle_id")).order_by(M.ShareStatement.id)
_INVOICES = M.Invoice.__table__
_INVOICE_ROWS = select(_INVOICES).where(_INVOICES.c.cycle_id == _B("cycle_id")).order_by(_INVOICES.c.id)
# the columns of invoice lines a document shows (icdsl.billing.documents), and what a report counts
_DOCUMENT_LINE_COLUMNS = ("id", "invoice_id", "line_no", "kind", "description", "direction", "service", "destination",
                          "prefix", "band", "quantity", "unit", "rate", "rate_unit", "amount", "currency", "rule",
                          "record_count", "source_amount", "source_currency", "fx_rate", "fx_rate_id", "rounding",
                          "corrects_line_id", "agreement_hash")
_LINES_OF = (select(*(_LINES.c[c] for c in _DOCUMENT_LINE_COLUMNS))
             .where(_LINES.c.invoice_id.in_(_B("ids", expanding=True)))
             .order_by(_LINES.c.invoice_id, _LINES.c.line_no))
# one executemany numbering a cycle's invoices (the keys of each row: the columns set)
_FINALIZE_INVOICE = sa.update(_INVOICES).where(_INVOICES.c.id == _B("b_id")).values(status="finalized")
_STATEMENTS = M.SettlementStatement.__table__
_SHARES = M.ShareStatement.__table__
# a cycle's settlement and revenue-share statements (kind, id): most cycles have none
_OTHER_DOCUMENTS = sa.union_all(
    select(sa.literal("statement").label("kind"), _STATEMENTS.c.id).where(_STATEMENTS.c.cycle_id == _B("cycle_id")),
    select(sa.literal("share").label("kind"), _SHARES.c.id).where(_SHARES.c.cycle_id == _B("cycle_id")))
# what a report lists besides documents, in one query: (what, a value, another) rows of the
# cycle's files (kind, path, sha256), its input batches ("batch", id) and its charge lines' count
_REPORT_FACTS = sa.union_all(
    select(_DATA_FILES.c.kind.label("what"), _DATA_FILES.c.path.label("value"), _DATA_FILES.c.sha256.label("other"))
    .where(_DATA_FILES.c.cycle_id == _B("cycle_id")),
    select(sa.literal("batch"), sa.cast(_INPUTS.c.batch_id, sa.String), sa.null())
    .where(_INPUTS.c.cycle_id == _B("cycle_id")),
    select(sa.literal("charge_lines"), sa.cast(func.count(), sa.String), sa.null()).select_from(_CHARGE_LINES)
    .where(_CHARGE_LINES.c.cycle_id == _B("cycle_id")))
_LINE_COUNTS = (select(_LINES.c.invoice_id, func.count()).where(_LINES.c.invoice_id.in_(_B("ids", expanding=True)))
                .group_by(_LINES.c.invoice_id))
_FILES_OF = select(_DATA_FILES.c.kind, _DATA_FILES.c.path, _DATA_FILES.c.sha256).where(
    _DATA_FILES.c.cycle_id == _B("cycle_id"))
_BATCHES_OF = select(_INPUTS.c.batch_id).where(_INPUTS.c.cycle_id == _B("cycle_id")).order_by(_INPUTS.c.batch_id)
_CHARGE_COUNT = select(func.count()).select_from(_CHARGE_LINES).where(_CHARGE_LINES.c.cycle_id == _B("cycle_id"))
_LATEST_FINDINGS = (select(M.ValidationFinding).where(
    M.ValidationFinding.cycle_id == _B("cycle_id"),
    M.ValidationFinding.attempt == select(func.max(M.ValidationFinding.attempt))
    .where(M.ValidationFinding.cycle_id == _B("cycle_id")).scalar_subquery())
    .order_by(M.ValidationFinding.id))
_FINDINGS = M.ValidationFinding.__table__
_LATEST_FINDING_ROWS = (select(_FINDINGS).where(  # as rows (a report reads them, nothing changes them)
    _FINDINGS.c.cycle_id == _B("cycle_id"),
    _FINDINGS.c.attempt == select(func.max(_FINDINGS.c.attempt)).where(_FINDINGS.c.cycle_id == _B("cycle_id"))
    .scalar_subquery())
    .order_by(_FINDINGS.c.id))
_VERSION_IDS = select(_VERSIONS.c.content_hash, _VERSIONS.c.id).where(
    _VERSIONS.c.content_hash.in_(_B("hashes", expanding=True)))
_SEQUENCE = select(M.NumberSequence).where(M.NumberSequence.name == _B("name"))
_SEQUENCE_LOCKED = _SEQUENCE.with_for_update()
_DAILY = (select(M.IntakeDailyCount.day, func.sum(M.IntakeDailyCount.records))
          .where(M.IntakeDailyCount.partner == _B("partner"), M.IntakeDailyCount.day >= _B("first"),
                 M.IntakeDailyCount.day < _B("end"))
          .group_by(M.IntakeDailyCount.day))
_LATEST_START = select(func.max(M.IntakeBatch.max_start))
_OVERLAP = (select(M.BillingCycle.label, M.BillingCycle.local_start, M.BillingCycle.local_end)
            .where(M.BillingCycle.partner_id == _B("partner_id"), M.BillingCycle.period_start < _B("end"),
                   M.BillingCycle.period_end > _B("start")).limit(1))


@dataclass
class _Inserted:
    """A row written with :func:`_insert_one` where an ORM object was expected (its ``id``)."""

    id: int


class _Log:
    """The events of a cycle and the audit entries of one transaction, kept in the order they
    happen and written at the end, one statement per table (:meth:`write`)."""

    def __init__(self, cycle: M.BillingCycle):
        self.cycle = cycle
        self.events: list[dict[str, Any]] = []
        self.audits: list[dict[str, Any]] = []

    def event(self, kind: str, message: str, *, to: str | None = None, details: dict[str, Any] | None = None) -> None:
        self.events.append(dict(cycle_id=self.cycle.id, at=base.now(), kind=kind,
                                from_state=self.cycle.status if to else None, to_state=to, message=message,
                                details=details))

    def advance(self, to: str, message: str, details: dict[str, Any] | None = None) -> None:
        """:func:`_advance`, logged here."""
        self.event("state", message, to=to, details=details)
        self.cycle.status = to
        setattr(self.cycle, f"{to}_at", base.now())

    def audit(self, action: str, entity: str, entity_id: int | None, message: str,
              details: dict[str, Any] | None = None) -> None:
        """:meth:`icdsl.billing.store.Store.audit`, logged here."""
        self.audits.append(dict(at=base.now(), actor=base.actor(), action=action, entity=entity, entity_id=entity_id,
                                message=message, details=details))

    def write(self, s: Session) -> None:
        _insert(s, M.CycleEvent, s.info.pop(_PENDING_EVENTS, []) + self.events)
        _insert(s, M.AuditEntry, self.audits)
        self.events, self.audits = [], []


_scale = plan_scale  # (compatibility)


def day_bounds(period: Period) -> tuple[list[date], Any]:
    """The local days of a period and the UTC instants (µs) at which they start, plus the end
    (:func:`icdsl.cycle.periods.day_edges`)."""
    days = [period.local_start + timedelta(days=i) for i in range((period.local_end - period.local_start).days)]
    return days, day_edges(period)


class Rater(_EngineRater):
    """The engine's rater (:class:`icdsl.cycle.rater.Rater`) with the store's kill-safety
    checkpoint after each chunk rated (``cycle:rated``)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("on_chunk", _rated_checkpoint)
        super().__init__(*args, **kwargs)


def _rated_checkpoint() -> None:

    base.checkpoint("cycle:rated")


_Rater = Rater  # (compatibility)
_Discard = Discard
_from_us = from_us
_unscaled_int64 = unscaled_int64
_value_counts = value_counts


_US_UTC = pa.timestamp("us", tz="UTC")

#: (path, size, mtime) -> the file's row groups (:class:`_FileGroups`), worked out once per file and process
_ROW_GROUPS: dict[tuple[str, int, int], _FileGroups] = {}


@dataclass(frozen=True)
class _FileGroups:
    """An intake records file's footer and, from its row groups' statistics: the row groups of
    one partner (by partner), the others (``mixed``: (row group, smallest, largest partner),
    None where unknown), the rows of each, and the starts (µs, smallest and largest) of each
    row group wholly of one partner without a null start (None for the others)."""

    meta: Any
    single: dict[str, list[int]]
    mixed: list[tuple[int, Any, Any]]
    rows: list[int]
    starts: list[tuple[int, int] | None]

    def __iter__(self) -> Iterator[Any]:  # (compatibility: meta, single, mixed = _file_groups(path))
        return iter((self.meta, self.single, self.mixed))


def _partner_groups(path: str, partner: str) -> tuple[Any, list[int]]:
    """The file's footer, and the row groups that may hold ``partner``'s records, from the row
    groups' statistics, worked out once per file and process (a month of 200 partners opens
    each intake file 400 times; its footer has a row group per partner and batch)."""
    fg = _file_groups(path)
    groups = list(fg.single.get(partner, ()))
    groups += [i for i, lo, hi in fg.mixed if lo is None or lo <= partner <= hi]
    return fg.meta, sorted(groups)


def _file_groups(path: str) -> _FileGroups:
    """The file's row groups (:class:`_FileGroups`), read once per file and process (while its
    size and modification time stay the same)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    got = _ROW_GROUPS.get(key)
    if got is None:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
        names = schema.names
        pi = names.index("partner") if "partner" in names else -1
        # starts read from the statistics only where they are the instants themselves (µs, UTC)
        si = names.index("start") if "start" in names and schema.field("start").type == _US_UTC else -1
        single: dict[str, list[int]] = {}
        mixed: list[tuple[int, Any, Any]] = []
        rows: list[int] = []
        starts: list[tuple[int, int] | None] = []
        for i in range(meta.num_row_groups):
            rg = meta.row_group(i)
            rows.append(rg.num_rows)
            stats = rg.column(pi).statistics if pi >= 0 else None
            span = None
            if stats is not None and stats.has_min_max and stats.min == stats.max:
                single.setdefault(stats.min, []).append(i)
                ss = rg.column(si).statistics if si >= 0 else None
                if (stats.has_null_count and not stats.null_count and ss is not None and ss.has_min_max
                        and ss.has_null_count and not ss.null_count and isinstance(ss.min_raw, int)):
                    span = (ss.min_raw, ss.max_raw)
            elif stats is not None and stats.has_min_max:
                mixed.append((i, stats.min, stats.max))
            else:
                mixed.append((i, None, None))
            starts.append(span)
        if len(_ROW_GROUPS) > 1000:
            _ROW_GROUPS.clear()
        got = _ROW_GROUPS[key] = _FileGroups(meta, single, mixed, rows, starts)
    return got


#: text columns of intake records read dictionary-encoded by a cycle (few distinct values; the
#: rated file keeps them so, and rating takes a dictionary's codes as they are)
DICTIONARY_COLUMNS = ("partner", "direction", "service")


def _read_partner(path: str, partner: str, period: Period | None = None, *, start: datetime | None = None,
                  end: datetime | None = None, number_prefix: str | None = None,
                  dictionaries: bool = False) -> Iterator[pa.Table]:
    """The records of ``partner`` in ``period`` (or ``start``..``end``) from an intake records
    file, in file order, in tables of at most about CHUNK_ROWS rows (:func:`partner_reads`,
    :meth:`PartnerRead.read`); ``number_prefix``: only b_numbers starting with it;
    ``dictionaries``: :data:`DICTIONARY_COLUMNS` read as dictionaries (else plain strings)."""
    lo_dt, hi_dt = (period.start, period.end) if period else (start, end)
    for r in partner_reads(path, partner, lo_dt, hi_dt):
        t = r.read(path, number_prefix=number_prefix, dictionaries=dictionaries)
        if t.num_rows:
            yield t


@dataclass(frozen=True)
class PartnerRead:
    """One read of a partner's records of a period: row groups of an intake file read together
    (``whole``: their statistics show them wholly the partner's and in the period, so they are
    taken without a filter). Plain data: a worker makes the read by path."""

    partner: str
    groups: tuple[int, ...]
    rows: int  # the row groups' rows (the partner's records in them, or more)
    lo_us: int
    hi_us: int
    whole: bool

    def read(self, path: str, *, number_prefix: str | None = None, dictionaries: bool = False) -> pa.Table:
        """The partner's records of the period in the row groups (columns decoded on Arrow's
        threads), in file order."""
        meta = _file_groups(path).meta
        names = meta.schema.to_arrow_schema().names
        as_dict = [c for c in DICTIONARY_COLUMNS if c in names] if dictionaries else []
        pf = pq.ParquetFile(path, metadata=meta, read_dictionary=as_dict or None)
        t = pf.read_row_groups(list(self.groups), use_threads=True)
        if number_prefix or not self.whole:
            lo, hi = pa.scalar(self.lo_us, _US_UTC), pa.scalar(self.hi_us, _US_UTC)
            mask = pc.and_(pc.equal(t.column("partner"), self.partner),
                           pc.and_(pc.greater_equal(t.column("start"), lo), pc.less(t.column("start"), hi)))
            if number_prefix:
                mask = pc.and_(mask, pc.fill_null(pc.starts_with(t.column("b_number"), number_prefix), False))
            t = t.filter(mask)
        return t.combine_chunks()


def partner_reads(path: str, partner: str, start: datetime, end: datetime,
                  rows: int = CHUNK_ROWS) -> list[PartnerRead]:
    """The reads of ``partner``'s records starting in ``start``..``end`` in an intake records
    file: its row groups that may hold them (from their statistics), in file order, grouped
    into reads of at most ``rows`` rows (a row group larger than that is a read of its own)."""
    fg = _file_groups(path)
    _meta, wanted = _partner_groups(path, partner)
    lo_us = pa.scalar(start, _US_UTC).value
    hi_us = pa.scalar(end, _US_UTC).value
    own = set(fg.single.get(partner, ()))

    def whole(i: int) -> bool:
        span = fg.starts[i]
        return span is not None and i in own and span[0] >= lo_us and span[1] < hi_us

    runs: list[list[int]] = []
    size = 0
    for i in wanted:
        if not runs or size + fg.rows[i] > rows:
            runs.append([])
            size = 0
        runs[-1].append(i)
        size += fg.rows[i]
    return [PartnerRead(partner, tuple(g), sum(fg.rows[i] for i in g), lo_us, hi_us, all(whole(i) for i in g))
            for g in runs]


#: threads that read intake row groups ahead of the rating (Arrow's reading releases the GIL)
READ_AHEAD = 2
#: the process's pools of threads by name (made on first use; forgotten in a forked child,
#: where the parent's threads do not exist)
_POOLS: dict[str, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _shared_pool(name: str, workers: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        pool = _POOLS.get(name)
        if pool is None:
            pool = _POOLS[name] = ThreadPoolExecutor(workers, thread_name_prefix=name)
        return pool


os.register_at_fork(after_in_child=_POOLS.clear)


def _read_pool() -> ThreadPoolExecutor:
    return _shared_pool("icdsl-intake-read", READ_AHEAD)


def read_ahead(reads: Iterable[Callable[[], Any]], depth: int = READ_AHEAD) -> Iterator[Any]:
    """The results of ``reads`` (functions of no argument), in order, the next ``depth`` of them
    made on the read threads while the caller works on the current one (at most ``depth``
    results wait, so memory stays bounded). An error is raised where it happened in the order."""
    pending: deque[Any] = deque()
    it = iter(reads)
    try:
        for fn in it:
            pending.append(_read_pool().submit(fn))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()


@dataclass(frozen=True)
class IntakeRecords:
    """A partner's records of a period in intake files, as the engine's ``records``: a function
    returning fresh chunks, made of plain data so that a worker process (another machine, see
    :mod:`icdsl.billing.fleet`) reads the same files by path. ``root``: the data folder
    (``$ICDSL_WORKER_DATA`` overrides it where the folder is mounted elsewhere); ``files``:
    (intake batch id, records file relative to the data folder). The files' row groups are read
    ahead on threads (:func:`read_ahead`) while the chunks before them are rated."""

    root: str
    files: tuple[tuple[int, str], ...]
    partner: str
    period: Period

    def pieces(self) -> list[tuple[int, str, PartnerRead]]:
        """(intake batch, absolute path, read) of every read of the partner's records, in order."""
        data = data_dir(worker_root(self.root))
        out = []
        for batch_id, path in self.files:
            p = str(data.abs(path))
            out += [(batch_id, p, r) for r in partner_reads(p, self.partner, self.period.start, self.period.end)]
        return out

    def __call__(self) -> Iterator[tuple[int, pa.Table]]:
        pieces = self.pieces()
        reads = [functools.partial(_read_piece, batch_id, path, r) for batch_id, path, r in pieces]
        for batch_id, chunk in read_ahead(reads):
            if chunk.num_rows:
                yield batch_id, chunk


def _read_piece(batch_id: int, path: str, r: PartnerRead) -> tuple[int, pa.Table]:
    return batch_id, r.read(path, dictionaries=True)


#: a partner with more records than this in a period is rated in pieces of about this many
#: records on several workers (``cycle run --all --workers``; :mod:`icdsl.billing.fleet`)
SPLIT_ROWS = 2_000_000


@dataclass(frozen=True)
class PartFiles:
    """The files a piece rated on its own wrote (temporary names in the cycle's folder, paths
    relative to the data folder ``root``; removed with the cycle's other leftovers when its
    result is written): what :meth:`icdsl.cycle.rater.Rater.absorb` reads, a table at a time."""

    root: str
    rated_path: str
    rejects_path: str
    charges_path: str

    def _tables(self, rel: str) -> Iterator[pa.Table]:
        pf = pq.ParquetFile(data_dir(worker_root(self.root)).abs(rel))
        for rb in pf.iter_batches(batch_size=READ_ROWS, use_threads=True):
            yield pa.Table.from_batches([rb])

    def rated(self) -> Iterator[pa.Table]:
        return self._tables(self.rated_path)

    def rejects(self) -> Iterator[pa.Table]:
        return self._tables(self.rejects_path)

    def record_charges(self) -> Iterator[pa.Table]:
        return self._tables(self.charges_path)


@dataclass(frozen=True)
class PieceJob:
    """A piece of a partner's records of a cycle, to rate on its own (:func:`rate_piece`): the
    reads (intake batch, records file relative to the data folder, :class:`PartnerRead`), in
    order; ``index``: its rank among the cycle's pieces. Plain data, for a worker."""

    partner: str
    period: Period
    root: str
    rel_dir: str
    id_type: pa.DataType
    scale: int
    dims: tuple[str, ...]
    index: int
    reads: tuple[tuple[int, str, PartnerRead], ...]

    @property
    def records(self) -> int:
        return sum(r.rows for _b, _p, r in self.reads)


def piece_jobs(job: CycleJob, rows: int = SPLIT_ROWS) -> list[PieceJob]:
    """The cycle's reads of intake records cut into pieces of about ``rows`` records, in order
    (one piece when the partner has ``rows`` records or fewer)."""
    records = job.inputs.records
    assert isinstance(records, IntakeRecords)
    data = data_dir(worker_root(records.root))
    reads: list[tuple[int, str, PartnerRead]] = []
    for batch_id, path in records.files:
        reads += [(batch_id, path, r) for r in partner_reads(str(data.abs(path)), records.partner,
                                                                records.period.start, records.period.end)]
    pieces: list[list[tuple[int, str, PartnerRead]]] = []
    size = 0
    for r in reads:
        if not pieces or size >= rows:
            pieces.append([])
            size = 0
        pieces[-1].append(r)
        size += r[2].rows
    dims = check_dims(job.inputs.dims)
    return [PieceJob(job.partner, records.period, records.root, job.rel_dir, job.id_type, job.scale, dims, i,
                     tuple(p)) for i, p in enumerate(pieces)]


def rate_piece(piece: PieceJob, plan: Plan) -> RatedPiece:
    """Rate a piece of a cycle's records on its own (a worker's task): read its intake row
    groups by path, rate them, write the rated records, rejects and record charges to temporary
    files of the cycle's folder (never committed: :meth:`icdsl.cycle.rater.Rater.absorb`
    copies them into the cycle's files), and return the piece (counts, lines, partial sums)."""
    data = data_dir(worker_root(piece.root))
    tag = f"part{piece.index:04d}"
    writers = (data.writer(piece.rel_dir, f"{tag}-rated", rated_file_schema(piece.id_type, piece.scale),
                           dictionaries=True, statistics=()),
               data.writer(piece.rel_dir, f"{tag}-rating-rejects", REJECTS_FILE_SCHEMA, statistics=()),
               data.writer(piece.rel_dir, f"{tag}-record-charges",
                           record_charges_file_schema(piece.id_type, piece.scale), dictionaries=True, statistics=()))
    code = piece.partner
    try:
        rater = Rater(plan, writers[0], writers[1], piece.scale, piece.dims, piece.period, charges=True,
                      charges_w=writers[2], events=tuple(event_names(plan, code)), partner=code,
                      timezone=piece.period.timezone)
        reads = [functools.partial(_read_piece, b, str(data.abs(path)), r) for b, path, r in piece.reads]
        for batch_id, chunk in read_ahead(reads):
            if chunk.num_rows:
                rater.feed(chunk, batch_id)
        rater.flush()
        paths = [w.close(sync=False).relative_to(data.root).as_posix() for w in writers]
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return rater.piece(PartFiles(piece.root, *paths))


def worker_root(root: str) -> str:
    """The data folder as this process sees it: ``$ICDSL_WORKER_DATA`` if set (a worker on a
    machine that mounts the folder elsewhere), else the coordinator's path."""
    return os.environ.get("ICDSL_WORKER_DATA") or root


def partner_inputs(s: Session, partner: str, start: datetime, end: datetime) -> list[tuple[int, str, str, int]]:
    """(batch id, records file, its sha256, records of the partner) of every intake batch with
    records of ``partner`` starting in ``start``..``end``."""
    return [tuple(r) for r in s.execute(_PARTNER_INPUTS, {"partner": partner, "start": start, "end": end}).all()]


_PARTNER_INPUTS = (  # built once: every cycle asks it
    select(M.IntakePartnerStat.batch_id, M.DataFile.path, M.DataFile.sha256, M.IntakePartnerStat.records)
    .join(M.DataFile, sa.and_(M.DataFile.batch_id == M.IntakePartnerStat.batch_id, M.DataFile.kind == "intake_records"))
    .where(M.IntakePartnerStat.partner == _B("partner"), M.IntakePartnerStat.min_start < _B("end"),
           M.IntakePartnerStat.max_start >= _B("start"))
    .order_by(M.IntakePartnerStat.batch_id))


def _id_type(store: Store, inputs: Iterable[tuple[int, str, str, int]]) -> pa.DataType:
    id_types = set()
    for _batch, path, sha, _n in inputs:
        store.data.verify(path, sha)
        # the footer read once per file and process (cached with its row groups)
        meta, _single, _mixed = _file_groups(str(store.data.abs(path)))
        id_types.add(meta.schema.to_arrow_schema().field("id").type)
    return pa.int64() if id_types == {pa.int64()} else pa.string()


# --------------------------------------------------------------------------- running a cycle


def _report(s: Session, cycle: M.BillingCycle, period: Period, *, already: bool,
            findings: list[Finding] | None = None, invoices: list[Any] | None = None,
            line_counts: dict[int, int] | None = None, statements: list[M.SettlementStatement] | None = None,
            shares: list[M.ShareStatement] | None = None) -> CycleReport:
    """The cycle's report, read from the store; a caller that holds the cycle's invoices (rows,
    with ``line_counts``, or their :class:`InvoiceSummary`), statements or shares passes them
    instead. Its files, input batches and charge line count are read in one query."""
    of = {"cycle_id": cycle.id}
    files: dict[str, tuple[str, str]] = {}
    batches: list[int] = []
    charge_lines = 0
    for what, value, other in s.execute(_REPORT_FACTS, of):
        if what == "batch":
            batches.append(int(value))
        elif what == "charge_lines":
            charge_lines = int(value)
        else:
            files[what] = (value, other)
    batches.sort()
    if invoices is None:
        invoices = s.execute(_INVOICE_ROWS, of).all()
    summaries = [inv for inv in invoices if isinstance(inv, InvoiceSummary)]
    if len(summaries) != len(invoices):
        if line_counts is None:  # one query for every invoice's line count
            line_counts = dict(s.execute(_LINE_COUNTS, {"ids": [i.id for i in invoices]}).all()) if invoices else {}
        summaries = [_invoice_summary(inv, line_counts.get(inv.id, 0)) for inv in invoices]
    if statements is None:
        statements = list(s.scalars(_STATEMENTS_OF, of))
    if shares is None:
        shares = list(s.scalars(_SHARES_OF, of))
    if findings is None:
        findings = [finding_of(r) for r in s.execute(_LATEST_FINDING_ROWS, of)]
    rated, rejects = files.get("rated"), files.get("rating_rejects")
    stm = max(statements, key=lambda x: x.id) if statements else None
    return _report_of(cycle, period, already=already, findings=findings, invoices=summaries,
                      statement=_statement_summary(stm, len((stm.details or {}).get("lines", []))) if stm else None,
                      shares=[_share_summary(r) for r in shares], rated=rated,
                      rejects_file=rejects[0] if rejects else None, batches=batches, charge_lines=charge_lines)


def _invoice_summary(inv: Any, lines: int) -> InvoiceSummary:
    return InvoiceSummary(inv.id, inv.stream, inv.currency, inv.status, inv.subtotal, lines, inv.number, inv.tax_kind,
                          inv.tax_amount, inv.total, inv.tax_note, inv.doc_type or "invoice")


def _statement_summary(stm: Any, lines: int) -> StatementSummary:
    return StatementSummary(stm.id, stm.currency, stm.status, stm.receivable, stm.payable, stm.net, lines, stm.number)


def _share_summary(r: M.ShareStatement) -> ShareSummary:
    return ShareSummary(r.id, r.party, r.currency, r.status, r.total, len((r.details or {}).get("lines", [])),
                        r.number)


def _report_of(cycle: M.BillingCycle, period: Period, *, already: bool, findings: list[Finding],
               invoices: list[InvoiceSummary], statement: StatementSummary | None, shares: list[ShareSummary],
               rated: tuple[str, str] | None, rejects_file: str | None, batches: list[int],
               charge_lines: int) -> CycleReport:
    """The report of a cycle from what the caller holds: the cycle's row, its documents' summaries,
    its files (``rated``: path and sha256), the intake batches it read."""
    by_reason: dict[str, int] = {}
    if cycle.totals and "_rejects_by_reason" in cycle.totals:
        by_reason = dict(cycle.totals["_rejects_by_reason"])
    totals = {k: Decimal(v) for k, v in (cycle.totals or {}).items() if not k.startswith("_")}
    return CycleReport(
        cycle_id=cycle.id, partner=cycle.partner_code, period=period, status=cycle.status, already=already,
        records_in=cycle.records_in or 0, rated=cycle.rated_count or 0, rejected=cycle.rejected_count or 0,
        rejects_by_reason=by_reason, totals=totals, invoices=invoices, statement=statement, findings=findings,
        rated_file=rated[0] if rated else None, rated_sha256=rated[1] if rated else None, rejects_file=rejects_file,
        batches=batches, shares=shares, charge_lines=charge_lines, events=int((cycle.totals or {}).get("_events", 0)),
        refunds=int((cycle.totals or {}).get("_refunds", 0)),
    )


def latest_findings(s: Session, cycle: M.BillingCycle) -> list[M.ValidationFinding]:
    """The findings of the cycle's latest validated run."""
    return list(s.scalars(_LATEST_FINDINGS, {"cycle_id": cycle.id}))


def finding_of(r: Any) -> Finding:
    """A finding of a ``validation_findings`` row (an ORM object or a row)."""
    return Finding(r.code, r.severity, r.message, r.count, tuple(r.samples or ()), r.details, r.validator,
                   r.accepted)


def _lock_cycle(store: Store, s: Session, partner: M.Partner, period: Period) -> M.BillingCycle | None:
    if not store.lock(s, f"cycle:{partner.code}", wait=False):
        raise CycleBusy(
            f"a billing cycle of partner {partner.code} is being run by another session right now; "
            f"{period.label} was not started. Wait for it to finish (`icdsl cycle status {partner.code}`)."
        )
    q = _CYCLE_OF_LOCKED if store.is_postgres else _CYCLE_OF
    try:
        return s.scalars(q, {"partner_id": partner.id, "start": period.start, "end": period.end}).first()
    except sa.exc.OperationalError as e:  # LockNotAvailable: someone holds the row (by hand?)
        raise CycleBusy(f"the cycle {partner.code} {period.label} is locked by another session") from e


def _discard(store: Store, s: Session, cycle: M.BillingCycle) -> None:
    """Remove a not-finalized cycle's drafts and file rows so that it can be rated again (the
    files themselves stay until the next run or gc: the transaction may still roll back).
    Findings stay (they are the history of its runs); adjustments billed on it stay assigned."""
    s.execute(delete(M.ChargeApplication).where(M.ChargeApplication.cycle_id == cycle.id))
    s.execute(delete(M.ChargeLine).where(M.ChargeLine.cycle_id == cycle.id))
    s.execute(delete(M.ShareStatement).where(M.ShareStatement.cycle_id == cycle.id))
    s.execute(delete(M.RecordChargeFile).where(M.RecordChargeFile.cycle_id == cycle.id))
    cycle.charge_usage = None
    inv_ids = list(s.scalars(select(M.Invoice.id).where(M.Invoice.cycle_id == cycle.id)))
    if inv_ids:
        s.execute(delete(M.InvoiceLine).where(M.InvoiceLine.invoice_id.in_(inv_ids)))
        s.execute(delete(M.Invoice).where(M.Invoice.id.in_(inv_ids)))
    s.execute(delete(M.SettlementStatement).where(M.SettlementStatement.cycle_id == cycle.id))
    s.execute(delete(M.DataFile).where(M.DataFile.cycle_id == cycle.id))
    s.execute(delete(M.CycleInput).where(M.CycleInput.cycle_id == cycle.id))
    cycle.records_in = cycle.rated_count = cycle.rejected_count = None
    cycle.totals = None
    cycle.rated_at = cycle.validated_at = cycle.invoiced_at = None
    _event(s, cycle, "state", f"discarded the {cycle.status} results to rate again", to="open")
    cycle.status = "open"
    s.flush()


def reopen_cycle(store: Store, s: Session, cycle: M.BillingCycle, why: str) -> bool:
    """Put a cycle that is not finalized back to ``open`` under its partner's lock (its drafts
    discarded, as a rerun does), so that its next run rates its records again with the rules
    then loaded (used by ``icdsl rejects resubmit``). False if it is open already; raises
    :class:`CycleStateError` for a finalized cycle and :class:`CycleBusy` if it is being run."""
    if cycle.status == "finalized":
        raise CycleStateError(f"cycle {cycle.partner_code} {cycle.label} is finalized: it is never changed")
    if not store.lock(s, f"cycle:{cycle.partner_code}", wait=False):
        raise CycleBusy(f"a billing cycle of partner {cycle.partner_code} is being run by another session right now")
    if cycle.status == "open":
        return False
    _discard(store, s, cycle)
    _event(s, cycle, "progress", why)
    return True


def run_cycle(store: Store, partner: str, period: Any, plan: Plan, *, program: Any = None,
              rerate: bool = False, dims: Iterable[str] | None = None, accept: Iterable[str] = (),
              policy: Policy | None = None, validators: Iterable[Any] | None = None,
              progress: Progress | None = None) -> CycleReport:
    """Open the cycle, rate, validate and invoice (draft) ``partner``'s ``period``, all in one
    transaction (one commit: a cycle is in the store whole or not at all, its opening included).

    A cycle already invoiced or finalized is left as it is (``already=True``) unless
    ``rerate`` (refused once finalized: corrections go on the next cycle, see
    :mod:`icdsl.billing.corrections`). A cycle that validation stopped (``rated``) is rated
    again. ``dims``: the line dimensions (:data:`icdsl.billing.invoicing.DIMENSIONS`);
    ``accept``: codes of error findings to accept (``"all"``: every one)."""
    dims_t = check_dims(dims)
    if program is not None:
        store.load_plan(plan, program)
    opened: tuple[int, Period] | None = None  # (partner id, period) once the cycle is open
    try:
        with store.session() as s:
            prow, per = resolve_period(s, partner, period, plan)
            why = frequency_refusal(prow.code, prow.billing, per, prow.timezone)
            if why is not None:
                raise CycleError(why)
            cyc = _open(store, s, prow, per)
            if cyc.status in ("invoiced", "finalized") and not rerate:
                return _report(s, cyc, per, already=True)
            opened = (prow.id, per)
            return run_locked(store, s, prow, per, plan, rerate=rerate, dims=dims_t, accept=tuple(accept),
                              policy=policy, validators=validators, progress=progress, cycle=cyc)
    except CycleBusy:
        raise
    except Exception as e:
        if opened is not None:
            _log_failed_run(store, *opened, e)
        raise


def _open(store: Store, s: Session, prow: M.Partner, per: Period) -> M.BillingCycle:
    """The cycle's row, created (state ``open``) if needed: refused if it overlaps another."""

    cyc = _lock_cycle(store, s, prow, per)
    if cyc is not None:
        return cyc
    overlap = s.execute(_OVERLAP, {"partner_id": prow.id, "start": per.start, "end": per.end}).first()
    if overlap is not None:
        raise CycleError(f"{prow.code} {per.label} overlaps cycle {overlap.label} "
                         f"({overlap.local_start} .. {overlap.local_end - timedelta(days=1)}): "
                         "a record must be billed once")
    return _new_cycle(s, prow, per, base.now(), put_off=True)


def _log_failure(store: Store, cycle_id: int, e: Exception) -> None:
    """Record a failed run on the (open) cycle, in a transaction of its own."""

    try:
        with store.session() as s:
            cyc = s.get(M.BillingCycle, cycle_id)
            if cyc is not None:
                s.add(M.CycleEvent(cycle_id=cyc.id, at=base.now(), kind="error", from_state=None, to_state=None,
                                   message=f"{type(e).__name__}: {e}", details={"attempt": cyc.attempts + 1}))
    except Exception:  # pragma: no cover - the log must not hide the original error
        pass


def _log_failed_run(store: Store, partner_id: int, per: Period, e: Exception) -> None:
    """Record a failed run (rolled back, its opening with it) on the cycle, opened for it if it
    was new, in a transaction of its own."""

    try:
        with store.session() as s:
            prow = s.get(M.Partner, partner_id)
            if prow is None:  # pragma: no cover - partners are never removed
                return
            cyc = s.scalars(_CYCLE_OF, {"partner_id": prow.id, "start": per.start, "end": per.end}).first()
            if cyc is None:
                cyc = _new_cycle(s, prow, per, base.now())
            _insert(s, M.CycleEvent, [dict(cycle_id=cyc.id, at=base.now(), kind="error", from_state=None,
                                           to_state=None, message=f"{type(e).__name__}: {e}",
                                           details={"attempt": cyc.attempts + 1})])
    except Exception:  # pragma: no cover - the log must not hide the original error
        pass


def _new_cycle(s: Session, prow: M.Partner, per: Period, t: datetime, *, put_off: bool = False) -> M.BillingCycle:
    """The cycle's row, opened (``put_off``: its first event written with the next ones)."""
    cyc = M.BillingCycle(
        partner_id=prow.id, partner_code=prow.code, frequency=per.frequency, label=per.label,
        timezone=per.timezone, local_start=per.local_start, local_end=per.local_end, period_start=per.start,
        period_end=per.end, status="open", opened_at=t, attempts=0,
    )
    s.add(cyc)
    s.flush()
    row = dict(cycle_id=cyc.id, at=t, kind="state", from_state=None, to_state="open", message=f"opened {per}",
               details=None)
    if put_off:
        _put_off(s, row)
    else:
        _insert(s, M.CycleEvent, [row])
    return cyc


#: the rated file's columns with row-group statistics: those readers select row groups by
#: (``icdsl trace`` and the drill-down read a line's records); not ``partner``: a cycle's file
#: holds one partner's records (statistics of a dictionary column cost a tenth of the encoding)
RATED_STATISTICS = ("id", "start", "batch_id", "line")
#: the rated file's integer columns that hardly repeat: delta-encoded, with no dictionary pages
#: tried (ids and times come in intake order, line keys in runs; a sixth less encoding time,
#: files about 15% smaller)
RATED_UNIQUE = ("id", "start", "line")
#: the rated file's codec: lz4 encodes in two thirds of zstd's time, and with the delta-encoded
#: columns its files are no bigger than zstd's were without them; rated files are the biggest
#: thing a cycle writes, and the longest wait of a cycle was for their encoding
RATED_COMPRESSION = "lz4"


class CycleFiles(dict):
    """A cycle's files by kind (``rated``, ``rejects``, ``record_charges``: :class:`WrittenFile`),
    named; :meth:`durable` waits until they and their names are durable (a run in this process
    writes the result to the store meanwhile, and waits just before its commit). Pickled as
    durable files (a worker waits before sending them)."""

    def __init__(self, files: dict[str, WrittenFile], wait: Callable[[], None] | None = None):
        super().__init__(files)
        self._wait = wait

    def durable(self) -> None:
        if self._wait is not None:
            self._wait()
            self._wait = None

    def __reduce__(self) -> tuple[Any, ...]:
        self.durable()
        return (CycleFiles, (dict(self),))


#: threads that write cycles' files (made once per process, as the read threads; a cycle's
#: writes run one after the other on them, :meth:`_FileSinks.submit`)
FILE_THREADS = 2


def _file_pool() -> ThreadPoolExecutor:
    return _shared_pool("icdsl-cycle-files", FILE_THREADS)

#: rejects and record charges of a cycle kept in memory (as well as written) for the engine's
#: reading, up to this many rows; beyond, it reads them from their files
KEEP_ROWS = 1 << 18
#: writes of a cycle's files waiting for the file thread at most
WRITES_BEHIND = 3


class _Behind:
    """A file of the sinks whose writes are made on the sinks' file thread (:class:`_FileSinks`);
    ``keep``: its tables are kept in memory too, up to :data:`KEEP_ROWS` rows (as the file reads
    back: ``schema``); ``check``: sees every table once written (:class:`_RatedCheck`)."""

    def __init__(self, sinks: _FileSinks, writer: Any, *, keep: pa.Schema | None = None, check: Any = None):
        self.sinks = sinks
        self.writer = writer
        self.keep = keep
        self.kept: list[pa.Table] | None = [] if keep is not None else None
        self.check = check
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.rows += table.num_rows
        if self.kept is not None and self.keep is not None:
            self.kept = self.kept + [table.select(self.keep.names).cast(self.keep)] if self.rows <= KEEP_ROWS else None
        self.sinks.submit(self._write, table)

    def _write(self, table: pa.Table) -> None:
        self.writer.write(table)
        if self.check is not None:
            self.check.add(table)

    def table(self) -> pa.Table | None:
        """What was written, if it was kept (None else)."""
        if self.kept is None or self.keep is None:
            return None
        return pa.concat_tables(self.kept) if self.kept else self.keep.empty_table()


class _RatedCheck:
    """The amounts by currency and the line numbers of rated records, added up table by table
    (exact: unscaled int64 by currency code, or Arrow's decimal sums when they might not fit):
    what the store's reconciliation compares with the lines (:func:`_write_result`)."""

    def __init__(self) -> None:
        self.totals: dict[str, Decimal] = defaultdict(Decimal)
        self.seen = np.zeros(0, bool)
        self.others: set[int] = set()

    def add(self, rb: pa.Table | pa.RecordBatch) -> None:
        codes, currencies = grouping.codes(rb.column("currency"))
        amount = rb.column("amount")
        if isinstance(amount, pa.ChunkedArray):
            amount = amount.combine_chunks()
        low = grouping.unscaled(amount)
        if low is not None:
            sums = np.zeros(len(currencies), np.int64)
            np.add.at(sums, codes, low)
            present = np.bincount(codes, minlength=len(currencies)) > 0
            for cur, total, here in zip(currencies.to_pylist(), sums.tolist(), present.tolist(), strict=True):
                if here:
                    self.totals[cur] = EXACT.add(self.totals[cur], Decimal(total).scaleb(-amount.type.scale))
        else:
            t = pa.table({"currency": pc.cast(rb.column("currency"), pa.string()), "amount": amount})
            g = t.group_by("currency", use_threads=False).aggregate([("amount", "sum")])
            for cur, total in zip(g.column("currency").to_pylist(), g.column("amount_sum").to_pylist(), strict=True):
                self.totals[cur] = EXACT.add(self.totals[cur], total)
        line = rb.column("line")
        if not len(line):
            return
        if line.null_count or pc.min(line).as_py() < 0:
            self.others.update(pc.unique(line).to_pylist())
            return
        keys = np.asarray(line.to_numpy() if isinstance(line, pa.Array) else line.to_numpy())
        top = int(keys.max()) + 1
        if top > len(self.seen):
            self.seen = np.concatenate([self.seen, np.zeros(top - len(self.seen), bool)])
        self.seen[keys] = True

    def result(self) -> tuple[dict[str, Decimal], frozenset[int]]:
        return dict(self.totals), frozenset(self.others | set(np.flatnonzero(self.seen).tolist()))


class _FileSinks:
    """The engine's sinks for the store: the cycle's rated records, rating rejects and record
    charges streamed to Parquet files in the data folder.

    Every write is made on a file thread (Parquet encoding releases the GIL: the next chunk is
    read and rated meanwhile; at most :data:`WRITES_BEHIND` writes wait; the threads are the
    process's, :func:`_file_pool`, and a cycle's writes run one after the other), and so is
    :meth:`finish` (close, fsync, content-addressed names, with the kill-safety checkpoints):
    it returns at once, and the engine validates and drafts while the files are made durable.
    :attr:`files` waits for them (and raises what a write raised). The rejects and record
    charges the engine reads are kept in memory as they are written (up to :data:`KEEP_ROWS`);
    the rated records' amounts and lines are added up as written (``WrittenFile.check``), which
    the store reconciles with the lines instead of reading the file back."""

    def __init__(self, store: Store, rel_dir: str, id_type: pa.DataType, scale: int):
        self.store = store
        # the executor's dictionary columns written as they are (read back as plain strings)
        self._rated = store.data.writer(rel_dir, "rated", rated_file_schema(id_type, scale), dictionaries=True,
                                        statistics=RATED_STATISTICS, unique=RATED_UNIQUE,
                                        compression=RATED_COMPRESSION)
        self._rejects = store.data.writer(rel_dir, "rating-rejects", REJECTS_FILE_SCHEMA)
        charges_schema = record_charges_file_schema(id_type, scale)
        self._charges = store.data.writer(rel_dir, "record-charges", charges_schema, dictionaries=True)
        self._check = _RatedCheck()
        self.rated = _Behind(self, self._rated, check=self._check)
        self.rejects = _Behind(self, self._rejects, keep=REJECTS_FILE_SCHEMA)
        self.record_charges = _Behind(self, self._charges, keep=charges_schema)
        self._last: Any = None  # the future of the last task submitted
        self._pending: deque[Any] = deque()
        self._error: BaseException | None = None
        self._files: dict[str, WrittenFile] | None = None
        self._named = threading.Event()

    def __enter__(self) -> _FileSinks:
        for w in (self._rated, self._rejects, self._charges):
            w.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None and self._named.is_set():
            return  # named: their durability is waited for by whoever holds them (CycleFiles.durable)
        try:
            self._drain()
        except BaseException:  # noqa: BLE001 - the writers are aborted below; the first error stands
            if exc[0] is None:
                raise
        finally:
            for w in (self._charges, self._rejects, self._rated):
                w.__exit__(*exc)

    # ------------------------------------------------------------------ the file thread
    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on a file thread after what was submitted before (each task waits
        for the one before it: the pool takes tasks in order, so that one is running or done);
        a write that failed is raised here (by a later write) or by :attr:`files`."""
        self._last = _file_pool().submit(self._guarded, self._last, fn, *args)
        self._pending.append(self._last)
        while self._pending and (len(self._pending) > WRITES_BEHIND or self._pending[0].done()):
            self._pending.popleft().result()

    def _guarded(self, before: Any, fn: Callable[..., None], *args: Any) -> None:
        if before is not None:
            before.exception()  # waits for it (what it raised is in self._error)
        if self._error is not None:
            return  # raised once, by the task that failed
        try:
            fn(*args)
        except BaseException as e:
            self._error = e
            raise

    def _drain(self) -> None:
        """Wait for everything submitted; raise the first error."""
        while self._pending:
            self._pending.popleft().result()
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        self.submit(self._name)
        self.submit(self._sync)

    def _name(self) -> None:
        """The three files closed and named (content-addressed), not yet durable."""
        files = {"rated": self._rated.name(), "rejects": self._rejects.name(), "record_charges": self._charges.name()}
        base.checkpoint("cycle:files_written")
        files["rated"] = replace(files["rated"], check=self._check.result())
        self._files = files
        self._named.set()

    def _sync(self) -> None:
        """The three files and their names made durable (at once)."""
        fsync_files([w.synced for w in (self._rated, self._rejects, self._charges)])
        sync_dir(self._rated.dir)
        base.checkpoint("cycle:files_committed")

    def named(self) -> CycleFiles:
        """The files, once named (waits for that, not for their durability): their
        :meth:`CycleFiles.durable` waits for the rest of :meth:`finish`'s work."""
        while not self._named.wait(0.05):
            if self._error is not None or not self._pending:
                self._drain()  # raises what failed
                break
        if self._files is None:
            raise RuntimeError("the cycle's files were not finished")
        return CycleFiles(self._files, self._drain)

    @property
    def files(self) -> CycleFiles:
        """The files, once named and durable (waits for :meth:`finish`'s work)."""
        self._drain()
        if self._files is None:
            raise RuntimeError("the cycle's files were not finished")
        return CycleFiles(self._files)

    # ------------------------------------------------------------------ reading
    def _abs(self, kind: str) -> Any:
        return self.store.data.abs(self.files[kind].path)

    def read_rated(self, columns: Iterable[str]) -> pa.Table:
        return pq.read_table(self._abs("rated"), columns=list(columns))

    def read_rated_batches(self, columns: Iterable[str]) -> Iterator[pa.Table]:
        for rb in pq.ParquetFile(self._abs("rated")).iter_batches(columns=list(columns), batch_size=READ_ROWS * 4,
                                                                  use_threads=False):
            yield pa.Table.from_batches([rb])

    def read_rejects(self) -> pa.Table:
        kept = self.rejects.table()
        if kept is not None:
            return kept
        return pq.read_table(self._abs("rejects"))

    def read_record_charges(self) -> pa.Table | None:
        if not self.record_charges.rows:
            return None
        kept = self.record_charges.table()
        return kept if kept is not None else pq.read_table(self._abs("record_charges"))


def cycle_inputs(store: Store, s: Session, prow: M.Partner, per: Period, plan: Plan, cycle_id: int,
                 batches: list[tuple[int, str, str, int]], **options: Any) -> engine.CycleInputs:
    """The engine's inputs of a cycle, read from the store: the partner's records of the period
    (from every intake batch in ``batches``), inventory, history, FX rates, traffic profile."""
    records = IntakeRecords(str(store.data.root), tuple((b, path) for b, path, _sha, _n in batches), prow.code, per)
    others = other_lines(s, prow.id, cycle_id)
    billed_here = targeted(s, cycle_id)  # the adjustments billed on the cycle, read once
    history = engine.History(
        cycles=history_of(s, prow, per, others), billed_lines=tuple(ln for _c, ln in others),
        credits=tuple(billed_adjustments(s, plan, cycle_id, billed_here)),
        adjustments=tuple(adjustment_line(s, a) for a, _deduct in billed_here if a.placement != "share"),
        share_adjustments=tuple(share_adjustments(s, cycle_id, billed_here)),
        daily=daily_history(s, prow.code, per.local_start - timedelta(days=HISTORY_DAYS), per.local_start),
        last_data_day=last_data_day(s, per))
    return engine.CycleInputs(plan=plan, partner=store_partner(prow, plan), period=per, records=records,
                              inventory=tuple(partner_items(s, prow.id, prow.code)), history=history,
                              fx=FxTable.load(s, plan), expected=sum(n for *_x, n in batches),
                              interims=tuple(interims_of(s, prow.id, per.label)), **options)


def store_partner(prow: M.Partner, plan: Plan | None = None) -> PlanPartner:
    """The partner as the engine sees it: the plan's declaration (the store checked that it is
    the one loaded), else the store's row."""
    declared = plan.partner(prow.code) if plan is not None else None
    if declared is not None:
        return declared
    return PlanPartner(code=prow.code, name=prow.name, currency=prow.currency, timezone=prow.timezone,
                       billing=prow.billing, due_days=prow.due_days, tax=Tax(prow.tax_kind, prow.tax_rate))


def run_locked(store: Store, s: Session, prow: M.Partner, per: Period, plan: Plan, *, rerate: bool = False,
               dims: tuple[str, ...] | None = None, accept: tuple[str, ...] = (), policy: Policy | None = None,
               validators: Iterable[Any] | None = None, progress: Progress | None = None,
               cycle: M.BillingCycle | None = None) -> CycleReport:
    """The body of :func:`run_cycle`, inside the caller's transaction ``s``, in three steps: read
    the engine's inputs from the store (:func:`read_job`), run the engine (:func:`run_job`),
    write the result (:func:`_write_result`). :mod:`icdsl.billing.fleet` runs the middle step
    on a Dask worker and the other two in the coordinator. ``cycle``: the cycle's row when the
    caller has locked it in ``s`` already (:func:`run_cycle` opens it so).

    The session does not flush on its own meanwhile: the cycle's row, changed at each step, is
    written once, with the result (a month is hundreds of cycles: each statement counts)."""

    dims = check_dims(dims)
    with s.no_autoflush:
        return _run_locked(store, s, prow, per, plan, rerate=rerate, dims=dims, accept=accept, policy=policy,
                           validators=validators, progress=progress, cycle=cycle)


def _run_locked(store: Store, s: Session, prow: M.Partner, per: Period, plan: Plan, *, rerate: bool,
                dims: tuple[str, ...], accept: tuple[str, ...], policy: Policy | None,
                validators: Iterable[Any] | None, progress: Progress | None,
                cycle: M.BillingCycle | None) -> CycleReport:
    cyc = cycle if cycle is not None else _lock_cycle(store, s, prow, per)
    base.checkpoint("cycle:locked")
    if cyc is None:
        raise CycleStateError(f"the cycle {prow.code} {per.label} disappeared while it was being started")
    if cyc.status in ("invoiced", "finalized") and not rerate:
        return _report(s, cyc, per, already=True)  # another session finished it meanwhile
    refuse_finalized(cyc, prow, per)
    begin_attempt(store, s, cyc, per, plan, dims)
    job = read_job(store, s, cyc, prow, per, plan, dims=dims, accept=accept, policy=policy, validators=validators)
    job_event(s, cyc, job)
    result, files = run_job(job, progress=progress, durable=False)  # made durable while the result is written
    if progress is not None:
        progress("write", 0, 0)  # the result written to the store (its own stage in benchmarks)
    return _write_result(store, s, cyc, prow, per, plan, result, files)


def refuse_finalized(cyc: M.BillingCycle, prow: M.Partner, per: Period) -> None:
    if cyc.status == "finalized":
        raise CycleStateError(f"cycle {prow.code} {per.label} is finalized: it cannot be rated again; "
                              f"corrections go on the next cycle (`icdsl rerate --partner {prow.code} ...`)")


def begin_attempt(store: Store, s: Session, cyc: M.BillingCycle, per: Period, plan: Plan, dims: tuple[str, ...],
                  produced: Iterable[str] = ()) -> None:
    """A new attempt of the locked cycle: files of interrupted runs removed (except ``produced``:
    the files of the result about to be written), earlier results discarded, attempt counted."""
    rel_dir = cycle_dir(cyc.partner_code, per)
    # Under the lock, nobody else writes here: whatever no committed row references is left over
    # (a first run has no folder yet, or only the files produced: no need to ask the store
    # which files it references).
    folder = store.data.abs(rel_dir)
    keep = set(produced)
    removed = (store.data.clean(rel_dir, store.referenced_files(s) | keep)
               if folder.is_dir() and any(f"{rel_dir}/{p.name}" not in keep for p in folder.iterdir()) else [])
    if cyc.status != "open":
        _discard(store, s, cyc)
    cyc.attempts += 1
    cyc.plan_hash = base.plan_hash(plan)
    cyc.line_dims = list(dims)
    if removed:
        _event(s, cyc, "progress", f"removed {len(removed)} file(s) left by an interrupted run",
               details={"files": removed})


@dataclass
class CycleJob:
    """One cycle's work for the engine, read from the store: plain data, picklable (no session,
    no open file, no closure), so that a worker process runs it (:func:`run_job`) while only the
    coordinator talks to the database. ``inputs.records`` is an :class:`IntakeRecords`;
    ``batches``: the intake batches read (the fleet checks before writing that they are still
    the cycle's)."""

    partner: str
    label: str
    root: str
    rel_dir: str
    id_type: pa.DataType
    scale: int
    batches: tuple[int, ...]
    inputs: engine.CycleInputs


def read_job(store: Store, s: Session, cyc: M.BillingCycle, prow: M.Partner, per: Period, plan: Plan,
             **options: Any) -> CycleJob:
    """Step 1: the cycle's inputs read from the store (``options``: the engine's ``dims``,
    ``accept``, ``policy``, ``validators``)."""
    batches = partner_inputs(s, prow.code, per.start, per.end)
    id_type = _id_type(store, batches)
    inputs = cycle_inputs(store, s, prow, per, plan, cyc.id, batches, on_chunk=_rated_checkpoint, **options)
    return CycleJob(prow.code, per.label, str(store.data.root), cycle_dir(prow.code, per), id_type,
                    plan_scale(plan), tuple(b for b, *_x in batches), inputs)


def job_event(s: Session, cyc: M.BillingCycle, job: CycleJob) -> None:
    """The run's first event, written with the result's (put off)."""
    _put_off(s, _event_row(cyc, "progress", f"rating records of {len(job.batches)} intake batch(es)",
                           details={"batches": list(job.batches), "attempt": cyc.attempts}))


@dataclass
class _Folder:
    """What the file sinks use of a store: its data folder (a worker has no store)."""

    data: DataDir


def run_job(job: CycleJob, *, progress: Progress | None = None,
            durable: bool = True) -> tuple[engine.CycleResult, CycleFiles]:
    """Step 2, without the database: the engine run on the job's inputs, its rated records,
    rejects and record charges written to content-addressed files of the cycle's folder (durable
    before the result is returned; the wait for them after the engine's stages is reported as
    stage ``files``). ``durable=False``: returned once named, still being made durable (the
    caller calls ``files.durable()`` before it commits anything that refers to them). Returns
    the result and the files."""
    sinks = _FileSinks(_Folder(data_dir(worker_root(job.root))), job.rel_dir, job.id_type, job.scale)  # type: ignore[arg-type]
    inputs = replace(job.inputs, sinks=sinks, progress=progress)
    try:
        with sinks:
            result = engine.run(inputs)
            # the files were written and made durable on the sinks' thread while the engine went
            # on: what is left to wait for is a stage of its own (benchmarks show it)
            if progress is not None:
                progress("files", 0, 0)
            files = sinks.files if durable else sinks.named()
    except engine_errors.ReconciliationError as e:
        if isinstance(e, StoreError):
            raise
        raise ValidationError(str(e)) from None
    except engine_errors.CycleError as e:
        if isinstance(e, StoreError):
            raise
        raise CycleError(str(e)) from None
    return result, files


def _read_back(path: Any) -> tuple[dict[str, Decimal], frozenset[int]]:
    """The amounts by currency and the line keys of a rated file, read a row group at a time
    (a big partner's records are never all in memory; :class:`_RatedCheck`)."""
    check = _RatedCheck()
    pf = pq.ParquetFile(path, read_dictionary=["currency"])
    for rb in pf.iter_batches(columns=["amount", "currency", "line"], batch_size=READ_ROWS * 4, use_threads=False):
        check.add(rb)
    return check.result()


_RECORD_CHARGE_FILES = M.RecordChargeFile.__table__
# the statements of :func:`_write_result`: a cycle's two data files in one (an executemany
# SQLAlchemy sends as one multi-row INSERT, ids and kinds returned), ...
_INSERT_CYCLE_FILES = sa.insert(_DATA_FILES).returning(_DATA_FILES.c.id, _DATA_FILES.c.kind)
_INSERT_CHARGES_FILE = sa.insert(_RECORD_CHARGE_FILES)
# ... and on PostgreSQL its inputs (arrays of batch ids and counts, unnested) with its record
# charges file in another (the inputs' INSERT in a WITH clause)
_INPUT_ROWS = func.unnest(sa.bindparam("in_batches", type_=pg_dialect.ARRAY(sa.Integer)),
                          sa.bindparam("in_records", type_=pg_dialect.ARRAY(sa.BigInteger))
                          ).table_valued("batch_id", "records").render_derived()
_INSERT_INPUTS_AND_CHARGES_PG = _INSERT_CHARGES_FILE.add_cte(sa.insert(_INPUTS).from_select(
    ["cycle_id", "batch_id", "records"],
    select(sa.bindparam("in_cycle", type_=sa.Integer), _INPUT_ROWS.c.batch_id, _INPUT_ROWS.c.records)).cte("inputs"))


def _write_result(store: Store, s: Session, cyc: M.BillingCycle, prow: M.Partner, per: Period, plan: Plan,
                  result: engine.CycleResult, files: dict[str, Any]) -> CycleReport:
    """The engine's result as rows of the cycle (in the caller's transaction): counts, files,
    findings, drafts, charge lines and statements, after the store's own reconciliation (the
    files read back hold what the lines say). Rows are written with one statement per table
    where ids are not needed, and the report is made from what was written (no reading back)."""

    counts, groups = result.counts, result.lines
    rated_f, rejects_f, charges_f = files["rated"], files["rejects"], files["record_charges"]
    late = late_findings(store, s, prow.code, per.start)
    versions = version_ids(store, s, {g.agreement_hash for g in groups})
    cyc.records_in, cyc.rated_count, cyc.rejected_count = counts.records_in, counts.rated, counts.rejected
    problems = []
    if rated_f.rows != counts.rated or rejects_f.rows != counts.rejected:
        problems.append(f"files hold {rated_f.rows} rated and {rejects_f.rows} rejected records")
    # the rated records' amounts and lines as they were written (the file is not read again),
    # else (files made by an older version) read back from the file
    file_totals, file_lines = (rated_f.check if rated_f.check is not None
                               else _read_back(store.data.abs(rated_f.path)))
    if {k: money(v) for k, v in file_totals.items()} != result.totals:
        problems.append(f"amounts in {rated_f.path} {file_totals} differ from the lines' {result.totals}")
    if rated_f.rows and file_lines != {g.key for g in groups}:
        problems.append("the rated file's line keys differ from the lines")
    for g in groups:
        if g.agreement_hash not in versions:
            problems.append(f"agreement \"{g.agreement}\" v{g.agreement_version} "
                            f"(sha256 {g.agreement_hash[:12]}...) rated records but is not in the store: "
                            "load the rules first with `icdsl load RULES`")
            break
    if problems:
        raise ValidationError(f"cycle {prow.code} {per.label} failed its reconciliation; nothing was committed: "
                              + "; ".join(problems))
    log = _Log(cyc)
    totals_json = {k: str(v) for k, v in sorted(result.totals.items())}
    cyc.totals = dict(totals_json, _rejects_by_reason=dict(counts.by_reason))
    if counts.events:
        cyc.totals["_events"] = counts.events
    if counts.refunds or counts.unusable_refunds:
        cyc.totals["_refunds"] = counts.refunds + counts.unusable_refunds
    cyc.charge_usage = usage_json(result.usage, result.events, result.refunds)
    log.advance("rated", f"rated {counts.rated} of {counts.records_in} records, rejected {counts.rejected}",
                {"rejects_by_reason": dict(counts.by_reason), "rated_sha256": rated_f.sha256})

    # ---- data files, inputs (kept also when validation stops the cycle): two statements, the
    # files (their ids returned), then the inputs and the record charges file (one statement on
    # PostgreSQL; SQLite runs in process, where a statement is no round trip)
    t = base.now()
    conn = s.connection()
    file_rows = [
        dict(kind="rated", path=rated_f.path, sha256=rated_f.sha256, rows=rated_f.rows, bytes=rated_f.bytes,
             amount_totals=totals_json, batch_id=None, cycle_id=cyc.id, partner=prow.code, created_at=t),
        dict(kind="rating_rejects", path=rejects_f.path, sha256=rejects_f.sha256, rows=rejects_f.rows,
             bytes=rejects_f.bytes, amount_totals=None, batch_id=None, cycle_id=cyc.id, partner=prow.code,
             created_at=t)]
    if store.is_postgres or _SQLITE_RETURNING:
        rated_id = next(i for i, kind in conn.execute(_INSERT_CYCLE_FILES, file_rows) if kind == "rated")
    else:  # SQLite before 3.35: no RETURNING
        rated_id = _insert_one(s, M.DataFile, **file_rows[0])
        _insert_one(s, M.DataFile, **file_rows[1])
    batches = sorted(counts.by_batch)
    rc_totals = None
    if charges_f.rows:
        rc = pq.read_table(store.data.abs(charges_f.path), columns=["currency", "amount"])
        g3 = rc.group_by("currency").aggregate([("amount", "sum")])
        rc_totals = {c: str(a) for c, a in zip(g3.column("currency").to_pylist(), g3.column("amount_sum").to_pylist(),
                                                strict=True)}
        del rc
    charges_row = dict(cycle_id=cyc.id, path=charges_f.path, sha256=charges_f.sha256, rows=charges_f.rows,
                       bytes=charges_f.bytes, amount_totals=rc_totals, created_at=t)
    if store.is_postgres:
        conn.execute(_INSERT_INPUTS_AND_CHARGES_PG, dict(charges_row, in_cycle=cyc.id, in_batches=batches,
                                                         in_records=[counts.by_batch[b] for b in batches]))
    else:
        _insert(s, M.CycleInput, [dict(cycle_id=cyc.id, batch_id=b, records=counts.by_batch[b]) for b in batches])
        conn.execute(_INSERT_CHARGES_FILE, charges_row)

    # ---- validated
    # the daily traffic (matrices): read by the findings, written as one row per series
    findings = result.findings + late + assurance.cycle_findings(store, s, cyc, plan, result)
    assurance.write_traffic(s, cyc, assurance.pack_daily(cyc.partner_code, result.traffic)
                            if result.traffic is not None else [])
    _insert(s, M.ValidationFinding, [dict(
        cycle_id=cyc.id, attempt=cyc.attempts, validator=f.validator, code=f.code, severity=f.severity,
        accepted=f.accepted, message=f.message, count=f.count, samples=list(f.samples),
        details=_jsonable(f.details) if f.details else None, created_at=t) for f in findings])
    counts_by = {sev: sum(1 for f in findings if f.severity == sev) for sev in ("error", "warning", "info")}
    written = dict(rated=(rated_f.path, rated_f.sha256), rejects_file=rejects_f.path, batches=batches)
    blocking = [f for f in findings if f.blocking]
    if blocking:
        log.event("error", f"validation: {len(blocking)} error(s) stop invoicing: "
                  + "; ".join(f"{f.code} ({f.count})" for f in blocking),
                  details={"findings": [f.as_dict() for f in blocking]})
        log.audit("cycle_blocked", "billing_cycle", cyc.id,
                  f"{prow.code} {per.label}: validation errors {', '.join(f.code for f in blocking)}")
        log.write(s)
        s.flush()
        _durable(files)
        base.checkpoint("cycle:before_commit")
        report = _report_of(cyc, per, already=False, findings=findings, invoices=[], statement=None, shares=[],
                            charge_lines=0, **written)
        report.timings = result.timings
        return report
    accepted = [f for f in findings if f.severity == "error" and f.accepted]
    if accepted:
        log.audit("findings_accepted", "billing_cycle", cyc.id,
                  f"{prow.code} {per.label}: accepted {', '.join(f.code for f in accepted)}",
                  {"findings": [f.as_dict() for f in accepted]})
    log.advance("validated", f"validated: {counts_by['error']} error(s) ({len(accepted)} accepted), "
                f"{counts_by['warning']} warning(s)", {"findings": counts_by})

    # ---- invoiced (drafts)
    drafts = result.drafts
    assert drafts is not None  # not blocked
    # the cycle's row is changed before the lines are written: one UPDATE, with their flush
    log.advance("invoiced", f"{len(drafts.invoices)} draft invoice(s), {len(groups)} traffic line(s), "
                f"{len(result.charge_lines)} charge line(s)"
                + (", a settlement statement" if drafts.statement else "")
                + (f", {len(result.shares)} revenue-share statement(s)" if result.shares else ""))
    written_drafts = write_drafts(s, cyc, prow, drafts, versions, rated_id, t)
    store_lines(s, cyc, prow, result.charge_lines, plan, written_drafts.made, t)
    shares = write_share_statements(s, cyc, prow, result.shares, t)
    log.audit("cycle_invoiced", "billing_cycle", cyc.id,
              f"{prow.code} {per.label}: {counts.rated} rated, totals {totals_json}")
    log.write(s)
    s.flush()
    _durable(files)
    base.checkpoint("cycle:before_commit")
    report = _report_of(cyc, per, already=False, findings=findings, invoices=written_drafts.invoices,
                        statement=written_drafts.statement, shares=[_share_summary(r) for r in shares],
                        charge_lines=len(result.charge_lines), **written)
    report.timings = result.timings
    return report


def _durable(files: dict[str, Any]) -> None:
    """Wait until the cycle's files are durable (names included) before the transaction that
    refers to them commits (they are made durable while it is written: :class:`CycleFiles`)."""
    if isinstance(files, CycleFiles):
        files.durable()


def _jsonable(v: Any) -> Any:
    return base.jsonable(v)


def daily_history(s: Session, partner: str, first: date, end: date) -> dict[date, int]:
    """The partner's passed records by local day, ``first`` <= day < ``end`` (intake statistics)."""
    rows = s.execute(_DAILY, {"partner": partner, "first": first, "end": end}).all()
    return {d: int(n) for d, n in rows}


def last_data_day(s: Session, period: Period) -> date | None:
    """The local day (in the period's zone) of the latest record ingested for any partner."""
    latest = s.scalar(_LATEST_START)
    return None if latest is None else local_day(latest, period.timezone)


def adjustment_line(s: Session, a: M.Adjustment) -> DraftLine:
    """The invoice line billing an adjustment."""

    src = s.get(M.BillingCycle, a.source_cycle_id)
    what = adjustment_what(a)
    if a.corrects_line_id is not None:
        orig = s.get(M.InvoiceLine, a.corrects_line_id)
        inv = s.get(M.Invoice, orig.invoice_id) if orig is not None else None
        ref = f"{inv.number or f'invoice #{inv.id}'} line {orig.line_no}" if inv is not None and orig else ""
    elif a.charge_line_id is not None:
        ref = f"charge line {a.charge_line_id}"
    else:
        ref = "not billed before"
    desc = f"Adjustment {src.label if src else ''}: {what} ({ref})"
    fx = None
    if a.fx_rate is not None and a.fx_rate_id is not None:
        row = s.get(M.FxRate, a.fx_rate_id)
        if row is not None:
            inverse = (row.base, row.quote) != (a.source_currency, a.currency)
            fx = FxQuote(row.source, a.source_currency, a.currency, a.fx_rate, row.effective_from, row.id, inverse)
    return DraftLine(
        kind="adjustment", description=desc, direction=a.direction, service=a.service, destination=a.destination,
        prefix=a.prefix, band=a.band, quantity=Decimal(a.new_units - a.old_units), unit=a.unit, rate=None,
        rate_unit=None, amount=a.amount, currency=a.currency, source_amount=a.source_delta,
        source_currency=a.source_currency, fx=fx, rounding=a.rounding, agreement_hash=a.agreement_hash,
        rule=a.rule, line_key=a.line_key, record_count=a.new_count, first_start=None, last_start=None,
        group_key=a.group_key, stream=a.stream, netted=a.netted, corrects_line_id=a.corrects_line_id,
        adjustment_id=a.id,
    )


def adjustment_what(a: M.Adjustment) -> str:
    """What an adjustment corrects: a traffic line's dimensions, or a charge (and its party)."""
    if a.charge_key:
        parsed = parse_key(a.charge_key.split("|correction@")[0])
        return (parsed[2] if parsed else a.charge_key[:200]) + (f" ({a.party})" if a.party else "")
    return describe(a.direction, a.service, a.destination, a.band, a.prefix)


@dataclass
class WrittenDrafts:
    """What :func:`write_drafts` wrote: the invoices' and statement's summaries, and the invoice
    lines of charge lines (``id(charge line)`` -> the row, with its ``id``)."""

    invoices: list[InvoiceSummary] = field(default_factory=list)
    statement: StatementSummary | None = None
    made: dict[int, Any] = field(default_factory=dict)


#: store id -> agreement content hash -> version id (versions are immutable, their hashes unique)
_VERSION_IDS_SEEN: dict[str, dict[str, int]] = {}


def version_ids(store: Store, s: Session, hashes: Iterable[str]) -> dict[str, int]:
    """The ids of the agreement versions with these content hashes (those in the store), looked
    up once per store and process."""
    seen = _VERSION_IDS_SEEN.setdefault(store.store_id, {}) if store.store_id else {}
    wanted = set(hashes)
    missing = sorted(wanted - seen.keys())
    if missing:
        if len(seen) > 10_000:
            seen.clear()
        seen.update(s.execute(_VERSION_IDS, {"hashes": missing}).all())
    return {h: seen[h] for h in wanted if h in seen}


def write_drafts(s: Session, cyc: M.BillingCycle, prow: M.Partner, drafts: Drafts, versions: dict[str, int],
                 rated_file_id: int | None, t: datetime) -> WrittenDrafts:
    """The draft invoices, their lines and the settlement statement, as rows (``versions``:
    agreement content hash -> version id; the lines' other versions are looked up)."""
    out = WrittenDrafts()
    missing = {ln.agreement_hash for ln in drafts.lines if ln.agreement_hash and ln.agreement_hash not in versions}
    if missing:
        versions = dict(versions)
        versions.update(s.execute(_VERSION_IDS, {"hashes": sorted(missing)}).all())
    for d in drafts.invoices:
        inv_id = _insert_one(
            s, M.Invoice, partner_id=prow.id, partner_code=prow.code, partner_name=prow.name, cycle_id=cyc.id,
            stream=d.stream, currency=d.currency, status="draft", subtotal=d.subtotal, tax_kind=d.tax.kind,
            tax_rate=prow.tax_rate, tax_amount=d.tax.amount, total=d.total, taxable_amount=d.tax.taxable,
            tax_note=d.tax.note, fx_rate_id=d.fx_rate_id, created_at=t, doc_type=d.kind)
        out.invoices.append(InvoiceSummary(inv_id, d.stream, d.currency, "draft", d.subtotal, len(d.lines), None,
                                           d.tax.kind, d.tax.amount, d.total, d.tax.note, d.kind))
        plain: list[dict[str, Any]] = []
        for i, ln in enumerate(d.lines, 1):
            row = line_row(inv_id, i, ln, versions, rated_file_id, t)
            if ln.charge is not None:  # its id is needed: the charge line points at it
                out.made[id(ln.charge)] = _Inserted(_insert_one(s, M.InvoiceLine, **row))
            else:
                plain.append(row)
        # one statement for the lines of traffic and adjustments (thousands per cycle), after
        # the lines of charges (the order their ids always had)
        _insert(s, M.InvoiceLine, plain)
    if drafts.statement is not None:
        d = drafts.statement
        stm_id = _insert_one(
            s, M.SettlementStatement, partner_id=prow.id, cycle_id=cyc.id, currency=d.currency, status="draft",
            receivable=d.receivable, payable=d.payable, net=d.net, created_at=t,
            details={"period": cyc.label, "rated_file_id": rated_file_id,
                     "lines": [dict(line_json(ln, i), key=ln.charge.key if ln.charge is not None else None)
                               for i, ln in enumerate(d.lines, 1)],
                     "receivable_items": receivable_items(drafts.invoices),
                     "payable_items": [{"kind": ln.kind, "description": ln.description, "amount": str(ln.amount),
                                        "currency": ln.currency} for ln in d.lines]})
        out.statement = StatementSummary(stm_id, d.currency, "draft", d.receivable, d.payable, d.net, len(d.lines))
    return out


# the kinds of the store's lines are fixed (0001's check): a line deducting an interim invoice of
# progressive billing is an `other` line (its group key: `progressive NUMBER`)
STORED_KIND = {DEDUCTION: "other"}


def line_row(inv_id: int, line_no: int, ln: DraftLine, versions: dict[str, int], rated_file_id: int | None,
             t: datetime) -> dict[str, Any]:
    """An ``invoice_lines`` row of a draft line (``rated_file_id``: the file its traffic lines'
    records are in, if any)."""
    return dict(
        invoice_id=inv_id, line_no=line_no, kind=STORED_KIND.get(ln.kind, ln.kind), description=ln.description[:1000],
        direction=ln.direction, service=ln.service, destination=ln.destination, prefix=ln.prefix,
        band=ln.band, quantity=ln.quantity, unit=ln.unit, rate=ln.rate, rate_unit=ln.rate_unit,
        amount=ln.amount, currency=ln.currency, agreement_version_id=versions.get(ln.agreement_hash or ""),
        agreement_hash=ln.agreement_hash, rule=ln.rule,
        data_file_id=rated_file_id if ln.kind == "traffic" else None,
        line_key=ln.line_key, record_count=ln.record_count, first_start=ln.first_start,
        last_start=ln.last_start, corrects_line_id=ln.corrects_line_id, created_at=t,
        source_amount=ln.source_amount, source_currency=ln.source_currency,
        fx_rate=ln.fx.rate if ln.fx else None, fx_rate_id=ln.fx.rate_id if ln.fx else None,
        rounding=ln.rounding, group_key=ln.group_key[:2000], adjustment_id=ln.adjustment_id,
    )


def interims_of(s: Session, partner_id: int, period_label: str) -> list[Interim]:
    """The finalized interim invoices of progressive billing of a partner's period, in order."""
    rows = s.execute(select(_INVOICES.c.number, _INVOICES.c.stream, _INVOICES.c.interim_until, _INVOICES.c.subtotal,
                            _INVOICES.c.tax_amount, _INVOICES.c.interim_threshold)
                     .where(_INVOICES.c.partner_id == partner_id, _INVOICES.c.interim_period == period_label,
                            _INVOICES.c.status == "finalized")
                     .order_by(_INVOICES.c.id)).all()
    return [Interim(r.number, r.stream, r.interim_until, r.subtotal, r.tax_amount, r.interim_threshold) for r in rows]


# --------------------------------------------------------------------------- finalization


def next_number(store: Store, s: Session, name: str) -> int:
    """The next value of a gapless counter (taken under a lock, committed with the caller)."""
    return next_numbers(store, s, name, 1)[0]


def next_numbers(store: Store, s: Session, name: str, n: int) -> list[int]:
    """The next ``n`` values of a gapless counter, in order, in one statement: an upsert of the
    counter's row returning its new value (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``,
    PostgreSQL and SQLite >= 3.35). The row stays locked until the caller's transaction ends
    (PostgreSQL: the upsert's row lock; SQLite: the transaction's write lock), so numbers are
    taken one transaction at a time and a rolled-back one gives its numbers back."""
    if n <= 0:
        return []
    if not store.is_postgres and not _SQLITE_RETURNING:
        return _next_numbers_locked(store, s, name, n)
    last = s.connection().execute(_UPSERT_SEQUENCE[store.is_postgres], {"name": name, "last": n}).scalar_one()
    return list(range(last - n + 1, last + 1))


def _next_numbers_locked(store: Store, s: Session, name: str, n: int) -> list[int]:
    """:func:`next_numbers` without ``RETURNING`` (SQLite before 3.35): under a named lock, one
    read, one write."""
    store.lock(s, f"sequence:{name}", wait=True)
    row = s.scalars(_SEQUENCE_LOCKED if store.is_postgres else _SEQUENCE, {"name": name}).first()
    if row is None:
        row = M.NumberSequence(name=name, last=0)
        s.add(row)
    first = row.last + 1
    row.last += n
    s.flush()
    return list(range(first, first + n))


def _upsert_sequence(dialect: Any) -> Any:
    stmt = dialect.insert(_SEQUENCES).values(name=_B("name"), last=_B("last"))
    return stmt.on_conflict_do_update(index_elements=[_SEQUENCES.c.name],
                                      set_={"last": _SEQUENCES.c.last + stmt.excluded.last}).returning(_SEQUENCES.c.last)


_SEQUENCES = M.NumberSequence.__table__
# (by is_postgres) the statement taking a counter's next values; SQLite needs RETURNING (3.35)
_UPSERT_SEQUENCE = {False: _upsert_sequence(sqlite_dialect), True: _upsert_sequence(pg_dialect)}
_SQLITE_RETURNING = sqlite_version_info >= (3, 35)


# a document kind's gap-free counter and number prefix (counter-YYYY, PREFIX-YYYY-NNNNNN)
DOCUMENT_SERIES = {"invoice": ("invoice", "INV"), "credit_note": ("credit-note", "CN"),
                   "debit_note": ("debit-note", "DN")}


@dataclass
class _Document:
    """A draft of the cycle being finalized: what :func:`finalize_cycle` numbered."""

    kind: str  # invoice, statement, share
    id: int
    number: str


def finalize_cycle(store: Store, partner: str, period: Any, *, issue_date: date | None = None) -> CycleReport:
    """Number the cycle's draft invoices (and settlement statement), date them and make them
    (and the cycle) immutable. The issue date is the period's last day unless given; invoices
    are due ``due N days`` later. Checks registered on the drafts (the ``icdsl_invoice_validators``
    hook, :mod:`icdsl.validators`) run first: an error refuses finalization.

    A month finalizes hundreds of cycles, so the fixed cost of one is kept to a few statements:
    the drafts are read once as rows (checked, numbered and reported from them), the numbers of
    each counter are taken in one statement, and each table's documents are updated in one
    (an executemany); the store's triggers then refuse any change to them."""

    with store.session() as s:
        prow, per = resolve_period(s, partner, period, None)
        cyc = _lock_cycle(store, s, prow, per)
        if cyc is None:
            raise CycleStateError(f"there is no cycle {partner} {per.label}: run it first")
        if cyc.status == "finalized":
            return _report(s, cyc, per, already=True)
        if cyc.status != "invoiced":
            why = " (validation stopped it: see `icdsl cycle status`)" if cyc.status == "rated" else ""
            raise CycleStateError(f"cycle {partner} {per.label} is {cyc.status}{why}: it must be invoiced to be "
                                  "finalized")
        t = base.now()
        issue = issue_date or (per.local_end - timedelta(days=1))
        due = issue + timedelta(days=prow.due_days)
        # the cycle's documents, read once as rows: checked, numbered, reported
        of = {"cycle_id": cyc.id}
        invoices = s.execute(_INVOICE_ROWS, of).all()
        lines = _invoice_lines(s, [inv.id for inv in invoices])
        problems = _document_checks(store, s, cyc, per, invoices=invoices, lines=lines)
        if problems:
            raise CycleStateError(f"cycle {partner} {per.label} cannot be finalized: " + "; ".join(problems))
        conn = s.connection()
        finalized: list[_Document] = []
        drafts = [inv for inv in invoices if inv.status == "draft"]
        # each kind in its own gap-free series (invoices, credit notes, debit notes), in id order
        for doc_type, (counter, prefix) in DOCUMENT_SERIES.items():
            of_type = [inv for inv in drafts if (inv.doc_type or "invoice") == doc_type]
            numbers = next_numbers(store, s, f"{counter}-{issue.year}", len(of_type)) if of_type else []
            finalized += [_Document("invoice", inv.id, f"{prefix}-{issue.year}-{n:06d}")
                          for inv, n in zip(of_type, numbers, strict=True)]
        if drafts:
            # the parties as they are now, sealed with the documents (a later change of the rules
            # does not change an issued document)
            seller, buyer = seller_party(s), buyer_party(prow)
            conn.execute(_FINALIZE_INVOICE, [dict(b_id=d.id, number=d.number, issue_date=issue, due_date=due,
                                                  finalized_at=t, seller=seller, buyer=buyer) for d in finalized])
        # statements and revenue shares (most cycles have none: one query to know), numbered in
        # the order of their ids (the order their numbers were always taken in)
        others = s.execute(_OTHER_DOCUMENTS, of).all()
        statements = list(s.scalars(_STATEMENTS_OF, of)) if any(k == "statement" for k, _i in others) else []
        drafts_s = [stm for stm in statements if stm.status == "draft"]
        for stm, n in zip(drafts_s, next_numbers(store, s, f"statement-{issue.year}", len(drafts_s)), strict=True):
            stm.number = f"STM-{issue.year}-{n:06d}"
            stm.details = dict(stm.details or {}, issue_date=issue.isoformat(), due_date=due.isoformat(),
                               seller=seller_party(s), buyer=buyer_party(prow))
            stm.status = "finalized"
            stm.finalized_at = t
            finalized.append(_Document("statement", stm.id, stm.number))
        shares = list(s.scalars(_SHARES_OF, of)) if any(k == "share" for k, _i in others) else []
        drafts_h = [shr for shr in shares if shr.status == "draft"]
        for shr, n in zip(drafts_h, next_numbers(store, s, f"share-{issue.year}", len(drafts_h)), strict=True):
            shr.number = f"SHR-{issue.year}-{n:06d}"
            shr.details = dict(shr.details or {}, issue_date=issue.isoformat(), seller=seller_party(s),
                               buyer=share_party(s, shr.party))
            shr.status = "finalized"
            shr.finalized_at = t
            finalized.append(_Document("share", shr.id, shr.number))
        unread = record_unread(store, s, cyc, t)  # ingested after the last run: late records, reported
        log = _Log(cyc)
        log.advance("finalized", f"invoices finalized, issued {issue}"
                    + (f"; {unread} record(s) ingested after the last run are late records" if unread else ""))
        log.audit("cycle_finalized", "billing_cycle", cyc.id, f"{partner} {per.label} finalized")
        s.flush()  # the documents, then the cycle (finalized last)
        log.write(s)
        seal_cycle(s, cyc.id)  # tamper evidence: the finalized documents sealed and chained (billing.seal)
        base.checkpoint("finalize:before_commit")
        counts: dict[int, int] = defaultdict(int)
        for ln in lines:
            counts[ln.invoice_id] += 1
        numbered = {d.id: d.number for d in finalized if d.kind == "invoice"}
        summaries = [replace(_invoice_summary(inv, counts[inv.id]), number=numbered[inv.id], status="finalized")
                     if inv.id in numbered else _invoice_summary(inv, counts[inv.id]) for inv in invoices]
        return _report(s, cyc, per, already=False, invoices=summaries, statements=statements, shares=shares)


def _invoice_lines(s: Session, invoice_ids: list[int]) -> list[Any]:
    """The lines of the invoices, as rows (not ORM objects), by invoice and line number."""
    if not invoice_ids:
        return []
    return list(s.execute(_LINES_OF, {"ids": invoice_ids}))


#: store id -> the agreements of invoice documents, by their hashes (documents._agreements)
_AGREEMENTS_SEEN: dict[str, dict[frozenset[str], list[dict[str, Any]]]] = {}


def _document_checks(store: Store, s: Session, cyc: M.BillingCycle, per: Period, *,
                     invoices: list[M.Invoice] | None = None, lines: list[Any] | None = None) -> list[str]:
    """Errors of the document validators registered through the plugin hook, on the drafts
    (``invoices`` and their ``lines``, when the caller has read them)."""
    if invoices is None:
        invoices = list(s.scalars(_INVOICES_OF, {"cycle_id": cyc.id}))
    if not invoices:
        return []
    if lines is None:
        lines = _invoice_lines(s, [inv.id for inv in invoices])
    by_invoice: dict[int, list[Any]] = defaultdict(list)
    for ln in lines:
        by_invoice[ln.invoice_id].append(ln)
    # agreement versions are immutable and their hashes unique: described once per store and process
    agreements = _AGREEMENTS_SEEN.setdefault(store.store_id, {}) if store.store_id else {}
    if len(agreements) > 1000:
        agreements.clear()
    docs = [invoice_document(s, inv, by_invoice[inv.id], agreements) for inv in invoices]
    found = run_document_validators(docs, DocumentContext(partner=cyc.partner_code, period=per.label))
    return [str(f) for f in found if f.severity == "error"]


__all__ = [
    "CycleReport",
    "InvoiceSummary",
    "Rater",
    "StatementSummary",
    "StoreError",
    "cycle_dir",
    "finalize_cycle",
    "rated_file_schema",
    "resolve_period",
    "run_cycle",
]
