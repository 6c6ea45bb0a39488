"""Our view of the traffic a partner bills us for: the records we sent them, rated with the
agreement under which they bill us, by the one cycle engine (:func:`icdsl.cycle.run`).

Which traffic: the services of the partner's agreements that are theirs to bill, that is every
``outbound`` service (what we send them) and every netted service (``netting with ...``: their
side of a bilateral agreement). Our lines are the engine's lines of those services (one per
service, destination and band: :class:`icdsl.cycle.invoicing.Group`), each converted and
rounded once exactly as our own draft lines are (:func:`icdsl.cycle.invoicing.traffic_line`);
our records are the engine's rated records of those services, kept as they are written (a
sink that keeps only the columns the record-level comparison needs: no second read), with the
calling and called numbers of the input records joined by id.

Amounts of records are scaled int64 at the cycle's scale (:func:`icdsl.cycle.rater.plan_scale`),
never float.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from icdsl.cycle import engine
from icdsl.cycle.errors import CycleError
from icdsl.cycle.fx import FxTable
from icdsl.cycle.invoicing import Group, traffic_line
from icdsl.cycle.offline import SummarySinks
from icdsl.cycle.periods import Period
from icdsl.cycle.rater import plan_scale, unscaled_int64
from icdsl.plan.model import Plan
from icdsl.recon.errors import ReconcileError
from icdsl.recon.spill import Spill

# the columns of our records kept for the record-level comparison
RECORD_COLUMNS = ("id", "service", "start", "duration_s", "amount", "rate", "line")
NUMBER_COLUMNS = ("id", "a_number", "b_number")


def billed_by_partner(plan: Plan, partner: str) -> set[tuple[str, str]]:
    """(direction, service) pairs of the partner's agreements that the partner bills us for."""
    out: set[tuple[str, str]] = set()
    for a in plan.agreements_for(partner):
        for s in a.services:
            if s.direction == "outbound":
                out.add((s.direction, s.service))
        out.update(a.netting)
    return out


@dataclass(frozen=True)
class OurLine:
    """One line of ours: the engine's group, its amount converted and rounded once in the
    invoice currency (as our draft line would be), its quantity in the service's base unit
    (``second``, ``byte``, or the counted unit)."""

    key: str  # the group's key text (Group.group_key)
    line: int  # the line number of the rated records' ``line`` column
    direction: str
    service: str
    destination: str | None
    band: str | None
    prefix: str | None
    calls: int
    quantity: int
    unit: str
    amount: Decimal
    currency: str
    agreement: str


@dataclass
class OurView:
    """Our lines and, when kept, our records (``id``, ``service``, ``start`` (int64 µs), ``duration_s``,
    ``amount`` (int64 at ``scale``), ``rate`` (text), ``line``, ``a_number``, ``b_number``): one
    table, or a :class:`~icdsl.recon.spill.Spill` on disk by called number when they are many."""

    partner: str
    period: Period
    currency: str
    lines: list[OurLine]
    records: pa.Table | Spill | None
    scale: int
    services: set[tuple[str, str]]


class RecordKeeper:
    """A rated-records sink keeping only the partner's billed services' records and the columns
    the comparison reads (amounts as scaled int64), each written table given the numbers of its
    input records (``numbers``) and added to ``records``, a :class:`~icdsl.recon.spill.Spill`:
    in memory while small, on disk by called number once large (a month of 10M records)."""

    def __init__(self, services: set[tuple[str, str]], scale: int, numbers: NumberKeeper | None = None):
        self.services = services
        self.scale = scale
        self.numbers = numbers
        self.records = Spill("ours")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        kept = billed_rows(table, self.services)
        if kept is None or not kept.num_rows:
            return
        kept = kept_columns(kept, self.scale)
        self.records.add(self.numbers.attach(kept) if self.numbers is not None else without_numbers(kept))

    def table(self) -> pa.Table | None:
        """Every kept record in one table (the records held in memory)."""
        return _concat([self.records.table()]) if self.records.rows else None

    def result(self) -> pa.Table | Spill:
        """Our records for the comparison: the spill when on disk, else one table (empty when
        we have none: every record of theirs is then theirs only)."""
        if self.records.spilled:
            return self.records
        return self.table() if self.records.rows else empty_records(self.scale)


