"""What evaluating a charge produces: :class:`ChargeLine`, an invoice line with its audit trail.

Every charge type (built-in or a plugin's) returns charge lines. A line is **final money**: its
``amount`` is already rounded, once, to the minor unit of its currency (ISO 4217: 2 decimals
for EUR, 0 for JPY, 3 for BHD) with the agreement's rounding mode; ``details`` keep the exact
value before that rounding and how it was obtained (days, tiers, fractions), so that every
amount can be recomputed by hand.

``key`` identifies the line for idempotency (see :mod:`icdsl.charges.keys`): evaluating the same
cycle twice gives lines with the same keys and amounts. ``applications`` are the application
keys the line charges for the first time; ``corrects`` is set on a correction line (an amount
changed after it was billed) and names the application it amends.

Everything in ``dimensions`` and ``details`` is JSON-safe (texts, ints, bools, lists, dicts):
:meth:`ChargeLine.to_dict` / :meth:`ChargeLine.from_dict` round-trip a line through a JSON
column exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, Rounded
from fractions import Fraction
from functools import cache
from typing import Any

# the charge errors live at the bottom (the plugin manager raises them for a failing plugin); re-exported
from icdsl.errors import ChargeError as ChargeError
from icdsl.errors import ChargeHold as ChargeHold
from icdsl.lang.values import currencies
from icdsl.money import round_decimal
from icdsl.rounding import div_round_int
from icdsl.spans import Span

#: charge kind -> the invoice line kind of the billing store (``icdsl.billing.models.LINE_KINDS``)
LINE_KIND = {
    "recurring": "recurring",
    "one_time": "one_time",
    "event": "event",
    "surcharge": "surcharge",
    "volume_discount": "discount",
    "tiered_price": "tiered",
    "usage_cap": "discount",  # a period's usage above the cap, taken off (a negative line)
    "commitment": "commitment",
    "revenue_share": "revenue_share",
    "percentage": "event",  # a percentage of event records' values: a fee per event record
}

#: the order in which an invoice adds up (docs/language.md, "How an invoice adds up"); a charge
#: type's ``stage`` says where its lines go, and later stages see the lines of earlier ones
STAGES = ("charge", "discount", "cap", "commitment", "share")


#: sums of money are exact: a context that raises rather than rounds
EXACT = Context(prec=100, traps=[Inexact, Rounded])


def exact_sum(values: Any) -> Decimal:
    total = Decimal(0)
    for v in values:
        total = EXACT.add(total, v)
    return total


@cache
def minor_units(currency: str) -> int:
    """Decimals of the currency's minor unit (ISO 4217 via Babel; 2 for an unknown code)."""
    # lazy: babel's currency data loads on the first currency looked up
    from babel.numbers import get_currency_precision

    return int(get_currency_precision(currency.upper()))


def round_money(value: Decimal | Fraction | int, currency: str, mode: str = "half_up") -> Decimal:
    """``value`` rounded once to the currency's minor unit with ``mode`` (any registered mode)."""

    f = Fraction(value)
    d = minor_units(currency)
    units = div_round_int(f.numerator * 10**d, f.denominator, mode)
    return Decimal(units).scaleb(-d) if d else Decimal(units)


