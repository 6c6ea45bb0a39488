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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from icdsl.lang.decks import read_deck
from icdsl.plan.model import Increments, LcrPolicy, Plan, RateRow, RateTable, Span
from icdsl.rating.batch import rate_batch
from icdsl.rating.calendar import book, calendar_bands
from icdsl.routing.lcr import (
    LcrError,
    build_table,
    convert,
    fx_factor,
    longest_match,
    money_col,
    money_text,
)

SUPPLIER_COLUMNS = ("to_partner", "supplier", "route", "out_trunk")  # to_partner: a transit record's terminating side
SOLD_DIRECTIONS = ("inbound", "transit")
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
        key = {"destination": ["destination"], "day": ["day"], "partner": ["partner"], "supplier": ["supplier"]}[by]
        r = self.records
        return (r.group_by(key).agg(
            pl.len().alias("records"), pl.col("duration_s").sum().alias("seconds"),
            pl.col("revenue_n").sum().alias("revenue_n"), pl.col("cost_n").sum().alias("cost_n"),
            pl.col("cost_n").is_null().sum().alias("uncosted"),
            pl.col("margin_n").sum().alias("margin_n"))
            .sort(key))

    def totals(self) -> dict[str, int]:
        r = self.records
        return {"records": r.height, "revenue_n": int(r["revenue_n"].sum() or 0),
                "cost_n": int(r["cost_n"].sum() or 0), "margin_n": int(r["margin_n"].sum() or 0),
                "uncosted": int(r["cost_n"].is_null().sum())}

    def findings(self) -> list[Finding]:
        out = []
        dest = self.report("destination").filter(pl.col("margin_n") < 0).sort("margin_n")
        for row in dest.iter_rows(named=True):
            out.append(Finding(
                "negative-margin", row["destination"] or "(no destination)", row["margin_n"], row["records"],
                f"costs {money_text(row['cost_n'])} against a revenue of {money_text(row['revenue_n'])} "
                f"{self.currency}",
                "route it to a cheaper supplier (icdsl lcr), renegotiate the supplier's deck (what-if with "
                "--supplier-deck) or raise the sell price of this destination"))
        un = self.records.filter(pl.col("cost_n").is_null())
        if un.height:
            for row in un.group_by("supplier", "uncosted").agg(pl.len().alias("n")).sort("n", descending=True) \
                    .iter_rows(named=True):
                out.append(Finding(
                    "uncosted", row["supplier"] or "(no supplier)", row["n"], row["n"], row["uncosted"] or "",
                    "give the supplier an outbound agreement in force for these calls, or correct the "
                    "records' supplier column; their margin counts the revenue only"))
        return out


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


def _convert_col(values: np.ndarray, currencies: pl.Series, days: pl.Series, plan: Plan,
                 policy: LcrPolicy) -> np.ndarray:
    """Each amount into the policy's currency at the rate in force on its day (exact, half even)."""
    out = values.copy()
    frame = pl.DataFrame({"c": currencies, "d": days})
    other = frame.filter(pl.col("c").is_not_null() & (pl.col("c") != policy.currency))
    for c, d in other.unique().iter_rows():
        try:
            factor, _ = fx_factor(plan, policy, c, d)
        except LcrError as e:
            raise MarginError(str(e)) from None
        sel = np.nonzero(((currencies == c) & (days == d)).fill_null(False).to_numpy())[0]
        neg = values[sel] < 0
        mag = convert(np.abs(values[sel]), Fraction(factor))
        out[sel] = np.where(neg, -mag, mag)
    return out


# --------------------------------------------------------------------------- the LCR choice


