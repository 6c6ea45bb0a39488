"""The evaluation plan: immutable, plain Python objects compiled from checked agreements.

Nothing here knows Lark, storage or the UI. Every node carries the ``Span`` (:mod:`icdsl.spans`)
of the rule that produced it, so that a rated record, an invoice line or an error can point back to the source.

Money values are ``Decimal``; the batch executor turns them into scaled integers once per plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any

# the plain values the plan shares with the layers below it (re-exported: the plan's vocabulary)
from icdsl.lang.decks import Increments as Increments
from icdsl.lang.decks import RateColumns as RateColumns
from icdsl.lang.decks import RateRow as RateRow
from icdsl.lang.numbers import NumberRanges as NumberRanges
from icdsl.money import Rounding as Rounding
from icdsl.parties import Party as Party
from icdsl.spans import NO_SPAN as NO_SPAN
from icdsl.spans import Span as Span

# --------------------------------------------------------------------------- basics

# unit -> seconds per priced unit; and bytes per priced unit when the compiler left
# ServicePlan.volume unset. The same tables as icdsl.lang.values (data volumes are binary:
# 1 KB = 1024 bytes, as operators bill them).
TIME_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
}
VOLUME_UNITS = {"B": 1, "byte": 1, "bytes": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
#: what a service's records measure (:attr:`ServicePlan.kind`)
KIND_TIME, KIND_COUNT, KIND_VOLUME = "time", "count", "volume"



@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


@dataclass(frozen=True, slots=True)
class Price:
    """A price per unit: ``0.0070 EUR per minute``; ``per_count`` for package prices
    (``10 EUR per 100 minutes``)."""

    amount: Decimal
    currency: str
    unit: str
    per_count: int = 1

    def __str__(self) -> str:
        n = f"{self.per_count} " if self.per_count != 1 else ""
        return f"{self.amount} {self.currency} per {n}{self.unit}"


# --------------------------------------------------------------------------- calendars


@dataclass(frozen=True, slots=True)
class BandRule:
    """``band`` applies on ``weekdays`` (0 = Monday) from ``start`` (inclusive) to ``end`` (exclusive,
    ``time(0)`` meaning midnight at the end of the day), in the calendar's time zone."""

    band: str
    weekdays: frozenset[int]
    start: time
    end: time
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class HolidayRule:
    """Public holidays of ``country`` (and optional subdivision) count as ``band`` all day."""

    country: str
    subdivision: str | None
    band: str
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class Calendar:
    """Peak/off-peak bands: the first matching rule wins; holidays override the weekday rules;
    anything not covered is ``default_band``."""

    name: str
    timezone: str
    rules: tuple[BandRule, ...]
    default_band: str
    holidays: tuple[HolidayRule, ...] = ()
    extra_dates: tuple[tuple[date, str], ...] = ()
    span: Span = NO_SPAN

    @property
    def bands(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for r in self.rules:
            seen[r.band] = None
        for h in self.holidays:
            seen[h.band] = None
        seen[self.default_band] = None
        return tuple(seen)


# --------------------------------------------------------------------------- rates


#: origin ranks of a cell key (higher: more specific; see CellKey.rank)
ORIGIN_RANKS = {"any": 0, "zone": 1, "country": 2, "prefix": 3, "circle": 4, "operator": 5, "operator_circle": 6}


@dataclass(frozen=True, slots=True)
class CellKey:
    """What a rate row asks of a record besides the destination prefix: the origin (A-number
    prefix ``origin``; ``country`` and ``zone`` resolved to their prefixes; ``operator`` and
    ``circle`` from the service's number-range table) and the destination's operator and circle.
    Every part that is set must hold. The empty key prices every origin."""

    origin: str | None = None
    country: str | None = None
    country_prefixes: tuple[str, ...] = ()
    zone: str | None = None
    zone_prefixes: tuple[str, ...] = ()
    operator: str | None = None
    circle: str | None = None
    d_operator: str | None = None
    d_circle: str | None = None

    @property
    def empty(self) -> bool:
        return self == EMPTY_KEY

    @property
    def rank(self) -> tuple[int, int, int]:
        """(destination rank, origin rank, A-prefix length): the higher, the more specific. The
        destination's operator and circle: 3 both, 2 operator, 1 circle; the origin:
        operator and circle 6, operator 5, circle 4, A-number prefix 3, country 2, zone 1, any 0."""
        d = 2 * (self.d_operator is not None) + (self.d_circle is not None)
        if self.operator is not None and self.circle is not None:
            o = ORIGIN_RANKS["operator_circle"]
        elif self.operator is not None:
            o = ORIGIN_RANKS["operator"]
        elif self.circle is not None:
            o = ORIGIN_RANKS["circle"]
        elif self.origin is not None:
            o = ORIGIN_RANKS["prefix"]
        elif self.country is not None:
            o = ORIGIN_RANKS["country"]
        elif self.zone is not None:
            o = ORIGIN_RANKS["zone"]
        else:
            o = 0
        return d, o, len(self.origin or "")

    @property
    def needs_numbers(self) -> bool:
        return any(v is not None for v in (self.operator, self.circle, self.d_operator, self.d_circle))

    def text(self) -> str:
        """``origin operator AIRTEL circle MH``, ``origin zone EEA``, ``any origin``."""
        parts = []
        if self.operator is not None:
            parts.append(f"operator {self.operator}")
        if self.circle is not None:
            parts.append(f"circle {self.circle}")
        if self.origin is not None:
            parts.append(f"A-number prefix {self.origin}")
        if self.country is not None:
            parts.append(f"country {self.country}")
        if self.zone is not None:
            parts.append(f"zone {self.zone}")
        out = "origin " + " ".join(parts) if parts else "any origin"
        dest = [f"operator {self.d_operator}"] if self.d_operator is not None else []
        dest += [f"circle {self.d_circle}"] if self.d_circle is not None else []
        return out + (", destination " + " ".join(dest) if dest else "")


EMPTY_KEY = CellKey()


@dataclass(frozen=True, slots=True)
class RateTable:
    """Destinations matched by the longest prefix of the called number. ``source`` is a deck path
    (relative to the project) or ``"inline"``; ``source_hash`` the SHA-256 of the deck file.
    ``keys``: one CellKey per row when the table is keyed by origin (or by the destination's
    operator and circle), else None."""

    rows: tuple[RateRow, ...]
    currency: str
    unit: str = "minute"
    source: str = "inline"
    source_hash: str | None = None
    span: Span = NO_SPAN
    keys: tuple[CellKey, ...] | None = None
    # ``fallback ...``: the table that prices the numbers no row of this one holds (never keyed)
    fallback: RateTable | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """Multi-slot pricing: seconds from the call's start up to ``until_s`` (None: the rest)
    are priced at ``price`` per ``unit``."""

    until_s: int | None
    price: Decimal
    span: Span = NO_SPAN
    # the slot's own increments (None: the row's, else the service's, on the whole call)
    increments: Increments | None = None


@dataclass(frozen=True, slots=True)
class SlotSet:
    """``slots NAME { ... }``: slots that the rate rows naming ``NAME`` are priced by."""

    name: str
    slots: tuple[Slot, ...]
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class VolumeUnit:
    """Data volume: bytes are rounded up to ``rounding_bytes`` (e.g. 1 KB) before pricing per ``unit``."""

    unit: str  # KB, MB, GB
    unit_bytes: int
    rounding_bytes: int = 1
    minimum_bytes: int = 0


@dataclass(frozen=True, slots=True)
class BandPart:
    """``band NAME { ... }`` in a service: the parts of the tariff of calls that start in that band
    (None: not given, the service's own applies; a rate row's own fee and increments still win)."""

    band: str
    price: Decimal | None = None  # a flat price in that band (services without a rate table)
    connect_fee: Decimal | None = None
    increments: Increments | None = None
    span: Span = NO_SPAN
    minimum_bytes: int | None = None  # data: ``minimum volume`` of the band
    rounding_bytes: int | None = None  # data: ``round volume up to`` of the band


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True, slots=True)
class Expr:
    """A condition over record fields, partner attributes or cycle quantities.

    ``op`` is one of: ``field`` (args: name), ``const`` (args: value), ``cmp`` (args: operator,
    left, right; operator in ==, !=, <, <=, >, >=), ``in`` (args: left, tuple of values),
    ``and``, ``or``, ``not``, ``call`` (args: function name, arguments). Evaluated by walking
    the tree (row executor) or translating it to column expressions (batch executor): never eval.
    """

    op: str
    args: tuple[Any, ...]
    span: Span = NO_SPAN


