"""Margins: on each record we sold, the cost of carrying it, and revenue minus cost.

The input is the **sold** records: rated records of the services we bill (``inbound`` and
``transit`` records as the batch executor or a cycle rates them: ``id``, ``partner``,
``service``, ``prefix``, ``destination``, ``band``, ``amount``, ``currency``, ``start``,
``duration_s``), joined by ``id`` with the traffic they were rated from for the two things a
rated record does not keep: the called number (``b_number``; without it the sold ``prefix``
stands for the number) and the supplier the call was handed to (the first of the columns
:data:`SUPPLIER_COLUMNS` the records have; empty or missing: not said).

The cost of a record is what its supplier's **outbound** agreement in force at the record's
start charges for it: the record is rated again by the batch executor
(:func:`icdsl.rating.batch.rate_batch`) as an ``outbound`` record of that partner, so longest
prefix, bands, increments, minimums, connect fees and the agreement's rounding are exactly the
rating's. A record that does not name its supplier is costed with the **LCR choice**: the
first-ranked supplier of the ``icdsl lcr`` table (:func:`icdsl.routing.lcr.build_table`) of the
record's UTC day, for the longest table prefix that begins the number, in the record's band
(the table's first band when the table has no band of that name).

Money is exact: amounts are integers in 10^-9 of the report's currency (the policy's), converted
with the policy's ``fx`` source as the LCR converts (exact, half even at 10^-9, per record).
Margin = revenue - cost per record; every total is the sum of its records. A record that
cannot be costed (no agreement of the supplier, no LCR route) keeps its revenue, has no cost,
and is counted and reported as ``uncosted`` with the rating's reason: never dropped.

Two ways in: :func:`margins` on the sold records in memory (every record's margins kept: the
TUI's drill) and :func:`streamed_margins` on batches (of :func:`sold_batches`, which reads a
rated file and its traffic file side by side a batch at a time): each batch's margins are summed
by key (:class:`Summary`, exact integer sums combined at the end, the same reports to the byte)
and, if asked, written out (:class:`RecordsFile`), so memory is a batch's, not the files'.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from icdsl.lang.decks import read_deck
from icdsl.plan.model import Increments, LcrPolicy, Plan, RateRow, RateTable, Span
from icdsl.rating.batch import Units, rate_units
from icdsl.rating.calendar import DAY_US, book, calendar_bands
from icdsl.routing.lcr import (
    LcrError,
    LcrTable,
    build_table,
    convert,
    fx_factor,
    longest_match_ints,
    money_col,
    money_text,
    number_ints,
)

SUPPLIER_COLUMNS = ("to_partner", "supplier", "route", "out_trunk")  # to_partner: a transit record's terminating side
SOLD_DIRECTIONS = ("inbound", "transit")
# the columns margins read: of the rated records, and of the traffic they were rated from
RATED_COLUMNS = ("id", "partner", "direction", "service", "prefix", "destination", "band", "amount", "currency",
                 "start", "duration_s", "b_number", "a_number", *SUPPLIER_COLUMNS)
TRAFFIC_COLUMNS = ("id", "b_number", "a_number", *SUPPLIER_COLUMNS)
BY = ("partner", "destination", "supplier", "day")
LCR = "lcr"  # how a cost was chosen: the record's supplier ("record") or the LCR's first choice
RECORD = "record"


class MarginError(Exception):
    """Margins that cannot be worked out as asked (a clear, located message)."""


@dataclass
class Finding:
    code: str  # negative-margin | uncosted
    subject: str
    size_n: int  # 10^-9 of the currency (negative margin), or a record count (uncosted)
    records: int
    message: str
    help: str

    def text(self, currency: str) -> str:
        size = f"{money_text(self.size_n)} {currency}" if self.code == "negative-margin" else f"{self.size_n} records"
        return f"{self.code}: {self.subject}: {size} ({self.records} records): {self.message}\n  help: {self.help}"


SUMS = ("records", "seconds", "revenue_n", "cost_n", "uncosted", "margin_n")


def _grouped(records: pl.DataFrame, by: str) -> pl.DataFrame:
    """The sums of ``records`` by one key (texts as text), unsorted: a report or a part of one."""
    key = [by]
    return (records.group_by(key).agg(
        pl.len().alias("records"), pl.col("duration_s").sum().alias("seconds"),
        pl.col("revenue_n").sum().alias("revenue_n"), pl.col("cost_n").sum().alias("cost_n"),
        pl.col("cost_n").is_null().sum().alias("uncosted"),
        pl.col("margin_n").sum().alias("margin_n"))
        .with_columns(pl.col(k).cast(pl.Utf8) for k in key if k != "day"))


def _uncosted_counts(records: pl.DataFrame) -> pl.DataFrame:
    """The records without a cost, counted by supplier and reason."""
    return records.filter(pl.col("cost_n").is_null()).group_by("supplier", "uncosted").agg(pl.len().alias("n")) \
        .with_columns(pl.col("supplier").cast(pl.Utf8))


def _findings(dest: pl.DataFrame, uncosted: pl.DataFrame, currency: str) -> list[Finding]:
    """The findings of a report by destination and the uncosted counts (:func:`_uncosted_counts`)."""
    out = []
    for row in dest.filter(pl.col("margin_n") < 0).sort("margin_n").iter_rows(named=True):
        out.append(Finding(
            "negative-margin", row["destination"] or "(no destination)", row["margin_n"], row["records"],
            f"costs {money_text(row['cost_n'])} against a revenue of {money_text(row['revenue_n'])} "
            f"{currency}",
            "route it to a cheaper supplier (icdsl lcr), renegotiate the supplier's deck (what-if with "
            "--supplier-deck) or raise the sell price of this destination"))
    for row in uncosted.sort(["n", "supplier", "uncosted"], descending=[True, False, False], nulls_last=False) \
            .iter_rows(named=True):
        out.append(Finding(
            "uncosted", row["supplier"] or "(no supplier)", row["n"], row["n"], row["uncosted"] or "",
            "give the supplier an outbound agreement in force for these calls, or correct the "
            "records' supplier column; their margin counts the revenue only"))
    return out


@dataclass
class Margins:
    """Per record (``records``): the sale, the supplier, how it was chosen, the cost and the
    margin in 10^-9 of ``currency`` (``revenue_n``, ``cost_n`` null when uncosted,
    ``margin_n``); ``uncosted``: the records without a cost and why."""

    currency: str
    records: pl.DataFrame
    notes: list[str] = field(default_factory=list)

    def report(self, by: str) -> pl.DataFrame:
        """Totals by partner, destination, supplier or day; each the exact sum of its records."""
        if by not in BY:
            raise MarginError(f"--by {by!r}: choose one of {', '.join(BY)}")
        return _grouped(self.records, by).sort(by)

    def totals(self) -> dict[str, int]:
        r = self.records
        return {"records": r.height, "revenue_n": int(r["revenue_n"].sum() or 0),
                "cost_n": int(r["cost_n"].sum() or 0), "margin_n": int(r["margin_n"].sum() or 0),
                "uncosted": int(r["cost_n"].is_null().sum())}

    def findings(self) -> list[Finding]:
        return _findings(self.report("destination"), _uncosted_counts(self.records), self.currency)


@dataclass
class Summary:
    """:class:`Margins` without the records: their sums by each key of :data:`BY` and the
    uncosted counts, added up batch by batch (sums and counts of exact integers: the same
    figures as the records' own, in the memory of the groups). :meth:`add` takes the records
    of one batch; :meth:`report`, :meth:`totals` and :meth:`findings` are :class:`Margins`'."""

    currency: str
    keys: tuple[str, ...] = BY  # the keys reported (destination always: the findings)
    notes: list[str] = field(default_factory=list)
    fallback: int = 0  # records costed from a supplier's fallback price list
    _parts: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    _uncosted: list[pl.DataFrame] = field(default_factory=list)
    _totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("records", "revenue_n", "cost_n", "margin_n", "uncosted"), 0))

    def add(self, records: pl.DataFrame) -> None:
        for by in dict.fromkeys((*self.keys, "destination")):
            parts = self._parts.setdefault(by, [])
            parts.append(_grouped(records, by))
            if len(parts) >= 8:  # combined now and then: the groups' memory, not the batches'
                self._parts[by] = [self._combined(by)]
        self._uncosted.append(_uncosted_counts(records))
        if len(self._uncosted) >= 8:
            self._uncosted = [self._uncosted_all()]
        t = Margins(self.currency, records).totals()
        for k, v in t.items():
            self._totals[k] += v
        self.fallback += int(records["from_fallback"].sum())

    def _combined(self, by: str) -> pl.DataFrame:
        parts = self._parts[by]
        if len(parts) == 1:
            return parts[0]
        whole = pl.concat(parts, how="vertical")
        return whole.group_by(by).agg(pl.col(c).sum() for c in SUMS).select(whole.columns).cast(whole.schema)

    def _uncosted_all(self) -> pl.DataFrame:
        whole = pl.concat(self._uncosted, how="vertical")
        return whole.group_by("supplier", "uncosted").agg(pl.col("n").sum()).cast(whole.schema)

    def report(self, by: str) -> pl.DataFrame:
        """Totals by partner, destination, supplier or day; each the exact sum of its records."""
        if by not in BY:
            raise MarginError(f"--by {by!r}: choose one of {', '.join(BY)}")
        if by not in self._parts:
            raise MarginError(f"the sums by {by} were not kept (keys {', '.join(self.keys)})")
        return self._combined(by).sort(by)

    def totals(self) -> dict[str, int]:
        return dict(self._totals)

    def findings(self) -> list[Finding]:
        return _findings(self.report("destination"), self._uncosted_all(), self.currency)