def exact_text(value: Decimal | Fraction | int) -> str:
    """An exact value as text: a terminating decimal as such (``106.4516129`` is not one), else
    the fraction and 12 decimals (``3300/31 (~106.451612903226)``)."""
    f = Fraction(value)
    den = f.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den == 1:
        d = Decimal(f.numerator) / Decimal(f.denominator)
        text = format(d, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text or "0"
    sign = "-" if f < 0 else ""
    approx = Decimal(abs(f.numerator) * 10**12 // f.denominator).scaleb(-12)
    return f"{f.numerator}/{f.denominator} (~{sign}{format(approx, 'f')})"


#: how a measured quantity is named in a description
MEASURE_WORDS = {"minutes": "minutes", "messages": "messages", "volume": "MB", "calls": "calls",
                 "events": "events"}


def shown(value: Decimal | Fraction | int, unit: str = "") -> str:
    """A measured quantity or an amount for a line's *description* (never for computing: the
    exact value stays in ``details``): thousands separated by commas, with its unit.

    - an amount (``unit`` a currency code): at the currency's minor unit, half up
      (``3,765.44 EUR``);
    - a quantity (``unit`` a measure: ``minutes``, ``messages``, ``volume``, ``calls``,
      ``events``, or a unit such as ``MB``): whole numbers as they are (``1,000,000
      minutes``), others to 2 decimals, half up (``2,305,784.46 MB``); a non-zero value that
      would show as 0.00 shows its first significant digits (``0.0004 MB``)."""

    f = Fraction(value)
    word = MEASURE_WORDS.get(unit, unit)
    if word in currencies():
        d = round_decimal(Decimal(f.numerator) / Decimal(f.denominator), minor_units(word), "half_up")
        return f"{d:,} {word}"
    if f.denominator == 1:
        text = f"{f.numerator:,}"
    else:
        d = round_decimal(Decimal(f.numerator) / Decimal(f.denominator), 2, "half_up")
        if d == 0:
            exact = Decimal(f.numerator) / Decimal(f.denominator)
            d = round_decimal(exact, max(2, -exact.adjusted()), "half_up")
        text = f"{d:,}"
    return f"{text} {word}".strip()


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One invoice line produced by a charge.

    ``kind`` is the charge type (``recurring``, ``volume_discount``, a plugin's name);
    ``line_kind`` the billing store's line kind. ``quantity`` x ``unit_price`` is the line
    before proration and tiers; ``amount`` is what is due, rounded to the currency's minor unit
    (negative for discounts and credits). ``stage`` places the line in the order of deductions.
    """

    kind: str
    charge_name: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal | None
    amount: Decimal
    currency: str
    dimensions: dict[str, Any]
    rule_span: Span
    details: dict[str, Any]
    key: str = ""
    applications: tuple[str, ...] = ()
    corrects: str | None = None
    stage: str = "charge"
    agreement: str = ""
    agreement_version: int = 0
    agreement_hash: str = ""
    scope: tuple[tuple[str, str], ...] = ()  # (direction, service) the charge applies to; () = all
    exact: str = ""  # the exact amount before the line's rounding (exact_text)

    @property
    def line_kind(self) -> str:
        return LINE_KIND.get(self.kind, "other")

    @property
    def rule(self) -> str:
        return str(self.rule_span)

    def application_amounts(self) -> dict[str, Decimal]:
        """What this line adds to each application it bills (see ``ChargeContext.billed``)."""
        if self.corrects is not None:
            return {self.corrects: self.amount}
        if len(self.applications) == 1:
            return {self.applications[0]: self.amount}
        per = self.details.get("per_application", {})
        return {a: Decimal(per.get(a, "0")) for a in self.applications}

    def to_dict(self) -> dict[str, Any]:
        s = self.rule_span
        return {
            "kind": self.kind,
            "charge_name": self.charge_name,
            "description": self.description,
            "quantity": str(self.quantity),
            "unit": self.unit,
            "unit_price": None if self.unit_price is None else str(self.unit_price),
            "amount": str(self.amount),
            "currency": self.currency,
            "dimensions": dict(self.dimensions),
            "rule_span": [s.file, s.line, s.col, s.end_line, s.end_col],
            "details": self.details,
            "key": self.key,
            "applications": list(self.applications),
            "corrects": self.corrects,
            "stage": self.stage,
            "agreement": self.agreement,
            "agreement_version": self.agreement_version,
            "agreement_hash": self.agreement_hash,
            "scope": [list(x) for x in self.scope],
            "exact": self.exact,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChargeLine:
        return cls(
            kind=d["kind"],
            charge_name=d["charge_name"],
            description=d["description"],
            quantity=Decimal(d["quantity"]),
            unit=d["unit"],
            unit_price=None if d["unit_price"] is None else Decimal(d["unit_price"]),
            amount=Decimal(d["amount"]),
            currency=d["currency"],
            dimensions=dict(d["dimensions"]),
            rule_span=Span(*d["rule_span"]),
            details=d["details"],
            key=d["key"],
            applications=tuple(d["applications"]),
            corrects=d["corrects"],
            stage=d["stage"],
            agreement=d["agreement"],
            agreement_version=d["agreement_version"],
            agreement_hash=d["agreement_hash"],
            scope=tuple(tuple(x) for x in d["scope"]),
            exact=d["exact"],
        )


def billed_amounts(lines: Any) -> dict[str, Decimal]:
    """``ChargeContext.billed`` from the lines already invoiced on other cycles: per application
    key, the total billed for it (the original line plus its corrections)."""
    out: dict[str, Decimal] = {}
    for line in lines:
        for app, amount in line.application_amounts().items():
            out[app] = EXACT.add(out.get(app, Decimal(0)), amount)
    return out
