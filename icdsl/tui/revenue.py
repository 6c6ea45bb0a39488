"""Revenue and cost of a simulation, headless: the lines of its documents added up by partner,
charge type (the line's kind), service or agreement.

Revenue: lines of invoices and credit notes (what partners owe us). Cost: the netted lines of
settlement statements and the partners' revenue-share statements (what we owe them); the share
statement of what we keep (party ``us``) is part of the revenue already and is left out. Amounts are the lines' rounded amounts in the invoice currency,
so sums add up to the documents' subtotals; different currencies are never added together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

DIMENSIONS = ("partner", "charge type", "service", "agreement")


@dataclass
class Bar:
    label: str
    currency: str
    revenue: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)

    @property
    def net(self) -> Decimal:
        return self.revenue - self.cost


def _value(dim: str, partner: str, doc: dict[str, Any], line: dict[str, Any], agreements: dict[str, str]) -> str:
    if dim == "partner":
        return partner
    if dim == "charge type":
        return line.get("kind") or "?"
    if dim == "service":
        what = f"{line.get('direction') or ''} {line.get('service') or ''}".strip()
        return what or (line.get("kind") or "?")
    h = line.get("agreement_hash")
    return agreements.get(h, "no agreement") if h else "no agreement"


def breakdown(sim: Any, dim: str) -> list[Bar]:
    """Revenue and cost by ``dim`` (one of :data:`DIMENSIONS`) and currency, largest first."""
    out: dict[tuple[str, str], Bar] = {}
    agreements: dict[str, str] = {}
    for run in sim.runs if sim is not None else ():
        for doc in run.documents:
            for a in doc.get("agreements") or ():
                agreements[a["hash"]] = f"{a['name']} v{a['version']}"
    for run in sim.runs if sim is not None else ():
        for doc in run.documents:
            if doc["kind"] == "share_statement" and doc.get("party") == "us":
                continue
            cost = doc["kind"] not in ("invoice", "credit_note")
            for ln in doc["lines"]:
                key = (_value(dim, run.partner, doc, ln, agreements), ln.get("currency") or doc["currency"])
                bar = out.get(key)
                if bar is None:
                    bar = out[key] = Bar(*key)
                amount = Decimal(str(ln.get("amount") or 0))
                if cost:
                    bar.cost += amount
                else:
                    bar.revenue += amount
    return sorted(out.values(), key=lambda b: (-(b.revenue + b.cost), b.label, b.currency))


def totals(sim: Any) -> dict[str, Bar]:
    """Revenue and cost by currency."""
    out: dict[str, Bar] = defaultdict(lambda: Bar("total", ""))
    for b in breakdown(sim, "partner"):
        t = out[b.currency]
        t.currency = b.currency
        t.revenue += b.revenue
        t.cost += b.cost
    return dict(sorted(out.items()))
