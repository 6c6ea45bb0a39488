"""Percentage charges (``percentage``): a percentage of each transaction's value, as payment and
usage billing platforms write them.

A **transaction** is an event record of the charge's event (``percentage "Card fees" 2.9% of
payment``: records whose ``event`` field, else whose ``service``, is ``payment``), its **value** the
record's ``value`` field (a decimal, in the charge's currency: that of its amounts, else the
agreement's). Per cycle, in the order of the transactions (their start, then id):

1. **free allowances** (``free 3 transactions or 100.00 EUR``): while *both* allowances last (a
   count of transactions, a value), a transaction is free. The allowance ends with the first of
   the two to run out ("whichever ends first"): the Nth transaction uses the last of the count; a
   transaction whose value goes beyond what is left of the free value is charged on the part
   beyond it (the rest of the value allowance is used up). With one allowance only, it alone
   counts;
2. each transaction charged: ``rate x its charged value + fixed`` (``fixed 0.30 EUR per
   transaction``), then at least ``minimum`` and at most ``maximum`` per transaction;
3. the line: the exact sum of the transactions' amounts, rounded **once** to the currency's minor
   unit (stage ``charge``; the line kind is ``event``).

A transaction without a value or with one that is not a decimal number stops the cycle for review
(``ChargeHold``: the ``charge_hold`` finding), so no transaction is silently left out. Each
transaction is an application of its own: billed once even if ingested again in a later cycle.
Worked example (tests/test_charges_percentage.py): 2.9% plus 0.30, minimum 0.50, maximum 5.00 per
transaction, the first 2 transactions or 50.00 EUR free; transactions 20.00, 40.00, 10.00, 300.00:
20.00 is free (30.00 of the free value left), 40.00 is charged on 10.00 (0.29 + 0.30 = 0.59), the
allowance has ended: 10.00 gives 0.59, 300.00 gives 8.70 + 0.30 = 9.00 -> 5.00 (maximum): 6.18.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from icdsl.charges.context import ChargeContext, EventRecord
from icdsl.charges.keys import line_key
from icdsl.charges.lines import ChargeError, ChargeHold, ChargeLine, exact_text, shown
from icdsl.charges.periods import Days
from icdsl.plan.model import Charge, Money

#: how many transactions the line's details list one by one
DETAIL_LIMIT = 50


@dataclass(frozen=True, slots=True)
class Terms:
    """A percentage charge's terms, exact."""

    rate: Fraction  # percent
    fixed: Fraction = Fraction(0)
    minimum: Fraction | None = None
    maximum: Fraction | None = None
    free_count: int | None = None
    free_value: Fraction | None = None


@dataclass(frozen=True, slots=True)
class Priced:
    """One transaction: its value, the part charged, its amount and how it was made."""

    value: Fraction
    charged: Fraction
    amount: Fraction
    free: bool
    how: str


def terms_of(charge: Charge) -> Terms:
    def amount(key: str) -> Fraction | None:
        m = charge.param(key)
        return None if m is None else Fraction(m.amount)

    free_count = charge.param("free_count")
    return Terms(
        Fraction(charge.param("rate")),
        amount("fixed") or Fraction(0),
        amount("minimum"),
        amount("maximum"),
        None if free_count is None else int(free_count),
        amount("free_value"),
    )


def price_transactions(terms: Terms, values: list[Fraction]) -> list[Priced]:
    """Each transaction's exact amount, in order (see the module's rules)."""
    count_left = terms.free_count
    value_left = terms.free_value
    allowance = count_left is not None or value_left is not None
    out: list[Priced] = []
    for v in values:
        charged = v
        if allowance and (count_left is None or count_left > 0) and (value_left is None or value_left > 0):
            if count_left is not None:
                count_left -= 1
            if value_left is None or v <= value_left:
                if value_left is not None:
                    value_left -= v
                if count_left == 0 or value_left == 0:
                    allowance = False
                out.append(Priced(v, Fraction(0), Fraction(0), True, "free"))
                continue
            charged = v - value_left
            value_left = Fraction(0)
            allowance = False
        amount = charged * terms.rate / 100 + terms.fixed
        how = f"{exact_text(terms.rate)}% x {exact_text(charged)}"
        if terms.fixed:
            how += f" + {exact_text(terms.fixed)}"
        if terms.minimum is not None and amount < terms.minimum:
            amount, how = terms.minimum, how + f" -> minimum {exact_text(terms.minimum)}"
        elif terms.maximum is not None and amount > terms.maximum:
            amount, how = terms.maximum, how + f" -> maximum {exact_text(terms.maximum)}"
        out.append(Priced(v, charged, amount, False, how))
    return out


def charge_currency(charge: Charge, ctx: ChargeContext) -> str:
    """The currency of a percentage charge: that of its amounts, else the agreement's."""
    return charge_currency_of(charge, ctx.agreement)


def _value(e: EventRecord, charge: Charge) -> Fraction:
    if e.value is None:
        raise ChargeHold(
            f"'{charge.name}': transaction {e.id} ({e.event}, {e.day}) has no value: its record "
            f"needs a 'value' field (the amount the percentage applies to)",
            charge.span,
        )
    try:
        d = Decimal(e.value.replace("_", ""))
    except InvalidOperation:
        d = Decimal("NaN")
    if not d.is_finite():
        raise ChargeHold(
            f"'{charge.name}': transaction {e.id} ({e.event}, {e.day}) has the value '{e.value}', "
            f"which is not a decimal number",
            charge.span,
        )
    return Fraction(d)


