"""Destinations priced below what they cost us, where both sides are known.

What we sell: the ``transit`` services of a partner's agreements in force (traffic a partner
hands us to carry onward) and, when our own network's prefixes are given
(:attr:`Policy.own_prefixes`), its ``inbound`` services for numbers outside them (inbound
traffic to our own numbers terminates with us and costs no supplier). What it costs: the
``outbound`` services of the same service and unit, in the same currency, of every agreement
in force on the period's last day (any partner: a supplier). The number space is cut at every
prefix of both sides, and each piece is priced on each side by the longest prefix
(``q`` = every prefix of the selling table and every supplier prefix under one of them). A piece
is below cost when the highest selling price of any band is below the lowest price of the
cheapest supplier in any band: surely a loss whatever the time of day. Connect fees and
increments are left out (stated in the finding's details).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from icdsl.assure.leakage import in_force
from icdsl.assure.model import CODES, Finding, Inputs, Policy, action
from icdsl.charges.lines import round_money
from icdsl.plan.model import TIME_UNITS, Agreement, RateRow, ServicePlan


def _rows_on(rows: Iterable[RateRow], day: date) -> dict[str, RateRow]:
    out: dict[str, RateRow] = {}
    for r in rows:
        if (r.effective_from is None or r.effective_from <= day) and (r.effective_to is None or day < r.effective_to):
            out[r.prefix] = r
    return out


def _lpm(table: dict[str, RateRow], number: str) -> RateRow | None:
    for n in range(len(number), 0, -1):
        row = table.get(number[:n])
        if row is not None:
            return row
    return None


def _prices(row: RateRow) -> list[Decimal]:
    return [p for _b, p in row.prices if p is not None]


class _Side:
    """One service's prices on a day: by prefix (longest match), or one flat price."""

    def __init__(self, agreement: Agreement, service: ServicePlan, day: date):
        self.agreement = agreement
        self.service = service
        self.flat = service.flat_price if service.rates is None else None
        self.table = _rows_on(service.rates.rows, day) if service.rates is not None else {}

    @property
    def currency(self) -> str:
        return self.service.rates.currency if self.service.rates is not None else self.service.currency

    def low(self, number: str) -> tuple[Decimal, RateRow | None] | None:
        if self.flat is not None:
            return self.flat, None
        row = _lpm(self.table, number)
        if row is None or not _prices(row):
            return None
        return min(_prices(row)), row


def below_cost(inputs: Inputs, policy: Policy) -> list[Finding]:
    day = inputs.last
    suppliers: dict[tuple[str, str], list[_Side]] = defaultdict(list)
    for a in inputs.plan.agreements:
        if a.partner == "*" or not in_force(a, day, day):
            continue
        for s in a.services:
            if s.direction == "outbound" and (s.rates is not None or s.flat_price is not None):
                suppliers[(s.service, s.unit)].append(_Side(a, s, day))
    out: list[Finding] = []
    for partner in inputs.partners:
        for a in inputs.plan.agreements_for(partner):
            if not in_force(a, day, day):
                continue
            for s in a.services:
                resold = s.direction == "transit" or (s.direction == "inbound" and policy.own_prefixes)
                if not resold or s.rates is None:
                    continue
                sell = _Side(a, s, day)
                costs = [c for c in suppliers.get((s.service, s.unit), []) if c.currency == sell.currency]
                if costs:
                    out += _compare(inputs, policy, partner, sell, costs)
    return out


def _compare(inputs: Inputs, policy: Policy, partner: str, sell: _Side, costs: list[_Side]) -> list[Finding]:
    own = policy.own_prefixes if sell.service.direction == "inbound" else ()
    pieces = set(sell.table)
    for c in costs:
        pieces.update(q for q in c.table if _lpm(sell.table, q) is not None)
    losing: dict[str, list[tuple[str, Decimal, Decimal, _Side, RateRow | None]]] = defaultdict(list)
    for q in sorted(pieces):
        if own and q.startswith(own):
            continue
        row = _lpm(sell.table, q)
        if row is None or not _prices(row):
            continue
        high = max(_prices(row))
        best = None
        for c in costs:
            got = c.low(q)
            if got is not None and (best is None or got[0] < best[0]):
                best = (got[0], c, got[1])
        if best is not None and high < best[0]:
            losing[row.prefix].append((q, high, best[0], best[1], best[2]))
    out = []
    svc = sell.service
    per = TIME_UNITS.get(svc.unit)
    for prefix, rows in sorted(losing.items()):
        srow = sell.table[prefix]
        worst = max(rows, key=lambda r: (r[2] - r[1], r[0]))
        q, high, cost, side, crow = worst
        margin = cost - high
        units = inputs.volumes.get((partner, svc.direction, svc.service, srow.destination))
        loss = None
        if units and per:
            loss = round_money(margin * Decimal(units) / Decimal(per), sell.currency)
        where = f"prefix {q}" + (f" ({crow.destination})" if crow is not None and crow.destination else "")
        out.append(Finding(
            "below_cost", CODES["below_cost"][0], partner, f"{svc.direction} {svc.service} {srow.destination} {prefix}",
            f"{sell.agreement.key} sells {srow.destination} ({prefix}) at {high} {sell.currency} per {svc.unit} at most, "
            f"but the cheapest supplier, {side.agreement.key}, charges {cost} at least for {where}: "
            f"{margin} {sell.currency} per {svc.unit} lost"
            + (f"; about {loss} {sell.currency} on the period's traffic" if loss is not None else ""),
            action("below_cost"), inputs.period, inputs.last, None, len(rows), loss,
            sell.currency if loss is not None else None,
            details={"sell_prefix": prefix, "sell_price": high, "cost": cost, "supplier": side.agreement.key,
                     "supplier_partner": side.agreement.partner, "margin_per_unit": margin, "unit": svc.unit,
                     "pieces": [r[0] for r in rows][:20], "billed_units": units,
                     "note": "connect fees and increments are not compared"}))
    return out
