"""``example cycle`` blocks of rule files, run through the cycle engine's charge evaluation.

An ``example cycle`` describes a partner's billing cycle by what it states (traffic per
service as totals, inventory items, event records, refunds) and the charge lines it must give.
Since it states usage rather than records, it is evaluated by the one charge-evaluation
function the engine itself calls, :func:`icdsl.cycle.charges.evaluate`, with:

- the plan narrowed to the example's agreement (every version of it, for the partner);
- the example's period (a month, or its days: ad hoc) in the partner's time zone;
- its traffic as the cycle's :class:`~icdsl.charges.context.Usage`, on the version in force at
  the end of the cycle unless a line names one; its items as the partner's inventory; its
  events (on their day, else the cycle's first day in force); its refunds;
- what earlier cycles billed (``billed``): each earlier month of the agreement (up to 13 back)
  evaluated by the same function on its recurring fees, with the inventory known at its end
  (``in advance`` fees bill a period before it starts; a later termination is not yet known).

Progressive billing (``expect interim on DAY AMOUNT``, ``no interim on DAY``, ``invoice
AMOUNT``): a check on each day expected, in order, as :func:`icdsl.cycle.progressive.check`
makes it, on the traffic used by the end of that day (``traffic ... on DAY``; traffic without a
day counts at the end of the period), each traffic amount rounded once to the invoice
currency's minor unit as an invoice line is; an interim invoice bills the usage to date less
the earlier interim invoices (one invoice stream). The final invoice: the traffic and every
charge line, less the interim invoices.

A charge held for review (an error finding ``charge_hold``) or a charge that cannot be
evaluated is the example's error, at its rule. Record examples stay in
:mod:`icdsl.rating.examples` (the rating layer); :func:`run_examples` runs both kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

from icdsl.charges.context import Adjustment, EventRecord, Usage, agreement_days
from icdsl.charges.lines import ChargeError, billed_amounts, exact_sum, round_money
from icdsl.charges.periods import Days
from icdsl.cycle.charges import HOLD, evaluate, versions_in_force
from icdsl.cycle.errors import CycleError
from icdsl.cycle.interim import Interim
from icdsl.cycle.offline import plan_fx
from icdsl.cycle.periods import Period, make_period
from icdsl.cycle.progressive import threshold_passed
from icdsl.inventory import InventoryItem
from icdsl.plan.model import CycleExample, Partner, Plan
from icdsl.plugins import use_plugin_manager
from icdsl.rating.examples import ExampleResult, report, run_example

__all__ = ["CycleExampleResult", "example_plan", "report", "run_cycle_example", "run_examples"]


@dataclass
class CycleExampleResult:
    example: CycleExample
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (what, expected, actual)
    lines: list[Any] = field(default_factory=list)  # ChargeLine
    interims: list[Interim] = field(default_factory=list)  # progressive billing's interim invoices
    traffic: Decimal = Decimal(0)  # the traffic of the final invoice (progressive billing)
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
        for it in self.interims:  # progressive billing
            out.append(f"Interim invoice on {it.until} (threshold {it.threshold} passed): {it.subtotal}")
        if self.interims:
            out.append(f"Final invoice: traffic {self.traffic} + the lines less the interim invoices")
        return out or ["(no lines)"]


def _detail_text(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{a} {b}" for a, b in v.items())
    return str(v)


def run_examples(plan: Plan, pm: Any = None) -> list[ExampleResult | CycleExampleResult]:
    """Every example of the plan, record examples then cycle examples."""
    results: list[ExampleResult | CycleExampleResult] = []
    for ex in plan.examples:
        try:
            results.append(run_example(plan, ex))
        except Exception as e:  # an example must never take the run down; report it at its location
            results.append(ExampleResult(ex, error=f"{type(e).__name__}: {e}"))
    for cx in plan.cycle_examples:
        try:
            results.append(run_cycle_example(plan, cx, pm))
        except Exception as e:  # as above
            results.append(CycleExampleResult(cx, error=f"{type(e).__name__}: {e}"))
    return results


def example_plan(plan: Plan, ex: CycleExample) -> tuple[Plan, Partner, Period]:
    """The plan narrowed to the example's agreement (its versions for the partner, an agreement
    with any partner as the partner's), the partner and the example's period."""
    partner = plan.partner(ex.partner)
    if partner is None:
        raise ValueError(f"partner {ex.partner} is not declared")
    versions = tuple(sorted((replace(a, partner=ex.partner) if a.partner == "*" else a
                             for a in plan.agreements if a.name == ex.agreement and a.partner in (ex.partner, "*")),
                            key=lambda a: a.version))
    per = make_period("adhoc", ex.start, ex.end, partner.timezone, ex.label)
    return replace(plan, agreements=versions), partner, per


def run_cycle_example(plan: Plan, ex: CycleExample, pm: Any = None) -> CycleExampleResult:
    """Evaluate the example's cycle (see the module) and compare its lines with the expectations."""
    res = CycleExampleResult(ex)
    sub, partner, per = example_plan(plan, ex)
    in_force = versions_in_force(sub, partner.code, Days(per.local_start, per.local_end))
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
    events = [EventRecord(f"example:{e.event}:{i}", e.event, e.day or first, e.units, ex.partner)
              for i, e in enumerate(ex.events, 1) if e.worth is None]
    # `events payment 3 worth 40.00 EUR`: three transactions of 40.00 each, in the order written
    events += [EventRecord(f"example:{e.event}:{i}:{j}", e.event, e.day or first, 1, ex.partner, str(e.worth.amount),
                           i * 1_000_000 + j)
               for i, e in enumerate(ex.events, 1) if e.worth is not None for j in range(e.units)]
    items = tuple(InventoryItem(ex.partner, it.item_id, it.kind, it.quantity, it.activated, it.terminated)
                  for it in ex.items)
    refunds = [Adjustment(r.direction, r.service, r.amount.amount, r.amount.currency, "refund") for r in ex.refunds]
    try:
        with use_plugin_manager(pm) if pm is not None else _Nothing():
            fx = plan_fx(sub)
            billed = _billed_before(sub, partner, per, items, fx)
            got = evaluate(sub, partner, per, usage, events, None, fx=fx, refunds=refunds, billed=billed,
                           items=items)
    except CycleError as e:
        res.error = str(e.__cause__) if isinstance(e.__cause__, ChargeError) else str(e)
        return res
    held = [f for f in got.findings if f.code == HOLD and not f.accepted]
    if held:
        res.error = held[0].message
        return res
    res.lines = list(got.lines)
    if any(e.key in PROGRESSIVE for e in ex.expect):
        _progressive(res, in_force, partner.currency)
    _compare(res)
    return res


