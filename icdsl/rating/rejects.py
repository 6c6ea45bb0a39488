"""Reject reason codes (intake and rating) and the shape of a rejects table."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

#: code -> one-line explanation. Intake sets the first nine, rating (icdsl.rating.result) the others.
REJECT_REASONS: dict[str, str] = {
    "missing_field": (
        "a required field is empty: id, partner, direction, service, start; "
        "b_number for voice and sms; duration_s for voice"
    ),
    "bad_timestamp": (
        "start is not a timestamp (ISO 8601, the layout's format or epoch seconds), "
        "or names a local time that does not exist in the layout's time zone (DST gap)"
    ),
    "bad_duration": "duration_s is not a whole number of seconds",
    "negative_duration": "duration_s is negative",
    "invalid_number": (
        "b_number is not a dialable number once normalized to E.164: characters other than "
        "digits, a national number without the layout's country, fewer than 3 or more than 15 digits"
    ),
    "bad_volume": "volume is not a whole, non-negative number of bytes",
    "bad_units": "units is not a whole, non-negative number",
    "malformed_row": (
        "the row cannot be read: a different number of fields than the header, or bytes that are not UTF-8"
    ),
    "duplicate_id": (
        "the id was already seen earlier in the run; the first occurrence is kept "
        "(counted as a duplicate, not as a reject)"
    ),
    "unknown_partner": "the partner is not declared in the rules",
    "no_agreement": "no agreement with the partner prices the record's direction and service",
    "outside_agreement_period": "the record's start is outside the period of every agreement with the partner",
    "no_rate": "no rate matches the called number (longest prefix) on the record's date",
    "zero_duration": "a zero-second call, rejected because the service says `zero_duration reject`",
    "amount_overflow": "the rounded amount does not fit the amount column (18 digits)",
}

INTAKE_REASONS = (
    "missing_field",
    "bad_timestamp",
    "bad_duration",
    "negative_duration",
    "invalid_number",
    "bad_volume",
    "bad_units",
    "malformed_row",
    "duplicate_id",
)

#: Columns of a rejects table: ``row`` is the 1-based line number in a CSV file (the header is
#: line 1) or the 1-based row number in a Parquet file; ``raw`` the original line (CSV) or the
#: row as JSON (Parquet).
REJECTS_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class Reject:
    """Why a record was refused: ``reason`` a key of REJECT_REASONS, ``detail`` a sentence
    naming the column and the bad value."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def empty_rejects() -> pa.Table:
    return REJECTS_SCHEMA.empty_table()