# --------------------------------------------------------------------------- tiers and charges


@dataclass(frozen=True, slots=True)
class Tier:
    """A tier starting at ``start`` (inclusive) of the measured quantity and running to the next
    tier's start (exclusive): ``price`` per unit, ``percent`` discount, or ``flat`` fee."""

    start: Decimal
    price: Price | None = None
    percent: Decimal | None = None
    flat: Money | None = None
    span: Span = NO_SPAN
    # bounds written `up to N` (as Lago, Stripe, Kill Bill write them): the tier is reached once
    # the quantity is *above* ``start`` (the previous tier's end; the first: above 0), and ends at
    # ``up_to`` included (None: the last tier, `above N`)
    exclusive: bool = False
    up_to: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Share:
    """One party of a revenue share: ``percent`` of the amount, a ``fixed`` price paid first, or
    the ``remainder``."""

    party: str
    percent: Decimal | None = None
    fixed: Price | None = None
    remainder: bool = False
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class ShareTier:
    start: Money
    shares: tuple[Share, ...]
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class Charge:
    """A charge other than per-record traffic pricing: recurring, one_time, event, surcharge,
    volume_discount, tiered_price, commitment, revenue_share, or any plugin type.

    ``kind`` names the charge type registered through the ``icdsl_charge_types`` hook; ``params``
    is an immutable mapping (a tuple of pairs) interpreted by that charge type.
    """

    kind: str
    name: str
    params: tuple[tuple[str, Any], ...]
    applies_to: tuple[tuple[str, str], ...] = ()  # (direction, service) pairs; empty = all
    span: Span = NO_SPAN

    def param(self, key: str, default: Any = None) -> Any:
        for k, v in self.params:
            if k == key:
                return v
        return default


