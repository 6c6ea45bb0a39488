"""The billing store's tables (SQLAlchemy 2, typed ``Mapped[]`` models).

The schema itself is created and evolved by the Alembic migrations in
``icdsl/billing/migrations``; these models must describe exactly what the migrations create
(``tests/test_billing_store.py`` compares them on both back ends).

What lives here and what does not: partners, agreement versions, intake batches and their
counts, cycles and their event log, invoices, invoice lines, FX rates, inventory items,
settlement statements and the audit log are rows. Bulk data (normalized records, rejects,
rated records) is Parquet under the store's data folder, referenced by :class:`DataFile`
(path relative to the data folder, sha256, rows, amount total).

Immutability is enforced by the database (triggers created by the migrations): a finalized
invoice, its lines, a finalized cycle (and the data files it references), a finalized
settlement statement, agreement versions, the event/audit logs, validation findings,
corrections and adjustments refuse UPDATE and DELETE; so do (0007) the rows a finalized document
depends on (the FX rates in force in a finalized period, number sequences going back, a finalized
cycle's inputs, the intake files and batches it read) and the documents' seals.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from icdsl.billing.types import Money, Rate, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CYCLE_STATES = ("open", "rated", "validated", "invoiced", "finalized")
INVOICE_STATES = ("draft", "finalized", "void")
LINE_KINDS = (
    "traffic",
    "recurring",
    "one_time",
    "event",
    "surcharge",
    "discount",
    "tiered",
    "commitment",
    "adjustment",
    "revenue_share",
    "fx",
    "tax",
    "other",
)
FILE_KINDS = ("intake_records", "intake_rejects", "rated", "rating_rejects")
SEVERITIES = ("error", "warning", "info")

JSONType = sa.JSON()


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        Decimal: Money(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# --------------------------------------------------------------------------- store identity


class StoreMeta(Base):
    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


# --------------------------------------------------------------------------- rules


class SourceFile(Base):
    """The text of a rule file as loaded (so that a rule's span can be shown years later)."""

    __tablename__ = "source_files"
    __table_args__ = (sa.UniqueConstraint("path", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(sa.String(1000))
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    text: Mapped[str] = mapped_column(sa.Text)
    loaded_at: Mapped[datetime]


class Partner(Base):
    """A partner as last declared; each change of its declaration is written to the audit log
    (invoices copy what they need of it: name, tax, currency)."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(300))
    kind: Mapped[str] = mapped_column(sa.String(64))
    currency: Mapped[str] = mapped_column(sa.String(8))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    billing: Mapped[str] = mapped_column(sa.String(16))
    due_days: Mapped[int]
    tax_kind: Mapped[str] = mapped_column(sa.String(32))
    tax_rate: Mapped[Decimal] = mapped_column(Rate())
    country: Mapped[str | None] = mapped_column(sa.String(8))
    attributes: Mapped[dict[str, Any]]
    decl_hash: Mapped[str] = mapped_column(sa.String(64))
    source_file: Mapped[str] = mapped_column(sa.String(1000))
    span: Mapped[str] = mapped_column(sa.String(1100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    party: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # legal details (icdsl.parties), 0014


class Company(Base):
    """Our company as the rules declare it (``company``): the seller on every document (0014)."""

    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(300))
    party: Mapped[dict[str, Any]]
    decl_hash: Mapped[str] = mapped_column(sa.String(64))
    source_file: Mapped[str] = mapped_column(sa.String(1000))
    span: Mapped[str] = mapped_column(sa.String(1100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AgreementVersion(Base):
    """One version of an agreement, immutable once loaded. ``revision`` > 0 only for the one
    change allowed on a loaded version's own text: closing its open-ended period (``effective
    A ..`` becomes ``effective A .. B``); ``amends_id`` points to the row it closes, which is
    never rewritten. A later version that ``amends`` an earlier one, or ``ends`` it early, points
    ``amends_id`` at the earlier version's row (an ``ends`` version is in force on no day:
    ``effective_from`` is the day after ``effective_to``, the ended version's last day).
    ``effective_to`` is the end date written on the version."""

    __tablename__ = "agreement_versions"
    __table_args__ = (sa.UniqueConstraint("name", "version", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(300))
    version: Mapped[int]
    revision: Mapped[int] = mapped_column(default=0)
    partner_code: Mapped[str] = mapped_column(sa.String(64), index=True)  # "*": any partner
    partner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("partners.id"))
    effective_from: Mapped[date]
    effective_to: Mapped[date | None]  # inclusive
    currency: Mapped[str] = mapped_column(sa.String(8))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    source_file: Mapped[str] = mapped_column(sa.String(1000))
    source_file_hash: Mapped[str] = mapped_column(sa.String(64))
    span: Mapped[str] = mapped_column(sa.String(1100))
    source_text: Mapped[str] = mapped_column(sa.Text)
    content_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    decks: Mapped[list[Any]]  # [[path, sha256], ...]
    amends_id: Mapped[int | None] = mapped_column(sa.ForeignKey("agreement_versions.id"))
    loaded_at: Mapped[datetime]


class FxRate(Base):
    __tablename__ = "fx_rates"
    __table_args__ = (sa.UniqueConstraint("source", "base", "quote", "effective_from"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(100))
    base: Mapped[str] = mapped_column(sa.String(8))
    quote: Mapped[str] = mapped_column(sa.String(8))
    rate: Mapped[Decimal] = mapped_column(Rate())
    effective_from: Mapped[date]
    origin: Mapped[str] = mapped_column(sa.String(1100))  # the rule's span, or "manual"
    loaded_at: Mapped[datetime]


class InventoryItem(Base):
    """Things a recurring charge counts (ports, trunks, numbers): one row per version of an
    item; a change adds a version and points the old one at it (``superseded_by_id``)."""

    __tablename__ = "inventory_items"
    __table_args__ = (sa.UniqueConstraint("partner_id", "kind", "reference", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(100))
    reference: Mapped[str] = mapped_column(sa.String(200))
    quantity: Mapped[Decimal] = mapped_column(Money())
    activation_date: Mapped[date]
    termination_date: Mapped[date | None]
    version: Mapped[int] = mapped_column(default=1)
    attributes: Mapped[dict[str, Any]]
    superseded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("inventory_items.id"))
    created_at: Mapped[datetime]


# --------------------------------------------------------------------------- intake


class IntakeBatch(Base):
    """One traffic file as ingested. ``read == passed + rejected + duplicates`` is a CHECK."""

    __tablename__ = "intake_batches"
    __table_args__ = (
        sa.CheckConstraint("read_count = passed_count + rejected_count + duplicate_count", name="reconciles"),
        sa.CheckConstraint(_in("status", ("complete",)), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(sa.String(500))
    file_path: Mapped[str] = mapped_column(sa.String(2000))
    sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    format: Mapped[str] = mapped_column(sa.String(16))
    layout: Mapped[str | None] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16))
    read_count: Mapped[int] = mapped_column(sa.BigInteger)
    passed_count: Mapped[int] = mapped_column(sa.BigInteger)
    rejected_count: Mapped[int] = mapped_column(sa.BigInteger)
    duplicate_count: Mapped[int] = mapped_column(sa.BigInteger)
    min_start: Mapped[datetime | None]
    max_start: Mapped[datetime | None]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]


class IntakeRejectCount(Base):
    __tablename__ = "intake_reject_counts"

    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_batches.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger)


class IntakePartnerStat(Base):
    """Passed records of a batch by partner: lets a cycle open only the files it needs."""

    __tablename__ = "intake_partner_stats"

    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_batches.id"), primary_key=True)
    partner: Mapped[str] = mapped_column(sa.String(64), primary_key=True, index=True)
    records: Mapped[int] = mapped_column(sa.BigInteger)
    min_start: Mapped[datetime]
    max_start: Mapped[datetime]


class IntakeDailyCount(Base):
    """Passed records of a batch by partner and local day (in the partner's time zone when it
    was ingested, else UTC): the partner's daily traffic profile that validation compares a
    cycle's days with."""

    __tablename__ = "intake_daily_counts"
    __table_args__ = (sa.Index("ix_intake_daily_counts_partner_day", "partner", "day"),)

    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_batches.id"), primary_key=True)
    partner: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    records: Mapped[int] = mapped_column(sa.BigInteger)


# --------------------------------------------------------------------------- cycles


class BillingCycle(Base):
    __tablename__ = "billing_cycles"
    __table_args__ = (
        sa.UniqueConstraint("partner_id", "period_start", "period_end"),
        sa.CheckConstraint(_in("status", CYCLE_STATES), name="status"),
        sa.CheckConstraint(_in("frequency", ("monthly", "weekly", "quarterly", "adhoc")), name="frequency"),
        sa.CheckConstraint("period_start < period_end", name="period"),
        sa.CheckConstraint(
            "records_in IS NULL OR records_in = rated_count + rejected_count", name="reconciles"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"))
    partner_code: Mapped[str] = mapped_column(sa.String(64), index=True)
    frequency: Mapped[str] = mapped_column(sa.String(16))
    label: Mapped[str] = mapped_column(sa.String(64))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    local_start: Mapped[date]
    local_end: Mapped[date]  # exclusive
    period_start: Mapped[datetime]  # UTC, inclusive
    period_end: Mapped[datetime]  # UTC, exclusive
    status: Mapped[str] = mapped_column(sa.String(16))
    opened_at: Mapped[datetime]
    rated_at: Mapped[datetime | None]
    validated_at: Mapped[datetime | None]
    invoiced_at: Mapped[datetime | None]
    finalized_at: Mapped[datetime | None]
    plan_hash: Mapped[str | None] = mapped_column(sa.String(64))
    records_in: Mapped[int | None] = mapped_column(sa.BigInteger)
    rated_count: Mapped[int | None] = mapped_column(sa.BigInteger)
    rejected_count: Mapped[int | None] = mapped_column(sa.BigInteger)
    totals: Mapped[dict[str, Any] | None]  # currency -> amount (decimal text)
    attempts: Mapped[int] = mapped_column(default=0)
    line_dims: Mapped[list[Any] | None]  # the dimensions its invoice lines were grouped by
    charge_usage: Mapped[dict[str, Any] | None]  # usage and event units measured (icdsl.billing.charging)


class CycleInput(Base):
    """Which intake batches fed a cycle, and how many of their records."""

    __tablename__ = "cycle_inputs"

    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_batches.id"), primary_key=True)
    records: Mapped[int] = mapped_column(sa.BigInteger)


class CycleEvent(Base):
    """The progress and exception log of a cycle (append-only)."""

    __tablename__ = "cycle_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(sa.String(16))  # state | progress | warning | error
    from_state: Mapped[str | None] = mapped_column(sa.String(16))
    to_state: Mapped[str | None] = mapped_column(sa.String(16))
    message: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any] | None]


class ValidationFinding(Base):
    """What pre-invoice validation found in one run (``attempt``) of a cycle (append-only).
    ``samples``: up to a few record ids; ``details``: the validator's own data (days, reasons,
    shares). An ``error`` blocks invoicing unless ``accepted`` (``--accept CODE``)."""

    __tablename__ = "validation_findings"
    __table_args__ = (sa.CheckConstraint(_in("severity", SEVERITIES), name="severity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    attempt: Mapped[int]
    validator: Mapped[str] = mapped_column(sa.String(100))
    code: Mapped[str] = mapped_column(sa.String(64))
    severity: Mapped[str] = mapped_column(sa.String(16))
    accepted: Mapped[bool] = mapped_column(sa.Boolean())
    message: Mapped[str] = mapped_column(sa.Text)
    count: Mapped[int | None] = mapped_column(sa.BigInteger)
    samples: Mapped[list[Any]]
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class DataFile(Base):
    """A Parquet file under the data folder: ``path`` relative to it, written once (content
    addressed: the name carries the start of its sha256) and never changed."""

    __tablename__ = "data_files"
    __table_args__ = (sa.CheckConstraint(_in("kind", FILE_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    path: Mapped[str] = mapped_column(sa.String(1000), unique=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    rows: Mapped[int] = mapped_column(sa.BigInteger)
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    amount_totals: Mapped[dict[str, Any] | None]  # currency -> amount (decimal text)
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("intake_batches.id"), index=True)
    cycle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    partner: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]


# --------------------------------------------------------------------------- invoices


class NumberSequence(Base):
    __tablename__ = "number_sequences"

    name: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    last: Mapped[int] = mapped_column(sa.BigInteger)


class Invoice(Base):
    """An invoice (or credit note: ``corrects_invoice_id``). Amounts are exact; ``subtotal`` is
    the sum of the lines; tax and total are set by the invoicing step."""

    __tablename__ = "invoices"
    __table_args__ = (sa.CheckConstraint(_in("status", INVOICE_STATES), name="status"),
                      sa.Index("ix_invoices_partner_id_interim_period", "partner_id", "interim_period"))

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"), index=True)
    partner_code: Mapped[str] = mapped_column(sa.String(64))
    partner_name: Mapped[str] = mapped_column(sa.String(300))
    cycle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    stream: Mapped[str] = mapped_column(sa.String(100))
    currency: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(16))
    number: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    issue_date: Mapped[date | None]
    due_date: Mapped[date | None]
    subtotal: Mapped[Decimal]
    tax_kind: Mapped[str] = mapped_column(sa.String(32))
    tax_rate: Mapped[Decimal] = mapped_column(Rate())
    tax_amount: Mapped[Decimal | None]
    total: Mapped[Decimal | None]
    fx_rate_id: Mapped[int | None] = mapped_column(sa.ForeignKey("fx_rates.id"))
    corrects_invoice_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoices.id"))
    created_at: Mapped[datetime]
    finalized_at: Mapped[datetime | None]
    taxable_amount: Mapped[Decimal | None]
    tax_note: Mapped[str | None] = mapped_column(sa.String(300))
    # 0016: invoice | credit_note | debit_note (null before: by the total's sign); the parties as
    # finalized (icdsl.parties JSON; null on drafts and on documents finalized before 0016)
    doc_type: Mapped[str | None] = mapped_column(sa.String(16))
    seller: Mapped[dict[str, Any] | None]
    buyer: Mapped[dict[str, Any] | None]
    # 0018: an interim invoice of progressive billing (no cycle): its period, the last day of the
    # usage it billed, the threshold it was raised at (null on every other document)
    interim_period: Mapped[str | None] = mapped_column(sa.String(64))
    interim_until: Mapped[date | None]
    interim_threshold: Mapped[Decimal | None]


class InvoiceLine(Base):
    """One line, traceable: its agreement version (id + hash), the rule's location, and the
    records behind it (``data_file_id`` + ``line_key``: the rated Parquet's ``line`` column)."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        sa.UniqueConstraint("invoice_id", "line_no"),
        sa.CheckConstraint(_in("kind", LINE_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("invoices.id"), index=True)
    line_no: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(32))
    description: Mapped[str] = mapped_column(sa.String(1000))
    direction: Mapped[str | None] = mapped_column(sa.String(16))
    service: Mapped[str | None] = mapped_column(sa.String(64))
    destination: Mapped[str | None] = mapped_column(sa.String(300))
    prefix: Mapped[str | None] = mapped_column(sa.String(64))
    band: Mapped[str | None] = mapped_column(sa.String(64))
    quantity: Mapped[Decimal]
    unit: Mapped[str] = mapped_column(sa.String(32))
    rate: Mapped[Decimal | None] = mapped_column(Rate())
    rate_unit: Mapped[str | None] = mapped_column(sa.String(32))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(8))
    agreement_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("agreement_versions.id"))
    agreement_hash: Mapped[str | None] = mapped_column(sa.String(64))
    rule: Mapped[str | None] = mapped_column(sa.String(1100))
    data_file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("data_files.id"), index=True)
    line_key: Mapped[int | None]
    record_count: Mapped[int | None] = mapped_column(sa.BigInteger)
    first_start: Mapped[datetime | None]
    last_start: Mapped[datetime | None]
    corrects_line_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoice_lines.id"), index=True)
    created_at: Mapped[datetime]
    # the exact sum of the records in their own currency, and how it became ``amount``
    source_amount: Mapped[Decimal | None]
    source_currency: Mapped[str | None] = mapped_column(sa.String(8))
    fx_rate: Mapped[Decimal | None] = mapped_column(Rate())
    fx_rate_id: Mapped[int | None] = mapped_column(sa.ForeignKey("fx_rates.id"))
    rounding: Mapped[str | None] = mapped_column(sa.String(32))  # "half_up to 2"
    group_key: Mapped[str | None] = mapped_column(sa.String(2000))  # dimensions, without the version
    adjustment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("adjustments.id", use_alter=True))


class Correction(Base):
    """One ``rerate`` of a finalized cycle: which records were rated again (the partner's
    records of local days ``local_from``..``local_to``, optionally of one destination prefix),
    with which rules (``plan_hash``), and the Parquet file of their new ratings."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"), index=True)
    partner_code: Mapped[str] = mapped_column(sa.String(64))
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    local_from: Mapped[date]
    local_to: Mapped[date]  # inclusive
    destination: Mapped[str | None] = mapped_column(sa.String(64))
    plan_hash: Mapped[str] = mapped_column(sa.String(64))
    records_in: Mapped[int] = mapped_column(sa.BigInteger)
    rated_count: Mapped[int] = mapped_column(sa.BigInteger)
    rejected_count: Mapped[int] = mapped_column(sa.BigInteger)
    file_path: Mapped[str | None] = mapped_column(sa.String(1000), unique=True)
    file_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    file_rows: Mapped[int | None] = mapped_column(sa.BigInteger)
    file_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    actor: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]
    # the per-record charges of the records rated again (0004)
    charges_path: Mapped[str | None] = mapped_column(sa.String(1000))
    charges_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    charges_rows: Mapped[int | None] = mapped_column(sa.BigInteger)
    # what the corrected period measured and charged: the history later cycles read (0004)
    charge_usage: Mapped[dict[str, Any] | None]
    charge_lines: Mapped[list[Any] | None]


class Adjustment(Base):
    """A correction of a finalized line (``corrects_line_id``; none for records that were not
    billed at all), billed on ``target_cycle_id``, the partner's next cycle. Amounts: the exact
    change in the records' currency (``source_delta``) and the rounded change of the invoice
    (``amount`` in ``currency``: the corrected line, rounded, minus what was billed). Immutable."""

    __tablename__ = "adjustments"

    id: Mapped[int] = mapped_column(primary_key=True)
    correction_id: Mapped[int] = mapped_column(sa.ForeignKey("corrections.id"), index=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"))
    source_cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"))
    target_cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    corrects_line_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoice_lines.id"), index=True)
    netted: Mapped[bool] = mapped_column(sa.Boolean())
    stream: Mapped[str] = mapped_column(sa.String(100))
    direction: Mapped[str] = mapped_column(sa.String(16))
    service: Mapped[str] = mapped_column(sa.String(64))
    destination: Mapped[str | None] = mapped_column(sa.String(300))
    band: Mapped[str | None] = mapped_column(sa.String(64))
    prefix: Mapped[str | None] = mapped_column(sa.String(64))
    group_key: Mapped[str] = mapped_column(sa.String(2000))
    line_key: Mapped[int | None]  # the group's ``line`` in the correction's file
    agreement_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("agreement_versions.id"))
    agreement_hash: Mapped[str | None] = mapped_column(sa.String(64))
    rule: Mapped[str | None] = mapped_column(sa.String(1100))
    unit: Mapped[str] = mapped_column(sa.String(32))
    source_currency: Mapped[str] = mapped_column(sa.String(8))
    old_source: Mapped[Decimal]
    new_source: Mapped[Decimal]
    source_delta: Mapped[Decimal]
    old_units: Mapped[int] = mapped_column(sa.BigInteger)
    new_units: Mapped[int] = mapped_column(sa.BigInteger)
    old_count: Mapped[int] = mapped_column(sa.BigInteger)
    new_count: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(8))
    amount: Mapped[Decimal]
    fx_rate: Mapped[Decimal | None] = mapped_column(Rate())
    fx_rate_id: Mapped[int | None] = mapped_column(sa.ForeignKey("fx_rates.id"))
    rounding: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime]
    # an adjustment of a charge line (0004): the line corrected (its id and key), where the
    # corrected line went (invoice, statement, share) and a revenue share's party
    charge_line_id: Mapped[int | None]
    charge_key: Mapped[str | None] = mapped_column(sa.Text())
    placement: Mapped[str | None] = mapped_column(sa.String(16))
    party: Mapped[str | None] = mapped_column(sa.String(64))


