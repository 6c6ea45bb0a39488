"""Parquet files: read one row group at a time, in batches (pyarrow decodes the columns in
parallel); the memory used does not grow with the file. A rejected row's raw content is the row
as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from icdsl.rating.intake.counts import IntakeError
from icdsl.rating.intake.pieces import Piece

PREFETCH = False  # decode the next batch in a thread while normalizing (else pyarrow decodes each batch multi-threaded)


class ParquetSource:
    def __init__(self, path: str, label: str):
        self.path = path
        self.label = label
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise IntakeError(f"cannot read {label} as Parquet: {exc}") from None
        schema = self.file.schema_arrow
        self.names = list(schema.names)
        self.types = {f.name: f.type for f in schema}
        self.batch_rows = 1_000_000

    def pieces(self) -> Iterator[Piece]:
        # One row group at a time: iterating the whole file at once keeps the pre-buffered
        # bytes of every row group read so far (memory grows with the file). A huge row group
        # is read without pre-buffering.
        meta = self.file.metadata
        done = 0
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            size = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
            source = self.file if size <= (512 << 20) else pq.ParquetFile(self.path, pre_buffer=False)
            it = source.iter_batches(
                batch_size=self.batch_rows, row_groups=[g], use_threads=not PREFETCH
            )
            while True:
                try:
                    rb = next(it)
                except StopIteration:
                    break
                except (OSError, pa.ArrowException) as exc:
                    raise IntakeError(f"{self.label}: cannot read the rows after row {done}: {exc}") from None
                table = pa.Table.from_batches([rb])
                rows = np.arange(done + 1, done + 1 + rb.num_rows, dtype=np.int64)
                done += rb.num_rows
                yield Piece(table, rows, json_rows(table), [])


def _temporal(t: pa.DataType) -> bool:
    return pa.types.is_temporal(t) or (pa.types.is_dictionary(t) and pa.types.is_temporal(t.value_type))


def json_rows(table: pa.Table) -> Callable[[np.ndarray], list[str]]:
    def raw(pos: np.ndarray) -> list[str]:
        part = table.take(pa.array(np.asarray(pos, np.int64)))
        try:
            rows = part.to_pylist()
        except (OverflowError, ValueError):  # a date or time Python cannot hold (year 0, 10000, ...)
            rows = pa.table([c.cast(pa.string()) if _temporal(c.type) else c for c in part.columns],
                            names=part.column_names).to_pylist()
        return [json.dumps(r, default=str, ensure_ascii=False) for r in rows]

    return raw
