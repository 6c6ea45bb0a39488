"""Credit notes by hand and for accepted disputes: what we give back on an issued invoice.

:func:`credit_invoice` (``icdsl invoice credit``) credits an amount on a finalized invoice: a
commercial gesture, a fee waived, a dispute settled outside the portal. :func:`issue_credit_note`
does the work inside the caller's transaction, so that accepting a partner's dispute
(:func:`icdsl.billing.portal.change_dispute`) and issuing its credit note are one change: the
dispute is accepted if and only if its credit note exists.

A credit note is not a rating correction (a rerate never undoes it): a document of its own,
numbered at once in the credit notes' gap-free series (``CN-YYYY-NNNNNN``), taxed as the invoice
was, referencing the invoice (and the line credited), with the parties sealed as they are now,
sealed in the chain and audited. The credits of an invoice never exceed its subtotal.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import base
from icdsl.billing import models as M
from icdsl.billing.amounts import present, rounding_text
from icdsl.billing.cycles import DOCUMENT_SERIES, next_numbers
from icdsl.billing.documents import buyer_party, seller_party
from icdsl.billing.errors import StoreError
from icdsl.billing.seal import seal_unsealed
from icdsl.cycle.amounts import compute_tax
from icdsl.layouts import LayoutError, choose

if TYPE_CHECKING:
    from icdsl.billing.store import Store


def clean_reason(reason: Any) -> str:
    """The reason printed on a credit note: one line, required, at most 600 characters."""
    text = " ".join(str(reason or "").split())
    if not text:
        raise StoreError("say why the invoice is credited (--reason \"...\"): it is printed on the credit note")
    if len(text) > 600:
        raise StoreError("the reason is longer than 600 characters: say it shortly")
    return text


def parse_amount(amount: Any, currency: str, what: str = "--amount") -> Decimal:
    """``amount`` as an exact positive amount in ``currency`` (at most its minor unit's decimals)."""
    try:
        value = Decimal(str(amount).strip())
    except ArithmeticError:
        raise StoreError(f"{what} '{amount}' is not an amount (e.g. 125.40)") from None
    places = -Decimal(present(Decimal(1), currency)).as_tuple().exponent
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal(1).scaleb(-places)):
        raise StoreError(f"{what} {str(amount).strip()}: a positive amount in {currency} with at most {places} decimals")
    return value


def creditable(s: Session, inv: M.Invoice) -> Decimal:
    """What can still be credited on ``inv``: its subtotal less the credit notes issued on it."""
    credited = sum((-c for c in s.scalars(select(M.Invoice.subtotal).where(
        M.Invoice.corrects_invoice_id == inv.id, M.Invoice.doc_type == "credit_note"))), Decimal(0))
    return inv.subtotal - credited


