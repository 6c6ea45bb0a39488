"""The reader: a traffic file (CSV or Parquet) streamed as batches of normalized records and
rejects, counts that reconcile, duplicates found across the whole run."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from icdsl.plan.model import RecordLayout
from icdsl.rating.intake import csvfile, parquetfile
from icdsl.rating.intake.binding import bind, schema
from icdsl.rating.intake.columns import Problems
from icdsl.rating.intake.counts import FIELDS, IntakeBatch, IntakeCounts, IntakeError, short
from icdsl.rating.intake.csvfile import CsvSource
from icdsl.rating.intake.duplicates import Deduper
from icdsl.rating.intake.fields import normalize
from icdsl.rating.intake.layout import layout_rules
from icdsl.rating.intake.parquetfile import ParquetSource
from icdsl.rating.intake.pieces import Piece, keep, merge, prefetch
from icdsl.rating.rejects import REJECTS_SCHEMA


def open_source(path: str) -> CsvSource | ParquetSource:
    label = os.path.basename(path) or path
    if not os.path.exists(path):
        raise IntakeError(f"cannot read {path}: no such file")
    if os.path.isdir(path):
        raise IntakeError(f"cannot read {path}: it is a directory")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise IntakeError(f"cannot read {path}: {exc.strerror or exc}") from None
    lower = path.lower()
    if magic == b"PAR1":
        return ParquetSource(path, label)
    if lower.endswith((".parquet", ".pq")) and magic:
        raise IntakeError(f"{label} is not a Parquet file (it does not start with PAR1)")
    if magic.startswith(b"PK\x03\x04"):
        raise IntakeError(
            f"{label} is a ZIP archive (a spreadsheet?), neither CSV nor Parquet; export it as CSV"
        )
    compression = None
    if magic.startswith(b"\x1f\x8b"):
        compression = "gzip"
    elif magic.startswith(b"BZh"):
        compression = "bz2"
    elif magic == b"\x28\xb5\x2f\xfd":
        compression = "zstd"
    return CsvSource(path, label, compression)


#: constant columns kept between readers (value, type) -> array: a file after another makes
#: its columns of one value (a layout's constants, the absent optional fields) as slices of these
_CONSTS: dict[tuple[Any, str], pa.Array] = {}


class RecordReader:
    """Stream a CSV or Parquet traffic file as normalized :class:`IntakeBatch` es.

    ``batch_rows``: at most that many source rows per batch; ``dedupe``: reject repeated ids;
    ``numbers``: ``normalize`` (the rules of :mod:`icdsl.rating.intake.numbers`) or ``e164`` (the
    numbers are E.164 digits already: no prefix is interpreted, e.g. for the benchmark files);
    by default the layout's ``numbers`` setting (``numbers e164`` in a ``records`` block).

    ``counts`` holds the totals of the rows read so far (complete once :meth:`batches` is
    exhausted). File-level problems raise :class:`IntakeError` from the constructor.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        layout: RecordLayout | None = None,
        *,
        batch_rows: int = 1_000_000,
        dedupe: bool = True,
        numbers: str | None = None,
    ):
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.path = os.fspath(path)
        self.layout = layout
        self.batch_rows = batch_rows
        self.dedupe = dedupe
        self.counts = IntakeCounts()
        self._rules = layout_rules(layout, numbers)
        self._source = open_source(self.path)
        if isinstance(self._source, ParquetSource):
            self._source.batch_rows = batch_rows
        self._empty = not self._source.names
        self._binding = (
            bind(
                self._source.names,
                self._source.types,
                self._rules,
                self._source.label,
                isinstance(self._source, CsvSource),
            )
            if not self._empty
            else None
        )
        self.schema = schema(self._binding)
        self._deduper = Deduper()
        self._consts: dict[tuple[Any, str], pa.Array] = {}

    @property
    def format(self) -> str:
        return "parquet" if isinstance(self._source, ParquetSource) else "csv"

    def batches(self) -> Iterator[IntakeBatch]:
        self.counts = IntakeCounts()
        self._deduper = Deduper()
        if self._empty:
            return
        acc: list[IntakeBatch] = []
        size = 0
        # CSV: one thread parses the next block while this one normalizes the current block.
        # Parquet: pyarrow decodes the columns of a batch in parallel already.
        pieces = self._source.pieces()
        if csvfile.PREFETCH if isinstance(self._source, CsvSource) else parquetfile.PREFETCH:
            pieces = prefetch(pieces)
        for piece in pieces:
            while piece.n > self.batch_rows - size:
                room = self.batch_rows - size
                acc.append(self._batch(piece.slice(0, room)))
                yield merge(acc)
                acc, size = [], 0
                piece = piece.slice(room, piece.n)
            if piece.n or piece.pre:
                acc.append(self._batch(piece))
                size += piece.n
            if size >= self.batch_rows:
                yield merge(acc)
                acc, size = [], 0
        if acc:
            yield merge(acc)

    # ------------------------------------------------------------------ one batch

    def _const(self, value: Any, typ: pa.DataType, n: int) -> pa.Array:
        """A constant column of length ``n`` (slices of one cached array: no copy per batch)."""
        key = (value, str(typ))
        arr = self._consts.get(key)
        if arr is None:
            arr = _CONSTS.get(key)
        if arr is None or len(arr) < n:
            arr = pa.repeat(pa.scalar(value, typ), max(n, self.batch_rows if n else 0, 1))
            if len(_CONSTS) >= 8:
                _CONSTS.clear()
            _CONSTS[key] = arr
        self._consts[key] = arr
        return arr.slice(0, n)

    def _batch(self, piece: Piece) -> IntakeBatch:
        b = self._binding
        t = piece.table
        n = t.num_rows
        out, errors = normalize(t, b, self._rules, lambda f, typ: self._const(b.const.get(f), typ, n))
        ids = out["id"]
        # extra columns
        for f, col_name in b.source.items():
            if f not in FIELDS:
                out[f] = t.column(col_name)
        for col_name, name in b.extras:
            out[name] = t.column(col_name)
        for name, value in b.extra_constants:
            out[name] = self._const(value, pa.string(), n)

        # duplicates among the rows that are otherwise valid
        dup_pos = np.zeros(0, np.int64)
        if self.dedupe and n:
            cand = np.flatnonzero(~errors.bad) if errors.parts else np.arange(n)
            dup_pos = self._deduper.duplicates(ids, cand)
        table = pa.table(out, schema=self.schema) if n else self.schema.empty_table()
        # conflicts hook: the duplicates' normalized rows go on, for the billing intake to
        # compare with the record ingested first (icdsl.billing.conflicts)
        dups = table.take(pa.array(dup_pos)) if len(dup_pos) else None
        if errors.parts or len(dup_pos):
            good = ~errors.bad
            good[dup_pos] = False
            table = keep(table, good)
        rejects, counts = self._rejects(piece, ids, errors, dup_pos)
        counts.passed = table.num_rows
        self.counts.add(counts)
        starts = [int(piece.rows[0])] if len(piece.rows) else []
        first = min(starts + [p[0] for p in piece.pre]) if starts or piece.pre else 0
        return IntakeBatch(table, rejects, first, counts, dups)

    def _id_of_line(self, text: str) -> str | None:
        """The id field of a malformed CSV line, if the line has one."""
        if not isinstance(self._source, CsvSource) or "id" not in self._binding.source:
            return None
        try:
            fields = next(csv.reader([text], delimiter=self._source.delimiter), [])
        except csv.Error:
            return None
        k = self._source.names.index(self._binding.source["id"])
        value = fields[k].strip() if k < len(fields) else ""
        return value or None

    def _rejects(
        self, piece: Piece, ids: pa.Array, errors: Problems, dup_pos: np.ndarray
    ) -> tuple[pa.Table, IntakeCounts]:
        counts = IntakeCounts(read=piece.n + len(piece.pre))
        pos_parts: list[np.ndarray] = []
        reasons: list[str] = []
        details: list[str] = []
        for pos, reason, ds in errors.parts:
            pos_parts.append(pos)
            reasons += [reason] * len(pos)
            details += ds
        if len(dup_pos):
            pos_parts.append(dup_pos)
            reasons += ["duplicate_id"] * len(dup_pos)
            id_label = self._binding.label_of.get("id", "id")
            dup_ids = ids.take(pa.array(dup_pos)).to_pylist()
            details += [f"{id_label} '{short(v)}' was already seen earlier in the file" for v in dup_ids]
        pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int64)
        id_text = ids.take(pa.array(pos)).cast(pa.string()) if len(pos) else pa.array([], pa.string())
        raw = piece.raw(pos) if len(pos) else []
        table = pa.table(
            {
                "row": pa.array(piece.rows[pos] if len(pos) else [], pa.int64()),
                "id": id_text,
                "reason": pa.array(reasons, pa.string()),
                "detail": pa.array(details, pa.string()),
                "raw": pa.array(raw, pa.string()),
            },
            schema=REJECTS_SCHEMA,
        )
        if piece.pre:
            pre = pa.table(
                {
                    "row": pa.array([p[0] for p in piece.pre], pa.int64()),
                    "id": pa.array(
                        [p[1] if p[1] is not None else self._id_of_line(p[4]) for p in piece.pre], pa.string()
                    ),
                    "reason": pa.array([p[2] for p in piece.pre], pa.string()),
                    "detail": pa.array([p[3] for p in piece.pre], pa.string()),
                    "raw": pa.array([p[4] for p in piece.pre], pa.string()),
                },
                schema=REJECTS_SCHEMA,
            )
            table = pa.concat_tables([table, pre])
        if table.num_rows > 1:
            table = table.sort_by("row")
        for r in reasons + [p[2] for p in piece.pre]:
            counts.by_reason[r] = counts.by_reason.get(r, 0) + 1
        counts.duplicates = len(dup_pos)
        counts.rejected = table.num_rows - counts.duplicates
        return table, counts


def read_records(
    path: str | os.PathLike[str], layout: RecordLayout | None = None, **kw: Any
) -> tuple[pa.Table, pa.Table, IntakeCounts]:
    """Read a whole file into memory: (records, rejects, counts). Keyword arguments go to
    :class:`RecordReader` (``batch_rows``, ``dedupe``, ``numbers``)."""
    return collect(RecordReader(path, layout, **kw))


def collect(reader: Any) -> tuple[pa.Table, pa.Table, IntakeCounts]:
    """All the batches of a reader (built-in or a plugin's) as (records, rejects, counts)."""
    records: list[pa.Table] = []
    rejects: list[pa.Table] = []
    for batch in reader.batches():
        records.append(batch.records)
        rejects.append(batch.rejects)
    rec = pa.concat_tables(records) if records else reader.schema.empty_table()
    rej = pa.concat_tables(rejects) if rejects else REJECTS_SCHEMA.empty_table()
    return rec, rej, reader.counts

