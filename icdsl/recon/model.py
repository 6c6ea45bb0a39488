"""The plain data of reconciliation: a partner's invoice, the tolerances, and the outcome.

These are the shared names between the partner-invoice import (``icdsl.billing``), the
reconciliation engine (``icdsl.recon``), disputes and the faces. Extend them by adding fields
with defaults; do not rename or remove a field another part reads.

Money is ``Decimal`` (exact, never float); durations are integer seconds; instants are integer
microseconds since the epoch, UTC, as everywhere else in icdsl.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

# The tolerances are the agreement's (`reconcile { ... }`): plain data of the plan, named here too.
# A line is within tolerance when |theirs - ours| <= max(line_amount, |ours| * line_percent / 100).
from icdsl.plan.model import Tolerances as Tolerances

# How a record of either side is classed by the record-level reconciliation.
MATCHED = "matched"
DIFFERS_DURATION = "differs_duration"
DIFFERS_RATE = "differs_rate"
DIFFERS_AMOUNT = "differs_amount"
ONLY_THEIRS = "only_theirs"
ONLY_OURS = "only_ours"
RECORD_CLASSES = (MATCHED, DIFFERS_DURATION, DIFFERS_RATE, DIFFERS_AMOUNT, ONLY_THEIRS, ONLY_OURS)

# How an invoice line is classed by the line-level reconciliation.
LINE_MATCHED = "matched"  # within the tolerances
LINE_DIFFERS = "differs"  # outside them
LINE_ONLY_THEIRS = "only_theirs"
LINE_ONLY_OURS = "only_ours"


@dataclass(frozen=True)
class PartnerInvoiceLine:
    """One line of a partner's invoice, as they wrote it (their rounding, their words)."""

    number: int  # 1-based position on their invoice
    service: str  # our service name it maps to ("voice", "sms", ...), or their word if unknown
    destination: str | None = None  # destination name as they wrote it
    prefix: str | None = None  # dialled prefix, when they give one
    band: str | None = None
    period_start: date | None = None
    period_end: date | None = None  # inclusive
    calls: int | None = None  # calls, messages or sessions
    quantity: Decimal | None = None  # minutes, messages or units, as billed
    unit: str | None = None  # "minute", "message", "MB", ...
    rate: Decimal | None = None
    amount: Decimal = Decimal(0)
    currency: str = ""
    description: str = ""


@dataclass(frozen=True)
class PartnerInvoice:
    """A partner's invoice (or credit note) as imported; ``sha256`` is of the file as received."""

    partner: str  # our partner code
    number: str  # their invoice number
    issue_date: date | None
    period_start: date
    period_end: date  # inclusive
    currency: str
    total: Decimal  # the total they state (before tax)
    lines: tuple[PartnerInvoiceLine, ...]
    kind: str = "invoice"  # or "credit_note"
    tax_total: Decimal = Decimal(0)
    sha256: str = ""
    source_name: str = ""
    id: int | None = None  # the store's id once imported
    detail_batches: tuple[int, ...] = ()  # intake batches of their CDR detail, when sent
    # what does not add up on their document (their stated totals against the sum of their
    # lines...), found on import: one message each; the invoice is imported as they sent it
    findings: tuple[str, ...] = ()
    format: str = ""  # "ubl" or "csv"


@dataclass(frozen=True)
class LineComparison:
    """One line of the line-level reconciliation: both sides and their differences."""

    service: str
    destination: str | None
    band: str | None
    status: str  # LINE_MATCHED, LINE_DIFFERS, LINE_ONLY_THEIRS, LINE_ONLY_OURS
    their_lines: tuple[int, ...] = ()  # PartnerInvoiceLine.number
    our_lines: tuple[str, ...] = ()  # our line keys (cycle Group.group_key)
    their_calls: int = 0
    our_calls: int = 0
    their_quantity: Decimal = Decimal(0)
    our_quantity: Decimal = Decimal(0)
    their_amount: Decimal = Decimal(0)
    our_amount: Decimal = Decimal(0)
    currency: str = ""
    unit: str = ""  # of both quantities: the service's base unit ("second", "byte", "message", ...)

    @property
    def amount_difference(self) -> Decimal:
        return self.their_amount - self.our_amount

    @property
    def calls_difference(self) -> int:
        return self.their_calls - self.our_calls

    @property
    def quantity_difference(self) -> Decimal:
        return self.their_quantity - self.our_quantity


@dataclass
class Reconciliation:
    """The outcome: line comparisons, record classes (an Arrow table when detail exists), totals."""

    partner: str
    period_start: date
    period_end: date
    invoice: PartnerInvoice
    tolerances: Tolerances
    lines: list[LineComparison] = field(default_factory=list)
    # One row per record of either side, when their CDR detail was imported: columns
    # class (RECORD_CLASSES), their_id, our_id, a_number, b_number, their_start_us, our_start_us,
    # their_duration, our_duration, their_amount, our_amount (decimal128), line (our line key).
    records: object | None = None  # pyarrow.Table
    record_counts: dict[str, int] = field(default_factory=dict)  # class -> records
    their_total: Decimal = Decimal(0)
    our_total: Decimal = Decimal(0)
    currency: str = ""
    their_stated_total: Decimal | None = None  # the total their invoice states (their_total: its lines' sum)
    problems: list[str] = field(default_factory=list)  # what could not be compared, and why
    agreement: str = ""  # the agreement version whose tolerances apply ("" for the defaults)
    records_matched_kept: bool = True  # False: `records` holds only the records that differ (all are counted)

    @property
    def difference(self) -> Decimal:
        return self.their_total - self.our_total

    @property
    def differing(self) -> list[LineComparison]:
        """Every comparison outside the tolerances or on one side only."""
        return [c for c in self.lines if c.status != LINE_MATCHED]

    @property
    def disputable(self) -> list[LineComparison]:
        """The lines outside the tolerances, where they billed more than we expected."""
        return [c for c in self.lines if c.status != LINE_MATCHED and c.amount_difference > 0]
