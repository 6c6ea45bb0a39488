"""What a charge is evaluated against: the cycle, its rated traffic, the inventory, the events.

:class:`ChargeContext` is everything a cycle-level charge may read, as plain immutable data
(no database, no files): the billing layer builds it, the charge types only read it. Its
helpers (:meth:`ChargeContext.line`, :meth:`ChargeContext.measure`...) are what a plugin's
charge type uses too.

Traffic reaches charges summed: :class:`Usage` is the rated traffic of one partner, agreement
version, direction, service and currency in a cycle (records, billed seconds, units, bytes,
the exact sum of the records' rounded amounts, and of their per-record charges).
:func:`usage_from_rated` computes it from the executors' rated tables, chunk by chunk
(:func:`merge_usage` adds chunks up).

**Measures** (``on minutes``, ``cycle.minutes``...), exact: ``minutes`` = billed seconds / 60
of time services; ``messages`` = units of count services; ``volume`` = billed bytes / 1 MB
(1,048,576 bytes) of volume services; ``revenue`` = the records' amounts; ``calls`` = rated
records of time services; ``events`` = units of event records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from icdsl.charges.keys import application_key, correction_key
from icdsl.charges.lines import ChargeError, ChargeLine, exact_text, minor_units, round_money
from icdsl.charges.periods import Days
from icdsl.inventory import InventoryItem
from icdsl.plan.model import KIND_COUNT, KIND_TIME, KIND_VOLUME, Agreement, Charge, Partner

MEASURES = ("minutes", "messages", "volume", "revenue", "calls", "events")
MB = 1 << 20
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Usage:
    """Rated traffic of one (partner, agreement version, direction, service, currency) in a
    cycle. ``kind`` is the service's: ``time``, ``count`` or ``volume``. ``amount`` is the exact
    sum of the records' (rounded) amounts; ``record_charges`` of their surcharges."""

    partner: str
    agreement: str
    agreement_version: int
    direction: str
    service: str
    currency: str
    kind: str
    records: int = 0
    billed_seconds: int = 0
    units: int = 0
    billed_bytes: int = 0
    amount: Decimal = ZERO
    record_charges: Decimal = ZERO

    def measure(self, name: str) -> Fraction:
        if name == "minutes":
            return Fraction(self.billed_seconds, 60) if self.kind == KIND_TIME else Fraction(0)
        if name == "messages":
            return Fraction(self.units) if self.kind == KIND_COUNT else Fraction(0)
        if name == "volume":
            return Fraction(self.billed_bytes, MB) if self.kind == KIND_VOLUME else Fraction(0)
        if name == "revenue":
            return Fraction(self.amount)
        if name == "calls":
            return Fraction(self.records) if self.kind == KIND_TIME else Fraction(0)
        if name == "events":
            return Fraction(0)
        raise ValueError(f"unknown measure '{name}' (known: {', '.join(MEASURES)})")

    def __add__(self, other: Usage) -> Usage:
        return replace(
            self,
            records=self.records + other.records,
            billed_seconds=self.billed_seconds + other.billed_seconds,
            units=self.units + other.units,
            billed_bytes=self.billed_bytes + other.billed_bytes,
            amount=self.amount + other.amount,
            record_charges=self.record_charges + other.record_charges,
        )

    @property
    def group(self) -> tuple[str, str, int, str, str, str]:
        return (self.partner, self.agreement, self.agreement_version, self.direction, self.service, self.currency)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event record (a porting, a SIM activation): its id, event type, local day in the
    partner's time zone, and units (1 unless the record says otherwise)."""

    id: str
    event: str
    day: date
    units: int = 1
    partner: str = ""
    value: str | None = None  # the record's `value` field as written (a percentage charge's transaction value)
    at: int = field(default=0, compare=False)  # its start, microseconds since the epoch (orders a day's transactions)


