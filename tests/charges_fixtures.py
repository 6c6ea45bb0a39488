"""Builders shared by the tests/test_charges_*.py modules: plans, contexts, usage, items."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from typing import Any

from icdsl.charges.context import ChargeContext, Usage
from icdsl.charges.periods import Days
from icdsl.inventory import InventoryItem
from icdsl.plan.model import Agreement, Charge, Money, Partner, Price, Rounding, ServicePlan, Span

SPAN = Span("rules.icd", 7, 3, 7, 40)
PARTNER = Partner("ORFR", "Orange France", currency="EUR", timezone="Europe/Paris",
                  attributes=(("tier", "gold"), ("quality", D("4"))))


def charge(kind: str, name: str, *params: tuple[str, Any], scope: tuple[tuple[str, str], ...] = ()) -> Charge:
    return Charge(kind, name, tuple(params), scope, SPAN)


def fee(amount: str, currency: str = "EUR") -> Money:
    return Money(D(amount), currency)


def price(amount: str, unit: str, per: int = 1, currency: str = "EUR") -> Price:
    return Price(D(amount), currency, unit, per)


def agreement(*charges: Charge, start: date = date(2026, 1, 1), end: date | None = None, version: int = 1,
              name: str = "ORFR voice", services: tuple[ServicePlan, ...] = (), netting=(),
              rounding: Rounding = Rounding(6, "half_up")) -> Agreement:
    svc = services or (ServicePlan("outbound", "voice", "minute", flat_price=D("0.01")),)
    return Agreement(name, version, "ORFR", start, end, "EUR", "Europe/Paris", rounding, svc, tuple(charges),
                     netting=tuple(netting), source_hash=f"hash-v{version}", span=SPAN)


def month(y: int, m: int) -> Days:
    start = date(y, m, 1)
    end = date(y + (m == 12), m % 12 + 1, 1)
    return Days(start, end)


def ctx(ag: Agreement, cycle: Days, **kw: Any) -> ChargeContext:
    return ChargeContext(agreement=ag, partner=kw.pop("partner", PARTNER), cycle=cycle, **kw)


def item(item_id: str, kind: str, activated: date, terminated: date | None = None, quantity: str = "1",
         partner: str = "ORFR") -> InventoryItem:
    return InventoryItem(partner, item_id, kind, D(quantity), activated, terminated)


def usage(direction: str = "outbound", service: str = "voice", *, kind: str = "time", records: int = 0,
          seconds: int = 0, units: int = 0, volume: int = 0, amount: str = "0", surcharges: str = "0",
          version: int = 1, agreement_name: str = "ORFR voice", currency: str = "EUR", partner: str = "ORFR") -> Usage:
    return Usage(partner, agreement_name, version, direction, service, currency, kind, records, seconds, units, volume,
                 D(amount), D(surcharges))
