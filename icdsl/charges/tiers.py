"""Tiered prices and volume discounts: a quantity measured over a period, priced by tiers.

**Tier boundaries.** ``from N`` starts a tier at N, *included*; a tier runs until the next
tier's start, *excluded*. A quantity falls in a tier by its exact value (99,999.5 minutes are
below ``from 100_000``; 100,000 are in it). A tier is *reached* when the quantity is at least
its start.

**tiered_price** (``mode``: graduated | volume; tier values: a price per unit, a package price
``per N units``, or a ``flat`` fee):

- graduated: each part of the quantity at its own tier's price: the part of tier i is
  ``min(q, start of tier i+1) - start of tier i``. A package price charges each *started*
  package of the part in full (ceil). Every tier reached adds its flat fee.
- volume: the whole quantity at the tier reached (a package price: ceil(q / N) packages; a
  flat fee: that fee).
- a flat fee is due as soon as its tier is reached: a ``from 0`` flat fee is due every period,
  also without any usage (it is a base fee); a flat fee from N > 0 only once q >= N.
- Worked example (the same as Stripe's documentation): tiers ``from 0: 5.00``, ``from 5: 4.00``,
  ``from 10: 3.00`` per unit; 15 units: graduated 5 x 5.00 + 5 x 4.00 + 5 x 3.00 = 60.00;
  volume 15 x 3.00 = 45.00.

**volume_discount** (``mode``: retroactive | incremental; tier values: percentages) of the
traffic amounts in scope (the records' amounts; surcharges are not discounted), its own
negative line: retroactive: the percentage of the tier reached on the whole amount;
incremental: each tier's percentage on amount x (quantity in the tier / total quantity).
Quantities below the first tier get nothing.

**Periods.** ``per cycle`` measures the cycle. ``per month|quarter|year`` (calendar) and
``per contract_year`` (12 months from the agreement's first day) measure the period *to date*:
the earlier cycles of the period (``ChargeContext.history``; a cycle counts in the period in
which it ends) plus this one, and the line is what the period to date costs minus what it cost
before this cycle, each rounded: the lines of a period add up exactly to the rounded price of
its total.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

from icdsl.charges.context import ChargeContext, scope_text
from icdsl.charges.lines import MEASURE_WORDS, ChargeError, ChargeLine, exact_text, shown
from icdsl.charges.periods import Days, months_of, period_containing
from icdsl.money import round_decimal
from icdsl.plan.model import Charge, Tier

#: measure -> {price unit -> how many price units one unit of the measure is}
UNIT_FACTORS = {
    "minutes": {"minute": Fraction(1), "min": Fraction(1), "minutes": Fraction(1), "second": Fraction(60),
                "s": Fraction(60), "sec": Fraction(60), "seconds": Fraction(60), "hour": Fraction(1, 60),
                "h": Fraction(1, 60), "hours": Fraction(1, 60)},
    "volume": {"KB": Fraction(1024), "MB": Fraction(1), "GB": Fraction(1, 1024), "TB": Fraction(1, 1024**2),
               "B": Fraction(1024**2), "byte": Fraction(1024**2), "bytes": Fraction(1024**2)},
}
MEASURE_UNIT = {"minutes": "minute", "messages": "message", "volume": "MB", "revenue": "", "calls": "call",
                "events": "event"}


def measuring_period(period: str, ctx: ChargeContext) -> Days:
    """The measuring period holding the cycle's last day: the cycle itself, a calendar month,
    quarter or year, or a contract year (12 months from the agreement's first day)."""
    if period == "cycle":
        return ctx.cycle
    last = ctx.cycle.last
    assert last is not None
    if period == "contract_year":
        return period_containing(last, 12, ctx.all_days.start)
    return period_containing(last, months_of(period), None)


def reached(t: Tier, q: Fraction, scale: Fraction = Fraction(1)) -> bool:
    """Whether quantity ``q`` reaches tier ``t``: at least its start (``from N``), or above the
    end of the tier before (tiers written ``up to N``: the first tier is reached above 0). Bounds
    are multiplied by ``scale`` (tiers prorated over a partial period)."""
    return q > Fraction(t.start) * scale if t.exclusive else q >= Fraction(t.start) * scale


def tier_index(tiers: tuple[Tier, ...], q: Fraction, scale: Fraction = Fraction(1)) -> int | None:
    """The tier a quantity falls in: the last it reaches (None: below the first)."""
    found = None
    for i, t in enumerate(tiers):
        if reached(t, q, scale):
            found = i
        else:
            break
    return found


def _bound_text(t: Tier) -> str:
    def num(d) -> str:
        return format(d, ",f").replace(",", "_")

    if not t.exclusive:
        return f"from {num(t.start)}"
    return f"up to {num(t.up_to)}" if t.up_to is not None else f"above {num(t.start)}"


def tier_label(t: Tier) -> str:
    head = _bound_text(t)
    if t.percent is not None:
        return f"{head}: {format(t.percent.normalize(), 'f')}%"
    if t.flat is not None and t.price is not None:
        return f"{head}: {t.price} plus {t.flat} flat"
    if t.flat is not None:
        return f"{head}: {t.flat} flat"
    return f"{head}: {t.price}"


def _factor(measure: str, unit: str, span) -> Fraction:
    if not unit or measure not in UNIT_FACTORS:
        return Fraction(1)
    try:
        return UNIT_FACTORS[measure][unit]
    except KeyError:
        raise ChargeError(f"a price per {unit} cannot price {measure}", span) from None


def _ceil(f: Fraction) -> int:
    return -((-f.numerator) // f.denominator)


@dataclass(frozen=True, slots=True)
class TierPart:
    tier: int
    label: str
    quantity: Fraction
    amount: Fraction
    how: str


def price_tiers(tiers: tuple[Tier, ...], q: Fraction, mode: str, measure: str, span=None,
                scale: Fraction = Fraction(1)) -> tuple[Fraction, list[TierPart]]:
    """The exact price of quantity ``q`` by ``tiers``: (amount, the part of each tier). ``scale``
    multiplies every bound (tiers prorated over a partial period; prices and fees unchanged)."""
    if mode not in ("graduated", "volume"):
        raise ChargeError(f"tier mode '{mode}' is not graduated or volume", span)
    parts: list[TierPart] = []
    if mode == "volume":
        i = tier_index(tiers, q, scale)
        if i is None:
            return Fraction(0), parts
        t = tiers[i]
        amount, how = _value(t, q, measure, span)
        parts.append(TierPart(i, tier_label(t), q, amount, how))
        return amount, parts
    total = Fraction(0)
    for i, t in enumerate(tiers):
        lo = Fraction(t.start) * scale
        if not reached(t, q, scale):
            break
        hi = Fraction(tiers[i + 1].start) * scale if i + 1 < len(tiers) else None
        part = (q if hi is None else min(q, hi)) - lo
        amount, how = _value(t, part, measure, span)
        parts.append(TierPart(i, tier_label(t), part, amount, how))
        total += amount
    return total, parts


def _value(t: Tier, units: Fraction, measure: str, span) -> tuple[Fraction, str]:
    if t.percent is not None:  # a percentage of the money in the tier (measured on revenue), plus its flat fee
        pct = Fraction(t.percent)
        amount, how = units * pct / 100, f"{exact_text(pct)}% of {exact_text(units)}"
        if t.flat is not None:
            return amount + Fraction(t.flat.amount), f"{how} + {t.flat} flat"
        return amount, how
    if t.flat is not None and t.price is not None:  # a price per unit plus a flat fee
        amount, how = _value(replace(t, flat=None), units, measure, span)
        return amount + Fraction(t.flat.amount), f"{how} + {t.flat} flat"
    if t.flat is not None:
        return Fraction(t.flat.amount), f"{t.flat} flat"
    if t.price is None:
        raise ChargeError("a tiered price needs a price per unit or a flat fee", t.span)
    p = t.price
    n = units * _factor(measure, p.unit, span or t.span)
    if p.per_count != 1:
        packages = _ceil(n / p.per_count) if n > 0 else 0
        return Fraction(p.amount) * packages, f"{packages} started package(s) of {p.per_count} {p.unit} x {p.amount}"
    return Fraction(p.amount) * n, f"{exact_text(n)} {p.unit} x {p.amount}"


def discount_tiers(tiers: tuple[Tier, ...], q: Fraction, amount: Fraction, mode: str, span=None
                   ) -> tuple[Fraction, list[TierPart]]:
    """The exact discount (positive) on ``amount`` for quantity ``q``."""
    parts: list[TierPart] = []
    if q <= 0:
        return Fraction(0), parts
    if mode == "retroactive":
        i = tier_index(tiers, q)
        if i is None:
            return Fraction(0), parts
        pct = Fraction(tiers[i].percent or 0)
        d = amount * pct / 100
        parts.append(TierPart(i, tier_label(tiers[i]), q, d, f"{exact_text(pct)}% of {exact_text(amount)}"))
        return d, parts
    if mode != "incremental":
        raise ChargeError(f"discount mode '{mode}' is not retroactive or incremental", span)
    total = Fraction(0)
    for i, t in enumerate(tiers):
        lo = Fraction(t.start)
        if q <= lo:
            break
        hi = Fraction(tiers[i + 1].start) if i + 1 < len(tiers) else None
        part = (q if hi is None else min(q, hi)) - lo
        pct = Fraction(t.percent or 0)
        d = amount * pct / 100 * part / q
        parts.append(TierPart(i, tier_label(t), part, d,
                              f"{exact_text(pct)}% of {exact_text(amount)} x {exact_text(part)}/{exact_text(q)}"))
        total += d
    return total, parts


def _quantity(q: Fraction) -> Decimal:
    """A measure for the line's quantity column: exact when it has at most 8 decimals, else
    rounded half up to 8 (the exact value is in the details)."""

    d = Decimal(q.numerator) / Decimal(q.denominator)
    exact = Fraction(d) == q and d.as_tuple().exponent >= -8  # type: ignore[operator]
    return d if exact else round_decimal(d, 8, "half_up")


def tier_text(t: Tier, measure: str, currency: str = "") -> str:
    """A tier for a description: its start with the measure's unit (``from 2,000,000 MB: 5%``,
    ``from 10,000 EUR: 2%`` for revenue)."""
    unit = currency if measure == "revenue" else MEASURE_WORDS.get(measure, measure)
    if t.exclusive:
        head = f"up to {shown(t.up_to, unit)}" if t.up_to is not None else f"above {shown(t.start, unit)}"
        value = tier_label(t).split(": ", 1)[1]
        return f"{head}: {value}"
    start = shown(t.start, unit)
    if t.percent is not None:
        return f"from {start}: {format(t.percent.normalize(), 'f')}%"
    if t.flat is not None and t.price is not None:
        return f"from {start}: {t.price} plus {t.flat} flat"
    if t.flat is not None:
        return f"from {start}: {t.flat} flat"
    return f"from {start}: {t.price}"


@dataclass(frozen=True, slots=True)
class ToDate:
    """A charge's scope measured over its measuring period: the quantity before this cycle and
    to date (revenue: converted into the charge's currency), the traffic amounts before and to
    date by currency (never converted), and the conversions made."""

    period: Days
    before_q: Fraction
    now_q: Fraction
    before_a: dict[str, Fraction]
    now_a: dict[str, Fraction]
    fx: list[dict[str, str]]


def _to_date(charge: Charge, ctx: ChargeContext, measure: str, currency: str) -> ToDate:
    """The charge's scope over its period to date. A ``revenue`` quantity is the records'
    amounts converted into ``currency``: each cycle's amounts at the fx rate in force on that
    cycle's last day, exactly (:meth:`ChargeContext.total_in`)."""
    period = measuring_period(charge.param("period", "cycle"), ctx)
    scope = charge.applies_to
    earlier = ctx.history_in(period) if charge.param("period", "cycle") != "cycle" else []
    before_a: dict[str, Fraction] = {}
    for h in earlier:
        for u in ctx.usage_of(scope, rows=h.usage):
            before_a[u.currency] = before_a.get(u.currency, Fraction(0)) + Fraction(u.amount)
    now_a = dict(before_a)
    for u in ctx.usage_of(scope):
        now_a[u.currency] = now_a.get(u.currency, Fraction(0)) + Fraction(u.amount)
    trail: list[dict[str, str]] = []
    if measure == "revenue":
        past = [(h.days.last, u.currency, u.amount) for h in earlier for u in ctx.usage_of(scope, rows=h.usage)]
        before_q, t1 = ctx.total_in(charge, past, currency)  # type: ignore[arg-type]
        this, t2 = ctx.total_in(charge, [(ctx.last_day, u.currency, u.amount) for u in ctx.usage_of(scope)],
                                currency)
        now_q, trail = before_q + this, t1 + t2
    else:
        before_q = sum((ctx.measure(measure, scope, rows=h.usage, events=h.events) for h in earlier), Fraction(0))
        now_q = before_q + ctx.measure(measure, scope)
    return ToDate(period, before_q, now_q, before_a, now_a, trail)


def tiers_currency(charge: Charge, ctx: ChargeContext) -> str:
    """A tiered price's currency: its prices' (the first tier with a price or a flat fee), else
    the agreement's."""
    for t in charge.param("tiers", ()):
        if t.price is not None:
            return t.price.currency
        if t.flat is not None:
            return t.flat.currency
    return ctx.agreement.currency


def tier_scale(charge: Charge, ctx: ChargeContext, period: Days) -> tuple[Fraction, str]:
    """With ``, prorate daily``, the factor of a measuring period the agreement is in force only
    part of (its first or last): days in force / days in the period (actual days), which
    multiplies every tier bound; 1 otherwise."""
    if charge.param("option:prorate", "none") != "daily" or period.end is None:
        return Fraction(1), ""
    inside = period.intersect(ctx.all_days)
    if inside is None or inside.end is None or (inside.start, inside.end) == (period.start, period.end):
        return Fraction(1), ""
    n, d = (inside.end - inside.start).days, (period.end - period.start).days
    return Fraction(n, d), f"{n}/{d} days"


def evaluate_tiered(charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
    tiers: tuple[Tier, ...] = charge.param("tiers", ())
    if not tiers:
        raise ChargeError(f"'{charge.name}' has no tiers", charge.span)
    mode, measure = charge.param("mode"), charge.param("on")
    if ctx.active_in_cycle is None:
        return []
    currency = tiers_currency(charge, ctx)
    td = _to_date(charge, ctx, measure, currency)
    period, before_q, now_q = td.period, td.before_q, td.now_q
    scale, prorated = tier_scale(charge, ctx, period)
    now, parts = price_tiers(tiers, now_q, mode, measure, charge.span, scale)
    before = Fraction(0)
    if period != ctx.cycle and ctx.history_in(period):
        # the period to date minus what its earlier cycles were billed, each rounded
        before, _ = price_tiers(tiers, before_q, mode, measure, charge.span, scale)
        exact = Fraction(ctx.round(now, currency)) - Fraction(ctx.round(before, currency))
    else:
        exact = now
    if exact == 0 and now_q == before_q:
        return []  # nothing used and nothing due: no line
    reached = parts[-1].label if parts else "no tier reached"
    i = tier_index(tiers, now_q, scale)
    reached_text = tier_text(tiers[i], measure, currency) if i is not None else "no tier reached"
    unit = currency if measure == "revenue" else measure
    label = period.label
    this = shown(now_q - before_q, unit)
    desc = f"{charge.name}: {this} ({scope_text(charge.applies_to)}), {mode}, tier reached {reached_text}"
    if period != ctx.cycle:
        desc += f"; {shown(now_q, unit)} in {label} to date"
    details = {
        "mode": mode, "measure": measure, "period": label, "scope": scope_text(charge.applies_to),
        "quantity_to_date": exact_text(now_q), "quantity_before": exact_text(before_q),
        "tiers": [{"tier": p.label, "quantity": exact_text(p.quantity), "amount": exact_text(p.amount), "how": p.how}
                  for p in parts],
        "price_to_date": exact_text(now), "price_before": exact_text(before),
    }
    if td.fx:
        details["fx"] = td.fx
    if prorated:
        details["tier_bounds_prorated"] = f"{prorated}: every bound x {exact_text(scale)}"
        desc += f"; tier bounds prorated {prorated}"
    capacity = charge.param("option:capacity", None)
    if capacity is not None:  # compared with the other tiers of the capacity (highest_tier)
        details["capacity"] = capacity
        details["tier_index"] = -1 if i is None else i
    return [ctx.line(charge, description=desc, exact=exact, currency=currency, quantity=_quantity(now_q - before_q),
                     unit=MEASURE_UNIT.get(measure, measure) or currency,
                     application=ctx.key(charge, "tiers", label + "@" + ctx.cycle_label),
                     dimensions={"tier": reached, "measure": measure, "period": label}, details=details)]


def evaluate_discount(charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
    """A volume discount: the quantity (``revenue``: every currency's amounts converted into the
    agreement's currency) chooses the tier; each currency's traffic amount is discounted in its
    own currency (one line per currency, which billing converts like the traffic it discounts)."""
    tiers: tuple[Tier, ...] = charge.param("tiers", ())
    if not tiers:
        raise ChargeError(f"'{charge.name}' has no tiers", charge.span)
    mode, measure = charge.param("mode"), charge.param("on")
    if ctx.active_in_cycle is None:
        return []
    td = _to_date(charge, ctx, measure, ctx.agreement.currency)
    period, before_q, now_q = td.period, td.before_q, td.now_q
    unit = ctx.agreement.currency if measure == "revenue" else measure
    lines = []
    for currency in sorted(td.now_a):
        amount_now, amount_before = td.now_a[currency], td.before_a.get(currency, Fraction(0))
        d_now, parts = discount_tiers(tiers, now_q, amount_now, mode, charge.span)
        d_before, _ = discount_tiers(tiers, before_q, amount_before, mode, charge.span)
        if period != ctx.cycle and ctx.history_in(period):
            exact = -(Fraction(ctx.round(d_now, currency)) - Fraction(ctx.round(d_before, currency)))
        else:
            exact = -d_now
        if exact == 0 and not parts:
            continue
        i = tier_index(tiers, now_q)
        reached = tier_label(tiers[i]) if i is not None else "no tier reached"
        reached_text = tier_text(tiers[i], measure, ctx.agreement.currency) if i is not None else "no tier reached"
        desc = (f"{charge.name}: {mode} discount of {shown(amount_now, currency)}, {shown(now_q, unit)} "
                f"({scope_text(charge.applies_to)}{'' if period == ctx.cycle else ', ' + period.label + ' to date'}), "
                f"tier reached {reached_text}")
        details = {
            "mode": mode, "measure": measure, "period": period.label, "scope": scope_text(charge.applies_to),
            "quantity_to_date": exact_text(now_q), "quantity_before": exact_text(before_q),
            "amount_to_date": exact_text(amount_now), "amount_before": exact_text(amount_before),
            "tiers": [{"tier": p.label, "quantity": exact_text(p.quantity), "discount": exact_text(p.amount),
                       "how": p.how} for p in parts],
            "discount_to_date": exact_text(d_now), "discount_before": exact_text(d_before),
        }
        if td.fx:
            details["fx"] = td.fx
        lines.append(ctx.line(charge, description=desc, exact=exact, currency=currency,
                              quantity=_quantity(now_q), unit=MEASURE_UNIT.get(measure, measure) or unit,
                              application=ctx.key(charge, f"discount:{currency}", period.label + "@" + ctx.cycle_label),
                              dimensions={"tier": reached, "measure": measure, "period": period.label},
                              details=details, stage="discount"))
    return lines


__all__ = ["discount_tiers", "evaluate_discount", "evaluate_tiered", "measuring_period", "price_tiers",
           "tier_index", "tier_label", "tier_text", "tiers_currency"]


def highest_tier(lines: list[ChargeLine], got: list[ChargeLine]) -> list[ChargeLine]:
    """``, capacity "NAME"``: the volume tiers sharing NAME (one per unit measured) price the
    period once, at the highest tier any of them reaches (Kill Bill's capacity usage): of the
    line already in ``lines`` and the new ones, the one of the higher tier stays (the earlier on a
    tie), and notes the tier each other unit reached. ``lines`` is updated in place; returns
    what to add."""
    out = []
    for new in got:
        name = new.details.get("capacity")
        old = next((i for i, ln in enumerate(lines) if ln.details.get("capacity") == name), None)
        if name is None or old is None:
            out.append(new)
            continue
        keep, drop = ((new, lines[old]) if new.details["tier_index"] > lines[old].details["tier_index"]
                      else (lines[old], new))
        others = [*keep.details.get("capacity_others", ()), f"{drop.charge_name}: {drop.dimensions.get('tier')}",
                  *drop.details.get("capacity_others", ())]
        kept = replace(keep, details={**keep.details, "capacity_others": others},
                       description=keep.description + f"; the highest tier of capacity \"{name}\"")
        if keep is new:
            del lines[old]
            out.append(kept)
        else:
            lines[old] = kept
    return out
