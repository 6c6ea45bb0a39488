"""What intake hands on: the record fields, a batch of normalized records with its rejects, the
counts that reconcile, and the error of a file that cannot be read at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

FIELDS = (
    "id",
    "partner",
    "direction",
    "service",
    "a_number",
    "b_number",
    "start",
    "duration_s",
    "volume",
    "units",
)
TS_TYPE = pa.timestamp("us", tz="UTC")
CALL_SERVICES = ("voice", "sms")  # services that need a b_number


class IntakeError(Exception):
    """The file as a whole cannot be read (no row-level reject applies)."""


@dataclass
class IntakeCounts:
    """Row counts of a run: ``read`` source rows (blank lines excluded), ``passed`` records
    handed on, ``rejected`` rows set aside (duplicates excluded), ``duplicates`` rows whose id
    was seen before; ``by_reason`` counts the rejects table by reason (duplicate_id included)."""

    read: int = 0
    passed: int = 0
    rejected: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def reconciles(self) -> bool:
        dups = self.by_reason.get("duplicate_id", 0)
        others = sum(v for k, v in self.by_reason.items() if k != "duplicate_id")
        return (
            self.read == self.passed + self.rejected + self.duplicates
            and dups == self.duplicates
            and others == self.rejected
        )

    def add(self, other: IntakeCounts) -> None:
        self.read += other.read
        self.passed += other.passed
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        for k, v in other.by_reason.items():
            self.by_reason[k] = self.by_reason.get(k, 0) + v

    def __str__(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.by_reason.items()))
        return (
            f"read {self.read}, passed {self.passed}, rejected {self.rejected}, "
            f"duplicates {self.duplicates}" + (f" ({reasons})" if reasons else "")
        )


@dataclass
class IntakeBatch:
    """Normalized ``records``, the ``rejects`` of the same source rows, the row number of
    the first source row (same numbering as ``rejects.row``) and the batch's counts.

    ``duplicates`` (optional): the rows rejected as ``duplicate_id``, normalized like
    ``records`` (same schema), in the order of their ``duplicate_id`` rejects. The billing
    intake compares them with the record already ingested under the same id, so that a repeat
    with other content is reported as a conflict (:mod:`icdsl.billing.conflicts`); a reader
    that leaves it None has its duplicates counted as plain repeats."""

    records: pa.Table
    rejects: pa.Table
    first_row: int
    counts: IntakeCounts = field(default_factory=IntakeCounts)
    duplicates: pa.Table | None = None


def short(value: Any, limit: int = 80) -> str:
    """A value as shown in a reject's detail: one line, at most ``limit`` characters."""
    s = value if isinstance(value, str) else str(value)
    s = s.replace("\n", "\\n").replace("\r", "\\r")
    return s if len(s) <= limit else s[: limit - 1] + "…"
