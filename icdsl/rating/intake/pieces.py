"""Pieces: source rows read but not yet normalized, handed from a file reader (CSV or Parquet)
to the normalization; reading ahead in a thread; cutting rejected rows out of a table."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from icdsl.rating.intake.counts import IntakeBatch, IntakeCounts


@dataclass
class Piece:
    """Source rows read but not yet normalized: the ``table`` (source columns), each row's
    number, a way to get the original text of rows, and rejects found while reading."""

    table: pa.Table
    rows: np.ndarray
    raw: Callable[[np.ndarray], list[str]]
    pre: list[tuple[int, str | None, str, str, str]]

    @property
    def n(self) -> int:
        return self.table.num_rows

    def slice(self, a: int, b: int) -> Piece:
        lo = self.rows[a] if a > 0 else -1
        hi = self.rows[b] if b < self.n else 2**62
        raw = self.raw
        return Piece(
            self.table.slice(a, b - a),
            self.rows[a:b],
            lambda pos: raw(pos + a),
            [p for p in self.pre if lo <= p[0] < hi],
        )


def keep(table: pa.Table, good: np.ndarray) -> pa.Table:
    """``table`` without the rows where ``good`` is False. A few dropped rows cost no copy:
    the result is made of slices (chunks) of the original columns."""
    bad = np.flatnonzero(~good)
    if len(bad) > 64:
        return table.filter(pa.array(good))
    parts, start = [], 0
    for i in bad.tolist():
        if i > start:
            parts.append(table.slice(start, i - start))
        start = i + 1
    if start < table.num_rows:
        parts.append(table.slice(start))
    return pa.concat_tables(parts) if parts else table.slice(0, 0)


def merge(parts: list[IntakeBatch]) -> IntakeBatch:
    """One batch from the normalized pieces of consecutive source rows."""
    if len(parts) == 1:
        return parts[0]
    counts = IntakeCounts()
    for p in parts:
        counts.add(p.counts)
    dups = [p.duplicates for p in parts if p.duplicates is not None]
    return IntakeBatch(
        pa.concat_tables([p.records for p in parts]),
        pa.concat_tables([p.rejects for p in parts]),
        min(p.first_row for p in parts),
        counts,
        pa.concat_tables(dups) if dups else None,
    )


def prefetch(pieces: Iterator[Piece], depth: int = 2) -> Iterator[Piece]:
    """Read (parse, decode) the next pieces in a thread while the current one is normalized:
    at most ``depth`` pieces wait in memory. Errors of the reader are raised here."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for piece in pieces:
                if not put(piece):
                    return
            put(end)
        except BaseException as exc:  # handed to the consumer
            put(exc)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="icdsl-intake-reader", daemon=True)
    worker.start()
    try:
        while True:
            x = q.get()
            if x is end:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        worker.join()