# --------------------------------------------------------------------------- services


@dataclass(frozen=True, slots=True)
class PriceField:
    """``price from field NAME in EUR [cents]``: the amount of a record is the decimal number of
    its field ``name`` (a text or a number, read exactly), divided by ``10**scale`` (2: cents),
    plus the connect fee, rounded once; nothing else of the record prices it."""

    name: str
    scale: int = 0
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """How one (direction, service) of an agreement is priced per record.

    Either ``rates`` (by destination, longest prefix) or ``flat_price`` is set.
    ``unit``: minute | second | message | event | KB | MB | GB | any named unit.
    """

    direction: str  # inbound | outbound | transit
    service: str  # voice | sms | data | any name
    unit: str
    rates: RateTable | None = None
    flat_price: Decimal | None = None
    currency: str = "EUR"
    increments: Increments = Increments(60, 60)
    minimum_s: int = 0
    connect_fee: Decimal = Decimal(0)
    slots: tuple[Slot, ...] = ()
    calendar: Calendar | None = None
    split_at_band_boundary: bool = False
    zero_duration: str = "connect_fee"  # connect_fee | free | reject
    volume: VolumeUnit | None = None
    rounding: Rounding = Rounding()
    # ``at most 10.00 EUR per call``: the amount of a record (connect fee + usage) never exceeds it
    max_cost: Decimal | None = None
    max_cost_span: Span = NO_SPAN
    band_parts: tuple[BandPart, ...] = ()  # ``band NAME { ... }``: by the band at the call's start
    span: Span = NO_SPAN
    # the number-range table of ``numbers NAME`` (operators and circles of both numbers)
    numbers: NumberRanges | None = None
    numbers_name: str | None = None
    # ``refile origin ZONE reject``: (ZONE, its prefixes): a record whose a_number starts with
    # none of them (or is empty) is rejected ``refiled``
    refile_reject: tuple[str, tuple[str, ...]] | None = None
    # ``slots NAME { ... }``: the slot sets rate rows choose with ``slots NAME`` (RateRow.slots)
    slot_sets: tuple[SlotSet, ...] = ()
    # ``price from field NAME in EUR [cents]``: each record's own price (Lago's dynamic model)
    price_field: PriceField | None = None

    @property
    def kind(self) -> str:
        """What the service's records measure: ``time`` (seconds), ``volume`` (bytes) or
        ``count`` (messages, events, any named unit): the one place that decides it."""
        if self.volume is not None or self.unit in VOLUME_UNITS:
            return KIND_VOLUME
        return KIND_TIME if self.unit in TIME_UNITS else KIND_COUNT


# --------------------------------------------------------------------------- partners and agreements