def issue_credit_note(store: Store, s: Session, inv: M.Invoice, value: Decimal, reason: str, *,
                      line: M.InvoiceLine | None = None, issue_date: date | None = None,
                      audit: dict[str, Any] | None = None, dispute: tuple[str, bool] | None = None) -> M.Invoice:
    """Issue, in the session ``s``, a credit note of ``value`` (net, exact, positive) on the
    finalized invoice ``inv`` (and its ``line``), finalized, numbered and sealed; returns it.
    Its line says why in the words of the partner's layout (texts ``credit_line`` and, for a
    ``dispute`` (number, accepted in part), ``dispute_accepted``)."""
    number = inv.number
    store.lock(s, f"credit:{inv.id}", wait=True)
    s.refresh(inv)
    if inv.status != "finalized" or (inv.doc_type or "invoice") != "invoice" or inv.subtotal < 0:
        raise StoreError(f"{number} is not a finalized invoice: only an issued invoice is credited")
    left = creditable(s, inv)
    if value > left:
        raise StoreError(f"{number} is of {present(inv.subtotal, inv.currency)} {inv.currency} net and "
                         f"{present(inv.subtotal - left, inv.currency)} are credited already: at most "
                         f"{present(left, inv.currency)} can be credited")
    prow = s.get(M.Partner, inv.partner_id)
    seller, buyer = seller_party(s), buyer_party(prow)
    lay = choose({"kind": "credit_note", "stream": inv.stream, "buyer": buyer, "seller": seller})
    try:
        if dispute is not None:
            reason = lay.text("dispute_accepted", {"number": dispute[0], "part": dispute[1], "why": reason})
        description = lay.text("credit_line", {"invoice": number, "line_no": line.line_no if line else None,
                                               "line": line.description if line else None, "reason": reason})
    except LayoutError as e:
        raise StoreError(f"the credit note's line cannot be written with the partner's layout: {e}") from None
    t = base.now()
    issue = issue_date or t.date()
    tax = compute_tax(inv.tax_kind, inv.tax_rate, -value, inv.currency)
    counter, prefix = DOCUMENT_SERIES["credit_note"]
    (n,) = next_numbers(store, s, f"{counter}-{issue.year}", 1)
    cn = M.Invoice(partner_id=inv.partner_id, partner_code=inv.partner_code, partner_name=inv.partner_name,
                   cycle_id=None, stream=inv.stream, currency=inv.currency, status="draft", subtotal=-value,
                   tax_kind=inv.tax_kind, tax_rate=inv.tax_rate, tax_amount=tax.amount, total=-value + tax.amount,
                   taxable_amount=tax.taxable, tax_note=tax.note, corrects_invoice_id=inv.id, created_at=t,
                   doc_type="credit_note")
    s.add(cn)
    s.flush()
    s.add(M.InvoiceLine(invoice_id=cn.id, line_no=1, kind="adjustment", description=description[:1000],
                        direction=line.direction if line else None,
                        service=line.service if line else None, quantity=Decimal(1), unit="unit",
                        amount=-value, currency=inv.currency, corrects_line_id=line.id if line else None,
                        created_at=t, source_amount=-value, source_currency=inv.currency,
                        rounding=rounding_text(inv.currency, "half_up"), group_key=f"credit:{number}"))
    s.flush()
    cn.number, cn.status, cn.issue_date, cn.due_date = f"{prefix}-{issue.year}-{n:06d}", "finalized", issue, issue
    cn.finalized_at, cn.seller, cn.buyer = t, seller, buyer
    s.flush()
    store.audit(s, "credit_note", "invoice", cn.id, f"{cn.number} credits {present(value, inv.currency)} "
                f"{inv.currency} net on {number}: {reason}",
                {"invoice": number, "line_no": line.line_no if line is not None else None, **(audit or {})})
    seal_unsealed(s)
    return cn


def credit_invoice(store: Store, number: str, amount: Any, reason: str, *, line_no: int | None = None,
                   issue_date: date | None = None) -> str:
    """Issue a credit note of ``amount`` (net, in the invoice's currency) against the finalized
    invoice ``number`` (and its line ``line_no``), audited with ``reason``; its number."""
    reason = clean_reason(reason)
    with store.session() as s:
        inv = s.scalars(select(M.Invoice).where(M.Invoice.number == number.strip())).first()
        if inv is None:
            raise StoreError(f"no invoice numbered '{number}'")
        value = parse_amount(amount, inv.currency)
        line = None
        if line_no is not None:
            line = s.scalars(select(M.InvoiceLine).where(M.InvoiceLine.invoice_id == inv.id,
                                                         M.InvoiceLine.line_no == line_no)).first()
            if line is None:
                raise StoreError(f"{number} has no line {line_no} (`icdsl invoice show {number}` lists them)")
        return issue_credit_note(store, s, inv, value, reason, line=line, issue_date=issue_date).number


__all__ = ["clean_reason", "credit_invoice", "creditable", "issue_credit_note", "parse_amount"]
