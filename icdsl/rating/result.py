"""What the executors produce: a rated record, a reject, a trace step, and the Arrow schemas.

Both executors (``row`` and ``batch``) must say exactly the same thing about every record, so the
reject codes and the wording of their details live here, in one place, and are used by both.

Rated table (one row per rated record, in input order):

==================  ==========================================  ==========================================
column              Arrow type                                   meaning
==================  ==========================================  ==========================================
id                  as the input                                 the record's id
partner             as the input                                 the record's partner
direction           as the input                                 inbound | outbound | transit
service             as the input                                 voice | sms | data | any name
agreement           dictionary<int32, string>                    the agreement's name
agreement_version   int64                                        its version
agreement_hash      dictionary<int32, string>                    its source_hash
prefix              dictionary<int32, string>                    matched prefix ("" for a flat price)
destination         dictionary<int32, string>                    the matched row's destination ("" if flat)
band                dictionary<int32, string>                    band, or "peak+offpeak" for a split call
billed_units        int64                                        seconds, count or bytes
rate                dictionary<int32, string>                    price used (first part's for slots/splits)
amount              decimal128(18, P)                            rounded once, P = rounding precision
currency            dictionary<int32, string>                    the rate table's or the service's currency
rule                dictionary<int32, string>                    "file:line:col" of the rate row or service
start               timestamp[us, tz=UTC]                        pass-through
duration_s          int64                                        pass-through
==================  ==========================================  ==========================================

Low-cardinality strings are dictionary-encoded because that is what they are (a few thousand
distinct prefixes for millions of records): building them costs nothing per record and Parquet
stores them as dictionaries anyway. ``pyarrow.compute.cast(col, pa.string())`` gives plain strings.

If one batch mixes rounding precisions, ``amount`` uses the largest (values are exact); should a
rescaled amount not fit 18 digits, the column widens to decimal128(38, P) rather than lose digits.

Rejects table: ``id``, ``reason`` (one of ``REJECT_REASONS``), ``detail`` (human text), then the
original columns of the record.

Record charges table (``rate_batch_with_charges``): one row per (rated record, per-record charge
that applies to it: surcharges), in record order, then in the agreement's order of charges:
``record`` (int64, the record's row in the rated table), ``id``, ``partner``, ``direction``,
``service`` (as the input), ``agreement``, ``agreement_version``, ``agreement_hash``, ``kind``
(``surcharge`` or a plugin's type), ``charge`` (its label), ``amount`` (decimal128(38, P), rounded
once at the service's precision), ``currency``, ``rule`` (the charge's "file:line:col"). The row
executor gives the same as ``RatedRecord.surcharges``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from icdsl.plan.model import Span

# Reject codes, in the order in which they are checked. The first four are the intake's codes
# (icdsl.rating.rejects) for the same faults, checked again here because a rated table may come
# from anywhere; amount_overflow is rating's own.
MISSING_FIELD = "missing_field"  # a field the pricing needs is null
NEGATIVE_DURATION = "negative_duration"
BAD_VOLUME = "bad_volume"  # negative volume on a volume service
BAD_UNITS = "bad_units"  # negative units on a count service
UNKNOWN_PARTNER = "unknown_partner"
NO_AGREEMENT = "no_agreement"
OUTSIDE_AGREEMENT_PERIOD = "outside_agreement_period"
REFILED = "refiled"  # refile origin ZONE reject: the a_number is outside ZONE
NO_RATE = "no_rate"
ZERO_DURATION = "zero_duration"
AMOUNT_OVERFLOW = "amount_overflow"  # the rounded amount does not fit decimal(18, P)

REJECT_REASONS = (
    MISSING_FIELD,
    NEGATIVE_DURATION,
    BAD_VOLUME,
    BAD_UNITS,
    UNKNOWN_PARTNER,
    NO_AGREEMENT,
    OUTSIDE_AGREEMENT_PERIOD,
    REFILED,
    NO_RATE,
    ZERO_DURATION,
    AMOUNT_OVERFLOW,
)

MAX_DIGITS = 18  # decimal128(18, P): |amount| * 10**P < 10**18

RATED_COLUMNS = (
    "id",
    "partner",
    "direction",
    "service",
    "agreement",
    "agreement_version",
    "agreement_hash",
    "prefix",
    "destination",
    "band",
    "billed_units",
    "rate",
    "amount",
    "currency",
    "rule",
    "start",
    "duration_s",
)

DICT_STRING = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One step of an explanation: what was decided and the rule (source span) that decided it."""

    text: str
    span: Span

    def __str__(self) -> str:
        return f"{self.text}  [{self.span}]"


@dataclass(frozen=True, slots=True)
class RecordChargeHit:
    """A per-record charge (a surcharge) that applies to a rated record: its amount, rounded
    once at the service's precision, and the rule behind it."""

    kind: str
    charge: str
    amount: Decimal
    currency: str
    rule: str


@dataclass(slots=True)
class RatedRecord:
    """A priced record: the row executor's counterpart of one row of the rated table.

    Not frozen: a frozen dataclass of 18 fields costs ~8 us to build, a third of a record's rating.
    """

    id: Any
    partner: Any
    direction: str
    service: str
    agreement: str
    agreement_version: int
    agreement_hash: str
    prefix: str
    destination: str
    band: str
    billed_units: int
    rate: str
    amount: Decimal
    currency: str
    rule: str
    start: datetime
    duration_s: int
    trace: tuple[TraceStep, ...] = field(default=(), compare=False)
    surcharges: tuple[RecordChargeHit, ...] = ()

    ok = True

    def as_row(self) -> dict[str, Any]:
        """The record as a row of the rated table (same column names)."""
        return {name: getattr(self, name) for name in RATED_COLUMNS}