# --------------------------------------------------------------------------- exact amounts


def nano(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Decimal amounts as int64 in 10^-9 (exact: amounts have at most 9 decimals here)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=arr.type)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not pa.types.is_decimal(arr.type):
        arr = pa.array(arr.to_pylist(), type=pa.decimal128(38, 9))
    if arr.type.scale > 9:
        raise MarginError(f"amounts with {arr.type.scale} decimals: at most 9 are supported")
    arr = arr.cast(pa.decimal128(38, 9))
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    both = np.frombuffer(arr.buffers()[1], dtype="<i8").reshape(-1, 2)[arr.offset: arr.offset + n]
    words = both[:, 0].copy()
    if not np.array_equal(both[:, 1], words >> 63):
        raise MarginError("an amount beyond 9,223,372,036 units cannot be reported")
    return words


# --------------------------------------------------------------------------- the LCR choice


def lcr_choice(plan: Plan, policy: LcrPolicy, numbers: pl.Series, starts: pl.Series, days: pl.Series,
               bands: pl.Series, notes: list[str]) -> pl.Series:
    """The first-ranked supplier of the LCR table of each record's day for its number (longest
    table prefix with a route in the record's band) and band; null where the table has no route."""
    codes, names = lcr_codes(plan, policy, numbers, starts, days, bands, notes)
    return pl.from_arrow(_dict_array(codes, names)).cast(pl.Utf8).alias("supplier")