class LateRecords(Base):
    """Passed records of an intake batch whose start falls in a finalized cycle of their partner
    (0004): counted at ingest and kept in the batch's records file, never billed into the
    finalized cycle; a finding ``late_records`` on the partner's next cycle until ``icdsl
    rerate`` bills them as a correction."""

    __tablename__ = "late_records"
    __table_args__ = (sa.UniqueConstraint("batch_id", "cycle_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_batches.id"))
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"))
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    records: Mapped[int] = mapped_column(sa.BigInteger)
    first_start: Mapped[datetime]
    last_start: Mapped[datetime]
    samples: Mapped[list[Any]]
    created_at: Mapped[datetime]


CONFLICT_KINDS = ("conflict", "suspect")


class IntakeConflict(Base):
    """A record that arrived again (0005), both versions kept for review: ``conflict``, an id
    already ingested with other content (the later version is rejected as
    ``conflicting_duplicate``, the earlier one stays billed); ``suspect``, a new id with the
    numbers, start and duration of a record ingested before (``icdsl ingest --fingerprint``:
    both billed, the analyst decides). ``earlier``/``later`` are the two records as JSON,
    ``differs`` the fields that differ (field -> [earlier, later]); ``row`` the later record's
    line (CSV) or row (Parquet) in its file, when the reader knows it."""

    __tablename__ = "intake_conflicts"
    __table_args__ = (sa.CheckConstraint(_in("kind", CONFLICT_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_batches.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    row: Mapped[int | None] = mapped_column(sa.BigInteger)
    record_id: Mapped[str] = mapped_column(sa.Text)
    partner: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    start: Mapped[datetime | None]
    earlier_batch_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_batches.id"))
    earlier_id: Mapped[str] = mapped_column(sa.Text)
    differs: Mapped[dict[str, Any] | None]
    earlier: Mapped[dict[str, Any]]
    later: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class SettlementStatement(Base):
    """Netting of what a partner owes us and what we owe it for a cycle and currency."""

    __tablename__ = "settlement_statements"
    __table_args__ = (sa.CheckConstraint(_in("status", INVOICE_STATES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"), index=True)
    cycle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("billing_cycles.id"))
    currency: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(16))
    number: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    receivable: Mapped[Decimal]
    payable: Mapped[Decimal]
    net: Mapped[Decimal]
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    finalized_at: Mapped[datetime | None]


# --------------------------------------------------------------------------- charges


PLACEMENTS = ("invoice", "statement", "share")


class ChargeLine(Base):
    """A line a charge produced in a cycle (``data``: :meth:`icdsl.charges.lines.ChargeLine.to_dict`,
    its whole audit trail), with its key (unique in the store) and where it went: an invoice
    line (``invoice_line_id``), the settlement statement (what we owe the partner) or a
    revenue-share statement. ``corrects_hash``: the application a correction line amends."""

    __tablename__ = "charge_lines"
    __table_args__ = (sa.CheckConstraint(_in("placement", PLACEMENTS), name="placement"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"), index=True)
    key: Mapped[str] = mapped_column(sa.Text())
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    charge_name: Mapped[str] = mapped_column(sa.String(300))
    agreement: Mapped[str] = mapped_column(sa.String(300))
    agreement_version: Mapped[int]
    agreement_hash: Mapped[str] = mapped_column(sa.String(64))
    stage: Mapped[str] = mapped_column(sa.String(16))
    placement: Mapped[str] = mapped_column(sa.String(16))
    invoice_line_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoice_lines.id"), index=True)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(8))
    corrects_hash: Mapped[str | None] = mapped_column(sa.String(64))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class ChargeApplication(Base):
    """One application of a charge (a fee for an item and period, an event record...), billed
    once in the whole store: ``key_hash`` (SHA-256 of the application key) is unique."""

    __tablename__ = "charge_applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    key: Mapped[str] = mapped_column(sa.Text())
    charge_line_id: Mapped[int] = mapped_column(sa.ForeignKey("charge_lines.id"), index=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[datetime]


class RecordChargeFile(Base):
    """The Parquet file of a cycle's per-record charges (surcharges): one row per record and
    charge that applies (``icdsl.rating.result.record_charges_schema`` plus ``batch_id``)."""

    __tablename__ = "record_charge_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), unique=True)
    path: Mapped[str] = mapped_column(sa.String(1000), unique=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    rows: Mapped[int] = mapped_column(sa.BigInteger)
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    amount_totals: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class ShareStatement(Base):
    """What one party (a partner code, or ``us``) of the revenue shares of a cycle is owed, in
    one currency: ``total`` is the exact sum of its share lines (``details["lines"]``)."""

    __tablename__ = "share_statements"
    __table_args__ = (
        sa.UniqueConstraint("cycle_id", "party", "currency"),
        sa.CheckConstraint(_in("status", INVOICE_STATES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"))
    party: Mapped[str] = mapped_column(sa.String(64))
    currency: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(16))
    number: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    total: Mapped[Decimal]
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    finalized_at: Mapped[datetime | None]


# --------------------------------------------------------------------------- the quarantine


RESUBMIT_SOURCES = ("intake", "rating", "unknown_partner")


class RejectResubmission(Base):
    """One ``icdsl rejects resubmit`` (0006): the filters, the records, the intake batches its
    re-ingested files became and the cycles it reopened (``{partner, period, action}``)."""

    __tablename__ = "reject_resubmissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(sa.String(200))
    filters: Mapped[dict[str, Any]]
    records: Mapped[int] = mapped_column(sa.BigInteger)
    batches: Mapped[list[Any]]
    cycles: Mapped[list[Any]]
    message: Mapped[str] = mapped_column(sa.Text)


class ResubmittedReject(Base):
    """A rejected record a resubmission took (0006): an intake reject (``batch_id``, ``row``:
    unique, so it is re-ingested once; ``new_batch_id``, ``new_row``: where), a cycle's rating
    reject (``cycle_id``) or a record of a partner unknown at ingest (``batch_id`` holds it)."""

    __tablename__ = "resubmitted_rejects"
    __table_args__ = (
        sa.CheckConstraint(_in("source", RESUBMIT_SOURCES), name="source"),
        sa.UniqueConstraint("source", "batch_id", "row"),
        sa.Index("ix_resubmitted_rejects_batch_id_record_id", "batch_id", "record_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resubmission_id: Mapped[int] = mapped_column(sa.ForeignKey("reject_resubmissions.id"), index=True)
    source: Mapped[str] = mapped_column(sa.String(16))
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("intake_batches.id"))
    row: Mapped[int | None] = mapped_column(sa.BigInteger)
    record_id: Mapped[str | None] = mapped_column(sa.String(500))
    reason: Mapped[str] = mapped_column(sa.String(64))
    partner: Mapped[str | None] = mapped_column(sa.String(64))
    start: Mapped[datetime | None]
    cycle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("billing_cycles.id"))
    new_batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("intake_batches.id"))
    new_row: Mapped[int | None] = mapped_column(sa.BigInteger)


# --------------------------------------------------------------------------- seals


SEAL_KINDS = ("invoice", "settlement", "share")


class DocumentSeal(Base):
    """The seal of one finalized document (:mod:`icdsl.billing.seal`): the SHA-256 of its
    canonical content (``content``, kept so that ``icdsl verify`` can say what changed), chained
    to the seal before it (``previous``; the first to the genesis value). ``position``: the
    chain's order, the order of finalization. Immutable (triggers of migration 0007)."""

    __tablename__ = "document_seals"
    __table_args__ = (
        sa.UniqueConstraint("kind", "document_id"),
        sa.CheckConstraint(_in("kind", SEAL_KINDS), name="kind"),
    )

    position: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(sa.String(16))
    document_id: Mapped[int]
    number: Mapped[str] = mapped_column(sa.String(64))
    cycle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    version: Mapped[int]
    content: Mapped[str] = mapped_column(sa.Text)
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    previous: Mapped[str] = mapped_column(sa.String(64), unique=True)
    seal: Mapped[str] = mapped_column(sa.String(64), unique=True)
    sealed_at: Mapped[datetime]


# --------------------------------------------------------------------------- audit


# --------------------------------------------------------------------------- partners' invoices (0009)


class PartnerInvoice(Base):
    """A partner's invoice or credit note as received (:mod:`icdsl.billing.partner_invoices`):
    the file kept in the data folder (``file_path``, ``sha256``), never altered (triggers)."""

    __tablename__ = "partner_invoices"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('invoice', 'credit_note')", name="kind"),
        sa.CheckConstraint("format IN ('ubl', 'csv')", name="format"),
        sa.CheckConstraint("period_end >= period_start", name="period"),
        sa.UniqueConstraint("partner_code", "kind", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"), index=True)
    partner_code: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))
    number: Mapped[str] = mapped_column(sa.String(200))
    issue_date: Mapped[date | None]
    period_start: Mapped[date]
    period_end: Mapped[date]
    currency: Mapped[str] = mapped_column(sa.String(3))
    total: Mapped[Decimal]
    tax_total: Mapped[Decimal]
    lines_total: Mapped[Decimal]
    line_count: Mapped[int]
    format: Mapped[str] = mapped_column(sa.String(8))
    layout: Mapped[str | None] = mapped_column(sa.String(200))
    file_name: Mapped[str] = mapped_column(sa.String(500))
    file_path: Mapped[str] = mapped_column(sa.String(1000), unique=True)
    sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    findings: Mapped[list[Any] | None]
    imported_at: Mapped[datetime]
    imported_by: Mapped[str] = mapped_column(sa.String(200))


class PartnerInvoiceLine(Base):
    """One line of a partner's invoice, as they wrote it."""

    __tablename__ = "partner_invoice_lines"
    __table_args__ = (sa.UniqueConstraint("invoice_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("partner_invoices.id"))
    number: Mapped[int]
    service: Mapped[str] = mapped_column(sa.String(200))
    destination: Mapped[str | None] = mapped_column(sa.String(300))
    prefix: Mapped[str | None] = mapped_column(sa.String(64))
    band: Mapped[str | None] = mapped_column(sa.String(64))
    period_start: Mapped[date | None]
    period_end: Mapped[date | None]
    calls: Mapped[int | None] = mapped_column(sa.BigInteger)
    quantity: Mapped[Decimal | None] = mapped_column(Rate())
    unit: Mapped[str | None] = mapped_column(sa.String(64))
    rate: Mapped[Decimal | None] = mapped_column(Rate())
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(3))
    description: Mapped[str] = mapped_column(sa.Text)


class PartnerInvoiceDetail(Base):
    """A CDR detail file sent with a partner's invoice, read into Parquet (records, rejects)
    under ``partner-invoices/`` of the data folder; never an intake batch (no cycle reads it)."""

    __tablename__ = "partner_invoice_details"
    __table_args__ = (
        sa.CheckConstraint("read_count = passed_count + rejected_count + duplicate_count", name="reconciles"),
        sa.UniqueConstraint("invoice_id", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("partner_invoices.id"), index=True)
    file_name: Mapped[str] = mapped_column(sa.String(500))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    reader: Mapped[str] = mapped_column(sa.String(64))
    layout: Mapped[str | None] = mapped_column(sa.String(200))
    records_path: Mapped[str] = mapped_column(sa.String(1000))
    records_sha256: Mapped[str] = mapped_column(sa.String(64))
    rejects_path: Mapped[str] = mapped_column(sa.String(1000))
    rejects_sha256: Mapped[str] = mapped_column(sa.String(64))
    read_count: Mapped[int] = mapped_column(sa.BigInteger)
    passed_count: Mapped[int] = mapped_column(sa.BigInteger)
    rejected_count: Mapped[int] = mapped_column(sa.BigInteger)
    duplicate_count: Mapped[int] = mapped_column(sa.BigInteger)
    by_reason: Mapped[dict[str, Any] | None]
    imported_at: Mapped[datetime]


class AuditEntry(Base):
    """Who did what to the store, when (append-only)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    entity: Mapped[str] = mapped_column(sa.String(64))
    entity_id: Mapped[int | None]
    message: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any] | None]


# --------------------------------------------------------------------------- disputes (0011)


DISPUTE_STATES = ("open", "sent", "partially_accepted", "accepted", "rejected", "withdrawn")


class Dispute(Base):
    """A dispute of a partner's invoice (:mod:`icdsl.billing.disputes`, migration 0011): numbered
    ``DSP-YYYY-NNNNNN``; the partner invoice by its store id, number and sha256 (plain columns);
    the amounts (disputed = theirs - ours, exact), its evidence (Parquet of the differing
    records: path, sha256, rows) and its content hash, fixed at opening; then its state, the
    amount accepted (credit notes) and the last change (who, when, why). The database refuses
    changes of what is fixed and changes of state that are not transitions (triggers)."""

    __tablename__ = "disputes"
    __table_args__ = (sa.CheckConstraint(_in("state", DISPUTE_STATES), name="state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(64), unique=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"), index=True)
    partner_code: Mapped[str] = mapped_column(sa.String(64))
    period_start: Mapped[date]
    period_end: Mapped[date]
    currency: Mapped[str] = mapped_column(sa.String(8))
    invoice_id: Mapped[int | None]
    invoice_number: Mapped[str] = mapped_column(sa.String(200))
    invoice_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    invoice_total: Mapped[Decimal]
    their_amount: Mapped[Decimal]
    our_amount: Mapped[Decimal]
    amount: Mapped[Decimal]
    line_count: Mapped[int]
    evidence_path: Mapped[str | None] = mapped_column(sa.String(1000))
    evidence_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    evidence_rows: Mapped[int] = mapped_column(sa.BigInteger)
    tolerances: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    opened_at: Mapped[datetime]
    opened_by: Mapped[str] = mapped_column(sa.String(200))
    opened_reason: Mapped[str | None] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(24))
    accepted_amount: Mapped[Decimal]
    changed_at: Mapped[datetime]
    changed_by: Mapped[str] = mapped_column(sa.String(200))
    change_reason: Mapped[str | None] = mapped_column(sa.Text)


class DisputeLine(Base):
    """A disputed line: both sides of the reconciliation's line and the amount disputed
    (theirs - ours). Written once, with its dispute; never changed (triggers)."""

    __tablename__ = "dispute_lines"
    __table_args__ = (sa.UniqueConstraint("dispute_id", "line_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dispute_id: Mapped[int] = mapped_column(sa.ForeignKey("disputes.id"), index=True)
    line_no: Mapped[int]
    service: Mapped[str] = mapped_column(sa.String(64))
    destination: Mapped[str | None] = mapped_column(sa.String(300))
    band: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    their_lines: Mapped[list[Any]]
    our_lines: Mapped[list[Any]]
    their_calls: Mapped[int] = mapped_column(sa.BigInteger)
    our_calls: Mapped[int] = mapped_column(sa.BigInteger)
    their_quantity: Mapped[str] = mapped_column(sa.String(60))  # decimal text, exact whatever its digits
    our_quantity: Mapped[str] = mapped_column(sa.String(60))
    their_amount: Mapped[Decimal]
    our_amount: Mapped[Decimal]
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(8))
    evidence_records: Mapped[int] = mapped_column(sa.BigInteger)


class DisputeCredit(Base):
    """A partner's credit note applied to a dispute (its number, sha256 and total; the amount
    applied). Append-only (triggers)."""

    __tablename__ = "dispute_credits"
    __table_args__ = (sa.Index("ix_dispute_credits_partner_code_credit_note_number", "partner_code",
                               "credit_note_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dispute_id: Mapped[int] = mapped_column(sa.ForeignKey("disputes.id"), index=True)
    partner_code: Mapped[str] = mapped_column(sa.String(64))
    credit_note_id: Mapped[int | None]
    credit_note_number: Mapped[str] = mapped_column(sa.String(200))
    credit_note_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    credit_note_total: Mapped[Decimal]
    amount: Mapped[Decimal]
    applied_at: Mapped[datetime]
    applied_by: Mapped[str] = mapped_column(sa.String(200))


# --------------------------------------------------------------------------- revenue assurance


class TrafficDaily(Base):
    """A cycle's rated traffic of one direction, service, destination and currency by local day
    (in the partner's time zone): the day-by-day records, billed units and amounts
    (:class:`icdsl.cycle.daily.DailyRow`) kept as one row per series and cycle, the days as
    comma-separated vectors from ``first_day`` (``days`` of them: the cycle's), with their exact
    totals. Written with the cycle's result, replaced when the cycle runs again: the compact
    history revenue assurance learns each partner's baseline from (``icdsl assure``): a year of
    200 partners is some 100,000 rows rather than millions, and no rated file is read."""

    __tablename__ = "traffic_daily"
    __table_args__ = (sa.UniqueConstraint("cycle_id", "direction", "service", "destination", "currency"),
                      sa.Index("ix_traffic_daily_partner_first_day", "partner_code", "first_day"))

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("billing_cycles.id"), index=True)
    partner_code: Mapped[str] = mapped_column(sa.String(64))
    direction: Mapped[str] = mapped_column(sa.String(32))
    service: Mapped[str] = mapped_column(sa.String(100))
    destination: Mapped[str] = mapped_column(sa.String(300))
    currency: Mapped[str] = mapped_column(sa.String(8))
    first_day: Mapped[date]
    days: Mapped[int]
    records: Mapped[int] = mapped_column(sa.BigInteger)
    units: Mapped[int] = mapped_column(sa.BigInteger)
    amount: Mapped[Decimal] = mapped_column(Rate())
    daily_records: Mapped[str] = mapped_column(sa.Text)
    daily_units: Mapped[str] = mapped_column(sa.Text)
    daily_amounts: Mapped[str] = mapped_column(sa.Text)


# --------------------------------------------------------------------------- the partner portal (0017)


PORTAL_DISPUTE_STATES = ("open", "in_review", "accepted", "rejected", "withdrawn")


class PortalUser(Base):
    """A person who signs in to the portal (``icdsl serve``): one partner's (``partner_id``) or,
    with none, our staff. ``password_hash``: argon2 (:mod:`icdsl.billing.accounts`)."""

    __tablename__ = "portal_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(200), unique=True)
    partner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("partners.id"))
    partner_code: Mapped[str | None] = mapped_column(sa.String(64))
    password_hash: Mapped[str] = mapped_column(sa.String(300))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(200))
    disabled_at: Mapped[datetime | None]


class PortalToken(Base):
    """A partner's API token, kept as its SHA-256; refused once ``revoked_at`` is set."""

    __tablename__ = "portal_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"))
    partner_code: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(200))
    prefix: Mapped[str] = mapped_column(sa.String(32))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(200))
    revoked_at: Mapped[datetime | None]


class PortalSession(Base):
    """A signed-in browser: the session cookie's SHA-256 and the CSRF token of its forms."""

    __tablename__ = "portal_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("portal_users.id"))
    session_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    csrf: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    remote: Mapped[str | None] = mapped_column(sa.String(64))


class PortalLoginAttempt(Base):
    """A sign-in try: what the rate limit counts."""

    __tablename__ = "portal_login_attempts"
    __table_args__ = (sa.Index("ix_portal_login_attempts_username_at", "username", "at"),
                      sa.Index("ix_portal_login_attempts_remote_at", "remote", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(200))
    remote: Mapped[str | None] = mapped_column(sa.String(64))
    at: Mapped[datetime]
    ok: Mapped[bool]


class PortalEvent(Base):
    """The portal's audit trail: sign-ins (and refusals), sign-outs, downloads, disputes raised."""

    __tablename__ = "portal_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    actor: Mapped[str] = mapped_column(sa.String(200))
    user_id: Mapped[int | None]
    token_id: Mapped[int | None]
    partner_code: Mapped[str | None] = mapped_column(sa.String(64))
    target: Mapped[str | None] = mapped_column(sa.String(300))
    remote: Mapped[str | None] = mapped_column(sa.String(64))
    details: Mapped[dict[str, Any] | None]


class PortalDispute(Base):
    """A dispute a partner raised on a line of one of our invoices (through the portal), with its
    comment and attached file (a generated name under the data folder's ``portal/``)."""

    __tablename__ = "portal_disputes"
    __table_args__ = (sa.CheckConstraint(_in("state", PORTAL_DISPUTE_STATES), name="state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    partner_id: Mapped[int] = mapped_column(sa.ForeignKey("partners.id"), index=True)
    partner_code: Mapped[str] = mapped_column(sa.String(64))
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("invoices.id"))
    invoice_number: Mapped[str | None] = mapped_column(sa.String(64))
    line_id: Mapped[int] = mapped_column(sa.ForeignKey("invoice_lines.id"))
    line_no: Mapped[int]
    comment: Mapped[str] = mapped_column(sa.Text)
    attachment_path: Mapped[str | None] = mapped_column(sa.String(1000))
    attachment_name: Mapped[str | None] = mapped_column(sa.String(300))
    attachment_type: Mapped[str | None] = mapped_column(sa.String(100))
    attachment_size: Mapped[int | None]
    attachment_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(24))
    raised_at: Mapped[datetime]
    raised_by: Mapped[str] = mapped_column(sa.String(200))
    changed_at: Mapped[datetime]
    changed_by: Mapped[str] = mapped_column(sa.String(200))
    change_reason: Mapped[str | None] = mapped_column(sa.Text)
    # an accepted dispute: the net amount accepted and the credit note issued for it (0019)
    accepted_amount: Mapped[Decimal | None]
    credit_note_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoices.id"), unique=True)