def evaluate(charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
    name = charge.param("event")
    if not name:
        raise ChargeError(f"'{charge.name}' needs the event whose transactions it counts", charge.span)
    terms = terms_of(charge)
    currency = charge_currency(charge, ctx)
    days = ctx.days.intersect(ctx.cycle) or Days(ctx.cycle.start, ctx.cycle.start)
    apps: list[str] = []
    events: list[EventRecord] = []
    for e in sorted(ctx.events, key=lambda e: (e.day, e.at, e.id)):
        if e.event != name or (e.partner and e.partner != ctx.partner.code) or e.day not in days:
            continue
        app = ctx.key(charge, f"event:{e.id}")
        if app in ctx.billed or app in apps:
            continue
        apps.append(app)
        events.append(e)
    if not events:
        return []
    priced = price_transactions(terms, [_value(e, charge) for e in events])
    exact = sum((p.amount for p in priced), Fraction(0))
    total_value = sum((p.value for p in priced), Fraction(0))
    free = sum(1 for p in priced if p.free)
    n = len(priced)
    desc = (
        f"{charge.name}: {exact_text(terms.rate)}% of {n} {name} transaction(s) worth "
        f"{shown(total_value, currency)}, {ctx.cycle_label}"
    )
    if free:
        desc += f", {free} free"
    details = {
        "event": name,
        "rate_percent": exact_text(terms.rate),
        "transactions": n,
        "free": free,
        "value": exact_text(total_value),
        "charged_value": exact_text(sum((p.charged for p in priced), Fraction(0))),
        "per_transaction": [
            {
                "id": e.id,
                "day": e.day.isoformat(),
                "value": exact_text(p.value),
                "amount": exact_text(p.amount),
                "how": p.how,
            }
            for e, p in list(zip(events, priced, strict=True))[:DETAIL_LIMIT]
        ],
    }
    for key, v in (
        ("fixed", terms.fixed or None),
        ("minimum", terms.minimum),
        ("maximum", terms.maximum),
        ("free_value", terms.free_value),
    ):
        if v is not None:
            details[key] = exact_text(v)
    if terms.free_count is not None:
        details["free_count"] = terms.free_count
    return [
        ctx.line(
            charge,
            description=desc,
            exact=exact,
            currency=currency,
            quantity=n,
            unit="transaction",
            key=line_key(
                ctx.agreement.name, ctx.agreement.version, charge.name, f"percentage:{name}", ctx.cycle_label
            ),
            applications=tuple(apps),
            dimensions={"event": name},
            details=details,
        )
    ]


def explain_event_record(agreements: Any, record: dict[str, Any]) -> list[str]:
    """How the charges of ``agreements`` (the partner's) count one event record (``icdsl
    explain``): an event fee's fee, a percentage charge's amount for this transaction alone (the
    cycle's free allowances apply in the cycle, in order). Empty: no charge counts it."""
    which = str(record.get("event") or record.get("service") or "")
    out: list[str] = []
    if any(sp.service == which for ag in agreements for sp in ag.services):
        return out  # a service some agreement prices: rated, not an event (as billing splits them)
    for ag in agreements:
        for c in ag.charges:
            if c.param("event") != which or c.kind not in ("event", "percentage"):
                continue
            where = f"{ag.name} v{ag.version}, {c.span}"
            if c.kind == "event":
                fee: Money = c.param("amount")
                out.append(
                    f"event record '{which}': not rated; counted by event fee '{c.name}' ({where}): "
                    f"{fee.amount} {fee.currency} x {record.get('units') or 1} unit(s), on the cycle holding "
                    f"its day"
                )
                continue
            terms = terms_of(c)
            value = record.get("value")
            head = f"transaction '{which}': not rated; counted by percentage charge '{c.name}' ({where})"
            try:
                v = Fraction(Decimal(str(value).replace("_", "")))
            except (InvalidOperation, ValueError):
                out.append(
                    f"{head}: its value '{value}' is not a decimal number: the cycle would be held for review"
                )
                continue
            alone = price_transactions(replace(terms, free_count=None, free_value=None), [v])[0]
            currency = charge_currency_of(c, ag)
            line = f"{head}: {alone.how} = {exact_text(alone.amount)} {currency}"
            free = [f"the first {terms.free_count} transactions"] if terms.free_count is not None else []
            if terms.free_value is not None:
                free.append(f"the first {exact_text(terms.free_value)} {currency}")
            if free:
                line += f"; free in each cycle: {' or '.join(free)} (whichever ends first), in the order of the cycle"
            out.append(line)
    return out


def charge_currency_of(charge: Charge, agreement: Any) -> str:
    for key in ("fixed", "minimum", "maximum", "free_value"):
        m = charge.param(key)
        if m is not None:
            return m.currency
    return agreement.currency


__all__ = [
    "Priced",
    "Terms",
    "charge_currency",
    "evaluate",
    "explain_event_record",
    "price_transactions",
    "terms_of",
]