@dataclass(frozen=True, slots=True)
class Tax:
    """Tax treatment: ``kind`` is vat (rate applied), reverse_charge (0, noted on the invoice),
    exempt, or none."""

    kind: str = "none"
    rate: Decimal = Decimal(0)
    label: str = ""
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class Partner:
    code: str
    name: str
    kind: str = "interconnect"
    currency: str = "EUR"
    timezone: str = "UTC"
    billing: str = "monthly"  # monthly | weekly | quarterly | adhoc
    due_days: int = 30
    tax: Tax = Tax()
    country: str | None = None
    rounding: Rounding | None = None
    attributes: tuple[tuple[str, Any], ...] = ()
    span: Span = NO_SPAN
    party: Party | None = None  # legal details (address, VAT identifier, Peppol endpoint, contacts)


@dataclass(frozen=True, slots=True)
class Accounts:
    """The ledger accounts of the journal (``accounts`` block): revenue by service, else by
    charge kind, else the default; tax by treatment."""

    receivable: str
    revenue: str
    by_kind: tuple[tuple[str, str], ...] = ()
    by_service: tuple[tuple[str, str], ...] = ()
    tax: tuple[tuple[str, str], ...] = ()

    def revenue_for(self, kind: str | None, service: str | None) -> str:
        for s, acc in self.by_service:
            if s == service:
                return acc
        for k, acc in self.by_kind:
            if k == kind:
                return acc
        return self.revenue

    def tax_for(self, treatment: str) -> str | None:
        return dict(self.tax).get(treatment)


@dataclass(frozen=True, slots=True)
class FxRate:
    base: str
    quote: str
    rate: Decimal
    effective_from: date
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class FxSource:
    name: str
    rates: tuple[FxRate, ...]
    rounding: Rounding = Rounding(6, "half_even")
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class InvoiceStream:
    """A named invoice: which charges go on it. Selectors: ``("traffic", direction, service)``,
    ``("kind", charge kind)``, or ``("charge", charge name)``."""

    name: str
    selectors: tuple[tuple[str, ...], ...]
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class Amendment:
    """A later version that ends this one before its written end: ``by`` (that version's number)
    amends it from ``last_day`` + 1 (``amends vN``), or, with ``ends``, ends it on ``last_day``
    (``ends vN on DATE``: an early termination, no version takes over). ``written_to``: the end
    date written on this version (None: open ended); ``source_hash`` and ``span``: the amending
    version's own text (what the store records)."""

    by: int
    last_day: date
    ends: bool
    written_to: date | None
    source_hash: str = ""
    span: Span = NO_SPAN


@dataclass(frozen=True)
class Tolerances:
    """How far a partner's invoice may differ from our view of the same traffic and still match,
    as the agreement states them (``reconcile { ... }``; ``icdsl reconcile``). Without the block
    every field is 0: amounts must be equal to the cent, starts and durations to the second.

    A line is within tolerance when ``|theirs - ours| <= max(line_amount, |ours| * line_percent
    / 100)``; a record of theirs pairs with one of ours when their numbers are the same and their
    starts at most ``start_seconds`` apart, and its duration matches when at most
    ``duration_seconds`` from ours. (``icdsl.recon.model`` re-exports this class.)"""

    line_percent: Decimal = Decimal(0)  # of our amount, per line
    line_amount: Decimal = Decimal(0)  # absolute, in the invoice currency, per line
    start_seconds: int = 0  # record start times
    duration_seconds: int = 0  # record durations
    span: Span = NO_SPAN  # the agreement's reconcile block (NO_SPAN: the defaults)
    agreement: str = ""  # the agreement version stating them ("Bilateral v2"), "" for the defaults

    def allowance(self, ours: Decimal) -> Decimal:
        """The difference a line of ours of ``ours`` allows: the larger of the two bounds."""
        return max(self.line_amount, abs(ours) * self.line_percent / 100)

    def within(self, theirs: Decimal, ours: Decimal) -> bool:
        return abs(theirs - ours) <= self.allowance(ours)


