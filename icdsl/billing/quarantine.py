"""The quarantine: every record that was not billed, by reason, partner and file, and its
resubmission once the rules are fixed (``icdsl rejects``).

Three kinds of entries (``source``):

- ``intake``: rejects of an intake batch (its ``intake_rejects`` file: bad timestamps,
  numbers, missing fields, duplicates...), with their raw content;
- ``rating``: records a cycle read but could not rate (the cycle's ``rating_rejects`` file as
  of its latest run: no rate, no agreement, outside the agreement's period...);
- ``unknown_partner``: passed records of a partner that was not declared when they were
  ingested and that no cycle has read yet (they stay in the batch's records file; a cycle of
  the partner reads them once the rules declare it).

**Resubmitting** (:func:`icdsl.billing.resubmit.resubmit`) takes the open entries a filter selects:

- intake rejects are written back as a traffic file (a CSV file: the original header line and
  the raw lines; a Parquet file: the raw rows) under ``resubmit/`` in the data folder and
  ingested through :func:`icdsl.billing.intake.ingest` like any file: they pass (a cycle rates
  them), are rejected again (a new intake reject, open in the quarantine with its new reason)
  or are duplicates. An intake reject is resubmitted once (a unique row per batch and row);
- rating rejects and records of a partner unknown at ingest are already in the store: a cycle
  reads every passed record of its period. Resubmitting records them and **reopens** the
  cycles that hold them (a cycle not finalized goes back to ``open``: its next ``icdsl cycle
  run`` rates them with the rules loaded then); a finalized cycle is never changed, the report
  gives the ``icdsl rerate`` command that bills them as a correction.

Duplicates are never resubmittable (the first occurrence was kept). Resubmitting again adds
nothing: a resubmitted entry is no longer open until a later cycle run rejects it again. Each
resubmission is a row (who, when, filters, what it did) and an audit entry.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.billing.errors import StoreError
from icdsl.cycle.periods import parse_period
from icdsl.plan.model import Plan
from icdsl.rating.intake.columns import Problems, clean_text
from icdsl.rating.intake.times import clock, instants

if TYPE_CHECKING:
    from icdsl.billing.store import Store

#: the columns of a listing and of an export, in order
COLUMNS = ("state", "resubmission", "outcome", "source", "reason", "partner", "file", "batch", "row", "id",
           "start", "b_number", "cycle", "detail", "raw")
NOT_RESUBMITTABLE = ("duplicate_id",)
#: what became of a resubmitted record
OUTCOMES = ("pending", "passed intake", "rated", "rejected again", "duplicate", "read")
SOURCES = ("intake", "rating", "unknown_partner")


class QuarantineError(StoreError):
    """A resubmission that cannot be done as asked (the message says what to do)."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Which entries: each ``None`` matches all. ``file``: the traffic file's name (or its
    intake batch as ``#N``); ``period``: a period label (``2026-03``, ``2026-W10``...), matched on
    the record's start in its partner's time zone (entries without a readable start do not
    match a period)."""

    reason: str | None = None
    partner: str | None = None
    file: str | None = None
    period: str | None = None
    source: str | None = None
    state: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("reason", self.reason), ("partner", self.partner), ("file", self.file),
                                  ("period", self.period), ("source", self.source), ("state", self.state))
                if v is not None}


@dataclass(slots=True)
class Entry:
    """One record of the quarantine. ``state``: ``open`` (still not billed) or ``resubmitted``
    (``resubmission``: its number; ``outcome``: what became of it, or ``pending``)."""

    source: str
    reason: str
    partner: str | None
    file: str
    batch: int
    row: int | None
    id: str | None
    start: datetime | None
    b_number: str | None
    detail: str
    raw: str | None = None
    cycle: str | None = None
    cycle_id: int | None = None
    state: str = "open"
    resubmission: int | None = None
    outcome: str | None = None
    outcome_kind: str | None = None  # one of OUTCOMES
    start_text: str | None = None

    def as_row(self) -> dict[str, Any]:
        start = self.start.strftime("%Y-%m-%dT%H:%M:%SZ") if self.start else self.start_text
        return {"state": self.state, "resubmission": self.resubmission, "outcome": self.outcome,
                "source": self.source, "reason": self.reason, "partner": self.partner, "file": self.file,
                "batch": self.batch, "row": self.row, "id": self.id, "start": start, "b_number": self.b_number,
                "cycle": self.cycle, "detail": self.detail, "raw": self.raw}


@dataclass(slots=True)
class Quarantine:
    """The entries a filter selects, and the checks that the counts reconcile: every intake
    reject and every rating reject of the cycles' latest runs is an entry."""

    entries: list[Entry]
    intake_expected: int = 0   # rejected + duplicates of every intake batch
    intake_found: int = 0      # rows of the intake rejects files
    rating_expected: int = 0   # rejected_count of the cycles with a rejects file
    rating_found: int = 0      # rows of those files

    @property
    def reconciles(self) -> bool:
        return self.intake_expected == self.intake_found and self.rating_expected == self.rating_found

    def summary(self) -> list[dict[str, Any]]:
        """Counts by reason, partner and file: open, resubmitted, total."""
        acc: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
        for e in self.entries:
            c = acc[(e.reason, e.partner or "", e.file)]
            c[e.state] += 1
            c["total"] += 1
        return [{"reason": r, "partner": p, "file": f, "open": c["open"], "resubmitted": c["resubmitted"],
                 "total": c["total"]} for (r, p, f), c in sorted(acc.items())]

    def outcomes(self) -> dict[str, int]:
        """The resubmitted entries by what became of them (:data:`OUTCOMES`)."""
        got: Counter = Counter(e.outcome_kind or "pending" for e in self.entries if e.state == "resubmitted")
        return dict(sorted(got.items()))

    def table(self) -> pa.Table:
        rows = [e.as_row() for e in self.entries]
        schema = pa.schema([(c, pa.int64() if c in ("resubmission", "batch", "row") else pa.string())
                            for c in COLUMNS])
        return pa.Table.from_pylist(rows, schema=schema)


