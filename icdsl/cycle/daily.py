"""A cycle's rated traffic by local day: records, billed units and amount per direction,
service, destination and currency (the compact daily aggregate revenue assurance learns a
partner's baseline from, :mod:`icdsl.assure`).

:class:`DailyTraffic` sees every rated chunk as it is written (the rater's ``scan``), sums it
on columns (one Arrow ``group_by`` per chunk on the local day and four text columns; amounts
are decimal128 sums, exact) and merges the partial sums once at the end (:meth:`rows`). No
Python per record; the local day is :func:`icdsl.cycle.periods.day_index`'s.
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


class DailyTraffic:
    """Partial sums of rated chunks by local day (:data:`KEYS`); ``add(table)`` per chunk,
    :meth:`rows` once. Records outside the period's days are kept on the nearest edge day
    (they cannot be rated into a cycle of another period: this only guards the index)."""

    def __init__(self, period: Period):
        self.first = period.local_start
        self.days = (period.local_end - period.local_start).days
        self._edges = day_edges(period)
        self._partials: list[tuple[pa.Table, int]] = []  # (partial sums, the scale of their unscaled amounts)

    def add(self, rated: pa.Table) -> None:
        """Sum a rated chunk by local day and the key columns: grouped on the columns'
        dictionary codes in NumPy (:mod:`icdsl.charges.groups`: no text compared, exact int64
        sums of the amounts' unscaled integers; Arrow's decimal sums when they could overflow
        or hold nulls)."""
        n = rated.num_rows
        if not n:
            return
        idx = day_index(to_us(rated.column("start")), self._edges)
        idx = np.clip(idx, 0, max(self.days - 1, 0)).astype(np.int64)
        units = groups.exact_ints(rated.column("billed_units"))
        amount = rated.column("amount")
        raw = groups.unscaled(amount)
        if units is None or raw is None:  # rare: sums that might not fit int64, or null amounts
            self._partials.append(_grouped(rated, idx))
            return
        coded = [(idx, pa.array(np.arange(max(self.days, 1), dtype=np.int32)))]
        coded += [groups.codes(rated.column(c)) for c in KEYS[1:]]
        g = groups.Groups(coded, n)
        cols = {k: (g.values(c) if k == "day" else pc.fill_null(pc.cast(g.values(c), pa.string()), ""))
                for k, c in zip(KEYS, coded, strict=True)}
        cols["records"] = pa.array(g.counts.astype(np.int64))
        cols["units"] = pa.array(g.sum(units))
        sc = amount.type.scale  # the groups' sums as decimals (few: one per day and destination)
        cols["amount"] = pa.array([Decimal(v).scaleb(-sc) for v in g.sum(raw).tolist()], pa.decimal128(38, sc))
        self._partials.append((pa.table(cols), sc))

    def rows(self) -> list[DailyRow]:
        """The merged sums, sorted by day, direction, service, destination, currency."""
        if not self._partials:
            return []
        scale = max(sc for _t, sc in self._partials)
        tables = []
        for t, sc in self._partials:  # amounts brought to one scale (exact: more decimals)
            if sc != scale:
                t = t.set_column(t.schema.get_field_index("amount"), "amount",
                                 pc.cast(t.column("amount"), pa.decimal128(38, scale)))
            tables.append(t)
        t = tables[0]
        if len(tables) > 1:
            t = pa.concat_tables(tables).group_by(list(KEYS), use_threads=False).aggregate(
                [("records", "sum"), ("units", "sum"), ("amount", "sum")])
            t = t.rename_columns([c.removesuffix("_sum") for c in t.column_names])
        t = t.sort_by([(k, "ascending") for k in KEYS])
        cols = {c: t.column(c).to_pylist() for c in (*KEYS, "records", "units", "amount")}
        return [DailyRow(self.first + timedelta(days=int(cols["day"][i])), cols["direction"][i], cols["service"][i],
                         cols["destination"][i], cols["currency"][i], int(cols["records"][i]), int(cols["units"][i]),
                         cols["amount"][i])
                for i in range(t.num_rows)]


def _grouped(rated: pa.Table, idx: np.ndarray) -> tuple[pa.Table, int]:
    """The general way (Arrow's ``group_by`` on decoded text, decimal sums), for chunks whose
    sums might not fit int64 or that hold nulls."""
    amount = rated.column("amount")
    scale = amount.type.scale
    t = pa.table({
        "day": pa.array(idx.astype(np.int32)),
        "direction": _text(rated.column("direction")),
        "service": _text(rated.column("service")),
        "destination": _text(rated.column("destination")),
        "currency": _text(rated.column("currency")),
        "units": pc.fill_null(pc.cast(rated.column("billed_units"), pa.int64()), 0),
        "amount": pc.fill_null(amount, pa.scalar(Decimal(0), amount.type)),
    })
    g = t.group_by(list(KEYS), use_threads=False).aggregate([("units", "count"), ("units", "sum"), ("amount", "sum")])
    g = g.rename_columns([{"units_count": "records", "units_sum": "units", "amount_sum": "amount"}.get(c, c)
                          for c in g.column_names])
    g = g.set_column(g.schema.get_field_index("amount"), "amount", pc.cast(g.column("amount"), pa.decimal128(38, scale)))
    return g.select([*KEYS, "records", "units", "amount"]), scale


def _text(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A text column as plain strings, nulls as empty text (a dictionary column decoded once)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return pc.fill_null(pc.cast(arr, pa.string()), "")


class Scans:
    """Several scans of the rated chunks as one (the rater takes one ``scan``)."""

    def __init__(self, *scans: object):
        self.scans = [s for s in scans if s is not None]

    def add(self, table: pa.Table) -> None:
        for s in self.scans:
            s.add(table)  # type: ignore[attr-defined]