@dataclass(frozen=True, slots=True)
class CycleUsage:
    """An earlier cycle of the same agreement: its days, its usage, its event units and the
    lines it billed. Period-to-date charges (tiers ``per year``, commitments ``per quarter``...)
    add the earlier cycles of their measuring period to the current one."""

    days: Days
    usage: tuple[Usage, ...] = ()
    events: int = 0
    lines: tuple[ChargeLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A refund, credit or adjustment recorded against traffic in the cycle (``net`` revenue
    shares deduct them): positive ``amount`` is money given back.

    ``kind``: ``refund`` (a refund record: ``id`` is its id, ``refers_to`` the purchase it
    refunds, ``day`` its local day), ``adjustment`` (a correction of an earlier cycle's traffic
    billed on this cycle) or ``credit``. ``agreement`` / ``agreement_version`` (when known:
    the version that rated it) and ``partner`` limit it to that agreement version and partner;
    left empty, it counts for any (a ``day`` then picks the version in force that day)."""

    direction: str
    service: str
    amount: Decimal
    currency: str
    description: str = ""
    kind: str = "credit"
    id: str = ""
    refers_to: str = ""
    day: date | None = None
    partner: str = ""
    agreement: str = ""
    agreement_version: int = 0


@dataclass(frozen=True, slots=True)
class FxRate:
    """An exchange rate given to charges: 1 ``base`` = ``rate`` ``quote``, the rate in force on
    ``day`` (``text`` says where it comes from, for the audit trail)."""

    base: str
    quote: str
    rate: Decimal
    day: date
    text: str = ""


#: the exchange rates of the agreement's ``fx`` source: (base, quote, day) -> the rate in force
#: that day, or None when the source has none
Rates = Callable[[str, str, date], "FxRate | None"]


def in_scope(scope: tuple[tuple[str, str], ...], direction: str, service: str) -> bool:
    return not scope or (direction, service) in scope


def scope_text(scope: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{d} {s}" for d, s in scope) if scope else "all traffic"


class CycleTotals:
    """The ``cycle.*`` quantities of conditions: per (partner, agreement name), the totals of
    the cycle's rated traffic (all versions) and event units."""

    def __init__(self, values: Mapping[tuple[str, str], Mapping[str, Fraction]] | None = None):
        self._v: dict[tuple[str, str], dict[str, Fraction]] = {k: dict(v) for k, v in (values or {}).items()}

    @classmethod
    def from_usage(cls, usage: Iterable[Usage], events: Mapping[str, int] | None = None,
                   agreements: Mapping[str, Iterable[str]] | None = None) -> CycleTotals:
        """Totals of ``usage``; ``events``: event units per partner, counted for every
        agreement of the partner (``agreements``: partner -> agreement names)."""
        out: dict[tuple[str, str], dict[str, Fraction]] = {}
        for u in usage:
            acc = out.setdefault((u.partner, u.agreement), {m: Fraction(0) for m in MEASURES})
            for m in MEASURES:
                acc[m] += u.measure(m)
        for partner, n in (events or {}).items():
            names = set((agreements or {}).get(partner, ())) | {a for p, a in out if p == partner}
            for name in names:
                acc = out.setdefault((partner, name), {m: Fraction(0) for m in MEASURES})
                acc["events"] += n
        return cls(out)

    def get(self, partner: Any, agreement: str, name: str) -> Fraction | None:
        got = self._v.get((str(partner), agreement))
        if got is None:
            return None
        return got.get(name)

    def __bool__(self) -> bool:
        return bool(self._v)


def agreement_days(agreement: Agreement, terminated_on: date | None = None) -> Days:
    """The local days an agreement version is in force: ``effective_from`` .. the day after
    ``effective_to`` (or open), cut at ``terminated_on`` (the first day no longer in force)."""
    end = agreement.effective_to + timedelta(days=1) if agreement.effective_to else None
    if terminated_on is not None and (end is None or terminated_on < end):
        end = max(terminated_on, agreement.effective_from)
    return Days(agreement.effective_from, end)


@dataclass(frozen=True)
class ChargeContext:
    """Everything a cycle-level charge reads. Built by the billing layer per partner, cycle and
    agreement version; see ``docs/charges.md`` ("What billing passes").

    - ``cycle``: the cycle's local days ``[start, end)`` in the partner's time zone;
      ``cycle_label`` its name (``2026-03``), used in keys;
    - ``usage``: the cycle's rated traffic (any agreement: each charge reads its own version's);
    - ``inventory``: the partner's items (other partners' items are ignored);
    - ``events``: the cycle's event records of the partner;
    - ``history``: earlier cycles of this agreement in the current year or contract year;
    - ``billed``: application key -> amount already billed on *other* cycles;
    - ``adjustments``: refunds and credits against the cycle's traffic (``net`` shares);
    - ``versions``: all versions of the agreement (default: this one), for charges due once per
      agreement and for ``prorate none`` across a version change;
    - ``terminated_on``: the agreement was terminated early; first day no longer in force
      (default: the day after the last day of a version ended by ``ends vN on DATE``);
    - ``reopen_from``: charge periods still running on or after this day are re-examined for
      changes (default: the cycle's start);
    - ``lines``: the lines of earlier stages of this cycle (filled in by :func:`evaluate_cycle`);
    - ``fx``: the exchange rates of the agreement's ``fx`` source (:data:`Rates`), for charges
      that count amounts in other currencies than their own (commitments, tiers and discounts
      on revenue, revenue shares): see :meth:`total_in`.
    """

    agreement: Agreement
    partner: Partner
    cycle: Days
    cycle_label: str = ""
    usage: tuple[Usage, ...] = ()
    inventory: tuple[InventoryItem, ...] = ()
    events: tuple[EventRecord, ...] = ()
    history: tuple[CycleUsage, ...] = ()
    billed: Mapping[str, Decimal] = field(default_factory=dict)
    adjustments: tuple[Adjustment, ...] = ()
    versions: tuple[Agreement, ...] = ()
    terminated_on: date | None = None
    reopen_from: date | None = None
    lines: tuple[ChargeLine, ...] = ()
    fx: Rates | None = None

    def __post_init__(self) -> None:
        if self.cycle.end is None:
            raise ValueError("a cycle must end")
        if not self.cycle_label:
            object.__setattr__(self, "cycle_label", self.cycle.label)
        if not self.versions:
            object.__setattr__(self, "versions", (self.agreement,))
        if self.terminated_on is None and self.agreement.terminated_on is not None:
            # ended early by a later version (`ends vN on DATE`): its termination fees are due
            object.__setattr__(self, "terminated_on", self.agreement.terminated_on)

    # ------------------------------------------------------------------ days

    @property
    def days(self) -> Days:
        """This version's days in force (cut at an early termination)."""
        return agreement_days(self.agreement, self.terminated_on)

    @property
    def all_days(self) -> Days:
        """The days any version of the agreement is in force (versions never overlap and follow
        each other)."""
        vs = [agreement_days(v, self.terminated_on) for v in self.versions]
        start = min(v.start for v in vs)
        end = None if any(v.end is None for v in vs) else max(v.end for v in vs)  # type: ignore[type-var]
        return Days(start, end)

    def version_on(self, day: date) -> Agreement | None:
        for v in self.versions:
            if day in agreement_days(v, self.terminated_on):
                return v
        return None

    @property
    def active_in_cycle(self) -> Days | None:
        return self.days.intersect(self.cycle)

    @property
    def mode(self) -> str:
        return self.agreement.rounding.mode

    # ------------------------------------------------------------------ traffic

    def usage_of(self, scope: tuple[tuple[str, str], ...] = (), *, rows: Iterable[Usage] | None = None) -> list[Usage]:
        """This version's usage rows (of ``rows``, default the cycle's) within ``scope``."""
        ag = self.agreement
        return [
            u for u in (self.usage if rows is None else rows)
            if u.agreement == ag.name and u.agreement_version == ag.version
            and in_scope(scope, u.direction, u.service)
            and u.partner == self.partner.code
        ]

    def event_units(self, name: str | None = None) -> int:
        return sum(e.units for e in self.events
                   if (name is None or e.event == name) and (not e.partner or e.partner == self.partner.code)
                   and e.day in self.days)

    def measure(self, name: str, scope: tuple[tuple[str, str], ...] = (), *, rows: Iterable[Usage] | None = None,
                events: int | None = None) -> Fraction:
        """An exact measure of this version's traffic in ``scope`` (the cycle's by default)."""
        if name == "events":
            return Fraction(self.event_units() if events is None else events)
        return sum((u.measure(name) for u in self.usage_of(scope, rows=rows)), Fraction(0))

    def history_in(self, period: Days) -> list[CycleUsage]:
        """Earlier cycles whose last day falls in ``period`` (a cycle's usage counts in the
        measuring period in which the cycle ends)."""
        return [h for h in self.history
                if h.days.last is not None and h.days.last in period and h.days.start < self.cycle.start]

    # ------------------------------------------------------------------ currencies

    def rate(self, charge: Charge, base: str, quote: str, day: date) -> FxRate:
        """The rate converting ``base`` amounts into ``quote`` for ``charge``, in force on ``day``
        (from the agreement's ``fx`` source); a :class:`ChargeError` at the charge's rule when
        there is none."""
        ag = self.agreement
        what = f"'{charge.name}' counts amounts in {base} in its currency {quote}"
        if not ag.fx:
            raise ChargeError(f"{what}, but agreement \"{ag.name}\" v{ag.version} names no fx source: add 'fx NAME' "
                              f"to the agreement (an fx block with a {quote}/{base} rate), or price in {quote}",
                              charge.span)
        got = self.fx(base, quote, day) if self.fx is not None else None
        if got is None:
            raise ChargeError(f"{what}, but the fx source '{ag.fx}' has no rate between {base} and {quote} in force on "
                              f"{day}" + ("" if self.fx is not None else " (no exchange rates were given)")
                              + f": add one ('{quote}/{base} RATE from DATE')", charge.span)
        return got

    def total_in(self, charge: Charge, amounts: Iterable[tuple[date, str, Decimal | Fraction]], into: str
                 ) -> tuple[Fraction, list[dict[str, str]]]:
        """The exact sum of ``amounts`` (each: the last day of the cycle it belongs to, its
        currency, the amount) in currency ``into``. An amount in another currency is converted
        at the agreement's fx rate in force on that day, the cycle's last day (as billing
        converts the cycle's traffic lines), exactly: nothing is rounded here. Returns the total
        and the conversions made (for the line's details)."""
        acc: dict[tuple[date, str], Fraction] = {}
        for day, cur, amount in amounts:
            acc[(day, cur)] = acc.get((day, cur), Fraction(0)) + Fraction(amount)
        total = Fraction(0)
        trail = []
        for (day, cur), amount in sorted(acc.items()):
            if cur == into:
                total += amount
                continue
            if amount == 0:
                continue
            r = self.rate(charge, cur, into, day)
            converted = amount * Fraction(r.rate)
            total += converted
            trail.append({"amount": exact_text(amount), "currency": cur, "rate": str(r.rate), "on": day.isoformat(),
                          "converted": exact_text(converted), "into": into, "source": r.text})
        return total, trail

    @property
    def last_day(self) -> date:
        """The cycle's last day (the day whose fx rates convert its amounts)."""
        assert self.cycle.last is not None
        return self.cycle.last

    def adjustments_of(self, scope: tuple[tuple[str, str], ...] = ()) -> list[Adjustment]:
        """The refunds, credits and adjustments of the cycle against this version's traffic in
        ``scope`` (see :class:`Adjustment`)."""
        ag = self.agreement
        out = []
        for a in self.adjustments:
            if a.partner and a.partner != self.partner.code:
                continue
            if not in_scope(scope, a.direction, a.service):
                continue
            if a.agreement and (a.agreement != ag.name or (a.agreement_version and a.agreement_version != ag.version)):
                continue
            if not a.agreement and a.day is not None and a.day not in self.days:
                continue
            out.append(a)
        return out

    # ------------------------------------------------------------------ money and lines

    def round(self, value: Decimal | Fraction | int, currency: str | None = None) -> Decimal:
        return round_money(value, currency or self.agreement.currency, self.mode)

    def key(self, charge: Charge, subject: str, period: str = "-", *, any_version: bool = False) -> str:
        ag = self.agreement
        return application_key(ag.name, None if any_version else ag.version, charge.name, subject, period)

    def line(self, charge: Charge, *, description: str, exact: Decimal | Fraction | int, currency: str,
             quantity: Decimal | int = 1, unit: str = "", unit_price: Decimal | None = None,
             application: str | None = None, key: str | None = None,
             applications: tuple[str, ...] | None = None, dimensions: dict[str, Any] | None = None,
             details: dict[str, Any] | None = None, stage: str = "charge") -> ChargeLine:
        """A line for ``charge``: ``exact`` rounded once to the currency's minor unit with the
        agreement's mode; the application key (``application``) is its key unless ``key`` is
        given. Options of the charge (``stream``, ``tax``) are copied into the dimensions."""
        ag = self.agreement
        amount = self.round(exact, currency)
        dims = {k: v for k, v in (dimensions or {}).items()}
        for opt in ("stream", "tax"):
            v = charge.param(f"option:{opt}")
            if v is not None:
                dims.setdefault(opt, v)
        det = dict(details or {})
        det.setdefault("exact", exact_text(exact))
        det.setdefault("rounding", f"{self.mode} to {minor_units(currency)} decimals")
        apps = applications if applications is not None else ((application,) if application else ())
        return ChargeLine(
            kind=charge.kind,
            charge_name=charge.name,
            description=description,
            quantity=Decimal(quantity),
            unit=unit,
            unit_price=unit_price,
            amount=amount,
            currency=currency,
            dimensions=dims,
            rule_span=charge.span,
            details=det,
            key=key or application or "",
            applications=apps,
            stage=stage,
            agreement=ag.name,
            agreement_version=ag.version,
            agreement_hash=ag.source_hash,
            scope=charge.applies_to,
            exact=exact_text(exact),
        )

    def settle(self, line: ChargeLine) -> ChargeLine | None:
        """Apply ``billed`` to a single-application line: None if it is billed already with the
        same amount, a correction line (the difference) if the amount changed, else the line."""
        if len(line.applications) != 1:
            return line
        app = line.applications[0]
        before = self.billed.get(app)
        if before is None:
            return line
        delta = line.amount - before
        if delta == 0:
            return None
        det = dict(line.details)
        det.update({"billed_before": str(before), "now": str(line.amount), "correction": str(delta)})
        return replace(
            line,
            description=f"correction of {line.description}: {before} billed, {line.amount} due",
            amount=delta,
            key=correction_key(app, self.cycle_label),
            applications=(),
            corrects=app,
            details=det,
            exact=str(delta),
        )


# --------------------------------------------------------------------------- from rated tables


def usage_from_rated(plan: Any, rated: Any, record_charges: Any = None) -> list[Usage]:
    """:class:`Usage` rows of a rated table (``icdsl.rating.batch`` output, or the cycle's rated
    Parquet), plus the per-record charges table of the same records if given. Call it per chunk
    and add the chunks up with :func:`merge_usage`. The records are grouped on columns
    (:mod:`icdsl.charges.groups`: exact int64 sums; Arrow's decimal sums when the amounts
    might not fit)."""
    # lazy: pyarrow and NumPy only when charges run on columns (the checker loads charge types without them)
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from icdsl.charges.groups import Groups, codes, exact_ints, unscaled  # lazy: built on pyarrow and NumPy

    if rated.num_rows == 0:
        return []
    keys = ["partner", "agreement", "agreement_version", "direction", "service", "currency"]
    coded = [codes(rated.column(k)) for k in keys]
    grouped = Groups(coded, rated.num_rows)
    values = [grouped.values(c).to_pylist() for c in coded]
    billed = exact_ints(rated.column("billed_units"))
    billed_sums = (grouped.sum(billed).tolist() if billed is not None
                   else _sums_by(pa, grouped, pc.cast(rated.column("billed_units"), pa.decimal128(38, 0))))
    amount = rated.column("amount")
    low = unscaled(amount)
    if low is not None:
        scale = amount.type.scale
        amounts = [Decimal(a).scaleb(-scale) for a in grouped.sum(low).tolist()]
    else:
        amounts = _sums_by(pa, grouped, amount)
    kinds: dict[tuple[str, int, str, str], str] = {}
    for ag in plan.agreements:
        for sp in ag.services:
            kinds[(ag.name, ag.version, sp.direction, sp.service)] = sp.kind
    extra: dict[tuple, Decimal] = {}
    if record_charges is not None and record_charges.num_rows:
        rc = pa.table({k: pc.cast(record_charges.column(k), pa.string()) if k != "agreement_version"
                       else record_charges.column(k) for k in keys} | {"amount": record_charges.column("amount")})
        rg = rc.group_by(keys, use_threads=False).aggregate([("amount", "sum")])
        for row in rg.to_pylist():
            extra[tuple(row[k] for k in keys)] = row["amount_sum"]
    out = []
    counts = np.asarray(grouped.counts).tolist()
    for i in range(grouped.n):
        partner, agreement, version, direction, service, currency = (v[i] for v in values)
        group = (partner, agreement, version, direction, service, currency)
        kind = kinds.get((agreement, version, direction, service), KIND_COUNT)
        billed_i = int(billed_sums[i] or 0)
        out.append(Usage(
            partner, agreement, int(version), direction, service, currency, kind, records=int(counts[i]),
            billed_seconds=billed_i if kind == KIND_TIME else 0,
            units=billed_i if kind == KIND_COUNT else 0,
            billed_bytes=billed_i if kind == KIND_VOLUME else 0,
            amount=Decimal(amounts[i]), record_charges=Decimal(extra.pop(group, ZERO)),
        ))
    return out


def _sums_by(pa: Any, grouped: Any, values: Any) -> list[Any]:
    """Exact sums by group of a decimal column (Arrow's decimal128 sums), in group order."""
    t = pa.table({"g": pa.array(grouped.index), "v": values})
    g = t.group_by("g", use_threads=False).aggregate([("v", "sum")])
    by_group = dict(zip(g.column("g").to_pylist(), g.column("v_sum").to_pylist(), strict=True))
    return [by_group.get(i) for i in range(grouped.n)]


def merge_usage(*chunks: Iterable[Usage]) -> list[Usage]:
    """Add up usage rows of the same group (chunks of one cycle)."""
    acc: dict[tuple, Usage] = {}
    for chunk in chunks:
        for u in chunk:
            acc[u.group] = acc[u.group] + u if u.group in acc else u
    return [acc[k] for k in sorted(acc, key=lambda g: tuple(str(x) for x in g))]


def event_or_service(table: Any) -> Any:
    """Each record's event type: its ``event`` field, or where that is empty or absent its
    ``service`` (a CSV's empty cell reads as an empty text, not a null)."""
    # lazy: pyarrow only when charges run on columns (the checker loads charge types without it)
    import pyarrow as pa
    import pyarrow.compute as pc

    which = pc.cast(table.column("service"), pa.string()) if "service" in table.column_names else \
        pa.nulls(table.num_rows, pa.string())
    if "event" in table.column_names:
        ev = pc.cast(table.column("event"), pa.string())
        ev = pc.if_else(pc.equal(pc.utf8_trim_whitespace(ev), ""), pa.scalar(None, pa.string()), ev)
        which = pc.coalesce(ev, which)
    return which


def event_values(table: Any) -> list[str | None]:
    """The ``value`` field of event records, as written (None where absent or empty)."""
    if "value" not in table.column_names:
        return [None] * table.num_rows
    return [None if v is None or str(v).strip() == "" else str(v).strip() for v in table.column("value").to_pylist()]


def events_from_records(table: Any, names: Iterable[str], timezone: str = "UTC", partner: str | None = None
                        ) -> list[EventRecord]:
    """Event records in a records table: rows whose ``event`` field (where it is empty or absent:
    whose ``service``) is one of ``names``; their local day in ``timezone``; ``units`` (empty: 1)."""
    # lazy: pyarrow only when charges run on columns (the checker loads charge types without it)
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(names)
    if not names or table.num_rows == 0:
        return []
    which = event_or_service(table)
    mask = pc.fill_null(pc.is_in(which, value_set=pa.array(names, pa.string())), False)
    if partner is not None and "partner" in table.column_names:
        mask = pc.and_(mask, pc.fill_null(pc.equal(pc.cast(table.column("partner"), pa.string()), partner), False))
    sub = table.filter(mask)
    tz = ZoneInfo(timezone)
    out = []
    ids = sub.column("id").to_pylist() if "id" in sub.column_names else [None] * sub.num_rows
    units = sub.column("units").to_pylist() if "units" in sub.column_names else [None] * sub.num_rows
    parts = sub.column("partner").to_pylist() if "partner" in sub.column_names else [""] * sub.num_rows
    values = event_values(sub)
    for i, (ev, start) in enumerate(zip(which.filter(mask).to_pylist(), sub.column("start").to_pylist(),
                                        strict=True)):
        day = start.astimezone(tz).date() if isinstance(start, datetime) else start
        at = int(start.timestamp() * 1_000_000) if isinstance(start, datetime) else 0
        out.append(EventRecord(str(ids[i]), ev, day, 1 if units[i] is None else int(units[i]), parts[i] or "",
                               values[i], at))
    return out