# --------------------------------------------------------------------------- reading


def _text_of(v: Any) -> str | None:
    if v is None:
        return None
    return str(v)


def _fields_of(raw: str | None, header: list[str] | None, fmt: str) -> dict[str, Any]:
    """A raw reject as a mapping of its columns (CSV: with the file's header)."""
    if not raw:
        return {}
    if fmt == "parquet" or raw.startswith("{"):
        try:
            got = json.loads(raw)
            return got if isinstance(got, dict) else {}
        except ValueError:
            return {}
    if not header:
        return {}
    try:
        values = next(csv.reader([raw], delimiter=_delimiter(",".join(header), raw)))
    except (csv.Error, StopIteration):
        return {}
    return dict(zip(header, values, strict=False))


def _delimiter(header: str, raw: str) -> str:
    if "," in header:
        return ","
    counts = {d: raw.count(d) for d in (";", "\t", "|")}
    return max(counts, key=counts.__getitem__)


def _header_of(batch: M.IntakeBatch) -> list[str] | None:
    line = header_line(batch)
    if line is None:
        return None
    text = line.decode("utf-8-sig", "replace").rstrip("\r\n")
    delim = "," if "," in text else max((";", "\t", "|"), key=text.count)
    try:
        return next(csv.reader([text], delimiter=delim))
    except (csv.Error, StopIteration):
        return None


def header_line(batch: M.IntakeBatch) -> bytes | None:
    """The header line of a CSV batch's original file, if that file is still where it was
    ingested from, with the size it had."""
    p = Path(batch.file_path)
    try:
        if batch.format != "csv" or p.stat().st_size != batch.size_bytes:
            return None
        with p.open("rb") as f:
            return f.readline()
    except OSError:
        return None


def _source_columns(plan: Plan | None, layout: str | None) -> dict[str, str]:
    """field -> the file's column for partner, start and b_number (the batch's layout)."""
    cols = {"partner": "partner", "start": "start", "b_number": "b_number"}
    if plan is not None and layout:
        for lay in plan.layouts:
            if lay.name == layout:
                cols.update({f: c for f, c in lay.columns if f in cols})
    return cols


#: intake reasons whose start cannot be read (or was not looked at): not parsed again
_NO_START = ("bad_timestamp", "missing_field", "malformed_row")


