"""Leakage checks: inventory no charge bills, fees billed after an item's termination,
agreements and commitments that end (or have ended while traffic flows), traffic no agreement
prices and traffic of partners nobody declared.

Each check is a function ``check(inputs, policy) -> list[Finding]`` over plain data
(:class:`icdsl.assure.model.Inputs`); money is exact (Decimal, rounded as the charge rounded).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from icdsl.assure.model import CODES, Finding, Inputs, Policy, action
from icdsl.charges.lines import round_money
from icdsl.charges.periods import months_of, period_containing
from icdsl.inventory import InventoryItem
from icdsl.plan.model import Agreement, Charge

ONE_DAY = timedelta(days=1)
NO_AGREEMENT = ("no_agreement", "outside_agreement_period")


def last_day(a: Agreement) -> date | None:
    """The last day an agreement version is in force (None: open-ended)."""
    if a.terminated_on is not None:
        return a.terminated_on - ONE_DAY
    return a.effective_to


def in_force(a: Agreement, first: date, last: date) -> bool:
    """Whether the version is in force on some day of ``first``..``last`` (included)."""
    end = last_day(a)
    return a.effective_from <= last and (end is None or end >= first) and (end is None or end >= a.effective_from)


def _sev(code: str) -> str:
    return CODES[code][0]


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount} {currency}"


# --------------------------------------------------------------------------- inventory


def billed_kinds(inputs: Inputs, partner: str) -> dict[str, list[tuple[str, Charge]]]:
    """Inventory kind -> the charges (``agreement vN: charge``, the charge) in force during the
    period that bill it (any charge with ``per inventory KIND``)."""
    out: dict[str, list[tuple[str, Charge]]] = defaultdict(list)
    for a in inputs.plan.agreements_for(partner):
        if not in_force(a, inputs.start, inputs.last):
            continue
        for c in a.charges:
            kind = c.param("per_inventory")
            if kind:
                out[str(kind)].append((f"{a.key}: {c.name}", c))
    return out


def _due_by(item: InventoryItem, charge: Charge, end: date) -> bool:
    """Whether a charge billing the item's kind has had a billing day by ``end`` (exclusive):
    in advance, from its first day; in arrears, once the charge period holding its first day
    is over (a quarterly fee in arrears bills an item of January at the end of March)."""
    if charge.kind != "recurring" or charge.param("option:in", "arrears") == "advance":
        return True
    try:
        months = months_of(str(charge.param("period", "monthly")))
    except ValueError:
        return True
    return period_containing(item.activated, months).end <= end


def inventory(inputs: Inputs, policy: Policy) -> list[Finding]:
    """Items active during the period of a kind no charge in force bills (one finding per
    kind), and items of a billed kind that no charge has billed at all yet."""
    out: list[Finding] = []
    billed_items = {(f.partner, f.item_id) for f in inputs.fees if f.amount}
    for partner in inputs.partners:
        kinds = billed_kinds(inputs, partner)
        active = [it for it in inputs.items if it.partner == partner and it.activated <= inputs.last
                  and (it.terminated is None or it.terminated > inputs.start)]
        unbilled: dict[str, list] = defaultdict(list)
        for it in active:
            if it.kind not in kinds:
                unbilled[it.kind].append(it)
            elif ((partner, it.item_id) not in billed_items and inputs.cycles.get(partner)
                  and any(_due_by(it, c, inputs.end) for _name, c in kinds[it.kind])):
                first = max(it.activated, inputs.start)
                out.append(Finding(
                    "unbilled_item", _sev("unbilled_item"), partner, f"{it.kind} {it.item_id}",
                    f"{it.kind} {it.item_id} (quantity {it.quantity}, active from {it.activated}"
                    + (f" to {it.terminated - ONE_DAY}" if it.terminated else "")
                    + f") has never been billed, although {', '.join(n for n, _c in kinds[it.kind])} bills its kind",
                    action("unbilled_item"), inputs.period, first, None, 1,
                    details={"item": it.item_id, "kind": it.kind, "charges": [n for n, _c in kinds[it.kind]],
                             "activated": it.activated, "terminated": it.terminated}))
        for kind, items in sorted(unbilled.items()):
            qty = sum((it.quantity for it in items), Decimal(0))
            names = ", ".join(it.item_id for it in items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            out.append(Finding(
                "unbilled_item_kind", _sev("unbilled_item_kind"), partner, kind,
                f"{len(items)} item(s) of kind '{kind}' (quantity {qty}) active in {inputs.period}: {names}; no charge "
                f"of {partner}'s agreements in force bills '{kind}'"
                + (f" (billed kinds: {', '.join(sorted(kinds))})" if kinds else " (no charge bills any inventory)"),
                action("unbilled_item_kind"), inputs.period, max(min(it.activated for it in items), inputs.start),
                None, len(items),
                details={"items": [it.item_id for it in items], "quantity": qty, "billed_kinds": sorted(kinds)}))
    return out


def _due(fee, terminated: date) -> Decimal | None:
    """What the fee should be for the days of its period before ``terminated`` (None when the
    fee is not prorated by day, whose whole period is due)."""
    if fee.period_start >= terminated:
        return Decimal(0)
    if fee.prorate != "daily" or fee.full is None or not fee.days_in_period:
        return None
    days = (terminated - fee.period_start).days
    exact = Fraction(fee.full) * days / fee.days_in_period
    return round_money(exact, fee.currency)


def termination(inputs: Inputs, policy: Policy) -> list[Finding]:
    """Recurring fees billed (net of corrections) for days after the item's termination."""
    items = {(it.partner, it.item_id): it for it in inputs.items}
    out: list[Finding] = []
    wanted = set(inputs.partners)
    for fee in inputs.fees:
        if fee.partner not in wanted:
            continue
        it = items.get((fee.partner, fee.item_id))
        if it is None or it.terminated is None or fee.period_end < it.terminated or fee.amount <= 0:
            continue
        due = _due(fee, it.terminated)
        if due is None or fee.amount <= due:
            continue
        over = fee.amount - due
        after = (fee.period_end - max(it.terminated, fee.period_start)).days + 1
        out.append(Finding(
            "billed_after_termination", _sev("billed_after_termination"), fee.partner, f"{it.kind} {it.item_id}",
            f"'{fee.charge}' billed {_money(fee.amount, fee.currency)} for {fee.period_start}..{fee.period_end}, but "
            f"{it.item_id} was terminated on {it.terminated}: {after} day(s) after it were billed, "
            f"{_money(over, fee.currency)} too much (due {_money(due, fee.currency)})",
            action("billed_after_termination"), inputs.period, max(it.terminated, fee.period_start), fee.period_end,
            after, over, fee.currency,
            details={"item": it.item_id, "terminated": it.terminated, "application": fee.application,
                     "billed": fee.amount, "due": due, "cycles": list(fee.cycles), "agreement": fee.agreement}))
    return out


