"""A reconciliation as the terminal walks it, headless: a partner's invoice against our view of
the same traffic (:class:`icdsl.recon.model.Reconciliation`), line by line, then down to the
records of a line.

The records of a line comparison are the rows of ``Reconciliation.records`` (an Arrow table,
present when the partner's CDR detail was imported) whose ``line`` (our line key) is one of the
comparison's ``our_lines``. A record only they have that maps to no line of ours has no line key:
it is among the records of the whole reconciliation (:func:`records`, ``line=None``) and counted
in :func:`unplaced`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from icdsl.recon.model import (
    DIFFERS_AMOUNT,
    DIFFERS_DURATION,
    DIFFERS_RATE,
    LINE_DIFFERS,
    LINE_MATCHED,
    LINE_ONLY_OURS,
    LINE_ONLY_THEIRS,
    MATCHED,
    ONLY_OURS,
    ONLY_THEIRS,
    RECORD_CLASSES,
    LineComparison,
    Reconciliation,
)
from icdsl.tui.feeds import period_label

# How each class is said on screen (short: the status column is narrow) and its style.
LINE_STATUS = {LINE_MATCHED: ("matched", "green"), LINE_DIFFERS: ("differs", "bold red"),
               LINE_ONLY_THEIRS: ("only theirs", "yellow"), LINE_ONLY_OURS: ("only ours", "cyan")}
RECORD_CLASS = {MATCHED: ("matched", "green"), DIFFERS_DURATION: ("≠ duration", "red"),
                DIFFERS_RATE: ("≠ rate", "red"), DIFFERS_AMOUNT: ("≠ amount", "red"),
                ONLY_THEIRS: ("only theirs", "yellow"), ONLY_OURS: ("only ours", "cyan")}
RECORD_FIELDS = ("class", "their_id", "our_id", "a_number", "b_number", "their_start_us", "our_start_us",
                 "their_duration", "our_duration", "their_amount", "our_amount", "line")


@dataclass(frozen=True)
class RecordRow:
    """One record of either side, as the records table shows it."""

    cls: str
    their_id: str | None
    our_id: str | None
    a_number: str | None
    b_number: str | None
    their_start: datetime | None
    our_start: datetime | None
    their_duration: int | None
    our_duration: int | None
    their_amount: Decimal | None
    our_amount: Decimal | None
    line: str | None

    @property
    def amount_difference(self) -> Decimal | None:
        if self.their_amount is None and self.our_amount is None:
            return None
        return (self.their_amount or Decimal(0)) - (self.our_amount or Decimal(0))

    @property
    def duration_difference(self) -> int | None:
        if self.their_duration is None or self.our_duration is None:
            return None
        return self.their_duration - self.our_duration

    @property
    def start_difference(self) -> float | None:
        """Seconds their start is after ours."""
        if self.their_start is None or self.our_start is None:
            return None
        return (self.their_start - self.our_start).total_seconds()


def differing_lines(rec: Reconciliation) -> list[LineComparison]:
    return [c for c in rec.lines if c.status != LINE_MATCHED]


def ordered_lines(rec: Reconciliation, only_differing: bool = False) -> list[LineComparison]:
    """The line comparisons, the ones outside the tolerances first (largest difference first),
    then the matched ones in the invoice's order."""
    lines = differing_lines(rec) if only_differing else list(rec.lines)
    return sorted(lines, key=lambda c: (c.status == LINE_MATCHED, -abs(c.amount_difference)))


def _instant(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


def _dec(v: Any) -> Decimal | None:
    return None if v is None else v if isinstance(v, Decimal) else Decimal(str(v))


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


def records(rec: Reconciliation, line: LineComparison | None = None, *, only_differing: bool = False,
            limit: int | None = 2000) -> tuple[list[RecordRow], int]:
    """(the first ``limit`` records, how many there are) of a line comparison, or of the whole
    reconciliation with ``line=None``; the differing ones first (only them with
    ``only_differing``). Empty without record detail."""
    table = rec.records
    if table is None or not getattr(table, "num_rows", 0):
        return [], 0
    if line is not None:
        if not line.our_lines:
            return [], 0
        keys = pa.array([str(k) for k in line.our_lines], pa.string())
        table = table.filter(pc.is_in(pc.cast(table.column("line"), pa.string()), value_set=keys))
    if only_differing:
        table = table.filter(pc.not_equal(table.column("class"), MATCHED))
    total = table.num_rows
    # the differing classes first, in the order of RECORD_CLASSES after "matched"
    order = {c: i for i, c in enumerate((*RECORD_CLASSES[1:], MATCHED))}
    names = [f for f in RECORD_FIELDS if f in table.column_names]
    rows = table.select(names).to_pylist()
    rows.sort(key=lambda r: order.get(r.get("class"), 99))
    if limit is not None:
        rows = rows[:limit]
    out = [RecordRow(r.get("class") or "", _text(r.get("their_id")), _text(r.get("our_id")), _text(r.get("a_number")),
                     _text(r.get("b_number")), _instant(r.get("their_start_us")), _instant(r.get("our_start_us")),
                     r.get("their_duration"), r.get("our_duration"), _dec(r.get("their_amount")),
                     _dec(r.get("our_amount")), _text(r.get("line"))) for r in rows]
    return out, total


def unplaced(rec: Reconciliation) -> int:
    """Records with no line of ours (only theirs, mapping to nothing we billed)."""
    table = rec.records
    if table is None or "line" not in getattr(table, "column_names", ()):
        return 0
    return table.column("line").null_count


def summary(rec: Reconciliation) -> str:
    """Three short lines: the invoice and both totals; the lines outside the tolerances (and the
    tolerances); the record classes."""
    inv = rec.invoice
    ccy = rec.currency or inv.currency
    diff = rec.their_total - rec.our_total
    tol = rec.tolerances
    out = [f"{rec.partner} {inv.number} {period_label(rec.period_start, rec.period_end)}: theirs "
           f"{rec.their_total:,} · ours {rec.our_total:,} · difference {diff:+,} {ccy}"]
    outside = differing_lines(rec)
    disputable = sum((c.amount_difference for c in rec.disputable), Decimal(0))
    out.append(f"{len(outside)}/{len(rec.lines)} lines outside the tolerances ({tol.line_percent} % or "
               f"{tol.line_amount} {ccy} a line; start ±{tol.start_seconds} s, duration ±{tol.duration_seconds} s)"
               + (f" · {disputable:,} {ccy} disputable" if disputable else ""))
    if rec.record_counts:
        out.append("records: " + ", ".join(f"{RECORD_CLASS.get(c, (c,))[0]} {rec.record_counts[c]:,}"
                                           for c in RECORD_CLASSES if rec.record_counts.get(c)))
    elif rec.records is None:
        out.append("no record detail (they sent none): lines only")
    return "\n".join(out)