@dataclass(frozen=True, slots=True)
class Agreement:
    """One version of an agreement with a partner, in force from ``effective_from`` (inclusive)
    to ``effective_to`` (inclusive, None for open-ended). A later version that amends or ends
    this one is in ``amendment``, and ``effective_to`` is then the last day in force (the end
    date written on the version is ``written_to``)."""

    name: str
    version: int
    partner: str  # a partner code, or "*" for an agreement with any partner
    effective_from: date
    effective_to: date | None
    currency: str
    timezone: str
    rounding: Rounding
    services: tuple[ServicePlan, ...]
    charges: tuple[Charge, ...] = ()
    streams: tuple[InvoiceStream, ...] = ()
    netting: tuple[tuple[str, str], ...] = ()
    fx: str | None = None
    source_file: str = ""
    source_hash: str = ""
    span: Span = NO_SPAN
    amendment: Amendment | None = None
    reconcile: Tolerances | None = None  # `reconcile { ... }`, None when the agreement states none
    # `progressive billing at 10_000.00 EUR, ...`: the thresholds of the usage billed so far in a
    # period (the partner's invoice currency) at which an interim invoice is raised (icdsl.cycle.progressive)
    progressive: tuple[Decimal, ...] = ()
    progressive_currency: str = ""  # the thresholds' (the partner's invoice currency)

    @property
    def key(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def written_to(self) -> date | None:
        """The end date written on this version (``effective_to`` before an amendment cut it)."""
        return self.amendment.written_to if self.amendment is not None else self.effective_to

    @property
    def terminated_on(self) -> date | None:
        """The first day no longer in force of a version ended early by ``ends vN on DATE``."""
        a = self.amendment
        return a.last_day + timedelta(days=1) if a is not None and a.ends else None

    def service(self, direction: str, service: str) -> ServicePlan | None:
        for s in self.services:
            if s.direction == direction and s.service == service:
                return s
        return None


@dataclass(frozen=True, slots=True)
class Example:
    """An acceptance test carried by a rule file: a sample record and the expected results."""

    name: str
    record: tuple[tuple[str, Any], ...]
    expect: tuple[tuple[str, Any], ...]
    agreement: str | None = None
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class CycleTraffic:
    """A cycle example's traffic of one service, summed: ``quantity`` in billed seconds
    (``kind`` time), units (count) or bytes (volume); ``amount`` the sum of the records'
    amounts; ``records`` None when the example does not say; ``version`` None for the version
    in force at the end of the cycle."""

    direction: str
    service: str
    kind: str
    quantity: int
    amount: Money
    records: int | None = None
    surcharges: Decimal = Decimal(0)
    version: int | None = None
    span: Span = NO_SPAN
    day: date | None = None  # the day it was used (progressive billing checks); None: the period's end


@dataclass(frozen=True, slots=True)
class CycleItem:
    """An inventory item of a cycle example: active from ``activated`` (included) to
    ``terminated`` (the first day no longer active; None: still active)."""

    kind: str
    item_id: str
    quantity: Decimal
    activated: date
    terminated: date | None = None
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class CycleEvents:
    """``units`` event records of type ``event`` on ``day`` (None: the first day of the cycle
    on which the agreement is in force)."""

    event: str
    units: int
    day: date | None = None
    span: Span = NO_SPAN
    worth: Money | None = None  # `worth 40.00 EUR`: ``units`` records, each a transaction of this value


@dataclass(frozen=True, slots=True)
class CycleRefund:
    direction: str
    service: str
    amount: Money
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class CycleExpectation:
    """``line`` (the sum of the lines of charge ``label``, of ``subject`` only if given: a
    party or an item id), ``no_line`` (the charge gives no line) or ``total`` (all lines);
    progressive billing: ``interim`` (the interim invoice a check on ``day`` raises),
    ``no_interim`` (a check on ``day`` raises none), ``invoice`` (the final invoice's subtotal:
    the traffic, every line, less the interim invoices)."""

    key: str
    label: str | None = None
    subject: str | None = None
    amount: Money | None = None
    span: Span = NO_SPAN
    day: date | None = None


@dataclass(frozen=True, slots=True)
class CycleExample:
    """An acceptance test of cycle-level charges: a partner's billing cycle ``[start, end)``
    (local days) of one agreement, described by its totals, and the lines it must give."""

    name: str
    partner: str
    agreement: str
    start: date
    end: date
    label: str
    traffic: tuple[CycleTraffic, ...] = ()
    items: tuple[CycleItem, ...] = ()
    events: tuple[CycleEvents, ...] = ()
    refunds: tuple[CycleRefund, ...] = ()
    expect: tuple[CycleExpectation, ...] = ()
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """How the columns of a traffic file map to icdsl's record fields.

    ``columns``: (field, source column) pairs, e.g. ("start", "start_time");
    ``constants``: (field, value) pairs for fields the file does not carry, e.g. ("direction", "outbound");
    ``timezone``: the zone of timestamps written without an offset; ``country``: the ISO country
    used to normalize national numbers to E.164; ``numbers``: ``normalize`` reads ``+``, ``00``
    and national spellings, ``e164`` takes digit strings as E.164 already (``0034...`` stays as
    written and finds no rate).
    """

    name: str
    columns: tuple[tuple[str, str], ...] = ()
    constants: tuple[tuple[str, str], ...] = ()
    timestamp_format: str | None = None
    timezone: str = "UTC"
    country: str | None = None
    numbers: str = "normalize"  # normalize (+, 00, national forms) | e164 (digits taken as given)
    span: Span = NO_SPAN


# --------------------------------------------------------------------------- least-cost routing policies


@dataclass(frozen=True, slots=True)
class LcrLimit:
    """A bound on a supplier's route: ``measure`` is ``asr`` (percent), ``acd`` and ``pdd``
    (seconds), ``calls`` (the fewest calls that make a measurement), ``cost`` (per minute, in the
    policy's currency) or ``margin`` (``unit`` ``%`` or the policy's currency per minute);
    ``bound`` is ``minimum`` or ``maximum``; ``prefixes``: the destinations it applies to (empty:
    all; for a prefix, the limit of the longest matching scope wins)."""

    measure: str
    bound: str
    value: Decimal
    unit: str
    prefixes: tuple[str, ...] = ()
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class LcrRule:
    """``block`` or ``prefer`` the ``suppliers`` (partner codes) for ``prefixes`` (empty: all)."""

    kind: str
    suppliers: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class LcrSplit:
    """Destinations under ``prefix`` go to the ``shares`` (supplier, percent; summing to 100)
    together, as the first route."""

    prefix: str
    shares: tuple[tuple[str, Decimal], ...]
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class LcrPolicy:
    """An ``lcr NAME { ... }`` policy: how ``icdsl lcr`` ranks suppliers (see docs/routing.md)."""

    name: str
    service: str = "voice"
    currency: str = "EUR"
    fx: str | None = None
    sell: str | None = None
    suppliers: tuple[str, ...] = ()
    reference_s: int = 60
    routes: int | None = None
    window_days: int = 30
    unmeasured: str = "allow"  # allow | last | block
    limits: tuple[LcrLimit, ...] = ()
    rules: tuple[LcrRule, ...] = ()
    splits: tuple[LcrSplit, ...] = ()
    description: str = ""
    span: Span = NO_SPAN


@dataclass(frozen=True, slots=True)
class InvoiceLayout:
    """How a partner's CSV invoice maps to invoice lines (``invoice layout NAME { ... }``).

    ``columns``: (field, column) pairs; ``constants``: (field, value) pairs for fields the file
    does not carry (``currency = EUR``); ``services``: (their word, our service) pairs;
    ``date_format``: a ``strptime`` format; ``decimal``: the decimal mark (``.`` or ``,``);
    ``delimiter``: the field separator; ``encoding``: the file's text encoding.
    """

    name: str
    columns: tuple[tuple[str, str], ...] = ()
    constants: tuple[tuple[str, str], ...] = ()
    services: tuple[tuple[str, str], ...] = ()
    date_format: str = "%Y-%m-%d"
    decimal: str = "."
    delimiter: str = ","
    encoding: str = "utf-8"
    span: Span = NO_SPAN

    def column(self, field_name: str) -> str | None:
        return dict(self.columns).get(field_name)

    def constant(self, field_name: str) -> str | None:
        return dict(self.constants).get(field_name)


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the executors and billing need, compiled from a set of rule files."""

    partners: tuple[Partner, ...] = ()
    agreements: tuple[Agreement, ...] = ()
    calendars: tuple[Calendar, ...] = ()
    fx_sources: tuple[FxSource, ...] = ()
    examples: tuple[Example, ...] = ()
    cycle_examples: tuple[CycleExample, ...] = ()
    layouts: tuple[RecordLayout, ...] = ()
    sources: tuple[tuple[str, str], ...] = field(default=())  # (file, sha256)
    lcr_policies: tuple[LcrPolicy, ...] = ()
    invoice_layouts: tuple[InvoiceLayout, ...] = ()

    def invoice_layout(self, name: str) -> InvoiceLayout | None:
        for lay in self.invoice_layouts:
            if lay.name == name:
                return lay
        return None
    company: Party | None = None  # who we are: the seller of our invoices (``company`` block)
    accounts: Accounts | None = None  # the ledger accounts of the journal (``accounts`` block)

    def partner(self, code: str) -> Partner | None:
        for p in self.partners:
            if p.code == code:
                return p
        return None

    def agreements_for(self, partner: str) -> tuple[Agreement, ...]:
        return tuple(a for a in self.agreements if a.partner == partner)
