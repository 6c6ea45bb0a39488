"""The record-level reconciliation: the partner's CDR detail against our rated records, on
columns (polars joins; no Python per record).

Pairing, each record of either side in at most one pair:

1. **by id**: their record carries the id of one of ours and the same called number (a
   partner's ids that happen to equal ours on other calls do not pair);
2. **by numbers and start**: the rest, by calling and called number, their start the nearest to
   ours within the agreement's ``start within`` (a ``join_asof`` by number pair); when two of
   theirs find the same one of ours, the nearer keeps it and the other tries again with what
   is left (a few rounds).

Each pair is then classed, in this order: ``differs_duration`` when the durations are further
apart than ``duration within``; ``differs_rate`` when they state a rate and it is not ours;
``differs_amount`` when they state an amount and it is not ours at the precision they bill
(more than half a unit of the last decimal they wrote apart: their 0.01234 against our
0.012344 matches, against our 0.012346 it differs); else ``matched``. Records of theirs in no pair are
``only_theirs``, ours in none ``only_ours``.

The comparison works by partitions of the called numbers (:data:`PART_ROWS` records of a side
at a time; a pair never crosses them), on integer keys where it can: numbers that are all
digits without a leading zero as int64 (else text on both sides), their text ids read as
integers when our ids are integers. Only the records that differ need be kept
(``keep_matched=False``: every record is still classed and counted).

Their detail (the partner-invoice import's table) has ``id``, ``a_number``, ``b_number``,
``start`` (int64 µs UTC, or a timestamp), ``duration_s`` (or ``duration``: whole seconds) and,
when they send them, ``amount`` (decimal, or text of a decimal) and ``rate``. Amounts are
compared as scaled int64, never float.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from icdsl.plan.model import Tolerances
from icdsl.recon import spill
from icdsl.recon.errors import ReconcileError
from icdsl.recon.model import (
    DIFFERS_AMOUNT,
    DIFFERS_DURATION,
    DIFFERS_RATE,
    MATCHED,
    ONLY_OURS,
    ONLY_THEIRS,
    RECORD_CLASSES,
)
from icdsl.recon.spill import Spill, group_buckets, unified

ROUNDS = 4  # rounds of pairing by numbers and start (two of theirs on one of ours: the nearer wins)
PART_ROWS = 1_000_000  # records of a side compared at a time (partitions by called number)
RATE_SCALE = 12
MAX_SCALE = 12


def detail_problems(detail: pa.Table) -> list[str]:
    """What their detail lacks to be compared (empty: it can be)."""
    names = set(detail.column_names)
    missing = [c for c in ("id", "a_number", "b_number", "start") if c not in names]
    if "duration_s" not in names and "duration" not in names:
        missing.append("duration_s")
    return missing


def _decimal_scale(t: pa.DataType) -> int | None:
    return t.scale if pa.types.is_decimal(t) else None


def normalize_detail(detail: pa.Table, first_row: int = 0) -> tuple[pa.Table, int]:
    """Their detail in the comparison's columns and types; (table, scale of their amounts).
    ``first_row``: the position of ``detail``'s first record in their whole detail (a batch of
    it), for the row a problem names. A table already normalized is returned as it is."""
    if is_normalized(detail):
        return detail, _decimal_scale(detail.schema.field("their_amount").type) or 0
    missing = detail_problems(detail)
    if missing:
        raise ReconcileError(f"their CDR detail has no {', '.join(missing)} column",
                             help=f"the detail's columns are: {', '.join(detail.column_names)}; import it again "
                                  "with a layout that names them")
    start = detail.column("start")
    if pa.types.is_timestamp(start.type):
        start = pc.cast(pc.cast(start, pa.timestamp("us", tz="UTC")), pa.int64())
    elif not pa.types.is_integer(start.type):
        raise ReconcileError(f"their detail's start is {start.type}, not instants",
                             help="starts are integer microseconds since the epoch, UTC, or timestamps")
    duration = detail.column("duration_s" if "duration_s" in detail.column_names else "duration")
    if not pa.types.is_integer(duration.type):
        raise ReconcileError(f"their detail's durations are {duration.type}, not whole seconds",
                             help="durations are whole seconds")
    cols = {"their_id": detail.column("id"), "a_number": _numbers(detail.column("a_number")),
            "b_number": _numbers(detail.column("b_number")), "their_start": pc.cast(start, pa.int64()),
            "their_duration": pc.cast(duration, pa.int64())}
    scale = 0
    ids = detail.column("id")
    if "amount" in detail.column_names:
        amount, written = _decimal_column(detail.column("amount"), "amount", ids, first_row, written=True)
        scale = _decimal_scale(amount.type) or 0
        if scale > MAX_SCALE:
            raise ReconcileError(f"their amounts have {scale} decimals, more than the {MAX_SCALE} compared")
        cols["their_amount"] = amount
        cols["their_decimals"] = written
    else:
        cols["their_amount"] = pa.nulls(detail.num_rows, pa.decimal128(38, 0))
        cols["their_decimals"] = pa.array(np.zeros(detail.num_rows, np.int64))
    if "rate" in detail.column_names:
        rate = _decimal_column(detail.column("rate"), "rate", ids, first_row)
        cols["their_rate"], cols["their_rate_i"] = rate_ints(pc.cast(rate, pa.string()))
    else:
        cols["their_rate"] = pa.nulls(detail.num_rows, pa.string())
        cols["their_rate_i"] = pa.nulls(detail.num_rows, pa.int64())
    return pa.table(cols), scale


NORMALIZED = ("their_id", "a_number", "b_number", "their_start", "their_duration", "their_amount", "their_decimals",
              "their_rate", "their_rate_i")


def is_normalized(detail: pa.Table | pa.Schema) -> bool:
    """``detail`` is their detail as :func:`normalize_detail` gives it (a spilled side's batches
    are normalized as they come: compact on disk, read and checked once)."""
    names = detail.names if isinstance(detail, pa.Schema) else detail.column_names
    return tuple(names) == NORMALIZED


def _numbers(col: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Their calling or called numbers as int64 when each is digits without a leading ``0``,
    ``+`` or ``-`` (written back as text, it is the text they sent: the comparison's keys are the
    same whichever form a batch took), else as text."""
    if pa.types.is_integer(col.type):
        return pc.cast(col, pa.int64())
    text = pc.cast(col, pa.string())
    signed = pc.or_(pc.starts_with(text, "0"), pc.or_(pc.starts_with(text, "+"), pc.starts_with(text, "-")))
    if pc.any(signed).as_py():
        return text
    try:
        return pc.cast(text, pa.int64())  # digits only, as Arrow reads integers (no blank, no sign here)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return text


