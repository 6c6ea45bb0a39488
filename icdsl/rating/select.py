"""Choosing what prices a record: the agreement, the service, the destination row.

Shared by both executors so that "which rule applies" is decided by one piece of code; each
executor only decides *how fast* it applies it.

Agreement selection
    Candidates are the agreements whose ``partner`` is the record's partner or ``"*"`` and which
    have a ServicePlan for the record's (direction, service). A partner is *declared* if the plan
    lists it in ``partners`` or an agreement names it. Rejects, in this order:
    ``unknown_partner`` if the partner is not declared and no ``"*"`` agreement exists;
    ``no_agreement`` if no candidate exists; ``outside_agreement_period`` if no candidate has the
    record's local start date (in that agreement's ``timezone``) within
    [effective_from, effective_to] (both inclusive, None = open). Among those in force the
    preferred is a partner's own agreement over a ``"*"`` one, then the latest effective_from,
    then the highest version, then the first in the plan.

Destination
    Among the rate rows in force at the record's local start date (in the agreement's time zone;
    effective_from <= date < effective_to, None = unbounded), the row with the *longest* prefix of
    b_number, never the cheapest. Rows not in force are ignored, so a shorter prefix may match.
    Should two rows with the same prefix be in force at once, the one with the later
    effective_from wins, then the later row in the table.

Units
    ``second``, ``minute`` and ``hour`` (and their short forms) are time units (billed seconds,
    increments, slots, zero-duration policy, band split); a service with ``volume`` (or a unit of
    B/KB/MB/GB/TB, binary, if the compiler left ``volume`` unset) is priced by bytes; any other
    unit counts ``units`` (null = 1). Slots and band splits apply to time units only.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from icdsl.plan.model import (
    KIND_COUNT as KIND_COUNT,
)
from icdsl.plan.model import (
    KIND_TIME,
    TIME_UNITS,
    VOLUME_UNITS,
    Agreement,
    BandPart,
    Increments,
    Plan,
    PriceField,
    RateColumns,
    RateRow,
    ServicePlan,
    Span,
    VolumeUnit,
)
from icdsl.plan.model import (
    KIND_VOLUME as KIND_VOLUME,
)
from icdsl.rating.calendar import calendar_bands

FAR_PAST = -(10**9)
FAR_FUTURE = 10**9



def ordinal(d: date | None, default: int) -> int:
    return d.toordinal() if d is not None else default


def money_text(value: Decimal) -> str:
    """A price as written in the ``rate`` column: plain notation, no exponent, no trailing zeros
    (``0.10`` and ``0.1`` are the same price and read ``0.1``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def decimals(value: Decimal) -> int:
    exp = value.as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


# --------------------------------------------------------------------------- agreements


class Selector:
    """Agreement candidates of a plan, by (partner key, direction, service), preference-ordered."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.specific = frozenset(a.partner for a in plan.agreements if a.partner != "*")
        self.declared = frozenset(p.code for p in plan.partners) | self.specific
        self.has_star = any(a.partner == "*" for a in plan.agreements)
        self._cache: dict[tuple[str, str, str], tuple[tuple[Agreement, ServicePlan], ...]] = {}
        self.directions = tuple(sorted({s.direction for a in plan.agreements for s in a.services}))
        self.services = tuple(sorted({s.service for a in plan.agreements for s in a.services}))

    def partner_key(self, partner: str) -> str | None:
        """The partner's own code if it has agreements, ``"*"`` if only any-partner agreements can
        apply, None if the partner is unknown (reject ``unknown_partner``)."""
        if partner in self.specific:
            return partner
        if self.has_star or partner in self.declared:
            return "*"
        return None

    def candidates(self, key: str, direction: str, service: str) -> tuple[tuple[Agreement, ServicePlan], ...]:
        got = self._cache.get((key, direction, service))
        if got is None:
            found = []
            for pos, a in enumerate(self.plan.agreements):
                if a.partner == key or a.partner == "*":
                    sp = a.service(direction, service)
                    if sp is not None:
                        rank = (a.partner == "*", -a.effective_from.toordinal(), -a.version, pos)
                        found.append((rank, a, sp))
            found.sort(key=lambda t: t[0])
            got = tuple((a, sp) for _, a, sp in found)
            self._cache[(key, direction, service)] = got
        return got


def in_force(agreement: Agreement, day_ordinal: int) -> bool:
    return (
        ordinal(agreement.effective_from, FAR_PAST)
        <= day_ordinal
        <= ordinal(agreement.effective_to, FAR_FUTURE)
    )


# --------------------------------------------------------------------------- destinations


def _ordinals(texts: Sequence[str | None] | None, missing: int, n: int) -> list[int]:
    if texts is None:
        return [missing] * n
    cache: dict[str | None, int] = {}
    out = []
    for t in texts:
        o = cache.get(t)
        if o is None:
            o = cache[t] = ordinal(date.fromisoformat(t), missing) if t else missing
        out.append(o)
    return out


class Destinations:
    """Longest-prefix match over one rate table, honouring effective dates."""

    def __init__(self, rows: Sequence[RateRow], fallback: Sequence[RateRow] | None = None):
        self.fallback_at: int | None = None
        if fallback:  # the rows, then the fallback table's: matched only when no row holds
            self._with_fallback(rows, fallback)
            return
        self.rows = rows
        if isinstance(rows, RateColumns):  # a deck as columns: no row objects needed
            n = len(rows)
            self.start = _ordinals(rows.effective_from, FAR_PAST, n)
            self.stop = _ordinals(rows.effective_to, FAR_FUTURE, n)
            self.dated = any(rows.effective_from or ()) or any(rows.effective_to or ())
            prefixes = rows.prefixes
        else:
            self.start = [ordinal(r.effective_from, FAR_PAST) for r in rows]
            self.stop = [ordinal(r.effective_to, FAR_FUTURE) for r in rows]
            self.dated = any(r.effective_from is not None or r.effective_to is not None for r in rows)
            prefixes = [r.prefix for r in rows]
        self.prefixes = prefixes
        # one row per prefix and no dates (the usual deck): a plain dict does it
        self.single = {p: i for i, p in enumerate(prefixes)}
        self.maxlen = max((len(p) for p in self.single), default=0)
        self.general = self.dated or len(self.single) != len(rows)
        self.by_prefix: dict[str, tuple[int, ...]] = {}
        if self.general:
            by_prefix: dict[str, list[int]] = {}
            for i, p in enumerate(prefixes):
                by_prefix.setdefault(p, []).append(i)
            # preference inside one prefix: later effective_from first, then later row
            self.by_prefix = {
                p: tuple(sorted(ix, key=lambda i: (self.start[i], i), reverse=True))
                for p, ix in by_prefix.items()
            }

    def _with_fallback(self, rows: Sequence[RateRow], fallback: Sequence[RateRow]) -> None:
        first, second = Destinations(rows), Destinations(fallback)
        self.fallback_at = n = len(rows)
        self.rows = tuple(rows) + tuple(fallback)
        self.start, self.stop = first.start + second.start, first.stop + second.stop
        self.dated = first.dated or second.dated
        self.prefixes = list(first.prefixes) + list(second.prefixes)
        self.single, self.by_prefix = {}, {}
        self.maxlen = max(first.maxlen, second.maxlen)
        self.general = True

        def match(number: str, day_ordinal: int) -> int:
            i = first.match(number, day_ordinal)
            if i >= 0:
                return i
            i = second.match(number, day_ordinal)
            return i + n if i >= 0 else -1

        self.match = match  # type: ignore[method-assign]

    def match(self, number: str, day_ordinal: int) -> int:
        """Index of the matching row, or -1."""
        if not self.general:
            single = self.single
            for n in range(min(len(number), self.maxlen), -1, -1):
                i = single.get(number[:n])
                if i is not None:
                    return i
            return -1
        by, start, stop = self.by_prefix, self.start, self.stop
        for n in range(min(len(number), self.maxlen), -1, -1):
            ix = by.get(number[:n])
            if ix is not None:
                for i in ix:
                    if start[i] <= day_ordinal < stop[i]:
                        return i
        return -1

    def epochs(self) -> list[int]:
        """Ordinals where the set of rows in force changes (sorted)."""
        cuts = {o for o in self.start if o != FAR_PAST} | {o for o in self.stop if o != FAR_FUTURE}
        return sorted(cuts)

    def rows_in_force(self, day_ordinal: int) -> list[int]:
        return [i for i in range(len(self.rows)) if self.start[i] <= day_ordinal < self.stop[i]]


# --------------------------------------------------------------------------- services


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """What the executors need to know about one ServicePlan, worked out once."""

    agreement: Agreement
    plan: ServicePlan
    kind: str  # time | count | volume
    per: int  # divisor of the quantity: 60 for minute, unit_bytes for volume, else 1
    volume: VolumeUnit | None
    destinations: Destinations | None
    currency: str
    slots: tuple[tuple[int, int | None, Decimal, Span], ...]  # (from_s, until_s, price, span)
    bands: tuple[str, ...]
    precision: int
    mode: str
    # each slot's own increments (None: the row's or service's), when a slot has some; else None
    # (then increments apply to the whole call and slots price its billed seconds)
    slot_incs: tuple[Increments | None, ...] | None = None
    # ``band NAME { ... }`` by band name; None without any
    parts: dict[str, BandPart] | None = None
    # ``slots NAME { ... }``: (slots, slot_incs) by set name, as ``slots`` and ``slot_incs``;
    # None without any
    slot_sets: dict[str, tuple[tuple, tuple[Increments | None, ...] | None]] | None = None

    @property
    def priced(self) -> bool:
        return (self.destinations is not None or self.plan.flat_price is not None or bool(self.slots)
                or any(p.price is not None for p in self.plan.band_parts) or self.plan.price_field is not None)

    def slots_for(self, row: RateRow | None) -> tuple[tuple, tuple[Increments | None, ...] | None]:
        """The slots that price a call matched to ``row`` and their own increments: the row's set
        (``slots NAME``), else the service's unnamed slots (empty: the row's own price)."""
        if self.slot_sets is not None and row is not None and row.slots is not None:
            return self.slot_sets[row.slots]
        return self.slots, self.slot_incs

    def flat(self, band: str) -> Decimal | None:
        """The flat price in ``band``: the band's own price, else the service's."""
        part = self.parts.get(band) if self.parts is not None else None
        return part.price if part is not None and part.price is not None else self.plan.flat_price

    def band_fee(self, row: RateRow | None, band: str) -> Decimal:
        """The connect fee of a call starting in ``band``: the row's, the band's, the service's."""
        if row is not None and row.connect_fee is not None:
            return row.connect_fee
        part = self.parts.get(band) if self.parts is not None else None
        return part.connect_fee if part is not None and part.connect_fee is not None else self.plan.connect_fee

    def volume_for(self, band: str) -> VolumeUnit | None:
        """The volume rules of a session starting in ``band``: the band's minimum and rounding
        step where it gives them, else the service's."""
        part = self.parts.get(band) if self.parts is not None else None
        v = self.volume
        if part is None or v is None or (part.minimum_bytes is None and part.rounding_bytes is None):
            return v
        return VolumeUnit(v.unit, v.unit_bytes,
                          part.rounding_bytes if part.rounding_bytes is not None else v.rounding_bytes,
                          part.minimum_bytes if part.minimum_bytes is not None else v.minimum_bytes)

    def band_increments(self, row: RateRow | None, band: str) -> Increments:
        """The increments of a call starting in ``band``: the row's, the band's, the service's."""
        if row is not None and row.increments is not None:
            return row.increments
        part = self.parts.get(band) if self.parts is not None else None
        return part.increments if part is not None and part.increments is not None else self.plan.increments

    def increments(self, row: RateRow | None) -> Increments:
        if row is not None and row.increments is not None:
            return row.increments
        return self.plan.increments

    def connect_fee(self, row: RateRow | None) -> Decimal:
        if row is not None and row.connect_fee is not None:
            return row.connect_fee
        return self.plan.connect_fee

    def price(self, row: RateRow | None, band: str) -> Decimal | None:
        """Per-unit price of a row (or the flat price) in a band; None if there is none."""
        if row is not None:
            return row.price_for(band)
        return self.flat(band)

    def rule_span(self, row: RateRow | None) -> Span:
        return row.span if row is not None else self.plan.span