def empty_records(scale: int) -> pa.Table:
    """Our records when there are none, in the comparison's columns and types."""
    return pa.table({"id": pa.array([], pa.string()), "service": pa.array([], _DICT),
                     "start": pa.array([], pa.int64()), "duration_s": pa.array([], pa.int64()),
                     "amount": pa.array([], pa.int64()), "rate": pa.array([], _DICT),
                     "line": pa.array([], pa.int32()), "a_number": pa.array([], pa.string()),
                     "b_number": pa.array([], pa.string())})


_DICT = pa.dictionary(pa.int32(), pa.string())


def _equal(col: pa.ChunkedArray, value: str) -> pa.ChunkedArray:
    """``col == value`` for text or dictionary columns (a dictionary compared on its values)."""
    if not pa.types.is_dictionary(col.type):
        return pc.equal(col, value)
    return pa.chunked_array([pc.take(pc.equal(c.dictionary, value), c.indices) for c in col.chunks],
                            type=pa.bool_())


def _values(col: pa.ChunkedArray) -> set[str]:
    """The distinct values of a text or dictionary column (a dictionary's used values only)."""
    if not pa.types.is_dictionary(col.type):
        return set(pc.unique(col).to_pylist())
    out: set[str] = set()
    for c in col.chunks:
        used = pc.drop_null(pc.unique(c.indices))
        out.update(pc.take(c.dictionary, used).to_pylist())
        if c.null_count:
            out.add(None)  # type: ignore[arg-type]
    return out


def billed_rows(table: pa.Table, services: set[tuple[str, str]]) -> pa.Table | None:
    """The rows of ``table`` of the billed (direction, service) pairs (None: none of them); a
    table with only such rows is returned as it is (no filter: the common case)."""
    if "direction" not in table.column_names or "service" not in table.column_names:
        return table
    directions, kinds = _values(table.column("direction")), _values(table.column("service"))
    present = {(d, k) for d in directions for k in kinds}
    if present <= services:
        return table
    wanted = present & services
    if not wanted:
        return None
    mask = None
    for direction, service in wanted:
        m = pc.and_(_equal(table.column("direction"), direction), _equal(table.column("service"), service))
        mask = m if mask is None else pc.or_(mask, m)
    return table.filter(pc.fill_null(mask, False))