def lcr_codes(plan: Plan, policy: LcrPolicy, numbers: pl.Series, starts: pl.Series, days: pl.Series,
              bands: pl.Series, notes: list[str], tables: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """:func:`lcr_choice` as codes into a list of supplier codes (-1: no route). On columns: the
    numbers as integers once, one table per stretch of days, and each band's first choices found
    by one sorted lookup per prefix length (:func:`icdsl.routing.lcr.longest_match_ints`).
    ``tables``: the tables already built, by the first day of their stretch (kept across calls)."""
    n = len(numbers)
    out = np.full(n, -1, dtype=np.int32)
    names: list[str] = []
    n_num, n_len, ok = number_ints(numbers)
    frame = pl.DataFrame({"t": starts, "d": days, "b": bands.cast(pl.Utf8)}).with_row_index("i")
    cuts = change_days(plan)
    day_n = days.to_physical().to_numpy()
    seg = np.searchsorted(np.asarray([c.toordinal() - EPOCH for c in cuts], dtype=np.int64), day_n, side="right")
    for group in np.unique(seg).tolist():
        at = np.flatnonzero(seg == group)
        # the same table on every day of the stretch: built for its first day
        day = cuts[group - 1] if group > 0 else date.fromordinal(EPOCH + int(day_n[at].min()))
        tables = {} if tables is None else tables
        if day not in tables:
            try:
                tables[day] = build_table(plan, policy, day)
            except LcrError as e:
                tables[day] = e
        table = tables[day]
        if isinstance(table, LcrError):
            notes.append(f"{day}: no LCR table ({str(table).splitlines()[0]}): its records without a supplier "
                         "are uncosted")
            continue
        first = table.routes.filter(pl.col("rank") == 1).sort("supplier").unique(
            ["prefix", "band"], keep="first").select("prefix", "band", "supplier")
        part = frame if len(at) == n else frame[at]
        band_of = _bands_of(plan, table.bands, part, notes)["b"]
        for (band,), routes in first.partition_by("band", as_dict=True).items():
            mine = at[(band_of == band).fill_null(False).to_numpy()]
            if not len(mine):
                continue
            hit = longest_match_ints(n_num[mine], n_len[mine], ok[mine], routes["prefix"])
            found = hit >= 0
            sup = routes["supplier"].to_list()
            local = {c: i for i, c in enumerate(sorted(set(sup)))}
            for c in local:
                if c not in names:
                    names.append(c)
            code_of = np.array([names.index(c) for c in sup], dtype=np.int32)
            out[mine[found]] = code_of[hit[found]]
    return out, names


def change_days(plan: Plan) -> list[date]:
    """The days on which an LCR table can change: an agreement version starts or ends, a rate row
    or an FX rate comes into force or stops. Between two of them, every day's table is the same."""
    out: set[date] = set()

    def add(values) -> None:
        for v in set(values):
            if v is None:
                continue
            out.add(v if isinstance(v, date) else date.fromisoformat(str(v)[:10]))

    for a in plan.agreements:
        out.add(a.effective_from)
        if a.effective_to is not None:
            out.add(a.effective_to.fromordinal(a.effective_to.toordinal() + 1))  # inclusive end
        for sp in a.services:
            rows = sp.rates.rows if sp.rates is not None else None
            if rows is None:
                continue
            if hasattr(rows, "effective_from") and not isinstance(rows, tuple):
                add(rows.effective_from or ())
                add(rows.effective_to or ())
            else:
                add(r.effective_from for r in rows)
                add(r.effective_to for r in rows)
    for src in plan.fx_sources:
        add(r.effective_from for r in src.rates)
    return sorted(out)


def _bands_of(plan: Plan, bands: tuple[str, ...], part: pl.DataFrame, notes: list[str]) -> pl.DataFrame:
    """The LCR band of each record: its sold band when the table has a band of that name, else
    the band of its start in the first calendar of the rules whose bands are the table's (by the
    minute), else the table's first band."""
    known = pl.col("b").is_in(list(bands))
    if part.filter(~known).height == 0:
        return part
    cal = next((c for c in plan.calendars if set(calendar_bands(c)) >= set(bands)), None)
    if cal is None:
        if len(bands) > 1:
            notes.append(f"no calendar has the LCR bands {', '.join(bands)}: records without a supplier use "
                         f"the {bands[0]} list")
        return part.with_columns(pl.when(known).then(pl.col("b")).otherwise(pl.lit(bands[0])).alias("b"))
    bb = book(cal)
    t = part["t"]
    t = (t.dt.convert_time_zone("UTC") if t.dtype.time_zone else t.dt.replace_time_zone("UTC")) \
        .dt.cast_time_unit("us").to_physical().to_numpy()
    steps = bb.steps(int(t.min() // DAY_US), int(t.max() // DAY_US))  # the band at each instant, on columns
    cb = pl.Series("cb", np.asarray(bb.bands, dtype=object)[steps(t)], dtype=pl.Utf8)
    return part.with_columns(pl.when(known).then(pl.col("b")).otherwise(cb).alias("b"))


# --------------------------------------------------------------------------- the margins


def _text(table: pa.Table, name: str) -> pl.Series | None:
    if name not in table.column_names:
        return None
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    return pl.from_arrow(col).cast(pl.Utf8)


def _cat(table: pa.Table, name: str) -> pl.Series | None:
    """A low-cardinality text column as a categorical (a dictionary column is taken as it is)."""
    if name not in table.column_names:
        return None
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        return pl.from_arrow(col).cast(pl.Categorical)
    return pl.from_arrow(col).cast(pl.Utf8).cast(pl.Categorical)


def sold(rated: pa.Table, traffic: pa.Table | None = None) -> pa.Table:
    """The sold records of a rated table (directions :data:`SOLD_DIRECTIONS`), with the called
    number and supplier of ``traffic`` joined by ``id`` when given."""
    if traffic is None:
        return _sold_only(rated)
    if "id" not in traffic.column_names:
        _sold_only(rated.slice(0, 0))
        raise MarginError("the traffic file has no 'id' column to join with the rated records")
    extra = [c for c in ("b_number", "a_number", *SUPPLIER_COLUMNS) if c in traffic.column_names
             and c not in rated.column_names]
    if not extra:
        return _sold_only(rated)
    # the traffic row of each rated record, by id (the first of a repeated id), then its columns taken
    picked = _sold_only(rated)
    if _same_ids(picked.column("id"), traffic.column("id")):
        return _with_columns(picked, traffic.select(extra), extra)  # the traffic in its order: row for row
    return _with_columns(picked, _TrafficIndex(traffic, extra).take(picked.column("id")), extra)


def _sold_only(rated: pa.Table, keep_all: bool = False) -> pa.Table:
    """The records of ``rated`` of a sold direction (``keep_all``: all of them), checked to have
    the columns margins need."""
    missing = [c for c in ("id", "partner", "service", "amount", "currency", "start", "duration_s")
               if c not in rated.column_names]
    if missing:
        raise MarginError(f"the rated records lack the column(s) {', '.join(missing)}: give the rated file of "
                          "'icdsl rate' or of a cycle")
    if keep_all:
        return rated
    return rated.filter(_sold_mask(rated.column("direction"))) if "direction" in rated.column_names else rated


def _sold_mask(direction: pa.ChunkedArray) -> pa.Array | None:
    keep = pl.from_arrow(direction).cast(pl.Utf8).is_in(list(SOLD_DIRECTIONS)).fill_null(False)
    return pa.array(keep.to_numpy())


class _TrafficIndex:
    """The traffic's rows by id (the first of a repeated id), to take for the rated records' ids."""

    def __init__(self, traffic: pa.Table, extra: Sequence[str]):
        right_id = pl.from_arrow(traffic.column("id")).cast(pl.Utf8)
        self.right = pl.DataFrame({"id": right_id}).with_row_index("_row").unique("id", keep="first")
        self.columns = traffic.select(list(extra))

    def take(self, ids: pa.ChunkedArray) -> pa.Table:
        left = pl.DataFrame({"id": pl.from_arrow(ids).cast(pl.Utf8)})
        rows = left.join(self.right, on="id", how="left", maintain_order="left")["_row"]
        return self.columns.take(pa.array(rows.to_arrow()))


def _with_columns(rated: pa.Table, taken: pa.Table, extra: Sequence[str],
                  direction: pa.ChunkedArray | None = None) -> pa.Table:
    """``rated`` with the columns ``extra`` of ``taken`` (row for row; as text); ``direction``:
    the rated records' directions, the records of a sold direction kept (of both)."""
    if direction is not None:
        keep = _sold_mask(direction)
        if not pc.all(keep).as_py():
            rated, taken = rated.filter(keep), taken.filter(keep)
    for c in extra:
        col = taken.column(c)
        text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        rated = rated.append_column(c, col if text else col.cast(pa.string()))
    return rated


def _same_ids(left: pa.ChunkedArray, right: pa.ChunkedArray) -> bool:
    """The two id columns hold the same values in the same order (string and large string alike)."""
    if len(left) != len(right):
        return False
    if left.type != right.type:
        texts = (pa.types.is_string, pa.types.is_large_string)
        if not (any(t(left.type) for t in texts) and any(t(right.type) for t in texts)):
            return False
        left = left.cast(right.type)
    return left.equals(right)


def margins(plan: Plan, records: pa.Table, policy: LcrPolicy,
            decks: dict[str, object] | None = None) -> Margins:
    """The margin of every sold record of ``records`` (see the module's docs). ``decks``: what-if
    supplier decks ({partner: rate table}) that replace the rates of that partner's outbound
    service in force (see :func:`with_decks`).

    On columns, in one pass: the supplier of each record (its own, else the LCR's first choice)
    as dictionary codes; every costed record priced at once by the batch executor's kernels
    (:func:`icdsl.rating.batch.rate_units`: no rated table is built, the amounts come back as
    integers); costs and revenues scaled to 10^-9 and converted per (currency, day); the texts
    (supplier, supplier prefix, rule) as categoricals of their few distinct values."""
    notes: list[str] = []
    if decks:
        plan = with_decks(plan, policy, decks)
    tables: dict[date, LcrTable | LcrError] = {}
    # in slices of CHUNK records: the arrays of a slice are reused by the allocator, where arrays
    # of 10M records would each be fresh pages (system time) and several GiB at once
    frames = [_margins_of(plan, records.slice(at, CHUNK), policy, notes, tables)
              for at in range(0, records.num_rows, CHUNK)] or [_margins_of(plan, records, policy, notes, tables)]
    frame = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    _fallback_note(int(frame["from_fallback"].sum()), notes)
    return Margins(policy.currency, frame, list(dict.fromkeys(notes)))


def _fallback_note(fell: int, notes: list[str]) -> None:
    if fell:
        notes.append(f"{fell} record(s) costed from a supplier's fallback price list (from_fallback): their "
                     "number has no row in the supplier's own deck")


CHUNK = 1_000_000


def streamed_margins(plan: Plan, batches: Iterable[pa.Table], policy: LcrPolicy, first: date, last: date,
                     decks: dict[str, object] | None = None, sink: Callable[[pl.DataFrame], None] | None = None,
                     keys: Sequence[str] = BY) -> tuple[Summary, Summary | None]:
    """:func:`margins` of the sold records of ``batches`` (of :func:`sold_batches`) whose start
    falls from ``first`` to ``last``, batch by batch, as sums (:class:`Summary`): the records of
    one batch at a time are in memory, never all. With ``decks``, the what-if's too (the same
    batches costed twice). ``sink`` receives each batch's records (of the what-if when there is
    one: the records shown). ``keys``: the reports kept (by destination always)."""
    now = Summary(policy.currency, tuple(keys))
    after = Summary(policy.currency, tuple(keys)) if decks else None
    plan_after = with_decks(plan, policy, decks) if decks else None
    tables: dict[date, LcrTable | LcrError] = {}
    tables_after: dict[date, LcrTable | LcrError] = {}
    for batch in batches:
        batch = in_period(batch, first, last)
        for at in range(0, max(batch.num_rows, 1), CHUNK):
            part = batch.slice(at, CHUNK)
            frame = _margins_of(plan, part, policy, now.notes, tables)
            now.add(frame)
            if after is not None:
                frame = _margins_of(plan_after, part, policy, after.notes, tables_after)
                after.add(frame)
            if sink is not None:
                sink(frame)
    for s in (now, after):
        if s is not None:
            _fallback_note(s.fallback, s.notes)
            s.notes = list(dict.fromkeys(s.notes))
    return now, after


BATCH = 500_000  # records read at a time from the rated and the traffic files


def sold_batches(rated: Path, traffic: Path | None = None, size: int = BATCH) -> Iterator[pa.Table]:
    """The sold records of a rated file (Parquet or CSV) of ``icdsl rate``, with the called
    number and supplier of the traffic file they were rated from (:func:`sold`), ``size``
    records at a time: only the columns margins read (:data:`RATED_COLUMNS`,
    :data:`TRAFFIC_COLUMNS`), a Parquet file one row group after the other.

    While a batch of the rated file has the ids of the traffic rows at the same positions (the
    rated file of the traffic, in its order), it takes those rows: both files are read side by
    side, in the memory of a batch. From the first batch out of step (ids in another order,
    records missing on either side), the traffic's ``id`` and joined columns are read whole and
    each rated batch takes the row of each of its ids (the first of a repeated id), as
    :func:`sold` joins: memory then grows with the traffic file (its few columns), not with the
    rated file.
    A file that cannot be read is a :class:`MarginError` naming it."""
    rated_names = _names(rated, "rated records")
    _sold_only(pa.table({c: pa.array([], pa.string()) for c in rated_names}), keep_all=True)  # its columns
    traffic_names = _names(traffic, "traffic file") if traffic is not None else []
    if traffic is not None and "id" not in traffic_names:
        raise MarginError("the traffic file has no 'id' column to join with the rated records")
    extra = [c for c in TRAFFIC_COLUMNS if c != "id" and c in traffic_names and c not in rated_names]
    if traffic is None or not extra:
        for batch in _file_batches(rated, "rated records", RATED_COLUMNS, size):
            yield _sold_only(batch)
        return
    side: _Rows | None = _Rows(_file_batches(traffic, "traffic file", ("id", *extra), size))
    index: _TrafficIndex | None = None
    for batch in _file_batches(rated, "rated records", RATED_COLUMNS, size):
        if not batch.num_rows:
            yield _with_columns(_sold_only(batch), pa.table({c: pa.array([], pa.string()) for c in extra}), extra)
            continue
        if side is not None:
            other = side.take(batch.num_rows)
            if other.num_rows == batch.num_rows and _same_ids(batch.column("id"), other.column("id")):
                yield _with_columns(_sold_only(batch, keep_all=True), other, extra,
                                    batch.column("direction") if "direction" in batch.column_names else None)
                continue
            side = None  # out of step from here: by id
            index = _TrafficIndex(_whole(traffic, "traffic file", ("id", *extra)), extra)
        batch = _sold_only(batch)
        yield _with_columns(batch, index.take(batch.column("id")), extra)


class _Rows:
    """Tables of a stream, taken ``n`` rows at a time whatever their own sizes."""

    def __init__(self, tables: Iterator[pa.Table]):
        self._tables = tables
        self._held: list[pa.Table] = []
        self._rows = 0

    def take(self, n: int) -> pa.Table:
        while self._rows < n:
            t = next(self._tables, None)
            if t is None:
                break
            self._held.append(t)
            self._rows += t.num_rows
        if not self._held:
            return pa.table({})
        whole = pa.concat_tables(self._held) if len(self._held) > 1 else self._held[0]
        out, rest = whole.slice(0, n), whole.slice(n)
        self._held = [rest] if rest.num_rows else []
        self._rows = rest.num_rows
        return out


def _names(path: Path, what: str) -> list[str]:
    try:
        if path.suffix.lower() == ".parquet":
            return pq.ParquetFile(path).schema_arrow.names
        return _csv(path).column_names
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        raise MarginError(f"cannot read the {what} {path}: {str(e).splitlines()[0]}") from None


def _csv(path: Path) -> pa.Table:
    """A CSV file's records: numbers and ids as text, amounts as exact decimals (never float)."""
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={"id": pa.string(), "b_number": pa.string(), "a_number": pa.string(),
                      "amount": pa.decimal128(38, 9)}))


def _file_batches(path: Path, what: str, columns: Sequence[str], size: int) -> Iterator[pa.Table]:
    """``columns`` (those the file has) of a Parquet file, ``size`` rows at a time, one row
    group after the other (iterating the whole file at once keeps the bytes of every row group
    read so far); a CSV file is read whole, then sliced. At least one (maybe empty) table."""
    try:
        if path.suffix.lower() != ".parquet":
            whole = _csv(path)
            for at in range(0, max(whole.num_rows, 1), size):
                yield whole.slice(at, size)
            return
        pf = pq.ParquetFile(path)
        names = [c for c in pf.schema_arrow.names if c in columns]
        schema = pa.schema([pf.schema_arrow.field(c) for c in names])
        yielded = False
        for g in range(pf.metadata.num_row_groups):
            for b in pf.iter_batches(batch_size=size, row_groups=[g], columns=names):
                yielded = True
                yield pa.Table.from_batches([b])
        if not yielded:
            yield schema.empty_table()
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        raise MarginError(f"cannot read the {what} {path}: {str(e).splitlines()[0]}") from None


def _whole(path: Path, what: str, columns: Sequence[str]) -> pa.Table:
    parts = list(_file_batches(path, what, columns, BATCH * 4))
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _margins_of(plan: Plan, records: pa.Table, policy: LcrPolicy, notes: list[str],
                tables: dict[date, LcrTable | LcrError]) -> pl.DataFrame:
    """:func:`margins`' records of one slice of the sold records."""
    n = records.num_rows
    number_arr, prefix = _numbers(records, notes)
    supplier = _suppliers(records)  # dictionary: codes into the supplier names (null: not said)
    start = pl.from_arrow(records.column("start"))
    if start.dtype == pl.Utf8:
        start = start.str.to_datetime(time_zone="UTC")
    days = start.dt.convert_time_zone("UTC").dt.date() if start.dtype.time_zone else start.dt.date()
    band = _cat(records, "band")
    band = band if band is not None else pl.Series([""] * n, dtype=pl.Utf8).cast(pl.Categorical)
    names = supplier.dictionary.to_pylist()
    codes = supplier.indices.to_numpy(zero_copy_only=False)
    codes = np.where(supplier.indices.is_null().to_numpy(zero_copy_only=False), -1, codes).astype(np.int32) \
        if supplier.null_count else codes.astype(np.int32)
    by_lcr = codes < 0
    if by_lcr.any():
        gaps = np.flatnonzero(by_lcr)
        got, chosen = lcr_codes(plan, policy, pl.from_arrow(number_arr.take(pa.array(gaps))), start.gather(gaps),
                                days.gather(gaps), band.gather(gaps), notes, tables)
        extra = [c for c in chosen if c not in names]
        names = names + extra
        remap = np.array([names.index(c) for c in chosen] + [-1], dtype=np.int32)
        codes[gaps] = remap[got]  # -1 (no route) takes the last slot: -1
    has = codes >= 0
    supplier_arr = _dict_array(codes, names)

    cost_n = np.zeros(n, dtype=np.int64)
    costed = np.zeros(n, dtype=bool)
    prefix_codes = np.full(n, -1, dtype=np.int32)
    rule_codes = np.full(n, -1, dtype=np.int32)
    prefix_names: list[str] = []
    rule_names: list[str] = []
    why = pl.Series("uncosted", [None], dtype=pl.Utf8).extend_constant(None, n - 1) if n \
        else pl.Series("uncosted", [], dtype=pl.Utf8)
    if not has.all():
        why = why.scatter(np.flatnonzero(~has), "no supplier: the record names none and the LCR table has no "
                                                 "route for its number")
    cur_codes = np.full(n, -1, dtype=np.int32)
    cur_names: list[str] = []
    from_fallback = np.zeros(n, dtype=bool)
    if has.any():
        u = rate_units(plan, _cost_table(records, supplier_arr, number_arr), skip=None if has.all() else ~has)
        at = slice(None)
        ok = u.ok
        cost_n[at] = _scaled_units(u)
        costed[at] = ok
        # the groups' texts merged into one dictionary each, then indexed by code (never per record)
        g = u.group.astype(np.int64)
        row = np.maximum(u.row, 0).astype(np.int64)
        gi = np.maximum(g, 0)
        cur_names = sorted({x.currency for x in u.groups})
        cur_of = np.array([cur_names.index(x.currency) for x in u.groups] or [0], dtype=np.int32)
        cur_codes[at] = np.where(ok, cur_of[gi], -1)
        p_off, p_map, prefix_names = _merged([x.prefixes for x in u.groups])
        prefix_codes[at] = np.where(ok, p_map[p_off[gi] + row], -1) if len(p_map) else -1
        r_off, r_map, rule_names = _merged([x.rules for x in u.groups])
        rule_of = [x.rule_code for x in u.groups]
        if len(r_map):
            flat = np.concatenate(rule_of)
            f_off = np.concatenate([[0], np.cumsum([len(c) for c in rule_of])[:-1]]).astype(np.int64)
            rule_codes[at] = np.where(ok, r_map[r_off[gi] + flat[f_off[gi] + row]], -1)
        cut = np.array([x.fallback_at if x.fallback_at is not None else np.iinfo(np.int32).max
                        for x in u.groups] or [0], dtype=np.int64)
        from_fallback[at] = ok & (u.row >= cut[gi])
        if u.rejects.num_rows:
            rj = pl.from_arrow(u.rejects.column("id")).cast(pl.Int64).to_numpy()
            why = why.scatter(rj, _text(u.rejects, "reason") + ": " + _text(u.rejects, "detail"))
    day_codes = days.to_physical().to_numpy()
    revenue = _convert(nano(records.column("amount")), *_currency_codes(records), day_codes, plan, policy)
    cost = _convert(cost_n, cur_codes, cur_names, day_codes, plan, policy)
    cost_s = pl.Series("cost_n", cost).set(pl.Series(~costed), None)
    how = _dict_array(np.where(has & by_lcr, 0, np.where(has, 1, 0)).astype(np.int32), [LCR, RECORD])
    frame = pl.DataFrame({
        "id": _text(records, "id"), "partner": _cat(records, "partner"), "service": _cat(records, "service"),
        "day": days,
        "destination": _cat(records, "destination") if "destination" in records.column_names
        else prefix.cast(pl.Categorical),
        "prefix": prefix.cast(pl.Categorical) if prefix is not None else pl.from_arrow(number_arr),
        "band": band, "number": pl.from_arrow(number_arr),
        "duration_s": pl.from_arrow(records.column("duration_s")).cast(pl.Int64),
        "supplier": pl.from_arrow(supplier_arr), "chosen_by": pl.from_arrow(how),
        "supplier_prefix": pl.from_arrow(_dict_array(prefix_codes, prefix_names)),
        "from_fallback": from_fallback,
        "cost_rule": pl.from_arrow(_dict_array(rule_codes, rule_names)),
        "revenue_n": revenue, "cost_n": cost_s, "uncosted": why,
    }).with_columns((pl.col("revenue_n") - pl.col("cost_n").fill_null(0)).alias("margin_n"))
    return frame


def _numbers(records: pa.Table, notes: list[str]) -> tuple[pa.Array, pl.Series | None]:
    """The called number of each record (its b_number, else its sold prefix) as an Arrow string
    array, and the sold prefix."""
    prefix = _cat(records, "prefix")
    if "b_number" not in records.column_names:
        if prefix is None:
            raise MarginError("the records have neither a called number (b_number) nor a sold prefix")
        notes.append("the records do not carry the called number: each is costed by its sold prefix "
                     "(join the traffic file with --cdrs for longest-prefix costing on the number)")
        return prefix.cast(pl.Utf8).to_arrow().cast(pa.large_string()), prefix
    col = records.column("b_number")
    col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    if col.null_count and prefix is not None:
        col = pc.coalesce(col, prefix.cast(pl.Utf8).to_arrow().cast(col.type))
    return col, prefix


def _suppliers(records: pa.Table) -> pa.DictionaryArray:
    """The supplier each record names (the first of :data:`SUPPLIER_COLUMNS`) as a dictionary
    array without empty texts: "" and missing are null."""
    name = next((c for c in SUPPLIER_COLUMNS if c in records.column_names), None)
    n = records.num_rows
    if name is None:
        return pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string()))
    col = records.column(name)
    col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col.cast(pa.string()) if not pa.types.is_string(col.type) else col)
    values = col.dictionary.cast(pa.string())
    idx = col.indices.to_numpy(zero_copy_only=False).astype(np.int64) if len(col) else np.zeros(0, np.int64)
    idx = np.where(col.indices.is_null().to_numpy(zero_copy_only=False), -1, idx) if col.null_count else idx
    empty = np.asarray(pc.equal(values, "").fill_null(True).to_numpy(zero_copy_only=False), dtype=bool) \
        if len(values) else np.zeros(0, dtype=bool)
    keep = np.flatnonzero(~empty)
    remap = np.full(len(values) + 1, -1, dtype=np.int32)  # the last slot: null
    remap[keep] = np.arange(len(keep), dtype=np.int32)
    return _dict_array(remap[idx], values.take(pa.array(keep)).to_pylist())


