"""The typed AST of the agreement language. Every node carries the ``span`` of its source text.

Leaf values keep their own spans (``Ident``, ``Num``, ``Str``...) so that the checker can point
at the exact word that is wrong. Charges share one node type, ``ChargeNode``, whose ``kind``
names a charge type registered through the plugin hooks: the built-in sugar forms
(``recurring "E1 port" 150.00 EUR monthly ...``) and the generic plugin form
(``charge slice_hours "5G" { embb: 0.50 EUR per hour }``) both end up as ChargeNodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from icdsl.spans import Span

# --------------------------------------------------------------------------- leaves


def _by_key(items: tuple[Any, ...], key: str) -> Any:
    """The first of ``items`` (settings, options, parameters) whose ``key`` is ``key``, or None."""
    for item in items:
        if item.key == key:
            return item
    return None


@dataclass(frozen=True, slots=True)
class Ident:
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Str:
    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Num:
    value: Decimal
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class DateLit:
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class TimeLit:
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Money:
    amount: Num
    currency: Ident
    span: Span


@dataclass(frozen=True, slots=True)
class Quantity:
    value: Num
    unit: Ident
    span: Span


@dataclass(frozen=True, slots=True)
class Percent:
    value: Num
    span: Span


@dataclass(frozen=True, slots=True)
class MoneyPer:
    """``0.0070 EUR per minute``; ``per_count`` for package prices (``10 EUR per 100 minutes``)."""

    money: Money
    unit: Ident | None
    span: Span
    per_count: Num | None = None


@dataclass(frozen=True, slots=True)
class ListValue:
    items: tuple[Any, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class MapValue:
    params: tuple[Param, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Param:
    key: Ident
    value: Any
    span: Span


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class FieldRef:
    path: tuple[str, ...]
    span: Span

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any  # Decimal, str, bool, or Percent
    span: Span


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Any
    right: Any
    span: Span


@dataclass(frozen=True, slots=True)
class Member:
    left: Any
    values: tuple[Literal, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Between:
    left: Any
    low: Literal
    high: Literal
    span: Span


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and | or
    operands: tuple[Any, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Not:
    operand: Any
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    name: Ident
    args: tuple[Any, ...]
    span: Span


# --------------------------------------------------------------------------- shared


@dataclass(frozen=True, slots=True)
class RoundingNode:
    """``rounding half_up to 6 decimals`` (mode, precision) or ``rounding cents`` (preset)."""

    mode: Ident | None
    precision: Num | None
    preset: Ident | None
    span: Span
    unit: Ident | None = None


@dataclass(frozen=True, slots=True)
class Use:
    target: str
    is_path: bool
    span: Span


# --------------------------------------------------------------------------- partners and definitions


@dataclass(frozen=True, slots=True)
class Setting:
    """A one-line setting of a block: ``kind interconnect``, ``due 30 days``, ``tax vat 20%``."""

    key: str
    values: tuple[Any, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class PartnerDecl:
    code: Ident
    name: Str
    settings: tuple[Setting, ...]
    rounding: RoundingNode | None
    attributes: tuple[Param, ...]
    span: Span
    party: tuple[PartyField, ...] = ()

    def setting(self, key: str) -> Setting | None:
        return _by_key(self.settings, key)


@dataclass(frozen=True, slots=True)
class PartyField:
    """One legal detail of a party: ``address "1 rue X", "Bât. B"``, ``vat "FR40303265045"``,
    ``contact "Billing" email "b@x.example" phone "+33 1 00"`` (``values`` in order; a contact's
    missing email or phone is None)."""

    key: str
    values: tuple[Str | None, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class AccountsDecl:
    """``accounts { receivable "411000" revenue "706000" revenue kind fee "706300" ... }``:
    ``entries`` are (what, key or None, account) with what in receivable, revenue, revenue_kind,
    revenue_service, tax."""

    entries: tuple[tuple[str, Ident | None, Str, Span], ...]
    span: Span


@dataclass(frozen=True, slots=True)
class CompanyDecl:
    """``company CODE "Legal name" { ... }``: who we are, on every document we issue."""

    code: Ident
    name: Str
    settings: tuple[Setting, ...]
    party: tuple[PartyField, ...]
    span: Span

    def setting(self, key: str) -> Setting | None:
        return _by_key(self.settings, key)


@dataclass(frozen=True, slots=True)
class RoundingPreset:
    name: Ident
    precision: Num
    mode: Ident
    span: Span


@dataclass(frozen=True, slots=True)
class BandRuleNode:
    band: Ident
    days: tuple[tuple[Ident, Ident | None], ...]
    start: TimeLit | None
    end: TimeLit | None
    span: Span


@dataclass(frozen=True, slots=True)
class HolidayNode:
    country: Ident
    subdivision: Str | None
    band: Ident
    span: Span


@dataclass(frozen=True, slots=True)
class DateBandNode:
    date: DateLit
    band: Ident
    span: Span


@dataclass(frozen=True, slots=True)
class CalendarDecl:
    name: Ident | None  # None for a service's inline ``bands``
    timezone: Str
    rules: tuple[BandRuleNode, ...]
    default: Ident | None
    holidays: tuple[HolidayNode, ...]
    dates: tuple[DateBandNode, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class FxRateNode:
    base: Ident
    quote: Ident
    rate: Num
    start: DateLit
    span: Span


@dataclass(frozen=True, slots=True)
class FxDecl:
    name: Ident
    rates: tuple[FxRateNode, ...]
    rounding: RoundingNode | None
    span: Span


@dataclass(frozen=True, slots=True)
class ZoneDecl:
    """``zone EEA { AT BE "3519" zone NORDICS }``: countries (ISO codes), prefixes (strings of
    digits) and other zones included."""

    name: Ident
    countries: tuple[Ident, ...]
    prefixes: tuple[Str, ...]
    includes: tuple[Ident, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class NumbersDecl:
    """``numbers NAME from "ranges.csv" [ported "ported.csv"]``: a number-range table."""

    name: Ident
    ranges: Str
    ported: Str | None
    span: Span


@dataclass(frozen=True, slots=True)
class TemplateDecl:
    name: Ident
    charges: tuple[ChargeNode, ...]
    span: Span
    params: tuple[Ident, ...] = ()  # `template port_rental(price, kind)`: bound by each `apply`


@dataclass(frozen=True, slots=True)
class ParamRef:
    """A template parameter written where an amount is expected (``price`` in ``recurring "Port"
    price monthly``); ``expects``: ``money`` or ``percent``. Each ``apply`` replaces it with its
    argument (checked to be of that kind)."""

    name: Ident
    expects: str
    span: Span


@dataclass(frozen=True, slots=True)
class ApplyNode:
    """``apply NAME`` or ``apply NAME(ARG, ...)``: a template's charges, its parameters bound to the
    arguments (Money, Percent, Num, Ident, Str)."""

    name: Ident
    args: tuple[Any, ...]
    span: Span
    has_args: bool = False  # written with parentheses


@dataclass(frozen=True, slots=True)
class RecordsDecl:
    name: Ident
    columns: tuple[tuple[Ident, Str], ...]
    constants: tuple[tuple[Ident, Any], ...]
    settings: tuple[Setting, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class InvoiceLayoutDecl:
    """``invoice layout NAME { ... }``: how a partner's CSV invoice maps to invoice lines.
    ``services``: (their word, our service) pairs; ``settings``: ``date_format``, ``decimal``,
    ``delimiter``, ``encoding`` (one text value each)."""

    name: Ident
    columns: tuple[tuple[Ident, Str], ...]
    constants: tuple[tuple[Ident, Any], ...]
    services: tuple[tuple[Str, Ident], ...]
    settings: tuple[Setting, ...]
    span: Span

    def setting(self, key: str) -> Setting | None:
        return _by_key(self.settings, key)


# --------------------------------------------------------------------------- rates and services


@dataclass(frozen=True, slots=True)
class RateRowNode:
    """One row of an inline rate table. Kept light (plain values, one span for the row) because
    tables hold tens of thousands of rows; ``words`` are the row's words after the destination,
    as written, for the formatter."""

    prefix: str
    destination: str
    price: Decimal | None
    band_prices: tuple[tuple[str, Decimal], ...]
    connect: Decimal | None
    increments: tuple[int, int] | None
    start: str | None
    until: str | None
    span: Span
    prefix_quoted: bool = False
    words: tuple[str, ...] = ()
    origin: tuple[tuple[str, str], ...] = ()  # a deck row's origin key (lang.decks.ORIGIN_FIELDS)
    # ``slots NAME``: the service's slot set that prices this row (None: the service's default)
    slot_set: str | None = None
    slot_set_span: Span | None = None  # where the row names it (inline rows; a deck row: its line)

    @property
    def prefix_text(self) -> str:
        return self.prefix


@dataclass(frozen=True, slots=True)
class DeckColumn:
    field: Ident
    band: Ident | None
    column: Str
    span: Span


@dataclass(frozen=True, slots=True)
class DestinationPrice:
    """``price by destination [in EUR] [per minute] from deck "x.csv" [columns {...}]`` or
    ``price by destination { rows }``."""

    currency: Ident | None
    unit: Ident | None
    deck: Str | None
    columns: tuple[DeckColumn, ...]
    delimiter: Str | None
    rows: tuple[RateRowNode, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class SlotNode:
    first: Quantity | None  # None for ``then``
    price: Money
    unit: Ident
    span: Span
    increments: Setting | None = None  # the slot's own ``increments I/S``


@dataclass(frozen=True, slots=True)
class SlotSetNode:
    """``slots NAME { ... }`` in a service: a named set of slots that rate rows select with
    ``slots NAME`` (CGRateS's rate groups per destination)."""

    name: Ident
    slots: tuple[SlotNode, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class BandPartNode:
    """``band peak { price ..., connect fee ..., increments I/S }`` in a service."""

    band: Ident
    settings: tuple[Setting, ...]
    span: Span

    def setting(self, key: str) -> Setting | None:
        return _by_key(self.settings, key)


@dataclass(frozen=True, slots=True)
class ServiceDecl:
    direction: Ident
    service: Ident
    flat_price: MoneyPer | None
    destination_price: DestinationPrice | None
    calendar: Ident | None
    bands: CalendarDecl | None
    settings: tuple[Setting, ...]
    slots: tuple[SlotNode, ...]
    rounding: RoundingNode | None
    charges: tuple[ChargeNode, ...]
    span: Span
    # ``fallback from deck "..."`` / ``fallback { rows }``: the table for numbers the price table misses
    fallback: DestinationPrice | None = None
    band_parts: tuple[BandPartNode, ...] = ()  # ``band NAME { ... }``
    slot_sets: tuple[SlotSetNode, ...] = ()  # ``slots NAME { ... }``, selected by rate rows

    def setting(self, key: str) -> Setting | None:
        return _by_key(self.settings, key)


# --------------------------------------------------------------------------- charges


@dataclass(frozen=True, slots=True)
class ChargeNode:
    """Any charge. ``kind``: surcharge, recurring, one_time, event, commitment, tiered_price,
    volume_discount, revenue_share, or a plugin's charge type (generic form). ``params`` hold
    the values of the statement by name; ``options`` the ``, prorate daily``-style options."""

    kind: str
    kind_span: Span
    label: Str | None
    params: tuple[Param, ...]
    options: tuple[Setting, ...]
    span: Span
    generic: bool = False

    def param(self, key: str, default: Any = None) -> Any:
        for p in self.params:
            if p.key.text == key:
                return p.value
        return default

    def option(self, key: str) -> Setting | None:
        return _by_key(self.options, key)


@dataclass(frozen=True, slots=True)
class TierNode:
    start: Num
    value: Any  # MoneyPer (per unit), Money (flat), Percent
    flat: bool
    span: Span
    plus_flat: Any = None  # Money: a flat fee on top of the price per unit ("... plus 10.00 EUR flat")
    # how the tier's number bounds it: "from" (its start, included), "up_to" (its end, included:
    # `up to 10`, the tier after 10 starts above 10), "above" (the last tier, above its number)
    bound: str = "from"


@dataclass(frozen=True, slots=True)
class SharePartyNode:
    party: Ident
    value: Any  # Percent, MoneyPer, or "remainder"
    span: Span


@dataclass(frozen=True, slots=True)
class ShareTierNode:
    start: Money
    parties: tuple[SharePartyNode, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Selector:
    words: tuple[Ident, ...]
    name: Str | None
    span: Span

    @property
    def text(self) -> str:
        return self.name.value if self.name else " ".join(w.text for w in self.words)


@dataclass(frozen=True, slots=True)
class StreamNode:
    name: Ident
    selectors: tuple[Selector, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ReconcileItem:
    """One statement of a ``reconcile { ... }`` block: ``key`` is ``tolerance`` (``values``: the
    Percent and Money bounds, ``or`` between them), ``start`` or ``duration`` (``values``: one
    Quantity)."""

    key: str
    values: tuple[Any, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ReconcileNode:
    """``reconcile { tolerance 0.5 % or 1.00 EUR per line  start within 2 seconds ... }``: how far
    a partner's invoice may differ from our view of the same traffic and still match."""

    items: tuple[ReconcileItem, ...]
    span: Span

    def item(self, key: str) -> ReconcileItem | None:
        return _by_key(self.items, key)


# --------------------------------------------------------------------------- agreements, examples, files


@dataclass(frozen=True, slots=True)
class AgreementDecl:
    name: Str
    version: Ident  # "v3"
    partner: Ident | None  # None: with any partner
    start: DateLit
    end: DateLit | None
    settings: tuple[Setting, ...]
    rounding: RoundingNode | None
    services: tuple[ServiceDecl, ...]
    charges: tuple[ChargeNode, ...]
    streams: tuple[StreamNode, ...]
    netting: tuple[tuple[Ident, Ident], ...]
    applies: tuple[Ident, ...]
    span: Span
    amends: Ident | None = None  # `amends v1`: the earlier version this one replaces from its start
    reconcile: tuple[ReconcileNode, ...] = ()  # `reconcile { ... }` blocks (the checker allows one)
    apply_args: tuple[ApplyNode, ...] = ()  # each `apply`, with its arguments (`applies` holds the names)

    @property
    def version_number(self) -> int:
        return int(self.version.text[1:])

    def setting(self, key: str) -> Setting | None:
        return _by_key(self.settings, key)


@dataclass(frozen=True, slots=True)
class AgreementEndDecl:
    """``agreement "NAME" v2 with PARTNER ends v1 on 2026-03-15``: a version without terms of its
    own that ends an earlier one early; ``last_day`` is the ended version's last day in force."""

    name: Str
    version: Ident
    partner: Ident | None  # None: with any partner
    ends: Ident  # the version it ends ("v1")
    last_day: DateLit
    span: Span

    @property
    def version_number(self) -> int:
        return int(self.version.text[1:])


@dataclass(frozen=True, slots=True)
class ExampleDecl:
    name: Str
    direction: Ident | None
    service: Ident | None
    number: Any  # Num | Str | None
    options: tuple[Setting, ...]  # at, for, from, messages, volume, agreement, partner
    fields: tuple[Param, ...]
    expectations: tuple[Setting, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class CycleTrafficNode:
    """``traffic outbound voice 650_000 minutes for 4_550.00 EUR in 12_000 calls``: a cycle's
    rated traffic of one service, summed. ``options``: ``for`` (amount), ``in`` (records),
    ``surcharges``, ``version``, ``on`` (the day it was used: progressive billing checks)."""

    direction: Ident
    service: Ident
    quantity: Quantity
    options: tuple[Setting, ...]
    span: Span

    def option(self, key: str) -> Setting | None:
        return _by_key(self.options, key)


@dataclass(frozen=True, slots=True)
class CycleItemNode:
    """``item e1_port "E1-PAR-002" active 2026-03-10 .. [2026-03-20] [quantity 2]``: an inventory
    item; ``end`` is its last day active (included), None when still active."""

    kind: Ident
    item_id: Str
    start: DateLit
    end: DateLit | None
    quantity: Num | None
    span: Span


@dataclass(frozen=True, slots=True)
class CycleEventsNode:
    """``events porting 12 [on 2026-03-10]``: event records of the cycle."""

    event: Ident
    count: Num
    day: DateLit | None
    span: Span
    worth: Money | None = None  # `worth 40.00 EUR`: each event's value (a percentage charge's transactions)


@dataclass(frozen=True, slots=True)
class CycleRefundNode:
    """``refund outbound sms 120.00 EUR``: refunds and credits against the cycle's traffic."""

    direction: Ident
    service: Ident
    amount: Money
    span: Span


@dataclass(frozen=True, slots=True)
class CycleExpectation:
    """``line "LABEL" [for SUBJECT] AMOUNT``, ``no line "LABEL"``, ``total AMOUNT``, and for
    progressive billing ``interim on DAY AMOUNT``, ``no interim on DAY``, ``invoice AMOUNT``.
    ``key``: line | no_line | total | interim | no_interim | invoice; ``amount``'s number is
    negative for ``-5.00 EUR``; ``subject``: a party (Ident) or an item id (Str); ``day``: the
    day of a progressive billing check."""

    key: str
    label: Str | None
    subject: Any
    amount: Money | None
    span: Span
    day: DateLit | None = None


@dataclass(frozen=True, slots=True)
class CycleExampleDecl:
    """``example cycle "NAME" { ... }``: a billing cycle and the charge lines it must give.
    ``settings``: partner, agreement, period (one DateLit ``2026-03`` for a month, or two for
    the first and last days)."""

    name: Str
    settings: tuple[Setting, ...]
    traffic: tuple[CycleTrafficNode, ...]
    items: tuple[CycleItemNode, ...]
    events: tuple[CycleEventsNode, ...]
    refunds: tuple[CycleRefundNode, ...]
    expectations: tuple[CycleExpectation, ...]
    span: Span

    def setting(self, key: str) -> Setting | None:
        return _by_key(self.settings, key)


# --------------------------------------------------------------------------- least-cost routing policies


@dataclass(frozen=True, slots=True)
class LcrLimit:
    """``minimum asr 40%``, ``maximum cost 0.05 EUR per minute for 44``: ``bound`` is
    ``minimum`` or ``maximum``; ``value`` a Percent, a Num (a count) or an LcrMeasure."""

    bound: str
    measure: Ident
    value: Any
    scope: tuple[Any, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class LcrMeasure:
    """A number with a unit, and ``per UNIT`` for prices: ``60 s``, ``0.05 EUR per minute``."""

    amount: Num
    unit: Ident
    per: Ident | None
    span: Span


@dataclass(frozen=True, slots=True)
class LcrSuppliers:
    """``block A, B for 44`` / ``prefer A`` / ``suppliers A, B`` (``scope``: prefixes, empty = all)."""

    kind: str
    partners: tuple[Ident, ...]
    scope: tuple[Any, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class LcrSplit:
    """``split 336 between LUMFR 70%, BRKGB 30%``."""

    prefix: Any
    shares: tuple[tuple[Ident, Percent], ...]
    span: Span


@dataclass(frozen=True, slots=True)
class LcrDecl:
    """``lcr NAME { ... }``: settings (``Setting``), limits, supplier rules and splits, in order."""

    name: Ident
    items: tuple[Any, ...]
    span: Span

    def setting(self, key: str) -> Setting | None:
        return next((i for i in self.items if isinstance(i, Setting) and i.key == key), None)


@dataclass(slots=True)
class File:
    path: str
    uses: list[Use] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    span: Span | None = None
