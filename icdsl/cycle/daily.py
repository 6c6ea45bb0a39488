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
        self._partials: list[pa.Table] = []

    def add(self, rated: pa.Table) -> None:
        if not rated.num_rows:
            return
        idx = day_index(to_us(rated.column("start")), self._edges)
        idx = np.clip(idx, 0, max(self.days - 1, 0)).astype(np.int32)
        t = pa.table({
            "day": pa.array(idx),
            "direction": _text(rated.column("direction")),
            "service": _text(rated.column("service")),
            "destination": _text(rated.column("destination")),
            "currency": _text(rated.column("currency")),
            "units": pc.fill_null(pc.cast(rated.column("billed_units"), pa.int64()), 0),
            "amount": pc.fill_null(rated.column("amount"), pa.scalar(Decimal(0), rated.schema.field("amount").type)),
        })
        self._partials.append(_grouped(t))

    def rows(self) -> list[DailyRow]:
        """The merged sums, sorted by day, direction, service, destination, currency."""
        if not self._partials:
            return []
        t = self._partials[0]
        if len(self._partials) > 1:
            scale = max(p.schema.field("amount").type.scale for p in self._partials)
            t = pa.concat_tables([p.set_column(p.schema.get_field_index("amount"), "amount",
                                               pc.cast(p.column("amount"), pa.decimal128(38, scale)))
                                  for p in self._partials])
            t = t.group_by(list(KEYS), use_threads=False).aggregate(
                [("records", "sum"), ("units", "sum"), ("amount", "sum")])
            t = t.rename_columns([c.removesuffix("_sum") for c in t.column_names])
        t = t.sort_by([(k, "ascending") for k in KEYS])
        out = []
        cols = {c: t.column(c).to_pylist() for c in (*KEYS, "records", "units", "amount")}
        for i in range(t.num_rows):
            out.append(DailyRow(self.first + timedelta(days=int(cols["day"][i])), cols["direction"][i],
                                cols["service"][i], cols["destination"][i], cols["currency"][i],
                                int(cols["records"][i]), int(cols["units"][i]), Decimal(cols["amount"][i])))
        return out


def _grouped(t: pa.Table) -> pa.Table:
    g = t.group_by(list(KEYS), use_threads=False).aggregate(
        [("units", "count"), ("units", "sum"), ("amount", "sum")])
    g = g.rename_columns([{"units_count": "records", "units_sum": "units", "amount_sum": "amount"}.get(c, c)
                          for c in g.column_names])
    return g.select([*KEYS, "records", "units", "amount"])


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
