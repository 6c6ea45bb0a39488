"""A cycle's rated traffic by local day: records, billed units and amount per direction,
service, destination and currency (the compact daily aggregate revenue assurance learns a
partner's baseline from, :mod:`icdsl.assure`).

:class:`DailyTraffic` sees every rated chunk as it is written (the rater's ``scan``) and adds
it into three matrices ``[series, day]`` (records, billed units, amounts as unscaled integers:
exact), a *series* being a direction, service, destination and currency. Per chunk: the key
columns' dictionary codes are grouped in NumPy (:mod:`icdsl.charges.groups`, no text
compared), each group is looked up among the series seen so far (Python per series, never per
record), and the records are added into the matrices' cells by ``np.bincount`` and
``np.add.at``. :meth:`DailyTraffic.daily` gives the matrices, series sorted (:class:`Daily`):
that is what the store writes (``traffic_daily`` holds one row per series, its days as vectors)
and what the cycle's assurance findings read. No Python per record or per day; the local day
is :func:`icdsl.cycle.periods.day_index`'s. Sums that might not fit int64 (or a chunk whose
amounts do not) are kept as Python integers in object matrices: slower, still exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from icdsl.charges import groups
from icdsl.cycle.periods import Period, day_edges, day_index, to_us

KEYS = ("day", "direction", "service", "destination", "currency")
SERIES = KEYS[1:]


@dataclass(frozen=True, slots=True)
class DailyRow:
    """Rated records of one local day, direction, service, destination and currency."""

    day: date
    direction: str
    service: str
    destination: str
    currency: str
    records: int
    units: int
    amount: Decimal  # exact


@dataclass
class Daily:
    """A cycle's rated traffic as matrices ``[series, day]`` from ``first`` (``days`` days):
    ``keys`` the series (direction, service, destination, currency), sorted; ``records`` and
    ``units`` their sums, ``amounts`` the exact amounts as unscaled integers at ``scale``
    decimals (int64, or Python integers in an object matrix when they might not fit). A cell
    with no record is zero in every matrix."""

    first: date
    days: int
    keys: list[tuple[str, str, str, str]]
    records: np.ndarray
    units: np.ndarray
    amounts: np.ndarray
    scale: int

    @classmethod
    def empty(cls, first: date, days: int) -> Daily:
        z = np.zeros((0, days), np.int64)
        return cls(first, days, [], z, z.copy(), z.copy(), 0)

    def __len__(self) -> int:
        return len(self.keys)

    def amount(self, unscaled: int) -> Decimal:
        """An unscaled amount as a Decimal at :attr:`scale` decimals."""
        return Decimal(int(unscaled)).scaleb(-self.scale)

    def rows(self) -> list[DailyRow]:
        """One row per day and series with records, sorted by day, then series."""
        s, j = np.nonzero(self.records.T)  # day-major: sorted by day, then series (keys are sorted)
        out = []
        for d, i in zip(s.tolist(), j.tolist(), strict=True):
            direction, service, destination, currency = self.keys[i]
            out.append(DailyRow(self.first + timedelta(days=d), direction, service, destination, currency,
                                int(self.records[i, d]), int(self.units[i, d]), self.amount(self.amounts[i, d])))
        return out


class DailyTraffic:
    """Rated chunks added into matrices by series and local day (``add(table)`` per chunk,
    :meth:`daily` once). Records outside the period's days are kept on the nearest edge day
    (they cannot be rated into a cycle of another period: this only guards the index)."""

    def __init__(self, period: Period):
        self.first = period.local_start
        self.days = max((period.local_end - period.local_start).days, 1)
        self._edges = day_edges(period)
        self._index: dict[tuple[str, str, str, str], int] = {}
        self._records = np.zeros(0, np.int64)  # flat [series * days]
        self._units = np.zeros(0, np.int64)
        self._amounts = np.zeros(0, np.int64)
        self._scale: int | None = None
        self._bound = 0  # a bound of any sum of the int64 matrices' absolute values (units, amounts)

    def add(self, rated: pa.Table) -> None:
        """Add a rated chunk: its records grouped by series on the key columns' dictionary
        codes, its day of each record by :func:`~icdsl.cycle.periods.day_index`."""
        n = rated.num_rows
        if not n:
            return
        idx = np.clip(day_index(to_us(rated.column("start")), self._edges), 0, self.days - 1).astype(np.int64)
        coded = [groups.codes(rated.column(c)) for c in SERIES]
        g = groups.Groups(coded, n)
        texts = [pc.fill_null(pc.cast(g.values(c), pa.string()), "").to_pylist() for c in coded]
        ids = np.fromiter((self._index.setdefault(k, len(self._index)) for k in zip(*texts, strict=True)),
                          np.int64, g.n)
        self._grow(len(self._index) * self.days)
        cell = ids[g.index] * self.days + idx
        self._records += np.bincount(cell, minlength=len(self._records))
        self._units = self._sum(self._units, cell, rated.column("billed_units"), 0)
        amount = rated.column("amount")
        sc = amount.type.scale
        if self._scale is None:
            self._scale = sc
        elif sc > self._scale:  # the sums so far brought to the finer scale (exact: more decimals)
            self._amounts = self._scaled(self._amounts, 10 ** (sc - self._scale))
            self._scale = sc
        self._amounts = self._sum(self._amounts, cell, amount, self._scale - sc)

    def _grow(self, size: int) -> None:
        more = size - len(self._records)
        if more > 0:
            self._records = np.concatenate([self._records, np.zeros(more, np.int64)])
            self._units = np.concatenate([self._units, np.zeros(more, self._units.dtype)])
            self._amounts = np.concatenate([self._amounts, np.zeros(more, self._amounts.dtype)])

    def _scaled(self, matrix: np.ndarray, factor: int) -> np.ndarray:
        if matrix.dtype != object:
            self._bound *= factor
            if self._bound >= groups.LIMIT:
                matrix = matrix.astype(object)
        return matrix * factor

    def _sum(self, matrix: np.ndarray, cell: np.ndarray, col: pa.ChunkedArray | pa.Array,
             shift: int) -> np.ndarray:
        """``matrix`` plus the sums by cell of an integer or decimal column (nulls as 0),
        multiplied by ``10**shift``: int64 while every sum surely fits, else Python integers."""
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if arr.null_count:
            arr = pc.fill_null(arr, pa.scalar(0, arr.type) if not pa.types.is_decimal(arr.type)
                               else pa.scalar(Decimal(0), arr.type))
        values = groups.unscaled(arr) if pa.types.is_decimal(arr.type) else groups.exact_ints(arr)
        factor = 10**shift
        if values is not None:
            bound = int(np.abs(values).sum()) * factor
            if matrix.dtype != object and self._bound + bound < groups.LIMIT:
                self._bound += bound
                np.add.at(matrix, cell, values * factor if factor != 1 else values)
                return matrix
            matrix = matrix.astype(object)
            np.add.at(matrix, cell, values.astype(object) * factor)
            return matrix
        # values that might not fit int64: summed by cell by Arrow (decimal128, exact), then
        # added as Python integers (one per cell)
        matrix = matrix.astype(object)
        scale = arr.type.scale if pa.types.is_decimal(arr.type) else 0
        t = pa.table({"cell": pa.array(cell), "v": pc.cast(arr, pa.decimal128(38, scale))})
        s = t.group_by("cell", use_threads=False).aggregate([("v", "sum")])
        for c, v in zip(s.column("cell").to_pylist(), s.column("v_sum").to_pylist(), strict=True):
            matrix[c] += int(v.scaleb(scale)) * factor
        return matrix

    def daily(self) -> Daily:
        """The matrices, series sorted by direction, service, destination and currency."""
        if not self._index:
            return Daily.empty(self.first, self.days)
        keys = list(self._index)
        order = sorted(range(len(keys)), key=keys.__getitem__)
        shape = (len(keys), self.days)
        return Daily(self.first, self.days, [keys[i] for i in order], self._records.reshape(shape)[order],
                     self._units.reshape(shape)[order], self._amounts.reshape(shape)[order], self._scale or 0)

    def rows(self) -> list[DailyRow]:
        """The sums as rows (:meth:`Daily.rows`)."""
        return self.daily().rows()


class Scans:
    """Several scans of the rated chunks as one (the rater takes one ``scan``)."""

    def __init__(self, *scans: object):
        self.scans = [s for s in scans if s is not None]

    def add(self, table: pa.Table) -> None:
        for s in self.scans:
            s.add(table)  # type: ignore[attr-defined]
