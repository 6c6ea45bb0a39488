"""Late records: passed records whose start falls in a **finalized** cycle of their partner.

A finalized cycle is never changed, so a record of its period that arrives afterwards cannot be
billed into it; it must not be dropped either. At ingest (:func:`record_late`, called once per
batch) such records are counted per partner and finalized cycle (a ``late_records`` row: how
many, their first and last start, up to :data:`SAMPLES` ids) and stay in the batch's records
file like any other. Records of a cycle's period ingested after its last run and before it was
finalized (never read by it) are recorded the same way when it is finalized
(:func:`record_unread`). They are **reported**: a warning finding ``late_records`` on each later
cycle of the partner that is run while some of them are not billed yet (:func:`findings`), and
in ``icdsl cycle status`` (:func:`pending`). ``icdsl rerate`` of the finalized period bills them,
once, as a correction: the correction reads every intake batch of the period, and a late record
is billed as soon as a correction of its cycle has read it (its id is in the correction's file).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.billing.validation import Finding

if TYPE_CHECKING:
    from icdsl.billing.store import Store

LATE = "late_records"
SAMPLES = 10


def _records_of(path: str, partner: str, start: datetime, end: datetime) -> pa.Table:
    """(id as text, start) of ``partner``'s records starting in ``start``..``end`` of a records file."""
    t = pq.read_table(path, columns=["id", "partner", "start"],
                      filters=[("partner", "=", partner), ("start", ">=", start), ("start", "<", end)])
    return pa.table({"id": pc.cast(t.column("id"), pa.string()), "start": t.column("start")})


def record_late(s: Session, batch: M.IntakeBatch, records_path: str, partners: dict[str, list[Any]],
                t: datetime) -> dict[str, dict[str, int]]:
    """Find the batch's records that fall in a finalized cycle of their partner and record them
    (``partners``: partner -> [records, first start, last start] of the batch). Returns partner
    -> cycle label -> late records."""
    out: dict[str, dict[str, int]] = {}
    if not partners:
        return out
    # one query first: the partners with a finalized cycle overlapping the batch at all (usually
    # none), so that a batch of many partners does not cost two queries per partner
    lo_all = min(v[1] for v in partners.values())
    hi_all = max(v[2] for v in partners.values())
    maybe = set(s.scalars(
        select(M.Partner.code).join(M.BillingCycle, M.BillingCycle.partner_id == M.Partner.id)
        .where(M.BillingCycle.status == "finalized", M.BillingCycle.period_start <= hi_all,
               M.BillingCycle.period_end > lo_all)))
    for code, (_n, lo, hi) in sorted(partners.items()):
        if code not in maybe:
            continue
        prow = s.scalars(select(M.Partner).where(M.Partner.code == code)).first()
        if prow is None:
            continue
        for cyc in s.scalars(select(M.BillingCycle).where(
                M.BillingCycle.partner_id == prow.id, M.BillingCycle.status == "finalized",
                M.BillingCycle.period_start <= hi, M.BillingCycle.period_end > lo)
                .order_by(M.BillingCycle.period_start)):
            late = _records_of(records_path, code, cyc.period_start, cyc.period_end)
            if not late.num_rows:
                continue
            starts = late.column("start")
            s.add(M.LateRecords(batch_id=batch.id, partner_id=prow.id, cycle_id=cyc.id, records=late.num_rows,
                                first_start=pc.min(starts).as_py(), last_start=pc.max(starts).as_py(),
                                samples=late.column("id").slice(0, SAMPLES).to_pylist(), created_at=t))
            out.setdefault(code, {})[cyc.label] = late.num_rows
    return out


# built once: finalizing a month runs it for every partner
_UNREAD = (select(M.IntakeBatch.id, M.DataFile.path)
           .join(M.IntakePartnerStat, M.IntakePartnerStat.batch_id == M.IntakeBatch.id)
           .join(M.DataFile, (M.DataFile.batch_id == M.IntakeBatch.id) & (M.DataFile.kind == "intake_records"))
           .where(M.IntakePartnerStat.partner == sa.bindparam("partner"),
                  M.IntakePartnerStat.min_start < sa.bindparam("end"),
                  M.IntakePartnerStat.max_start >= sa.bindparam("start"),
                  M.IntakeBatch.finished_at > sa.bindparam("rated_at"),
                  M.IntakeBatch.id.not_in(select(M.CycleInput.batch_id)
                                          .where(M.CycleInput.cycle_id == sa.bindparam("cycle_id"))))
           .order_by(M.IntakeBatch.id))


def record_unread(store: Store, s: Session, cyc: M.BillingCycle, t: datetime) -> int:
    """At finalization: records of the cycle's period in batches ingested after its last run
    (so never read by it) are late records of the cycle too. Returns how many."""
    prow = s.get(M.Partner, cyc.partner_id)
    rows = s.execute(_UNREAD, {"partner": prow.code, "end": cyc.period_end, "start": cyc.period_start,
                               "rated_at": cyc.rated_at, "cycle_id": cyc.id}).all()
    found = 0
    for batch_id, path in rows:
        late = _records_of(str(store.data.abs(path)), prow.code, cyc.period_start, cyc.period_end)
        if not late.num_rows:
            continue
        starts = late.column("start")
        s.add(M.LateRecords(batch_id=batch_id, partner_id=prow.id, cycle_id=cyc.id, records=late.num_rows,
                            first_start=pc.min(starts).as_py(), last_start=pc.max(starts).as_py(),
                            samples=late.column("id").slice(0, SAMPLES).to_pylist(), created_at=t))
        found += late.num_rows
    return found


