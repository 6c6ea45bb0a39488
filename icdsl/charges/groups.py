"""Rows of Arrow tables grouped by the values of some columns, in NumPy: no Python per row
or per group, exact integer sums.

Each column is dictionary-encoded (a dictionary column is used as it is: its indices are the
codes), the codes of a row are combined into one integer, and the integers that occur are the
groups (a ``np.bincount`` when they span a small range, else ``np.unique``). Sums, smallest and
largest values by group are ``np.add.at``, ``np.minimum.at`` and ``np.maximum.at`` on int64.

Used by the cycle's rate stage (a chunk's invoice lines, :mod:`icdsl.cycle.rater`) and by
:func:`icdsl.charges.context.usage_from_rated` (the usage that charges read).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: a product of code counts (or a sum) must stay below this to be computed in int64
LIMIT = 2**62
_BIG = np.iinfo(np.int64).max


def codes(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(the code of each value, int64; the values by code) of a column. A null is a code of
    its own, whose value is null."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    dictionary = arr.dictionary
    idx = arr.indices
    if idx.null_count:
        idx = pc.fill_null(idx, len(dictionary))
        dictionary = pa.concat_arrays([dictionary, pa.nulls(1, dictionary.type)])
    return idx.to_numpy(zero_copy_only=False).astype(np.int64), dictionary


def present(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the values that occur, sorted; the index of each row's value among them) of int64
    values in ``0..size-1``: a ``np.bincount`` when ``size`` is small next to the rows, else
    ``np.unique`` (a sort)."""
    if size <= max(4 * len(values), 1 << 16):
        seen = np.flatnonzero(np.bincount(values, minlength=size))
        lut = np.zeros(max(size, 1), np.int64)
        lut[seen] = np.arange(len(seen))
        return seen, lut[values]
    seen, inverse = np.unique(values, return_inverse=True)
    return seen, inverse.reshape(-1).astype(np.int64, copy=False)


def combine(columns: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    """One integer per row for a tuple of codes (``(codes, number of distinct codes)``), and
    how many integers it may take. A column with more codes than rows, or a product of counts
    that would reach :data:`LIMIT`, is made dense first."""
    code = np.zeros(len(columns[0][0]) if columns else 0, np.int64)
    size = 1
    for c, n in columns:
        n = max(n, 1)
        if n > 1 and n > len(c):  # a big dictionary, few rows: only the codes that occur
            seen, c = present(c, n)
            n = max(len(seen), 1)
        if size * n >= LIMIT:
            seen, code = present(code, size)
            size = max(len(seen), 1)
        code = code * n + c
        size *= n
    return code, size


class Groups:
    """The rows of a table grouped by a tuple of columns' codes (:func:`codes`): ``index``
    (the group of each row, ``0..n-1``), ``n``, ``member`` (a row of each group: any one, they
    all have the same codes), ``counts`` (rows by group) and :meth:`first` (the first row of
    each group)."""

    def __init__(self, coded: list[tuple[np.ndarray, pa.Array]], rows: int):
        combined, size = combine([(c, len(values)) for c, values in coded])
        seen, self.index = present(combined, size) if rows else (np.zeros(0, np.int64), combined)
        self.n = len(seen)
        self.rows = rows
        self.member = np.zeros(self.n, np.int64)
        self.member[self.index] = np.arange(rows)
        self.counts = np.bincount(self.index, minlength=self.n)

    def first(self) -> np.ndarray:
        first = np.full(self.n, self.rows, np.int64)
        np.minimum.at(first, self.index, np.arange(self.rows))
        return first

    def values(self, coded: tuple[np.ndarray, pa.Array]) -> pa.Array:
        """The value of a column (coded like the grouping columns) in each group."""
        c, values = coded
        return values.take(pa.array(c[self.member]))

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Sums by group of int64 values (the caller knows they stay within int64:
        :func:`exact_ints`)."""
        out = np.zeros(self.n, np.int64)
        np.add.at(out, self.index, values)
        return out

    def min_max(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The smallest and largest int64 value of each group."""
        lo = np.full(self.n, _BIG, np.int64)
        hi = np.full(self.n, -_BIG - 1, np.int64)
        np.minimum.at(lo, self.index, values)
        np.maximum.at(hi, self.index, values)
        return lo, hi


def exact_ints(col: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """An integer column as int64 (nulls as 0) whose sums stay within int64 whatever the
    grouping; None when they might not."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.null_count:
        arr = pc.fill_null(arr, 0)
    values = arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if len(values) and int(np.abs(values).max()) * len(values) >= LIMIT:
        return None
    return values


def unscaled(arr: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """A decimal128 column as its unscaled int64 values (``1.500000`` at scale 6 is 1500000),
    read from its buffer; None when it is not decimal128, has nulls, or a value (or the sum of
    the column) might not fit in int64."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_decimal128(arr.type) or arr.null_count or len(arr) == 0:
        return None
    words = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset * 2:(arr.offset + len(arr)) * 2].reshape(-1, 2)
    low, high = words[:, 0], words[:, 1]
    if not (high == (low >> 63)).all():
        return None
    if int(np.abs(low).max()) * len(arr) >= LIMIT:
        return None
    return low
