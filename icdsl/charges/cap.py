"""A maximum cost per period: ``at most 5000.00 EUR per month`` in a service (or the agreement).

Plan parameters: ``amount`` = (value, currency), ``period`` (month | cycle | quarter | year).
The records keep their rated amounts (a per-record cap is ``at most ... per call``, applied when
a record is rated); the period cap is a cycle-level line:

- **Measured** like a money commitment counting usage (:func:`icdsl.charges.commitment.measure`):
  the records' amounts and surcharges of its scope, plus the tiered-price lines, minus the
  volume discounts, over the period to date (earlier cycles of the period from
  ``ctx.history``, net of the cap lines they already carry).
- **Line** = -(measured - cap) when positive, on every cycle of the period: the usage billed
  over the period never exceeds the cap, and a cycle after the cap was reached takes off all
  of its usage. One line per period and cycle, rounded once to the minor unit.
- **Order**: stage ``cap``, after the discounts, before the commitments (which measure the
  usage as capped).
- **A partial period** (``, prorate daily``): in a period the agreement is in force only part
  of (its first or last), the cap is ``cap x days in force / days in the period`` (actual
  days, as a recurring fee's ``prorate daily`` and prorated tiers: :func:`tier_scale`), exact;
  without the option the whole cap applies.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from icdsl.charges.commitment import measure
from icdsl.charges.context import ChargeContext, scope_text
from icdsl.charges.lines import ChargeLine, exact_text, shown
from icdsl.charges.tiers import measuring_period, tier_scale
from icdsl.plan.model import Charge


def cap_of(charge: Charge) -> tuple[Decimal, str, str]:
    """(amount, currency, period) of a period cap."""
    (value, currency), period = charge.param("amount"), charge.param("period", "month")
    return Decimal(value), currency, period


def capped(uncapped: Fraction, cap: Fraction) -> Fraction:
    """What the period's usage costs under the cap."""
    return min(uncapped, cap)


def evaluate(charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
    value, currency, per = cap_of(charge)
    period = measuring_period(per, ctx)
    if period.intersect(ctx.days) is None:
        return []
    m = measure(charge, ctx, period)  # the period to date, earlier cycles as billed (net of their cap lines)
    scale, prorated = tier_scale(charge, ctx, period)  # `, prorate daily` in a partial period
    cap = Fraction(value) * scale
    excess = m.actual - capped(m.actual, cap)
    if excess <= 0:
        return []
    scope = charge.applies_to
    details = {
        "period": period.label,
        "cap": f"{value} {currency}",
        "per": per,
        "scope": scope_text(scope),
        "measured": exact_text(m.actual),
        "excess": exact_text(excess),
        "cycles": m.cycles,
        "measured_on": "usage charges after discounts (records' amounts and surcharges, tiered-price lines, "
        "minus volume discounts), earlier cycles of the period as billed",
        "records": "keep their rated amounts: the cap applies to the period, on this line",
    }
    if m.fx:
        details["fx"] = list(m.fx)
    above = shown(value, currency)
    if prorated:
        details["cap_prorated"] = f"{value} x {prorated} = {exact_text(cap)} {currency}"
        above = f"{shown(cap, currency)} ({above} prorated {prorated})"
    desc = (
        f"Cap: usage above {above} per {per}, {scope_text(scope)}, {period.label} "
        f"({shown(m.actual, currency)} measured)"
    )
    return [
        ctx.line(
            charge,
            description=desc,
            exact=-excess,
            currency=currency,
            quantity=Decimal(1),
            unit="cap",
            application=ctx.key(charge, "cap", period.label),
            dimensions={"period": period.label},
            details=details,
            stage="cap",
        )
    ]
