"""One-time fees and event fees: each application billed once and only once.

``one_time "LABEL" MONEY on activation|completion|termination|invoice`` (plan parameters
``amount``, ``on``; ``per_inventory`` KIND when the fee follows inventory items):

============  ==================================================================  =====================
trigger       billed on the cycle that holds                                       once per
============  ==================================================================  =====================
activation    the agreement's first day (its first invoice)                        agreement (any version)
activation    (per inventory) each item's activation date                          item
completion    the agreement's last day, when it runs to its end                    agreement version
termination   the last day in force of an agreement terminated early               agreement version
              (``ChargeContext.terminated_on`` - 1); per inventory: an item's
              last active day (its termination date - 1)
invoice       every cycle in which the agreement is in force, by the version in    version and cycle
              force on the cycle's last day in force
============  ==================================================================  =====================

``event "LABEL" MONEY per EVENT``: the cycle's event records of that type (the ``event`` field,
or, without one, ``service``), times their ``units`` (empty: 1), for records whose local day
is in the version's days. One line per cycle; each event record is one application
(``event:ID``), so a record billed on one cycle is never billed on another.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

from icdsl.charges.context import ChargeContext
from icdsl.charges.keys import line_key
from icdsl.charges.lines import ChargeError, ChargeLine
from icdsl.charges.periods import Days
from icdsl.plan.model import Charge, Money

ONE_DAY = timedelta(days=1)
TRIGGERS = ("activation", "completion", "termination", "invoice")


def _money(charge: Charge) -> Money:
    money = charge.param("amount")
    if not isinstance(money, Money):
        raise ChargeError(f"'{charge.name}' needs an amount of money", charge.span)
    return money


def evaluate_one_time(charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
    money = _money(charge)
    trigger = charge.param("on")
    if trigger not in TRIGGERS:
        raise ChargeError(f"one-time trigger '{trigger}' is not one of {', '.join(TRIGGERS)}", charge.span)
    kind = charge.param("per_inventory")
    if kind is not None and trigger in ("activation", "termination"):
        return _per_item(charge, ctx, money, trigger, kind)
    cycle, days = ctx.cycle, ctx.days
    lines: list[ChargeLine] = []

    def fee(subject: str, description: str, period: str = "-", any_version: bool = False, **dims) -> None:
        app = ctx.key(charge, subject, period, any_version=any_version)
        line = ctx.line(charge, description=description, exact=money.amount, currency=money.currency,
                        unit="fee", unit_price=money.amount, application=app,
                        dimensions={"trigger": trigger, **dims},
                        details={"trigger": trigger, "fee": f"{money.amount} {money.currency}"})
        if app not in ctx.billed:  # a one-time fee is never corrected: billed is billed
            lines.append(line)

    if trigger == "activation":
        first = ctx.agreement.effective_from
        if first in cycle:
            fee("activation", f"{charge.name}: activation of {ctx.agreement.name} on {first}", any_version=True,
                day=first.isoformat())
    elif trigger == "completion":
        whole = ctx.all_days
        if ctx.terminated_on is None and whole.last is not None and whole.last in cycle and whole.last in days:
            fee("completion", f"{charge.name}: completion of {ctx.agreement.name} on {whole.last}",
                day=whole.last.isoformat())
    elif trigger == "termination":
        if ctx.terminated_on is not None and days.last is not None and days.last in cycle:
            fee("termination", f"{charge.name}: termination of {ctx.agreement.name}, last day {days.last}",
                day=days.last.isoformat())
    else:  # invoice: once per cycle, by the version in force on the cycle's last day in force
        inside = ctx.all_days.intersect(cycle)
        owner = ctx.version_on(inside.last) if inside is not None and inside.last is not None else None
        if owner is not None and owner.version == ctx.agreement.version:
            fee("invoice", f"{charge.name}: {ctx.cycle_label}", ctx.cycle_label)
    return lines


def _per_item(charge: Charge, ctx: ChargeContext, money: Money, trigger: str, kind: str) -> list[ChargeLine]:
    lines = []
    for it in sorted(ctx.inventory, key=lambda i: (i.activated, i.item_id)):
        if it.partner != ctx.partner.code or it.kind != kind:
            continue
        if trigger == "activation":
            day = it.activated
        else:
            if it.terminated is None:
                continue
            day = it.terminated - ONE_DAY
        if day not in ctx.cycle or day not in ctx.days:
            continue
        app = ctx.key(charge, f"item:{it.kind}:{it.item_id}", trigger, any_version=trigger == "activation")
        if app in ctx.billed:
            continue
        qty = it.quantity if charge.param("per_quantity") else Decimal(1)
        lines.append(ctx.line(
            charge, description=f"{charge.name}: {trigger} of {it.kind} {it.item_id} on {day}",
            exact=money.amount * qty, currency=money.currency, quantity=qty, unit="fee", unit_price=money.amount,
            application=app, dimensions={"trigger": trigger, "item": it.item_id, "item_kind": it.kind,
                                         "day": day.isoformat()},
            details={"trigger": trigger, "item": it.item_id, "fee": f"{money.amount} {money.currency}"}))
    return lines


def evaluate_event(charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
    money = _money(charge)
    name = charge.param("event")
    if not name:
        raise ChargeError(f"'{charge.name}' needs the event it counts", charge.span)
    days = ctx.days.intersect(ctx.cycle) or Days(ctx.cycle.start, ctx.cycle.start)
    apps: list[str] = []
    per: dict[str, str] = {}
    units = 0
    for e in sorted(ctx.events, key=lambda e: (e.day, e.id)):
        if e.event != name or (e.partner and e.partner != ctx.partner.code) or e.day not in days:
            continue
        app = ctx.key(charge, f"event:{e.id}")
        if app in ctx.billed or app in per:
            continue
        apps.append(app)
        per[app] = str(money.amount * e.units)
        units += e.units
    if not apps:
        return []
    exact = Fraction(money.amount) * units
    return [ctx.line(
        charge, description=f"{charge.name}: {units} x {name}, {ctx.cycle_label}", exact=exact,
        currency=money.currency, quantity=units, unit=name, unit_price=money.amount,
        key=line_key(ctx.agreement.name, ctx.agreement.version, charge.name, f"events:{name}", ctx.cycle_label),
        applications=tuple(apps), dimensions={"event": name},
        details={"event": name, "records": len(apps), "units": units, "per_application": per,
                 "formula": f"{money.amount} x {units}"},
    )]
