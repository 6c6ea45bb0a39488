"""Recurring fees: monthly, quarterly or yearly; flat or per inventory item; prorated by day.

``recurring "LABEL" MONEY PERIOD [per inventory KIND | flat], prorate daily|none,
in advance|arrears, day count actual|thirty``. Plan parameters: ``amount`` (Money), ``period``,
``per_inventory`` (a kind, or absent for flat), ``option:prorate`` (default ``none``),
``option:in`` (default ``arrears``), ``option:day_count`` (default ``actual``) and
``option:anchor`` (``, periods from calendar``, the default: calendar months, quarters and
years; or ``, periods from start``: periods of 1, 3 or 12 months counted from the agreement
version's first day, e.g. a yearly fee from 15 March to 14 March).

Which periods a cycle bills (the cycle's local days ``[start, end)``, the agreement version's
days ``V``):

- a charge period ``P`` is billed by a version only on ``P ∩ V``;
- **in arrears** (default): on the cycle holding ``P``'s last billed day, ``min(P.end, V.end) - 1``:
  a monthly fee for March is on the March invoice, a quarterly fee for Q1 on the March one;
- **in advance**: on the cycle holding ``max(P.start - 1 day, V.start)``: the April fee is on
  the March invoice, and the first period of an agreement (which had no invoice before it) is
  on the agreement's first invoice together with the next one;
- a period billed in advance that changes afterwards (an item added, terminated, a quantity
  changed) is corrected on a later cycle: periods still running at ``reopen_from`` (default:
  the cycle's start) are evaluated again and compared with ``ChargeContext.billed``; what is
  missing is billed, what changed gets a correction line (the difference).

Each (item, period) is one line: ``fee x quantity x proration``, exact, rounded once to the
currency's minor unit. Items of other partners and other kinds are ignored.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from icdsl.charges.context import ChargeContext
from icdsl.charges.keys import correction_key, parse_key, period_label
from icdsl.charges.lines import ChargeError, ChargeLine, exact_text
from icdsl.charges.periods import Days, months_of, periods_overlapping, prorate
from icdsl.plan.model import Charge, Money

ONE_DAY = timedelta(days=1)


def options(charge: Charge) -> tuple[str, str, str, str]:
    pr = charge.param("option:prorate", "none")
    timing = charge.param("option:in", "arrears")
    dc = charge.param("option:day_count", "actual")
    anchor = charge.param("option:anchor", "calendar")
    for what, value, allowed in (("prorate", pr, ("daily", "none")), ("in", timing, ("advance", "arrears")),
                                 ("day count", dc, ("actual", "thirty")), ("anchor", anchor, ("calendar", "start"))):
        if value not in allowed:
            raise ChargeError(f"'{what} {value}' is not one of {', '.join(allowed)}", charge.span)
    return pr, timing, dc, anchor


def billing_day(period: Days, version: Days, timing: str) -> date | None:
    """The day whose cycle bills ``period`` for a version in force on ``version`` (None: the
    version has no day in the period)."""
    inside = period.intersect(version)
    if inside is None:
        return None
    if timing == "advance":
        return max(period.start - ONE_DAY, version.start)
    return inside.end - ONE_DAY  # type: ignore[operator]


def evaluate(charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
    money = charge.param("amount")
    if not isinstance(money, Money):
        raise ChargeError("a recurring fee needs an amount of money", charge.span)
    months = months_of(charge.param("period", "monthly"))
    pr, timing, day_count, anchor_opt = options(charge)
    kind = charge.param("per_inventory")
    version = ctx.days
    anchor = ctx.all_days.start if anchor_opt == "start" else None
    cs, ce = ctx.cycle.start, ctx.cycle.end
    assert ce is not None
    reopen = min(ctx.reopen_from or cs, cs)
    lines: list[ChargeLine] = []
    # every period that may be billed now (billing day in the cycle) or that was billed earlier
    # and is still running at ``reopen`` (re-examined: catch-up and corrections)
    seen: set[str] = set()
    for period in periods_overlapping(Days(reopen, ce + ONE_DAY), months, anchor):
        day = billing_day(period, version, timing)
        if day is None or day >= ce:
            continue
        seen.add(period_label(period.start, period.end))  # type: ignore[arg-type]
        lines.extend(_period_lines(charge, ctx, money, months, pr, day_count, kind, period, version))
    out = []
    for line in lines:
        settled = ctx.settle(line)
        if settled is not None:
            out.append(settled)
    out.extend(_withdrawn(charge, ctx, seen, {a for ln in lines for a in ln.applications}, money.currency))
    return out


def _withdrawn(charge: Charge, ctx: ChargeContext, periods: set[str], produced: set[str], currency: str
               ) -> list[ChargeLine]:
    """Corrections of applications billed for these periods that are no longer due at all (an
    item terminated before the period it was billed for in advance)."""
    ag = ctx.agreement
    out = []
    for app, amount in sorted(ctx.billed.items()):
        if app in produced or not amount:
            continue
        parts = parse_key(app)
        if parts is None or parts[:3] != (ag.name, ag.version, charge.name) or parts[4] not in periods:
            continue
        line = ctx.line(charge, description=f"correction of {charge.name}: {parts[3]}, {parts[4]}: {amount} billed, "
                                            "nothing due", exact=-amount, currency=currency, quantity=0,
                        unit="correction", key=correction_key(app, ctx.cycle_label), applications=(),
                        dimensions={"period": parts[4], "subject": parts[3]},
                        details={"billed_before": str(amount), "now": "0", "correction": str(-amount)})
        out.append(replace(line, corrects=app))
    return out


def _subjects(ctx: ChargeContext, kind: str | None, period: Days):
    if kind is None:
        yield "agreement", "the agreement", Decimal(1), ctx.all_days, {}
        return
    for it in ctx.inventory:
        if it.partner != ctx.partner.code or it.kind != kind:
            continue
        days = Days(it.activated, it.terminated)
        if not days.overlaps(period):
            continue
        dims = {"item": it.item_id, "item_kind": it.kind}
        what = f"{it.kind} {it.item_id}" + (f" ({it.description})" if it.description else "")
        yield f"item:{it.kind}:{it.item_id}", what, it.quantity, days, dims


def _first_billable(active: Days, period: Days, ctx: ChargeContext) -> date | None:
    """The first day of ``period`` on which the subject is active and some version in force."""
    span = active.intersect(period)
    if span is None:
        return None
    span = span.intersect(ctx.all_days)
    return None if span is None else span.start


def _period_lines(charge, ctx, money, months, pr, day_count, kind, period, version) -> list[ChargeLine]:
    out = []
    label = period_label(period.start, period.end)
    for subject, what, qty, active, dims in _subjects(ctx, kind, period):
        if pr == "none":
            # the whole period, charged once: by the version in force on the first day it is due
            first = _first_billable(active, period, ctx)
            if first is None:
                continue
            owner = ctx.version_on(first)
            if owner is None or owner.version != ctx.agreement.version:
                continue
            share = prorate(active, period, months, "none", day_count)
        else:
            cut = active.intersect(version)
            if cut is None:
                continue
            share = prorate(cut, period, months, "daily", day_count)
        if share.factor == 0:
            continue
        exact = Fraction(money.amount) * Fraction(qty) * share.factor
        app = ctx.key(charge, subject, label)
        qty_text = format(qty, "f")
        desc = f"{charge.name}: {what}, {label}"
        if share.factor != 1:
            desc += f", {share.text}"
        out.append(ctx.line(
            charge, description=desc, exact=exact, currency=money.currency,
            quantity=qty,
            unit=kind or "period", unit_price=money.amount, application=app,
            dimensions=dims | {"period_start": period.start.isoformat(),
                               "period_end": (period.end - ONE_DAY).isoformat()},  # type: ignore[operator]
            details={
                "fee": f"{money.amount} {money.currency} {charge.param('period')}",
                "quantity": qty_text,
                "period": label,
                "active": active.label,
                "version_days": version.label,
                "prorate": pr,
                "day_count": day_count,
                "days_active": str(share.days_active),
                "days_in_period": str(share.days_in_period),
                "factor": str(share.factor),
                "timing": charge.param("option:in", "arrears"),
                "formula": f"{money.amount} x {qty_text} x {share.factor} = {exact_text(exact)}",
            },
        ))
    return out


__all__ = ["billing_day", "evaluate", "options"]