def _instants(texts: list[str | None], reasons: list[str], plan: Plan | None,
              layout: str | None) -> list[datetime | None]:
    """The starts of a batch's intake rejects, read on a column by intake's own rule
    (:func:`icdsl.rating.intake.times.instants`, in the layout's zone and format); None where
    there is none to read."""
    lay = next((x for x in plan.layouts if x.name == layout), None) if plan is not None and layout else None
    keep = [i for i, (t, why) in enumerate(zip(texts, reasons, strict=True)) if t and why not in _NO_START]
    out: list[datetime | None] = [None] * len(texts)
    if not keep:
        return out
    try:
        c = clock(lay.timezone if lay else "UTC", lay.timestamp_format if lay else None)
    except ValueError:
        return out
    arr = clean_text(pa.array([texts[i] for i in keep], pa.string()))
    got = instants(arr, c, "start", Problems(len(keep))).to_pylist()
    for i, v in zip(keep, got, strict=True):
        out[i] = v
    return out


def _intake_entries(store: Store, s: Session, plan: Plan | None, batches: dict[int, M.IntakeBatch],
                    q: Quarantine) -> list[Entry]:
    out: list[Entry] = []
    for f in s.scalars(select(M.DataFile).where(M.DataFile.kind == "intake_rejects").order_by(M.DataFile.batch_id)):
        b = batches[f.batch_id]
        t = pq.read_table(store.data.abs(f.path))
        q.intake_found += t.num_rows  # what the file holds, checked against the batch's counts
        header = _header_of(b) if b.format == "csv" else None
        cols = _source_columns(plan, b.layout)
        rows, ids, reasons, details, raws = (t.column(c).to_pylist() for c in ("row", "id", "reason", "detail", "raw"))
        fields = [_fields_of(raw, header, b.format) for raw in raws]
        texts = [_text_of(x.get(cols["start"])) for x in fields]
        starts = _instants(texts, reasons, plan, b.layout)
        # in the order of the file's rows (a file's duplicates and conflicts are written after its other rejects)
        for i in sorted(range(len(fields)), key=lambda i: (rows[i] is None, rows[i] or 0)):
            x = fields[i]
            out.append(Entry("intake", reasons[i], _text_of(x.get(cols["partner"])) or None, b.file_name, b.id,
                             rows[i], ids[i], starts[i], _text_of(x.get(cols["b_number"])), details[i] or "",
                             raws[i], start_text=texts[i]))
    return out


def _rating_entries(store: Store, s: Session, batches: dict[int, M.IntakeBatch],
                    cycles: dict[int, M.BillingCycle], q: Quarantine) -> list[Entry]:
    out: list[Entry] = []
    for f in s.scalars(select(M.DataFile).where(M.DataFile.kind == "rating_rejects").order_by(M.DataFile.cycle_id)):
        cyc = cycles[f.cycle_id]
        q.rating_expected += cyc.rejected_count or 0
        if not f.rows:  # nothing rejected: no file was written
            continue
        t = pq.read_table(store.data.abs(f.path))
        q.rating_found += t.num_rows  # what the file holds, checked against the cycle's counts
        for rid, reason, detail, partner, b_number, start, batch_id in zip(
                *(t.column(c).to_pylist() for c in ("id", "reason", "detail", "partner", "b_number", "start",
                                                     "batch_id")), strict=True):
            b = batches.get(batch_id)
            out.append(Entry("rating", reason, partner, b.file_name if b else f"#{batch_id}", batch_id, None,
                             _text_of(rid), start, b_number, detail or "", None, f"{cyc.partner_code} {cyc.label}",
                             cyc.id))
    return out


def _read_by(s: Session) -> dict[tuple[str, int], list[M.BillingCycle]]:
    """(partner, batch) -> the cycles of the partner that read the batch."""
    got: dict[tuple[str, int], list[M.BillingCycle]] = defaultdict(list)
    for ci, cyc in s.execute(select(M.CycleInput, M.BillingCycle).join(
            M.BillingCycle, M.BillingCycle.id == M.CycleInput.cycle_id)):
        got[(cyc.partner_code, ci.batch_id)].append(cyc)
    return got


