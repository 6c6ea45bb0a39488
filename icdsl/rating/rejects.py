"""Reject reason codes (intake and rating) and the shape of a rejects table."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

# the codes and their explanations: plain data below the plugin manager, re-exported here
from icdsl.reasons import REJECT_REASONS as REJECT_REASONS

#: Intake sets these reasons, rating (icdsl.rating.result) the others.
INTAKE_REASONS = (
    "missing_field",
    "partner_mismatch",
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