# --------------------------------------------------------------------------- agreements and commitments


def _commitments(a: Agreement) -> list:
    return [c for c in a.charges if c.kind == "commitment"]


def _commitment_text(c) -> str:
    amount = c.param("amount")
    if isinstance(amount, tuple) and len(amount) == 2:
        return f"{amount[0]} {amount[1]} per {c.param('period', 'cycle')}"
    return str(amount)


def expiry(inputs: Inputs, policy: Policy) -> list[Finding]:
    """Agreements and commitments that end within ``policy.within`` days of ``as_of`` with
    nothing after them, or that ended while the partner's traffic still flows."""
    as_of = inputs.as_of or inputs.end
    horizon = as_of + timedelta(days=policy.within)
    out: list[Finding] = []
    for partner in inputs.partners:
        by_name: dict[str, list[Agreement]] = defaultdict(list)
        for a in inputs.plan.agreements_for(partner):
            by_name[a.name].append(a)
        mine = [a for a in inputs.plan.agreements_for(partner)]
        for name, versions in sorted(by_name.items()):
            versions.sort(key=lambda a: (a.effective_from, a.version))
            ends = [last_day(a) for a in versions]
            end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
            latest = versions[-1]
            if end is not None and as_of <= end < horizon:
                out.append(Finding(
                    "agreement_expiring", _sev("agreement_expiring"), partner, latest.key,
                    f"\"{name}\" ends on {end} ({(end - as_of).days + 1} day(s) after {as_of - ONE_DAY}) and no later "
                    "version follows it", action("agreement_expiring"), inputs.period, end, None,
                    (end - as_of).days + 1, details={"agreement": name, "version": latest.version, "ends": end}))
            if end is not None and end < inputs.last:
                out += _expired_traffic(inputs, partner, latest, end, mine)
            out += _commitment_ends(inputs, policy, partner, versions, as_of, horizon)
    return out


def _covered(agreements: list[Agreement], direction: str, service: str, day: date) -> bool:
    return any(in_force(a, day, day) and a.service(direction, service) is not None for a in agreements)