def _unknown_entries(store: Store, s: Session, batches: dict[int, M.IntakeBatch]) -> list[Entry]:
    """Passed records of partners not declared when their batch was ingested, that no cycle read."""
    declared = {p.code: p.created_at for p in s.scalars(select(M.Partner))}
    read_by = _read_by(s)
    out: list[Entry] = []
    for st in s.scalars(select(M.IntakePartnerStat).order_by(M.IntakePartnerStat.batch_id, M.IntakePartnerStat.partner)):
        b = batches[st.batch_id]
        since = declared.get(st.partner)
        if since is not None and since <= b.finished_at:
            continue  # declared when ingested: its cycles bill it
        f = s.scalars(select(M.DataFile).where(M.DataFile.batch_id == b.id,
                                               M.DataFile.kind == "intake_records")).first()
        if f is None:
            continue
        t = pq.read_table(store.data.abs(f.path), columns=["id", "partner", "b_number", "start"],
                          filters=[("partner", "=", st.partner)])
        windows = [(c.period_start, c.period_end) for c in read_by.get((st.partner, b.id), ())]
        for rid, b_number, start in zip(*(t.column(c).to_pylist() for c in ("id", "b_number", "start")), strict=True):
            if any(lo <= start < hi for lo, hi in windows):
                continue  # a cycle of the partner read it: rated, or one of its rating rejects
            detail = (f"partner '{st.partner}' was not declared in the rules when {b.file_name} was ingested"
                      + ("" if since is None else " (declared since: resubmit it)"))
            out.append(Entry("unknown_partner", "unknown_partner", st.partner, b.file_name, b.id, None,
                             _text_of(rid), start, b_number, detail))
    return out


def _match_period(e: Entry, spec: str, zones: dict[str, str], periods: dict[str, Any]) -> bool:
    if e.start is None:
        return False
    tz = zones.get(e.partner or "", "UTC")
    if tz not in periods:
        periods[tz] = parse_period(spec, tz)
    return periods[tz].start <= e.start < periods[tz].end


def _matches(e: Entry, f: Filters, zones: dict[str, str], periods: dict[str, Any]) -> bool:
    if f.reason is not None and e.reason != f.reason:
        return False
    if f.partner is not None and e.partner != f.partner:
        return False
    if f.file is not None and f.file not in (e.file, f"#{e.batch}"):
        return False
    if f.source is not None and e.source != f.source:
        return False
    if f.state is not None and e.state != f.state:
        return False
    return f.period is None or _match_period(e, f.period, zones, periods)


def listing(store: Store, filters: Filters = Filters(), plan: Plan | None = None) -> Quarantine:
    """The quarantine's entries (open and resubmitted) that ``filters`` select, in the order
    of batch, row (intake), cycle (rating); the resubmitted ones with their outcome."""
    if filters.period is not None:
        parse_period(filters.period, "UTC")  # an unreadable period is the user's mistake: say so first
    q = Quarantine([])
    with store.reading() as s:
        batches = {b.id: b for b in s.scalars(select(M.IntakeBatch))}
        q.intake_expected = sum(b.rejected_count + b.duplicate_count for b in batches.values())
        cycles = {c.id: c for c in s.scalars(select(M.BillingCycle))}
        entries = (_intake_entries(store, s, plan, batches, q) + _rating_entries(store, s, batches, cycles, q)
                   + _unknown_entries(store, s, batches))
        history = _history(store, s)
        zones = {p.code: p.timezone for p in s.scalars(select(M.Partner))}
    entries = _with_states(entries, history, batches)
    periods: dict[str, Any] = {}  # the period in each partner time zone, read once
    q.entries = [e for e in entries if _matches(e, filters, zones, periods)]
    return q


# --------------------------------------------------------------------------- states


@dataclass(slots=True)
class _Resubmitted:
    row: M.ResubmittedReject
    at: datetime
    kind: str  # one of OUTCOMES
    outcome: str


def _ids_in(path: Path, ids: set[str], columns: tuple[str, ...] = ("id",)) -> dict[str, dict[str, Any]]:
    """The rows of a Parquet file whose id (as text) is in ``ids``."""
    if not ids:
        return {}
    t = pq.read_table(path, columns=list(dict.fromkeys(("id", *columns))))
    text = pc.cast(t.column("id"), pa.string())
    t = t.filter(pc.is_in(text, value_set=pa.array(sorted(ids), pa.string())))
    return {str(r["id"]): r for r in t.to_pylist()}


def _history(store: Store, s: Session) -> list[_Resubmitted]:
    """Every resubmitted record with what became of it."""
    rows = [(r, at) for r, at in s.execute(select(M.ResubmittedReject, M.RejectResubmission.created_at).join(
        M.RejectResubmission, M.RejectResubmission.id == M.ResubmittedReject.resubmission_id)
        .order_by(M.ResubmittedReject.id))]
    files = {(f.kind, f.batch_id or f.cycle_id): f for f in s.scalars(select(M.DataFile))}
    verdicts = _Verdicts(store, s, files)
    wanted: dict[int, set[str]] = defaultdict(set)  # re-ingested batch -> the ids to follow to their cycle
    for r, _at in rows:
        if r.source == "intake" and r.new_batch_id is not None and r.record_id is not None:
            wanted[r.new_batch_id].add(r.record_id)
    verdicts.follow(wanted)
    out = []
    for r, at in rows:
        if r.source == "intake":
            kind, text = verdicts.of_intake(r, at)
        else:
            cyc = verdicts.cycles.get(r.cycle_id) if r.cycle_id is not None else verdicts.holding(r.partner, r.start)
            kind, text = verdicts.of(cyc, r.partner, r.record_id, at)
        out.append(_Resubmitted(r, at, kind, text))
    return out


