"""Duplicates at intake: a repeat, or a conflict that someone must look at.

A record whose id was ingested before (earlier in the same file, or in an earlier batch) is a
duplicate. It is compared, field by field, with the version that was ingested first (the one
that is billed):

- the same content: a repeat, reject ``duplicate_id``, counted in ``duplicates`` (a switch
  that sends a call twice, a file sent again under another name);
- other content: a **conflict**, reject ``conflicting_duplicate``, counted in ``rejected``
  (the switch changed a call after the fact: its duration, its number, its start...). The
  earlier version stays billed; the later one is kept in the batch's rejects (its raw line)
  and both are kept side by side in ``intake_conflicts`` with the fields that differ, listed by
  ``icdsl conflicts``. A later version is never billed silently, nor dropped silently.

The compared content is every column both versions have except the id (the record fields and
the extra columns of the files: a reader's ``total_s``, a layout's ``route_class``); a column
that one of the two files does not have is not compared.

How: the duplicates of each batch (within the file: the normalized rows a reader hands on with
its ``duplicate_id`` rejects, :attr:`icdsl.rating.intake.IntakeBatch.duplicates`; across
batches: the records the earlier batches' ids match) are set aside while the file is read
(spilled to a temporary Parquet file beyond :data:`PENDING_ROWS`, so memory stays bounded
even for a file concatenated with itself), then compared with the first versions once the
file's records are written (the first version may be in an earlier batch of the same file).
Their rejects are written then, after the file's other rejects. A reader that gives no
``duplicates`` has its repeats counted as ``duplicate_id`` without comparison.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.rating.intake import IntakeBatch, transit
from icdsl.rating.intake.counts import short
from icdsl.rating.rejects import REJECTS_SCHEMA

CONFLICT = "conflicting_duplicate"
DUPLICATE = "duplicate_id"
#: duplicates kept in memory before they are spilled to a temporary file
PENDING_ROWS = 1 << 19
#: fields named in a conflict's detail (all of them are in ``intake_conflicts.differs``)
DETAIL_FIELDS = 4

#: duplicates compared at a time (their first versions are read once per such chunk)
RESOLVE_ROWS = 1 << 19

_ROW, _DETAIL, _RAW, _OWNER = "__reject_row", "__reject_detail", "__reject_raw", "__earlier_batch"
THIS_FILE, NOWHERE = -1, 0  # sources of a first version besides an earlier batch (ids from 1)


@dataclass
class Found:
    """What the comparison found: the counts and the conflicts' rows for ``intake_conflicts``
    (``earlier_batch_id`` None: earlier in the same file)."""

    repeats: int = 0
    conflicts: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


class Duplicates:
    """The duplicates of one ingest, set aside batch by batch and compared at the end.

    ``lookup(ids) -> (seen, owner)`` says which ids earlier batches hold and which batch holds
    each (the intake's :class:`~icdsl.billing.intake.PreviousIds`); ``files`` maps an earlier
    batch to its records file (absolute path) and ``names`` to its file name; ``raw_json``
    writes rows as JSON (the rejects' ``raw`` of a record that came with no line)."""

    def __init__(self, writer: Callable[[str, pa.Schema], Any], schema: pa.Schema, *,
                 lookup: Callable[[pa.Array], tuple[np.ndarray, np.ndarray]],
                 files: dict[int, Path], names: dict[int, str], raw_json: Callable[[pa.Table], pa.Array]):
        self._writer = writer
        self.schema = schema
        self.pending_schema = (schema.append(pa.field(_ROW, pa.int64())).append(pa.field(_DETAIL, pa.string()))
                               .append(pa.field(_RAW, pa.string())).append(pa.field(_OWNER, pa.int64())))
        self._lookup = lookup
        self._files = files
        self._names = names
        self._raw_json = raw_json
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self._spill: Any = None
        self.pending = 0

    # ------------------------------------------------------------------ while the file is read

    def repeats(self, batch: IntakeBatch, rejects: pa.Table) -> pa.Table:
        """Set aside the batch's ``duplicate_id`` rejects that come with their normalized rows;
        the rejects without them. A reader that gives no rows keeps its rejects as they are."""
        dups = batch.duplicates
        if dups is None or not dups.num_rows:
            return rejects
        is_dup = pc.equal(rejects.column("reason"), DUPLICATE).fill_null(False)
        pos = np.flatnonzero(is_dup.to_numpy(zero_copy_only=False))
        mine = rejects.take(pa.array(pos))
        if len(pos) != dups.num_rows or pc.cast(dups.column("id"), pa.string()).to_pylist() != mine.column("id").to_pylist():
            return rejects  # not aligned with the rejects: plain repeats, as the reader said
        self._hold(dups, mine.column("row"), mine.column("detail"), mine.column("raw"))
        return rejects.filter(pc.invert(is_dup))

    def again(self, records: pa.Table, owner: np.ndarray) -> None:
        """Set aside records whose id an earlier batch ingested, ``owner`` the batch of each
        (their line is not known: the raw content is the record as JSON)."""
        if records.num_rows:
            self._hold(records, pa.nulls(records.num_rows, pa.int64()), pa.nulls(records.num_rows, pa.string()),
                       self._raw_json(records), pa.array(owner, pa.int64()))

    def _hold(self, rows: pa.Table, row: Any, detail: Any, raw: Any, owner: Any = None) -> None:
        owner = owner if owner is not None else pa.nulls(rows.num_rows, pa.int64())
        t = pa.Table.from_arrays([*rows.select(self.schema.names).cast(self.schema).columns, row, detail, raw, owner],
                                 schema=self.pending_schema)
        self._held.append(t)
        self._held_rows += t.num_rows
        self.pending += t.num_rows
        if self._held_rows >= PENDING_ROWS:
            if self._spill is None:
                self._spill = self._writer("pending-duplicates", self.pending_schema)
            self._spill.write(pa.concat_tables(self._held))
            self._held, self._held_rows = [], 0

    def _chunks(self) -> Iterator[pa.Table]:
        if self._spill is not None:
            path = self._spill.close()
            for rb in pq.ParquetFile(path).iter_batches(batch_size=RESOLVE_ROWS):
                yield pa.Table.from_batches([rb], schema=self.pending_schema)
        if self._held:
            yield pa.concat_tables(self._held)

    def discard(self) -> None:
        """Remove the spill file (it is never part of the store)."""
        if self._spill is not None:
            self._spill.abort()
            self._spill = None

    # ------------------------------------------------------------------ once the file is written

    def resolve(self, records_path: Path, write_rejects: Callable[[pa.Table], None]) -> Found:
        """Compare every duplicate set aside with the first version of its id (in the file's
        records, ``records_path``, else in an earlier batch); write their rejects."""
        found = Found()
        try:
            for chunk in self._chunks():
                write_rejects(self._resolve(chunk, records_path, found))
        finally:
            self.discard()
        return found

    def _sources(self, chunk: pa.Table, text: pa.Array, records_path: Path) -> tuple[np.ndarray, dict[int, pa.Table]]:
        """Where the first version of each row's id is: ``src`` (``THIS_FILE``, an earlier
        batch, or ``NOWHERE``) and the first versions of each source."""
        src = pc.fill_null(chunk.column(_OWNER), NOWHERE).to_numpy().astype(np.int64)
        tables: dict[int, pa.Table] = {}
        within = src == NOWHERE  # repeats within the file: here, or (rarely) in an earlier batch
        if within.any():
            mask = pa.array(within)
            here = _rows_with_ids(records_path, pc.unique(text.filter(mask)))
            if here.num_rows:
                tables[THIS_FILE] = here
                hit = within & pc.is_in(text, value_set=_array(pc.cast(here.column("id"), pa.string()))) \
                    .to_numpy(zero_copy_only=False)
                src[hit] = THIS_FILE
            left = src == NOWHERE
            if left.any():
                rows = np.flatnonzero(left)
                seen, batch = self._lookup(_array(chunk.column("id").take(pa.array(rows))))
                src[rows[seen]] = batch[seen]
        for b in sorted(set(src[src > 0].tolist())):
            tables[b] = _rows_with_ids(self._files[b], pc.unique(text.filter(pa.array(src == b))))
        return src, tables

    def _resolve(self, chunk: pa.Table, records_path: Path, found: Found) -> pa.Table:
        n = chunk.num_rows
        text = _array(pc.cast(chunk.column("id"), pa.string()))
        detail = _array(chunk.column(_DETAIL))
        src, tables = self._sources(chunk, text, records_path)
        conflict = np.zeros(n, bool)
        texts: dict[int, str] = {}  # conflicts' details, by position
        for b, earlier in tables.items():
            pos = np.flatnonzero(src == b)
            if not len(pos):
                continue
            e_ids = _array(pc.cast(earlier.column("id"), pa.string()))
            later = chunk.take(pa.array(pos))
            first = earlier.take(pc.index_in(text.take(pa.array(pos)), value_set=e_ids))
            names, masks = _differences(first, later.select(self.schema.names))
            odd = np.zeros(len(pos), bool)
            for m in masks:
                odd |= m
            where = "earlier in the file" if b == THIS_FILE else f"in batch #{b} ({self._names[b]})"
            if b != THIS_FILE:  # a repeat of another batch says which one (on columns: there may be millions)
                says = pc.binary_join_element_wise("id '", text, f"' was already ingested {where}", "")
                todo = (src == b) & pc.is_null(detail).to_numpy(zero_copy_only=False)
                detail = pc.if_else(pa.array(todo), says, detail)
            if odd.any():
                bad = np.flatnonzero(odd)
                conflict[pos[bad]] = True
                self._conflicts(found, first.take(pa.array(bad)), later.take(pa.array(bad)), names,
                                [m[bad] for m in masks], None if b == THIS_FILE else b, where, pos[bad], texts)
        nowhere = pc.binary_join_element_wise("id '", text, "' was already ingested", "")
        detail = pc.coalesce(detail, nowhere)  # the first version was not found (a reader's own rule)
        if texts:
            at = np.flatnonzero(conflict)
            detail = pc.replace_with_mask(detail, pa.array(conflict), pa.array([texts[int(k)] for k in at], pa.string()))
        found.repeats += int(n - conflict.sum())
        return pa.table({
            "row": chunk.column(_ROW),
            "id": text,
            "reason": pc.if_else(pa.array(conflict), CONFLICT, DUPLICATE),
            "detail": detail,
            "raw": chunk.column(_RAW),
        }, schema=REJECTS_SCHEMA)

    def _conflicts(self, found: Found, first: pa.Table, later: pa.Table, names: list[str], masks: list[np.ndarray],
                   batch_id: int | None, where: str, pos: np.ndarray, texts: dict[int, str]) -> None:
        earlier_json = self._raw_json(first).to_pylist()
        later_rows = later.select(self.schema.names)
        later_json = self._raw_json(later_rows).to_pylist()
        ids = later.column("id").to_pylist()
        partners = later.column("partner").to_pylist()
        starts = later.column("start").to_pylist()
        rows = later.column(_ROW).to_pylist()
        a = {n: first.column(n).to_pylist() for n in names}
        b = {n: later.column(n).to_pylist() for n in names}
        for k in range(len(pos)):
            fields = [n for n, m in zip(names, masks, strict=True) if m[k]]
            differs = {n: [_text(a[n][k]), _text(b[n][k])] for n in fields}
            shown = ", ".join(f"{n} {short(v[0], 40)} -> {short(v[1], 40)}" for n, v in
                              list(differs.items())[:DETAIL_FIELDS])
            more = len(fields) - DETAIL_FIELDS
            texts[int(pos[k])] = (f"id '{short(ids[k])}' was already ingested {where} with other content: {shown}"
                                  + (f" (and {more} more field(s))" if more > 0 else "")
                                  + "; the earlier version stays billed (icdsl conflicts)")
            found.rows.append({
                "kind": "conflict", "row": rows[k], "record_id": str(ids[k]), "partner": partners[k],
                "start": starts[k], "earlier_batch_id": batch_id, "earlier_id": str(ids[k]), "differs": differs,
                "earlier": json.loads(earlier_json[k]), "later": json.loads(later_json[k]),
            })
        found.conflicts += len(pos)


def _array(x: Any) -> pa.Array:
    return x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    return str(v)


def _differences(earlier: pa.Table, later: pa.Table) -> tuple[list[str], list[np.ndarray]]:
    """The columns both tables have (but the id) and, for each, where the two differ (two
    nulls are equal; columns of different types are compared as text)."""
    names, masks = [], []
    for name in later.column_names:
        if name == "id" or name not in earlier.column_names:
            continue
        a, b = earlier.column(name), later.column(name)
        if a.type != b.type:
            a, b = pc.cast(a, pa.string()), pc.cast(b, pa.string())
        same = pc.or_(pc.equal(a, b).fill_null(False), pc.and_(pc.is_null(a), pc.is_null(b)))
        names.append(name)
        masks.append(~same.to_numpy(zero_copy_only=False))
    return names, masks


def _rows_with_ids(path: Path, ids: pa.Array) -> pa.Table:
    """The rows of a records file whose id (as text) is among ``ids``: the id column read and
    matched at once (the set of ``ids`` is hashed once), and only the row groups that hold one
    of them read whole."""
    pf = pq.ParquetFile(path)
    if not len(ids) or not pf.metadata.num_rows:
        return pf.schema_arrow.empty_table()
    hit = pc.is_in(_array(pc.cast(pf.read(columns=["id"]).column("id"), pa.string())), value_set=ids)
    hit = hit.to_numpy(zero_copy_only=False)
    parts, at = [], 0
    for g in range(pf.metadata.num_row_groups):
        size = pf.metadata.row_group(g).num_rows
        mine = hit[at:at + size]
        at += size
        if mine.any():
            parts.append(pf.read_row_group(g).filter(pa.array(mine)))
    if not parts:
        return pf.schema_arrow.empty_table()
    t = pa.concat_tables(parts)
    # a transit record is written once per side: its version is the side as read (origination)
    side = transit.termination_mask(t)
    if side is not None and pc.any(side).as_py():
        t = pa.concat_tables([t.filter(pc.invert(side)), t.filter(side)])
    # the first version of an id only (a file holds each id once, a transit record once per side)
    text = _array(pc.cast(t.column("id"), pa.string()))
    first = pc.index_in(pc.unique(text), value_set=text)
    return t.take(first)


# --------------------------------------------------------------------------- the store's side


def earlier_batches(s: Session, abs_path: Callable[[str], Path]) -> tuple[dict[int, Path], dict[int, str]]:
    """Each earlier batch's records file (absolute) and file name."""
    rows = s.execute(select(M.DataFile.batch_id, M.DataFile.path, M.IntakeBatch.file_name)
                     .join(M.IntakeBatch, M.IntakeBatch.id == M.DataFile.batch_id)
                     .where(M.DataFile.kind == "intake_records")).all()
    return {b: abs_path(p) for b, p, _ in rows}, {b: name for b, _, name in rows}


def store_rows(s: Session, batch_id: int, rows: list[dict[str, Any]], t: datetime) -> None:
    """The conflicts and suspects of a batch as ``intake_conflicts`` rows (one bulk insert)."""
    if not rows:
        return
    s.connection().execute(insert(M.IntakeConflict.__table__), [
        {**r, "batch_id": batch_id, "row": r.get("row"),
         "earlier_batch_id": r["earlier_batch_id"] if r["earlier_batch_id"] is not None else batch_id,
         "created_at": t} for r in rows])


#: conflicts (and suspects) shown in an ingest report; ``icdsl conflicts`` lists them all
REVIEW_SHOWN = 5


def conflict_rows(s: Session, *, batch_id: int | None = None, partner: str | None = None, kind: str | None = None,
                  limit: int | None = None) -> list[M.IntakeConflict]:
    q = select(M.IntakeConflict).order_by(M.IntakeConflict.batch_id, M.IntakeConflict.id)
    if batch_id is not None:
        q = q.where(M.IntakeConflict.batch_id == batch_id)
    if partner is not None:
        q = q.where(M.IntakeConflict.partner == partner)
    if kind is not None:
        q = q.where(M.IntakeConflict.kind == kind)
    if limit is not None:
        q = q.limit(limit)
    rows = list(s.scalars(q))
    for r in rows:
        s.expunge(r)
    return rows


def conflict_summary(s: Session, partner: str | None = None) -> list[tuple[str | None, str, int]]:
    """(partner, kind, how many) of every partner's conflicts and suspects (``icdsl cycle status``)."""
    q = (select(M.IntakeConflict.partner, M.IntakeConflict.kind, func.count())
         .group_by(M.IntakeConflict.partner, M.IntakeConflict.kind)
         .order_by(M.IntakeConflict.partner, M.IntakeConflict.kind))
    if partner is not None:
        q = q.where(M.IntakeConflict.partner == partner)
    return [(p, k, int(n)) for p, k, n in s.execute(q).all()]


def conflict_counts(s: Session, batch_id: int) -> dict[str, int]:
    return dict(s.execute(select(M.IntakeConflict.kind, func.count()).where(M.IntakeConflict.batch_id == batch_id)
                          .group_by(M.IntakeConflict.kind)).all())


def where_text(file_name: str, c: M.IntakeConflict) -> str:
    return f"{file_name}:{c.row}" if c.row is not None else file_name


def differs_text(c: M.IntakeConflict) -> str:
    return ", ".join(f"{k} {short(str(v[0]), 40)} -> {short(str(v[1]), 40)}" for k, v in (c.differs or {}).items())


def review_text(report: Any) -> str:
    """The conflicts and suspects of an ingest report, as lines under its summary."""
    out = []
    n = report.conflict_count
    if n:
        out.append(f"  {n} conflicting duplicate(s): id(s) ingested before with other content: rejected "
                   f"({CONFLICT}), the earlier version stays billed")
        for c in report.conflicts:
            earlier = "earlier in the file" if c.earlier_batch_id == c.batch_id else f"batch #{c.earlier_batch_id}"
            out.append(f"    {where_text(report.file_name, c)}: id '{short(c.record_id)}' ({c.partner}): "
                       f"{differs_text(c)} (billed: {earlier})")
        if n > len(report.conflicts):
            out.append(f"    ... and {n - len(report.conflicts)} more")
    m = report.suspect_count
    if m:
        out.append(f"  {m} suspected duplicate(s): the same call (numbers, start, duration) under a new id: "
                   "billed, listed for review")
        for c in report.suspects:
            earlier = "earlier in the file" if c.earlier_batch_id == c.batch_id else f"batch #{c.earlier_batch_id}"
            out.append(f"    id '{short(c.record_id)}' ({c.partner}) = id '{short(c.earlier_id)}' ({earlier})")
        if m > len(report.suspects):
            out.append(f"    ... and {m - len(report.suspects)} more")
    elif report.fingerprinted:
        out.append("  no suspected duplicate (fingerprints checked)")
    if n or m:
        kinds = "" if n and m else (" --kind conflict" if n else " --kind suspect")
        out.append(f"  both versions: icdsl conflicts --batch {report.batch_id}{kinds}")
    return "".join("\n" + line for line in out)