PROGRESSIVE = ("interim", "no_interim", "invoice")


def _progressive(res: CycleExampleResult, in_force: list[Any], currency: str) -> None:
    """The interim invoices the example's checks raise and the traffic of its final invoice (see
    the module's documentation)."""
    ex = res.example
    ag = next((a for a in reversed(in_force) if a.progressive), None)
    if ag is None:
        raise ValueError(f'"{ex.agreement}" does not bill progressively')
    traffic = [(t.day, round_money(t.amount.amount, currency, ag.rounding.mode)) for t in ex.traffic]
    res.traffic = exact_sum(a for _, a in traffic)
    for day in sorted({e.day for e in ex.expect if e.key in ("interim", "no_interim") and e.day is not None}):
        usage = exact_sum(a for d, a in traffic if d is not None and d <= day)
        passed = threshold_passed(ag.progressive, usage, res.interims)
        if passed is None:
            continue
        own = usage - exact_sum(it.subtotal for it in res.interims)
        res.interims.append(Interim(f"interim {len(res.interims) + 1}", "", day, own, Decimal(0), passed))


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _billed_before(plan: Plan, partner: Partner, per: Period, items: tuple[Any, ...], fx: Any) -> dict[str, Any]:
    """What the earlier monthly cycles of the agreement billed of its recurring fees, as billing
    would have: each earlier cycle with the inventory known at its end (items activated by then;
    a later termination not yet known). Up to 13 months back."""
    fees_only = replace(plan, agreements=tuple(replace(a, charges=tuple(c for c in a.charges if c.kind == "recurring"))
                                                for a in plan.agreements))
    if not any(a.charges for a in fees_only.agreements):
        return {}
    first = min(agreement_days(v).start for v in plan.agreements)
    start = per.local_start
    y, m = start.year, start.month - 13
    while m < 1:
        y, m = y - 1, m + 12
    month = max(date(y, m, 1), date(first.year, first.month, 1))
    lines: list[Any] = []
    while month < start:
        nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        days = make_period("monthly", month, min(nxt, start), partner.timezone, f"{month:%Y-%m}")
        known = tuple(replace(it, terminated=None) if it.terminated is not None and it.terminated >= days.local_end
                      else it for it in items if it.activated < days.local_end)
        lines += evaluate(fees_only, partner, days, (), (), None, fx=fx, billed=billed_amounts(lines),
                          items=known).lines
        month = nxt
    return billed_amounts(lines)


def _compare(res: CycleExampleResult) -> None:
    ex = res.example
    for e in ex.expect:
        if e.key in PROGRESSIVE:
            _compare_progressive(res, e)
            continue
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
        if want is None:
            res.failures.append((what, "an amount", "none"))
            continue
        if not chosen and e.key == "line":
            res.failures.append((what, f"{want.amount} {want.currency}", "no line"))
            continue
        got = exact_sum(ln.amount for ln in chosen if ln.currency == want.currency)
        others = sorted({ln.currency for ln in chosen} - {want.currency})
        if got != want.amount or others:
            shown = f"{got} {want.currency}" + "".join(
                f" and {exact_sum(ln.amount for ln in chosen if ln.currency == c)} {c}" for c in others)
            res.failures.append((what, f"{want.amount} {want.currency}", shown))


def _compare_progressive(res: CycleExampleResult, e: Any) -> None:
    """An interim invoice on a day (or none), or the final invoice's subtotal."""
    if e.key == "invoice":
        got = res.traffic + exact_sum(ln.amount for ln in res.lines) - exact_sum(it.subtotal for it in res.interims)
        if got != e.amount.amount:
            res.failures.append(("invoice", f"{e.amount.amount} {e.amount.currency}", f"{got} {e.amount.currency}"))
        return
    on_day = [it for it in res.interims if it.until == e.day]
    what = f"interim on {e.day}"
    if e.key == "no_interim":
        if on_day:
            res.failures.append((what, "no interim invoice",
                                 f"{on_day[0].subtotal} {e.amount.currency if e.amount else ''}".strip()))
        return
    if not on_day:
        res.failures.append((what, f"{e.amount.amount} {e.amount.currency}", "no interim invoice"))
    elif on_day[0].subtotal != e.amount.amount:
        res.failures.append((what, f"{e.amount.amount} {e.amount.currency}",
                             f"{on_day[0].subtotal} {e.amount.currency}"))
