"""Interim invoices of progressive billing as later invoices see them, and their deduction from
the final invoices of a period (:func:`deduct`, called by :func:`icdsl.cycle.engine.run` with
``CycleInputs.interims``). What raises them: :mod:`icdsl.cycle.progressive`, whose documentation
states the rules (deductions, cumulative tax)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from icdsl.cycle.amounts import Tax, compute_tax, exact_sum, rounding_text
from icdsl.cycle.invoicing import DraftInvoice, DraftLine, Drafts

DEDUCTION = "progressive"  # the kind of a line deducting an interim invoice
INTERIM = "interim"  # the kind of an interim invoice
DEDUCTION_ORDER = 99  # after every other line


@dataclass(frozen=True)
class Interim:
    """An interim invoice raised earlier in the period: what later invoices deduct."""

    number: str  # its number in the invoice series (a draft's reference before it has one)
    stream: str
    until: date  # the last local day of the usage it billed
    subtotal: Decimal  # what it billed (its lines, the earlier deductions included)
    tax: Decimal
    threshold: Decimal  # the threshold it was raised at


def deduction(it: Interim, currency: str, mode: str = "half_up") -> DraftLine:
    """The line of a later invoice that deducts interim invoice ``it``."""
    amount = -it.subtotal
    return DraftLine(
        kind=DEDUCTION, description=f"Interim invoice {it.number}: usage to {it.until}, already billed",
        direction=None, service=None, destination=None, prefix=None, band=None, quantity=Decimal(1),
        unit="invoice", rate=None, rate_unit=None, amount=amount, currency=currency, source_amount=amount,
        source_currency=currency, fx=None, rounding=rounding_text(currency, mode), agreement_hash=None, rule=None,
        line_key=None, record_count=None, first_start=None, last_start=None, group_key=f"{DEDUCTION} {it.number}",
        stream=it.stream, netted=False, order=DEDUCTION_ORDER,
    )


def cumulative_tax(kind: str, rate: Decimal, to_date: Decimal, own: Decimal, billed_tax: Decimal,
                   currency: str) -> Tax:
    """The tax of an invoice billing ``own`` when ``to_date`` is billed with it and the earlier
    interim invoices' tax was ``billed_tax``: tax(to_date) - billed_tax, taxable ``own``."""
    whole = compute_tax(kind, rate, to_date, currency)
    return Tax(whole.kind, whole.rate, own, whole.amount - billed_tax, whole.note)


def interim_of(inv: DraftInvoice, number: str, until: date, threshold: Decimal) -> Interim:
    """The :class:`Interim` a raised interim invoice is for later invoices."""
    return Interim(number, inv.stream, until, inv.subtotal, inv.tax.amount, threshold)


def deduct(drafts: Drafts, interims: Sequence[Interim], *, currency: str, tax_kind: str, tax_rate: Decimal,
           mode: str = "half_up") -> None:
    """The final invoices deduct the period's interim invoices (see the module's documentation):
    a line per interim invoice on the invoice of its stream (one is made when the stream has
    none), the tax the whole period's less the tax already billed."""
    if not interims:
        return
    by_stream = {inv.stream: inv for inv in drafts.invoices if inv.kind == "invoice"}
    for stream in sorted({it.stream for it in interims}):
        earlier = [it for it in interims if it.stream == stream]
        inv = by_stream.get(stream)
        if inv is None:
            inv = DraftInvoice(stream, currency, [], Decimal(0), compute_tax(tax_kind, tax_rate, Decimal(0), currency),
                               Decimal(0), None)
            drafts.invoices.append(inv)
        whole = inv.subtotal
        inv.lines = inv.lines + [deduction(it, currency, mode) for it in earlier]
        inv.subtotal = exact_sum(ln.amount for ln in inv.lines)
        inv.tax = cumulative_tax(tax_kind, tax_rate, whole, inv.subtotal, exact_sum(it.tax for it in earlier),
                                 currency)
        inv.total = inv.subtotal + inv.tax.amount
    drafts.invoices.sort(key=lambda i: (i.stream, i.kind != "invoice"))


__all__ = ["DEDUCTION", "INTERIM", "Interim", "cumulative_tax", "deduct", "deduction", "interim_of"]