def _decimals_written(col: pa.ChunkedArray, scale: int) -> pa.Array:
    """The decimals each amount was written with (text: as written, ``0.0100`` has 4; a decimal
    column: its scale)."""
    if pa.types.is_decimal(col.type) or pa.types.is_integer(col.type):
        return pa.array(np.full(len(col), scale, np.int64))
    text = pc.fill_null(pc.utf8_trim_whitespace(pc.cast(col, pa.string())), "")
    dot = pc.find_substring(text, ".")
    written = pc.if_else(pc.less(dot, 0), 0, pc.subtract(pc.subtract(pc.utf8_length(text), dot), 1))
    return pc.cast(written, pa.int64()).combine_chunks() if isinstance(written, pa.ChunkedArray) else \
        pc.cast(written, pa.int64())


def _decimal_column(col: pa.ChunkedArray, name: str, ids: pa.ChunkedArray | None = None, first_row: int = 0, *,
                    written: bool = False) -> Any:
    """Their ``name``s as a decimal column at the most decimals any was written with (checked:
    numbers written with a point, at most :data:`MAX_SCALE` decimals); with ``written``, (that
    column, the decimals each was written with)."""
    if pa.types.is_floating(col.type):
        raise ReconcileError(f"their detail's {name}s are floating-point numbers, which are not exact",
                             help=f"import the {name}s as decimals (text such as 0.0123)")
    if pa.types.is_decimal(col.type) or pa.types.is_integer(col.type):
        out = col if pa.types.is_decimal(col.type) else pc.cast(col, pa.decimal128(38, 0))
        return (out, _decimals_written(col, _decimal_scale(out.type) or 0)) if written else out
    fast = _plain_decimals(col)
    if fast is not None:
        return fast if written else fast[0]
    text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    ok = pc.fill_null(pc.match_substring_regex(text, _DECIMAL), True)
    if pc.all(ok).as_py() is False:  # the first that is not a number, located (None: no records)
        at = pc.index(ok, False).as_py()
        v = str(text[at].as_py())
        row = first_row + at + 1
        where = f" of record {str(ids[at].as_py())[:40]} (row {row})" if ids is not None else f" (row {row})"
        raise ReconcileError(f"their detail has the {name} '{v[:40]}'{where}, which is not a number",
                             help=f"{name}s are decimals written with a point, such as 0.0125")
    places = _decimals_written(text, 0)
    scale = int(pc.max(places).as_py() or 0) if len(places) else 0
    if scale > MAX_SCALE:
        raise ReconcileError(f"their detail has {name}s with {scale} decimals, more than the {MAX_SCALE} compared")
    digits = pc.subtract(pc.utf8_length(pc.replace_substring(pc.replace_substring(text, "-", ""), ".", "")),
                         places)
    if (pc.max(digits).as_py() or 0) > 38 - MAX_SCALE:
        raise ReconcileError(f"their detail has {name}s too large to be amounts")
    out = pc.cast(text, pa.decimal128(38, scale))
    return (out, places) if written else out


