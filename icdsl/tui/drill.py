"""Drill-down, headless: from a line of a simulated invoice or statement to the records behind it.

A traffic line's records are the rows of the cycle's rated Parquet file (``DataFile`` of kind
``rated``) whose ``line`` column is the line's ``line_key`` (what ``icdsl trace`` reads, see
``icdsl.billing.trace``). This works for invoice lines and for the netted lines of a settlement
statement alike (those are not ``InvoiceLine`` rows, so ``Store.trace`` cannot take them).
Lines without records (fees, commitments, discounts, ...) say so. Each record shown is paired
with the normalized record intake stored, which is what the explanation rates again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select

from icdsl.billing import models as M
from icdsl.tui.traffic import TrafficRow, TrafficTable

RECORD_LIMIT = 500
COLUMNS = ("id", "start", "direction", "service", "destination", "prefix", "band", "duration_s", "billed_units",
           "rate", "amount", "currency", "rule")


@dataclass
class LineRecords:
    partner: str
    document: dict[str, Any]
    line: dict[str, Any]
    table: TrafficTable  # the records (rows: the rated record; record: the intake record to explain)
    total: int = 0  # records behind the line (the table holds the first RECORD_LIMIT)
    rules: list[tuple[str, int]] = field(default_factory=list)  # (rule, records), most records first
    note: str = ""

    @property
    def title(self) -> str:
        d, ln = self.document, self.line
        return f"{self.partner} {document_label(d)} line {ln.get('line_no')}: {ln.get('description')}"


# the series' prefixes a draft is labelled with until it is numbered: the same as the numbers
# (icdsl.billing.cycles: INV-, CN-, DN- and STM-; SHR for a revenue-share statement)
PREFIXES = {"invoice": "INV", "credit_note": "CN", "debit_note": "DN", "statement": "STM", "share_statement": "SHR"}


def document_label(d: dict[str, Any]) -> str:
    return d.get("number") or f"draft {PREFIXES.get(d['kind'], 'INV')} #{d['id']}"


def line_records(sim: Any, partner: str, document: dict[str, Any], line: dict[str, Any],
                 limit: int = RECORD_LIMIT) -> LineRecords:

    table = TrafficTable(path=sim.workdir, label=f"line {line.get('line_no')} of {document_label(document)}")
    out = LineRecords(partner, document, line, table)
    key = line.get("line_key")
    run = sim.run_of(partner)
    if key is None and line.get("line_id") is not None:
        with sim.store.reading() as s:
            row = s.get(M.InvoiceLine, line["line_id"])
            key = row.line_key if row is not None else None
    if key is None or run is None or run.report is None:
        out.note = f"this {line.get('kind', '')} line has no records behind it"
        return out
    with sim.store.reading() as s:
        f = s.scalars(select(M.DataFile).where(M.DataFile.cycle_id == run.report.cycle_id,
                                               M.DataFile.kind == "rated")).first()
    if f is None:
        out.note = "the cycle's rated records are not in the store"
        return out
    rated = pq.read_table(sim.store.data.abs(f.path), filters=[("line", "=", int(key))])
    out.total = rated.num_rows
    if rated.num_rows and "rule" in rated.column_names:
        vc = pc.value_counts(rated.column("rule"))
        out.rules = sorted(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True),
                           key=lambda kv: (-kv[1], str(kv[0])))
    shown = rated.slice(0, limit)
    ids = [str(i) for i in shown.column("id").to_pylist()]
    intake = sim.intake_records(partner, ids)
    table.columns = [c for c in COLUMNS if c in shown.column_names]
    table.truncated = rated.num_rows > limit
    for i, row in enumerate(shown.select(table.columns).to_pylist(), 1):
        record = intake.get(str(row["id"]))
        table.rows.append(TrafficRow(i, row, record, None if record is not None else
                                     ("not found", "the intake record is not in the store")))
    return out
