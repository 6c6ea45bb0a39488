"""Resubmitting the quarantine's open entries once the rules are fixed (``icdsl rejects
resubmit``; what the quarantine holds and how states are told: :mod:`icdsl.billing.quarantine`).

- intake rejects are written back as a traffic file under ``resubmit/`` in the data folder (a
  CSV file: the original header line and the raw lines; a Parquet file: the raw rows), named
  after the original file and its content's hash, and ingested through
  :func:`icdsl.billing.intake.ingest` like any file;
- rating rejects and records of partners unknown at ingest are in the store already: their
  cycles are reopened (:func:`icdsl.billing.cycles.reopen_cycle`) so that the next run rates
  them; a finalized cycle is never changed (the report gives the ``icdsl rerate`` command).

One row per resubmission and per record (migration 0006) and an audit entry, in one
transaction under the ``quarantine`` lock; the re-ingests run before it in their own
transactions (killed in between, a rerun finds the same file already ingested and records it).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import base
from icdsl.billing import models as M
from icdsl.billing.cycles import reopen_cycle
from icdsl.billing.errors import CycleBusy
from icdsl.billing.intake import ingest
from icdsl.billing.quarantine import (
    NOT_RESUBMITTABLE,
    Entry,
    Filters,
    Quarantine,
    QuarantineError,
    cycle_of,
    header_line,
    listing,
)
from icdsl.plan.model import Plan

if TYPE_CHECKING:
    from icdsl.billing.store import Store

RESUBMIT_MARK = "-resubmit-"  # a resubmitted file's name: the original's stem, this, its content's hash


@dataclass(slots=True)
class ResubmitReport:
    """What a resubmission did: ``resubmission`` its number (None: nothing to resubmit)."""

    resubmission: int | None = None
    intake: int = 0
    rating: int = 0
    unknown: int = 0
    already: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    ingests: list[str] = field(default_factory=list)
    cycles: list[dict[str, str]] = field(default_factory=list)

    @property
    def records(self) -> int:
        return self.intake + self.rating + self.unknown

    def __str__(self) -> str:
        out = []
        if self.resubmission is None:
            out.append("nothing to resubmit" + ("" if self.refused else ": no open entry matches")
                       + (f" ({self.already} already resubmitted, waiting for their cycle)" if self.already else ""))
        else:
            out.append(f"resubmission #{self.resubmission}: {self.records} record(s) "
                       f"(intake rejects {self.intake}, rating rejects {self.rating}, "
                       f"records of partners unknown at ingest {self.unknown})")
            if self.already:
                out.append(f"  {self.already} matching record(s) were resubmitted already and wait for their cycle")
        out += [f"  ingested: {text}" for text in self.ingests]
        for c in self.cycles:
            out.append(f"  {c['partner']} {c['period']}: {c['action']}")
        for why, n in sorted(self.refused.items()):
            out.append(f"  not resubmitted: {n} record(s): {why}")
        return "\n".join(out)


def _csv_file(b: M.IntakeBatch, group: list[Entry]) -> tuple[bytes, list[int]]:
    head = header_line(b)
    if head is None:
        raise QuarantineError(
            f"cannot resubmit the rejects of {b.file_name} (batch #{b.id}): the original file, whose header line "
            f"the rejected lines need, is no longer at {b.file_path} as it was ingested; put it back there, "
            f"or leave these rejects out (--file)")
    if not head.endswith(b"\n"):
        head += b"\n"
    parts, rows, line = [head], [], 2
    for e in group:
        text = (e.raw or "").rstrip("\r\n")
        parts.append(text.encode("utf-8") + b"\n")
        rows.append(line)
        line += text.count("\n") + 1
    return b"".join(parts), rows


def _parquet_file(group: list[Entry]) -> tuple[bytes, list[int]]:
    records = [json.loads(e.raw or "{}") for e in group]
    names = list(dict.fromkeys(k for r in records for k in r))
    try:
        t = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in a column: all as text, as in the raw
        t = pa.table({n: pa.array([None if r.get(n) is None else str(r[n]) for r in records], pa.string())
                      for n in names})
    sink = io.BytesIO()
    pq.write_table(t, sink)
    return sink.getvalue(), list(range(1, len(records) + 1))


def _write_resubmission(store: Store, b: M.IntakeBatch, group: list[Entry]) -> tuple[Path, list[int]]:
    """The rejects of one batch as a traffic file under ``resubmit/`` (named by its content, so
    resubmitting the same records again after a kill ingests the same file: nothing twice)."""
    content, rows = _csv_file(b, group) if b.format == "csv" else _parquet_file(group)
    digest = hashlib.sha256(content).hexdigest()
    ext = "csv" if b.format == "csv" else "parquet"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(b.file_name).stem.split(RESUBMIT_MARK)[0])[:80] or "traffic"
    path = store.data.abs(f"resubmit/{stem}{RESUBMIT_MARK}{digest[:16]}.{ext}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
    return path, rows


def _rerate_command(cyc: M.BillingCycle) -> str:
    last = cyc.local_end.toordinal() - 1
    return (f"finalized: never changed; bill them as a correction with `icdsl rerate --partner {cyc.partner_code} "
            f"--from {cyc.local_start.isoformat()} --to {date.fromordinal(last).isoformat()} --rules ...`")


def _cycle_action(store: Store, s: Session, cyc: M.BillingCycle, n: int) -> str:
    if cyc.status == "finalized":
        return _rerate_command(cyc)
    try:
        reopened = reopen_cycle(store, s, cyc, f"reopened by a resubmission of {n} rejected record(s)")
    except CycleBusy as e:
        raise QuarantineError(f"{e}; nothing was resubmitted: try again when it is done") from None
    run = f"`icdsl cycle run {cyc.partner_code} {cyc.label} --rules ...`"
    return (f"reopened (was rated before): its next run rates them: {run}" if reopened
            else f"open: its next run rates them: {run}")


def _layout_hash(plan: Plan | None, name: str | None) -> str | None:
    """What reads a file (a layout's definition, not where it is written): intake rejects read
    again with the same definition are rejected again, so they are not resubmitted twice."""
    if name is None:
        return base.canonical_hash(None)
    for lay in plan.layouts if plan is not None else ():
        if lay.name == name:
            return base.canonical_hash([list(lay.columns), list(lay.constants), lay.timestamp_format, lay.timezone,
                                        lay.country, lay.numbers])
    return None


def _read_with(store: Store) -> dict[int, tuple[int, str | None, str | None]]:
    """batch made by a resubmission -> (resubmission, layout name, layout hash) it was read with."""
    got = {}
    for r in resubmissions(store):
        for b in r.batches:
            if isinstance(b, dict):
                got[b["batch"]] = (r.id, b.get("layout"), b.get("layout_hash"))
    return got


def _was_resubmitted(store: Store, batch_id: int) -> bool:
    """Whether an intake batch is the re-ingest of a resubmission already recorded."""
    with store.reading() as s:
        return s.scalars(select(M.ResubmittedReject.id).where(M.ResubmittedReject.new_batch_id == batch_id)
                         .limit(1)).first() is not None


def _has_header(b: M.IntakeBatch, known: dict[int, bool]) -> bool:
    """Whether a batch's rejects can be written back as a file (a CSV file needs its header)."""
    if b.id not in known:
        known[b.id] = b.format != "csv" or header_line(b) is not None
    return known[b.id]


def _select(q: Quarantine, store: Store, plan: Plan | None, layout: str | None,
            batches: dict[int, M.IntakeBatch]) -> tuple[list[Entry], Counter]:
    """The open entries that can be resubmitted, and why the others cannot."""
    with store.reading() as s:
        declared = set(s.scalars(select(M.Partner.code)))
    read_with = _read_with(store)
    headers: dict[int, bool] = {}
    refused: Counter = Counter()
    take: list[Entry] = []
    for e in q.entries:
        if e.state != "open":
            continue
        before = read_with.get(e.batch) if e.source == "intake" else None
        if e.reason in NOT_RESUBMITTABLE:
            refused["duplicates are not resubmittable (the first record with the id was kept)"] += 1
        elif e.source == "unknown_partner" and e.partner not in declared:
            refused[f"partner {e.partner} is still not declared: add it to the rules and `icdsl load` them"] += 1
        elif e.source == "intake" and not e.raw:
            refused["an intake reject without its raw content"] += 1
        elif e.source == "intake" and not _has_header(batches[e.batch], headers):
            b = batches[e.batch]
            refused[f"the original file of {b.file_name} (batch #{b.id}), whose header line the rejected lines need, "
                    f"is no longer at {b.file_path} as it was ingested: put it back there"] += 1
        elif (before is not None and before[2] is not None
              and before[2] == _layout_hash(plan, layout or batches[e.batch].layout)):
            refused[f"rejected again when resubmitted in #{before[0]}, read with the same layout "
                    f"({before[1] or 'the default'}): fix the layout in the rules (--layout), or the data at the "
                    "source"] += 1
        else:
            take.append(e)
    return take, refused


def _reingest(store: Store, plan: Plan | None, layout: str | None, batches: dict[int, M.IntakeBatch],
              take: list[Entry], refused: Counter, rep: ResubmitReport) -> tuple[dict, list[dict[str, Any]]]:
    """Intake rejects: one traffic file per batch, ingested like any file (its own
    transactions). Returns where each went ((batch, row) -> (new batch, new row)) and the batches."""
    placed: dict[tuple[int, int | None], tuple[int, int]] = {}
    by_batch: dict[int, list[Entry]] = defaultdict(list)
    for e in take:
        if e.source == "intake":
            by_batch[e.batch].append(e)
    made: list[dict[str, Any]] = []
    for batch_id, group in sorted(by_batch.items()):
        path, rows = _write_resubmission(store, batches[batch_id], group)
        lay = layout or batches[batch_id].layout
        got = ingest(store, path, lay, plan)
        if got.already_ingested and _was_resubmitted(store, got.batch_id):
            # the same lines were resubmitted before and gave this batch: nothing would change
            refused[f"the same lines were resubmitted before as batch #{got.batch_id} ({got.file_name}), with the "
                    "result shown; intake is idempotent by content: fix the data at the source and ingest it"] \
                += len(group)
            continue
        rep.ingests.append(str(got).splitlines()[0])
        made.append({"batch": got.batch_id, "from_batch": batch_id, "layout": lay,
                     "layout_hash": _layout_hash(plan, lay)})
        for e, row in zip(group, rows, strict=True):
            placed[(e.batch, e.row)] = (got.batch_id, row)
    return placed, made


def _cycles_to_reopen(s: Session, take: list[Entry], made: list[dict[str, Any]],
                      rep: ResubmitReport) -> Counter:
    """cycle id -> records of the resubmission it holds (a rating reject's cycle, the cycle of
    a record of a partner unknown at ingest, the cycles the re-ingested batches' records fall in)."""
    to_cycles: Counter = Counter()
    for e in take:
        if e.source == "intake":
            continue
        cyc = s.get(M.BillingCycle, e.cycle_id) if e.cycle_id is not None else cycle_of(
            s, M.ResubmittedReject(partner=e.partner, start=e.start))
        if cyc is not None:
            to_cycles[cyc.id] += 1
        else:
            rep.cycles.append({"partner": e.partner or "", "period": "(no cycle yet)",
                               "action": f"the first cycle of the period rates them: `icdsl cycle run "
                                         f"{e.partner} PERIOD --rules ...`"})
    batch_ids = [b["batch"] for b in made]
    for st in s.scalars(select(M.IntakePartnerStat).where(M.IntakePartnerStat.batch_id.in_(batch_ids))):
        for cyc in s.scalars(select(M.BillingCycle).where(M.BillingCycle.partner_code == st.partner,
                                                          M.BillingCycle.period_start <= st.max_start,
                                                          M.BillingCycle.period_end > st.min_start)):
            to_cycles[cyc.id] += st.records
    return to_cycles


def resubmit(store: Store, plan: Plan | None, filters: Filters = Filters(), *,
             layout: str | None = None) -> ResubmitReport:
    """Resubmit the open entries ``filters`` select (see the module's documentation)."""
    q = listing(store, filters, plan)
    rep = ResubmitReport()
    rep.already = sum(1 for e in q.entries if e.state == "resubmitted" and e.outcome_kind in ("pending", "passed intake"))
    with store.reading() as s:
        batches = {b.id: b for b in s.scalars(select(M.IntakeBatch))}
    take, refused = _select(q, store, plan, layout, batches)
    placed, made = _reingest(store, plan, layout, batches, take, refused, rep) if take else ({}, [])
    rep.refused = dict(refused)
    take = [e for e in take if e.source != "intake" or (e.batch, e.row) in placed]
    if not take:
        return rep
    with store.session() as s:
        store.lock(s, "quarantine", wait=True)
        done = {(r.batch_id, r.row) for r in s.scalars(select(M.ResubmittedReject).where(
            M.ResubmittedReject.source == "intake"))}
        take = [e for e in take if e.source != "intake" or (e.batch, e.row) not in done]  # another session's
        res = M.RejectResubmission(created_at=base.now(), actor=base.actor(), filters=filters.as_dict(), records=0,
                                   batches=made, cycles=[], message="")
        s.add(res)
        s.flush()
        s.execute(M.ResubmittedReject.__table__.insert(), [
            {"resubmission_id": res.id, "source": e.source, "batch_id": e.batch, "row": e.row, "record_id": e.id,
             "reason": e.reason, "partner": e.partner, "start": e.start,
             "cycle_id": None if e.source == "intake" else e.cycle_id,
             "new_batch_id": placed[(e.batch, e.row)][0] if e.source == "intake" else None,
             "new_row": placed[(e.batch, e.row)][1] if e.source == "intake" else None} for e in take])
        counts = Counter(e.source for e in take)
        rep.intake, rep.rating, rep.unknown = counts["intake"], counts["rating"], counts["unknown_partner"]
        reopened = []
        for cid, n in sorted(_cycles_to_reopen(s, take, made, rep).items()):
            cyc = s.get(M.BillingCycle, cid)
            reopened.append({"partner": cyc.partner_code, "period": cyc.label,
                             "action": _cycle_action(store, s, cyc, n)})
        rep.cycles = reopened + rep.cycles
        rep.cycles = [dict(t) for t in dict.fromkeys(tuple(c.items()) for c in rep.cycles)]
        res.records, res.cycles = rep.records, rep.cycles
        res.message = str(ResubmitReport(res.id, rep.intake, rep.rating, rep.unknown))
        rep.resubmission = res.id
        store.audit(s, "rejects_resubmitted", "reject_resubmission", res.id,
                    f"resubmission #{res.id}: {rep.records} record(s): intake {rep.intake}, rating {rep.rating}, "
                    f"unknown partner {rep.unknown}",
                    {"filters": filters.as_dict(), "batches": made, "cycles": rep.cycles, "refused": rep.refused})
    return rep


def resubmissions(store: Store) -> list[M.RejectResubmission]:
    """Every resubmission, oldest first."""
    with store.reading() as s:
        return list(s.scalars(select(M.RejectResubmission).order_by(M.RejectResubmission.id)))

