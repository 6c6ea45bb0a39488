"""Intake into the store: one traffic file becomes one intake batch.

- **Idempotent**: a file whose content (sha256) was already ingested adds nothing, and the
  report says so (``already_ingested``), whatever its name.
- **Any record reader**: CSV and Parquet (the built-in ``table`` reader) or a plugin's switch
  format (``--reader asterisk_csv``), its output checked (:mod:`icdsl.billing.sources`).
- **Duplicates across batches**: a record whose id was ingested in an earlier batch is a
  duplicate, exactly like a repeated id within the file (which the reader finds). Each is
  compared with the version ingested first (:mod:`icdsl.billing.conflicts`): the same content
  is a repeat (``duplicate_id``, detail naming the earlier batch), other content a conflict
  (``conflicting_duplicate``, a reject, both versions kept in ``intake_conflicts``).
- **Suspects** (``fingerprint=True``): a new id with the numbers, start and duration of another
  record is reported (:mod:`icdsl.billing.fingerprints`), and billed.
- **Reconciled**: ``read == passed + rejected + duplicates`` (a conflict is in ``rejected``) and
  the reject counts by reason add up to ``rejected + duplicates``; checked here, stored, and a
  CHECK constraint of the table.
- **Kept**: passed records and rejects (reason, detail, raw content) go to two Parquet files
  under ``intake/<sha256 of the file>/`` in the data folder; the batch row, its counts by reason
  and its record counts by partner (with the first and last start) are rows.

One transaction, taken under the intake lock (one ingest at a time, so that two files sharing
ids cannot both pass them); the Parquet files are durable before it commits. The file's side
(:func:`split_file`: read, check, split by partner, write, reconcile) needs no database, so
:func:`ingest_files` runs it on the workers of a Dask cluster and keeps the database side here
(docs/ingest.md).

On columns, with no Python loop per record: the partner order is found on integer keys; each
batch is gathered into that order a piece (a few whole partners) at a time while a second thread
writes the previous piece, columns holding one value are not gathered at all and the partner
column comes from the sort keys; texts the writer dictionary-encodes reach it as dictionaries;
the counts by partner and local day come from sorted starts and one search of each zone's
midnights, computed while the last piece is written. Earlier files' id ranges are read from
their statistics once per process, and late records cost one query unless a finalized cycle
overlaps the batch.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from icdsl.billing import base, conflicts, fingerprints
from icdsl.billing import models as M
from icdsl.billing import rows as bulk
from icdsl.billing.errors import IngestError, ReconciliationError
from icdsl.billing.files import TMP_PREFIX, DataDir, WrittenFile, fsync_files, sha256_file
from icdsl.billing.late import record_late
from icdsl.billing.periods import PeriodError, local_midnight
from icdsl.billing.sources import Source
from icdsl.plan.model import Plan, RecordLayout
from icdsl.rating.intake import transit
from icdsl.rating.intake.times import to_datetime
from icdsl.rating.rejects import REJECTS_SCHEMA

if TYPE_CHECKING:
    from icdsl.billing.store import IngestReport, Store


@dataclass(frozen=True)
class Earlier:
    """The intake batches ingested before a file, as its duplicate checks see them: each one's
    records file (relative to the data folder) and file name, in batch order. Plain data, so
    that a worker of a cluster can check a file against them without the database."""

    files: tuple[tuple[str, int], ...] = ()  # (records file, batch id)
    names: tuple[tuple[int, str], ...] = ()  # (batch id, file name)
    shas: frozenset[str] = frozenset()  # the files ingested (sha256): a worker skips them

    @property
    def last(self) -> int:
        """The last batch seen (0: none)."""
        return max((b for _, b in self.files), default=0)

    @classmethod
    def of(cls, s: Session, *, shas: bool = False, after: int = 0) -> Earlier:
        """The batches in the store (``after``: only those after that batch); ``shas``: with
        the files ingested."""
        rows = s.execute(
            select(M.DataFile.path, M.DataFile.batch_id, M.IntakeBatch.file_name)
            .join(M.IntakeBatch, M.IntakeBatch.id == M.DataFile.batch_id)
            .where(M.DataFile.kind == "intake_records", M.DataFile.batch_id > after)
            .order_by(M.DataFile.batch_id)
        ).all()
        known = frozenset(s.scalars(select(M.IntakeBatch.sha256))) if shas else frozenset()
        return cls(tuple((path, b) for path, b, _ in rows), tuple((b, name) for _, b, name in rows), known)

    def paths(self, data: DataDir) -> dict[int, Path]:
        """Each batch's records file, absolute."""
        return {b: data.abs(path) for path, b in self.files}


