"""The line-level reconciliation: the partner's invoice lines against our lines.

Their lines are mapped to ours by service, then destination, then band:

- **service**: their line's ``service`` is one of the services they bill us for
  (:func:`icdsl.recon.ours.billed_by_partner`); else the line is theirs only;
- **destination**: their ``prefix``, looked up in our rate deck of the service (the longest of
  our prefixes that starts theirs: their ``33612`` is our ``3361`` "France mobile"), else their
  ``destination`` name, normalized (case, accents kept, punctuation and spaces folded: "FRANCE -
  Mobile" is "France mobile"); a line of a service priced by one flat price has no destination;
- **band**: their band, normalized the same way, when they give one and we bill the destination
  in more than one band; otherwise the destination's lines of every band are taken together.

Several of their lines on the same key are compared together with our lines of that key; our
lines that none of theirs names are ours only. A comparison with both sides is ``matched``
when the amounts are within the agreement's tolerance (:class:`icdsl.plan.model.Tolerances`),
else ``differs``. Quantities are compared in the service's base unit (seconds, bytes or the
counted unit): their minutes are converted exactly (1 minute = 60 seconds).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

from icdsl.plan.model import TIME_UNITS, VOLUME_UNITS, Plan, ServicePlan, Tolerances
from icdsl.recon.model import (
    LINE_DIFFERS,
    LINE_MATCHED,
    LINE_ONLY_OURS,
    LINE_ONLY_THEIRS,
    LineComparison,
    PartnerInvoiceLine,
)
from icdsl.recon.ours import OurLine

_FOLD = re.compile(r"[\W_]+", re.UNICODE)
_UNIT_WORDS = {"min": "minute", "mins": "minute", "minutes": "minute", "sec": "second", "secs": "second",
               "seconds": "second", "s": "second", "messages": "message", "msg": "message", "sms": "message"}


def normalized(text: str | None) -> str:
    """A destination or band name as compared: case folded, punctuation and spaces folded."""
    return _FOLD.sub(" ", text.casefold()).strip() if text else ""


def base_quantity(quantity: Decimal | None, unit: str | None, our_unit: str) -> Decimal | None:
    """Their quantity in our base unit (``second``, ``byte``, or the counted unit), or None when
    their unit is not one we can convert."""
    if quantity is None:
        return None
    word = _UNIT_WORDS.get((unit or "").strip().casefold(), (unit or "").strip())
    if our_unit == "second":
        factor = TIME_UNITS.get(word or "minute")  # a time service's quantity without a unit: minutes
        return None if factor is None else quantity * factor
    if our_unit == "byte":
        factor = VOLUME_UNITS.get(word or "MB")
        return None if factor is None else quantity * factor
    return quantity


class _Deck:
    """Our destinations of one service by prefix (longest prefix first)."""

    def __init__(self, service: ServicePlan | None):
        self.by_prefix: dict[str, str] = {}
        self.longest = 0
        rates = service.rates if service is not None else None
        if rates is None:
            return
        rows = rates.rows
        prefixes = getattr(rows, "prefixes", None)
        destinations = getattr(rows, "destinations", None)
        if prefixes is None or destinations is None:
            prefixes = tuple(r.prefix for r in rows)
            destinations = tuple(r.destination for r in rows)
        for p, d in zip(prefixes, destinations, strict=True):
            self.by_prefix.setdefault(p, d)
        self.longest = max((len(p) for p in self.by_prefix), default=0)

    def destination(self, prefix: str) -> str | None:
        digits = prefix.strip().lstrip("+")
        for n in range(min(len(digits), self.longest), 0, -1):
            d = self.by_prefix.get(digits[:n])
            if d is not None:
                return d
        return None


def _services(plan: Plan, partner: str, services: set[tuple[str, str]]) -> dict[str, ServicePlan]:
    out: dict[str, ServicePlan] = {}
    for a in plan.agreements_for(partner):
        for s in a.services:
            if (s.direction, s.service) in services:
                out.setdefault(s.service, s)
    return out


def compare_lines(their_lines: Sequence[PartnerInvoiceLine], ours: Sequence[OurLine], plan: Plan, partner: str,
                  services: set[tuple[str, str]], tolerances: Tolerances, currency: str,
                  problems: list[str] | None = None) -> list[LineComparison]:
    """Every line of theirs and ours in a comparison (see the module's documentation)."""
    plans = _services(plan, partner, services)
    decks = {name: _Deck(sp) for name, sp in plans.items()}
    our_by_dest: dict[tuple[str, str], list[OurLine]] = defaultdict(list)
    names: dict[tuple[str, str], str | None] = {}
    for o in ours:
        k = (o.service, normalized(o.destination))
        our_by_dest[k].append(o)
        names.setdefault(k, o.destination)
    multi_band = {k: len({normalized(o.band) for o in v}) > 1 for k, v in our_by_dest.items()}

    # their lines to keys
    resolved: list[tuple[PartnerInvoiceLine, tuple[str, str] | None]] = []
    bandless: set[tuple[str, str]] = set()
    for t in their_lines:
        if t.service not in plans:
            resolved.append((t, None))
            continue
        dest = None
        if t.prefix:
            dest = decks[t.service].destination(t.prefix)
        if dest is None:
            dest = t.destination
        if plans[t.service].rates is None:  # one flat price: no destinations
            dest = ""
        k = (t.service, normalized(dest))
        if k not in our_by_dest:
            resolved.append((t, None))
            continue
        resolved.append((t, k))
        if not t.band or not multi_band[k]:
            bandless.add(k)

    groups: dict[tuple[str, str, str | None], list[PartnerInvoiceLine]] = defaultdict(list)
    only_theirs: list[PartnerInvoiceLine] = []
    for t, k in resolved:
        if k is None:
            only_theirs.append(t)
        else:
            groups[(k[0], k[1], None if k in bandless else normalized(t.band))].append(t)

    out: list[LineComparison] = []
    used: set[str] = set()
    for (service, dest, band), theirs in groups.items():
        mine = [o for o in our_by_dest[(service, dest)] if band is None or normalized(o.band) == band]
        if not mine:  # a band we do not bill the destination in
            only_theirs.extend(theirs)
            continue
        used.update(o.key for o in mine)
        out.append(_comparison(theirs, mine, tolerances, currency, names[(service, dest)],
                               mine[0].band if band is not None else None, service, problems))
    for t in only_theirs:
        sp = plans.get(t.service)
        unit = _unit_of(sp)
        q = base_quantity(t.quantity, t.unit, unit)
        out.append(LineComparison(service=t.service, destination=t.destination or t.prefix, band=t.band,
                                  status=LINE_ONLY_THEIRS, their_lines=(t.number,), their_calls=t.calls or 0,
                                  their_quantity=q if q is not None else Decimal(0), their_amount=t.amount,
                                  currency=currency, unit=unit))
    rest: dict[tuple[str, str, str], list[OurLine]] = defaultdict(list)
    for o in ours:
        if o.key not in used:
            rest[(o.service, normalized(o.destination), normalized(o.band))].append(o)
    for mine in rest.values():
        o = mine[0]
        out.append(LineComparison(service=o.service, destination=o.destination, band=o.band, status=LINE_ONLY_OURS,
                                  our_lines=tuple(m.key for m in mine), our_calls=sum(m.calls for m in mine),
                                  our_quantity=Decimal(sum(m.quantity for m in mine)),
                                  our_amount=sum((m.amount for m in mine), Decimal(0)), currency=currency,
                                  unit=o.unit))
    out.sort(key=lambda c: (c.service, normalized(c.destination), normalized(c.band), c.their_lines, c.our_lines))
    return out


def _unit_of(sp: ServicePlan | None) -> str:
    if sp is None:
        return ""
    if sp.volume is not None or sp.unit in VOLUME_UNITS:
        return "byte"
    return "second" if sp.unit in TIME_UNITS else sp.unit


def _comparison(theirs: list[PartnerInvoiceLine], mine: list[OurLine], tolerances: Tolerances, currency: str,
                destination: str | None, band: str | None, service: str,
                problems: list[str] | None) -> LineComparison:
    unit = mine[0].unit
    their_q = Decimal(0)
    for t in theirs:
        q = base_quantity(t.quantity, t.unit, unit)
        if q is None and t.quantity is not None and problems is not None:
            problems.append(f"line {t.number} of their invoice counts {service} in '{t.unit}', which cannot be "
                            f"compared with our {unit}s: its quantity is left out of the comparison")
        their_q += q or 0
    their_amount = sum((t.amount for t in theirs), Decimal(0))
    our_amount = sum((m.amount for m in mine), Decimal(0))
    status = LINE_MATCHED if tolerances.within(their_amount, our_amount) else LINE_DIFFERS
    return LineComparison(service=service, destination=destination, band=band, status=status,
                          their_lines=tuple(t.number for t in theirs), our_lines=tuple(m.key for m in mine),
                          their_calls=sum(t.calls or 0 for t in theirs), our_calls=sum(m.calls for m in mine),
                          their_quantity=their_q, our_quantity=Decimal(sum(m.quantity for m in mine)),
                          their_amount=their_amount, our_amount=our_amount, currency=currency, unit=unit)
