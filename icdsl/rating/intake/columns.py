"""Column helpers shared by the field rules, and the problems found in a batch's rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# a first or last byte that may be (part of) whitespace: ASCII spaces, and any non-ASCII byte
# (U+00A0 and other Unicode spaces, which utf8_trim_whitespace removes too: the fast path must not
# keep what the slow one removes, or a value's outcome would depend on its neighbours)
_WS = np.zeros(256, bool)
_WS[[9, 10, 11, 12, 13, 32]] = True
_WS[128:] = True


def combine(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def is_text(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or (pa.types.is_dictionary(t) and is_text(t.value_type))
    )


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def as_string(arr: pa.Array) -> pa.StringArray:
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        t = arr.type
        if not (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)):
            raise
        # a binary Parquet column with bytes that are not UTF-8: those values are kept as
        # escaped text (b"\xff" -> "\\xff"), so that the row's field rules reject it with a
        # reason instead of the file failing (found by tests/test_fuzz_intake.py)
        return pa.array([None if v is None else v.decode("utf-8", "backslashreplace") for v in arr.to_pylist()],
                        pa.string())


def clean_text(arr: pa.Array) -> pa.StringArray:
    """Strings with surrounding whitespace removed and empty values as null (a cheap numpy
    look at the buffers first: most columns need nothing)."""
    arr = as_string(arr)
    if len(arr) == 0:
        return arr
    valid = arr.drop_null() if arr.null_count else arr
    if len(valid):
        bufs = valid.buffers()
        off = np.frombuffer(bufs[1], np.int32, count=len(valid) + 1, offset=valid.offset * 4)
        data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
        lens = np.diff(off)
        if lens.min() > 0 and not _WS[data[off[:-1]]].any() and not _WS[data[off[1:] - 1]].any():
            return arr
    arr = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(pc.binary_length(arr), 0), pa.scalar(None, pa.string()), arr)


def map_small(arr: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """Apply ``fn`` to the distinct values of a low-cardinality column only."""
    d = pc.dictionary_encode(arr)
    if len(d.dictionary) * 4 > len(arr):
        return fn(arr)
    values = fn(d.dictionary)
    if values.equals(d.dictionary):  # nothing to change (lower-case already): no new column
        return arr
    return pc.take(values, d.indices)


def null_positions(arr: pa.Array) -> np.ndarray:
    if not arr.null_count:
        return np.zeros(0, np.int64)
    return np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))


def null_mask(arr: pa.Array) -> np.ndarray | None:
    """Writable mask of the nulls, None if there are none."""
    if not arr.null_count:
        return None
    return np.array(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def positions(mask: pa.Array | np.ndarray) -> np.ndarray:
    if isinstance(mask, pa.Array | pa.ChunkedArray):
        mask = mask.fill_null(False).to_numpy(zero_copy_only=False)
    return np.flatnonzero(mask)


def all_digits(arr: pa.StringArray, max_len: int) -> bool:
    """Every value (no nulls) is 1 to ``max_len`` ASCII digits."""
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    lens = np.diff(off)
    if lens.min() < 1 or lens.max() > max_len:
        return False
    body = np.frombuffer(bufs[2], np.uint8)[off[0] : off[-1]]
    return bool(body.min() >= 48 and body.max() <= 57)


def isolate(
    arr: pa.Array, fn: Callable[[pa.Array], pa.Array], out_type: pa.DataType
) -> tuple[pa.Array, np.ndarray]:
    """``fn(arr)``; if Arrow refuses some values, narrow them down by bisection to slices of
    at most 64 values. Returns the result (nulls in the refused slices) and the positions of
    the refused slices, which the caller decides one by one."""
    try:
        return fn(arr), np.zeros(0, np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        n = len(arr)
        if n <= 64:
            return pa.nulls(n, out_type), np.arange(n, dtype=np.int64)
        h = n // 2
        a, bad_a = isolate(arr.slice(0, h), fn, out_type)
        b, bad_b = isolate(arr.slice(h), fn, out_type)
        return pa.concat_arrays([a, b]), np.concatenate([bad_a, bad_b + h])


def fill(n: int, typ: pa.DataType, parts: list[tuple[np.ndarray, pa.Array]]) -> pa.Array:
    """An array of ``n`` nulls of type ``typ`` with ``parts`` (positions, values) filled in."""
    if len(parts) == 1 and len(parts[0][0]) == n:
        return parts[0][1]
    vals = np.zeros(n, np.int64)
    valid = np.zeros(n, bool)
    for pos, arr in parts:
        if len(pos):
            a = arr.cast(pa.int64()) if not pa.types.is_int64(arr.type) else arr
            vals[pos] = a.fill_null(0).to_numpy(zero_copy_only=False)
            valid[pos] = a.is_valid().to_numpy(zero_copy_only=False)
    return pa.array(vals, pa.int64(), mask=~valid).cast(typ) if n else pa.array([], typ)


def put(out: pa.Array, at: np.ndarray, values: list, typ: pa.DataType) -> pa.Array:
    """``out`` with the positions ``at`` replaced by ``values`` (None: null)."""
    if len(at) == 0:
        return out
    mask = np.zeros(len(out), bool)
    mask[at] = True
    return pc.replace_with_mask(out, pa.array(mask), pa.array(values, pa.int64()).cast(typ))


class Problems:
    """Row problems of one batch: (positions, reason, details) parts; the first problem
    found for a row is the one kept."""

    def __init__(self, n: int):
        self.bad = np.zeros(n, bool)
        self.parts: list[tuple[np.ndarray, str, list[str]]] = []

    def add(
        self, positions: np.ndarray, reason: str, details: list[str] | Callable[[np.ndarray], list[str]]
    ) -> None:
        positions = np.asarray(positions, np.int64)
        if len(positions) == 0:
            return
        keep = ~self.bad[positions]
        if not keep.all():
            if not callable(details):
                details = [d for d, k in zip(details, keep, strict=True) if k]
            positions = positions[keep]
            if len(positions) == 0:
                return
        if callable(details):
            details = details(positions)
        self.bad[positions] = True
        self.parts.append((positions, reason, list(details)))

    def add_each(self, found: list[tuple[int, str, str]]) -> None:
        """Problems given one by one as (position, reason, detail)."""
        by_reason: dict[str, tuple[list[int], list[str]]] = {}
        for pos, reason, detail in found:
            ps, ds = by_reason.setdefault(reason, ([], []))
            ps.append(pos)
            ds.append(detail)
        for reason, (ps, ds) in by_reason.items():
            self.add(np.asarray(ps, np.int64), reason, ds)

    def first(self) -> tuple[str, str] | None:
        """The (reason, detail) of the first row that has a problem (one-row batches)."""
        best = None
        for pos, reason, details in self.parts:
            k = int(np.argmin(pos))
            if best is None or pos[k] < best[0]:
                best = (int(pos[k]), reason, details[k])
        return None if best is None else best[1:]