class _Verdicts:
    """What intake and the cycles said of resubmitted records: each file read once."""

    def __init__(self, store: Store, s: Session, files: dict[tuple[str, int | None], M.DataFile]):
        self.store, self.s, self.files = store, s, files
        self.cycles = {c.id: c for c in s.scalars(select(M.BillingCycle))}
        self._by_partner: dict[str, list[M.BillingCycle]] = defaultdict(list)
        for c in self.cycles.values():
            self._by_partner[c.partner_code].append(c)
        self._rated: dict[int, set[str]] = {}
        self._rejected: dict[int, dict[str, str]] = {}
        self._intake_rejects: dict[int, dict[int, str]] = {}
        self._passed: dict[int, dict[str, tuple[str, datetime]]] = {}

    def holding(self, partner: str | None, start: datetime | None) -> M.BillingCycle | None:
        """The partner's cycle whose period holds ``start``."""
        if partner is None or start is None:
            return None
        return next((c for c in self._by_partner.get(partner, ()) if c.period_start <= start < c.period_end), None)

    def follow(self, wanted: dict[int, set[str]]) -> None:
        """Read the partner and start of these re-ingested records (batch -> ids), once per batch."""
        for batch_id, ids in wanted.items():
            rec = self.files.get(("intake_records", batch_id))
            got = _ids_in(self.store.data.abs(rec.path), ids, ("partner", "start")) if rec is not None else {}
            self._passed[batch_id] = {i: (r["partner"], r["start"]) for i, r in got.items()}

    def _load(self, cid: int) -> None:
        if cid in self._rated:
            return
        rf, jf = self.files.get(("rated", cid)), self.files.get(("rating_rejects", cid))
        self._rated[cid], self._rejected[cid] = set(), {}
        if rf is not None and rf.rows:
            t = pq.read_table(self.store.data.abs(rf.path), columns=["id"])
            self._rated[cid] = set(pc.cast(t.column("id"), pa.string()).to_pylist())
        if jf is not None and jf.rows:
            t = pq.read_table(self.store.data.abs(jf.path), columns=["id", "reason"])
            self._rejected[cid] = dict(zip(t.column("id").to_pylist(), t.column("reason").to_pylist(), strict=True))

    def of(self, cyc: M.BillingCycle | None, partner: str | None, record_id: str | None,
           at: datetime) -> tuple[str, str]:
        """What a cycle made of a record resubmitted at ``at``."""
        if cyc is not None and cyc.status == "finalized" and (cyc.finalized_at or at) <= at:
            return _corrected(self.store, self.s, cyc, record_id, at)
        if cyc is None or cyc.rated_at is None or cyc.rated_at < at or cyc.status == "open":
            where = cyc.label if cyc is not None else "PERIOD"
            return "pending", f"pending: run `icdsl cycle run {partner} {where}`"
        self._load(cyc.id)
        label = f"{cyc.partner_code} {cyc.label}"
        if record_id in self._rated[cyc.id]:
            return "rated", f"rated ({label})"
        if record_id in self._rejected[cyc.id]:
            return "rejected again", f"rejected again: {self._rejected[cyc.id][record_id]} ({label})"
        return "read", f"read by {label}"

    def of_intake(self, r: M.ResubmittedReject, at: datetime) -> tuple[str, str]:
        """An intake reject re-ingested: rejected again, a duplicate, or passed, and then what
        its cycle made of it."""
        if r.new_batch_id is None:
            return "pending", "pending"
        if r.new_batch_id not in self._intake_rejects:
            f = self.files.get(("intake_rejects", r.new_batch_id))
            got: dict[int, str] = {}
            if f is not None and f.rows:
                t = pq.read_table(self.store.data.abs(f.path), columns=["row", "reason"])
                got = {row: why for row, why in zip(t.column("row").to_pylist(), t.column("reason").to_pylist(),
                                                    strict=True) if row is not None}
            self._intake_rejects[r.new_batch_id] = got
        why = self._intake_rejects[r.new_batch_id].get(r.new_row)
        if why == "duplicate_id":
            return "duplicate", f"duplicate (batch #{r.new_batch_id})"
        if why is not None:
            return "rejected again", f"rejected again: {why} (batch #{r.new_batch_id})"
        passed = f"passed intake (batch #{r.new_batch_id})"
        where = self._passed.get(r.new_batch_id, {}).get(r.record_id or "")
        if where is None:
            return "passed intake", passed
        kind, text = self.of(self.holding(*where), where[0], r.record_id, at)
        return ("passed intake", passed) if kind == "pending" else (kind, f"{passed}, {text}")


