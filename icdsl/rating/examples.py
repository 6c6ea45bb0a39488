"""Run the ``example`` blocks of rule files: a contract carries its own acceptance tests.

Each example describes one record and what rating it must give. It is rated by the row
executor (the specification) and, so that both executors stay honest, by the batch executor
too; any difference between the two is a failure in itself.

Each ``example cycle`` describes a partner's billing cycle by its totals (traffic per service,
inventory items, event records, refunds) and the charge lines it must give. Its
:class:`~icdsl.charges.context.ChargeContext` is built here, as billing builds it (no
database): one per version of the agreement in force in the cycle, the traffic on the version
in force at the end of the cycle unless it names one; the lines are those of
:func:`~icdsl.charges.evaluate.evaluate_cycle`, compared to the cent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from icdsl.charges.context import Adjustment, ChargeContext, EventRecord, Usage, agreement_days
from icdsl.charges.evaluate import evaluate_cycle
from icdsl.charges.lines import ChargeError, billed_amounts, exact_sum
from icdsl.charges.periods import Days
from icdsl.inventory import InventoryItem
from icdsl.lang.values import TIME_UNITS, VOLUME_UNITS
from icdsl.plan.model import Agreement, CycleExample, Example, Plan
from icdsl.rating.batch import rate_batch
from icdsl.rating.row import rate_record


@dataclass
class ExampleResult:
    example: Example
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (what, expected, actual)
    outcome: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and self.error is None

    @property
    def title(self) -> str:
        return f'example "{self.example.name}"'

    def explanation(self) -> list[str]:
        return list(getattr(self.outcome, "trace", None) or [])


def _agreements_for(plan: Plan, ex: Example) -> tuple[Agreement, ...]:
    if ex.agreement:
        return tuple(a for a in plan.agreements if a.name == ex.agreement)
    return plan.agreements


def example_record(plan: Plan, ex: Example) -> dict[str, Any]:
    """The record an example describes, normalized as intake would (start in UTC)."""
    fields = dict(ex.record)
    agreements = _agreements_for(plan, ex)
    if "partner" not in fields:
        partners = {a.partner for a in agreements if a.partner != "*"}
        if len(partners) == 1:
            fields["partner"] = partners.pop()
        elif len(plan.partners) == 1:
            fields["partner"] = plan.partners[0].code
        else:
            fields["partner"] = "*example*"
    tz_default = "UTC"
    for a in agreements:
        if a.partner in (fields["partner"], "*"):
            tz_default = a.timezone
            break
    local = fields.pop("start_local", None)
    if local is not None:
        day, clock, tz = local
        start = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=ZoneInfo(tz or tz_default))
        fields["start"] = start.astimezone(ZoneInfo("UTC"))
    else:
        first = min((a.effective_from for a in agreements), default=None)
        fields["start"] = datetime(first.year, first.month, first.day, 12, tzinfo=ZoneInfo("UTC")) if first else None
    fields.setdefault("id", f"example:{ex.name}")
    fields.setdefault("duration_s", 0)
    fields.setdefault("a_number", None)
    fields.setdefault("volume", None)
    fields.setdefault("units", None)
    return fields


def _billed_expected(value: Decimal, unit: str) -> Decimal:
    if unit in TIME_UNITS:
        return value * TIME_UNITS[unit]
    if unit in VOLUME_UNITS:
        return value * VOLUME_UNITS[unit]
    return value


def run_example(plan: Plan, ex: Example, *, both_executors: bool = True) -> ExampleResult:
    res = ExampleResult(ex)
    sub = dataclasses.replace(plan, agreements=_agreements_for(plan, ex))
    record = example_record(plan, ex)
    out = rate_record(sub, record, trace=True)
    res.outcome = out
    expect = dict(ex.expect)
    if "rejected" in expect:
        actual = "rated" if out.ok else out.reason
        if actual != expect["rejected"]:
            res.failures.append(("rejected", expect["rejected"], actual + ("" if out.ok else f" ({out.detail})")))
        return res
    if not out.ok:
        res.failures.append(("result", "a rated record", f"rejected {out.reason}: {out.detail}"))
        return res
    for key, want in ex.expect:
        if key == "billed":
            value, unit = want
            exp = _billed_expected(value, unit)
            if Decimal(out.billed_units) != exp:
                shown = f"{out.billed_units} s" if unit in TIME_UNITS else str(out.billed_units)
                res.failures.append(("billed", f"{value} {unit}", shown))
        elif key == "band":
            if out.band != want:
                res.failures.append(("band", want, out.band))
        elif key == "amount":
            if out.amount != want.amount or out.currency != want.currency:
                res.failures.append(("amount", f"{want.amount} {want.currency}", f"{out.amount} {out.currency}"))
        elif key == "rate":
            if Decimal(out.rate) != want.amount or out.currency != want.currency:
                res.failures.append(("rate", f"{want.amount} {want.currency}", f"{out.rate} {out.currency}"))
        elif key == "destination":
            if out.destination != want:
                res.failures.append(("destination", want, out.destination))
        elif key == "prefix":
            if out.prefix != str(want):
                res.failures.append(("prefix", str(want), out.prefix))
        elif key == "version" and out.agreement_version != want:
            res.failures.append(("version", f"v{want}", f"v{out.agreement_version}"))
    if both_executors:
        _compare_batch(sub, record, out, res)
    return res


def _compare_batch(plan: Plan, record: dict[str, Any], row_out, res: ExampleResult) -> None:
    table = records_table([record])
    rated, rejects = rate_batch(plan, table)
    if rated.num_rows != 1:
        res.failures.append(("batch executor", "rated like the row executor",
                             f"rejected {rejects.column('reason')[0].as_py() if rejects.num_rows else '?'}"))
        return
    row = rated.to_pylist()[0]
    for key in ("band", "billed_units", "prefix", "destination", "currency"):
        if row[key] != getattr(row_out, key):
            res.failures.append((f"batch executor {key}", str(getattr(row_out, key)), str(row[key])))
    if Decimal(row["amount"]) != row_out.amount:
        res.failures.append(("batch executor amount", str(row_out.amount), str(row["amount"])))


def records_table(records: list[dict[str, Any]]):
    """Normalized records (as ``normalize_record`` gives them) as a batch for the batch executor."""

    base = {
        "id": pa.string(), "partner": pa.string(), "direction": pa.string(), "service": pa.string(),
        "a_number": pa.string(), "b_number": pa.string(), "start": pa.timestamp("us", tz="UTC"),
        "duration_s": pa.int64(), "volume": pa.int64(), "units": pa.int64(),
    }
    extras = [k for r in records for k in r if k not in base]
    cols = {}
    for name, typ in base.items():
        vals = [r.get(name) for r in records]
        if name == "id":
            vals = [None if v is None else str(v) for v in vals]
        cols[name] = pa.array(vals, type=typ)
    for name in dict.fromkeys(extras):
        vals = [r.get(name) for r in records]
        cols[name] = pa.array([None if v is None else str(v) for v in vals], type=pa.string())
    return pa.table(cols)


def run_examples(plan: Plan) -> list[ExampleResult | CycleExampleResult]:
    """Every example of the plan, record examples then cycle examples."""
    results: list[ExampleResult | CycleExampleResult] = []
    for ex in plan.examples:
        try:
            results.append(run_example(plan, ex))
        except Exception as e:  # an example must never take the run down; report it at its location
            r = ExampleResult(ex, error=f"{type(e).__name__}: {e}")
            results.append(r)
    for cx in plan.cycle_examples:
        try:
            results.append(run_cycle_example(plan, cx))
        except Exception as e:  # as above
            results.append(CycleExampleResult(cx, error=f"{type(e).__name__}: {e}"))
    return results


# --------------------------------------------------------------------------- cycle examples


@dataclass
class CycleExampleResult:
    example: CycleExample
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (what, expected, actual)
    lines: list[Any] = field(default_factory=list)  # ChargeLine
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and self.error is None

    @property
    def title(self) -> str:
        return f'example cycle "{self.example.name}"'

    def explanation(self) -> list[str]:
        """Each line of the cycle: its description and amount, then its details."""
        out = []
        for ln in self.lines:
            out.append(f"{ln.description}: {ln.amount} {ln.currency}")
            for k, v in ln.details.items():
                if isinstance(v, list | tuple):
                    out.append(f"    {k}:")
                    out.extend(f"      {_detail_text(x)}" for x in v)
                else:
                    out.append(f"    {k}: {_detail_text(v)}")
        return out or ["(no lines)"]


def _detail_text(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{a} {b}" for a, b in v.items())
    return str(v)


def cycle_contexts(plan: Plan, ex: CycleExample) -> list[Any]:
    """The :class:`~icdsl.charges.context.ChargeContext` of each version of the example's
    agreement in force in its cycle, as billing builds them."""

    cycle = Days(ex.start, ex.end)
    partner = plan.partner(ex.partner)
    if partner is None:
        raise ValueError(f"partner {ex.partner} is not declared")
    versions = tuple(sorted((a for a in plan.agreements if a.name == ex.agreement and a.partner in (ex.partner, "*")),
                            key=lambda a: a.version))
    in_force = [a for a in versions if agreement_days(a).intersect(cycle) is not None]
    if not in_force:
        raise ValueError(f'no version of "{ex.agreement}" is in force in {ex.label}')
    by_number = {a.version: a for a in in_force}
    usage = []
    for t in ex.traffic:
        ag = by_number[t.version] if t.version is not None else in_force[-1]
        count = t.quantity if t.kind == "count" else 0
        usage.append(Usage(
            ex.partner, ag.name, ag.version, t.direction, t.service, t.amount.currency, t.kind,
            records=t.records if t.records is not None else (count or 1),
            billed_seconds=t.quantity if t.kind == "time" else 0, units=count,
            billed_bytes=t.quantity if t.kind == "volume" else 0,
            amount=t.amount.amount, record_charges=t.surcharges))
    first = max(ex.start, in_force[0].effective_from)
    events = tuple(EventRecord(f"example:{e.event}:{i}", e.event, e.day or first, e.units, ex.partner)
                   for i, e in enumerate(ex.events, 1))
    items = tuple(InventoryItem(ex.partner, it.item_id, it.kind, it.quantity, it.activated, it.terminated)
                  for it in ex.items)
    refunds = tuple(Adjustment(r.direction, r.service, r.amount.amount, r.amount.currency, "refund")
                    for r in ex.refunds)
    billed = _billed_before(partner, versions, cycle, items)
    return [ChargeContext(agreement=ag, partner=partner, cycle=cycle, cycle_label=ex.label, usage=tuple(usage),
                          inventory=items, events=events, adjustments=refunds, versions=versions, billed=billed)
            for ag in in_force]


def _billed_before(partner: Any, versions: tuple[Agreement, ...], cycle: Any, items: tuple[Any, ...]
                   ) -> dict[str, Any]:
    """What the earlier monthly cycles of the agreement billed of its recurring fees (``in
    advance`` fees bill a period before it starts), as billing would have: each earlier cycle
    with the inventory known at its end (items activated by then; a later termination not yet
    known). Up to 13 months back."""

    first = min(agreement_days(v).start for v in versions)
    start = cycle.start
    y, m = start.year, start.month - 13
    while m < 1:
        y, m = y - 1, m + 12
    month = max(date(y, m, 1), date(first.year, first.month, 1))
    lines: list[Any] = []
    while month < start:
        nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        days = Days(month, min(nxt, start))
        known = tuple(replace(it, terminated=None) if it.terminated is not None and it.terminated >= days.end else it
                      for it in items if it.activated < days.end)
        for ag in versions:
            if agreement_days(ag).intersect(days) is None:
                continue
            fees = tuple(c for c in ag.charges if c.kind == "recurring")
            if not fees:
                continue
            ctx = ChargeContext(agreement=replace(ag, charges=fees), partner=partner, cycle=days,
                                inventory=known, versions=versions, billed=billed_amounts(lines))
            lines.extend(evaluate_cycle(ctx))
        month = nxt
    return billed_amounts(lines)


def run_cycle_example(plan: Plan, ex: CycleExample, pm: Any = None) -> CycleExampleResult:
    """Evaluate the example's cycle and compare its lines with the expectations."""

    res = CycleExampleResult(ex)
    try:
        for ctx in cycle_contexts(plan, ex):
            res.lines.extend(evaluate_cycle(ctx, pm))
    except ChargeError as e:
        res.error = str(e)
        return res
    for e in ex.expect:
        if e.key == "total":
            what = "total"
            chosen = res.lines
        else:
            what = f'line "{e.label}"' + (f" for {e.subject}" if e.subject else "")
            chosen = [ln for ln in res.lines if ln.charge_name == e.label and (
                e.subject is None or e.subject in (ln.dimensions.get("party"), ln.dimensions.get("item")))]
        if e.key == "no_line":
            if chosen:
                res.failures.append((what, "no line", "; ".join(f"{ln.amount} {ln.currency}" for ln in chosen)))
            continue
        want = e.amount
        assert want is not None
        if not chosen and e.key == "line":
            res.failures.append((what, f"{want.amount} {want.currency}", "no line"))
            continue
        got = exact_sum(ln.amount for ln in chosen if ln.currency == want.currency)
        others = sorted({ln.currency for ln in chosen} - {want.currency})
        if got != want.amount or others:
            shown = f"{got} {want.currency}" + "".join(
                f" and {exact_sum(ln.amount for ln in chosen if ln.currency == c)} {c}" for c in others)
            res.failures.append((what, f"{want.amount} {want.currency}", shown))
    return res


def report(results: list[ExampleResult | CycleExampleResult], *, verbose: bool = False) -> str:
    lines = []
    for r in results:
        where = str(r.example.span)
        if r.ok:
            if verbose:
                lines.append(f"{where}: ok: {r.title}")
            continue
        lines.append(f"{where}: FAILED: {r.title}")
        if r.error:
            lines.append(f"    error: {r.error}")
        for what, exp, act in r.failures:
            lines.append(f"    {what}: expected {exp}, got {act}")
        steps = [] if r.error and not getattr(r, "lines", True) else r.explanation()
        if steps:
            lines.append("    explanation:")
            lines.extend(f"      {step}" for step in steps)
    passed = sum(r.ok for r in results)
    failed = len(results) - passed
    lines.append(f"{passed} passed, {failed} failed")
    return "\n".join(lines)