def lcr_choice(plan: Plan, policy: LcrPolicy, numbers: pl.Series, starts: pl.Series, days: pl.Series,
               bands: pl.Series, notes: list[str]) -> pl.Series:
    """The first-ranked supplier of the LCR table of each record's day for its number (longest
    table prefix with a route in the record's band) and band; null where the table has no route.
    On columns: one table per stretch of days, and each band's first choices found by one sorted
    lookup per prefix length (:func:`icdsl.routing.lcr.longest_match`)."""
    out = np.full(len(numbers), None, dtype=object)
    frame = pl.DataFrame({"n": numbers, "t": starts, "d": days, "b": bands}).with_row_index("i")
    cuts = change_days(plan)
    seg = pl.Series("g", np.searchsorted(np.asarray(cuts, dtype="datetime64[D]"),
                                         frame["d"].to_numpy().astype("datetime64[D]"), side="right"))
    frame = frame.with_columns(seg)
    for (group, day) in frame.group_by("g").agg(pl.col("d").min()).sort("g").iter_rows():
        part = frame.filter(pl.col("g") == group)
        try:  # the same table on every day of the segment
            table = build_table(plan, policy, day)
        except LcrError as e:
            notes.append(f"{day}: no LCR table ({str(e).splitlines()[0]}): its records without a supplier "
                         "are uncosted")
            continue
        first = table.routes.filter(pl.col("rank") == 1).sort("supplier").unique(
            ["prefix", "band"], keep="first").select("prefix", "band", "supplier")
        part = _bands_of(plan, table.bands, part, notes)
        for (band,), routes in first.partition_by("band", as_dict=True).items():
            mine = part.filter(pl.col("b") == band)
            if not mine.height:
                continue
            hit = longest_match(mine["n"], routes["prefix"])
            found = hit >= 0
            out[mine["i"].to_numpy()[found]] = routes["supplier"].to_numpy()[hit[found]]
    return pl.Series("supplier", out, dtype=pl.Utf8)


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
    minute = pl.col("t").dt.truncate("1m")
    mins = part.filter(~known).select(minute.alias("m")).unique()
    table = mins.with_columns(pl.Series("cb", [bb.piece_at(bb.local(m)).band for m in mins["m"].to_list()],
                                        dtype=pl.Utf8))
    return part.with_columns(minute.alias("m")).join(table, on="m", how="left", maintain_order="left") \
        .with_columns(pl.when(known).then(pl.col("b")).otherwise(pl.col("cb")).alias("b")).drop("m", "cb")


# --------------------------------------------------------------------------- the margins


def _text(table: pa.Table, name: str) -> pl.Series | None:
    if name not in table.column_names:
        return None
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    return pl.from_arrow(col).cast(pl.Utf8)


