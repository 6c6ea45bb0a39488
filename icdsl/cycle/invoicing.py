"""From rated line groups to draft invoices: streams, conversion, rounding, tax, netting.

Pure functions over plain data (no database): :func:`draft_documents` takes the cycle's line
groups (the exact sums of its rated records by line), its adjustments, the partner's currency
and tax treatment, the plan and the FX table, and returns the draft invoices and the settlement
statement. :mod:`icdsl.cycle.engine` calls it; :mod:`icdsl.billing.cycles` writes the drafts as rows.

**Lines.** Records are grouped by agreement version, direction, service and currency, and by
the dimensions asked for (default ``destination`` and ``band``; also ``prefix``, ``rate``,
``rule``). A line's amount is its exact sum, converted to the invoice currency at the rate of
the agreement's ``fx`` source in force on the cycle's last day, rounded once to the currency's
minor unit with the agreement's rounding mode (:mod:`icdsl.cycle.amounts`).

**Streams.** An agreement's ``invoice streams`` put each service on its stream (a
``traffic`` selector takes every service); a service no stream selects goes on the first
stream; without streams everything is on one invoice (stream ``main``). One invoice per stream
(in the partner's currency), numbered at finalization. The adjustments of corrections (of a
finalized cycle, billed on the next one) are not mixed into it: they make a document of their
own per stream, a **credit note** when they add up to a credit, a **debit note** when they add
(``DraftInvoice.kind``), each numbered in its own series at finalization.

**Netting.** Services the agreement nets (``netting with DIRECTION SERVICE``) are what we owe
the partner: they are not invoiced but listed on the cycle's settlement statement, which offsets
them against the invoices (receivable = the invoices' subtotals, payable = the netted lines).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from icdsl.cycle.amounts import Tax, compute_tax, convert, exact_sum, round_line, rounding_text
from icdsl.cycle.errors import CycleError
from icdsl.cycle.fx import FxQuote, FxTable
from icdsl.plan.model import Agreement, Plan

DEFAULT_STREAM = "main"
NETTING = "netting"
BASE_DIMS = ("agreement_hash", "direction", "service", "currency")
DIMENSIONS = ("destination", "band", "prefix", "rate", "rule")
DEFAULT_DIMS = ("destination", "band")
TIME_UNITS = ("second", "minute", "hour")
VOLUME_UNITS = ("B", "byte", "KB", "MB", "GB", "TB")


def check_dims(dims: Iterable[str] | None) -> tuple[str, ...]:
    """The line dimensions in canonical order; unknown ones are a CycleError."""
    if dims is None:
        return DEFAULT_DIMS
    wanted = [d.strip() for d in dims if d.strip()]
    unknown = [d for d in wanted if d not in DIMENSIONS]
    if unknown:
        raise CycleError(f"unknown line dimension(s) {', '.join(unknown)}: lines are always split by agreement "
                         f"version, direction, service and currency, and optionally by {', '.join(DIMENSIONS)}")
    return tuple(d for d in DIMENSIONS if d in wanted)


def group_key(direction: str, service: str, currency: str, dims: Mapping[str, str]) -> str:
    """A line's dimensions without its agreement version (what a correction matches on)."""
    parts = [direction, service, currency] + [f"{k}={dims[k]}" for k in DIMENSIONS if k in dims]
    return " | ".join(parts)


def quantity_unit(agreement: Agreement | None, direction: str, service: str) -> tuple[str, str | None]:
    """(unit of the billed quantity, unit of the rate) for a service."""
    sp = agreement.service(direction, service) if agreement else None
    if sp is None:
        return "unit", None
    if sp.volume is not None or sp.unit in VOLUME_UNITS:
        return "byte", sp.unit
    if sp.unit in TIME_UNITS:
        return "second", sp.unit
    return sp.unit, sp.unit


def route(agreement: Agreement | None, direction: str, service: str) -> tuple[str, bool]:
    """(stream, netted) of a service's lines."""
    if agreement is None:
        return DEFAULT_STREAM, False
    if (direction, service) in agreement.netting:
        return NETTING, True
    if not agreement.streams:
        return DEFAULT_STREAM, False
    for st in agreement.streams:
        for sel in st.selectors:
            if (sel[0] == "traffic" and tuple(sel[1:]) == (direction, service)) or tuple(sel) == ("kind", "traffic"):
                return st.name, False
    return agreement.streams[0].name, False


def describe(direction: str, service: str, destination: str | None, band: str | None,
             prefix: str | None = None) -> str:
    text = f"{direction} {service}"
    if destination:
        text += f" to {destination}"
    if prefix and prefix != destination:
        text += f" [{prefix}]"
    if band and band != "all":
        text += f" ({band})"
    return text


