"""Billing cycles: rate a partner's period, check it, draft its invoices, finalize them.

States: ``open -> rated -> validated -> invoiced -> finalized``, each with its timestamp on the
cycle row and an event in ``cycle_events`` (the progress and exception log).

:func:`run_cycle` does ``open -> invoiced`` in **one transaction per partner**:

1. take the partner's lock (PostgreSQL: ``pg_try_advisory_xact_lock``, failing at once with
   :class:`CycleBusy` if another session holds it; then ``SELECT ... FOR NO KEY UPDATE NOWAIT``
   on the cycle row, whose (partner, start, end) is unique; SQLite: ``BEGIN IMMEDIATE``);
2. remove leftovers of interrupted runs from the cycle's folder (files no committed row
   references: nobody else can be writing there while we hold the lock);
3. read the partner's passed records of the period from every intake batch that has some,
   rate them with the batch executor, chunk by chunk, streaming the rated records (with a
   ``line`` column: the invoice line each record belongs to, and the ``batch_id`` it came from)
   and the rating rejects to temporary Parquet files;
4. fsync and rename the files (content-addressed names), then validate: the counts reconcile
   (``records_in == rated + rejected``), the amounts read back from the file equal the lines'
   sums, every agreement version used is in the store;
5. write the draft invoices (one per invoice stream and currency) and their lines, the data
   file rows, the cycle's inputs and states, and commit.

Killed at any point before the commit, the run leaves no row behind (only files no row
references, removed by the next run); rerun, it writes the same bytes under the same names
and the same rows. A failed run (an exception) is rolled back and logged as an ``error``
event on the (open) cycle.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.billing.errors import CycleBusy, CycleError, CycleStateError, StoreError, ValidationError
from icdsl.billing.periods import Period, parse_period
from icdsl.billing.types import Money
from icdsl.plan.model import Agreement, Plan

if TYPE_CHECKING:
    from icdsl.billing.store import Store

CHUNK_ROWS = 1 << 20  # records rated at a time
READ_ROWS = 1 << 18
LINE_DIMS = ("agreement_hash", "agreement", "agreement_version", "rule", "direction", "service", "prefix",
             "destination", "band", "rate", "currency")
SEP = "\x1f"
TIME_UNITS = ("second", "minute", "hour")
VOLUME_UNITS = ("B", "byte", "KB", "MB", "GB", "TB")
REJECT_COLUMNS = ("id", "reason", "detail", "partner", "direction", "service", "a_number", "b_number", "start",
                  "duration_s", "volume", "units")


def rated_file_schema(id_type: pa.DataType, scale: int) -> pa.Schema:
    """The rated Parquet of a cycle: the rated table (plain strings instead of dictionaries,
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


REJECTS_FILE_SCHEMA = pa.schema([
    ("id", pa.string()), ("reason", pa.string()), ("detail", pa.string()), ("partner", pa.string()),
    ("direction", pa.string()), ("service", pa.string()), ("a_number", pa.string()), ("b_number", pa.string()),
    ("start", pa.timestamp("us", tz="UTC")), ("duration_s", pa.int64()), ("volume", pa.int64()),
    ("units", pa.int64()), ("batch_id", pa.int64()),
])


# --------------------------------------------------------------------------- reports


@dataclass
class InvoiceSummary:
    id: int
    stream: str
    currency: str
    status: str
    subtotal: Decimal
    lines: int
    number: str | None = None


@dataclass
class CycleReport:
    cycle_id: int
    partner: str
    period: Period
    status: str
    already: bool = False  # nothing was done: the cycle was already at least invoiced
    records_in: int = 0
    rated: int = 0
    rejected: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    totals: dict[str, Decimal] = field(default_factory=dict)
    invoices: list[InvoiceSummary] = field(default_factory=list)
    rated_file: str | None = None
    rated_sha256: str | None = None
    rejects_file: str | None = None
    batches: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{self.partner} {self.period.label}: {self.status}"
        if self.already:
            head += " (already; nothing done)"
        totals = ", ".join(f"{v} {k}" for k, v in sorted(self.totals.items())) or "nothing"
        out = [head, f"  records {self.records_in}: rated {self.rated}, rejected {self.rejected}"
                     + (f" ({', '.join(f'{k} {v}' for k, v in sorted(self.rejects_by_reason.items()))})"
                        if self.rejects_by_reason else ""),
               f"  total {totals}"]
        for inv in self.invoices:
            out.append(f"  invoice #{inv.id} {inv.number or '(draft)'} {inv.stream} {inv.currency}: "
                       f"{inv.lines} line(s), subtotal {inv.subtotal}")
        return "\n".join(out)


# --------------------------------------------------------------------------- helpers


def money(value: Decimal) -> Decimal:
    """An amount at the store's money scale (8 decimals); raises rather than round."""
    return Money()._exact(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def cycle_dir(partner: str, period: Period) -> str:
    return f"cycles/{_safe(partner)}/{period.local_start}_{period.local_end}"


def resolve_period(s: Session, partner: str, period: Any, plan: Plan | None) -> tuple[M.Partner, Period]:
    """The partner's row and the period in its time zone; refuses a plan whose declaration of
    the partner differs from the store's (load the plan first)."""
    from icdsl.billing.store import partner_decl_hash

    row = s.scalars(select(M.Partner).where(M.Partner.code == partner)).first()
    if row is None:
        raise CycleError(f"partner {partner} is not in the store: load the rules first "
                         "(store.load_plan(plan, program), `icdsl load`)")
    if plan is not None:
        declared = plan.partner(partner)
        if declared is None:
            raise CycleError(f"partner {partner} is not declared in the rules given")
        if partner_decl_hash(declared) != row.decl_hash:
            raise CycleError(f"the rules declare partner {partner} differently from the store: load them first "
                             "(store.load_plan(plan, program), `icdsl load`)")
    return row, parse_period(period, row.timezone, row.billing)


def _event(s: Session, cycle: M.BillingCycle, kind: str, message: str, *, to: str | None = None,
           details: dict[str, Any] | None = None) -> None:
    from icdsl.billing.store import now

    s.add(M.CycleEvent(cycle_id=cycle.id, at=now(), kind=kind, from_state=cycle.status if to else None,
                       to_state=to, message=message, details=details))


def _advance(s: Session, cycle: M.BillingCycle, to: str, message: str, details: dict[str, Any] | None = None) -> None:
    from icdsl.billing.store import now

    _event(s, cycle, "state", message, to=to, details=details)
    cycle.status = to
    setattr(cycle, f"{to}_at", now())


def _scale(plan: Plan) -> int:
    scale = 6
    for a in plan.agreements:
        scale = max(scale, a.rounding.precision, *(sv.rounding.precision for sv in a.services))
    return scale


def _quantity_unit(agreement: Agreement | None, direction: str, service: str) -> tuple[str, str | None]:
    """(unit of the billed quantity, unit of the rate) for a service."""
    sp = agreement.service(direction, service) if agreement else None
    if sp is None:
        return "unit", None
    if sp.volume is not None or sp.unit in VOLUME_UNITS:
        return "byte", sp.unit
    if sp.unit in TIME_UNITS:
        return "second", sp.unit
    return sp.unit, sp.unit


def _stream(agreement: Agreement | None, direction: str, service: str) -> str:
    for st in agreement.streams if agreement else ():
        for sel in st.selectors:
            if sel[0] == "traffic" and tuple(sel[1:]) == (direction, service):
                return st.name
    return "traffic"


def _description(direction: str, service: str, destination: str, band: str) -> str:
    text = f"{direction} {service}"
    if destination:
        text += f" to {destination}"
    if band and band != "all":
        text += f" ({band})"
    return text


# --------------------------------------------------------------------------- rating


class _Rater:
    """Rates chunks of records and streams them to the cycle's files, keeping per-line sums."""

    def __init__(self, plan: Plan, rated_w: Any, rejects_w: Any, scale: int):
        self.plan = plan
        self.rated_w = rated_w
        self.rejects_w = rejects_w
        self.scale = scale
        self.keys: list[str] = []
        self.key_index: dict[str, int] = {}
        self.lines: dict[int, list[Any]] = {}  # line -> [count, units, amount, first, last]
        self.records_in = 0
        self.rated = 0
        self.rejected = 0
        self.by_reason: dict[str, int] = defaultdict(int)
        self.by_batch: dict[int, int] = defaultdict(int)

    def rate(self, table: pa.Table, batch_id: int) -> None:
        from icdsl.billing import store as st
        from icdsl.rating.batch import rate_batch

        n = table.num_rows
        if not n:
            return
        self.records_in += n
        self.by_batch[batch_id] += n
        rated, rejects = rate_batch(self.plan, table)
        st.checkpoint("cycle:rated")
        if rated.num_rows:
            amount_type = rated.schema.field("amount").type
            if amount_type.scale > self.scale:
                raise ValidationError(f"amounts have {amount_type.scale} decimals, more than the {self.scale} "
                                      "expected from the agreements' rounding")
            rated = rated.append_column("batch_id", pa.array(np.full(rated.num_rows, batch_id, np.int64)))
            line = self._lines(rated)
            rated = rated.append_column("line", line)
            self.rated_w.write(rated)
            self.rated += rated.num_rows
            self._sums(rated, line)
        if rejects.num_rows:
            cols = {}
            for name in REJECT_COLUMNS:
                typ = REJECTS_FILE_SCHEMA.field(name).type
                if name in rejects.column_names:
                    cols[name] = pc.cast(rejects.column(name), typ)
                else:
                    cols[name] = pa.nulls(rejects.num_rows, typ)
            cols["batch_id"] = pa.array(np.full(rejects.num_rows, batch_id, np.int64))
            self.rejects_w.write(pa.table(cols, schema=REJECTS_FILE_SCHEMA))
            self.rejected += rejects.num_rows
            for reason, count in zip(*_value_counts(rejects.column("reason")), strict=True):
                self.by_reason[reason] += count

    def _lines(self, rated: pa.Table) -> pa.Array:
        cols = [pc.fill_null(pc.cast(rated.column(c), pa.string()), "") for c in LINE_DIMS]
        keys = pc.binary_join_element_wise(*cols, SEP)
        for k in pc.unique(keys).to_pylist():
            if k not in self.key_index:
                self.key_index[k] = len(self.keys)
                self.keys.append(k)
        return pc.index_in(keys, value_set=pa.array(self.keys, pa.string())).cast(pa.int32())

    def _sums(self, rated: pa.Table, line: pa.Array) -> None:
        t = pa.table({"line": line, "units": rated.column("billed_units"), "amount": rated.column("amount"),
                      "start": rated.column("start")})
        g = t.group_by("line", use_threads=False).aggregate(
            [("line", "count"), ("units", "sum"), ("amount", "sum"), ("start", "min"), ("start", "max")])
        for key, count, units, amount, lo, hi in zip(
            g.column("line").to_pylist(), g.column("line_count").to_pylist(), g.column("units_sum").to_pylist(),
            g.column("amount_sum").to_pylist(), g.column("start_min").to_pylist(), g.column("start_max").to_pylist(),
            strict=True,
        ):
            acc = self.lines.get(key)
            if acc is None:
                self.lines[key] = [count, units, amount, lo, hi]
            else:
                acc[0] += count
                acc[1] += units
                acc[2] += amount
                acc[3], acc[4] = min(acc[3], lo), max(acc[4], hi)

    def line_dims(self, key: int) -> dict[str, Any]:
        values = self.keys[key].split(SEP)
        dims = dict(zip(LINE_DIMS, values, strict=True))
        dims["agreement_version"] = int(dims["agreement_version"]) if dims["agreement_version"] else None
        return dims


def _value_counts(arr: pa.ChunkedArray | pa.Array) -> tuple[list[str], list[int]]:
    vc = pc.value_counts(arr)
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


def _read_partner(path: str, partner: str, period: Period) -> Any:
    """The records of ``partner`` in ``period`` from an intake records file, in file order, in
    tables of about CHUNK_ROWS rows (row groups without the partner are skipped)."""
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    groups = []
    pi = names.index("partner") if "partner" in names else -1
    for i in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(i).column(pi).statistics if pi >= 0 else None
        if stats is not None and stats.has_min_max and not (stats.min <= partner <= stats.max):
            continue
        groups.append(i)
    if not groups:
        return
    lo = pa.scalar(period.start, pa.timestamp("us", tz="UTC"))
    hi = pa.scalar(period.end, pa.timestamp("us", tz="UTC"))
    acc: list[pa.Table] = []
    size = 0
    for rb in pf.iter_batches(batch_size=READ_ROWS, row_groups=groups, use_threads=False):
        t = pa.Table.from_batches([rb])
        mask = pc.and_(pc.equal(t.column("partner"), partner),
                       pc.and_(pc.greater_equal(t.column("start"), lo), pc.less(t.column("start"), hi)))
        t = t.filter(mask)
        if t.num_rows:
            acc.append(t)
            size += t.num_rows
        if size >= CHUNK_ROWS:
            yield pa.concat_tables(acc).combine_chunks()
            acc, size = [], 0
    if acc:
        yield pa.concat_tables(acc).combine_chunks()


# --------------------------------------------------------------------------- running a cycle


def _report(s: Session, cycle: M.BillingCycle, period: Period, *, already: bool) -> CycleReport:
    files = {f.kind: f for f in s.scalars(select(M.DataFile).where(M.DataFile.cycle_id == cycle.id))}
    invoices = []
    for inv in s.scalars(select(M.Invoice).where(M.Invoice.cycle_id == cycle.id).order_by(M.Invoice.id)):
        n = s.scalar(select(sa.func.count()).select_from(M.InvoiceLine).where(M.InvoiceLine.invoice_id == inv.id))
        invoices.append(InvoiceSummary(inv.id, inv.stream, inv.currency, inv.status, inv.subtotal, n or 0, inv.number))
    rated = files.get("rated")
    rejects = files.get("rating_rejects")
    by_reason: dict[str, int] = {}
    if cycle.totals and "_rejects_by_reason" in cycle.totals:
        by_reason = dict(cycle.totals["_rejects_by_reason"])
    totals = {k: Decimal(v) for k, v in (cycle.totals or {}).items() if not k.startswith("_")}
    batches = list(s.scalars(select(M.CycleInput.batch_id).where(M.CycleInput.cycle_id == cycle.id)
                             .order_by(M.CycleInput.batch_id)))
    return CycleReport(
        cycle_id=cycle.id, partner=cycle.partner_code, period=period, status=cycle.status, already=already,
        records_in=cycle.records_in or 0, rated=cycle.rated_count or 0, rejected=cycle.rejected_count or 0,
        rejects_by_reason=by_reason, totals=totals, invoices=invoices,
        rated_file=rated.path if rated else None, rated_sha256=rated.sha256 if rated else None,
        rejects_file=rejects.path if rejects else None, batches=batches,
    )


def _lock_cycle(store: Store, s: Session, partner: M.Partner, period: Period) -> M.BillingCycle | None:
    if not store.lock(s, f"cycle:{partner.code}", wait=False):
        raise CycleBusy(
            f"a billing cycle of partner {partner.code} is being run by another session right now; "
            f"{period.label} was not started. Wait for it to finish (`icdsl cycle status {partner.code}`)."
        )
    q = select(M.BillingCycle).where(M.BillingCycle.partner_id == partner.id,
                                     M.BillingCycle.period_start == period.start,
                                     M.BillingCycle.period_end == period.end)
    if store.is_postgres:
        q = q.with_for_update(nowait=True, key_share=True)
    try:
        return s.scalars(q).first()
    except sa.exc.OperationalError as e:  # LockNotAvailable: someone holds the row (by hand?)
        raise CycleBusy(f"the cycle {partner.code} {period.label} is locked by another session") from e


def _discard(store: Store, s: Session, cycle: M.BillingCycle) -> None:
    """Remove a not-finalized cycle's drafts and file rows so that it can be rated again (the
    files themselves stay until the next run or gc: the transaction may still roll back)."""
    inv_ids = list(s.scalars(select(M.Invoice.id).where(M.Invoice.cycle_id == cycle.id)))
    if inv_ids:
        s.execute(delete(M.InvoiceLine).where(M.InvoiceLine.invoice_id.in_(inv_ids)))
        s.execute(delete(M.Invoice).where(M.Invoice.id.in_(inv_ids)))
    s.execute(delete(M.DataFile).where(M.DataFile.cycle_id == cycle.id))
    s.execute(delete(M.CycleInput).where(M.CycleInput.cycle_id == cycle.id))
    cycle.records_in = cycle.rated_count = cycle.rejected_count = None
    cycle.totals = None
    cycle.rated_at = cycle.validated_at = cycle.invoiced_at = None
    _event(s, cycle, "state", f"discarded the {cycle.status} results to rate again", to="open")
    cycle.status = "open"
    s.flush()


def run_cycle(store: Store, partner: str, period: Any, plan: Plan, *, program: Any = None,
              rerate: bool = False) -> CycleReport:
    """Open the cycle (its own short transaction), then rate, validate and invoice (draft)
    ``partner``'s ``period`` in one transaction.

    A cycle already invoiced or finalized is left as it is (``already=True``) unless
    ``rerate`` (refused once finalized: corrections go on a credit note)."""
    if program is not None:
        store.load_plan(plan, program)
    with store.session() as s:
        prow, per = resolve_period(s, partner, period, plan)
        cyc = _open(store, s, prow, per)
        if cyc.status in ("invoiced", "finalized") and not rerate:
            return _report(s, cyc, per, already=True)
        cycle_id = cyc.id
    try:
        with store.session() as s:
            return _run(store, s, prow, per, plan, rerate)
    except CycleBusy:
        raise
    except Exception as e:
        _log_failure(store, cycle_id, e)
        raise


def _open(store: Store, s: Session, prow: M.Partner, per: Period) -> M.BillingCycle:
    """The cycle's row, created (state ``open``) if needed: refused if it overlaps another."""
    from icdsl.billing import store as st

    cyc = _lock_cycle(store, s, prow, per)
    if cyc is not None:
        return cyc
    overlap = s.scalars(select(M.BillingCycle).where(
        M.BillingCycle.partner_id == prow.id, M.BillingCycle.period_start < per.end,
        M.BillingCycle.period_end > per.start)).first()
    if overlap is not None:
        raise CycleError(f"{prow.code} {per.label} overlaps cycle {overlap.label} "
                         f"({overlap.local_start} .. {overlap.local_end - timedelta(days=1)}): "
                         "a record must be billed once")
    return _new_cycle(s, prow, per, st.now())


def _log_failure(store: Store, cycle_id: int, e: Exception) -> None:
    """Record a failed run on the (open) cycle, in a transaction of its own."""
    from icdsl.billing.store import now

    try:
        with store.session() as s:
            cyc = s.get(M.BillingCycle, cycle_id)
            if cyc is not None:
                s.add(M.CycleEvent(cycle_id=cyc.id, at=now(), kind="error", from_state=None, to_state=None,
                                   message=f"{type(e).__name__}: {e}", details={"attempt": cyc.attempts + 1}))
    except Exception:  # pragma: no cover - the log must not hide the original error
        pass


def _new_cycle(s: Session, prow: M.Partner, per: Period, t: datetime) -> M.BillingCycle:
    cyc = M.BillingCycle(
        partner_id=prow.id, partner_code=prow.code, frequency=per.frequency, label=per.label,
        timezone=per.timezone, local_start=per.local_start, local_end=per.local_end, period_start=per.start,
        period_end=per.end, status="open", opened_at=t, attempts=0,
    )
    s.add(cyc)
    s.flush()
    s.add(M.CycleEvent(cycle_id=cyc.id, at=t, kind="state", from_state=None, to_state="open",
                       message=f"opened {per}", details=None))
    return cyc


def _run(store: Store, s: Session, prow: M.Partner, per: Period, plan: Plan, rerate: bool) -> CycleReport:
    from icdsl.billing import store as st

    cyc = _lock_cycle(store, s, prow, per)
    st.checkpoint("cycle:locked")
    if cyc is None:
        raise CycleStateError(f"the cycle {prow.code} {per.label} disappeared while it was being started")
    if cyc.status in ("invoiced", "finalized") and not rerate:
        return _report(s, cyc, per, already=True)  # another session finished it meanwhile
    if cyc.status == "finalized":
        raise CycleStateError(f"cycle {prow.code} {per.label} is finalized: it cannot be rated again; "
                              "corrections go on a credit note")
    rel_dir = cycle_dir(prow.code, per)
    # Under the lock, nobody else writes here: whatever no committed row references is left over.
    removed = store.data.clean(rel_dir, store.referenced_files(s))
    if cyc.status != "open":
        _discard(store, s, cyc)
    cyc.attempts += 1
    cyc.plan_hash = st.plan_hash(plan)
    if removed:
        _event(s, cyc, "progress", f"removed {len(removed)} file(s) left by an interrupted run",
               details={"files": removed})

    inputs = s.execute(
        select(M.IntakePartnerStat.batch_id, M.DataFile.path, M.DataFile.sha256)
        .join(M.DataFile, sa.and_(M.DataFile.batch_id == M.IntakePartnerStat.batch_id,
                                  M.DataFile.kind == "intake_records"))
        .where(M.IntakePartnerStat.partner == prow.code, M.IntakePartnerStat.min_start < per.end,
               M.IntakePartnerStat.max_start >= per.start)
        .order_by(M.IntakePartnerStat.batch_id)
    ).all()
    id_types = set()
    for _batch, path, sha in inputs:
        store.data.verify(path, sha)
        id_types.add(pq.read_schema(store.data.abs(path)).field("id").type)
    id_type = pa.int64() if id_types == {pa.int64()} else pa.string()
    scale = _scale(plan)
    _event(s, cyc, "progress", f"rating records of {len(inputs)} intake batch(es)",
           details={"batches": [b for b, _, _ in inputs], "attempt": cyc.attempts})

    rated_w = store.data.writer(rel_dir, "rated", rated_file_schema(id_type, scale))
    rejects_w = store.data.writer(rel_dir, "rating-rejects", REJECTS_FILE_SCHEMA)
    with rated_w, rejects_w:
        rater = _Rater(plan, rated_w, rejects_w, scale)
        for batch_id, path, _sha in inputs:
            for chunk in _read_partner(str(store.data.abs(path)), prow.code, per):
                rater.rate(chunk, batch_id)
        rated_w.close()
        rejects_w.close()
        st.checkpoint("cycle:files_written")
        rated_f = rated_w.commit()
        rejects_f = rejects_w.commit()
    st.checkpoint("cycle:files_committed")

    # ---- rated
    cyc.records_in, cyc.rated_count, cyc.rejected_count = rater.records_in, rater.rated, rater.rejected
    by_currency: dict[str, Decimal] = defaultdict(Decimal)
    for acc in rater.lines.values():
        acc[2] = money(acc[2])
    for key, acc in rater.lines.items():
        by_currency[rater.line_dims(key)["currency"]] += acc[2]
    _advance(s, cyc, "rated", f"rated {rater.rated} of {rater.records_in} records, rejected {rater.rejected}",
             {"rejects_by_reason": dict(rater.by_reason), "rated_sha256": rated_f.sha256})

    # ---- validated
    problems = []
    if rater.records_in != rater.rated + rater.rejected:
        problems.append(f"records {rater.records_in} != rated {rater.rated} + rejected {rater.rejected}")
    if rated_f.rows != rater.rated or rejects_f.rows != rater.rejected:
        problems.append(f"files hold {rated_f.rows} rated and {rejects_f.rows} rejected records")
    back = pq.read_table(store.data.abs(rated_f.path), columns=["amount", "currency", "line"])
    file_totals: dict[str, Decimal] = {}
    if back.num_rows:
        g = back.group_by("currency").aggregate([("amount", "sum")])
        file_totals = dict(zip(g.column("currency").to_pylist(), g.column("amount_sum").to_pylist(), strict=True))
    if {k: money(v) for k, v in file_totals.items()} != dict(by_currency):
        problems.append(f"amounts in {rated_f.path} {file_totals} differ from the lines' {dict(by_currency)}")
    if back.num_rows and set(pc.unique(back.column("line")).to_pylist()) != set(rater.lines):
        problems.append("the rated file's line keys differ from the lines")
    versions = {v.content_hash: v for v in s.scalars(select(M.AgreementVersion).where(
        M.AgreementVersion.content_hash.in_({rater.line_dims(k)["agreement_hash"] for k in rater.lines})))}
    for key in rater.lines:
        d = rater.line_dims(key)
        if d["agreement_hash"] not in versions:
            problems.append(f"agreement \"{d['agreement']}\" v{d['agreement_version']} "
                            f"(sha256 {d['agreement_hash'][:12]}...) rated records but is not in the store: "
                            "load the rules first (store.load_plan, `icdsl load`)")
            break
    if problems:
        raise ValidationError(f"cycle {prow.code} {per.label} failed validation; nothing was committed: "
                              + "; ".join(problems))
    _advance(s, cyc, "validated", "counts reconcile, amounts match the rated file, agreement versions known")

    # ---- data files, inputs
    t = st.now()
    totals_json = {k: str(v) for k, v in sorted(by_currency.items())}
    rated_row = M.DataFile(kind="rated", path=rated_f.path, sha256=rated_f.sha256, rows=rated_f.rows,
                           bytes=rated_f.bytes, amount_totals=totals_json, batch_id=None, cycle_id=cyc.id,
                           partner=prow.code, created_at=t)
    rejects_row = M.DataFile(kind="rating_rejects", path=rejects_f.path, sha256=rejects_f.sha256,
                             rows=rejects_f.rows, bytes=rejects_f.bytes, amount_totals=None, batch_id=None,
                             cycle_id=cyc.id, partner=prow.code, created_at=t)
    s.add_all([rated_row, rejects_row])
    for batch_id, n in sorted(rater.by_batch.items()):
        s.add(M.CycleInput(cycle_id=cyc.id, batch_id=batch_id, records=n))
    s.flush()

    # ---- invoiced (drafts)
    by_hash = {a.source_hash: a for a in plan.agreements}
    lines_by_invoice: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for key, (count, units, amount, first, last) in rater.lines.items():
        d = rater.line_dims(key)
        agreement = by_hash.get(d["agreement_hash"])
        unit, rate_unit = _quantity_unit(agreement, d["direction"], d["service"])
        try:
            rate = Decimal(d["rate"]) if d["rate"] else None
        except ArithmeticError:
            rate = None
        lines_by_invoice[(_stream(agreement, d["direction"], d["service"]), d["currency"])].append(dict(
            kind="traffic", description=_description(d["direction"], d["service"], d["destination"], d["band"]),
            direction=d["direction"], service=d["service"], destination=d["destination"] or None,
            prefix=d["prefix"] or None, band=d["band"] or None, quantity=Decimal(units), unit=unit, rate=rate,
            rate_unit=rate_unit, amount=amount, currency=d["currency"],
            agreement_version_id=versions[d["agreement_hash"]].id, agreement_hash=d["agreement_hash"],
            rule=d["rule"] or None, data_file_id=rated_row.id, line_key=key, record_count=count,
            first_start=first, last_start=last, created_at=t,
        ))
    for (stream, currency), lines in sorted(lines_by_invoice.items()):
        lines.sort(key=lambda x: (x["direction"], x["service"], x["destination"] or "", x["prefix"] or "",
                                  x["band"] or "", x["agreement_hash"], x["rule"] or "", str(x["rate"])))
        inv = M.Invoice(
            partner_id=prow.id, partner_code=prow.code, partner_name=prow.name, cycle_id=cyc.id, stream=stream,
            currency=currency, status="draft", subtotal=money(sum((x["amount"] for x in lines), Decimal(0))),
            tax_kind=prow.tax_kind, tax_rate=prow.tax_rate, tax_amount=None, total=None, created_at=t,
        )
        s.add(inv)
        s.flush()
        s.add_all(M.InvoiceLine(invoice_id=inv.id, line_no=i, **x) for i, x in enumerate(lines, 1))
    cyc.totals = dict(totals_json, _rejects_by_reason=dict(sorted(rater.by_reason.items())))
    _advance(s, cyc, "invoiced", f"{len(lines_by_invoice)} draft invoice(s), {len(rater.lines)} line(s)")
    store.audit(s, "cycle_invoiced", "billing_cycle", cyc.id,
                f"{prow.code} {per.label}: {rater.rated} rated, totals {totals_json}")
    s.flush()
    st.checkpoint("cycle:before_commit")
    return _report(s, cyc, per, already=False)


# --------------------------------------------------------------------------- finalization


def next_number(store: Store, s: Session, name: str) -> int:
    """The next value of a gapless counter (taken under a lock, committed with the caller)."""
    store.lock(s, f"sequence:{name}", wait=True)
    q = select(M.NumberSequence).where(M.NumberSequence.name == name)
    if store.is_postgres:
        q = q.with_for_update()
    row = s.scalars(q).first()
    if row is None:
        row = M.NumberSequence(name=name, last=0)
        s.add(row)
    row.last += 1
    s.flush()
    return row.last


def finalize_cycle(store: Store, partner: str, period: Any, *, issue_date: date | None = None) -> CycleReport:
    """Number the cycle's draft invoices, date them and make them (and the cycle) immutable."""
    from icdsl.billing import store as st
    from icdsl.billing.periods import zone

    with store.session() as s:
        prow, per = resolve_period(s, partner, period, None)
        cyc = _lock_cycle(store, s, prow, per)
        if cyc is None:
            raise CycleStateError(f"there is no cycle {partner} {per.label}: run it first")
        if cyc.status == "finalized":
            return _report(s, cyc, per, already=True)
        if cyc.status != "invoiced":
            raise CycleStateError(f"cycle {partner} {per.label} is {cyc.status}: it must be invoiced to be finalized")
        t = st.now()
        issue = issue_date or t.astimezone(zone(prow.timezone)).date()
        for inv in s.scalars(select(M.Invoice).where(M.Invoice.cycle_id == cyc.id, M.Invoice.status == "draft")
                             .order_by(M.Invoice.id)):
            n = next_number(store, s, f"invoice-{issue.year}")
            inv.number = f"INV-{issue.year}-{n:06d}"
            inv.issue_date = issue
            inv.due_date = issue + timedelta(days=prow.due_days)
            inv.status = "finalized"
            inv.finalized_at = t
        _advance(s, cyc, "finalized", f"invoices finalized, issued {issue}")
        store.audit(s, "cycle_finalized", "billing_cycle", cyc.id, f"{partner} {per.label} finalized")
        s.flush()
        return _report(s, cyc, per, already=False)


# --------------------------------------------------------------------------- trace


@dataclass
class LineTrace:
    """An invoice line and everything behind it."""

    line: M.InvoiceLine
    invoice: M.Invoice
    agreement: M.AgreementVersion | None
    rule_source: str | None  # the rule's line of the rule file, as loaded
    data_file: M.DataFile | None
    records: pa.Table
    batches: list[M.IntakeBatch]

    def __str__(self) -> str:
        ln, inv = self.line, self.invoice
        out = [f"line {ln.id} (#{ln.line_no} of invoice {inv.number or f'#{inv.id} (draft)'} {inv.partner_code} "
               f"{inv.stream} {inv.currency}): {ln.description}: {ln.quantity} {ln.unit}, {ln.amount} {ln.currency}"]
        if self.agreement is not None:
            a = self.agreement
            out.append(f"  agreement \"{a.name}\" v{a.version} (sha256 {a.content_hash[:12]}..., {a.span})")
        if ln.rule:
            out.append(f"  rule {ln.rule}" + (f": {self.rule_source.strip()}" if self.rule_source else ""))
        if self.data_file is not None:
            out.append(f"  records: {self.records.num_rows} in {self.data_file.path} (line {ln.line_key})")
        for b in self.batches:
            out.append(f"  from intake batch #{b.id} {b.file_name} (sha256 {b.sha256[:12]}...)")
        return "\n".join(out)


def trace_line(store: Store, line_id: int) -> LineTrace:
    with store.reading() as s:
        line = s.get(M.InvoiceLine, line_id)
        if line is None:
            raise StoreError(f"no invoice line {line_id}")
        invoice = s.get(M.Invoice, line.invoice_id)
        agreement = s.get(M.AgreementVersion, line.agreement_version_id) if line.agreement_version_id else None
        data_file = s.get(M.DataFile, line.data_file_id) if line.data_file_id else None
        rule_source = None
        if line.rule:
            parts = line.rule.rsplit(":", 2)
            if len(parts) == 3 and parts[1].isdigit():
                q = select(M.SourceFile).where(M.SourceFile.path == parts[0])
                if agreement is not None and agreement.source_file == parts[0]:
                    q = q.where(M.SourceFile.sha256 == agreement.source_file_hash)
                src = s.scalars(q.order_by(M.SourceFile.id.desc())).first()
                if src is not None:
                    lines = src.text.splitlines()
                    k = int(parts[1])
                    rule_source = lines[k - 1] if 0 < k <= len(lines) else None
        records = pa.table({})
        batches: list[M.IntakeBatch] = []
        if data_file is not None and line.line_key is not None:
            store.data.verify(data_file.path, data_file.sha256)
            records = pq.read_table(store.data.abs(data_file.path), filters=[("line", "=", line.line_key)])
            ids = sorted(set(records.column("batch_id").to_pylist()))
            batches = list(s.scalars(select(M.IntakeBatch).where(M.IntakeBatch.id.in_(ids)).order_by(M.IntakeBatch.id)))
        return LineTrace(line, invoice, agreement, rule_source, data_file, records, batches)
