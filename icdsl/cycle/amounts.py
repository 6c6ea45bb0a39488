"""Invoice arithmetic: minor units, the one rounding of a line, tax.

The rules (``docs/billing.md``, "How an invoice adds up"):

- a line's amount is the **exact** sum of its records' amounts (each already rounded once by
  rating), converted to the invoice currency if needed (exact product with the FX rate), then
  **rounded once** to the invoice currency's minor unit (ISO 4217, from Babel: 2 for EUR, 0 for
  JPY, 3 for BHD) with the agreement's rounding mode (``half_up`` unless it says otherwise);
- the subtotal is the exact sum of the rounded lines; the tax is computed on the rounded sum of
  the taxable lines and rounded once (half up); the total is subtotal + tax. Nothing else is
  rounded, so a total always equals the sum of what is printed above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, Rounded
from functools import cache

from icdsl.money import ROUNDING_MODES, round_decimal

TAX_ROUNDING = "half_up"
REVERSE_CHARGE_NOTE = "Reverse charge: VAT to be accounted for by the recipient"
EXEMPT_NOTE = "Exempt from VAT"
TAX_KINDS = ("vat", "reverse_charge", "exempt", "none")
# Products and sums of money are exact: a context wide enough for any NUMERIC(24, 8) times a
# NUMERIC(24, 12), raising rather than rounding should it ever not be.
EXACT = Context(prec=80, traps=[Inexact, Rounded])


@cache
def minor_units(currency: str) -> int:
    """Decimals of the currency's minor unit (ISO 4217 via Babel; 2 for an unknown code)."""
    from babel.numbers import get_currency_precision  # lazy: babel's locale data, only for amounts

    return int(get_currency_precision(currency.upper()))


@cache
def is_currency(code: str) -> bool:
    from babel.numbers import is_currency as known  # lazy: babel's locale data, only for amounts

    return bool(known(code.upper()))


def present(amount: Decimal | None, currency: str) -> Decimal | None:
    """An amount as shown: at the currency's minor unit when that is exact (stored money has
    8 decimals: ``4.72000000`` is ``4.72``), else as it is."""
    if amount is None:
        return None
    q = amount.quantize(Decimal(1).scaleb(-minor_units(currency)))
    return q if q == amount else amount.normalize()


def plain_number(value: Decimal | None) -> Decimal | None:
    """A quantity or rate without trailing zeros (never in exponent form when printed with 'f')."""
    if value is None:
        return None
    n = value.normalize()
    return n.quantize(Decimal(1)) if n == n.to_integral_value() else n


def rounding_text(currency: str, mode: str) -> str:
    return f"{mode} to {minor_units(currency)}"


def round_line(amount: Decimal, currency: str, mode: str = "half_up") -> Decimal:
    """The one rounding of an invoice line: to the minor unit of ``currency`` in ``mode``."""
    if mode not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding mode '{mode}' (known: {', '.join(ROUNDING_MODES)})")
    return round_decimal(amount, minor_units(currency), mode)


def convert(amount: Decimal, rate: Decimal | None) -> Decimal:
    """Exact product (no rounding): ``amount`` in the source currency times the FX rate."""
    return amount if rate is None else EXACT.multiply(amount, rate)


def exact_sum(values) -> Decimal:
    total = Decimal(0)
    for v in values:
        total = EXACT.add(total, v)
    return total


@dataclass(frozen=True, slots=True)
class Tax:
    """The tax of one invoice: ``amount`` in the invoice currency, the ``note`` printed on it."""

    kind: str
    rate: Decimal  # percent (20 for 20 %)
    taxable: Decimal
    amount: Decimal
    note: str | None

    @property
    def label(self) -> str:
        if self.kind == "vat":
            return f"VAT {format(self.rate.normalize(), 'f')}%"
        return {"reverse_charge": "VAT (reverse charge)", "exempt": "VAT (exempt)"}.get(self.kind, "Tax")


def compute_tax(kind: str, rate: Decimal, taxable: Decimal, currency: str) -> Tax:
    """``vat``: ``rate`` % of the (already rounded) taxable amount, rounded once half up;
    ``reverse_charge`` and ``exempt``: 0 with a legal note; ``none``: 0, no note."""
    if kind == "vat":
        amount = round_decimal(EXACT.divide(EXACT.multiply(taxable, rate), Decimal(100)), minor_units(currency),
                               TAX_ROUNDING)
        return Tax(kind, rate, taxable, amount, None)
    zero = round_decimal(Decimal(0), minor_units(currency), TAX_ROUNDING)
    if kind == "reverse_charge":
        return Tax(kind, Decimal(0), taxable, zero, REVERSE_CHARGE_NOTE)
    if kind == "exempt":
        return Tax(kind, Decimal(0), taxable, zero, EXEMPT_NOTE)
    if kind == "none":
        return Tax(kind, Decimal(0), taxable, zero, None)
    raise ValueError(f"unknown tax treatment '{kind}' (known: {', '.join(TAX_KINDS)})")