@dataclass
class Group:
    """The rated records of one line (exact, before conversion and rounding), with the values
    of the columns that are not dimensions when they are the same on every record (else None)."""

    key: int
    agreement_hash: str
    agreement: str
    agreement_version: int | None
    direction: str
    service: str
    currency: str
    dims: dict[str, str]
    count: int = 0
    units: int = 0
    amount: Decimal = Decimal(0)
    first: datetime | None = None
    last: datetime | None = None
    values: dict[str, set[str]] = field(default_factory=dict)  # column -> distinct values (capped)

    def only(self, column: str) -> str | None:
        if column in self.dims:
            return self.dims[column] or None
        vals = self.values.get(column)
        if vals is None or len(vals) != 1:
            return None
        return next(iter(vals)) or None

    @property
    def group_key(self) -> str:
        return group_key(self.direction, self.service, self.currency, self.dims)


@dataclass
class DraftLine:
    """A line as it will be written (the columns of ``invoice_lines``)."""

    kind: str
    description: str
    direction: str | None
    service: str | None
    destination: str | None
    prefix: str | None
    band: str | None
    quantity: Decimal
    unit: str
    rate: Decimal | None
    rate_unit: str | None
    amount: Decimal
    currency: str
    source_amount: Decimal
    source_currency: str
    fx: FxQuote | None
    rounding: str
    agreement_hash: str | None
    rule: str | None
    line_key: int | None
    record_count: int | None
    first_start: datetime | None
    last_start: datetime | None
    group_key: str
    stream: str
    netted: bool
    corrects_line_id: int | None = None
    adjustment_id: int | None = None
    charge: Any = None  # the icdsl.charges.lines.ChargeLine a charge's line comes from
    order: int = 0  # among lines other than traffic: 1 + the stage in the order of deductions

    def sort_key(self) -> tuple:
        return (0 if self.kind == "traffic" else 1, self.order, self.direction or "", self.service or "",
                self.destination or "", self.prefix or "", self.band or "", self.agreement_hash or "",
                self.rule or "", str(self.rate), self.adjustment_id or 0, "" if self.charge is None else self.group_key)


@dataclass
class DraftInvoice:
    stream: str
    currency: str
    lines: list[DraftLine]
    subtotal: Decimal
    tax: Tax
    total: Decimal
    fx_rate_id: int | None
    kind: str = "invoice"  # invoice | credit_note | debit_note (the adjustments of corrections)


@dataclass
class DraftStatement:
    currency: str
    lines: list[DraftLine]
    receivable: Decimal
    payable: Decimal
    net: Decimal


@dataclass
class Drafts:
    invoices: list[DraftInvoice]
    statement: DraftStatement | None
    charges: list[Any] = field(default_factory=list)  # every charge line of the cycle (ChargeLine)

    @property
    def lines(self) -> list[DraftLine]:
        out = [ln for inv in self.invoices for ln in inv.lines]
        return out + (self.statement.lines if self.statement else [])


def fx_for(fx: FxTable, agreement: Agreement | None, currency: str, invoice_currency: str,
           day: date) -> FxQuote | None:
    """The conversion of ``currency`` amounts of ``agreement`` into the invoice currency on
    ``day`` (None when they are the same); a CycleError when there is no rate."""
    if currency == invoice_currency:
        return None
    source = agreement.fx if agreement is not None else None
    q = fx.quote(source, currency, invoice_currency, day) if source else None
    if q is None:
        name = agreement.key if agreement else "the agreement"
        raise CycleError(f"{name} rates in {currency} but the partner is invoiced in {invoice_currency}, and "
                         + (f"its fx source '{source}' has no rate for the pair in force on {day}" if source
                            else "it names no fx source"))
    return q


@dataclass(frozen=True)
class _Terms:
    """What the lines of one agreement version, direction, service and currency share."""

    mode: str
    fx: FxQuote | None
    unit: str
    rate_unit: str | None
    stream: str
    netted: bool
    rounding: str


def _terms(agreement: Agreement | None, direction: str, service: str, currency: str, invoice_currency: str,
           fx: FxTable, last_day: date) -> _Terms:
    mode = agreement.rounding.mode if agreement is not None else "half_up"
    unit, rate_unit = quantity_unit(agreement, direction, service)
    stream, netted = route(agreement, direction, service)
    return _Terms(mode, fx_for(fx, agreement, currency, invoice_currency, last_day), unit, rate_unit, stream, netted,
                  rounding_text(invoice_currency, mode))