def _dictionary(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column as a dictionary (a rate or a service repeats on millions of records)."""
    return col if col.type == _DICT else pc.cast(pc.cast(col, pa.string()) if pa.types.is_dictionary(col.type)
                                                 else col, _DICT)


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Tables of kept columns as one, every column in one chunk (dictionaries unified)."""
    return pa.concat_tables(tables).unify_dictionaries().combine_chunks()


def kept_columns(rated: pa.Table, scale: int) -> pa.Table:
    """The columns of :data:`RECORD_COLUMNS` of rated records, in the types the comparison uses."""
    amount = rated.column("amount")
    if isinstance(amount, pa.ChunkedArray):
        amount = amount.combine_chunks()
    amount = pc.cast(amount, pa.decimal128(38, scale))
    low = unscaled_int64(amount)
    if low is None:
        raise ReconcileError("record amounts too large for the record-level reconciliation (more than 9.2e12 at "
                             f"{scale} decimals); reconcile at line level only (without the partner's detail)")
    start = rated.column("start")
    if pa.types.is_timestamp(start.type):
        start = pc.cast(pc.cast(start, pa.timestamp("us", tz="UTC")), pa.int64())
    return pa.table({
        "id": rated.column("id"),
        "service": _dictionary(rated.column("service")),
        "start": pc.cast(start, pa.int64()),
        "duration_s": pc.cast(rated.column("duration_s"), pa.int64()),
        "amount": low,
        "rate": _dictionary(rated.column("rate")),
        "line": pc.cast(rated.column("line"), pa.int32()),
    })


class KeepingSinks(SummarySinks):
    """The engine's sinks for a reconciliation: rejects and record charges kept (the counts and
    charges read them), rated records kept by a :class:`RecordKeeper` (or only counted)."""

    def __init__(self, keeper: RecordKeeper | None) -> None:
        super().__init__()
        if keeper is not None:
            self.rated = keeper  # type: ignore[assignment]


def our_lines(groups: Sequence[Group], plan: Plan, services: set[tuple[str, str]], invoice_currency: str,
              fx: FxTable | None, period: Period) -> list[OurLine]:
    """Our lines of the billed services, each rounded once in ``invoice_currency``."""
    by_hash = {a.source_hash: a for a in plan.agreements}
    last_day = period.local_end - timedelta(days=1)
    table = fx if fx is not None else FxTable(())
    out = []
    terms: dict[Any, Any] = {}  # what lines of one agreement, service and currency share: worked out once
    for g in groups:
        if (g.direction, g.service) not in services:
            continue
        agreement = by_hash.get(g.agreement_hash)
        try:
            d = traffic_line(g, agreement, invoice_currency, table, last_day, terms)
        except CycleError as e:
            raise ReconcileError(f"our {g.direction} {g.service} lines cannot be put in the invoice's currency: {e}",
                                 help="add the rate to the agreement's fx source, or check the invoice's currency"
                                 ) from None
        out.append(OurLine(key=g.group_key, line=g.key, direction=g.direction, service=g.service,
                           destination=d.destination, band=d.band, prefix=d.prefix, calls=g.count,
                           quantity=g.units, unit=d.unit, amount=d.amount, currency=invoice_currency,
                           agreement=agreement.key if agreement is not None else g.agreement))
    return out


def without_numbers(records: pa.Table) -> pa.Table:
    return records.append_column("a_number", pa.nulls(records.num_rows, pa.string())).append_column(
        "b_number", pa.nulls(records.num_rows, pa.string()))


def with_numbers(records: pa.Table, numbers: pa.Table | None) -> pa.Table:
    """Our kept records with the calling and called numbers of the input records (by id)."""
    keeper = NumberKeeper(set())
    if numbers is not None and numbers.num_rows:
        keeper.pending.append(numbers.select(list(NUMBER_COLUMNS)))
    return keeper.attach(records)


class NumberKeeper:
    """The ids and numbers of the input records of the billed services (the others are never
    compared), held until the records rated from them are written (:meth:`attach`) and then
    let go: the input is read once, in order, so what is held is about a chunk, whatever the
    period's size (and the records that were rejected, which are never written).

    ``more``: input tables read on demand when a written record's input is not held yet (the
    store's side reads a cycle's rated file against the intake files it was rated from)."""

    def __init__(self, services: set[tuple[str, str]], more: Iterable[pa.Table] | None = None):
        self.services = services
        self.pending: list[pa.Table] = []
        self.more: Iterator[pa.Table] | None = iter(more) if more is not None else None
        self._passes = 0

    def wrap(self, chunks: Callable[[], Iterable[engine.Chunk]] | Sequence[engine.Chunk]) -> Callable[[], Any]:
        def records() -> Iterable[engine.Chunk]:
            self._passes += 1
            first = self._passes == 1  # a second pass (cycle totals) writes no rated records
            source = chunks() if callable(chunks) else chunks
            for batch_id, table in source:
                if first:
                    self.keep(table)
                yield batch_id, table
        return records

    def keep(self, table: pa.Table) -> None:
        if not all(c in table.column_names for c in NUMBER_COLUMNS):
            return
        if self.services:
            billed = billed_rows(table.select([c for c in (*NUMBER_COLUMNS, "direction", "service")
                                               if c in table.column_names]), self.services)
            if billed is None:
                return
            table = billed
        self.pending.append(pa.table({c: number_column(table.column(c)) if c != "id" else table.column(c)
                                      for c in NUMBER_COLUMNS}))

    def _held(self) -> pa.Table | None:
        if not self.pending:
            return None
        if len(self.pending) > 1:
            types = {t.schema.field(c).type for t in self.pending for c in ("a_number", "b_number")}
            if len(types) > 1:  # some chunks' numbers were not all digits: text for all
                self.pending = [t.cast(pa.schema([t.schema.field("id"), ("a_number", pa.string()),
                                                  ("b_number", pa.string())])) for t in self.pending]
            self.pending = [pa.concat_tables(self.pending)]
        return self.pending[0]

    def attach(self, records: pa.Table) -> pa.Table:
        """``records`` (with an ``id``) with the calling and called numbers of their input
        records (null for a record whose input was not seen); those inputs are let go."""
        import polars as pl  # lazy: polars only where records are compared

        held = self._held()
        n = records.num_rows
        if held is not None and held.num_rows >= n and held.schema.field("id").type == records.schema.field("id").type \
                and held.slice(0, n).column("id").equals(records.column("id")):
            # the common case: the records rated are the inputs held, in order (none rejected)
            self.pending = [held.slice(n)] if held.num_rows > n else []
            return records.append_column("a_number", held.column("a_number").slice(0, n)).append_column(
                "b_number", held.column("b_number").slice(0, n))
        left = pl.from_arrow(records.select(["id"]))
        while True:
            held = self._held()
            if held is None:
                if self._read_more(records.num_rows):
                    continue
                return without_numbers(records)
            right = pl.from_arrow(held).with_columns(pl.lit(True).alias("_held"))
            if left.schema["id"] != right.schema["id"]:
                right = right.with_columns(pl.col("id").cast(left.schema["id"], strict=False))
            try:  # ids are unique (intake sees to it); validated while the join builds its table
                joined = left.join(right, on="id", how="left", validate="m:1", maintain_order="left")
            except pl.exceptions.ComputeError:
                joined = left.join(right.unique(subset=["id"], keep="first", maintain_order=True), on="id",
                                   how="left", maintain_order="left")
            missing = joined.get_column("_held").null_count()
            if missing and self._read_more(missing):
                continue
            break
        rest = right.join(left, on="id", how="anti")
        self.pending = [rest.drop("_held").to_arrow()] if rest.height else []
        return records.append_column("a_number", joined.get_column("a_number").to_arrow()).append_column(
            "b_number", joined.get_column("b_number").to_arrow())

    def _read_more(self, rows: int) -> bool:
        """Read at least ``rows`` more input records of :attr:`more` (False: there are none)."""
        if self.more is None:
            return False
        got = 0
        for table in self.more:
            self.keep(table)
            got += table.num_rows
            if got >= rows:
                return True
        self.more = None
        return got > 0


def number_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Phone numbers as int64 when every one is digits without a leading zero (E.164 digits fit:
    a third of the memory of text, and faster joins), else as text."""
    text = pc.cast(col, pa.string())
    if pc.any(pc.starts_with(text, "0")).as_py():
        return text
    try:
        return pc.cast(text, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return text


def run_ours(inputs: engine.CycleInputs, invoice_currency: str, *, records: bool = True) -> OurView:
    """Run the engine on ``inputs`` (the partner's period, as the store or a caller builds them)
    keeping what a reconciliation needs: nothing is billed or stored."""
    plan, code = inputs.plan, inputs.partner.code
    services = billed_by_partner(plan, code)
    scale = plan_scale(plan)
    numbers = NumberKeeper(services) if records else None
    keeper = RecordKeeper(services, scale, numbers) if records else None
    run_inputs = replace(inputs, sinks=KeepingSinks(keeper), validators=(), accept=("all",),
                         records=numbers.wrap(inputs.records) if numbers is not None else inputs.records)
    try:
        result = engine.run(run_inputs)
    except CycleError as e:
        raise ReconcileError(f"our view of {code} {inputs.period.label} could not be rated: {e}") from None
    lines = our_lines(result.lines, plan, services, invoice_currency, inputs.fx, inputs.period)
    kept = keeper.result() if keeper is not None else None
    return OurView(partner=code, period=inputs.period, currency=invoice_currency, lines=lines, records=kept,
                   scale=scale, services=services)


def our_view(plan: Plan, partner: str, period: Any, records: pa.Table | Sequence[engine.Chunk], invoice_currency: str,
             *, fx: FxTable | None = None, keep_records: bool = True) -> OurView:
    """Our view of ``partner``'s ``period`` from records given by hand (one table or chunks)."""
    try:
        inputs = engine.CycleInputs.of(plan, partner, period, records, fx=fx)
    except CycleError as e:
        raise ReconcileError(str(e)) from None
    return run_ours(inputs, invoice_currency, records=keep_records)