def _dict_array(codes: np.ndarray, names: Sequence[str]) -> pa.DictionaryArray:
    """A dictionary array of ``names`` from int32 codes (-1: null)."""
    codes = np.asarray(codes, dtype=np.int32)
    null = codes < 0
    return pa.DictionaryArray.from_arrays(pa.array(np.where(null, 0, codes), mask=null if null.any() else None),
                                          pa.array(list(names), type=pa.string()))


def _merged(dicts: Sequence[pa.Array]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Several groups' dictionaries as one: (offset of each group's codes, map from a group's
    offset code to the merged code, the merged values)."""
    if not dicts:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), []
    both = pa.concat_arrays([d.cast(pa.string()) for d in dicts])
    enc = pc.dictionary_encode(both)
    off = np.concatenate([[0], np.cumsum([len(d) for d in dicts])[:-1]]).astype(np.int64)
    return off, enc.indices.to_numpy(zero_copy_only=False).astype(np.int32), enc.dictionary.to_pylist()


def _cost_table(records: pa.Table, supplier: pa.DictionaryArray, number: pa.Array) -> pa.Table:
    """The records as outbound calls of their supplier, for the rater (no column copied)."""
    m = records.num_rows
    cols = {"id": pa.array(np.arange(m, dtype=np.int64)),  # the position: the costs come back by it
            "partner": supplier,
            "direction": pa.DictionaryArray.from_arrays(pa.array(np.zeros(m, dtype=np.int32)),
                                                        pa.array(["outbound"])),
            "service": records.column("service"), "b_number": number,
            "start": records.column("start"), "duration_s": records.column("duration_s")}
    if "a_number" in records.column_names:
        cols["a_number"] = records.column("a_number")
    return pa.table(cols)


def _scaled_units(u: Units) -> np.ndarray:
    """The amounts of ``u`` in 10^-9 of their currency (exact; an error beyond int64)."""
    if not u.groups:
        return np.zeros(len(u.amount), dtype=np.int64)
    precs = np.array([x.precision for x in u.groups], dtype=np.int64)
    if (precs > 9).any():
        raise MarginError(f"amounts with {int(precs.max())} decimals: at most 9 are supported")
    factor = (10 ** (9 - precs))[np.maximum(u.group, 0)]
    amount = np.where(u.ok, u.amount, 0)
    if (np.abs(amount) > np.iinfo(np.int64).max // factor).any():
        raise MarginError("an amount beyond 9,223,372,036 units cannot be reported")
    return amount * factor


def _currency_codes(records: pa.Table) -> tuple[np.ndarray, list[str]]:
    col = records.column("currency")
    col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col.cast(pa.string()))
    idx = col.indices.to_numpy(zero_copy_only=False)
    if col.null_count:
        idx = np.where(col.indices.is_null().to_numpy(zero_copy_only=False), -1, idx)
    return np.asarray(idx, dtype=np.int32), col.dictionary.cast(pa.string()).to_pylist()


def _convert(values: np.ndarray, codes: np.ndarray, names: Sequence[str], days: np.ndarray, plan: Plan,
             policy: LcrPolicy) -> np.ndarray:
    """Each amount into the policy's currency at the rate in force on its day (exact, half even);
    ``codes`` index ``names`` (-1: none), ``days`` are days since 1970-01-01."""
    foreign = [i for i, c in enumerate(names) if c != policy.currency]
    if not foreign:
        return values
    out = values.copy()
    for i in foreign:
        mine = np.flatnonzero(codes == i)
        if not len(mine):
            continue
        for d in np.unique(days[mine]).tolist():
            at = mine[days[mine] == d]
            try:
                factor, _ = fx_factor(plan, policy, names[i], date.fromordinal(EPOCH + int(d)))
            except LcrError as e:
                raise MarginError(str(e)) from None
            neg = values[at] < 0
            mag = convert(np.abs(values[at]), Fraction(factor))
            out[at] = np.where(neg, -mag, mag)
    return out


EPOCH = date(1970, 1, 1).toordinal()


def with_decks(plan: Plan, policy: LcrPolicy, decks: dict[str, object]) -> Plan:
    """``plan`` with the rates of each named partner's outbound service (of ``policy.service``)
    replaced by a new deck (a ``RateTable``), in every agreement version of that partner that has
    the service: the what-if of a deck before it is signed."""
    agreements = list(plan.agreements)
    for code, rates in decks.items():
        hit = False
        for i, a in enumerate(agreements):
            if a.partner != code:
                continue
            services = list(a.services)
            for j, sp in enumerate(services):
                if sp.direction == "outbound" and sp.service == policy.service:
                    services[j] = replace(sp, rates=rates)
                    hit = True
            agreements[i] = replace(a, services=tuple(services))
        if not hit:
            raise MarginError(f"--supplier-deck {code}: no agreement with {code} has an outbound {policy.service} "
                              "service whose deck could be replaced")
    return replace(plan, agreements=tuple(agreements))


def read_supplier_deck(plan: Plan, policy: LcrPolicy, code: str, path: Path) -> RateTable:
    """A supplier's new deck (CSV, the columns of any deck: prefix, destination, rate or band
    prices, connect, increments, from, until), read as hostile input by the deck reader of the
    rule files, priced in the currency and unit of the partner's outbound service it replaces.
    Every problem is a :class:`MarginError` naming the deck's line and how to fix it."""
    current = [(a, sp) for a in plan.agreements if a.partner == code for sp in a.services
               if sp.direction == "outbound" and sp.service == policy.service]
    if not current:
        known = sorted({a.partner for a in plan.agreements
                        if any(sp.direction == "outbound" for sp in a.services)})
        raise MarginError(f"--supplier-deck {code}: no agreement with {code} has an outbound {policy.service} service"
                          f" (suppliers: {', '.join(known) or 'none'})")
    a, sp = current[-1]
    shown = str(path)
    deck, diags = read_deck(path, shown, (), None, Span(shown, 1, 1, 1, 1))
    errors = [d for d in diags if d.is_error]
    if deck is None or errors:
        lines = [f"{d.span.file}:{d.span.line}:{d.span.col}: {d.message}" + (f"\n  help: {d.help}" if d.help else "")
                 for d in errors[:10]]
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise MarginError(f"the deck {shown} cannot be read:\n" + "\n".join(lines) + more)
    bands = set(calendar_bands(sp.calendar)) if sp.calendar is not None else set()
    used = set(deck.bands) if deck.columns is None else {b for b, _ in deck.columns.bands}
    stray = sorted(used - bands)
    if stray:
        raise MarginError(f"{shown}:1:1: band(s) {', '.join(stray)} are not bands of {code}'s outbound "
                          f"{policy.service} ({', '.join(sorted(bands)) or 'no calendar'})\n"
                          "  help: name the columns after the bands of the supplier's calendar, or give one rate")
    if deck.columns is not None:
        if deck.columns.origins:
            raise MarginError(f"{shown}:1:1: a deck keyed by origin cannot be tried with --supplier-deck\n"
                              "  help: reference it from the agreement and use the rule files' what-if")
        rows = deck.columns
    else:
        rows = tuple(RateRow(
            prefix=r.prefix, destination=r.destination,
            prices=((("*", r.price),) if r.price is not None else ()) + tuple(r.band_prices),
            connect_fee=r.connect, increments=Increments(*r.increments) if r.increments else None,
            effective_from=date.fromisoformat(r.start) if r.start else None,
            effective_to=date.fromisoformat(r.until) if r.until else None, span=r.span)
            for r in deck.rows)
        if any(r.origin for r in deck.rows):
            raise MarginError(f"{shown}:1:1: a deck keyed by origin cannot be tried with --supplier-deck")
    base = sp.rates
    return RateTable(rows, base.currency if base else sp.currency, base.unit if base else sp.unit, shown,
                     deck.sha256, Span(shown, 1, 1, 1, 1))