class PreviousIds:
    """The ids ingested before, looked up batch by batch without loading them all.

    Each earlier intake file's id range comes from its Parquet statistics; a batch's ids are
    compared with the files whose range overlaps its own, and only those files' ids are read
    (once, then kept). Traffic ids usually grow with time, so a new file overlaps few or none
    of the earlier ones, and ingesting the N-th file no longer reads the N-1 before it. Ranges
    are compared in the ids' own type (numbers as numbers, texts as texts); files whose type
    differs from the batch's are always read. Matching itself is on the ids as text."""

    def __init__(self, data: DataDir, earlier: Earlier):
        self.data = data
        self.names: dict[int, str] = dict(earlier.names)
        self.files = list(earlier.files)
        self._ranges: dict[str, tuple[pa.DataType, Any, Any] | None] = {}
        self._ids: dict[str, pa.Array] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _range(self, path: str) -> tuple[pa.DataType, Any, Any] | None:
        if path not in self._ranges:
            self._ranges[path] = _id_range(str(self.data.abs(path)))
        return self._ranges[path]

    def _ids_of(self, path: str) -> pa.Array:
        got = self._ids.get(path)
        if got is None:
            ids = pq.read_table(self.data.abs(path), columns=["id"]).column("id")
            got = pc.cast(ids, pa.string()).combine_chunks() if ids.num_chunks else pa.array([], pa.string())
            self._ids[path] = got
        return got

    def _overlaps(self, path: str, ids: pa.Array, bounds: tuple[Any, Any]) -> bool:
        r = self._range(path)
        if r is None:
            return True
        typ, lo, hi = r
        if lo is None:  # an empty file
            return False
        same = (pa.types.is_integer(typ) and pa.types.is_integer(ids.type)) or (
            pa.types.is_string(typ) and pa.types.is_string(ids.type))
        if not same:
            return True
        blo, bhi = bounds
        if blo is None:
            return False
        if isinstance(lo, bytes):
            lo, hi = lo.decode("utf-8", "replace"), hi.decode("utf-8", "replace")
        return not (bhi < lo or blo > hi)

    def lookup(self, ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(seen, owner): which of ``ids`` were ingested before, and the batch of each."""
        seen = np.zeros(len(ids), bool)
        owner = np.zeros(len(ids), np.int64)
        if not self.files or not len(ids):
            return seen, owner
        mm = pc.min_max(ids)
        bounds = (mm["min"].as_py(), mm["max"].as_py())
        text = None  # the ids as text, made only if a file may hold some of them
        for path, batch_id in self.files:
            if not self._overlaps(path, ids, bounds):
                continue
            if text is None:
                text = pc.cast(ids, pa.string())
            found = pc.is_in(text, value_set=self._ids_of(path)).to_numpy(zero_copy_only=False)
            new = found & ~seen
            owner[new] = batch_id
            seen |= found
        return seen, owner


#: (path, size, mtime, inode) -> the id range of an intake records file (they never change: the
#: files are named by their content), so that ingesting the N-th file does not read the
#: statistics of the N-1 before it again
_RANGES: dict[tuple[str, int, int, int], tuple[pa.DataType, Any, Any] | None] = {}


def _id_range(path: str) -> tuple[pa.DataType, Any, Any] | None:
    """(type, min, max) of the ids of a records file from its statistics; None if unknown."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _RANGES:
        return _RANGES[key]
    got = None
    try:
        pf = pq.ParquetFile(path)
        i = pf.schema_arrow.get_field_index("id")
        typ = pf.schema_arrow.field(i).type
        lo = hi = None
        for g in range(pf.metadata.num_row_groups):
            st_ = pf.metadata.row_group(g).column(i).statistics
            if st_ is None or not st_.has_min_max:
                lo = hi = None
                break
            lo = st_.min if lo is None else min(lo, st_.min)
            hi = st_.max if hi is None else max(hi, st_.max)
        if lo is not None or pf.metadata.num_rows == 0:
            got = (typ, lo, hi)
    except (OSError, KeyError, ValueError, TypeError):
        got = None
    if len(_RANGES) > 10_000:
        _RANGES.clear()
    _RANGES[key] = got
    return got


RECORDS_ROW_GROUP = 1 << 16
#: the columns of a records file whose values hardly repeat (no dictionary pages)
RECORDS_UNIQUE = ("id", "a_number", "b_number", "start")
#: the columns of a records file whose row groups get min/max statistics: the ones readers
#: select row groups by (a cycle by partner and start, late records by start, duplicates by id);
#: statistics of the others cost writing time and nothing reads them
RECORDS_STATISTICS = ("id", "partner", "start")
#: the codec of records files: lz4 encodes (and decodes, for every cycle that reads the file)
#: in about half the time of zstd, for files about 45% larger
RECORDS_COMPRESSION = "lz4"
#: a batch with at most this many partners gets row groups of one partner each
PARTNER_ROW_GROUPS_MAX = 2_000
#: a batch is gathered into partner order and written this many rows at a time (whole partners),
#: so that one piece is written while the next is gathered
PIECE_ROWS = 1 << 17


class ByPartner:
    """A batch of records in the order of partner, then start: each partner's rows ``bounds[k]``
    to ``bounds[k + 1]`` (its code ``codes[k]``) and the starts (integer microseconds), in
    that order. The order is found on integer keys (numpy); the table itself is put in that
    order by :meth:`table` (a gather of every column, once) or piece by piece by :meth:`pieces`."""

    def __init__(self, records: pa.Table):
        self._records = records
        self._sorted: pa.Table | None = None
        self._gather: _Gather | None = None
        self._partner: tuple[pa.Array, np.ndarray] | None = None  # (codes in order, each row's code index)
        self.perm: np.ndarray | None = None  # None: the records are in that order already
        n = records.num_rows
        start = pc.cast(records.column("start"), pa.int64()).to_numpy(zero_copy_only=False)
        part = records.column("partner")
        if n == 0:
            self.bounds, self.codes, self.starts = np.zeros(1, np.int64), [], start
            return
        if part.null_count:  # not from icdsl's readers (a partner is required): Arrow's sort
            self._sorted = records = records.sort_by([("partner", "ascending"), ("start", "ascending")])
            part = records.column("partner").combine_chunks()
            start = pc.cast(records.column("start"), pa.int64()).to_numpy(zero_copy_only=False)
            cuts = np.flatnonzero(pc.not_equal(part.slice(1), part.slice(0, n - 1)).fill_null(True)
                                  .to_numpy(zero_copy_only=False)) + 1
            self.bounds = np.array([0, *cuts.tolist(), n], np.int64)
            self.codes = [part[int(i)].as_py() for i in self.bounds[:-1]]
            self.starts = start
            return
        enc = pc.dictionary_encode(part)
        enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
        names = enc.dictionary.to_pylist()
        order = sorted(range(len(names)), key=names.__getitem__)
        rank = np.empty(len(names), np.int32)
        rank[order] = np.arange(len(names), dtype=np.int32)
        key = rank[enc.indices.to_numpy(zero_copy_only=False)]
        if len(names) < 2**15:
            key = key.astype(np.int16)  # numpy sorts small integers stably by radix, in linear time
        step = np.diff(key)
        if not bool(np.all((step > 0) | ((step == 0) & (np.diff(start) >= 0)))):
            if bool(np.all(np.diff(start) >= 0)):  # traffic in time order (the usual case)
                perm = np.argsort(key, kind="stable")
            else:  # stable: equal (partner, start) keep the file's order
                perm = np.lexsort((start, key))
            key, start, self.perm = key[perm], start[perm], perm
        cuts = np.flatnonzero(key[1:] != key[:-1]) + 1
        self.bounds = np.array([0, *cuts.tolist(), n], np.int64)
        self.codes = [names[order[int(k)]] for k in key[self.bounds[:-1]]]
        self.starts = start
        # the partner column in this order comes from the keys: no gather of its text
        self._partner = (pa.array([names[i] for i in order], pa.string()), key)

    def _gatherer(self, coded: frozenset[str] = frozenset()) -> _Gather:
        if self._gather is None or self._gather.coded != coded:
            self._gather = _Gather(self._records, self.perm, self._partner, coded)
        return self._gather

    def table(self) -> pa.Table:
        """The records in partner, start order."""
        if self._sorted is None:
            self._sorted = self._records if self.perm is None else self._gatherer().rows(0, self._records.num_rows)
        return self._sorted

    def slices(self) -> list[pa.Table]:
        t = self.table()
        return [t.slice(a, b - a) for a, b in zip(self.bounds[:-1].tolist(), self.bounds[1:].tolist(), strict=True)]

    def pieces(self, rows: int = PIECE_ROWS, *, coded: frozenset[str] = frozenset()
               ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """The records in partner, start order, about ``rows`` at a time and never cutting a
        partner: (piece, its partners' bounds within the piece). Each piece is gathered when
        asked for, so that the previous one can be written meanwhile. ``coded``: text columns
        given dictionary-encoded where they are already (see :class:`_Gather`)."""
        b = self.bounds
        if len(b) < 2:
            return
        k = 0
        while k < len(b) - 1:
            # whole partners from k: as many as fit in ``rows`` (at least one)
            j = max(int(np.searchsorted(b, b[k] + rows, side="right")) - 1, k + 1)
            lo, hi = int(b[k]), int(b[j])
            if self._sorted is not None or self.perm is None:
                piece = self.table().slice(lo, hi - lo)
            else:
                piece = self._gatherer(coded).rows(lo, hi, coded=bool(coded))
            yield piece, b[k:j + 1] - lo
            k = j


class _Gather:
    """Put a table's rows in the order ``perm`` (None: as they are), a range of that order at a
    time, deciding once per column how: a column holding one value (a direction, a service, a
    column of nulls) is not gathered at all; the partner column is made from the sort keys; a
    text column with few distinct values (a direction, a service) is gathered through its
    dictionary, four times faster than Arrow's take of text; others by Arrow's take.

    ``coded``: the text columns to give dictionary-encoded where they are already (one value,
    the partner, few values), so that the Parquet writer takes their codes as they are instead
    of hashing every value again."""

    def __init__(self, table: pa.Table, perm: np.ndarray | None, partner: tuple[pa.Array, np.ndarray] | None,
                 coded: frozenset[str] = frozenset()):
        self.perm = perm
        self.names = table.column_names
        self.schema = table.schema
        self.coded = coded
        self._zeros: pa.Array | None = None
        self.how: list[tuple[str, Any, Any]] = []
        for name, col in zip(table.column_names, table.columns, strict=True):
            col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
            one = len(col) > 0 and _one_value(col)
            if one and name in coded and not col.null_count:
                self.how.append(("one", col, col.slice(0, 1)))
            elif perm is None or one:
                self.how.append(("same", col, None))
            elif name == "partner" and partner is not None:
                self.how.append(("keys", partner[0], partner[1]))
            else:
                enc = _few_values(col)
                self.how.append(("take", col, None) if enc is None else ("dict", enc.dictionary, enc.indices))

    def rows(self, lo: int, hi: int, *, coded: bool = False) -> pa.Table:
        """Rows ``lo`` to ``hi`` of the order (``coded``: with the coded columns as dictionaries)."""
        idx = None if self.perm is None else pa.array(self.perm[lo:hi])
        cols = []
        for name, (how, a, b) in zip(self.names, self.how, strict=True):
            code = coded and name in self.coded
            if how == "one" and code:
                if self._zeros is None:
                    self._zeros = pa.array(np.zeros(len(a), np.int32))
                cols.append(pa.DictionaryArray.from_arrays(self._zeros.slice(0, hi - lo), b))
            elif how in ("one", "same"):  # in order already, or one value: any slice is the rows
                cols.append(a.slice(lo, hi - lo))
            elif how == "keys":
                keys = pa.array(b[lo:hi].astype(np.int32))
                cols.append(pa.DictionaryArray.from_arrays(keys, a) if code else pc.take(a, keys))
            elif how == "dict":
                keys = pc.take(b, idx)
                cols.append(pa.DictionaryArray.from_arrays(keys, a) if code else pc.take(a, keys))
            else:
                cols.append(a.take(idx))
        if coded:
            return pa.Table.from_arrays(cols, names=self.names)
        return pa.Table.from_arrays(cols, schema=self.schema)


def _few_values(col: pa.Array) -> pa.DictionaryArray | None:
    """A text column worth gathering through its dictionary (few distinct values in its first
    rows, and overall): the column dictionary-encoded; else None."""
    if not pa.types.is_string(col.type) or len(col) <= 4096:
        return None
    if pc.count_distinct(col.slice(0, 4096), mode="all").as_py() > 1024:
        return None
    enc = pc.dictionary_encode(col)
    return enc if len(enc.dictionary) * 16 <= len(col) else None


def _one_value(col: pa.Array) -> bool:
    """Whether every row holds the same value (all null, or one text without nulls): a column
    that any order leaves as it is. Only nulls and texts are looked at (a take of numbers is
    cheap); the first rows first."""
    n = len(col)
    if col.null_count == n:
        return True
    if col.null_count or not pa.types.is_string(col.type):
        return False
    first = col[0]
    return bool(pc.all(pc.equal(col.slice(0, 4096), first)).as_py()) and bool(pc.all(pc.equal(col, first)).as_py())


def _partner_row_groups(batch: ByPartner) -> bool:
    """Whether a batch is written so that each row group holds one partner's records: a cycle
    reads a partner's records from the row groups whose statistics name it, and no other
    partner's rows come along (with mixed row groups, a 200-partner month read each intake
    file about fifty times over). Batches with very many partners are written as they are
    (row groups of RECORDS_ROW_GROUP rows, in partner order)."""
    return len(batch.codes) <= PARTNER_ROW_GROUPS_MAX and None not in batch.codes


def _write_piece(writer: Any, piece: pa.Table, bounds: np.ndarray, by_partner: bool) -> None:
    """Write one piece of a batch in partner order (its partners' ``bounds``): a row group (or
    more, for a large partner) per partner if ``by_partner``."""
    if not by_partner:
        writer.write(piece)
        return
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        writer.write(piece.slice(a, b - a))


def partner_zones(s: Session, plan: Plan | None) -> dict[str, str]:
    """Each known partner's time zone (the store's declaration, else the plan's)."""
    zones = {p.code: p.timezone for p in plan.partners} if plan is not None else {}
    zones.update({code: tz for code, tz in s.execute(select(M.Partner.code, M.Partner.timezone))})
    return zones


def count_days(records: pa.Table | ByPartner, zones: dict[str, str], acc: dict[tuple[str, date], int]) -> None:
    """Add the records of a batch to ``acc[(partner, local day)]`` (the partner's time zone,
    UTC for a partner not declared), on columns: each partner's starts are sorted, so its
    count of a day is the distance between two searches of the day's midnights in them."""
    batch = records if isinstance(records, ByPartner) else ByPartner(records)
    us = batch.starts
    if not len(us):
        return
    first = _utc_day(int(us.min())) - timedelta(days=1)
    nd = (_utc_day(int(us.max())) - first).days + 2
    b = batch.bounds.tolist()
    days = [first + timedelta(days=d) for d in range(nd)]
    for k, code in enumerate(batch.codes):
        edges = _midnights(zones.get(code, "UTC"), first, nd)
        # rows lo..hi hold the partner's starts, ascending: the day of each row is found by
        # where the midnights fall among them (every start lies after the first midnight)
        counts = np.diff(np.searchsorted(us[b[k]:b[k + 1]], edges, side="left"), append=b[k + 1] - b[k])
        for d, n in zip(np.flatnonzero(counts).tolist(), counts[counts > 0].tolist(), strict=True):
            acc[(code, days[d])] += n


@lru_cache(maxsize=256)
def _midnights(tz: str, first: date, n: int) -> np.ndarray:
    """The UTC instants (microseconds) at which the ``n`` days from ``first`` start in ``tz``."""
    days = [first + timedelta(days=i) for i in range(n)]
    try:
        return np.array([int(local_midnight(d, tz).timestamp() * 1_000_000) for d in days], np.int64)
    except PeriodError:
        return np.array([int(local_midnight(d, "UTC").timestamp() * 1_000_000) for d in days], np.int64)


def _utc_day(us: int) -> date:
    return date(1970, 1, 1) + timedelta(days=us // 86_400_000_000)


class _Behind:
    """Write files behind in one thread while the next batch is read (at most one write
    waiting): pyarrow's Parquet writer lets the reading go on meanwhile."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="icdsl-ingest-writer")
        self._pending: Future | None = None

    def submit(self, fn: Any, *args: Any) -> None:
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        """Wait for the pending write; its error, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def resolve_layout(layout: RecordLayout | str | None, plan: Plan | None) -> RecordLayout | None:
    if layout is None or isinstance(layout, RecordLayout):
        return layout
    for candidate in plan.layouts if plan is not None else ():
        if candidate.name == layout:
            return candidate
    known = ", ".join(sorted(x.name for x in plan.layouts)) if plan is not None else ""
    raise IngestError(f"no record layout named '{layout}' in the rules" + (f" (known: {known})" if known else ""))


_CONTROL = r"[\x00-\x1f]"


def _raw_json(table: pa.Table) -> pa.Array:
    """Each row as a JSON object (timestamps as Arrow's text, e.g. ``2026-03-02 09:00:00.000000Z``).
    Built column-wise (~20x faster than json.dumps per row); rows are dumped one by one only if a
    text holds a control character (which needs escaping beyond quotes and backslashes)."""
    cols: dict[str, pa.Array] = {}
    texts: list[str] = []
    for name in table.column_names:
        col = table.column(name).combine_chunks() if table.num_rows else pa.array([], pa.string())
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
            cols[name] = col
        elif pa.types.is_timestamp(col.type) and col.type.tz in ("UTC", "+00:00"):
            # formatting with a time zone is slow in Arrow: format the naive view and add the Z
            naive = pc.cast(col.view(pa.timestamp(col.type.unit)), pa.string())
            cols[name] = pc.binary_join_element_wise(naive, "Z", "")
            texts.append(name)
        else:
            cols[name] = pc.cast(col, pa.string())
            texts.append(name)
    odd_floats = any(pa.types.is_floating(c.type) and pc.any(pc.invert(pc.is_finite(c))).as_py()
                     for c in cols.values())
    if odd_floats or any(pc.any(pc.match_substring_regex(cols[n], _CONTROL)).as_py() for n in texts):
        rows = pa.table(cols).to_pylist()
        return pa.array([json.dumps(r, ensure_ascii=False) for r in rows], pa.string())
    parts = []
    for i, (name, col) in enumerate(cols.items()):
        if name in texts:
            esc = pc.replace_substring(pc.replace_substring(col, "\\", "\\\\"), '"', '\\"')
            value = pc.binary_join_element_wise('"', esc, '"', "")
        else:
            value = pc.cast(col, pa.string())
            if pa.types.is_boolean(col.type):
                value = pc.utf8_lower(value)
        value = pc.fill_null(value, "null")
        key = ("{" if i == 0 else ", ") + json.dumps(name, ensure_ascii=False) + ": "
        parts.append(pc.binary_join_element_wise(key, value, ""))
    if not parts:
        return pa.array(["{}"] * table.num_rows, pa.string())
    return pc.binary_join_element_wise(*parts, "}", "")


def _partner_stats(batch: ByPartner, acc: dict[str, list[Any]]) -> None:
    """Add each partner's record count, first and last start (microseconds) to ``acc`` (each
    partner's starts are in ascending order)."""
    b, us = batch.bounds.tolist(), batch.starts
    for k, code in enumerate(batch.codes):
        lo, hi = b[k], b[k + 1]
        n, first, last = hi - lo, int(us[lo]), int(us[hi - 1])
        got = acc.setdefault(code, [0, first, last])
        got[0] += n
        got[1], got[2] = min(got[1], first), max(got[2], last)


@dataclass
class Split:
    """A traffic file read, checked and split by partner into its batch's files (on a worker of
    a cluster, or here): the files written (durable, named by their content) and everything
    the database part needs. ``skipped``: the file was ingested before (nothing was read)."""

    sha: str
    size: int
    format: str = ""
    reader: str = ""
    skipped: bool = False
    records: WrittenFile | None = None
    rejects: WrittenFile | None = None
    read: int = 0
    passed: int = 0
    rejected: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    found: conflicts.Found = field(default_factory=conflicts.Found)
    partner_stats: dict[str, list[Any]] = field(default_factory=dict)  # code -> [records, first, last start (us)]
    daily: dict[tuple[str, date], int] = field(default_factory=dict)
    earlier_last: int = 0  # the last batch the duplicate checks saw
    transit_sides: int = 0  # records written besides the passed ones: transit records' termination sides


def split_file(data: DataDir, path: str | os.PathLike[str], layout: RecordLayout | None, *, sha: str, size: int,
               zones: dict[str, str], earlier: Earlier, batch_rows: int = 1_000_000, reader: str | None = None,
               reader_options: dict[str, str] | None = None) -> Split:
    """Read, check and split one traffic file into its batch's records and rejects files under
    ``intake/<sha256>/`` of the data folder: field rules, duplicates within the file and against
    the ``earlier`` batches (conflicts compared), records in partner order, counts reconciled.
    Needs no database: the intake calls it under its lock, a cluster's worker for
    :func:`ingest_files`. Raises :class:`IngestError` for a file that cannot be ingested."""
    p = Path(path)
    rel_dir = f"intake/{sha[:2]}/{sha}"
    prev = PreviousIds(data, earlier)
    daily: dict[tuple[str, date], int] = defaultdict(int)
    source = Source(p, layout, reader=reader, options=reader_options, batch_rows=batch_rows)
    # small row groups: records are sorted by partner, so a cycle reads only its partner's
    rec_w = data.writer(rel_dir, "records", source.schema, row_group_size=RECORDS_ROW_GROUP,
                        unique=RECORDS_UNIQUE, dictionaries=True, statistics=RECORDS_STATISTICS,
                        compression=RECORDS_COMPRESSION)
    # the texts the writer dictionary-encodes come to it encoded where they are already
    coded = frozenset(f.name for f in source.schema if pa.types.is_string(f.type)
                      and f.name not in RECORDS_UNIQUE) if rec_w.dictionaries else frozenset()
    rej_w = data.writer(rel_dir, "rejects", REJECTS_SCHEMA)
    # conflicts hook: duplicates set aside while the file is read, compared once it is written
    earlier_files, earlier_names = earlier.paths(data), dict(earlier.names)
    dupes = conflicts.Duplicates(lambda stem, schema: data.writer(rel_dir, stem, schema), source.schema,
                                 lookup=prev.lookup, files=earlier_files, names=earlier_names, raw_json=_raw_json)
    behind = _Behind()
    with rec_w, rej_w:
        cross = 0
        sides = 0  # termination sides of transit records (each also passed as its origination)
        partner_stats: dict[str, list[Any]] = {}
        try:
            for batch in source.batches():
                records = batch.records
                rejects = dupes.repeats(batch, batch.rejects)  # conflicts hook
                if len(prev) and records.num_rows:
                    seen, owner = prev.lookup(records.column("id"))
                    if seen.any():
                        dupes.again(records.filter(pa.array(seen)), owner[seen])  # conflicts hook
                        records = records.filter(pa.array(~seen))
                        cross += int(seen.sum())
                # a transit record is billed on both sides: its termination side joins the batch
                records, added = transit.sides(records)
                sides += added
                by_partner = ByPartner(records)
                grouped = _partner_row_groups(by_partner)
                # each piece is gathered here while the previous one is written
                for piece, bounds in by_partner.pieces(coded=coded):
                    behind.submit(_write_piece, rec_w, piece, bounds, grouped)
                behind.submit(rej_w.write, rejects)
                _partner_stats(by_partner, partner_stats)
                count_days(by_partner, zones, daily)
            behind.wait()
        finally:
            behind.close()
        # conflicts hook: each duplicate against its first version; their rejects written now
        found = dupes.resolve(rec_w.close(sync=False), rej_w.write)
        counts = source.counts
        passed = counts.passed - cross
        # a conflict is a reject (someone must look at it), a repeat a duplicate
        rejected = counts.rejected + found.conflicts
        duplicates = counts.duplicates + cross - found.conflicts
        by_reason = dict(counts.by_reason)
        if cross:
            by_reason["duplicate_id"] = by_reason.get("duplicate_id", 0) + cross
        if found.conflicts:
            by_reason["duplicate_id"] -= found.conflicts
            by_reason[conflicts.CONFLICT] = found.conflicts
            if not by_reason["duplicate_id"]:
                del by_reason["duplicate_id"]
        problems = []
        if counts.read != passed + rejected + duplicates:
            problems.append(f"read {counts.read} != passed {passed} + rejected {rejected} "
                            f"+ duplicates {duplicates}")
        if sum(by_reason.values()) != rejected + duplicates:
            problems.append(f"rejects by reason add up to {sum(by_reason.values())}, "
                            f"not {rejected + duplicates}")
        if found.repeats + found.conflicts != dupes.pending:
            problems.append(f"{dupes.pending} duplicates set aside, {found.repeats + found.conflicts} compared")
        if rec_w.rows != passed + sides:
            problems.append(f"{rec_w.rows} records written, {passed} passed + {sides} transit sides")
        if rej_w.rows != rejected + duplicates:
            problems.append(f"{rej_w.rows} rejects written, {rejected + duplicates} counted")
        if problems:
            raise ReconciliationError(f"{p.name}: the counts do not reconcile: {'; '.join(problems)}")
        rej_w.close(sync=False)
        fsync_files([rec_w.synced, rej_w.synced])  # both at once: their waits overlap
        base.checkpoint("ingest:files_written")
        rec_f = rec_w.commit(sync_dir=False)
        rej_f = rej_w.commit()  # the same folder: one fsync of it for both names
    return Split(sha=sha, size=size, format=source.format, reader=source.name, records=rec_f, rejects=rej_f,
                 read=counts.read, passed=passed, rejected=rejected, duplicates=duplicates, by_reason=by_reason,
                 found=found, partner_stats=partner_stats, daily=dict(daily), earlier_last=earlier.last,
                 transit_sides=sides)


def ingest(store: Store, path: str | os.PathLike[str], layout: RecordLayout | str | None, plan: Plan | None,
           *, batch_rows: int = 1_000_000, reader: str | None = None, reader_options: dict[str, str] | None = None,
           fingerprint: bool = False) -> IngestReport:
    """``reader``/``reader_options``: the record reader (:mod:`icdsl.billing.sources`; by default
    the one that claims the file); ``fingerprint``: also report suspected duplicates under new
    ids (:mod:`icdsl.billing.fingerprints`)."""
    p = Path(path)
    if not p.is_file():
        raise IngestError(f"no such file: {p}")
    lay = resolve_layout(layout, plan)
    sha = sha256_file(p)
    size = p.stat().st_size
    started = base.now()
    try:
        with store.session() as s:
            store.lock(s, "intake", wait=True)
            existing = s.scalars(select(M.IntakeBatch).where(M.IntakeBatch.sha256 == sha)).first()
            if existing is not None:
                return store._report_of(s, existing, already=True)
            # Only this session writes under the batch's folder now: anything there is left over.
            store.data.clean(_batch_dir(sha), set())
            split = split_file(store.data, p, lay, sha=sha, size=size, zones=partner_zones(s, plan),
                               earlier=Earlier.of(s), batch_rows=batch_rows, reader=reader,
                               reader_options=reader_options)
            return _record(store, s, p, lay, plan, split, started, fingerprint=fingerprint,
                           reader_options=reader_options)
    except (IngestError, ReconciliationError) as e:
        store._audit_apart("ingest_failed", "intake_batch", str(e), {"file": str(p), "sha256": sha})
        raise


def _batch_dir(sha: str) -> str:
    return f"intake/{sha[:2]}/{sha}"


def _record(store: Store, s: Session, p: Path, lay: RecordLayout | None, plan: Plan | None, split: Split,
            started: Any, *, fingerprint: bool, reader_options: dict[str, str] | None) -> IngestReport:
    """The database part of an ingest, in the intake lock's transaction: the batch row, its counts
    by reason, partner and day, its files, late records, conflicts (and suspects)."""
    rec_f, rej_f = split.records, split.rejects
    assert rec_f is not None and rej_f is not None
    rec_path = store.data.abs(rec_f.path)
    # fingerprints hook: the same call under a new id (reported, billed)
    suspects = fingerprints.find(s, rec_path, conflicts.earlier_batches(s, store.data.abs)[0], _raw_json) \
        if fingerprint else None
    stats = split.partner_stats
    min_start = min((v[1] for v in stats.values()), default=None)
    max_start = max((v[2] for v in stats.values()), default=None)
    min_start, max_start = (None if v is None else to_datetime(v) for v in (min_start, max_start))
    batch_row = M.IntakeBatch(
        file_name=p.name, file_path=str(p.resolve()), sha256=split.sha, size_bytes=split.size, format=split.format,
        layout=lay.name if lay else None, status="complete", read_count=split.read,
        passed_count=split.passed, rejected_count=split.rejected, duplicate_count=split.duplicates,
        min_start=min_start, max_start=max_start, started_at=started, finished_at=base.now(),
    )
    s.add(batch_row)
    s.flush()
    by_reason = split.by_reason
    # many rows (partners x days): one bulk insert each, not an ORM object per row
    if by_reason:
        s.connection().execute(insert(M.IntakeRejectCount.__table__), [
            {"batch_id": batch_row.id, "reason": reason, "count": n} for reason, n in sorted(by_reason.items())])
    if stats:
        bulk.insert(s.connection(), M.IntakePartnerStat.__table__, [
            {"batch_id": batch_row.id, "partner": code, "records": n, "min_start": to_datetime(lo),
             "max_start": to_datetime(hi)} for code, (n, lo, hi) in sorted(stats.items())])
    if split.daily:
        _insert_many(s, M.IntakeDailyCount.__table__, ("batch_id", "partner", "day", "records"),
                     [(batch_row.id, code, day, n) for (code, day), n in sorted(split.daily.items())])
    t = base.now()
    for kind, f in (("intake_records", rec_f), ("intake_rejects", rej_f)):
        s.add(M.DataFile(kind=kind, path=f.path, sha256=f.sha256, rows=f.rows, bytes=f.bytes,
                         amount_totals=None, batch_id=batch_row.id, cycle_id=None, partner=None, created_at=t))
    late = record_late(s, batch_row, str(rec_path),
                       {c: [n, to_datetime(lo), to_datetime(hi)] for c, (n, lo, hi) in stats.items()}, t)
    # conflicts and suspects: both versions kept for review (icdsl conflicts)
    conflicts.store_rows(s, batch_row.id, split.found.rows + (suspects or []), t)
    unknown = sorted(c for c in stats if plan is not None and plan.partner(c) is None)
    store.audit(s, "ingested", "intake_batch", batch_row.id,
                f"{p.name}: read {split.read}, passed {split.passed}, rejected {split.rejected}, "
                f"duplicates {split.duplicates}" + (f", transit sides {split.transit_sides}" if split.transit_sides else ""),
                {"sha256": split.sha, "by_reason": by_reason, "reader": split.reader, "transit_sides": split.transit_sides,
                                                   "reader_options": dict(reader_options or {}),
                                                   "fingerprint": fingerprint})
    base.checkpoint("ingest:before_commit")
    s.flush()
    report = store._report_of(s, batch_row, already=False)
    report.unknown_partners = unknown
    report.fingerprinted = fingerprint
    report.late = {f"{c} {k}": n for c, ks in late.items() for k, n in ks.items()}
    return report


def _insert_many(s: Session, table: Any, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Insert many rows (thousands: partners x days) in bulk (:func:`icdsl.billing.rows.insert_tuples`:
    the driver's executemany, a COPY on PostgreSQL): the per-row parameter handling of a Core
    insert costs more than the insert itself."""
    bulk.insert_tuples(s.connection(), table, columns, rows)


# --------------------------------------------------------------------------- on a cluster


def _split_task(root: str, path: str, layout: RecordLayout | None, zones: dict[str, str], earlier: Earlier,
                batch_rows: int, reader: str | None, reader_options: dict[str, str] | None) -> Split:
    """A worker's part of :func:`ingest_files`: hash the file, then read, check and split it
    into the data folder (``root``: the same path on every machine), unless it was ingested."""
    p = Path(path)
    if not p.is_file():
        raise IngestError(f"{p.name}: no such file on the worker: {p} (every worker reads the files by path: "
                          "give paths that each machine of the cluster can read)")
    sha = sha256_file(p)
    size = p.stat().st_size
    if sha in earlier.shas:
        return Split(sha=sha, size=size, skipped=True)
    return split_file(DataDir(root), p, layout, sha=sha, size=size, zones=zones, earlier=earlier, batch_rows=batch_rows,
                      reader=reader, reader_options=reader_options)


def ingest_files(store: Store, paths: list[str | os.PathLike[str]], layout: RecordLayout | str | None,
                 plan: Plan | None, *, client: Any, batch_rows: int = 1_000_000, reader: str | None = None,
                 reader_options: dict[str, str] | None = None, fingerprint: bool = False) -> Iterator[IngestReport]:
    """Ingest files on the workers of a Dask cluster (``client``, e.g.
    :func:`icdsl.rating.cluster.dask_client`), one report per file, in the order given; the
    same batches, files, duplicates and counts as :func:`ingest` of each file in that order.

    Each worker reads a file by its path, checks it and splits it into the batch's records and
    rejects files in the data folder (:func:`split_file`, against the batches ingested when the
    run began), and returns their manifest (:class:`Split`: counts, partners, days, conflicts).
    Only this process touches the database: one transaction per file under the intake lock,
    as :func:`ingest`. A file whose records share ids with a batch committed after its worker
    began (another file of the same run, another ingest meanwhile) is read again here, against
    every batch: rare (ids usually grow from file to file), and exact."""
    lay = resolve_layout(layout, plan)
    files = [Path(p) for p in paths]
    for p in files:
        if not p.is_file():
            raise IngestError(f"no such file: {p}")
    with store.reading() as s:
        earlier = Earlier.of(s, shas=True)
        zones = partner_zones(s, plan)
    root = str(store.data.root)
    tag = os.urandom(6).hex()
    futures = [client.submit(_split_task, root, str(p.resolve()), lay, zones, earlier, batch_rows, reader,
                             reader_options, pure=False, key=f"icdsl-ingest-{tag}-{i}")
               for i, p in enumerate(files)]
    try:
        for p, fut in zip(files, futures, strict=True):
            started = base.now()
            try:
                split = fut.result()
            except (IngestError, ReconciliationError) as e:  # the file's own fault: as without a cluster
                store._audit_apart("ingest_failed", "intake_batch", str(e), {"file": str(p)})
                raise
            except Exception:  # the worker's (lost, out of disk, ...): the file is ingested here
                yield ingest(store, p, lay, plan, batch_rows=batch_rows, reader=reader,
                             reader_options=reader_options, fingerprint=fingerprint)
                continue
            yield _commit_split(store, p, lay, plan, split, started, batch_rows=batch_rows, reader=reader,
                                reader_options=reader_options, fingerprint=fingerprint)
    finally:
        for fut in futures:
            fut.cancel()


def _commit_split(store: Store, p: Path, lay: RecordLayout | None, plan: Plan | None, split: Split, started: Any,
                  *, batch_rows: int, reader: str | None, reader_options: dict[str, str] | None,
                  fingerprint: bool) -> IngestReport:
    """The database part of a file split on a worker; the file is ingested here instead if the
    worker's split no longer holds (see :func:`ingest_files`)."""
    try:
        with store.session() as s:
            store.lock(s, "intake", wait=True)
            existing = s.scalars(select(M.IntakeBatch).where(M.IntakeBatch.sha256 == split.sha)).first()
            if existing is not None:  # ingested before, or earlier in this run under another name
                _tidy(store, s, split.sha)
                return store._report_of(s, existing, already=True)
            if not split.skipped and _still_new(store, s, split):
                assert split.records is not None and split.rejects is not None
                _tidy(store, s, split.sha, mine=(split.records.path, split.rejects.path))
                return _record(store, s, p, lay, plan, split, started, fingerprint=fingerprint,
                               reader_options=reader_options)
    except (IngestError, ReconciliationError) as e:
        store._audit_apart("ingest_failed", "intake_batch", str(e), {"file": str(p), "sha256": split.sha})
        raise
    return ingest(store, p, lay, plan, batch_rows=batch_rows, reader=reader, reader_options=reader_options,
                  fingerprint=fingerprint)


def _still_new(store: Store, s: Session, split: Split) -> bool:
    """Whether a worker's split stands: its files are there, and none of its records' ids is in a
    batch committed after the ones its worker checked against."""
    assert split.records is not None and split.rejects is not None
    if not all(store.data.abs(f.path).is_file() for f in (split.records, split.rejects)):
        return False
    since = Earlier.of(s, after=split.earlier_last)
    if not since.files or not split.passed:
        return True
    ids = pq.read_table(store.data.abs(split.records.path), columns=["id"]).column("id")
    seen, _ = PreviousIds(store.data, since).lookup(ids.combine_chunks())
    return not seen.any()


def _tidy(store: Store, s: Session, sha: str, mine: tuple[str, ...] = ()) -> None:
    """Remove what the store does not reference in a batch's folder, except the files ``mine``
    (about to be) and files being written (``.tmp-``: another worker's, of a file with the
    same content)."""
    rel_dir = _batch_dir(sha)
    folder = store.data.abs(rel_dir)
    if not folder.is_dir():
        return
    keep = set(mine) | set(s.scalars(select(M.DataFile.path).where(M.DataFile.path.like(f"{rel_dir}/%"))))
    keep |= {f"{rel_dir}/{name}" for name in os.listdir(folder) if name.startswith(TMP_PREFIX)}
    store.data.clean(rel_dir, keep)
