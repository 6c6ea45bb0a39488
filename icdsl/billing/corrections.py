"""Corrections: rate a partner's records again after the fact (``icdsl rerate``).

:func:`rerate` takes the partner's records of local days ``first``..``last`` (and, with
``destination``, only those whose called number starts with that prefix) and rates them again
with the current rules, cycle by cycle:

- a cycle **not finalized** is simply run again (its drafts are replaced);
- a **finalized** cycle is never changed. Its whole period is run again through the cycle
  engine (:func:`evaluate_period`: ``icdsl.cycle.run``), as a fresh run would bill it: the
  window's records (read from every intake batch, so records that arrived after the cycle was
  billed are included) rated with the current rules, the period's event and refund records,
  the period's other records kept with the rating and record charges they were billed with
  (:func:`latest_state`: the cycle's files, overridden by its earlier corrections), the other
  cycles' history and applications. What the engine produces is compared with what the cycle
  billed, line by line:

  - **traffic lines**, by line key (agreement version and dimensions):
    ``amount = round(convert(billed exact sum - old records + new records)) - billed amount``
    with the original line's FX rate and rounding. Lines are kept per agreement version, so
    records that a new version now prices give a credit on the old version's line and a debit
    at the new version's prices, both pointing at the line of the same dimensions they correct;
  - **charge lines** (surcharges, fees, tiers and volume discounts, commitments and shortfalls,
    revenue shares), by key (:func:`charge_changes`): the corrected line as its document shows
    it (converted and rounded as ``cycle run`` does) minus what was billed for that key.

  Each difference is an **adjustment** on the partner's **next** cycle (the first one after it
  that is not finalized; created if needed). "Billed" includes the adjustments of earlier
  corrections of the same cycle, so a rerun with the same rules finds no difference and adds
  nothing, and after any number of corrections the amounts billed for the period equal what a
  fresh run of the corrected period bills, to the cent.

Each adjustment points at the line it corrects (``corrects_line_id``: the invoice line;
``charge_line_id`` / ``charge_key``: the charge line) and the correction and its files; an
audit entry records who reran what. One transaction per cycle, under the partner's cycle lock;
the next cycle, if it is already invoiced (draft), is run again in the same transaction so that
its drafts carry the adjustments. Late records (:mod:`icdsl.billing.late`) are billed this way.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import base, charging
from icdsl.billing import models as M
from icdsl.billing.amounts import convert, present, round_line, rounding_text
from icdsl.billing.cycles import (
    CycleReport,
    _id_type,
    _lock_cycle,
    _new_cycle,
    _read_partner,
    adjustment_what,
    cycle_dir,
    cycle_inputs,
    money,
    partner_inputs,
    resolve_period,
    run_cycle,
    run_locked,
)
from icdsl.billing.errors import CycleError, StoreError
from icdsl.billing.fx import FxTable
from icdsl.billing.invoicing import DIMENSIONS, NETTING, check_dims, fx_for, quantity_unit, route
from icdsl.billing.periods import Period, PeriodError, local_midnight, make_period, period_containing, zone
from icdsl.charges.lines import ChargeLine
from icdsl.charges.periods import Days
from icdsl.cycle import engine
from icdsl.cycle import errors as engine_errors
from icdsl.cycle.engine import MemorySinks
from icdsl.cycle.rater import plan_scale, rated_file_schema, record_charges_file_schema
from icdsl.plan.model import Plan

if TYPE_CHECKING:
    from icdsl.billing.store import Store

KEY_SEP = "\x1f"


def correction_schema(scale: int) -> pa.Schema:
    """A correction's records: the rated file's columns (ids as text), and ``reason`` for the
    records that are now rejected (their amount and line are null)."""
    base = rated_file_schema(pa.string(), scale)
    return pa.schema([*base, pa.field("reason", pa.string()), pa.field("detail", pa.string())])


def _key_columns(t: pa.Table, dims: tuple[str, ...]) -> pa.Array:
    """``agreement_hash SEP group_key`` of each rated row (group_key as in invoicing)."""
    def text(name: str) -> pa.Array:
        return pc.fill_null(pc.cast(t.column(name), pa.string()), "")

    parts = [text("direction"), text("service"), text("currency")]
    for d in DIMENSIONS:
        if d in dims:
            parts.append(pc.binary_join_element_wise(f"{d}=", text(d), ""))
    gk = pc.binary_join_element_wise(*parts, " | ")
    return pc.binary_join_element_wise(text("agreement_hash"), gk, KEY_SEP)


@dataclass
class _State:
    count: int = 0
    units: int = 0
    amount: Decimal = Decimal(0)


def _sums(t: pa.Table, dims: tuple[str, ...]) -> dict[str, _State]:
    if not t.num_rows:
        return {}
    g = pa.table({"k": _key_columns(t, dims), "u": t.column("billed_units"), "a": t.column("amount")}) \
        .group_by("k").aggregate([("k", "count"), ("u", "sum"), ("a", "sum")])
    return {k: _State(n, u or 0, money(a)) for k, n, u, a in zip(
        g.column("k").to_pylist(), g.column("k_count").to_pylist(), g.column("u_sum").to_pylist(),
        g.column("a_sum").to_pylist(), strict=True)}


@dataclass
class _Billed:
    """What a cycle billed for one line key, corrections included."""

    source: Decimal = Decimal(0)
    amount: Decimal = Decimal(0)
    line_id: int | None = None
    fx_rate: Decimal | None = None
    fx_rate_id: int | None = None
    mode: str | None = None
    stream: str | None = None
    netted: bool = False
    seen: bool = False


def _billed(s: Session, cyc: M.BillingCycle) -> dict[str, _Billed]:
    out: dict[str, _Billed] = defaultdict(_Billed)

    def take(key: str, *, line_id, source, amount, fx_rate, fx_rate_id, rounding, stream, netted):
        b = out[key]
        b.seen = True
        b.source += source or Decimal(0)
        b.amount += amount
        if b.line_id is None and line_id is not None:
            b.line_id = line_id
        if b.mode is None:
            b.fx_rate, b.fx_rate_id = fx_rate, fx_rate_id
            b.mode = (rounding or "half_up to 2").split(" to ")[0]
            b.stream, b.netted = stream, netted

    for inv in s.scalars(select(M.Invoice).where(M.Invoice.cycle_id == cyc.id)):
        for ln in s.scalars(select(M.InvoiceLine).where(M.InvoiceLine.invoice_id == inv.id,
                                                        M.InvoiceLine.kind == "traffic")):
            take(f"{ln.agreement_hash}{KEY_SEP}{ln.group_key}", line_id=ln.id, source=ln.source_amount,
                 amount=ln.amount, fx_rate=ln.fx_rate, fx_rate_id=ln.fx_rate_id, rounding=ln.rounding,
                 stream=inv.stream, netted=False)
    for stm in s.scalars(select(M.SettlementStatement).where(M.SettlementStatement.cycle_id == cyc.id)):
        for ln in (stm.details or {}).get("lines", []):
            if ln.get("kind") != "traffic":
                continue
            take(f"{ln['agreement_hash']}{KEY_SEP}{ln['group_key']}", line_id=None,
                 source=Decimal(ln["source_amount"]), amount=Decimal(ln["amount"]),
                 fx_rate=Decimal(ln["fx_rate"]) if ln.get("fx_rate") else None, fx_rate_id=ln.get("fx_rate_id"),
                 rounding=ln.get("rounding"), stream="netting", netted=True)
    for a in s.scalars(select(M.Adjustment).where(M.Adjustment.source_cycle_id == cyc.id,
                                                  M.Adjustment.charge_key.is_(None)).order_by(M.Adjustment.id)):
        take(f"{a.agreement_hash}{KEY_SEP}{a.group_key}", line_id=a.corrects_line_id, source=a.source_delta,
             amount=a.amount, fx_rate=a.fx_rate, fx_rate_id=a.fx_rate_id, rounding=a.rounding, stream=a.stream,
             netted=a.netted)
    return out


@dataclass
class AdjustmentSummary:
    id: int
    description: str
    amount: Decimal
    currency: str
    corrects_line_id: int | None
    source_delta: Decimal
    source_currency: str
    corrects_charge_line_id: int | None = None


@dataclass
class CorrectionReport:
    cycle: str
    cycle_id: int
    correction_id: int | None
    records: int
    rated: int
    rejected: int
    target: str | None = None
    target_cycle_id: int | None = None
    adjustments: list[AdjustmentSummary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.correction_id is None:
            return "\n".join([f"  {self.cycle} (finalized): {self.records} record(s) rated again, nothing changed; "
                              "no adjustment", *(f"    warning: {w}" for w in self.warnings)])
        out = [f"  {self.cycle} (finalized): correction #{self.correction_id}: {self.records} record(s) rated again "
               f"({self.rated} rated, {self.rejected} rejected); {len(self.adjustments)} adjustment(s) on "
               f"{self.target}"]
        for a in self.adjustments:
            kind = "credit" if a.amount < 0 else "debit"
            ref = f", corrects line {a.corrects_line_id}" if a.corrects_line_id else ""
            if a.corrects_charge_line_id:
                ref += f", corrects charge line {a.corrects_charge_line_id}"
            out.append(f"    {kind} {present(a.amount, a.currency)} {a.currency}: {a.description}{ref}")
        out += [f"    warning: {w}" for w in self.warnings]
        return "\n".join(out)


@dataclass
class RerateReport:
    partner: str
    first: date
    last: date
    destination: str | None
    rerun: list[CycleReport] = field(default_factory=list)
    corrections: list[CorrectionReport] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"rerate {self.partner} {self.first}..{self.last}" + (
            f" destination {self.destination}" if self.destination else "")
        out = [head]
        for r in self.rerun:
            out.append(f"  {r.period.label} ({r.status}): rated again: {r.rated} rated, {r.rejected} rejected")
        out += [str(c) for c in self.corrections]
        return "\n".join(out)


def _day(value: Any, what: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as e:
        raise PeriodError(f"--{what} '{value}' is not a date (YYYY-MM-DD)") from e


def _cycle_period(cyc: M.BillingCycle) -> Period:
    return make_period(cyc.frequency, cyc.local_start, cyc.local_end, cyc.timezone, cyc.label)


def rerate(store: Store, partner: str, first: Any, last: Any, plan: Plan, *, destination: str | None = None,
           program: Any = None, accept: tuple[str, ...] | list[str] = ()) -> RerateReport:
    """Rate ``partner``'s records of local days ``first``..``last`` (both included) again with
    ``plan``: not-finalized cycles are run again (``accept``: as for :func:`run_cycle`),
    finalized ones get adjustments on the next cycle (see the module's documentation)."""
    d1, d2 = _day(first, "from"), _day(last, "to")
    if d2 < d1:
        raise PeriodError(f"--to {d2} is before --from {d1}")
    if destination is not None:
        destination = destination.strip().lstrip("+")
        if not destination.isdigit():
            raise CycleError(f"--destination '{destination}' is not a number prefix (digits, e.g. 33 or 447)")
    if program is not None:
        store.load_plan(plan, program, retroactive=True)  # what changed over finalized days is corrected below
    with store.reading() as s:
        prow, _ = resolve_period(s, partner, d1, plan)
        lo, hi = local_midnight(d1, prow.timezone), local_midnight(d2 + timedelta(days=1), prow.timezone)
        cycles = list(s.scalars(select(M.BillingCycle).where(
            M.BillingCycle.partner_id == prow.id, M.BillingCycle.period_start < hi, M.BillingCycle.period_end > lo)
            .order_by(M.BillingCycle.period_start)))
    if not cycles:
        raise CycleError(f"no cycle of {partner} covers {d1}..{d2}: run the cycles first (`icdsl cycle run`)")
    report = RerateReport(partner, d1, d2, destination)
    for cyc in cycles:
        if cyc.status != "finalized":
            report.rerun.append(run_cycle(store, partner, _cycle_period(cyc), plan, rerate=True,
                                          dims=cyc.line_dims or None, accept=tuple(accept)))
        else:
            report.corrections.append(_correct(store, prow.code, cyc.id, lo, hi, destination, plan, tuple(accept)))
    return report


def _next_cycle(s: Session, prow: M.Partner, cyc: M.BillingCycle) -> M.BillingCycle:
    nxt = s.scalars(select(M.BillingCycle).where(
        M.BillingCycle.partner_id == prow.id, M.BillingCycle.period_start >= cyc.period_end,
        M.BillingCycle.status != "finalized").order_by(M.BillingCycle.period_start)).first()
    if nxt is not None:
        return nxt
    latest = s.scalars(select(M.BillingCycle).where(M.BillingCycle.partner_id == prow.id)
                       .order_by(M.BillingCycle.period_end.desc())).first()
    try:
        per = period_containing(latest.local_end, prow.billing, prow.timezone)
    except PeriodError as e:
        raise CycleError(f"{prow.code} is billed ad hoc: open its next cycle first (`icdsl cycle run {prow.code} "
                         "FROM..TO`), then rerate; the adjustments go on it") from e
    return _new_cycle(s, prow, per, base.now())


def _correct(store: Store, code: str, cycle_id: int, lo, hi, destination: str | None,
             plan: Plan, accept: tuple[str, ...] = ()) -> CorrectionReport:
    with store.session() as s:
        prow = s.scalars(select(M.Partner).where(M.Partner.code == code)).one()
        cyc0 = s.get(M.BillingCycle, cycle_id)
        per = _cycle_period(cyc0)
        cyc = _lock_cycle(store, s, prow, per)
        if cyc is None or cyc.status != "finalized":  # pragma: no cover - changed meanwhile
            raise CycleError(f"cycle {code} {per.label} changed while it was being corrected: run rerate again")
        start, end = max(lo, per.start), min(hi, per.end)
        dims = check_dims(cyc.line_dims)
        rel_dir = f"{cycle_dir(code, per)}/corrections"
        store.data.clean(rel_dir, store.referenced_files(s))
        # the period as billed (corrections included), and as corrected: the engine run again
        # over the window's records (records the cycle never billed, late ones, included) with
        # the rest of the period's records kept as billed
        latest, latest_charges = latest_state(store, s, cyc)
        window = read_window(store, s, prow, per, plan, start, end, destination)
        result, files = evaluate_period(store, s, prow, cyc, plan, window, latest, latest_charges, accept, dims,
                                        rel_dir)
        base.checkpoint("rerate:files_committed")
        blocking = [f for f in result.findings if f.blocking]
        if blocking:
            raise CycleError(f"the corrected {code} {per.label} cannot be billed: "
                             + "; ".join(f"error[{f.code}]: {f.message}" for f in blocking))
        ids = window.ids
        fx = FxTable.load(s, plan)
        old_sums = _sums(latest, dims)
        new_lines = {f"{g.agreement_hash}{KEY_SEP}{g.group_key}": g for g in result.lines}
        new_sums = {k: _State(g.count, g.units, g.amount) for k, g in new_lines.items()}
        # the lines that hold records of the window (the correction's file has their records)
        new_line = {k: g.key for k, g in new_lines.items() if g.key in files.lines}
        billed = _billed(s, cyc)
        by_hash = {a.source_hash: a for a in plan.agreements}
        versions = {v.content_hash: v for v in s.scalars(select(M.AgreementVersion))}
        last_day = per.local_end - timedelta(days=1)
        # records that move to another agreement version correct the line of the same dimensions
        line_of_group: dict[str, int] = {}
        for k, b in sorted(billed.items()):
            if b.line_id is not None:
                line_of_group.setdefault(k.split(KEY_SEP, 1)[1], b.line_id)
        changes = []
        for key in sorted(set(old_sums) | set(new_sums)):
            o, n = old_sums.get(key, _State()), new_sums.get(key, _State())
            if (o.count, o.units, o.amount) == (n.count, n.units, n.amount):
                continue
            ahash, gk = key.split(KEY_SEP, 1)
            direction, service, currency, *rest = gk.split(" | ")
            dimvals = dict(x.split("=", 1) for x in rest)
            agreement = by_hash.get(ahash)
            if ahash not in versions:
                raise CycleError(f"the rules given rate with an agreement version that is not in the store "
                                 f"(sha256 {ahash[:12]}...): load them first (`icdsl load`)")
            b = billed.get(key, _Billed())
            if b.seen:
                rate, rate_id, mode = b.fx_rate, b.fx_rate_id, b.mode or "half_up"
                stream, netted = b.stream or "main", b.netted
            else:
                q = fx_for(fx, agreement, currency, prow.currency, last_day)
                rate, rate_id = (q.rate, q.rate_id) if q else (None, None)
                mode = agreement.rounding.mode if agreement else "half_up"
                stream, netted = route(agreement, direction, service)
            corrected_amount = round_line(convert(b.source - o.amount + n.amount, rate), prow.currency, mode)
            amount = corrected_amount - b.amount
            g = new_lines.get(key) if key in new_line else None
            unit, _ = quantity_unit(agreement, direction, service)
            changes.append(dict(
                corrects_line_id=b.line_id if b.line_id is not None else line_of_group.get(gk), netted=netted,
                stream=stream, direction=direction, service=service,
                destination=dimvals.get("destination") or (g.only("destination") if g else None),
                band=dimvals.get("band") or (g.only("band") if g else None),
                prefix=dimvals.get("prefix") or (g.only("prefix") if g else None),
                group_key=gk, line_key=new_line.get(key), agreement_version_id=versions[ahash].id,
                agreement_hash=ahash, rule=dimvals.get("rule") or (g.only("rule") if g else None), unit=unit,
                source_currency=currency, old_source=o.amount, new_source=n.amount,
                source_delta=n.amount - o.amount, old_units=o.units, new_units=n.units, old_count=o.count,
                new_count=n.count, currency=prow.currency, amount=amount, fx_rate=rate, fx_rate_id=rate_id,
                rounding=rounding_text(prow.currency, mode)))
        changes += charge_changes(s, prow, cyc, plan, result.charge_lines, fx, last_day, versions)
        rated_now = result.counts.rated - files.kept  # the window's records rated (the kept ones are not)
        report = CorrectionReport(per.label, cyc.id, None, len(ids), rated_now, result.counts.rejected,
                                  warnings=_stale_versions(latest, ids, plan, prow, per))
        t = base.now()
        if not changes:
            store.audit(s, "rerate_unchanged", "billing_cycle", cyc.id,
                        f"{code} {per.label}: {len(ids)} record(s) rated again with rules "
                        f"{base.plan_hash(plan)[:12]}..., nothing changed",
                        {"from": str(start), "to": str(end), "destination": destination})
            return report
        written, charges_written = files.written, files.charges_written
        corr = M.Correction(
            partner_id=prow.id, partner_code=code, cycle_id=cyc.id,
            local_from=start.astimezone(zone(prow.timezone)).date(),
            local_to=(end.astimezone(zone(prow.timezone)) - timedelta(microseconds=1)).date(),
            destination=destination, plan_hash=base.plan_hash(plan), records_in=len(ids), rated_count=rated_now,
            rejected_count=result.counts.rejected, file_path=written.path, file_sha256=written.sha256,
            file_rows=written.rows, file_bytes=written.bytes, actor=base.actor(), created_at=t,
            charges_path=charges_written.path, charges_sha256=charges_written.sha256,
            charges_rows=charges_written.rows,
            charge_usage=charging.usage_json(result.usage, result.events, result.refunds),
            charge_lines=[ln.to_dict() for ln in result.charge_lines])
        s.add(corr)
        s.flush()
        target = _next_cycle(s, prow, cyc)
        for c in changes:
            a = M.Adjustment(correction_id=corr.id, partner_id=prow.id, source_cycle_id=cyc.id,
                             target_cycle_id=target.id, created_at=t, **c)
            s.add(a)
            s.flush()
            report.adjustments.append(AdjustmentSummary(
                a.id, adjustment_what(a), a.amount, a.currency, a.corrects_line_id, a.source_delta,
                a.source_currency, a.charge_line_id))
        report.correction_id, report.target, report.target_cycle_id = corr.id, target.label, target.id
        total = sum((c["amount"] for c in changes), Decimal(0))
        s.add(M.CycleEvent(cycle_id=cyc.id, at=t, kind="progress", from_state=None, to_state=None,
                           message=f"correction #{corr.id}: {len(changes)} adjustment(s), {total} {prow.currency}, "
                                   f"billed on {target.label}", details={"correction_id": corr.id}))
        store.audit(s, "rerate", "correction", corr.id,
                    f"{code} {per.label}: {len(ids)} record(s) rated again; {len(changes)} adjustment(s) totalling "
                    f"{total} {prow.currency} on {target.label}",
                    {"cycle_id": cyc.id, "target_cycle_id": target.id, "from": str(corr.local_from),
                     "to": str(corr.local_to), "destination": destination, "plan_hash": corr.plan_hash,
                     "adjustments": [{"id": x.id, "amount": str(x.amount), "corrects_line_id": x.corrects_line_id,
                                      "corrects_charge_line_id": x.corrects_charge_line_id}
                                     for x in report.adjustments]})
        if target.status == "invoiced":
            tper = _cycle_period(target)
            run_locked(store, s, prow, tper, plan, rerate=True, dims=check_dims(target.line_dims), accept=accept)
        s.flush()
        base.checkpoint("rerate:before_commit")
        return report


# --------------------------------------------------------------------------- the corrected period


@dataclass
class Window:
    """What a correction reads from the intake files of a finalized period: ``chunks``, the
    records the engine rates (the traffic records of the window, ``start``..``end`` and the
    ``destination`` prefix, and every event and refund record of the period: the corrected
    period counts them all); ``ids``: the window's traffic records (ids as text); ``apart``: the
    event and refund records read (``id``, ``partner``, ``start``, ``batch_id``, ``reason``
    ``event`` / ``refund``), written to the correction's file: the correction has read them."""

    chunks: list[tuple[int, pa.Table]]
    ids: pa.Array
    apart: list[pa.Table]
    id_type: pa.DataType


def _text_ids(t: pa.Table) -> pa.Array:
    return pc.cast(t.column("id"), pa.string()).combine_chunks()


def read_window(store: Store, s: Session, prow: M.Partner, per: Period, plan: Plan, start, end,
                destination: str | None) -> Window:
    """The partner's records of the whole period from every intake batch (late ones included),
    as :class:`Window` (the window's traffic and the period's events and refunds)."""
    batches = partner_inputs(s, prow.code, per.start, per.end)
    id_type = _id_type(store, batches)  # verifies the files
    names = tuple(charging.event_names(plan, prow.code))
    lo = pa.scalar(start, pa.timestamp("us", tz="UTC"))
    hi = pa.scalar(end, pa.timestamp("us", tz="UTC"))
    chunks: list[tuple[int, pa.Table]] = []
    selected: list[pa.Array] = []
    apart: list[pa.Table] = []
    for batch_id, path, _sha, _n in batches:
        for chunk in _read_partner(str(store.data.abs(path)), prow.code, per):
            traffic, refund_rows = charging.split_refunds(chunk)
            traffic, _events = charging.split_events(traffic, names, prow.timezone, prow.code)
            is_apart = pc.invert(pc.is_in(_text_ids(chunk), value_set=_text_ids(traffic)))
            mask = pc.and_(pc.greater_equal(chunk.column("start"), lo), pc.less(chunk.column("start"), hi))
            if destination:
                mask = pc.and_(mask, pc.fill_null(pc.starts_with(chunk.column("b_number"), destination), False))
            in_window = pc.and_(mask, pc.invert(is_apart))
            if refund_rows is not None or pc.any(is_apart).as_py():
                rows = chunk.filter(is_apart)
                refunds = pa.array([], pa.string()) if refund_rows is None else _text_ids(refund_rows)
                why = pc.if_else(pc.is_in(_text_ids(rows), value_set=refunds), "refund", "event")
                apart.append(pa.table({"id": _text_ids(rows), "partner": rows.column("partner"),
                                       "start": rows.column("start"),
                                       "batch_id": pa.array([batch_id] * rows.num_rows, pa.int64()), "reason": why}))
            selected.append(_text_ids(chunk.filter(in_window)))
            feed = chunk.filter(pc.or_(is_apart, in_window))
            if feed.num_rows:
                chunks.append((batch_id, feed))
    ids = pa.concat_arrays(selected) if selected else pa.array([], pa.string())
    return Window(chunks, ids, apart, id_type)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns (cast; the ones it lacks are null)."""
    n = table.num_rows
    cols = {}
    for f in schema:
        col = table.column(f.name) if f.name in table.column_names else None
        if col is not None and pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        cols[f.name] = pc.cast(col, f.type) if col is not None else pa.nulls(n, f.type)
    return pa.table(cols, schema=schema)


class CorrectionSinks(MemorySinks):
    """The engine's sinks for a correction: what the engine rates is kept in memory (its
    validation and charges read it back), and :meth:`finish` writes the correction's files to
    the data folder: the window's records as rated or rejected and the period's event and
    refund records as read (:func:`correction_schema`), and the window's record charges. The
    records kept as billed are not written again (``kept``: how many)."""

    def __init__(self, store: Store, rel_dir: str, scale: int, window: Window, kept: int):
        super().__init__()
        self.store, self.rel_dir, self.scale, self.window, self.kept = store, rel_dir, scale, window, kept
        self.written: Any = None
        self.charges_written: Any = None
        self.lines: set[int] = set()

    def finish(self) -> None:
        schema = correction_schema(self.scale)
        charges_schema = record_charges_file_schema(pa.string(), self.scale)
        ids = self.window.ids
        w = self.store.data.writer(self.rel_dir, "rerated", schema)
        cw = self.store.data.writer(self.rel_dir, "rerated-charges", charges_schema)
        with w, cw:
            for rows in self.window.apart:
                w.write(_conform(rows, schema))
            rated = self.rated.table()
            if rated is not None:
                mine = rated.filter(pc.is_in(pc.cast(rated.column("id"), pa.string()), value_set=ids))
                self.lines = set(pc.unique(mine.column("line")).to_pylist())
                w.write(_conform(mine, schema))
            rejects = self.rejects.table()  # only records rated now are rejected
            if rejects is not None:
                w.write(_conform(rejects, schema))
            charges = self.record_charges.table()
            if charges is not None:
                cw.write(_conform(charges.filter(pc.is_in(pc.cast(charges.column("id"), pa.string()),
                                                          value_set=ids)), charges_schema))
            w.close()
            cw.close()
            self.written = w.commit()
            self.charges_written = cw.commit()


def _kept(table: pa.Table | None, ids: pa.Array, id_type: pa.DataType) -> pa.Table | None:
    """The rows of ``table`` (ids as text) that are not among ``ids``, with ids of ``id_type``."""
    if table is None:
        return None
    kept = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=ids)))
    return kept.set_column(kept.schema.get_field_index("id"), "id", pc.cast(kept.column("id"), id_type))


def evaluate_period(store: Store, s: Session, prow: M.Partner, cyc: M.BillingCycle, plan: Plan, window: Window,
                    latest: pa.Table, latest_charges: pa.Table | None, accept: tuple[str, ...],
                    dims: tuple[str, ...], rel_dir: str) -> tuple[engine.CycleResult, CorrectionSinks]:
    """The corrected period run whole through the cycle engine (``icdsl.cycle.run``), as a
    fresh run of it would bill it: the inputs a cycle run reads from the store (the plan given,
    the history as it stands, inventory, FX), the window's records and the period's events and
    refunds rated again, and the period's other records kept with the rating and record charges
    they were billed with (``latest``: :func:`latest_state`). What the engine produces (traffic
    lines, every charge line) is what the correction compares with what was billed. The
    engine's validators are not run: a finalized period's traffic was checked when it was billed
    (the charges' findings still stop a correction that cannot be billed)."""
    per = _cycle_period(cyc)
    kept = _kept(latest, window.ids, window.id_type)
    kept_charges = _kept(latest_charges, window.ids, window.id_type)
    sinks = CorrectionSinks(store, rel_dir, plan_scale(plan), window, kept.num_rows if kept is not None else 0)
    inputs = cycle_inputs(store, s, prow, per, plan, cyc.id, [], dims=dims, accept=accept, validators=(),
                          sinks=sinks)
    inputs = replace(inputs, records=window.chunks, kept=kept, kept_charges=kept_charges,
                     expected=sum(t.num_rows for _b, t in window.chunks))
    try:
        result = engine.run(inputs)
    except engine_errors.CycleError as e:
        if isinstance(e, StoreError):
            raise
        raise CycleError(str(e)) from None
    return result, sinks


def _stale_versions(latest: pa.Table, replaced: pa.Array, plan: Plan, prow: M.Partner, per: Period) -> list[str]:
    """A warning when records outside the window stay rated by an agreement version that the
    rules given do not put in force in the period: their charges are no longer evaluated."""
    outside = latest.filter(pc.invert(pc.is_in(latest.column("id"), value_set=replaced)))
    if not outside.num_rows:
        return []
    g = outside.group_by(["agreement", "agreement_version"]).aggregate([("id", "count")])
    days = Days(per.local_start, per.local_end)
    in_force = {(a.name, a.version) for a in charging.versions_in_force(plan, prow.code, days)}
    stale = [(n, v, c) for n, v, c in zip(g.column("agreement").to_pylist(), g.column("agreement_version").to_pylist(),
                                          g.column("id_count").to_pylist(), strict=True) if (n, v) not in in_force]
    return [f"{c} record(s) outside the window stay rated by \"{n}\" v{v}, which the rules given do not put in force "
            f"in {per.label}: that version's charges are no longer evaluated for the period; rerate the whole period "
            f"(--from {per.local_start} --to {per.local_end - timedelta(days=1)}, no --destination) to bill them "
            "under the version in force" for n, v, c in sorted(stale)]


def _replace(base: pa.Table | None, new: pa.Table, ids: pa.Array) -> pa.Table | None:
    """``base`` without the rows of ``ids``, plus ``new`` (ids as text)."""
    new = new.set_column(new.schema.get_field_index("id"), "id", pc.cast(new.column("id"), pa.string()))
    if base is None or not base.num_rows:
        return new
    kept = base.filter(pc.invert(pc.is_in(base.column("id"), value_set=ids)))
    cols = [c for c in kept.column_names if c in new.column_names]
    return pa.concat_tables([kept.select(cols), new.select(cols)], promote_options="permissive")


def latest_state(store: Store, s: Session, cyc: M.BillingCycle) -> tuple[pa.Table, pa.Table | None]:
    """What a finalized cycle bills now, record by record: its rated records and their
    per-record charges, each record's latest rating (the cycle's files, overridden by its
    corrections in order; a record a correction rejected no longer counts). Ids as text."""

    def load(path: str, sha: str) -> pa.Table:
        store.data.verify(path, sha)
        t = pq.read_table(store.data.abs(path))
        return t.set_column(t.schema.get_field_index("id"), "id", pc.cast(t.column("id"), pa.string()))

    f = s.scalars(select(M.DataFile).where(M.DataFile.cycle_id == cyc.id, M.DataFile.kind == "rated")).first()
    rated = load(f.path, f.sha256) if f is not None else None
    rc_row = s.scalars(select(M.RecordChargeFile).where(M.RecordChargeFile.cycle_id == cyc.id)).first()
    charges = load(rc_row.path, rc_row.sha256) if rc_row is not None and rc_row.rows else None
    for c in s.scalars(select(M.Correction).where(M.Correction.cycle_id == cyc.id).order_by(M.Correction.id)):
        if not c.file_path:
            continue
        ct = load(c.file_path, c.file_sha256)
        apart = pc.fill_null(pc.is_in(ct.column("reason"), value_set=pa.array(["event", "refund"])), False)
        traffic = ct.filter(pc.invert(apart))
        ids = traffic.column("id").combine_chunks()
        good = traffic.filter(pc.is_null(traffic.column("reason"))).drop_columns(["reason", "detail"])
        rated = _replace(rated, good, ids)
        if c.charges_path:
            charges = _replace(charges, load(c.charges_path, c.charges_sha256), ids)
        # (a correction made before 0004 kept no record charges and adjusted no charge: its
        # records keep the ones the cycle billed)
    if rated is None:
        rated = rated_file_schema(pa.string(), 2).empty_table()
    return rated, charges


# --------------------------------------------------------------------------- charge lines


@dataclass
class _Doc:
    """A charge line as its document shows it: the line's amount in its currency (``source``)
    and the document's amount (the invoice currency, or a share's currency)."""

    source: Decimal
    amount: Decimal
    currency: str
    placement: str  # invoice, statement (the partner's settlement statement), share (other parties)
    stream: str
    netted: bool
    fx_rate: Decimal | None = None
    fx_rate_id: int | None = None
    rounding: str | None = None


def _doc_of(line: ChargeLine, plan: Plan, prow: M.Partner, fx: FxTable, last_day: date) -> _Doc:
    ag = next((a for a in plan.agreements if a.source_hash == line.agreement_hash), None)
    where, stream, payable = charging.placement(line, ag, prow.code)
    if where == "share" and not payable:
        return _Doc(line.amount, line.amount, line.currency, "share", stream, False)
    d = charging.draft_of(line, ag, prow.currency, fx, last_day, stream, payable)
    return _Doc(line.amount, d.amount, d.currency, "statement" if payable else "invoice", stream, payable,
                d.fx.rate if d.fx else None, d.fx.rate_id if d.fx else None, d.rounding)


@dataclass
class _BilledCharge:
    """What a cycle billed for one charge line key: the line's amount in its currency
    (``source``) and its document's amount (``amount``), earlier adjustments included; where it
    went (``doc``) and what it was (``fields``: the adjustment columns that describe it)."""

    row: M.ChargeLine | None
    doc: _Doc
    fields: dict[str, Any]
    source: Decimal = Decimal(0)
    amount: Decimal = Decimal(0)


def _fields_of(line: ChargeLine, versions: dict[str, M.AgreementVersion]) -> dict[str, Any]:
    direction, service = line.scope[0] if len(line.scope) == 1 else ("", "")
    v = versions.get(line.agreement_hash)
    party = line.dimensions.get("party")
    return dict(direction=direction, service=service, agreement_version_id=v.id if v else None,
                agreement_hash=line.agreement_hash or None, rule=line.rule[:1100], unit=(line.unit or "unit")[:32],
                source_currency=line.currency, party=None if party is None else str(party)[:64])


def _billed_charges(s: Session, cyc: M.BillingCycle, prow: M.Partner, versions: dict[str, M.AgreementVersion]
                    ) -> dict[str, _BilledCharge]:
    """Each charge line a cycle billed (by key) and what its documents say, with the
    adjustments of earlier corrections of the cycle."""
    statement: dict[str, dict[str, Any]] = {}
    for stm in s.scalars(select(M.SettlementStatement).where(M.SettlementStatement.cycle_id == cyc.id)):
        for ln in (stm.details or {}).get("lines", []):
            if ln.get("key"):
                statement[ln["key"]] = ln
    out: dict[str, _BilledCharge] = {}
    for row in s.scalars(select(M.ChargeLine).where(M.ChargeLine.cycle_id == cyc.id).order_by(M.ChargeLine.id)):
        line = ChargeLine.from_dict(row.data)
        if row.invoice_line_id is not None:
            il = s.get(M.InvoiceLine, row.invoice_line_id)
            stream = s.get(M.Invoice, il.invoice_id).stream
            doc = _Doc(row.amount, il.amount, il.currency, "invoice", stream, False, il.fx_rate, il.fx_rate_id,
                       il.rounding)
        elif row.key in statement:
            ln = statement[row.key]
            doc = _Doc(row.amount, Decimal(ln["amount"]), ln["currency"], "statement", NETTING, True,
                       Decimal(ln["fx_rate"]) if ln.get("fx_rate") else None, ln.get("fx_rate_id"), ln.get("rounding"))
        else:
            doc = _Doc(row.amount, row.amount, row.currency, "share", NETTING, False)
        out[row.key] = _BilledCharge(row, doc, _fields_of(line, versions), row.amount, doc.amount)
    for a in s.scalars(select(M.Adjustment).where(M.Adjustment.source_cycle_id == cyc.id,
                                                  M.Adjustment.charge_key.is_not(None)).order_by(M.Adjustment.id)):
        b = out.get(a.charge_key)
        if b is None:  # a line that an earlier correction billed for the first time
            doc = _Doc(Decimal(0), Decimal(0), a.currency, a.placement or "invoice", a.stream, a.netted, a.fx_rate,
                       a.fx_rate_id, a.rounding)
            b = out[a.charge_key] = _BilledCharge(None, doc, dict(
                direction=a.direction, service=a.service, agreement_version_id=a.agreement_version_id,
                agreement_hash=a.agreement_hash, rule=a.rule, unit=a.unit, source_currency=a.source_currency,
                party=a.party))
        b.source += a.source_delta
        b.amount += a.amount
    return out


def _unversioned(key: str) -> str:
    """A charge line's key without its agreement version (``icdsl1|A|v2|...`` -> ``icdsl1|A|*|...``)."""
    parts = key.split("|")
    return "|".join([*parts[:2], "*", *parts[3:]]) if len(parts) > 3 else key


def charge_changes(s: Session, prow: M.Partner, cyc: M.BillingCycle, plan: Plan, lines: list[ChargeLine],
                   fx: FxTable, last_day: date, versions: dict[str, M.AgreementVersion]) -> list[dict[str, Any]]:
    """The adjustments of the charge lines: the corrected period's lines compared with what the
    cycle billed, key by key (a line no longer due is credited in full, with the document, rate
    and rounding it was billed with; a new one is billed as a fresh run would bill it)."""
    billed = _billed_charges(s, cyc, prow, versions)
    fresh = {ln.key: ln for ln in lines}
    # a line of another agreement version corrects the line of the same charge, subject, period
    same_charge = {_unversioned(k): b.row for k, b in sorted(billed.items()) if b.row is not None}
    out = []
    for key in sorted(set(billed) | set(fresh)):
        b = billed.get(key)
        if key in fresh:
            doc = _doc_of(fresh[key], plan, prow, fx, last_day)
            fields = _fields_of(fresh[key], versions)
            new_source, new_amount = fresh[key].amount, doc.amount
        else:
            assert b is not None
            doc, fields, new_source, new_amount = b.doc, b.fields, Decimal(0), Decimal(0)
        old_source, old_amount = (b.source, b.amount) if b is not None else (Decimal(0), Decimal(0))
        source_delta, amount = new_source - old_source, new_amount - old_amount
        if source_delta == 0 and amount == 0:
            continue
        row = b.row if b is not None and b.row is not None else same_charge.get(_unversioned(key))
        out.append(dict(
            fields, corrects_line_id=row.invoice_line_id if row is not None else None, netted=doc.netted,
            stream=doc.stream, destination=None, band=None, prefix=None, group_key=key[:2000], line_key=None,
            old_source=old_source, new_source=new_source, source_delta=source_delta, old_units=0, new_units=0,
            old_count=0, new_count=0, currency=doc.currency, amount=amount, fx_rate=doc.fx_rate,
            fx_rate_id=doc.fx_rate_id, rounding=doc.rounding or rounding_text(doc.currency, "half_up"),
            charge_line_id=row.id if row is not None else None, charge_key=key, placement=doc.placement))
    return out


__all__ = ["CorrectionReport", "RerateReport", "correction_schema", "rerate"]
