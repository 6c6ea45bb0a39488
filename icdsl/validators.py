"""Checks on draft invoices before they are finalized: the contract of
``icdsl_invoice_validators`` and the built-in ``totals`` validator.

A validator receives all the draft documents of a cycle at once (the mappings described in
:mod:`icdsl.exporters`) and returns :class:`Finding` s. A finding of severity ``error`` stops
finalization; a ``warning`` is reported. A validator that raises is reported as an ``error``
finding naming its plugin (:func:`run_validators`): a check that could not run must not let an
invoice through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from icdsl.hookspecs import hookimpl
from icdsl.parties import Party, missing_for_invoice
from icdsl.plugins import active_plugin_manager, invoice_validators, owner

ICDSL_HOOK_API = 1

SEVERITIES = ("error", "warning")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: ``document`` is the number of the document (or ``#N``, its 1-based position
    among the drafts), ``code`` a short stable word, ``validator`` set by :func:`run_validators`."""

    severity: str
    code: str
    message: str
    document: str = ""
    validator: str = ""

    def __str__(self) -> str:
        where = f"{self.document}: " if self.document else ""
        return f"{self.severity}[{self.validator}/{self.code}] {where}{self.message}"


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """What the validators may know: the partner, the period label and the compiled plan."""

    partner: str | None = None
    period: str | None = None
    plan: Any = None


class InvoiceValidator:
    """One check. Subclass it and register the class with ``icdsl_invoice_validators``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def validate(self, documents: Sequence[Mapping[str, Any]], context: ValidationContext) -> Iterable[Finding]:
        raise NotImplementedError


def document_ref(doc: Mapping[str, Any], index: int) -> str:
    return str(doc.get("number") or f"#{index + 1}")


class Totals(InvoiceValidator):
    name = "totals"
    description = "the subtotal is the sum of the lines, and the total is subtotal + tax"

    def validate(self, documents, context):
        for i, doc in enumerate(documents):
            lines = doc.get("lines") or ()
            subtotal = doc.get("subtotal")
            if subtotal is not None and lines:
                total = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
                if total != subtotal:
                    yield Finding("error", "subtotal", f"the lines add up to {total}, the subtotal says {subtotal}",
                                  document_ref(doc, i))
            tax, grand = doc.get("tax_amount"), doc.get("total")
            if subtotal is not None and tax is not None and grand is not None and subtotal + tax != grand:
                yield Finding("error", "total", f"subtotal {subtotal} + tax {tax} is not the total {grand}",
                              document_ref(doc, i))


class Parties(InvoiceValidator):
    name = "parties"
    description = ("the seller (our company) and the buyer carry what EN 16931 requires of an invoice: "
                   "names, postal addresses, VAT identifiers (the buyer's on a reverse-charge invoice), "
                   "the bank account to pay")

    def validate(self, documents, context):
        for i, doc in enumerate(documents):
            if "seller" not in doc or doc.get("kind") not in ("invoice", "credit_note", "debit_note"):
                continue  # a document built without the store's parties (a plugin's, a test's)
            seller = Party.from_json(doc.get("seller"))
            buyer = Party.from_json(doc.get("buyer"))
            gaps = missing_for_invoice(seller, buyer, reverse_charge=doc.get("tax_kind") == "reverse_charge",
                                       taxed=doc.get("tax_kind") == "vat")
            if seller is None:
                # rules that declare no company at all: told, not refused (a project that does
                # not issue legal invoices from icdsl); once it declares one, every gap refuses
                yield Finding("warning", "no_company", "; ".join(str(g) for g in gaps), document_ref(doc, i))
            elif gaps:
                yield Finding("error", "missing_party_details",
                              "cannot be issued without: " + "; ".join(str(g) for g in gaps), document_ref(doc, i))


@hookimpl
def icdsl_invoice_validators():
    return [Totals, Parties]


def run_validators(documents: Sequence[Mapping[str, Any]], context: ValidationContext | None = None, *,
                   pm: Any = None) -> list[Finding]:
    """Every registered validator over ``documents``; errors first, then warnings."""

    pm = pm if pm is not None else active_plugin_manager()
    context = context or ValidationContext()
    out: list[Finding] = []
    for name, v in invoice_validators(pm).items():
        try:
            found = list(v.validate(documents, context))
        except Exception as exc:
            plugin = owner(pm, "icdsl_invoice_validators", name)
            out.append(Finding("error", "validator_failed",
                               f"validator '{name}' of plugin '{plugin}' raised {type(exc).__name__}: {exc}; "
                               "the drafts were not checked by it", "", name))
            continue
        for f in found:
            sev = f.severity if f.severity in SEVERITIES else "error"
            out.append(Finding(sev, f.code, f.message, f.document, name))
    out.sort(key=lambda f: SEVERITIES.index(f.severity))
    return out