def _corrected(store: Store, s: Session, cyc: M.BillingCycle, record_id: str | None,
               at: datetime) -> tuple[str, str]:
    """What the corrections of a finalized cycle made after ``at`` did with the record."""
    for c in s.scalars(select(M.Correction).where(M.Correction.cycle_id == cyc.id, M.Correction.created_at >= at)
                       .order_by(M.Correction.id.desc())):
        if not c.file_path or record_id is None:
            continue
        hit = _ids_in(store.data.abs(c.file_path), {record_id}, ("reason",)).get(record_id)
        if hit is not None:
            if hit["reason"] is None:
                return "rated", f"rated by correction #{c.id} ({cyc.partner_code} {cyc.label}, billed on the next cycle)"
            return "rejected again", f"rejected again: {hit['reason']} (correction #{c.id})"
    last = date.fromordinal(cyc.local_end.toordinal() - 1)
    return "pending", (f"pending: finalized cycle, bill it with `icdsl rerate --partner {cyc.partner_code} "
                       f"--from {cyc.local_start.isoformat()} --to {last.isoformat()} --rules ...`")


def cycle_of(s: Session, r: M.ResubmittedReject) -> M.BillingCycle | None:
    """The cycle that rejected the record, else (a partner unknown at ingest) its partner's
    cycle whose period holds the record's start, if one was opened."""
    if r.cycle_id is not None:
        return s.get(M.BillingCycle, r.cycle_id)
    if r.start is None or r.partner is None:
        return None
    return s.scalars(select(M.BillingCycle).where(M.BillingCycle.partner_code == r.partner,
                                                  M.BillingCycle.period_start <= r.start,
                                                  M.BillingCycle.period_end > r.start)).first()


def _with_states(entries: list[Entry], history: list[_Resubmitted],
                 batches: dict[int, M.IntakeBatch]) -> list[Entry]:
    """Each entry's state, and the resubmitted records that are no longer entries (rated,
    passed intake, rejected again) as entries of state ``resubmitted`` with their outcome."""
    intake = {(h.row.batch_id, h.row.row): h for h in history if h.row.source == "intake"}
    latest: dict[tuple[str, int, str | None], _Resubmitted] = {}
    for h in history:
        if h.row.source != "intake":
            key = (h.row.source, h.row.batch_id, h.row.record_id)
            if key in latest:  # resubmitted once more after a cycle rejected it again
                latest[key].kind = "rejected again"
                latest[key].outcome = f"rejected again, resubmitted again in #{h.row.resubmission_id}"
            latest[key] = h
    out: list[Entry] = []
    shown: set[int] = set()
    for e in entries:
        h = intake.get((e.batch, e.row)) if e.source == "intake" else latest.get((e.source, e.batch, e.id))
        # a record a cycle rejected again is open again (with its new reason); a finalized
        # cycle's rejects file never changes: what a correction made of it is the outcome
        if h is not None and (e.source == "intake" or h.kind != "rejected again"):
            e.state, e.resubmission, e.outcome, e.outcome_kind = "resubmitted", h.row.resubmission_id, h.outcome, h.kind
            shown.add(h.row.id)
        out.append(e)
    for h in history:  # resubmitted, then rated, rejected again or read: shown with their outcome
        if h.row.id in shown:
            continue
        r = h.row
        b = batches.get(r.batch_id)
        out.append(Entry(r.source, r.reason, r.partner, b.file_name if b else f"#{r.batch_id}", r.batch_id, r.row,
                         r.record_id, r.start, None, "", state="resubmitted", resubmission=r.resubmission_id,
                         outcome=h.outcome, outcome_kind=h.kind))
    return out