def _spread(col: pa.ChunkedArray | pa.Array, at: np.ndarray, n: int) -> pl.Series:
    """A text column of ``n`` rows: ``col``'s values at positions ``at``, null elsewhere; built on
    the dictionary's codes (the batch executor's text columns are dictionaries), never per row."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    if not pa.types.is_dictionary(col.type):
        col = col.cast(pa.string()).dictionary_encode()
    codes = np.full(n, -1, dtype=np.int32)
    codes[at] = col.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    arr = pa.DictionaryArray.from_arrays(pa.array(np.maximum(codes, 0), mask=codes < 0),
                                         col.dictionary.cast(pa.string()))
    return pl.from_arrow(arr)  # Categorical: the texts once per distinct value


def sold(rated: pa.Table, traffic: pa.Table | None = None) -> pa.Table:
    """The sold records of a rated table (directions :data:`SOLD_DIRECTIONS`), with the called
    number and supplier of ``traffic`` joined by ``id`` when given."""
    missing = [c for c in ("id", "partner", "service", "amount", "currency", "start", "duration_s")
               if c not in rated.column_names]
    if missing:
        raise MarginError(f"the rated records lack the column(s) {', '.join(missing)}: give the rated file of "
                          "'icdsl rate' or of a cycle")
    if "direction" in rated.column_names:
        direction = pl.from_arrow(rated.column("direction")).cast(pl.Utf8)
        keep = direction.is_in(list(SOLD_DIRECTIONS)).fill_null(False)
        if not keep.all():
            rated = rated.filter(pa.array(keep.to_numpy()))
    if traffic is None:
        return rated
    if "id" not in traffic.column_names:
        raise MarginError("the traffic file has no 'id' column to join with the rated records")
    extra = [c for c in ("b_number", "a_number", *SUPPLIER_COLUMNS) if c in traffic.column_names
             and c not in rated.column_names]
    if not extra:
        return rated
    # the traffic row of each rated record, by id (the first of a repeated id), then its columns taken
    left_id = pl.from_arrow(rated.column("id")).cast(pl.Utf8)
    right_id = pl.from_arrow(traffic.column("id")).cast(pl.Utf8)
    if len(left_id) == len(right_id) and (left_id == right_id).all() and right_id.is_unique().all():
        taken = traffic.select(extra)  # the rated file is the traffic in its order: nothing to look up
    else:
        right = pl.DataFrame({"id": right_id}).with_row_index("_row").unique("id", keep="first")
        rows = pl.DataFrame({"id": left_id}).join(right, on="id", how="left", maintain_order="left")["_row"]
        taken = traffic.select(extra).take(pa.array(rows.to_arrow()))
    for c in extra:
        col = taken.column(c)
        rated = rated.append_column(c, col.cast(pa.string()) if not pa.types.is_string(col.type) else col)
    return rated


def margins(plan: Plan, records: pa.Table, policy: LcrPolicy,
            decks: dict[str, object] | None = None) -> Margins:
    """The margin of every sold record of ``records`` (see the module's docs). ``decks``: what-if
    supplier decks ({partner: rate table}) that replace the rates of that partner's outbound
    service in force (see :func:`with_decks`)."""
    notes: list[str] = []
    if decks:
        plan = with_decks(plan, policy, decks)
    n = records.num_rows
    ids = _text(records, "id")
    partner = _text(records, "partner")
    service = _text(records, "service")
    number = _text(records, "b_number")
    prefix = _text(records, "prefix")
    if number is None:
        if prefix is None:
            raise MarginError("the records have neither a called number (b_number) nor a sold prefix")
        notes.append("the records do not carry the called number: each is costed by its sold prefix "
                     "(join the traffic file with --cdrs for longest-prefix costing on the number)")
        number = prefix
    elif prefix is not None:
        number = pl.select(pl.coalesce(number, prefix)).to_series()
    sup_col = next((c for c in SUPPLIER_COLUMNS if c in records.column_names), None)
    supplier = _text(records, sup_col) if sup_col else pl.Series([None] * n, dtype=pl.Utf8)
    supplier = supplier.replace("", None)
    start = pl.from_arrow(records.column("start"))
    if start.dtype == pl.Utf8:
        start = start.str.to_datetime(time_zone="UTC")
    days = start.dt.convert_time_zone("UTC").dt.date() if start.dtype.time_zone else start.dt.date()
    band = _text(records, "band")
    band = band if band is not None else pl.Series([""] * n, dtype=pl.Utf8)
    how = pl.select(pl.when(supplier.is_null()).then(pl.lit(LCR)).otherwise(pl.lit(RECORD))).to_series()
    if supplier.null_count():
        gaps = np.nonzero(supplier.is_null().to_numpy())[0]
        chosen = lcr_choice(plan, policy, number.gather(gaps), start.gather(gaps), days.gather(gaps),
                            band.gather(gaps), notes)
        supplier = supplier.scatter(gaps, chosen)

    # the cost: the same record rated again as an outbound call of its supplier
    has = supplier.is_not_null().to_numpy()
    sel = np.nonzero(has)[0]
    cols = {"id": pa.array(sel.astype(np.int64)),  # the record's position: the costs come back by it
            "partner": supplier.gather(sel).cast(pl.Categorical).to_arrow(),
            "direction": pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(sel), dtype=np.int32)),
                                                        pa.array(["outbound"])),
            "service": service.gather(sel).cast(pl.Categorical).to_arrow(),
            "b_number": number.gather(sel).to_arrow(),
            "start": start.gather(sel).to_arrow(),
            "duration_s": pl.from_arrow(records.column("duration_s")).cast(pl.Int64).gather(sel).to_arrow()}
    a_number = _text(records, "a_number")
    if a_number is not None:
        cols["a_number"] = a_number.gather(sel).to_arrow()
    cost_n = np.zeros(n, dtype=np.int64)
    costed = np.zeros(n, dtype=bool)
    none = pl.Series([None], dtype=pl.Utf8).extend_constant(None, n - 1) if n else pl.Series([], dtype=pl.Utf8)
    cost_cur, cost_rule, supplier_prefix = none.clone(), none.clone(), none.clone()  # scatter writes in place
    why = pl.select(pl.when(pl.Series(has)).then(pl.lit(None, dtype=pl.Utf8)).otherwise(
        pl.lit("no supplier: the record names none and the LCR table has no route for its number"))).to_series() \
        if n else none
    if len(sel):
        rated, rejects = rate_batch(plan, pa.table(cols))
        at = pl.from_arrow(rated.column("id")).cast(pl.Int64).to_numpy() if rated.num_rows else np.zeros(0, np.int64)
        cost_n[at] = nano(rated.column("amount"))
        costed[at] = True
        cost_cur = _spread(rated.column("currency"), at, n)
        cost_rule = _spread(rated.column("rule"), at, n)
        supplier_prefix = _spread(rated.column("prefix"), at, n)
        if rejects.num_rows:
            rj = pl.from_arrow(rejects.column("id")).cast(pl.Int64).to_numpy()
            why = why.scatter(rj, _text(rejects, "reason") + ": " + _text(rejects, "detail"))
    revenue = _convert_col(nano(records.column("amount")), _text(records, "currency"), days, plan, policy)
    cost = _convert_col(cost_n, cost_cur, days, plan, policy)
    cost_s = pl.Series("cost_n", cost).set(pl.Series(~costed), None)
    frame = pl.DataFrame({
        "id": ids, "partner": partner, "service": service, "day": days,
        "destination": _text(records, "destination") if "destination" in records.column_names else prefix,
        "prefix": prefix if prefix is not None else number, "band": band, "number": number,
        "duration_s": pl.from_arrow(records.column("duration_s")).cast(pl.Int64),
        "supplier": supplier, "chosen_by": how, "supplier_prefix": supplier_prefix.alias("supplier_prefix"),
        "cost_rule": cost_rule, "revenue_n": revenue, "cost_n": cost_s, "uncosted": why,
    }).with_columns((pl.col("revenue_n") - pl.col("cost_n").fill_null(0)).alias("margin_n"))
    return Margins(policy.currency, frame, notes)


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
    return records.filter(pa.array(keep.to_numpy()))


def to_text(report: pl.DataFrame, totals: dict[str, int], currency: str, findings: list[Finding],
            whatif: pl.DataFrame | None, period: str, by: str, decks: Sequence[str] = ()) -> str:
    """The report as aligned text: the rows, the totals, the what-if and the findings."""
    def table(frame: pl.DataFrame) -> list[str]:
        cols = frame.columns
        cells = [[("" if v is None else str(v)) for v in row] for row in frame.iter_rows()]
        width = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, width, strict=True))]
        lines += ["  ".join(v.rjust(w) if v[:1].isdigit() or v[:1] == "-" else v.ljust(w)
                            for v, w in zip(r, width, strict=True)) for r in cells]
        return [line.rstrip() for line in lines]

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


def money_columns(frame: pl.DataFrame, names: Sequence[str] | None = None) -> pl.DataFrame:
    """The ``*_n`` columns as decimal texts (6 places when exact at 6, else 9), renamed without ``_n``."""
    names = set(names or [c for c in frame.columns if c.endswith("_n")])
    out = []
    for c in frame.columns:
        if c not in names:
            out.append(pl.col(c))
            continue
        vals = frame[c].drop_nulls()
        places = 6 if (vals % 1000 == 0).all() else 9
        out.append(money_col(c, places).alias(c[:-2]))
    return frame.select(out)


__all__ = ["BY", "Finding", "MarginError", "Margins", "SUPPLIER_COLUMNS", "compare", "in_period", "lcr_choice", "margins",
           "money_columns", "money_text", "nano", "read_supplier_deck", "sold", "to_text", "with_decks"]