@dataclass(slots=True)
class RejectedRecord:
    """A record that could not be priced, and why (``reason`` is one of ``REJECT_REASONS``)."""

    id: Any
    reason: str
    detail: str
    record: dict[str, Any] = field(default_factory=dict, compare=False)
    trace: tuple[TraceStep, ...] = field(default=(), compare=False)

    ok = False


# --------------------------------------------------------------------------- reject details
# One function per wording, shared by both executors so that their details are identical.


def detail_missing(name: str) -> str:
    return f"{name} is missing"


def detail_negative(name: str, value: int) -> str:
    return f"{name} is negative ({value})"


def detail_unknown_partner(partner: Any) -> str:
    return f"partner {partner} is not declared and no agreement applies to any partner"


def detail_no_agreement(partner: Any, direction: str, service: str) -> str:
    return f"no agreement of partner {partner} prices {direction} {service}"


def detail_outside_period(partner: Any, direction: str, service: str, start: datetime) -> str:
    when = start.strftime("%Y-%m-%dT%H:%M:%S") + "Z"
    return f"no agreement of partner {partner} for {direction} {service} is in force at {when}"


def detail_no_destination(number: str) -> str:
    return f"no destination matches b_number {number}"


def detail_no_origin_cell(number: str, caller: str | None) -> str:
    """A table keyed by origin where no row holds for this caller (``icdsl.rating.origins``)."""
    return f"no row for b_number {number} holds for a_number {caller if caller is not None else '(none)'}"


def detail_no_price(band: str, prefix: str) -> str:
    where = f" at prefix {prefix}" if prefix else ""
    return f"no price for band {band}{where}"


def detail_no_price_rule() -> str:
    return "the service has neither rates, a flat price nor slots"


def detail_refiled(a_number: Any, zone: str) -> str:
    who = f"calling number {a_number}" if a_number else "no calling number (a_number)"
    return f"{who}: outside {zone}, the origin the route is declared for (refile origin {zone} reject)"


def detail_zero_duration() -> str:
    return "0-second call rejected by the zero_duration policy"


def detail_overflow(precision: int) -> str:
    return f"amount does not fit decimal({MAX_DIGITS}, {precision})"


# --------------------------------------------------------------------------- Arrow schemas


def amount_type(precision: int, digits: int = MAX_DIGITS) -> pa.DataType:
    return pa.decimal128(digits, precision)


def _passthrough(input_schema: pa.Schema):
    """The type of an input column carried to the output (``default`` when the input lacks it)."""

    def passthrough(name: str, default: pa.DataType) -> pa.DataType:
        idx = input_schema.get_field_index(name)
        return input_schema.field(idx).type if idx >= 0 else default

    return passthrough


def _identity(passthrough) -> list[tuple[str, pa.DataType]]:
    """The columns saying which record it is: id, partner, direction, service (input types)."""
    return [("id", passthrough("id", pa.int64())), ("partner", passthrough("partner", pa.string())),
            ("direction", passthrough("direction", pa.string())), ("service", passthrough("service", pa.string()))]


def rated_schema(input_schema: pa.Schema, precision: int) -> pa.Schema:
    """The rated table's schema for a given input schema (pass-through columns keep their type)."""

    passthrough = _passthrough(input_schema)
    return pa.schema(
        [
            *_identity(passthrough),
            ("agreement", DICT_STRING),
            ("agreement_version", pa.int64()),
            ("agreement_hash", DICT_STRING),
            ("prefix", DICT_STRING),
            ("destination", DICT_STRING),
            ("band", DICT_STRING),
            ("billed_units", pa.int64()),
            ("rate", DICT_STRING),
            ("amount", amount_type(precision)),
            ("currency", DICT_STRING),
            ("rule", DICT_STRING),
            ("start", passthrough("start", pa.timestamp("us", tz="UTC"))),
            ("duration_s", passthrough("duration_s", pa.int64())),
        ]
    )


RECORD_CHARGE_COLUMNS = ("record", "id", "partner", "direction", "service", "agreement", "agreement_version",
                         "agreement_hash", "kind", "charge", "amount", "currency", "rule")


def record_charges_schema(input_schema: pa.Schema, precision: int) -> pa.Schema:
    return pa.schema([
        ("record", pa.int64()),
        *_identity(_passthrough(input_schema)),
        ("agreement", DICT_STRING),
        ("agreement_version", pa.int64()),
        ("agreement_hash", DICT_STRING),
        ("kind", DICT_STRING),
        ("charge", DICT_STRING),
        ("amount", pa.decimal128(38, precision)),
        ("currency", DICT_STRING),
        ("rule", DICT_STRING),
    ])


def rejects_schema(input_schema: pa.Schema) -> pa.Schema:
    fields = [
        pa.field("id", input_schema.field("id").type if "id" in input_schema.names else pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
    ]
    fields += [f for f in input_schema if f.name not in ("id", "reason", "detail")]
    return pa.schema(fields)
