"""The cycle's rate stage on columns: chunks of records rated, each record given its invoice
line, and the lines' exact sums kept as small partial tables.

Chunks smaller than :data:`CHUNK_ROWS` (a small partner's records of one intake batch) are
put together before they are rated (:meth:`Rater.feed`, :meth:`Rater.flush`; each record keeps
its intake batch in a column), so that a partner's month is rated in a few large calls whatever
the number of intake batches. Per chunk (:meth:`Rater.rate`): refund and event records are set
apart, the rest rated by the batch executor; then, with no Python per record or per group:

1. **line of each record**: every line dimension is dictionary-encoded (the executor's
   dictionary columns are used as they are), the codes are combined into one integer per
   record, and the distinct combinations (a ``np.bincount`` over the combined codes, or
   ``np.unique`` when they are sparse) are the chunk's groups; their key text
   (``agreement_hash``, ``direction``, ``service``, ``currency`` and the dimensions asked for,
   joined by :data:`SEP`) is looked up among the keys seen so far (``pc.index_in``); a key seen
   for the first time gets the next line number, in the order of its first record: the ``line``
   column of the rated file;
2. **partial sums**: by group, in NumPy on the group of each record (``np.add.at``,
   ``np.minimum.at``, ``np.maximum.at``; exact int64): records, billed units, amount (unscaled
   integers at the cycle's scale; decimal128 sums when they might not fit), first and last
   start (int64 µs), and, for the columns that are not dimensions, their smallest and largest
   value (a line shows a value only when every record has the same one);
3. **local days**: records by local day of the period (:func:`icdsl.cycle.periods.day_index`).

An optional ``scan`` (``add(table)``) sees every rated chunk as it is written: validation's
checks of the rated values are made there (:class:`icdsl.cycle.validation.RatedValuesScan`)
instead of reading the rated file again.

:meth:`Rater.groups` merges the partials with one more ``group_by`` (decimal128 sums, exact)
and only then builds one :class:`~icdsl.cycle.invoicing.Group` per line (Decimal, datetime).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from icdsl.charges import groups
from icdsl.charges.context import merge_usage, usage_from_rated
from icdsl.cycle.charges import refunds_of, split_events, split_refunds
from icdsl.cycle.errors import ReconciliationError
from icdsl.cycle.invoicing import BASE_DIMS, DIMENSIONS, Group
from icdsl.cycle.periods import Period, day_edges, day_index, to_us
from icdsl.plan.model import Plan
from icdsl.rating.batch import rate_batch, rate_batch_with_charges

FINE_DIMS = ("agreement_hash", "agreement", "agreement_version", "direction", "service", "currency",
             "destination", "band", "prefix", "rate", "rule")
SEP = "\x1f"
MONEY_SCALE = 8  # the store's money columns: line amounts are exact at 8 decimals
REJECT_COLUMNS = ("id", "reason", "detail", "partner", "direction", "service", "a_number", "b_number", "start",
                  "duration_s", "volume", "units")
_LIMIT = 2**62
CHUNK_ROWS = 1 << 18  # records rated at a time: smaller chunks are put together (Rater.feed)


def rated_file_schema(id_type: pa.DataType, scale: int) -> pa.Schema:
    """The rated records of a cycle: the rated table (plain strings instead of dictionaries,
    amounts widened to decimal128(38, scale)) plus ``batch_id`` (the intake batch of the
    record) and ``line`` (the invoice line's ``line_key``)."""
    return pa.schema([
        ("id", id_type), ("partner", pa.string()), ("direction", pa.string()), ("service", pa.string()),
        ("agreement", pa.string()), ("agreement_version", pa.int64()), ("agreement_hash", pa.string()),
        ("prefix", pa.string()), ("destination", pa.string()), ("band", pa.string()),
        ("billed_units", pa.int64()), ("rate", pa.string()), ("amount", pa.decimal128(38, scale)),
        ("currency", pa.string()), ("rule", pa.string()), ("start", pa.timestamp("us", tz="UTC")),
        ("duration_s", pa.int64()), ("batch_id", pa.int64()), ("line", pa.int32()),
    ])


def record_charges_file_schema(id_type: pa.DataType, scale: int) -> pa.Schema:
    """The per-record charges of a cycle: one row per rated record and per-record charge
    (surcharge) that applies (``icdsl.rating.result.record_charges_schema`` with plain strings)
    plus ``batch_id``."""
    return pa.schema([
        ("record", pa.int64()), ("id", id_type), ("partner", pa.string()), ("direction", pa.string()),
        ("service", pa.string()), ("agreement", pa.string()), ("agreement_version", pa.int64()),
        ("agreement_hash", pa.string()), ("kind", pa.string()), ("charge", pa.string()),
        ("amount", pa.decimal128(38, scale)), ("currency", pa.string()), ("rule", pa.string()),
        ("batch_id", pa.int64()),
    ])


REJECTS_FILE_SCHEMA = pa.schema([
    ("id", pa.string()), ("reason", pa.string()), ("detail", pa.string()), ("partner", pa.string()),
    ("direction", pa.string()), ("service", pa.string()), ("a_number", pa.string()), ("b_number", pa.string()),
    ("start", pa.timestamp("us", tz="UTC")), ("duration_s", pa.int64()), ("volume", pa.int64()),
    ("units", pa.int64()), ("batch_id", pa.int64()),
])


def plan_scale(plan: Plan) -> int:
    """The decimals of the cycle's amounts: 6, or more if an agreement rounds finer."""
    scale = 6
    for a in plan.agreements:
        scale = max(scale, a.rounding.precision, *(sv.rounding.precision for sv in a.services))
    return scale


class Discard:
    """A sink that keeps nothing (the second rating pass only wants the record charges)."""

    def write(self, table: pa.Table) -> None:
        pass


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_us(us: int | None) -> datetime | None:
    """An instant kept as integer microseconds, as a datetime (for documents)."""
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def unscaled_int64(arr: pa.Array) -> pa.Array | None:
    """A decimal128 column as its unscaled int64 values (``1.500000`` at scale 6 is 1500000),
    read from its buffer; None when it is not decimal128, has nulls, or a value (or the sum of
    the column) might not fit in int64 (:func:`icdsl.charges.groups.unscaled`)."""
    low = groups.unscaled(arr)
    return None if low is None else pa.array(low, pa.int64())


def decimal_of_int64(values: np.ndarray, scale: int) -> pa.Array:
    """int64 unscaled values as a decimal128(38, scale) column (the inverse of
    :func:`unscaled_int64`: the low word is the value, the high word its sign)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    words = np.empty((len(values), 2), np.int64)
    words[:, 0] = values
    words[:, 1] = values >> 63
    return pa.Array.from_buffers(pa.decimal128(38, scale), len(values), [None, pa.py_buffer(words.tobytes())])


def money(value: Decimal) -> Decimal:
    """An amount at the store's money scale (8 decimals); raises rather than round."""
    q = value.quantize(Decimal(1).scaleb(-MONEY_SCALE))
    if q != value:
        raise ReconciliationError(f"{value} has more than {MONEY_SCALE} decimals: it would be rounded")
    return q


def value_counts(arr: pa.ChunkedArray | pa.Array) -> tuple[list[str], list[int]]:
    vc = pc.value_counts(arr)
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


def _codes(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(the code of each value, the values by code as text) of a column; a null is a code of
    its own, shown as an empty text (as in a line key)."""
    c, values = groups.codes(col)
    return c, pc.fill_null(pc.cast(values, pa.string()), "")


_PIECE = "__icdsl_piece__"  # the chunk of each record of chunks rated together (no record field is named so)


@dataclass
class RatedPiece:
    """A piece of a cycle's records rated on its own (by :meth:`Rater.piece`: a worker's task,
    see :mod:`icdsl.billing.fleet`), to be merged into the cycle in order by :meth:`Rater.absorb`.

    Its lines are numbered in the piece (``line_keys``: the key text of each, in the order of
    their first record) and its partial sums (``partials``) and rated records (``parts``) carry
    those numbers; the merge numbers them again in the cycle. ``parts``: an object with
    ``rated()``, ``rejects()`` and ``record_charges()``, each giving the piece's tables (the rated
    records with ``batch_id`` and ``line``) in the order written; ``rated``, ``rejected``,
    ``record_charges``: how many rows each holds (the merge checks them)."""

    read: int
    records_in: int
    rated: int
    rejected: int
    record_charges: int
    by_reason: dict[str, int]
    by_batch: dict[int, int]
    daily: np.ndarray
    usage: list[Any]
    events: list[Any]
    refunds: list[Any]
    refund_problems: list[tuple[str, str]]
    line_keys: pa.Array
    partials: list[pa.Table]
    parts: Any


class Rater:
    """Rates chunks of records and streams them to sinks (objects with ``write(table)``),
    keeping each line's exact sums as partial tables and the records per local day.

    ``charges``: rate with the per-record charges and sum the usage; ``charges_w``: where the
    record charges go; ``cycle_totals``: the cycle's totals for per-record charges that read
    ``cycle.*`` (a second pass); ``events``: event types counted, not rated; ``on_chunk``:
    called after each chunk is rated (the store's kill-safety checkpoint); ``scan``: sees
    every rated table written (``add(table)``: validation's checks of the rated values);
    ``chunk_rows``: chunks given to :meth:`feed` are put together up to this many records."""

    def __init__(self, plan: Plan, rated_w: Any, rejects_w: Any, scale: int, dims: tuple[str, ...],
                 period: Period | None = None, *, charges: bool = False, charges_w: Any = None,
                 cycle_totals: Any = None, events: tuple[str, ...] = (), partner: str = "", timezone: str = "UTC",
                 on_chunk: Callable[[], None] | None = None, scan: Any = None, chunk_rows: int = CHUNK_ROWS):
        self.charges = charges
        self.scan = scan
        self.chunk_rows = chunk_rows
        self._pending: list[tuple[int, pa.Table]] = []
        self._pending_rows = 0
        self.charges_w = charges_w
        self.cycle_totals = cycle_totals
        self.event_types = events
        self.partner = partner
        self.timezone = timezone
        self.on_chunk = on_chunk
        self.usage: list[Any] = []
        self.events: list[Any] = []
        self.read = 0
        self.refunds: list[Any] = []  # refund records (icdsl.cycle.charges.refunds_of)
        self.refund_problems: list[tuple[str, str]] = []
        self.record_charges = 0
        self.plan = plan
        self.rated_w = rated_w
        self.rejects_w = rejects_w
        self.scale = scale
        self.dims = tuple(dims)
        self.line_dims = BASE_DIMS + self.dims
        self.other_dims = tuple(c for c in DIMENSIONS if c not in self.dims) + ("agreement", "agreement_version")
        self.line_keys = pa.array([], pa.string())  # line number -> key text
        self._partials: list[pa.Table] = []
        self.records_in = 0
        self.rated = 0
        self.rejected = 0
        self.by_reason: dict[str, int] = defaultdict(int)
        self.by_batch: dict[int, int] = defaultdict(int)
        self.days: list[date] = []
        self.daily = np.zeros(0, np.int64)
        self._edges: np.ndarray | None = None
        if period is not None:
            self.days = [period.local_start + timedelta(days=i)
                         for i in range((period.local_end - period.local_start).days)]
            self._edges = day_edges(period)
            self.daily = np.zeros(len(self.days), np.int64)

    # ------------------------------------------------------------------ rating
    def feed(self, table: pa.Table, batch_id: int) -> None:
        """Rate ``table`` (records of intake batch ``batch_id``) now or with the next chunks:
        chunks are put together until they hold :attr:`chunk_rows` records (call :meth:`flush`
        after the last one). The outcome is the same as rating each chunk on its own, in order."""
        if not table.num_rows:
            return
        if self._pending and table.schema != self._pending[0][1].schema:
            self.flush()  # columns of another kind (another intake layout): rated on their own
        self._pending.append((batch_id, table))
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        """Rate the chunks :meth:`feed` keeps."""
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if pending:
            self._rate(pending)

    def rate(self, table: pa.Table, batch_id: int) -> None:
        """Rate one chunk of records of intake batch ``batch_id``."""
        if table.num_rows:
            self._rate([(batch_id, table)])

    def _rate(self, pieces: list[tuple[int, pa.Table]]) -> None:
        """Rate chunks (``(intake batch, records)``) in one call of the batch executor: each
        record carries the number of its chunk (its *piece*: column :data:`_PIECE`), which
        gives its batch and, for the per-record charges, its rated record's position in its
        own chunk (``record``), as if each chunk had been rated on its own."""
        batches = np.array([b for b, _t in pieces], np.int64)
        piece = pa.array(np.repeat(np.arange(len(pieces), dtype=np.int32), [t.num_rows for _b, t in pieces]))
        table = pieces[0][1] if len(pieces) == 1 else pa.concat_tables([t for _b, t in pieces])
        if _PIECE in table.column_names:  # pragma: no cover - a records field of that name
            table = table.drop_columns([_PIECE])
        table = table.append_column(_PIECE, piece)
        self.read += table.num_rows  # every record read: rated, rejected, an event or a refund
        if self.charges:  # refund records are never traffic: ``on net`` revenue shares deduct them
            table, refund_rows = split_refunds(table)
            if refund_rows is not None:
                got, bad = refunds_of(self.plan, refund_rows.drop_columns([_PIECE]), self.timezone, self.partner)
                self.refunds += got
                self.refund_problems += bad
        if self.event_types:
            table, events = split_events(table, self.event_types, self.timezone, self.partner)
            self.events += events
        n = table.num_rows
        if not n:
            return
        self.records_in += n
        by_piece = np.bincount(table.column(_PIECE).to_numpy(), minlength=len(pieces))
        for b, count in zip(batches.tolist(), by_piece.tolist(), strict=True):
            if count:
                self.by_batch[b] += count
        if self._edges is not None:
            idx = day_index(to_us(table.column("start")), self._edges)
            self.daily += np.bincount(idx[idx >= 0], minlength=len(self.days))[:len(self.days)]
        rc = None
        if not self.charges:
            rated, rejects = rate_batch(self.plan, table, carry=(_PIECE,))
        else:
            rated, rejects, rc = rate_batch_with_charges(self.plan, table, cycle=self.cycle_totals, carry=(_PIECE,))
        coded = _encoded(rated)
        if rc is not None:
            self.usage = merge_usage(self.usage, usage_from_rated(self.plan, coded, rc))
            if self.charges_w is not None and rc.num_rows:
                self.charges_w.write(_own_records(rc, rated.column(_PIECE), batches))
                self.record_charges += rc.num_rows
        if self.on_chunk is not None:
            self.on_chunk()
        self._add(_batch_of(coded, batches), _batch_of(rejects, batches), _batch_of(rated, batches))

    def add(self, rated: pa.Table, rejects: pa.Table, batch_id: int) -> None:
        """Write a rated chunk of intake batch ``batch_id`` and its rejects (``rated``: the
        batch executor's table)."""
        self._add(_with_batch(rated, batch_id), _with_batch(rejects, batch_id))

    def _add(self, rated: pa.Table, rejects: pa.Table, plain: pa.Table | None = None) -> None:
        """Write rated records and rejects that have their ``batch_id`` (``plain``: the rated
        records as the executor gave them, written instead of ``rated`` when ``rated`` has
        text columns dictionary-encoded for its groupings, :func:`_encoded`)."""
        if rated.num_rows:
            amount_type = rated.schema.field("amount").type
            if amount_type.scale > self.scale:
                raise ReconciliationError(f"amounts have {amount_type.scale} decimals, more than the {self.scale} "
                                          "expected from the agreements' rounding")
            self._written(rated, plain)
        if rejects.num_rows:
            cols = {}
            for name in REJECTS_FILE_SCHEMA.names:
                typ = REJECTS_FILE_SCHEMA.field(name).type
                if name in rejects.column_names:
                    cols[name] = pc.cast(rejects.column(name), typ)
                else:
                    cols[name] = pa.nulls(rejects.num_rows, typ)
            self.rejects_w.write(pa.table(cols, schema=REJECTS_FILE_SCHEMA))
            self.rejected += rejects.num_rows
            for reason, count in zip(*value_counts(rejects.column("reason")), strict=True):
                self.by_reason[reason] += count

    def _written(self, rated: pa.Table, plain: pa.Table | None = None) -> None:
        """Number the lines of rated records (``batch_id`` column, no ``line``), sum them, show
        them to the scan and write them (``plain``: the same records to write, see :meth:`_add`)."""
        line = pa.array(self._lines_and_sums(rated), pa.int32())
        rated = rated.append_column("line", line)
        if self.scan is not None:
            self.scan.add(rated)
        self.rated_w.write(plain.append_column("line", line) if plain is not None else rated)
        self.rated += rated.num_rows

    def keep(self, rated: pa.Table | None, record_charges: pa.Table | None = None) -> None:
        """Records rated before whose rating stands (a correction of part of a period keeps the
        rest as billed): ``rated`` has the rated file's columns (``batch_id``: the intake batch;
        a ``line`` column is numbered again), ``record_charges`` their per-record charges as
        billed. They count, are written and are summed with the records rated here, exactly as
        if they had been rated now (their charges are not evaluated again)."""
        self.flush()
        if rated is None or not rated.num_rows:
            return
        if "line" in rated.column_names:
            rated = rated.drop_columns(["line"])
        plain = self._at_scale(rated)
        rated = _encoded(plain)
        record_charges = self._at_scale(record_charges) if record_charges is not None else None
        n = rated.num_rows
        self.read += n
        self.records_in += n
        for batch_id, count in zip(*value_counts(rated.column("batch_id")), strict=True):
            self.by_batch[batch_id] += count
        if self._edges is not None:
            idx = day_index(to_us(rated.column("start")), self._edges)
            self.daily += np.bincount(idx[idx >= 0], minlength=len(self.days))[:len(self.days)]
        if self.charges:
            self.usage = merge_usage(self.usage, usage_from_rated(self.plan, rated, record_charges))
            if self.charges_w is not None and record_charges is not None and record_charges.num_rows:
                self.charges_w.write(record_charges)
                self.record_charges += record_charges.num_rows
        self._written(rated, plain)

    def _at_scale(self, table: pa.Table) -> pa.Table:
        """``table``'s amounts at the cycle's scale (a safe cast: raises rather than round)."""
        amount = table.column("amount")
        if amount.type == pa.decimal128(38, self.scale):
            return table
        try:
            amount = pc.cast(amount, pa.decimal128(38, self.scale))
        except pa.ArrowInvalid:
            raise ReconciliationError(f"records rated before have amounts with more than {self.scale} decimals, "
                                      "the most the agreements given round to: they would be rounded") from None
        return table.set_column(table.schema.get_field_index("amount"), "amount", amount)

    def line_of(self, values: dict[str, str]) -> str:
        """The key text of the line of a record's values."""
        return SEP.join(values[c] for c in self.line_dims)

    def _lines_and_sums(self, rated: pa.Table) -> np.ndarray:
        """The line number of every record of a rated chunk (new lines numbered in the order of
        their first record), and the chunk's partial sums by line (kept for :meth:`merged`)."""
        n = rated.num_rows
        coded = [_codes(rated.column(c)) for c in self.line_dims]
        grouped = groups.Groups(coded, n)
        # the key text of each group, from any of its records (they all have the same values)
        keys = pc.binary_join_element_wise(
            *[grouped.values(c) for c in coded], SEP)
        known = pc.index_in(keys, value_set=self.line_keys).to_numpy(zero_copy_only=False)
        new = np.isnan(known) if known.dtype.kind == "f" else None
        if new is None:  # no nulls: every key is known
            numbers = known.astype(np.int64)
        else:
            order = np.argsort(grouped.first()[new], kind="stable")
            fresh = pc.unique(keys.filter(pa.array(new)).take(pa.array(order)))
            self.line_keys = pa.concat_arrays([self.line_keys, fresh])
            numbers = pc.index_in(keys, value_set=self.line_keys).to_numpy(zero_copy_only=False).astype(np.int64)
        if len(self.line_keys) >= 2**31:  # pragma: no cover - the line column is int32
            raise ReconciliationError("more than 2^31 invoice lines in one cycle")
        self._sums(rated, grouped, numbers)
        return numbers[grouped.index].astype(np.int32)

    def _sums(self, rated: pa.Table, grouped: groups.Groups, numbers: np.ndarray) -> None:
        """A chunk's partial sums by group (``numbers``: the line of each group): records,
        billed units, exact amount (decimal128 at the cycle's scale), first and last start (µs),
        the smallest and largest value of the other columns. Amounts are summed as int64
        unscaled integers when they fit, else as decimal128."""
        out: dict[str, Any] = {"line": pa.array(numbers, pa.int32()), "count": pa.array(grouped.counts, pa.int64())}
        units = groups.exact_ints(rated.column("billed_units"))
        out["units"] = (pa.array(grouped.sum(units), pa.int64()) if units is not None
                        else self._decimal_sums(grouped, rated.column("billed_units"), 0))
        amount = rated.column("amount").combine_chunks()
        unscaled = _rescaled(amount, self.scale)
        out["amount"] = (decimal_of_int64(grouped.sum(unscaled), self.scale) if unscaled is not None
                         else self._decimal_sums(grouped, amount, self.scale))
        start = rated.column("start")
        if start.null_count:
            raise ReconciliationError("rated records without a start: they cannot be placed in the period")
        out["first"], out["last"] = (pa.array(a, pa.int64()) for a in grouped.min_max(to_us(start)))
        for c in self.other_dims:
            col = rated.column(c)
            if c == "agreement_version":
                if col.null_count:
                    raise ReconciliationError("rated records without an agreement version")
                version = col.to_numpy().astype(np.int64, copy=False)
                lo = _constant(grouped, version)
                lo, hi = (lo, lo) if lo is not None else grouped.min_max(version)
                out[f"{c}_min"], out[f"{c}_max"] = pa.array(lo, pa.int64()), pa.array(hi, pa.int64())
            else:  # min and max on the codes ranked as their values sort, then the values
                codes, values = _codes(col)
                same = _constant(grouped, codes)
                if same is not None:  # one value per group (most columns of most lines): no sort
                    out[f"{c}_min"] = out[f"{c}_max"] = values.take(pa.array(same))
                    continue
                order = pc.array_sort_indices(values).to_numpy(zero_copy_only=False)
                rank = np.empty(len(order), np.int64)
                rank[order] = np.arange(len(order))
                lo, hi = grouped.min_max(rank[codes])
                ranked = values.take(pa.array(order))
                out[f"{c}_min"], out[f"{c}_max"] = ranked.take(pa.array(lo)), ranked.take(pa.array(hi))
        self._partials.append(pa.table(out))

    def _decimal_sums(self, grouped: groups.Groups, values: pa.ChunkedArray | pa.Array, scale: int) -> pa.Array:
        """Exact sums by group as decimal128(38, scale) (values that int64 might not hold)."""
        t = pa.table({"g": pa.array(grouped.index), "v": pc.cast(values, pa.decimal128(38, scale))})
        g = t.group_by("g", use_threads=False).aggregate([("v", "sum")])
        where = np.empty(grouped.n, np.int64)
        where[g.column("g").to_numpy()] = np.arange(g.num_rows)
        return pc.fill_null(g.column("v_sum").combine_chunks().take(pa.array(where)), pa.scalar(0, pa.decimal128(38, scale)))

    # ------------------------------------------------------------------ pieces
    def piece(self, parts: Any) -> RatedPiece:
        """What this rater rated (every chunk flushed), as a piece of a larger cycle whose
        records ``parts`` holds (:class:`RatedPiece`)."""
        self.flush()
        return RatedPiece(read=self.read, records_in=self.records_in, rated=self.rated, rejected=self.rejected,
                          record_charges=self.record_charges, by_reason=dict(self.by_reason),
                          by_batch=dict(self.by_batch), daily=self.daily.copy(), usage=list(self.usage),
                          events=list(self.events), refunds=list(self.refunds),
                          refund_problems=list(self.refund_problems), line_keys=self.line_keys,
                          partials=list(self._partials), parts=parts)

    def absorb(self, piece: RatedPiece) -> None:
        """Merge a piece rated on its own, as if its records had been rated here now: its lines
        numbered in this cycle (a line first seen in the piece gets the next number, in the order
        of the piece's numbering, which is the order of their first record), its rated records
        written with those numbers (and shown to the scan), its rejects and record charges
        written, its counts, usage, events and refunds added. Pieces absorbed in the order of
        their records give what rating those records here gives, whatever order they were
        rated in."""
        self.flush()
        keys = piece.line_keys
        mapping = np.zeros(0, np.int64)
        if len(keys):
            known = pc.index_in(keys, value_set=self.line_keys).to_numpy(zero_copy_only=False)
            if known.dtype.kind == "f":  # some keys are new here: numbered in the piece's order
                self.line_keys = pa.concat_arrays([self.line_keys, keys.filter(pa.array(np.isnan(known)))])
                known = pc.index_in(keys, value_set=self.line_keys).to_numpy(zero_copy_only=False)
            mapping = known.astype(np.int64)
        if len(self.line_keys) >= 2**31:  # pragma: no cover - the line column is int32
            raise ReconciliationError("more than 2^31 invoice lines in one cycle")

        def renumbered(t: pa.Table) -> pa.Table:
            i = t.schema.get_field_index("line")
            return t.set_column(i, "line", pa.array(mapping[t.column(i).to_numpy()], pa.int32()))

        self._partials += [renumbered(t) for t in piece.partials]
        rated = rejected = charges = 0
        for t in piece.parts.rated():
            t = renumbered(t)
            if self.scan is not None:
                self.scan.add(t)
            self.rated_w.write(t)
            rated += t.num_rows
        for t in piece.parts.rejects():
            self.rejects_w.write(t)
            rejected += t.num_rows
        for t in piece.parts.record_charges():
            if self.charges_w is not None:
                self.charges_w.write(t)
            charges += t.num_rows
        if (rated, rejected, charges) != (piece.rated, piece.rejected, piece.record_charges):
            raise ReconciliationError(f"a piece rated on its own holds {rated} rated, {rejected} rejected records and "
                                      f"{charges} record charges, but counted {piece.rated}, {piece.rejected} and "
                                      f"{piece.record_charges}")
        self.read += piece.read
        self.records_in += piece.records_in
        self.rated += rated
        self.rejected += rejected
        self.record_charges += charges
        for reason, n in piece.by_reason.items():
            self.by_reason[reason] += n
        for b, n in piece.by_batch.items():
            self.by_batch[b] += n
        if len(self.daily):
            if len(piece.daily) != len(self.daily):
                raise ReconciliationError("a piece rated on its own counted records over another period")
            self.daily += piece.daily
        self.usage = merge_usage(self.usage, piece.usage)
        self.events += piece.events
        self.refunds += piece.refunds
        self.refund_problems += piece.refund_problems

    # ------------------------------------------------------------------ results
    def merged(self) -> pa.Table:
        """The lines' sums: the chunks' partials merged (one row per line, in line order)."""
        if not self._partials:
            return pa.table({"line": pa.array([], pa.int32())})
        aggs = [("count", "sum"), ("units", "sum"), ("amount", "sum"), ("first", "min"), ("last", "max")]
        for c in self.other_dims:
            aggs += [(f"{c}_min", "min"), (f"{c}_max", "max")]
        if len(self._partials) == 1:  # one chunk (most partners): its partials are the sums when
            t = self._partials[0]  # every line has one row (else two groups' keys read the same)
            line = t.column("line").to_numpy()
            if not len(line) or int(np.bincount(line).max()) == 1:
                t = t.take(pa.array(np.argsort(line, kind="stable")))
                return pa.table([t.column("line")] + [t.column(c) for c, _op in aggs],
                                names=["line"] + [f"{c}_{op}" for c, op in aggs])
        t = pa.concat_tables(self._partials)
        return t.group_by("line", use_threads=False).aggregate(aggs).sort_by("line")

    def groups(self) -> list[Group]:
        """The lines (exact sums), in line order."""
        m = self.merged()
        if not m.num_rows:
            return []
        keys = self.line_keys.to_pylist()
        amount = m.column("amount_sum")
        exact = None  # the sums at the store's money scale, cast on the column (exact: raises rather than round)
        if pa.types.is_decimal(amount.type) and amount.type.scale <= MONEY_SCALE:
            try:
                exact = pc.cast(amount, pa.decimal128(38, MONEY_SCALE)).to_pylist()
            except pa.ArrowInvalid:  # too many digits for 38 at that scale: money() says why
                exact = None
        cols = {name: m.column(name).to_pylist() for name in m.column_names if name != "amount_sum" or exact is None}
        out = []
        for i, li in enumerate(cols["line"]):
            v = dict(zip(self.line_dims, keys[li].split(SEP), strict=True))
            lo_version = cols["agreement_version_min_min"][i]
            g = Group(key=li, agreement_hash=v["agreement_hash"], agreement=cols["agreement_min_min"][i],
                      agreement_version=lo_version, direction=v["direction"], service=v["service"],
                      currency=v["currency"], dims={d: v[d] for d in self.dims})
            g.count = cols["count_sum"][i]
            g.units = cols["units_sum"][i] or 0
            g.amount = exact[i] if exact is not None else money(cols["amount_sum"][i])
            g.first, g.last = from_us(cols["first_min"][i]), from_us(cols["last_max"][i])
            for c in DIMENSIONS:
                if c not in self.dims:
                    lo, hi = cols[f"{c}_min_min"][i], cols[f"{c}_max_max"][i]
                    g.values[c] = {lo} if lo == hi else {lo, hi}
            out.append(g)
        return out

    def daily_counts(self) -> dict[date, int]:
        return {d: int(n) for d, n in zip(self.days, self.daily.tolist(), strict=True)}


#: text columns of rated records that the usage, the lines and the daily traffic each group by
ENCODED = ("partner", "direction", "service")


def _encoded(rated: pa.Table) -> pa.Table:
    """``rated`` with its :data:`ENCODED` text columns dictionary-encoded, once for the groupings
    that read them (the batch executor passes them on as plain text; the records are written
    as it gave them, so that the sinks do not decode them again)."""
    for name in ENCODED:
        i = rated.schema.get_field_index(name)
        if i >= 0 and not pa.types.is_dictionary(rated.schema.field(i).type):
            rated = rated.set_column(i, name, pc.dictionary_encode(rated.column(i).combine_chunks()))
    return rated


def _constant(grouped: groups.Groups, values: np.ndarray) -> np.ndarray | None:
    """Each group's value when every row of the group has the same one, else None (then the
    smallest and largest are :meth:`~icdsl.charges.groups.Groups.min_max`'s)."""
    at = values[grouped.member]
    return at if np.array_equal(values, at[grouped.index]) else None


def _with_batch(table: pa.Table, batch_id: int) -> pa.Table:
    """``table`` with a ``batch_id`` column of ``batch_id``."""
    if "batch_id" in table.column_names:
        table = table.drop_columns(["batch_id"])
    return table.append_column("batch_id", pa.array(np.full(table.num_rows, batch_id, np.int64)))


def _batch_of(table: pa.Table, batches: np.ndarray) -> pa.Table:
    """``table`` (records carrying their piece, :data:`_PIECE`) with a ``batch_id`` column
    instead: the intake batch of the piece."""
    piece = table.column(_PIECE).to_numpy() if table.num_rows else np.zeros(0, np.int32)
    table = table.drop_columns([c for c in (_PIECE, "batch_id") if c in table.column_names])
    return table.append_column("batch_id", pa.array(batches[piece], pa.int64()))


def _own_records(rc: pa.Table, rated_piece: pa.ChunkedArray | pa.Array, batches: np.ndarray) -> pa.Table:
    """Per-record charges of pieces rated together (``record``: the position of the rated
    record among the rated records of the call) as if each piece had been rated on its own:
    ``record`` counted in the rated records of its piece, and its ``batch_id``."""
    piece = rated_piece.to_numpy()
    record = rc.column("record").to_numpy()
    mine = piece[record]
    first = np.searchsorted(piece, np.arange(len(batches)), side="left")  # pieces are in order
    rc = rc.set_column(rc.schema.get_field_index("record"), "record", pa.array(record - first[mine], pa.int64()))
    return rc.append_column("batch_id", pa.array(batches[mine], pa.int64()))


def _rescaled(amount: pa.Array, scale: int) -> np.ndarray | None:
    """Unscaled int64 amounts at ``scale`` (None when they might not fit: the decimal path)."""
    values = groups.unscaled(amount)
    if values is None:
        return None
    diff = scale - amount.type.scale
    if diff == 0:
        return values
    factor = 10**diff
    if int(np.abs(values).max()) * factor * len(values) >= _LIMIT:
        return None
    return values * factor