def traffic_line(g: Group, agreement: Agreement | None, invoice_currency: str, fx: FxTable,
                 last_day: date, terms: dict[tuple[str, str, str, str], _Terms] | None = None) -> DraftLine:
    """One group's line: exact sum -> converted -> rounded once. ``terms``: what the lines of
    an agreement version, direction, service and currency share, worked out once per call of
    :func:`draft_documents` (a cycle has thousands of lines and a few such combinations)."""
    key = (g.agreement_hash, g.direction, g.service, g.currency)
    k = terms.get(key) if terms is not None else None
    if k is None:
        k = _terms(agreement, g.direction, g.service, g.currency, invoice_currency, fx, last_day)
        if terms is not None:
            terms[key] = k
    q = k.fx
    amount = round_line(convert(g.amount, q.rate if q else None), invoice_currency, k.mode)
    rate_text = g.only("rate")
    try:
        rate = Decimal(rate_text) if rate_text else None
    except ArithmeticError:
        rate = None
    destination, band, prefix = g.only("destination"), g.only("band"), g.only("prefix")
    return DraftLine(
        kind="traffic", description=describe(g.direction, g.service, destination, band,
                                             prefix if "prefix" in g.dims else None),
        direction=g.direction, service=g.service, destination=destination, prefix=prefix, band=band,
        quantity=Decimal(g.units), unit=k.unit, rate=rate, rate_unit=k.rate_unit, amount=amount,
        currency=invoice_currency, source_amount=g.amount, source_currency=g.currency, fx=q,
        rounding=k.rounding, agreement_hash=g.agreement_hash, rule=g.only("rule"),
        line_key=g.key, record_count=g.count, first_start=g.first, last_start=g.last, group_key=g.group_key,
        stream=k.stream, netted=k.netted,
    )


def draft_documents(groups: Sequence[Group], adjustments: Sequence[DraftLine], *, plan: Plan,
                    invoice_currency: str, tax_kind: str, tax_rate: Decimal, fx: FxTable,
                    last_day: date) -> Drafts:
    """The cycle's draft invoices (one per stream) and settlement statement (netted lines)."""
    by_hash = {a.source_hash: a for a in plan.agreements}
    terms: dict[tuple[str, str, str, str], _Terms] = {}
    lines = [traffic_line(g, by_hash.get(g.agreement_hash), invoice_currency, fx, last_day, terms) for g in groups]
    lines += list(adjustments)
    by_stream: dict[str, list[DraftLine]] = defaultdict(list)
    netted: list[DraftLine] = []
    for ln in lines:
        if ln.currency != invoice_currency:
            raise CycleError(f"a {ln.currency} line cannot go on a {invoice_currency} invoice")
        (netted if ln.netted else by_stream[ln.stream]).append(ln)
    invoices = []
    for stream in sorted(by_stream):
        # the adjustments of corrections go on a document of their own: a credit note when they
        # give back, a debit note when they add (each referencing the invoices it corrects)
        billed = [ln for ln in by_stream[stream] if ln.kind != "adjustment"]
        adjusted = [ln for ln in by_stream[stream] if ln.kind == "adjustment"]
        for ls, kind in ((billed, "invoice"), (adjusted, None)):
            ls = sorted(ls, key=DraftLine.sort_key)
            if not ls or (kind is None and all(ln.amount == 0 for ln in ls)):
                continue
            subtotal = exact_sum(ln.amount for ln in ls)
            tax = compute_tax(tax_kind, tax_rate, subtotal, invoice_currency)
            rates = {ln.fx.rate_id for ln in ls if ln.fx is not None}
            invoices.append(DraftInvoice(stream, invoice_currency, ls, subtotal, tax, subtotal + tax.amount,
                                         rates.pop() if len(rates) == 1 else None,
                                         kind or ("credit_note" if subtotal < 0 else "debit_note")))
    statement = None
    if netted:
        netted.sort(key=DraftLine.sort_key)
        receivable = exact_sum(inv.subtotal for inv in invoices)
        payable = exact_sum(ln.amount for ln in netted)
        statement = DraftStatement(invoice_currency, netted, receivable, payable, receivable - payable)
    return Drafts(invoices, statement)


def line_json(ln: DraftLine, line_no: int) -> dict[str, Any]:
    """A statement line as JSON values (decimals as exact text)."""
    return {
        "line_no": line_no, "kind": ln.kind, "description": ln.description, "direction": ln.direction,
        "service": ln.service, "destination": ln.destination, "prefix": ln.prefix, "band": ln.band,
        "quantity": str(ln.quantity), "unit": ln.unit, "rate": None if ln.rate is None else str(ln.rate),
        "rate_unit": ln.rate_unit, "amount": str(ln.amount), "currency": ln.currency,
        "source_amount": str(ln.source_amount), "source_currency": ln.source_currency,
        "fx_rate": str(ln.fx.rate) if ln.fx else None, "fx_rate_id": ln.fx.rate_id if ln.fx else None,
        "rounding": ln.rounding, "agreement_hash": ln.agreement_hash, "rule": ln.rule, "line_key": ln.line_key,
        "record_count": ln.record_count, "group_key": ln.group_key, "corrects_line_id": ln.corrects_line_id,
        "adjustment_id": ln.adjustment_id,
        "first_start": ln.first_start.isoformat() if ln.first_start else None,
        "last_start": ln.last_start.isoformat() if ln.last_start else None,
    }