def field_price(value: object, pf: PriceField) -> Decimal | str | None:
    """The price a record brings in its field (``price from field NAME in EUR [cents]``), read
    exactly: its decimal number (a text, an int, or a float by its shortest text) moved ``scale``
    places; None when the record has no such field, a text saying why when it is no number."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        price = Decimal(text)
    except InvalidOperation:
        price = None
    if price is None or not price.is_finite():
        return f"{pf.name} is not a decimal number ({text[:40]!r})"
    return price.scaleb(-pf.scale)


def service_rules(agreement: Agreement, sp: ServicePlan) -> ServiceRules:
    unit = sp.unit
    volume = sp.volume
    if volume is None and unit in VOLUME_UNITS:
        volume = VolumeUnit(unit, VOLUME_UNITS[unit])
    kind = sp.kind
    per = volume.unit_bytes if volume is not None else TIME_UNITS[unit] if kind == KIND_TIME else 1
    slots, incs = _windows(kind, sp.slots)
    rates = sp.rates
    return ServiceRules(
        agreement=agreement,
        plan=sp,
        kind=kind,
        per=per,
        volume=volume,
        destinations=(Destinations(rates.rows, rates.fallback.rows if rates.fallback is not None else None)
                      if rates is not None else None),
        currency=rates.currency if rates is not None else sp.currency,
        slots=slots,
        bands=calendar_bands(sp.calendar) if sp.calendar is not None else ("all",),
        precision=sp.rounding.precision,
        mode=sp.rounding.mode,
        slot_incs=incs,
        parts={p.band: p for p in sp.band_parts} if sp.band_parts else None,
        slot_sets={ss.name: _windows(kind, ss.slots) for ss in sp.slot_sets} if sp.slot_sets else None,
    )


def _windows(kind: str, plan_slots) -> tuple[tuple, tuple[Increments | None, ...] | None]:
    """Slots as ``(from_s, until_s, price, span)`` and their own increments (None when no slot
    has any: then increments apply to the whole call); none for a service not priced by time."""
    slots = []
    if kind == KIND_TIME:
        lo = 0
        for s in plan_slots:
            slots.append((lo, s.until_s, s.price, s.span))
            if s.until_s is None:
                break
            lo = s.until_s
    incs = tuple(s.increments for s in plan_slots[: len(slots)])
    return tuple(slots), (incs if any(i is not None for i in incs) else None)


class RulesCache:
    """ServiceRules by identity of the ServicePlan (kept alive with it)."""

    def __init__(self) -> None:
        self._d: dict[int, tuple[ServicePlan, ServiceRules]] = {}
        self._lock = threading.Lock()

    def get(self, agreement: Agreement, sp: ServicePlan) -> ServiceRules:
        got = self._d.get(id(sp))
        if got is not None and got[0] is sp and got[1].agreement is agreement:
            return got[1]
        with self._lock:
            rules = service_rules(agreement, sp)
            self._d[id(sp)] = (sp, rules)
            return rules


def billed_seconds(d: int, inc: Increments) -> int:
    """``initial`` for 0 < d <= initial, else initial + ceil((d - initial)/subsequent)*subsequent."""
    return inc.billed(d)


def slot_windows(slots, incs, inc: Increments, eff: int) -> tuple[list[tuple[int, int, Decimal, Span]], int]:
    """Slots with increments of their own: the billed windows ``(from, to, price, span)`` of a call
    of ``eff`` seconds (after the minimum), and its billed seconds. Time is walked from the call's
    start: in each slot, the seconds still to bill up to the slot's end are billed with the slot's
    increments (else ``inc``, the row's or the service's); a block that runs past the slot's end
    moves the start of the next slot (as blocks consume the call's time)."""
    t = 0
    out = []
    for (_lo, until, price, span), own in zip(slots, incs, strict=True):
        end = eff if until is None else min(eff, until)
        b = (own or inc).billed(end - t) if end > t else 0
        out.append((t, t + b, price, span))
        t += b
    return out, t


def volume_bytes(volume: int, unit: VolumeUnit) -> int:
    """Bytes billed: at least ``minimum_bytes``, rounded up to a multiple of ``rounding_bytes``."""
    b = max(volume, unit.minimum_bytes)
    r = max(unit.rounding_bytes, 1)
    return -(-b // r) * r