def _plain_decimals(col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array] | None:
    """Text decimals the common way (each a plain number with no blank, at most 18 digits once
    at the column's scale), read on columns as int64: (the decimal column, the decimals each was
    written with), exactly what the general path (Arrow's cast) gives; None: any other text (the
    general path reads it, or says what is wrong)."""
    import polars as pl  # lazy: polars only where records are compared

    text = pc.cast(col, pa.string())
    s = pl.Series(text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text)
    if s.str.contains(_DECIMAL).not_().any():
        return None
    dot = s.str.find(".", literal=True)
    size = s.str.len_bytes()  # ASCII only, as checked
    places = (size - dot - 1).fill_null(0)
    scale = int(places.max() or 0) if len(s) else 0
    if scale > MAX_SCALE:
        return None
    digits = size - s.str.starts_with("-").cast(pl.Int64) - dot.is_not_null().cast(pl.Int64) - places
    if len(s) and int(digits.max() or 0) + scale > 18:
        return None
    values = s.str.replace(".", "", literal=True).str.to_integer(strict=False)
    if values.null_count() != s.null_count():
        return None
    p = places.cast(pl.Int64).to_numpy()
    scaled = values.fill_null(0).to_numpy() * np.power(10, scale - p).astype(np.int64)
    valid = s.is_not_null().to_numpy()
    return _decimal(scaled, valid, scale), pa.array(p, pa.int64())


_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?$"


