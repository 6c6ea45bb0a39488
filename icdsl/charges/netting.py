"""Netting and settlement: what a partner owes us against what we owe it, per currency.

For a partner that is both customer and supplier, a settlement statement offsets the two sides
of a cycle, **per currency** (amounts in different currencies are never added):

- *receivable* (they owe us): our invoice lines for them: traffic of services that are not
  netted, surcharges, fees, tiers, discounts (negative), commitments;
- *payable* (we owe them): the rated amounts of the services named by ``netting with``
  (what their own invoice should say), and revenue shares due to them.

Each side is itemized with already rounded lines (each line rounded once to the minor unit);
``receivable`` and ``payable`` are the exact sums of their items and ``net = receivable -
payable`` exactly: positive, the partner pays us the net; negative, we pay them; zero, nothing
moves. Taxes are the invoices' business, not the statement's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from icdsl.charges.context import Usage
from icdsl.charges.lines import EXACT, ChargeLine, exact_sum, round_money
from icdsl.plan.model import Agreement

RECEIVABLE, PAYABLE = "receivable", "payable"


@dataclass(frozen=True, slots=True)
class StatementItem:
    """One line of a statement: its side, what it is, its (rounded) amount and where it came
    from (a charge line's key, or the traffic it sums)."""

    side: str
    description: str
    amount: Decimal
    currency: str
    kind: str = "traffic"
    source: str = ""


@dataclass(frozen=True, slots=True)
class SettlementStatement:
    partner: str
    currency: str
    period: str
    receivable_items: tuple[StatementItem, ...]
    payable_items: tuple[StatementItem, ...]
    receivable: Decimal
    payable: Decimal
    net: Decimal

    @property
    def payer(self) -> str:
        """``partner`` (they pay us the net), ``us``, or ``none``."""
        return "partner" if self.net > 0 else "us" if self.net < 0 else "none"

    def to_dict(self) -> dict[str, Any]:
        def items(xs):
            return [{"description": i.description, "amount": str(i.amount), "kind": i.kind, "source": i.source}
                    for i in xs]

        return {"partner": self.partner, "currency": self.currency, "period": self.period,
                "receivable": str(self.receivable), "payable": str(self.payable), "net": str(self.net),
                "payer": self.payer, "receivable_items": items(self.receivable_items),
                "payable_items": items(self.payable_items)}


def is_netted(agreement: Agreement, direction: str, service: str) -> bool:
    return (direction, service) in agreement.netting


def item_of(line: ChargeLine, partner: str) -> StatementItem:
    """A charge line as a statement item: revenue shares due to ``partner`` are payable, every
    other line is receivable."""
    payable = line.kind == "revenue_share" and line.dimensions.get("party") == partner
    return StatementItem(PAYABLE if payable else RECEIVABLE, line.description, line.amount, line.currency,
                         line.kind, line.key)


def traffic_items(usage: Iterable[Usage], agreements: Iterable[Agreement], mode: str = "half_up"
                  ) -> list[StatementItem]:
    """One item per (agreement version, direction, service, currency) of rated traffic, its
    amount rounded once to the minor unit; netted services are payable."""
    by_key = {(a.name, a.version): a for a in agreements}
    acc: dict[tuple, Decimal] = {}
    for u in usage:
        k = (u.agreement, u.agreement_version, u.direction, u.service, u.currency)
        acc[k] = EXACT.add(acc.get(k, Decimal(0)), u.amount)
    out = []
    for (name, version, d, s, cur), amount in sorted(acc.items()):
        ag = by_key.get((name, version))
        netted = ag is not None and is_netted(ag, d, s)
        m = ag.rounding.mode if ag is not None else mode
        out.append(StatementItem(PAYABLE if netted else RECEIVABLE, f"{name} v{version}: {d} {s}",
                                 round_money(amount, cur, m), cur, "traffic", f"{name} v{version} {d} {s}"))
    return out


def settle(partner: str, items: Iterable[StatementItem | ChargeLine], period: str = "") -> list[SettlementStatement]:
    """Settlement statements of ``partner``, one per currency, from statement items and charge
    lines (sides as :func:`item_of` says). ``net == receivable - payable`` exactly."""
    by_cur: dict[str, tuple[list[StatementItem], list[StatementItem]]] = {}
    for x in items:
        item = item_of(x, partner) if isinstance(x, ChargeLine) else x
        rec, pay = by_cur.setdefault(item.currency, ([], []))
        (rec if item.side == RECEIVABLE else pay).append(item)
    out = []
    for cur in sorted(by_cur):
        rec, pay = by_cur[cur]
        r = exact_sum(i.amount for i in rec)
        p = exact_sum(i.amount for i in pay)
        out.append(SettlementStatement(partner, cur, period, tuple(rec), tuple(pay), r, p, EXACT.subtract(r, p)))
    return out