def compare(before: Margins, after: Margins) -> pl.DataFrame:
    """Per destination: the cost and margin now and with the new deck, and the difference."""
    a = before.report("destination").select("destination", "records", pl.col("cost_n").alias("cost_before_n"),
                                            pl.col("margin_n").alias("margin_before_n"))
    b = after.report("destination").select("destination", pl.col("cost_n").alias("cost_after_n"),
                                           pl.col("margin_n").alias("margin_after_n"))
    return a.join(b, on="destination", how="full", coalesce=True).with_columns(
        (pl.col("margin_after_n") - pl.col("margin_before_n")).alias("difference_n")).sort("destination")


def in_period(records: pa.Table, first: date, last: date) -> pa.Table:
    """The records whose start falls on a UTC day from ``first`` to ``last``."""
    if records.num_rows == 0:
        return records
    start = pl.from_arrow(records.column("start"))
    if start.dtype == pl.Utf8:
        start = start.str.to_datetime(time_zone="UTC")
    day = start.dt.convert_time_zone("UTC").dt.date() if start.dtype.time_zone else start.dt.date()
    keep = ((day >= first) & (day <= last)).fill_null(False)
    if keep.all():
        return records  # a period file of the period: not copied
    return records.filter(pa.array(keep.to_numpy()))