def _expired_traffic(inputs: Inputs, partner: str, latest: Agreement, end: date, mine: list[Agreement]) -> list[Finding]:
    services = {(s.direction, s.service) for s in latest.services}
    first = max(end + ONE_DAY, inputs.start)
    after = [u for u in inputs.unplaced if u.partner == partner and u.reason in NO_AGREEMENT
             and (u.direction, u.service) in services and u.day >= first]
    records = sum(u.records for u in after)
    days = sorted({u.day for u in after})
    if not records:  # not rated yet: what was ingested on days no agreement of the partner covers
        ingested = inputs.ingested.get(partner, {})
        days = sorted(d for d, n in ingested.items() if n and d >= first and d <= inputs.last
                      and not any(in_force(a, d, d) for a in mine))
        records = sum(ingested[d] for d in days)
    if not records:
        return []
    return [Finding(
        "agreement_expired_traffic", _sev("agreement_expired_traffic"), partner, latest.key,
        f"\"{latest.name}\" ended on {end} but {records} record(s) of {partner} came after it "
        f"({days[0]}..{days[-1]}) with no agreement in force to price them",
        action("agreement_expired_traffic"), inputs.period, days[0], days[-1], records,
        details={"agreement": latest.name, "ended": end, "services": sorted(" ".join(s) for s in services)})]


def _commitment_ends(inputs: Inputs, policy: Policy, partner: str, versions: list[Agreement], as_of: date,
                     horizon: date) -> list[Finding]:
    out = []
    for i, a in enumerate(versions):
        end = last_day(a)
        if end is None:
            continue
        later = versions[i + 1:]
        for c in _commitments(a):
            if any(c.name in {x.name for x in _commitments(b)} for b in later):
                continue  # renewed by a later version
            text = _commitment_text(c)
            if as_of <= end < horizon:
                out.append(Finding(
                    "commitment_expiring", _sev("commitment_expiring"), partner, f"{a.key}: {c.name}",
                    f"the commitment '{c.name}' ({text}) ends with {a.key} on {end} and no later version renews it",
                    action("commitment_expiring"), inputs.period, end, None, (end - as_of).days + 1,
                    details={"agreement": a.name, "version": a.version, "commitment": c.name, "committed": text}))
            recent = inputs.start - timedelta(days=policy.within)
            if recent <= end < inputs.last:
                first = max(end + ONE_DAY, inputs.start)
                flowing = {d: n for key, days in inputs.rated.items() if key[0] == partner
                           for d, n in days.items() if d >= first and n}
                records = sum(flowing.values())
                if records:
                    out.append(Finding(
                        "commitment_expired_traffic", _sev("commitment_expired_traffic"), partner,
                        f"{a.key}: {c.name}",
                        f"the commitment '{c.name}' ({text}) ended with {a.key} on {end}, but {partner} sent "
                        f"{records} rated record(s) after it ({min(flowing)}..{max(flowing)}) with no commitment",
                        action("commitment_expired_traffic"), inputs.period, min(flowing), max(flowing), records,
                        details={"agreement": a.name, "version": a.version, "commitment": c.name,
                                 "committed": text}))
    return out


# --------------------------------------------------------------------------- traffic no agreement prices


def no_agreement(inputs: Inputs, policy: Policy) -> list[Finding]:
    """Records rejected for want of an agreement in force, by partner, direction, service and
    reason; and records of partners nobody declared."""
    groups: dict[tuple[str, str, str, str], list] = defaultdict(list)
    wanted = set(inputs.partners)
    for u in inputs.unplaced:
        if u.partner in wanted and u.reason in NO_AGREEMENT:
            groups[(u.partner, u.direction, u.service, u.reason)].append(u)
    out: list[Finding] = []
    for (partner, direction, service, reason), rows in sorted(groups.items()):
        n = sum(u.records for u in rows)
        days = sorted({u.day for u in rows})
        samples = tuple(s for u in rows for s in u.samples)[:5]
        why = ("no agreement with the partner prices it" if reason == "no_agreement"
               else "its start is outside the period of every agreement with the partner")
        out.append(Finding(
            "traffic_no_agreement", _sev("traffic_no_agreement"), partner, f"{direction} {service}",
            f"{n} {direction} {service} record(s) of {partner} were rejected ({reason}): {why}; they are not billed",
            action("traffic_no_agreement"), inputs.period, days[0], days[-1], n,
            details={"reason": reason, "days": {d.isoformat(): sum(u.records for u in rows if u.day == d)
                                                for d in days}, "samples": list(samples)}))
    for partner, days in sorted(inputs.unknown.items()):
        n = sum(days.values())
        if not n:
            continue
        ds = sorted(d for d, k in days.items() if k)
        out.append(Finding(
            "traffic_unknown_partner", _sev("traffic_unknown_partner"), partner, "any traffic",
            f"{n} record(s) of '{partner}' were ingested but no partner of that code is declared: nobody bills them",
            action("traffic_unknown_partner"), inputs.period, ds[0], ds[-1], n,
            details={"days": {d.isoformat(): days[d] for d in ds}}))
    return out
