"""Records of one side of a reconciliation, bounded in memory: held as they come until they
pass :data:`SPILL_ROWS`, then written to disk by buckets of their called number (Arrow IPC
streams, uncompressed, in a temporary folder) and read back a few buckets at a time.

A record's bucket is a function of its called number alone, the same on both sides: the
number's last six digits (of its text, or of the integer) modulo :data:`BUCKETS`. Two records
that can pair have the same called number (:mod:`icdsl.recon.records`), so they are always in
the same bucket, and the record-level comparison can run bucket group by bucket group, each
group holding at most about :data:`GROUP_ROWS` records of a side: a month of 10M records
against 10M of theirs is compared in the memory of half a million.

::

    side = Spill("ours")
    for table in chunks:
        side.add(table)          # in memory, then on disk once large
    for buckets in group_buckets(side, other):
        part = side.read(buckets)
    side.close()                 # the temporary files removed

Chunks may differ in their columns' types (numbers as int64 in one, text in another; amounts
at other scales): a bucket's pieces are read back in one type per column (text where kinds
differ, the larger decimal scale).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

BUCKETS = 64  # buckets of the called numbers on disk
SPILL_ROWS = 1_000_000  # records of a side held in memory before it goes to disk
GROUP_ROWS = 500_000  # records of a side compared at a time, at most about (a bucket is not split)


def buckets_of(numbers: pa.ChunkedArray | pa.Array, buckets: int = BUCKETS) -> np.ndarray:
    """The bucket of each called number: its last six digits modulo ``buckets`` (0 for a number
    whose last six characters are not digits, and for none)."""
    import polars as pl  # lazy: polars only where records are compared

    col = numbers.combine_chunks() if isinstance(numbers, pa.ChunkedArray) else numbers
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, pa.string())
    if pa.types.is_integer(col.type):
        values = pc.fill_null(pc.cast(col, pa.int64()), 0).to_numpy(zero_copy_only=False)
        return (np.abs(values) % 1_000_000 % buckets).astype(np.int32)
    tail = pl.Series(pc.cast(col, pa.string())).str.slice(-6)
    digits = tail.str.contains(r"^[0-9]+$").fill_null(False)
    values = tail.str.to_integer(strict=False).fill_null(0).to_numpy()
    return np.where(digits.to_numpy(), values % buckets, 0).astype(np.int32)


def parquet_batches(path: str | Path, batch_size: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """A Parquet file's records, ``batch_size`` at a time, read one row group after the other:
    iterating the whole file at once keeps the pre-buffered bytes of every row group read so
    far, so that memory grows with the file (about 30 MB a 500k-record batch of a partner's
    detail); a row group at a time, it is one row group's at most."""
    pf = pq.ParquetFile(str(path))
    for g in range(pf.metadata.num_row_groups):
        yield from pf.iter_batches(batch_size=batch_size, row_groups=[g], columns=columns)


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as their values (an IPC stream's dictionaries may not change)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, pc.cast(table.column(i), f.type.value_type))
    return table


class Spill:
    """The records of one side (see the module's documentation); ``number``: the column of the
    called number."""

    def __init__(self, name: str, *, number: str = "b_number", limit: int | None = None, buckets: int = BUCKETS):
        self.name = name
        self.number = number
        self.limit = SPILL_ROWS if limit is None else limit
        self.buckets = buckets
        self.rows = 0
        self.counts = np.zeros(buckets, np.int64)
        self.schema: pa.Schema | None = None  # of the first table added
        self._held: list[pa.Table] = []
        self._folder: Path | None = None
        self._writers: dict[tuple[int, pa.Schema], pa.ipc.RecordBatchStreamWriter] = {}
        self._files: dict[int, list[Path]] = {}

    @property
    def spilled(self) -> bool:
        return self._folder is not None

    def add(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
        if not table.num_rows:
            return
        self.rows += table.num_rows
        if self.spilled:
            self._write(table)
            return
        self._held.append(table)
        if self.rows > self.limit:
            self.spill()

    def extend(self, tables: Iterable[pa.Table]) -> None:
        for t in tables:
            self.add(t)

    def spill(self) -> None:
        """Go to disk now (what is held is written)."""
        if self.spilled:
            return
        self._folder = Path(tempfile.mkdtemp(prefix=f"icdsl-recon-{self.name}-"))
        held, self._held = self._held, []
        for t in held:
            self._write(t)

    def _write(self, table: pa.Table) -> None:
        assert self._folder is not None
        b = buckets_of(table.column(self.number), self.buckets)
        self.counts += np.bincount(b, minlength=self.buckets)
        order = np.argsort(b.astype(np.uint8) if self.buckets <= 256 else b, kind="stable")  # uint8: a radix sort
        table = table.take(pa.array(order))  # dictionaries kept (a stream may replace them)
        edges = np.searchsorted(b[order], np.arange(self.buckets + 1))
        for k in range(self.buckets):
            lo, hi = int(edges[k]), int(edges[k + 1])
            if hi > lo:
                self._writer(k, table.schema).write_table(table.slice(lo, hi - lo))

    def _writer(self, bucket: int, schema: pa.Schema) -> pa.ipc.RecordBatchStreamWriter:
        w = self._writers.get((bucket, schema))
        if w is None:
            assert self._folder is not None
            files = self._files.setdefault(bucket, [])
            path = self._folder / f"{bucket:03d}-{len(files)}.arrow"
            files.append(path)
            w = self._writers[(bucket, schema)] = pa.ipc.new_stream(str(path), schema)
        return w

    def table(self) -> pa.Table:
        """Every record (held in memory: a side that was not spilled)."""
        if self.spilled:
            return self.read(range(self.buckets))
        return unified(self._held, self.schema)

    def read(self, buckets: Iterable[int]) -> pa.Table:
        """The records of ``buckets`` (a spilled side), in one table."""
        for w in self._writers.values():
            w.close()
        self._writers = {}
        parts = []
        for k in buckets:
            for path in self._files.get(k, ()):
                with pa.OSFile(str(path), "rb") as f:
                    parts.append(pa.ipc.open_stream(f).read_all())
        return unified(parts, self.schema)

    def close(self) -> None:
        for w in self._writers.values():
            with contextlib.suppress(Exception):
                w.close()
        self._writers = {}
        self._held = []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
            self._files = {}

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a side dropped without close(): its files go with it
        with contextlib.suppress(Exception):
            self.close()


def unified(parts: list[pa.Table], schema: pa.Schema | None) -> pa.Table:
    """``parts`` as one table, each column in one type: text where their kinds differ, the
    largest scale of decimals; an empty table of ``schema`` when there are none."""
    if not parts:
        if schema is None:
            return pa.table({})
        return _plain(schema.empty_table())
    if len(parts) == 1:
        return parts[0]
    first = parts[0].schema
    target = []
    for f in first:
        types = {p.schema.field(f.name).type for p in parts}
        if len(types) == 1:
            target.append(f)
        elif all(pa.types.is_decimal(t) for t in types):
            target.append(pa.field(f.name, pa.decimal128(38, max(t.scale for t in types))))
        elif all(pa.types.is_integer(t) for t in types):
            target.append(pa.field(f.name, pa.int64()))
        else:
            target.append(pa.field(f.name, pa.string()))
    schema = pa.schema(target)
    return pa.concat_tables([p.select(schema.names).cast(schema) if p.schema != schema else p for p in parts])


def group_buckets(*sides: Spill, rows: int | None = None) -> Iterator[list[int]]:
    """Consecutive buckets in groups of at most about ``rows`` (:data:`GROUP_ROWS`) records of
    any side (a bucket larger than that is a group of its own)."""
    rows = GROUP_ROWS if rows is None else rows
    n = sides[0].buckets
    counts = np.max(np.stack([s.counts for s in sides]), axis=0)
    group: list[int] = []
    held = 0
    for k in range(n):
        if group and held + counts[k] > rows:
            yield group
            group, held = [], 0
        group.append(k)
        held += int(counts[k])
    if group:
        yield group
