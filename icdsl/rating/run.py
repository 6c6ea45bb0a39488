"""Rate a traffic file in bulk: stream it in batches through intake and the batch executor, and
write the rated records and the rejects, with counts that reconcile.

``read == rated + rejected + duplicates`` holds at the end of every run and is checked: intake
rejects (bad rows), rating rejects (unknown partner, no rate, ...) and duplicates all land in
the rejects output with their reason and their original content.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from icdsl.plan.model import Plan, RecordLayout
from icdsl.rating.batch import rate_batch_with_charges
from icdsl.rating.cluster import shared
from icdsl.rating.intake import transit
from icdsl.rating.readers import open_reader
from icdsl.rating.result import rated_schema, record_charges_schema
from icdsl.safecsv import ArrowWriter


class LayoutError(Exception):
    pass


@dataclass
class RateSummary:
    read: int = 0
    rated: int = 0
    rejected: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    totals: dict[str, Decimal] = field(default_factory=dict)  # currency -> amount
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    transit_sides: int = 0  # termination sides of transit records, rated besides the records read
    record_charges: int = 0  # rows of the record charges output (record x surcharge that applies)
    charge_totals: dict[str, Decimal] = field(default_factory=dict)  # "label (CUR)" -> exact sum of rounded amounts

    def reconciles(self) -> bool:
        return self.read + self.transit_sides == self.rated + self.rejected + self.duplicates

    def to_dict(self) -> dict:
        return {
            "read": self.read, "transit_sides": self.transit_sides, "rated": self.rated, "rejected": self.rejected, "duplicates": self.duplicates,
            "by_reason": dict(sorted(self.by_reason.items())),
            "totals": {k: str(v) for k, v in sorted(self.totals.items())},
            "reconciles": self.reconciles(), "seconds": round(self.seconds, 3), "outputs": self.outputs,
            "record_charges": self.record_charges,
            "charge_totals": {k: str(v) for k, v in sorted(self.charge_totals.items())},
        }

    def text(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.by_reason.items()))
        totals = ", ".join(f"{v} {k}" for k, v in sorted(self.totals.items())) or "nothing"
        check = "counts reconcile" if self.reconciles() else "COUNTS DO NOT RECONCILE"
        sides = f" + transit sides {self.transit_sides:,}" if self.transit_sides else ""
        return (f"read {self.read:,}{sides} = rated {self.rated:,} + rejected {self.rejected:,} + duplicates "
                f"{self.duplicates:,} ({check})" + (f"\nrejects by reason: {reasons}" if reasons else "")
                + f"\nrated amount: {totals}"
                + (f"\nrecord charges (surcharges, not in the rated amount): {self.record_charges:,} ("
                   + ", ".join(f"{k} {v}" for k, v in sorted(self.charge_totals.items())) + ")"
                   if self.record_charges else "")
                + f"\n{self.rated / self.seconds if self.seconds else 0:,.0f} records/s")


def choose_layout(plan: Plan, name: str | None) -> RecordLayout | None:
    if name is not None:
        for lay in plan.layouts:
            if lay.name == name:
                return lay
        known = ", ".join(lay.name for lay in plan.layouts) or "none"
        raise LayoutError(f"no records layout named '{name}' (layouts: {known})")
    if len(plan.layouts) == 1:
        return plan.layouts[0]
    if len(plan.layouts) > 1:
        raise LayoutError("the rule files declare several records layouts: choose one with --layout "
                          + "(" + ", ".join(lay.name for lay in plan.layouts) + ")")
    return None


class _Sink:
    """Writes tables as they come to Parquet or CSV, keeping the first batch's schema."""

    def __init__(self, path: Path):
        self.path = path
        self.writer = None
        self.schema = None
        self.csv = path.suffix.lower() == ".csv"
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0 and self.writer is not None:
            return
        if self.schema is None:
            self.schema = table.schema
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.csv:  # a file people open: text cells neutralized against spreadsheet formulas
                self.writer = ArrowWriter(self.path, self.schema, numeric=("rate",))
            else:
                # statistics cost as much as the encoding and nothing reads them back here;
                # dictionary pages only where values repeat (trying them on ids, times and
                # amounts costs a fifth of the writing time for nothing)
                self.writer = pq.ParquetWriter(str(self.path), self.schema, compression="snappy",
                                               write_statistics=False, use_dictionary=_dictionary_columns(self.schema),
                                               column_encoding=_delta_columns(self.schema))
        else:
            table = _conform(table, self.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self, empty_schema: pa.Schema | None = None) -> None:
        if self.writer is None and empty_schema is not None:
            self.write(empty_schema.empty_table())
        if self.writer is not None:
            self.writer.close()


