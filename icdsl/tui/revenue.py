"""Revenue and cost, headless: the lines of billing documents added up by partner, charge type
(the line's kind), service, agreement or month, in each currency.

The documents come from a *source*: anything with ``runs``, each run with a ``partner`` and its
``documents`` (the dicts of ``icdsl.billing.documents``): the last simulation
(:class:`icdsl.tui.simulate.Simulation`) or the cycles of a real store
(:class:`icdsl.tui.ledger.Ledger`, finalized and draft).

Revenue: lines of invoices and credit notes (what partners owe us). Cost: the netted lines of
settlement statements and the partners' revenue-share statements (what we owe them); the share
statement of what we keep (party ``us``) is part of the revenue already and is left out.
Amounts are the lines' rounded amounts in the document's currency, exact (``Decimal``), so sums
add up to the documents' subtotals; different currencies are never added together, and nothing
is converted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from icdsl.cycle.amounts import minor_units

DIMENSIONS = ("partner", "charge type", "service", "agreement", "month")
STATES = ("all", "finalized", "draft")  # which documents count: every one, or only final / draft ones


def zero(currency: str) -> Decimal:
    """0 with the currency's decimals (``0.00`` EUR, ``0`` JPY): exact, shown as amounts are."""
    return Decimal(0).scaleb(-minor_units(currency)) if currency else Decimal(0)


@dataclass
class Bar:
    label: str
    currency: str
    revenue: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    documents: int = 0  # documents with lines in this bar
    drafts: int = 0  # of them, drafts (the others are finalized)

    def __post_init__(self) -> None:
        if self.currency:
            self.revenue += zero(self.currency)
            self.cost += zero(self.currency)

    @property
    def net(self) -> Decimal:
        return self.revenue - self.cost


def month_of(doc: dict[str, Any]) -> str:
    """The month a document bills (``2026-03``): its period's first day, else its period label."""
    start = doc.get("period_start")
    if start is not None:
        return f"{start:%Y-%m}"
    return str(doc.get("period") or "?")[:7]


def _value(dim: str, partner: str, doc: dict[str, Any], line: dict[str, Any], agreements: dict[str, str]) -> str:
    if dim == "partner":
        return partner
    if dim == "month":
        return month_of(doc)
    if dim == "charge type":
        return line.get("kind") or "?"
    if dim == "service":
        what = f"{line.get('direction') or ''} {line.get('service') or ''}".strip()
        return what or (line.get("kind") or "?")
    h = line.get("agreement_hash")
    return agreements.get(h, "no agreement") if h else "no agreement"


def _counted(doc: dict[str, Any], state: str) -> bool:
    if doc["kind"] == "share_statement" and doc.get("party") == "us":
        return False
    if doc.get("status") == "void":  # voided: replaced by a corrected document, billed nothing
        return False
    if state == "finalized":
        return doc.get("status") != "draft"
    if state == "draft":
        return doc.get("status") == "draft"
    return True


def breakdown(source: Any, dim: str, state: str = "all") -> list[Bar]:
    """Revenue and cost by ``dim`` (one of :data:`DIMENSIONS`) and currency: largest first, by
    month in calendar order. ``state``: one of :data:`STATES`."""
    out: dict[tuple[str, str], Bar] = {}
    agreements: dict[str, str] = {}
    runs = list(source.runs) if source is not None else []
    for run in runs:
        for doc in run.documents:
            for a in doc.get("agreements") or ():
                agreements[a["hash"]] = f"{a['name']} v{a['version']}"
    for run in runs:
        for doc in run.documents:
            if not _counted(doc, state):
                continue
            cost = doc["kind"] not in ("invoice", "credit_note", "debit_note")
            seen: set[tuple[str, str]] = set()
            for ln in doc["lines"]:
                key = (_value(dim, run.partner, doc, ln, agreements), ln.get("currency") or doc["currency"])
                bar = out.get(key)
                if bar is None:
                    bar = out[key] = Bar(*key)
                if key not in seen:
                    seen.add(key)
                    bar.documents += 1
                    bar.drafts += doc.get("status") == "draft"
                amount = Decimal(str(ln.get("amount") or 0))
                if cost:
                    bar.cost += amount
                else:
                    bar.revenue += amount
    if dim == "month":
        return sorted(out.values(), key=lambda b: (b.label, b.currency))
    return sorted(out.values(), key=lambda b: (-(b.revenue + b.cost), b.label, b.currency))


def totals(source: Any, state: str = "all") -> dict[str, Bar]:
    """Revenue and cost by currency."""
    out: dict[str, Bar] = defaultdict(lambda: Bar("total", ""))
    for b in breakdown(source, "partner", state):
        t = out[b.currency]
        if not t.currency:
            t.currency = b.currency
            t.revenue, t.cost = zero(b.currency), zero(b.currency)
        t.revenue += b.revenue
        t.cost += b.cost
    return dict(sorted(out.items()))


def currencies(bars: list[Bar]) -> list[str]:
    """The currencies of ``bars``, the one with the most money first."""
    size: dict[str, Decimal] = defaultdict(Decimal)
    for b in bars:
        size[b.currency] += b.revenue + b.cost
    return sorted(size, key=lambda c: (-size[c], c))