@dataclass
class LateSummary:
    """The late records of one finalized cycle of a partner."""

    partner: str
    cycle: str
    cycle_id: int
    records: int  # found at ingest
    pending: int  # not billed yet by a correction
    batches: list[int] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # of the pending ones (else of all)
    local_from: str = ""
    local_to: str = ""

    @property
    def command(self) -> str:
        return f"icdsl rerate --partner {self.partner} --from {self.local_from} --to {self.local_to}"

    def __str__(self) -> str:
        head = f"{self.partner}: {self.records} record(s) of {self.cycle} (finalized) arrived after it was finalized"
        if not self.pending:
            return f"{head}; all billed by a correction"
        return (f"{head}; {self.pending} not billed yet (e.g. {', '.join(self.samples)}): bill them as a "
                f"correction on the next cycle with `{self.command} --rules RULES`")


def _corrected_ids(store: Store, s: Session, cycle_id: int) -> pa.Array:
    """Every record id a correction of the cycle has read (its file: rated, rejected, events)."""
    ids = []
    for c in s.scalars(select(M.Correction).where(M.Correction.cycle_id == cycle_id)):
        if c.file_path:
            store.data.verify(c.file_path, c.file_sha256)
            ids.append(pc.cast(pq.read_table(store.data.abs(c.file_path), columns=["id"]).column("id"),
                               pa.string()).combine_chunks())
    return pa.concat_arrays(ids) if ids else pa.array([], pa.string())


@functools.cache
def _pending_query(by_partner: bool, before: bool) -> sa.Select[Any]:
    """The late records with their cycle and partner (``partner``, ``before`` bound when asked),
    built once per shape: every cycle run asks it."""
    q = (select(M.LateRecords, M.BillingCycle, M.Partner)
         .join(M.BillingCycle, M.BillingCycle.id == M.LateRecords.cycle_id)
         .join(M.Partner, M.Partner.id == M.LateRecords.partner_id)
         .order_by(M.Partner.code, M.BillingCycle.period_start, M.LateRecords.batch_id))
    if by_partner:
        q = q.where(M.Partner.code == sa.bindparam("partner"))
    if before:
        q = q.where(M.BillingCycle.period_end <= sa.bindparam("before"))
    return q


def pending(store: Store, s: Session, partner: str | None = None, *, before: datetime | None = None
            ) -> list[LateSummary]:
    """The late records of each finalized cycle (of ``partner``), with how many no correction
    has billed yet; ``before``: only cycles that end on or before it."""
    q = _pending_query(partner is not None, before is not None)
    by_cycle: dict[int, tuple[M.BillingCycle, M.Partner, list[M.LateRecords]]] = {}
    params = {k: v for k, v in (("partner", partner), ("before", before)) if v is not None}
    for late, cyc, prow in s.execute(q, params).all():
        by_cycle.setdefault(cyc.id, (cyc, prow, []))[2].append(late)
    out = []
    for cyc, prow, rows in by_cycle.values():
        done = _corrected_ids(store, s, cyc.id)
        left: list[str] = []
        total = 0
        for r in rows:
            f = s.scalars(select(M.DataFile).where(M.DataFile.batch_id == r.batch_id,
                                                   M.DataFile.kind == "intake_records")).one()
            ids = _records_of(str(store.data.abs(f.path)), prow.code, cyc.period_start, cyc.period_end).column("id")
            ids = ids.filter(pc.invert(pc.is_in(ids, value_set=done)))
            left += ids.to_pylist()
            total += r.records
        out.append(LateSummary(
            prow.code, cyc.label, cyc.id, total, len(left), [r.batch_id for r in rows],
            left[:SAMPLES] if left else [x for r in rows for x in r.samples][:SAMPLES],
            cyc.local_start.isoformat(), (cyc.local_end - timedelta(days=1)).isoformat()))
    return out


def findings(store: Store, s: Session, partner: str, period_start: datetime) -> list[Finding]:
    """A warning ``late_records`` per finalized cycle before this one (starting at
    ``period_start``) whose late records are not all billed yet."""
    out = []
    for p in pending(store, s, partner, before=period_start):
        if not p.pending:
            continue
        out.append(Finding(
            LATE, "warning",
            f"{p.pending} record(s) of {p.cycle} arrived after that cycle was finalized (batch(es) "
            f"{', '.join(f'#{b}' for b in p.batches)}): they are kept but not billed; bill them as a correction "
            f"on the next cycle with `{p.command} --rules RULES`",
            count=p.pending, samples=tuple(p.samples), validator="late_records",
            details={"cycle": p.cycle, "cycle_id": p.cycle_id, "batches": p.batches, "found": p.records}))
    return out


__all__ = ["LATE", "LateSummary", "findings", "pending", "record_late", "record_unread"]