#: integer columns of rated records with few distinct values
_REPEATING = frozenset({"agreement_version", "billed_units", "duration_s", "record"})


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_dictionary(f.type) or f.name in _REPEATING]


def _delta_columns(schema: pa.Schema) -> dict[str, str]:
    """Integer and time columns whose values mostly grow (ids, starts): delta encoding makes
    the file a quarter smaller and costs no more time than plain pages."""
    return {f.name: "DELTA_BINARY_PACKED" for f in schema
            if f.name in ("id", "start") and f.name not in _REPEATING
            and (pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type))}


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    if table.schema.equals(schema):
        return table
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.table(cols, schema=schema)


def _reject_rows(rejects: pa.Table) -> pa.Table:
    """Rejects as text columns: row, id, reason, detail, raw (the original content)."""
    return rejects


class _WriteBehind:
    """Writes output tables in a second thread while the next batch is read and rated (Parquet
    encoding releases the GIL); at most one table waits, so memory stays bounded."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="icdsl-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    item[0].write(item[1])
                except BaseException as e:  # reported by close()
                    self.error = e

    def put(self, sink: _Sink, table: pa.Table) -> None:
        if self.error is not None:
            raise self.error
        self.q.put((sink, table))

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def read_ahead(batches: Iterator[Any]) -> Iterator[Any]:
    """The batches of a reader, the next one read in a second thread while the caller rates
    the current one (Arrow's reading and normalizing release the GIL). At most one batch
    waits, so memory stays bounded; an error of the reader is raised where it happened in the
    sequence."""

    q: queue.Queue = queue.Queue(maxsize=1)
    done = object()
    stop = threading.Event()

    def run() -> None:
        try:
            for b in batches:
                while not stop.is_set():
                    try:
                        q.put((b, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put((done, e))

    thread = threading.Thread(target=run, name="icdsl-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def output_paths(out: Path) -> tuple[Path, Path, Path]:
    """OUT.parquet / OUT.csv: rated there, rejects beside it; a folder: rated.parquet, rejects.parquet."""
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".csv"):
        stem = out.with_suffix("")
        return out, stem.with_name(stem.name + ".rejects" + suffix), stem.with_name(stem.name + ".summary.json")
    return out / "rated.parquet", out / "rejects.parquet", out / "summary.json"


def record_charges_path(out: Path) -> Path:
    """Where ``rate_file`` writes the per-record charges (surcharges): OUT.charges.parquet /
    OUT.charges.csv beside a file output, record_charges.parquet in a folder output."""
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".csv"):
        stem = out.with_suffix("")
        return stem.with_name(stem.name + ".charges" + suffix)
    return out / "record_charges.parquet"


def _plain_strings(table: pa.Table) -> pa.Table:
    return pa.table({n: (pc.cast(c, pa.string()) if pa.types.is_dictionary(c.type) else c)
                     for n, c in zip(table.column_names, table.columns, strict=True)})


def rated_batches(plan: Plan, batches: Iterator[Any], client: Any = None) -> Iterator[tuple[Any, Any]]:
    """Each intake batch with its rating (rated, rejects, record charges; None without
    records), in the order read: here, or as tasks of a Dask ``client`` (the plan sent once to
    every worker; at most two batches per worker in flight, so memory stays bounded). Reading,
    deduplicating and writing stay in this process, so the outputs are those of a run without
    workers, byte for byte."""
    if client is None:
        for batch in batches:
            yield batch, rate_batch_with_charges(plan, _both_sides(batch)) if batch.records.num_rows else None
        return
    plan_f = shared(client, plan, "plan")
    depth = 2 * max(1, len(client.scheduler_info().get("workers", {})))
    pending: deque[tuple[Any, Any]] = deque()

    def take() -> tuple[Any, Any]:
        batch, fut = pending.popleft()
        if fut is None:
            return batch, None
        try:
            return batch, fut.result()
        finally:
            fut.release()

    try:
        for batch in batches:
            fut = (client.submit(rate_batch_with_charges, plan_f, _both_sides(batch), pure=False)
                   if batch.records.num_rows else None)
            pending.append((batch, fut))
            while len(pending) > depth:
                yield take()
        while pending:
            yield take()
    finally:
        for _batch, fut in pending:
            if fut is not None:
                fut.release()
        plan_f.release()


def _both_sides(batch: Any) -> pa.Table:
    """The batch's records with the termination side of each transit record (both are rated)."""
    return transit.sides(batch.records)[0]


def rate_file(plan: Plan, cdrs: Path, out: Path, *, layout: RecordLayout | None = None,
              batch_rows: int = 500_000, progress: Callable[[int, int], None] | None = None,
              reader: str | None = None, reader_options: dict[str, str] | None = None,
              client: Any = None) -> RateSummary:
    """``client``: a Dask client whose workers rate the batches (:func:`rated_batches`)."""

    t0 = time.perf_counter()
    rated_path, rejects_path, summary_path = output_paths(out)
    charges_path = record_charges_path(out)
    summary = RateSummary()
    reader = open_reader(cdrs, layout, reader=reader, options=reader_options, batch_rows=batch_rows)
    rated_sink, rejects_sink, charges_sink = _Sink(rated_path), _Sink(rejects_path), _Sink(charges_path)
    writer = _WriteBehind()
    intake_reject_schema = None
    try:
        # the per-record charges too (cycle.* conditions are false here: no cycle totals)
        for batch, rating in rated_batches(plan, read_ahead(reader.batches()), client):
            if batch.rejects.num_rows:
                writer.put(rejects_sink, _reject_rows(batch.rejects))
            intake_reject_schema = batch.rejects.schema
            if rating is not None:
                rated, rejects, charges = rating
                if charges.num_rows:
                    charges = _plain_strings(charges)
                    writer.put(charges_sink, charges)
                    _add_charges(summary, charges)
                if rated.num_rows:
                    writer.put(rated_sink, rated)
                    _add_totals(summary, rated)
                if rejects.num_rows:
                    writer.put(rejects_sink, _rating_rejects(rejects, batch))
                    for reason, n in _count(rejects).items():
                        summary.by_reason[reason] = summary.by_reason.get(reason, 0) + n
                summary.rated += rated.num_rows
                summary.rejected += rejects.num_rows
                summary.transit_sides += transit.termination_of(batch.records).num_rows
            if progress is not None:
                progress(batch.counts.read, reader.counts.read)
    finally:
        writer.close()
        rated_sink.close(rated_schema(pa.schema([]), plan_precision(plan)))
        rejects_sink.close(intake_reject_schema)
        charges_sink.close(_plain_strings(record_charges_schema(pa.schema([]), plan_precision(plan)).empty_table()).schema)
    c = reader.counts
    summary.read = c.read
    summary.duplicates = c.duplicates
    summary.rejected += c.rejected
    for reason, n in c.by_reason.items():
        summary.by_reason[reason] = summary.by_reason.get(reason, 0) + n
    summary.seconds = time.perf_counter() - t0
    summary.outputs = {"rated": str(rated_path), "rejects": str(rejects_path), "summary": str(summary_path),
                       "record_charges": str(charges_path)}
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary


def plan_precision(plan: Plan) -> int:
    precisions = [s.rounding.precision for a in plan.agreements for s in a.services]
    return max(precisions, default=6)


def _add_totals(summary: RateSummary, rated: pa.Table) -> None:
    currencies = rated.column("currency").unique().to_pylist()
    for cur in currencies:
        part = rated.filter(pc.equal(rated.column("currency"), cur)) if len(currencies) > 1 else rated
        total = pc.sum(part.column("amount")).as_py() or Decimal(0)
        summary.totals[cur] = summary.totals.get(cur, Decimal(0)) + Decimal(total)


SMALL_GROUPING = 10_000  # charges summed in Python below this: Arrow's group_by loads Acero (a small file's whole rating)


def _add_charges(summary: RateSummary, charges: pa.Table) -> None:
    """The per-record charges' totals by charge and currency (exact decimal sums either way)."""
    summary.record_charges += charges.num_rows
    if charges.num_rows < SMALL_GROUPING:
        groups: dict[tuple[str, str], Decimal] = {}
        for name, cur, amount in zip(charges.column("charge").to_pylist(), charges.column("currency").to_pylist(),
                                     charges.column("amount").to_pylist(), strict=True):
            total = groups.setdefault((name, cur), Decimal(0))
            if amount is not None:  # null amounts add nothing, as in Arrow's sum
                groups[name, cur] = total + Decimal(amount)
        totals = [(name, cur, total) for (name, cur), total in groups.items()]
    else:
        g = charges.group_by(["charge", "currency"], use_threads=False).aggregate([("amount", "sum")])
        totals = list(zip(g.column("charge").to_pylist(), g.column("currency").to_pylist(),
                          g.column("amount_sum").to_pylist(), strict=True))
    for name, cur, total in totals:
        key = f"{name} ({cur})"
        summary.charge_totals[key] = summary.charge_totals.get(key, Decimal(0)) + Decimal(total or 0)


def _count(rejects: pa.Table) -> dict[str, int]:
    vc = pc.value_counts(rejects.column("reason"))
    return {d["values"]: d["counts"] for d in vc.to_pylist()}


def _rating_rejects(rejects: pa.Table, batch) -> pa.Table:
    """Rating rejects in the same layout as intake rejects: row, id, reason, detail, raw."""

    n = rejects.num_rows
    ids = rejects.column("id")
    ids = ids if ids.type == pa.string() else ids.cast(pa.string())
    keep = {"id", "reason", "detail"}
    raw_cols = [c for c in rejects.column_names if c not in keep]
    raw = _json_rows(rejects.select(raw_cols)) if raw_cols else pa.nulls(n, pa.string())
    schema = batch.rejects.schema
    cols = {"row": pa.nulls(n, pa.int64()), "id": ids, "reason": rejects.column("reason"),
            "detail": rejects.column("detail"), "raw": raw}
    return pa.table({f.name: (cols[f.name] if f.name in cols else pa.nulls(n, f.type)) for f in schema}) \
        if schema.names else pa.table(cols)


#: up to this many reject rows are encoded in plain Python, which answers at once on a small
#: file; more go through polars, vectorized (importing it costs a third of a second)
_SMALL_JSON_ROWS = 10_000


def _json_rows(table: pa.Table) -> pa.Array:
    """Each row as a JSON object (the record as it was given to rating): few rows of plain
    column types in Python, the others vectorized by polars; both give the same bytes."""
    if table.num_rows <= _SMALL_JSON_ROWS:
        cols = [_json_values(table.column(i)) for i in range(table.num_columns)]
        if all(c is not None for c in cols):
            keys = [json.dumps(name, ensure_ascii=False) + ":" for name in table.column_names]
            return pa.array(["{" + ",".join(k + v for k, v in zip(keys, row, strict=True)) + "}"
                             for row in zip(*cols, strict=True)], pa.string())
    return _json_rows_polars(table)


def _json_values(col: pa.ChunkedArray) -> list[str] | None:
    """The column's values as polars' ``struct.json_encode`` writes them, or None for a type
    left to polars (floats, decimals, dates, other time zones)."""
    t = col.type
    if pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return ["null" if v is None else json.dumps(v, ensure_ascii=False) for v in col.to_pylist()]
    if pa.types.is_integer(t):
        return ["null" if v is None else str(v) for v in col.to_pylist()]
    if pa.types.is_boolean(t):
        return ["null" if v is None else ("true" if v else "false") for v in col.to_pylist()]
    if pa.types.is_null(t):
        return ["null"] * len(col)
    if pa.types.is_timestamp(t) and t.unit in ("ms", "us", "ns") and t.tz in (None, "UTC"):
        # Arrow's %S carries the fraction of the unit, as polars writes it; UTC as +00:00
        offset = "+00:00" if t.tz else ""
        return ["null" if v is None else f'"{v}{offset}"'
                for v in pc.strftime(col, format="%Y-%m-%d %H:%M:%S").to_pylist()]
    return None


def _json_rows_polars(table: pa.Table) -> pa.Array:
    # lazy: polars only for many raw rows of rejects, or types the plain encoding leaves to it
    import polars as pl

    df = pl.from_arrow(table)
    if isinstance(df, pl.Series):
        df = df.to_frame()
    df = df.with_columns(pl.col(c).cast(pl.String) for c, t in df.schema.items()
                         if t.is_temporal() or t == pl.Categorical or isinstance(t, pl.Enum))
    return df.select(pl.struct(pl.all()).struct.json_encode().alias("raw")).to_series().to_arrow().cast(pa.string())
