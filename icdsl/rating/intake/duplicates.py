"""Duplicates: ids seen in a run, kept compactly (8 bytes an integer id, two 64-bit hashes for
other ids) and checked a batch at a time, on columns.

Among the rows that are otherwise valid, the first occurrence of an id wins; the later ones are
``duplicate_id`` rejects. A row rejected for another reason does not claim its id.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class SeenKeys:
    """A growing set of int64 keys kept as sorted numpy runs (8 bytes a key).

    Keys that arrive above everything seen (ids growing through a file, the usual case) are
    appended as a run of their own and never copied again; a membership test for such keys
    is a comparison with the maximum. Other runs are merged log-structured (a run is merged
    into the previous one while that one is not at least twice as long), so that tests stay
    a few binary searches.
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []
        self.min: int | None = None
        self.max: int | None = None

    def contains(self, keys: np.ndarray) -> np.ndarray:
        hit = np.zeros(len(keys), bool)
        if self.max is None or len(keys) == 0 or keys.min() > self.max or keys.max() < self.min:
            return hit
        if len(self.runs) > 16:
            self._compact()
        for run in self.runs:
            idx = np.searchsorted(run, keys)
            np.minimum(idx, len(run) - 1, out=idx)
            hit |= run[idx] == keys
        return hit

    def add(self, keys: np.ndarray, *, ascending: bool = False) -> None:
        """Add keys that are distinct and not yet in the set (``ascending``: already sorted)."""
        if len(keys) == 0:
            return
        run = keys if ascending else np.sort(keys)
        above = self.max is not None and run[0] > self.max
        self.min = int(run[0]) if self.min is None else min(self.min, int(run[0]))
        self.max = int(run[-1]) if self.max is None else max(self.max, int(run[-1]))
        self.runs.append(run)
        if above:
            return
        while len(self.runs) >= 2 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            b = self.runs.pop()
            a = self.runs.pop()
            self.runs.append(merge_sorted(a, b))

    def _compact(self) -> None:
        runs = self.runs
        while len(runs) > 1:
            runs = [
                merge_sorted(runs[i], runs[i + 1]) if i + 1 < len(runs) else runs[i]
                for i in range(0, len(runs), 2)
            ]
        self.runs = runs

    @property
    def nbytes(self) -> int:  # the exact strings of a small run are not counted
        return sum(r.nbytes for r in self.runs)


def merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    merged = np.concatenate([a, b])
    if a[-1] >= b[0]:
        merged.sort(kind="stable")  # timsort: a linear merge of the two runs
    return merged


def ascending(keys: np.ndarray) -> bool:
    return len(keys) < 2 or bool((keys[1:] > keys[:-1]).all())


def first_occurrences(*keys: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group equal entries (equal on every key array): the position of each group's first
    entry, and the groups' keys in sorted order."""
    n = len(keys[0])
    order = np.argsort(keys[0]) if len(keys) == 1 else np.lexsort(keys[::-1])
    ordered = [k[order] for k in keys]
    change = np.zeros(n, bool)
    change[0] = True
    for k in ordered:
        change[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(change)
    first = np.minimum.reduceat(order, starts)  # the sort need not be stable
    return first, [k[starts] for k in ordered]


_CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,17})$"


def canonical_ints(arr: pa.StringArray) -> np.ndarray:
    """Which strings are integers written canonically (so that int64 keys are exact)."""
    if len(arr) and not arr.null_count:
        bufs = arr.buffers()
        off = np.frombuffer(bufs[1], np.int32, count=len(arr) + 1, offset=arr.offset * 4)
        data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
        lens = np.diff(off)
        body = data[off[0] : off[-1]]
        if lens.min() >= 1 and lens.max() <= 18 and body.min() >= 48 and body.max() <= 57:
            lead0 = (data[off[:-1]] == 48) & (lens > 1)
            if not lead0.any():
                return np.ones(len(arr), bool)
    return pc.match_substring_regex(arr, _CANONICAL_INT).fill_null(False).to_numpy(zero_copy_only=False)