def _unscaled(col: pa.ChunkedArray | pa.Array, scale: int) -> np.ndarray:
    """A decimal128 column as int64 at ``scale`` (nulls as 0), checked to fit."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    arr = pc.cast(pc.fill_null(arr, pa.scalar(Decimal(0), arr.type)), pa.decimal128(38, scale))
    words = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=2 * len(arr), offset=arr.offset * 16).reshape(-1, 2)
    low, high = words[:, 0], words[:, 1]
    if not np.array_equal(high, low >> 63):
        raise ReconcileError("amounts too large to compare")
    return low.copy()


def _decimal(values: np.ndarray, valid: np.ndarray | None, scale: int) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.int64)
    words = np.empty((len(values), 2), np.int64)
    words[:, 0] = values
    words[:, 1] = values >> 63
    buffers = [None, pa.py_buffer(words.tobytes())]
    if valid is not None and not valid.all():
        buffers[0] = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    return pa.Array.from_buffers(pa.decimal128(38, scale), len(values), buffers)


RECORDS_SCHEMA_NAMES = ("class", "their_id", "our_id", "a_number", "b_number", "their_start_us", "our_start_us",
                        "their_duration", "our_duration", "their_amount", "our_amount", "line", "service",
                        "their_rate", "our_rate")


def rate_ints(text: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array]:
    """(the rates as a dictionary column, the rates as int64 at :data:`RATE_SCALE`, nulls kept):
    each distinct rate converted once."""
    arr = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    if pa.types.is_dictionary(arr.type):
        d = arr
    else:
        d = pc.dictionary_encode(pc.cast(arr, pa.string()))
    values = []
    for v in d.dictionary.to_pylist():
        try:
            q = Decimal(v).scaleb(RATE_SCALE) if v not in (None, "") else None
            values.append(int(q) if q is not None and q.is_finite() and abs(q) < 2**62 else None)
        except ArithmeticError:
            values.append(None)
    ints = pc.take(pa.array(values, pa.int64()), d.indices)
    return d, ints


def compare_sides(ours: pa.Table | Spill, theirs: pa.Table | Spill | Iterable[pa.Table], tolerances: Tolerances,
                  our_scale: int, line_keys: dict[int, str], *,
                  keep_matched: bool = True) -> tuple[pa.Table, dict[str, int]]:
    """:func:`compare_records` on sides of any size, in bounded memory: ``ours`` a table or our
    records spilled by called number (:mod:`icdsl.recon.spill`), ``theirs`` their detail as a
    table, a spill, or tables read one after the other (a file's row groups). Both small: one
    comparison; else both go to disk by called number and are compared a group of buckets at a
    time (a pair has one called number: no pair crosses groups)."""
    small = spill.SPILL_ROWS
    if isinstance(ours, pa.Table) and isinstance(theirs, pa.Table) and max(ours.num_rows, theirs.num_rows) <= small:
        return compare_records(ours, theirs, tolerances, our_scale, line_keys, keep_matched=keep_matched)
    o = ours if isinstance(ours, Spill) else Spill("ours")
    t = theirs if isinstance(theirs, Spill) else Spill("theirs")
    try:
        if o is not ours:
            o.add(ours)  # type: ignore[arg-type]
        if t is not theirs:  # each batch normalized as it comes: checked once, compact on disk
            first = 0
            for batch in [theirs] if isinstance(theirs, pa.Table) else theirs:  # type: ignore[union-attr]
                t.add(normalize_detail(batch, first)[0])
                first += batch.num_rows
        if t.schema is None:
            raise ReconcileError("their CDR detail has no records and no columns",
                                 help="import the detail again, or reconcile without it")
        if not is_normalized(t.schema) and detail_problems(t.schema.empty_table()):
            normalize_detail(t.schema.empty_table())  # the error, with the columns it has
        if not (o.spilled or t.spilled):
            return compare_records(o.table(), t.table(), tolerances, our_scale, line_keys, keep_matched=keep_matched)
        o.spill()
        t.spill()
        counts = {c: 0 for c in RECORD_CLASSES}
        tables = []
        for group in group_buckets(o, t):
            table, n = compare_records(o.read(group), t.read(group), tolerances, our_scale, line_keys,
                                       keep_matched=keep_matched)
            for c, k in n.items():
                counts[c] += k
            if table.num_rows:
                tables.append(table)
        return (unified(tables, None) if tables else _arrow(None, pa.table({}), pa.table({}), 0, 0, 0, {}, pa.array([]),
                                                            pa.array([]), True)), counts
    finally:
        if t is not theirs:
            t.close()
        if o is not ours:
            o.close()


def compare_records(ours: pa.Table, theirs: pa.Table, tolerances: Tolerances, our_scale: int,
                    line_keys: dict[int, str], *, keep_matched: bool = True) -> tuple[pa.Table, dict[str, int]]:
    """(one row per record of either side, records by class). ``ours``: the kept rated records
    with their numbers (:mod:`icdsl.recon.ours`); ``theirs``: their detail as imported.
    ``keep_matched``: False leaves the matched records out of the table (they are counted): a
    month of 10M records has a few thousand that differ.

    Both sides are compared by partitions of their called numbers (:data:`PART_ROWS` records at
    a time): a pair always has the same called number, so no pair crosses partitions."""
    import polars as pl  # lazy: polars only where records are compared

    their, their_scale = normalize_detail(theirs)
    scale = max(our_scale, their_scale)
    o = pl.from_arrow(ours.select(["id", "a_number", "b_number", "start", "duration_s", "amount", "line"])
                      .rename_columns(["our_id", "a_number", "b_number", "our_start", "our_duration", "our_amount",
                                       "line"]))
    our_rate, our_rate_i = rate_ints(ours.column("rate"))
    o = o.with_columns(pl.from_arrow(our_rate_i).alias("our_rate_i"),
                       pl.from_arrow(pc.cast(ours.column("service"), pa.string())).cast(pl.Categorical).alias("service"),
                       pl.Series("our_rate_code", pc.fill_null(our_rate.indices, 0).to_numpy(zero_copy_only=False)))
    decimals = np.minimum(their.column("their_decimals").to_numpy(), their_scale)
    their_rate = their.column("their_rate").combine_chunks()
    their_coded = pa.types.is_dictionary(their_rate.type)
    t_valid = their.column("their_amount").is_valid().to_numpy(zero_copy_only=False)
    t = pl.from_arrow(their.drop_columns(["their_amount", "their_decimals", "their_rate"]))
    t = t.with_columns(
        pl.Series("their_amount", _unscaled(their.column("their_amount"), their_scale)),
        pl.Series("their_amount_given", t_valid),
        # one unit of the last decimal they wrote, at the comparison's scale
        pl.Series("their_unit", np.power(10, scale - decimals).astype(np.int64)),
        pl.Series("their_rate_code", pc.fill_null(their_rate.indices, 0).to_numpy(zero_copy_only=False)
                  if their_coded else np.zeros(their.num_rows, np.int32)))
    their_rates = their_rate.dictionary if their_coded else pa.array([None], pa.string())
    o, t, as_int = _number_keys(o, t)
    o, t = o.with_row_index("orow"), t.with_row_index("trow")
    same_ids = _comparable_ids(o.schema["our_id"], t.schema["their_id"])
    if same_ids:
        o, t = _id_keys(o, t)
    parts = max(1, -(-max(o.height, t.height) // PART_ROWS))
    counts = {c: 0 for c in RECORD_CLASSES}
    kept = []
    for k in range(parts):
        if parts > 1:
            ok = o.filter(pl.col("b_number").hash(seed=7) % parts == k)
            tk = t.filter(pl.col("b_number").hash(seed=7) % parts == k)
        else:
            ok, tk = o, t
        part, n = _classed(ok, tk, tolerances, their_scale, our_scale, scale, same_ids, keep_matched)
        for c, k in n.items():
            counts[c] += k
        kept.append(part)
        del ok, tk, part
    table = pl.concat(kept, how="diagonal_relaxed") if kept else None
    return _arrow(table, their, ours, their_scale, our_scale, scale, line_keys, our_rate.dictionary, their_rates,
                  as_int), counts


def _number_keys(o, t):
    """Both sides' numbers as Int64 when every one is digits without a leading zero (faster,
    smaller joins), else text on both sides."""
    import polars as pl  # lazy, as above

    ints = {}
    for side, frame in (("o", o), ("t", t)):
        for col in ("a_number", "b_number"):
            s = frame.get_column(col)
            if s.dtype.is_integer():
                ints[(side, col)] = s.cast(pl.Int64)
                continue
            s = s.cast(pl.String)
            n = s.str.to_integer(strict=False)
            if n.null_count() != s.null_count() or s.str.starts_with("0").any() or s.str.starts_with("+").any():
                return (o.with_columns(pl.col("a_number").cast(pl.String), pl.col("b_number").cast(pl.String)),
                        t.with_columns(pl.col("a_number").cast(pl.String), pl.col("b_number").cast(pl.String)), False)
            ints[(side, col)] = n
    o = o.with_columns(ints[("o", "a_number")].alias("a_number"), ints[("o", "b_number")].alias("b_number"))
    t = t.with_columns(ints[("t", "a_number")].alias("a_number"), ints[("t", "b_number")].alias("b_number"))
    return o, t, True


def _classed(o, t, tolerances: Tolerances, their_scale: int, our_scale: int, scale: int, same_ids: bool,
             keep_matched: bool = True):
    """One partition's records of both sides, paired and classed (the module's documentation):
    (the records, with the matched ones only when ``keep_matched``; records by class). Pairs
    are kept as row positions (NumPy), classed on the few columns that class them, and only the
    records kept are gathered whole: no join but the pairing ones."""
    import polars as pl  # lazy, as above

    t, o = t.with_row_index("ti"), o.with_row_index("oi")
    free_t, free_o = np.ones(t.height, bool), np.ones(o.height, bool)
    pt: list[np.ndarray] = []
    po: list[np.ndarray] = []

    def take(pairs) -> None:
        ti, oi = pairs.get_column("ti").to_numpy(), pairs.get_column("oi").to_numpy()
        pt.append(ti)
        po.append(oi)
        free_t[ti] = False
        free_o[oi] = False

    if same_ids and t.height and o.height:  # 1. by id, with the same called number
        right = o.select("oi", "id_key", pl.col("b_number").alias("b_o"))
        by_id = (t.select("ti", "id_key", "b_number").join(right, on="id_key", how="inner")
                 .filter(pl.col("b_number") == pl.col("b_o")))
        n = by_id.height
        if by_id.get_column("oi").n_unique() != n or by_id.get_column("ti").n_unique() != n:  # ids repeated
            by_id = (by_id.unique(subset=["oi"], keep="first", maintain_order=True)
                     .unique(subset=["ti"], keep="first", maintain_order=True))
        take(by_id)
    # 2. by numbers, the nearest start within the tolerance
    tol_us = tolerances.start_seconds * 1_000_000
    for _ in range(ROUNDS):
        t_left = t.select("ti", "a_number", "b_number", "their_start").filter(pl.Series(free_t))
        o_left = o.select("oi", "a_number", "b_number", "our_start").filter(pl.Series(free_o))
        if not t_left.height or not o_left.height:
            break
        m = (t_left.sort("their_start")
             .join_asof(o_left.sort("our_start"), left_on="their_start", right_on="our_start",
                        by=["a_number", "b_number"], strategy="nearest", tolerance=tol_us, check_sortedness=False)
             .filter(pl.col("oi").is_not_null())
             .sort("oi"))
        if m.height > 1 and bool((np.diff(m.get_column("oi").to_numpy()) == 0).any()):  # two on one of ours
            m = (m.with_columns((pl.col("their_start") - pl.col("our_start")).abs().alias("gap"))
                 .sort(["oi", "gap", "ti"])
                 .unique(subset=["oi"], keep="first", maintain_order=True))
        if not m.height:
            break
        take(m)
    ti = np.concatenate(pt) if pt else np.zeros(0, np.int64)
    oi = np.concatenate(po) if po else np.zeros(0, np.int64)
    # 3. the pairs classed
    up_t, up_o = 10 ** (scale - their_scale), 10 ** (scale - our_scale)
    cls = (pl.when((pl.col("their_duration") - pl.col("our_duration")).abs() > tolerances.duration_seconds)
           .then(pl.lit(DIFFERS_DURATION))
           .when(pl.col("their_rate_i").is_not_null() & pl.col("our_rate_i").is_not_null()
                 & (pl.col("their_rate_i") != pl.col("our_rate_i")))
           .then(pl.lit(DIFFERS_RATE))
           .when(pl.col("their_amount_given")
                 & ((pl.col("their_amount") * up_t - pl.col("our_amount") * up_o).abs() * 2 > pl.col("their_unit")))
           .then(pl.lit(DIFFERS_AMOUNT))
           .otherwise(pl.lit(MATCHED)))
    classing = pl.concat([t.select("their_duration", "their_rate_i", "their_amount_given", "their_amount",
                                   "their_unit")[ti],
                          o.select("our_duration", "our_rate_i", "our_amount")[oi]], how="horizontal")
    klass = classing.select(cls.alias("class")).get_column("class")
    del classing
    counts = {c: 0 for c in RECORD_CLASSES}
    for c, k in klass.value_counts().iter_rows():
        counts[c] += k
    counts[ONLY_THEIRS] += int(free_t.sum())
    counts[ONLY_OURS] += int(free_o.sum())
    if not keep_matched:  # only the pairs that differ are gathered whole
        differ = (klass != MATCHED).to_numpy()
        ti, oi, klass = ti[differ], oi[differ], klass.filter(pl.Series(differ))
    both = pl.concat([t[ti].drop("id_key", strict=False),
                      o[oi].drop("a_number", "b_number", "id_key", strict=False)], how="horizontal")
    both = both.with_columns(klass.alias("class"))
    only_t = t.filter(pl.Series(free_t)).drop("id_key", strict=False).with_columns(pl.lit(ONLY_THEIRS).alias("class"))
    only_o = o.filter(pl.Series(free_o)).drop("id_key", strict=False).with_columns(pl.lit(ONLY_OURS).alias("class"))
    return pl.concat([both, only_t, only_o], how="diagonal_relaxed"), counts


def _id_keys(o, t):
    """Both sides with an ``id_key`` column of one type: integers when our ids are (their text
    ids read as integers; one that is not a number pairs with none of ours by id), else text."""
    import polars as pl  # lazy, as above

    ours, theirs = o.schema["our_id"], t.schema["their_id"]
    if ours.is_integer() and theirs.is_integer():
        return o.with_columns(pl.col("our_id").cast(pl.Int64).alias("id_key")), \
            t.with_columns(pl.col("their_id").cast(pl.Int64).alias("id_key"))
    if ours.is_integer() and theirs == pl.String:
        return o.with_columns(pl.col("our_id").cast(pl.Int64).alias("id_key")), \
            t.with_columns(pl.col("their_id").str.to_integer(strict=False).alias("id_key"))
    return o.with_columns(pl.col("our_id").cast(pl.String).alias("id_key")), \
        t.with_columns(pl.col("their_id").cast(pl.String).alias("id_key"))


def _comparable_ids(a, b) -> bool:
    """Ids of both sides can be compared: integers with integers, or either as text."""
    import polars as pl  # lazy: polars only where records are compared

    text = (pl.String, pl.Categorical)
    return (a.is_integer() and b.is_integer()) or a in text or b in text


def _arrow(table, their: pa.Table, ours: pa.Table, their_scale: int, our_scale: int, scale: int,
           line_keys: dict[int, str], our_rates: pa.Array, their_rates: pa.Array, as_int: bool) -> pa.Table:
    """The classed records as the Arrow table of :attr:`Reconciliation.records`."""
    import polars as pl  # lazy: polars only where records are compared

    dictionary = pa.array(list(RECORD_CLASSES), pa.string())
    if table is None or not table.height:
        empty = {n: pa.array([], pa.string()) for n in RECORDS_SCHEMA_NAMES}
        empty["class"] = pa.DictionaryArray.from_arrays(pa.array([], pa.int8()), dictionary)
        table = None
        return pa.table(empty)
    n = table.height
    index = pc.index_in(table.get_column("class").to_arrow(), value_set=dictionary)
    klass = pa.DictionaryArray.from_arrays(pc.cast(index, pa.int8()), dictionary)

    def ints(name: str) -> pa.Array:
        return table.get_column(name).cast(pl.Int64).to_arrow() if name in table.columns else pa.nulls(n, pa.int64())

    def numbers(name: str) -> pa.Array:
        col = table.get_column(name)
        return col.cast(pl.String).to_arrow() if as_int else col.to_arrow()

    def coded(name: str, values: pa.Array, present: str) -> pa.Array:
        codes = table.get_column(name).fill_null(0).cast(pl.Int32).to_arrow()
        valid = table.get_column(present).is_not_null().to_arrow()
        if present == "our_rate_code":
            valid = table.get_column("orow").is_not_null().to_arrow()
        codes = pc.if_else(valid, codes, pa.scalar(None, pa.int32()))
        return pc.cast(pa.DictionaryArray.from_arrays(codes, values), pa.string()) if len(values) else \
            pa.nulls(n, pa.string())

    t_amount = table.get_column("their_amount").fill_null(0).cast(pl.Int64).to_numpy() * 10 ** (scale - their_scale)
    t_valid = table.get_column("their_amount_given").fill_null(False).to_numpy()
    o_amount = table.get_column("our_amount").fill_null(0).cast(pl.Int64).to_numpy() * 10 ** (scale - our_scale)
    o_valid = table.get_column("orow").is_not_null().to_numpy()
    line_codes = table.get_column("line").to_arrow()
    keys = sorted(line_keys)
    pos = pc.index_in(pc.cast(line_codes, pa.int64()), value_set=pa.array(keys, pa.int64()))
    line = pa.DictionaryArray.from_arrays(pc.cast(pos, pa.int32()), pa.array([line_keys[k] for k in keys], pa.string()))
    return pa.table({
        "class": klass,
        "their_id": _ids(table, "their_id", their.schema.field("their_id").type),
        "our_id": _ids(table, "our_id", ours.schema.field("id").type),
        "a_number": numbers("a_number"),
        "b_number": numbers("b_number"),
        "their_start_us": ints("their_start"),
        "our_start_us": ints("our_start"),
        "their_duration": ints("their_duration"),
        "our_duration": ints("our_duration"),
        "their_amount": _decimal(t_amount, t_valid, scale),
        "our_amount": _decimal(o_amount, o_valid, scale),
        "line": line,
        "service": pc.cast(table.get_column("service").cast(pl.String).to_arrow(), pa.string()),
        "their_rate": coded("their_rate_code", their_rates, "their_rate_i"),
        "our_rate": coded("our_rate_code", our_rates, "our_rate_code"),
    })


def _ids(table, name: str, typ: pa.DataType) -> pa.Array:
    arr = table.get_column(name).to_arrow()
    if arr.type != typ:
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arr = pc.cast(arr, typ)
    return arr