def to_text(report: pl.DataFrame, totals: dict[str, int], currency: str, findings: list[Finding],
            whatif: pl.DataFrame | None, period: str, by: str, decks: Sequence[str] = ()) -> str:
    """The report as aligned text: the rows, the totals, the what-if and the findings."""
    def table(frame: pl.DataFrame) -> list[str]:
        """Columns padded to their widest cell, numbers (a digit or '-' first) to the right; on
        columns (a report by destination has tens of thousands of rows)."""
        cols = frame.columns
        cells = frame.select(pl.col(c).cast(pl.Utf8).fill_null("") for c in cols)
        width = [max(len(c), int(cells[c].str.len_chars().max() or 0)) for c in cols]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, width, strict=True)).rstrip()]
        if cells.height:
            padded = [pl.when(pl.col(c).str.contains(r"^[0-9-]")).then(pl.col(c).str.pad_start(w))
                      .otherwise(pl.col(c).str.pad_end(w)) for c, w in zip(cols, width, strict=True)]
            lines += cells.select(pl.concat_str(padded, separator="  ").str.strip_chars_end(" ").alias("x"))["x"] \
                .to_list()
        return lines

    out = [f"margins {period} by {by}, in {currency}"]
    out += table(report.drop("currency"))
    out.append(f"total: {totals['records']} records, revenue {money_text(totals['revenue_n'])}, cost "
               f"{money_text(totals['cost_n'])}, margin {money_text(totals['margin_n'])} {currency}"
               + (f" ({totals['uncosted']} uncosted)" if totals["uncosted"] else ""))
    if whatif is not None:
        out.append(f"what-if with {', '.join(decks)}: margin per destination, now and with the new deck(s)")
        out += table(whatif)
    for f in findings:
        out.append(f.text(currency))
    return "\n".join(out) + "\n"