#: non-integer string ids kept as they are before the deduper hashes them
EXACT_IDS = 50_000


def _hashes(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each string."""
    import polars as pl  # heavy to import; only many string ids that are not integers need it

    series = pl.from_arrow(strings)
    k1 = series.hash(seed=0x1CD5).to_numpy().view(np.int64)
    # the second hash reads the strings backwards: a collision of one says nothing
    # about the other, whatever the hash function's structure
    k2 = series.str.reverse().hash(seed=0x5EED).to_numpy().view(np.int64)
    return k1, k2


class Deduper:
    """Ids seen in a run. Integer ids (and strings that are canonical integers) are kept as
    int64; other strings as two independent 64-bit hashes (a false duplicate needs both to
    collide: about 1e-25 per row at 10 million ids). The first :data:`EXACT_IDS` such strings
    are kept as they are (a small file needs no hashing, nor polars to hash); past that, they
    are hashed too and the hashes carry on."""

    def __init__(self) -> None:
        self.ints = SeenKeys()
        self.h1 = SeenKeys()
        self.h2 = SeenKeys()
        self.exact: set[str] | None = set()

    def duplicates(self, ids: pa.Array, candidates: np.ndarray) -> np.ndarray:
        """Positions among ``candidates`` (valid rows, in order) whose id was seen before;
        the other candidates' ids are recorded."""
        if len(candidates) == 0:
            return candidates
        if pa.types.is_integer(ids.type):
            keys = ids.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            if len(candidates) != len(ids):
                keys = keys[candidates]
            return candidates[self._check(self.ints, keys)]
        sub = ids if len(candidates) == len(ids) else ids.take(pa.array(candidates))
        canon = canonical_ints(sub)
        dup = np.zeros(len(sub), bool)
        if canon.any():
            pos = np.flatnonzero(canon)
            keys = sub.take(pa.array(pos)).cast(pa.int64()).to_numpy()
            dup[pos] = self._check(self.ints, keys)
        if not canon.all():
            pos = np.flatnonzero(~canon)
            strings = sub.take(pa.array(pos))
            if self.exact is not None and len(self.exact) + len(strings) <= EXACT_IDS:
                dup[pos] = self._check_exact(strings.to_pylist())
            else:
                if self.exact is not None:  # from now on hashes: those of the strings seen so far first
                    seen, self.exact = self.exact, None
                    if seen:
                        k1, k2 = _hashes(
                            pa.array(sorted(seen, key=lambda v: (v is None, v or "")), pa.string())
                        )
                        self.h1.add(np.unique(k1))
                        self.h2.add(np.unique(k2))
                dup[pos] = self._check_pair(*_hashes(strings))
        return candidates[dup]

    def _check_exact(self, ids: list[str]) -> np.ndarray:
        seen = self.exact
        dup = np.zeros(len(ids), bool)
        for i, v in enumerate(ids):
            if v in seen:
                dup[i] = True
            else:
                seen.add(v)
        return dup

    @staticmethod
    def _check(seen: SeenKeys, keys: np.ndarray) -> np.ndarray:
        if ascending(keys):  # the usual case: ids grow through the file
            dup = seen.contains(keys)
            seen.add(keys[~dup] if dup.any() else keys, ascending=True)
            return dup
        first, (distinct,) = first_occurrences(keys)
        known = seen.contains(distinct)
        dup = np.ones(len(keys), bool)
        dup[first[~known]] = False
        seen.add(distinct[~known], ascending=True)
        return dup

    def _check_pair(self, k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
        first, (d1, d2) = first_occurrences(k1, k2)
        known = self.h1.contains(d1) & self.h2.contains(d2)
        dup = np.ones(len(k1), bool)
        dup[first[~known]] = False
        self.h1.add(np.unique(d1[~known]))
        self.h2.add(np.unique(d2[~known]))
        return dup

    @property
    def nbytes(self) -> int:  # the exact strings of a small run are not counted
        return self.ints.nbytes + self.h1.nbytes + self.h2.nbytes
