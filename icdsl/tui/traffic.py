"""Traffic files and explanations, headless: the rows of a traffic file and why a record costs
what it costs.

``read_traffic`` reads (the first ``limit`` rows of) a CSV or Parquet traffic file through the
same intake as ``icdsl rate`` (``icdsl.rating.records``), keeping the file's row order: each
:class:`TrafficRow` is either a normalized record, ready to rate, or a row rejected at intake
with its reason. ``explain`` rates one record with the row executor's trace
(``icdsl.rating.row.rate_record(..., trace=True)``) and resolves each step's rule to a file
and line, so the analyst can jump to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from icdsl.plan.model import Plan
from icdsl.rating.records import IntakeError, RecordReader
from icdsl.rating.row import rate_record
from icdsl.rating.run import LayoutError, choose_layout
from icdsl.tui.project import Location, Project

DEFAULT_LIMIT = 1000
# Columns shown first, in this order; other columns follow, empty ones are left out.
FIRST_COLUMNS = ("id", "partner", "direction", "service", "b_number", "start", "duration_s")


@dataclass(frozen=True, slots=True)
class TrafficRow:
    row: int  # the row number in the file (the line of a CSV file; header = 1)
    values: dict[str, Any]  # what the table shows
    record: dict[str, Any] | None  # the normalized record, None when rejected at intake
    reject: tuple[str, str] | None = None  # (reason, detail) at intake


@dataclass
class TrafficTable:
    path: Path
    columns: list[str] = field(default_factory=list)
    rows: list[TrafficRow] = field(default_factory=list)
    layout: str | None = None
    truncated: bool = False
    error: str | None = None
    label: str | None = None  # shown instead of the path (records that are not a file's rows)


@dataclass(frozen=True, slots=True)
class Step:
    text: str
    location: Location | None
    where: str  # the rule's place as shown to the analyst, "" if none


@dataclass(frozen=True)
class Explanation:
    row: int
    steps: tuple[Step, ...]
    outcome: str  # "=> 0.012100 EUR" or "=> rejected: reason: detail"
    ok: bool


def show_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        offset = value.utcoffset()
        zone = "" if offset is None else ("Z" if not offset else value.strftime("%z"))
        return value.strftime("%Y-%m-%d %H:%M:%S") + zone
    return str(value)


def read_traffic(path: Path, plan: Plan | None, limit: int = DEFAULT_LIMIT) -> TrafficTable:
    """The first ``limit`` rows of a traffic file, records and intake rejects in file order."""

    table = TrafficTable(path)
    layout = None
    if plan is not None:
        try:
            layout = choose_layout(plan, None)
        except LayoutError:
            layout = plan.layouts[0]  # several layouts: the first one (the table says which)
    table.layout = layout.name if layout is not None else None
    try:
        reader = RecordReader(path, layout, batch_rows=min(limit, 10_000), dedupe=False)
        rows: list[TrafficRow] = []
        names: dict[str, None] = {}
        for batch in reader.batches():
            rejects = batch.rejects.to_pylist()
            rejected = {r["row"]: r for r in rejects}
            records = iter(batch.records.to_pylist())
            n = batch.records.num_rows + len(rejects)
            for row in range(batch.first_row, batch.first_row + n):
                if row in rejected:
                    r = rejected[row]
                    rows.append(TrafficRow(row, {"id": r.get("id"), "intake": r["reason"]}, None,
                                           (r["reason"], r["detail"])))
                else:
                    rec = next(records)
                    names.update(dict.fromkeys(k for k, v in rec.items() if v is not None))
                    rows.append(TrafficRow(row, rec, rec))
            if len(rows) >= limit:
                table.truncated = True
                break
    except (IntakeError, OSError, ValueError) as e:
        table.error = str(e)
        return table
    table.rows = rows[:limit]
    if any(r.reject for r in table.rows):
        names["intake"] = None
    table.columns = [c for c in FIRST_COLUMNS if c in names] + [c for c in names if c not in FIRST_COLUMNS]
    return table


def explain(project: Project, plan: Plan, row: TrafficRow) -> Explanation:
    """Rate one row with the trace; every step with the place of its rule."""
    if row.record is None:
        reason, detail = row.reject or ("rejected", "")
        return Explanation(row.row, (), f"=> rejected at intake: {reason}: {detail}", False)

    res = rate_record(plan, row.record, trace=True)
    steps = []
    for s in res.trace:
        loc = project.location(s.span)
        where = f"{project.shown(loc.path)}:{loc.line}" if loc else ""
        steps.append(Step(s.text, loc, where))
    if res.ok:
        outcome = f"=> {res.amount} {res.currency}"
    else:
        outcome = f"=> rejected: {res.reason}: {res.detail}"
    return Explanation(row.row, tuple(steps), outcome, res.ok)
