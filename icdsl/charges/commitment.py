"""Minimum commitments: the shortfall of a period as its own line, and progress mid-period.

``commit ["LABEL"] QUANTITY per month|cycle|quarter|year|contract_year, shortfall
charged|waived, prorate daily|none, of ...``. Plan parameters: ``amount`` = (value, unit),
``period``, ``option:shortfall`` (default ``charged``), ``option:prorate`` (default ``none``).

- **Measured** over the period: a money commitment on the usage charges of its scope (the
  records' amounts and surcharges, plus the tiered-price lines, minus the volume discounts: the
  commitment stage comes after the discount stage); a quantity commitment on the measure
  (minutes, messages, volume in MB, calls, events). Earlier cycles of the period come from
  ``ChargeContext.history`` (usage and lines).
- **Shortfall** = committed - actual, when positive, on the cycle that closes the period (the
  cycle holding the period's last day in force). A quantity shortfall is valued at the period's
  average price of the measured traffic (amount / quantity, exact); with no such traffic it
  cannot be valued: :class:`~icdsl.charges.lines.ChargeHold` (billing holds the cycle).
- A period cut by the agreement's start or end is committed in full, or with ``prorate daily``
  in proportion to its days in force (actual days).
- ``shortfall waived``: the line is there, with amount 0 and the shortfall in its details.

:func:`progress` tells, mid-period, how far the partner is: percent reached and what is
expected at this point pro rata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from icdsl.charges.context import ChargeContext, in_scope, scope_text
from icdsl.charges.lines import ChargeHold, ChargeLine, exact_text, shown
from icdsl.charges.periods import Days
from icdsl.charges.tiers import MEASURE_UNIT, measuring_period
from icdsl.lang.values import currencies
from icdsl.money import round_decimal
from icdsl.plan.model import Charge


def commitment_of(charge: Charge) -> tuple[Decimal, str, bool]:
    """(value, unit, is_money) of a commitment."""
    value, unit = charge.param("amount")
    return Decimal(value), unit, unit in currencies()


def committed_for(charge: Charge, period: Days, version_days: Days) -> tuple[Fraction, str]:
    """The commitment of ``period`` for an agreement in force on ``version_days``: in full, or
    prorated by actual days with ``prorate daily``."""
    value, _, _ = commitment_of(charge)
    inside = period.intersect(version_days)
    if inside is None:
        return Fraction(0), "not in force"
    if charge.param("option:prorate", "none") != "daily" or (inside.start, inside.end) == (period.start, period.end):
        return Fraction(value), "whole period"
    n, d = (inside.end - inside.start).days, (period.end - period.start).days  # type: ignore[operator]
    return Fraction(value) * n / d, f"{n}/{d} days"


#: the charges that are fees (not usage): what ``, counts fees|all`` adds to a money commitment
FEE_KINDS = ("recurring", "one_time", "event", "percentage")
#: ``, counts ...`` -> (usage counts, fees count)
COUNTS = {"usage": (True, False), "fees": (False, True), "all": (True, True)}


def counts_of(charge: Charge) -> tuple[bool, bool]:
    """(usage counts, fees count) for a money commitment: ``, counts usage`` (the default),
    ``fees`` or ``all``."""
    return COUNTS[charge.param("option:counts", "usage")]


def _line_counts(line: ChargeLine, scope: tuple[tuple[str, str], ...], counts: tuple[bool, bool] = (True, False)
                 ) -> bool:
    usage, fees = counts
    if line.kind in FEE_KINDS:
        return fees  # a fee belongs to no service: a scoped commitment that counts fees counts them all
    if line.kind not in ("tiered_price", "volume_discount", "usage_cap") or not usage:
        return False
    if not scope:
        return True
    return bool(line.scope) and all(in_scope(scope, d, s) for d, s in line.scope)


@dataclass(frozen=True, slots=True)
class Measured:
    """What a commitment measured over its period so far: ``actual`` (money in the commitment's
    currency, or the quantity), ``charges`` (the usage charges in ``currency``: what a quantity
    shortfall's average price is taken from), the earlier cycles counted, the conversions."""

    currency: str
    actual: Fraction
    charges: Fraction
    cycles: int
    fx: tuple[dict[str, str], ...] = ()


def measure(charge: Charge, ctx: ChargeContext, period: Days) -> Measured:
    """The commitment's scope over ``period`` up to this cycle (included): the earlier cycles
    of the period (``ctx.history``) and this one. Usage charges = the records' amounts and
    surcharges, plus the tiered-price lines, minus the volume-discount lines of its scope
    (this cycle's: ``ctx.lines``). Amounts in other currencies than the commitment's (a money
    commitment) or the agreement's (a quantity commitment, for its average price) are
    converted with the agreement's fx source, each cycle's at the rate in force on that cycle's
    last day, exactly (:meth:`ChargeContext.total_in`)."""
    _value, unit, is_money = commitment_of(charge)
    scope = charge.applies_to
    earlier = ctx.history_in(period) if period != ctx.cycle else []
    currency = unit if is_money else ctx.agreement.currency
    counts = counts_of(charge) if is_money else (True, False)
    usage = counts[0]
    amounts: list[tuple[date, str, Fraction]] = []
    for h in earlier:
        day = h.days.last
        assert day is not None
        if usage:
            amounts += [(day, u.currency, Fraction(u.amount) + Fraction(u.record_charges))
                        for u in ctx.usage_of(scope, rows=h.usage)]
        amounts += [(day, ln.currency, Fraction(ln.amount)) for ln in h.lines
                    if ln.agreement_version == ctx.agreement.version and _line_counts(ln, scope, counts)]
    if usage:
        amounts += [(ctx.last_day, u.currency, Fraction(u.amount) + Fraction(u.record_charges))
                    for u in ctx.usage_of(scope)]
    amounts += [(ctx.last_day, ln.currency, Fraction(ln.amount)) for ln in ctx.lines if _line_counts(ln, scope, counts)]
    charges, trail = ctx.total_in(charge, amounts, currency)
    if is_money:
        actual = charges
    else:
        actual = sum((ctx.measure(unit, scope, rows=h.usage, events=h.events) for h in earlier), Fraction(0)) + \
            ctx.measure(unit, scope)
    return Measured(currency, actual, charges, len(earlier) + 1, tuple(trail))


def evaluate(charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
    value, unit, is_money = commitment_of(charge)
    period = measuring_period(charge.param("period", "cycle"), ctx)
    inside = period.intersect(ctx.days)
    if inside is None or inside.last not in ctx.cycle:
        return []  # not the cycle that closes the period
    committed, how = committed_for(charge, period, ctx.days)
    scope = charge.applies_to
    m = measure(charge, ctx, period)
    currency, actual, charges = m.currency, m.actual, m.charges
    if is_money:
        shortfall = max(Fraction(0), committed - actual)
        exact = shortfall
        valued = ""
    else:
        shortfall = max(Fraction(0), committed - actual)
        if shortfall and actual == 0:
            raise ChargeHold(f"'{charge.name}': a shortfall of {shown(shortfall, unit)} in {period.label} "
                             f"cannot be valued: there is no {unit} traffic ({scope_text(scope)}) to give an average "
                             "price; review the cycle", charge.span)
        avg = charges / actual if actual else Fraction(0)
        exact = shortfall * avg
        valued = f"{exact_text(shortfall)} {unit} x average price {exact_text(avg)} {currency}"
    waived = charge.param("option:shortfall", "charged") == "waived"
    if shortfall == 0:
        return []
    details: dict[str, Any] = {
        "period": period.label, "committed": exact_text(committed), "commitment": f"{value} {unit}",
        "proration": how, "actual": exact_text(actual), "shortfall": exact_text(shortfall),
        "scope": scope_text(scope), "measured_on": _measured_on(charge) if is_money else unit,
        "cycles": m.cycles, "waived": waived,
    }
    if valued:
        details["valued"] = valued
    if m.fx:
        details["fx"] = list(m.fx)
    desc = f"{charge.name}: shortfall {shown(shortfall, unit)} of {shown(committed, unit)} committed " \
           f"({shown(actual, unit)} reached), {period.label}"
    if valued:
        desc += f", valued at the average price {format(_dec(avg, 6).normalize(), 'f')} {currency} " \
                f"per {MEASURE_UNIT.get(unit, unit) or unit}"
    if waived:
        details["waived_amount"] = exact_text(exact)
        desc += " (waived)"
        exact = Fraction(0)
    return [ctx.line(charge, description=desc, exact=exact, currency=currency, quantity=Decimal(1), unit="shortfall",
                     application=ctx.key(charge, "shortfall", period.label),
                     dimensions={"period": period.label, "waived": waived}, details=details, stage="commitment")]


def _measured_on(charge: Charge) -> str:
    usage, fees = counts_of(charge)
    if usage and fees:
        return "usage charges after discounts, and fees (recurring, one-time, event, percentage)"
    return "fees (recurring, one-time, event, percentage)" if fees else "usage charges after discounts"


@dataclass(frozen=True, slots=True)
class CommitmentProgress:
    """Where a commitment stands on ``as_of`` (usage counted through that day, included).

    ``percent``: so_far / committed x 100; ``expected``: committed x elapsed days / period
    days (pro rata); ``on_track``: so_far >= expected; ``shortfall_now``: what would be due if
    the period ended with no more usage."""

    committed: Decimal
    so_far: Decimal
    unit: str
    period: Days
    as_of: date
    elapsed_days: int
    period_days: int
    percent: Decimal
    expected: Decimal
    expected_percent: Decimal
    on_track: bool
    shortfall_now: Decimal


def _dec(f: Fraction, places: int = 2) -> Decimal:
    return round_decimal(Decimal(f.numerator) / Decimal(f.denominator), places, "half_up") \
        if f.denominator != 1 else Decimal(f.numerator)


def progress(charge: Charge, so_far: Decimal, period: Days, as_of: date) -> CommitmentProgress:
    """How far ``so_far`` (money or quantity, as the commitment is written) is into the
    commitment of ``period`` on ``as_of``. Percentages to 2 decimals, half up."""
    value, unit, _ = commitment_of(charge)
    assert period.end is not None
    total = (period.end - period.start).days
    elapsed = min(max((as_of - period.start).days + 1, 0), total)
    committed = Fraction(value)
    expected = committed * elapsed / total
    done = Fraction(so_far)
    return CommitmentProgress(
        committed=value, so_far=so_far, unit=unit, period=period, as_of=as_of, elapsed_days=elapsed,
        period_days=total, percent=_dec(done / committed * 100) if committed else Decimal(0),
        expected=_dec(expected), expected_percent=_dec(Fraction(elapsed * 100, total)),
        on_track=done >= expected, shortfall_now=_dec(max(Fraction(0), committed - done)),
    )