def money_columns(frame: pl.DataFrame, names: Sequence[str] | None = None,
                  places: dict[str, int] | None = None) -> pl.DataFrame:
    """The ``*_n`` columns as decimal texts (6 places when exact at 6, else 9; ``places``: given
    per column), renamed without ``_n``."""
    names = set(names or [c for c in frame.columns if c.endswith("_n")])
    out = []
    for c in frame.columns:
        if c not in names:
            out.append(pl.col(c))
            continue
        out.append(money_col(c, places[c] if places and c in places else _places(frame[c])).alias(c[:-2]))
    return frame.select(out)


def _places(values: pl.Series) -> int:
    return 6 if (values.drop_nulls() % 1000 == 0).all() else 9


class RecordsFile:
    """Every record's margins (:attr:`Margins.records`, money as :func:`money_columns`) written to
    a Parquet or CSV file batch by batch: the batches wait on disk (Arrow IPC, in a temporary
    folder) until the last has said how many places each money column needs, then are written
    one at a time. Used as a ``sink`` of :func:`streamed_margins`; :meth:`finish` writes."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = 0
        self._folder = Path(tempfile.mkdtemp(prefix="icdsl-margin-"))
        self._parts: list[Path] = []
        self._places: dict[str, int] = {}

    def __call__(self, frame: pl.DataFrame) -> None:
        for c in frame.columns:
            if c.endswith("_n"):
                self._places[c] = max(self._places.get(c, 6), _places(frame[c]))
        part = self._folder / f"{len(self._parts):05d}.arrow"
        frame.write_ipc(part)
        self._parts.append(part)
        self.rows += frame.height

    def finish(self) -> int:
        """Write the file; the number of records written."""
        try:
            writer = None
            with open(self.path, "wb") as out:
                for i, part in enumerate(self._parts):
                    frame = money_columns(pl.read_ipc(part), places=self._places)
                    if self.path.suffix.lower() != ".parquet":
                        frame.write_csv(out, include_header=i == 0)
                        continue
                    table = frame.to_arrow()
                    if writer is None:
                        writer = pq.ParquetWriter(out, table.schema, compression="zstd")
                    writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
                if writer is not None:
                    writer.close()
            return self.rows
        finally:
            self.close()

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


__all__ = ["BY", "RATED_COLUMNS", "TRAFFIC_COLUMNS", "Finding", "MarginError", "Margins", "RecordsFile", "Summary", "SUPPLIER_COLUMNS", "compare", "in_period", "lcr_choice", "margins",
           "money_columns", "money_text", "nano", "read_supplier_deck", "sold", "sold_batches", "streamed_margins", "to_text", "with_decks"]
