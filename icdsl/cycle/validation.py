"""Pre-invoice validation: what a rated cycle is checked for before its invoices are made.

A cycle is rated, then every validator looks at it (:class:`ValidationContext`) and returns
:class:`Finding` s: plain data (code, severity, message, count, sample record ids, details), so
that the command line, the TUI and a report can all show them. They are stored
(``validation_findings``) with the run (``attempt``) of the cycle that produced them.

- an **error** blocks invoicing: the cycle stays ``rated``, with its findings; fix the cause
  (load corrected rules, ingest the missing traffic) and run the cycle again, or accept the
  finding by its code (``icdsl cycle run ... --accept CODE``: recorded, and in the audit log);
- a **warning** is listed and invoicing goes on; **info** is for the record.

Built-in validators (:data:`BUILTIN`), each ``validate(context) -> list[Finding]``:

=====================  =======================================================================
``rating_rejects``     records rating refused: ``missing_rate`` (the destination has no price for
                       the band or date), ``invalid_destination`` (no destination matches the
                       called number), ``outside_agreement`` (no agreement, or none in force:
                       traffic outside any agreement), ``invalid_record``, ``zero_duration``,
                       ``amount_overflow``
``rating_values``      rated records with an empty rate, amount, currency, agreement or rule
                       (``empty_rating_values``), a prefix without a destination name
                       (``unnamed_destination``), a zero amount for billed units (``zero_amount``)
``traffic_profile``    days of the period without traffic (``traffic_gap``) or with far less
                       than usual (``traffic_drop``) from a partner that sends traffic every day,
                       compared with its recent daily profile (intake statistics)
``currencies``         amounts that cannot be converted into the invoice currency
                       (``no_fx_rate``), unknown currency codes (``unknown_currency``)
=====================  =======================================================================

Whether a rejects finding is an error depends on the share of the cycle's records it concerns
(:class:`Policy`: ``missing_rate`` and ``invalid_destination`` above 1 %, ``outside_agreement``,
``empty_rating_values``, ``amount_overflow`` and ``no_fx_rate`` at the first record).

More validators: :func:`register` (a plugin hook can feed it); a validator that raises becomes
an error finding naming it (a check that could not run must not let an invoice through).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from statistics import median
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from icdsl.cycle.amounts import is_currency
from icdsl.cycle.periods import Period
from icdsl.lang.origins import REFILE_FLAG
from icdsl.plan.model import Plan

SEVERITIES = ("error", "warning", "info")
ACCEPT_ALL = "all"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing validation found. ``count``: records (or days) concerned; ``samples``: a few
    record ids to look at (``icdsl explain``, ``icdsl trace``); ``details``: the validator's data."""

    code: str
    severity: str
    message: str
    count: int | None = None
    samples: tuple[str, ...] = ()
    details: Mapping[str, Any] | None = None
    validator: str = ""
    accepted: bool = False

    @property
    def blocking(self) -> bool:
        return self.severity == "error" and not self.accepted

    def __str__(self) -> str:
        sev = "error (accepted)" if self.severity == "error" and self.accepted else self.severity
        text = f"{sev}[{self.code}]: {self.message}"
        if self.samples:
            text += f" (e.g. {', '.join(self.samples)})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message, "count": self.count,
                "samples": list(self.samples), "details": dict(self.details) if self.details else None,
                "validator": self.validator, "accepted": self.accepted}


@dataclass(frozen=True, slots=True)
class Policy:
    """Thresholds of the built-in validators.

    ``error_share``: the share of the cycle's records (0.01 = 1 %) above which a finding of that
    code is an error rather than a warning (0: any record). ``traffic_*``: a partner "normally
    sends traffic" when it did on at least ``traffic_active_share`` of the reference days with a
    median of at least ``traffic_min_daily`` records; the reference is the ``traffic_window``
    days before the period (intake statistics), or the period itself when fewer than
    ``traffic_min_history`` of those days had traffic. A day under ``traffic_drop_share`` of the
    median is a drop.
    """

    error_share: Mapping[str, Decimal] = field(default_factory=lambda: {
        "missing_rate": Decimal("0.01"),
        "invalid_destination": Decimal("0.01"),
        "invalid_record": Decimal("0.01"),
        "outside_agreement": Decimal(0),
        "amount_overflow": Decimal(0),
    })
    samples: int = 5
    traffic_window: int = 28
    traffic_min_history: int = 7
    traffic_min_daily: int = 20
    traffic_active_share: Decimal = Decimal("0.75")
    traffic_drop_share: Decimal = Decimal("0.10")


@dataclass(frozen=True, slots=True)
class LineGroup:
    """The rated records of one future invoice line (before conversion and rounding)."""

    key: int
    agreement_hash: str
    direction: str
    service: str
    currency: str
    dims: Mapping[str, str]
    count: int
    units: int
    amount: Decimal  # exact, in ``currency``


@dataclass
class ValidationContext:
    """What a validator may know about the cycle being validated."""

    partner: str
    partner_name: str
    timezone: str
    invoice_currency: str
    period: Period
    plan: Plan
    records_in: int
    rated_count: int
    rejected_count: int
    rejects: pa.Table  # rating rejects: id, reason, detail, partner, direction, service, b_number, start...
    daily: dict[date, int]  # records of the cycle (rated + rejected) by local day
    history: dict[date, int]  # the partner's passed records by local day before the period
    last_data_day: date | None  # the latest local day for which any traffic was ingested
    lines: list[LineGroup]
    fx: Any  # icdsl.billing.fx.FxTable
    policy: Policy = field(default_factory=Policy)
    read_rated: Callable[[Sequence[str]], pa.Table] | None = None
    read_rated_batches: Callable[[Sequence[str]], Iterable[pa.Table]] | None = None
    # RatingValues' checks made while the records were rated (:class:`RatedValuesScan`), or None
    rated_values: Any = None

    def rated(self, columns: Sequence[str]) -> pa.Table:
        """Columns of the cycle's rated records (read from its Parquet file), all at once."""
        if self.read_rated is None:
            return pa.table({c: pa.array([], pa.string()) for c in columns})
        return self.read_rated(columns)

    def rated_batches(self, columns: Sequence[str]) -> Iterator[pa.Table]:
        """Columns of the cycle's rated records, a batch at a time (bounded memory)."""
        if self.read_rated_batches is not None:
            yield from self.read_rated_batches(columns)
        else:
            yield self.rated(columns)

    def share(self, n: int) -> Decimal:
        return Decimal(n) / Decimal(self.records_in) if self.records_in else Decimal(0)

    def severity_for(self, code: str, n: int, default: str = "warning") -> str:
        limit = self.policy.error_share.get(code)
        if limit is None:
            return default
        return "error" if self.share(n) > limit else "warning"

    @property
    def last_day(self) -> date:
        return self.period.local_end - timedelta(days=1)


@runtime_checkable
class Validator(Protocol):
    """A check: a unique ``name``, a one-line ``description``, and ``validate(context)``."""

    name: str
    description: str

    def validate(self, context: ValidationContext) -> list[Finding]: ...


def _pct(x: Decimal) -> str:
    return f"{(x * 100).quantize(Decimal('0.01'))}%"


def _samples(table: pa.Table, limit: int) -> tuple[str, ...]:
    if not table.num_rows:
        return ()
    return tuple(str(x) for x in table.column("id").slice(0, limit).to_pylist())


# --------------------------------------------------------------------------- built-ins


class RatingRejects:
    name = "rating_rejects"
    description = "records rating refused: no rate, invalid destinations, traffic outside any agreement"

    GROUPS = {
        "outside_agreement": ("no_agreement", "outside_agreement_period", "unknown_partner"),
        "invalid_record": ("missing_field", "negative_duration", "bad_volume", "bad_units"),
        "zero_duration": ("zero_duration",),
        "refiled": ("refiled",),
        "amount_overflow": ("amount_overflow",),
    }
    WHAT = {
        "missing_rate": "record(s) without a rate (the destination has no price for the band or date)",
        "invalid_destination": "record(s) to an invalid destination (no destination matches the called number)",
        "outside_agreement": "record(s) outside any agreement",
        "invalid_record": "record(s) with fields rating cannot use",
        "zero_duration": "zero-second call(s) rejected by the zero_duration policy",
        "refiled": "refiled record(s) rejected: calling number outside the route's declared origin",
        "amount_overflow": "record(s) whose amount does not fit the amount column",
    }

    def validate(self, context: ValidationContext) -> list[Finding]:
        rj = context.rejects
        if not rj.num_rows:
            return []
        reason = rj.column("reason")
        detail = pc.fill_null(rj.column("detail"), "")
        out = []
        no_rate = pc.equal(reason, "no_rate")
        no_dest = pc.and_(no_rate, pc.starts_with(detail, "no destination matches"))
        groups: dict[str, pa.Array] = {
            "missing_rate": pc.and_(no_rate, pc.invert(no_dest)),
            "invalid_destination": no_dest,
        }
        for code, reasons in self.GROUPS.items():
            groups[code] = pc.is_in(reason, value_set=pa.array(reasons, pa.string()))
        for code, mask in groups.items():
            sub = rj.filter(mask)
            n = sub.num_rows
            if not n:
                continue
            severity = "info" if code == "zero_duration" else context.severity_for(code, n)
            share = context.share(n)
            details: dict[str, Any] = {"share": str(share), "by_reason": _counts(sub.column("reason"))}
            limit = context.policy.error_share.get(code)
            if limit is not None:
                details["error_above_share"] = str(limit)
            where = ""
            if code in ("invalid_destination", "missing_rate") and "b_number" in sub.column_names:
                heads = pc.utf8_slice_codeunits(pc.fill_null(pc.cast(sub.column("b_number"), pa.string()), ""), 0, 4)
                top = sorted(_counts(heads).items(), key=lambda kv: (-kv[1], kv[0]))[:5]
                details["top_number_prefixes"] = dict(top)
                where = "; numbers starting " + ", ".join(f"{k}.. ({v})" for k, v in top)
            if code == "outside_agreement":
                svc = pc.binary_join_element_wise(pc.cast(sub.column("direction"), pa.string()),
                                                  pc.cast(sub.column("service"), pa.string()), " ")
                details["services"] = _counts(svc)
                where = "; " + ", ".join(f"{k} ({v})" for k, v in sorted(details["services"].items()))
            out.append(Finding(
                code, severity,
                f"{n} {self.WHAT[code]}, {_pct(share)} of {context.records_in}{where}",
                n, _samples(sub, context.policy.samples), details))
        return out


def _counts(arr: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    vc = pc.value_counts(arr)
    return {str(k): int(v) for k, v in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(),
                                            strict=True)}


def refile_flags(record_charges: pa.Table | None, limit: int = 5) -> list[Finding]:
    """``refile_flagged`` (info): the records a ``refile origin ZONE flag`` marked (its zero
    surcharge ``Refile flag (origin outside ZONE)`` in the record charges), one finding per
    label, with their count and a few ids to look at: rated, but to be reviewed."""
    if record_charges is None or not record_charges.num_rows:
        return []
    charge = pc.cast(record_charges.column("charge"), pa.string())
    flagged = record_charges.filter(pc.starts_with(charge, REFILE_FLAG + " ("))
    out = []
    for label in sorted(set(pc.cast(flagged.column("charge"), pa.string()).to_pylist())):
        sub = flagged.filter(pc.equal(pc.cast(flagged.column("charge"), pa.string()), label))
        out.append(Finding("refile_flagged", "info",
                           f"{sub.num_rows} record(s) rated but flagged as refiled: {label}",
                           sub.num_rows, _samples(sub, limit), {"charge": label}, "refile"))
    return out


class RatingValues:
    name = "rating_values"
    description = "rated records with empty rating values (rate, amount, currency, agreement, rule)"

    COLUMNS = ("id", "rate", "amount", "currency", "agreement_hash", "rule", "billed_units", "prefix", "destination")
    REQUIRED = ("rate", "amount", "currency", "agreement_hash", "rule", "billed_units")

    def validate(self, context: ValidationContext) -> list[Finding]:
        if not context.rated_count:
            return []
        scan = context.rated_values
        if scan is None:  # not seen while rating: the rated file, a batch at a time (bounded memory)
            scan = RatedValuesScan(context.policy.samples)
            for t in context.rated_batches(self.COLUMNS):
                scan.add(t)
        return scan.findings()


class RatedValuesScan:
    """The checks of :class:`RatingValues` over rated records given a table at a time, in the
    order of the rated file: the cycle engine shows it every rated chunk as it is written
    (``ValidationContext.rated_values``), so that validation does not read the file again.
    Text columns may be dictionary-encoded (the batch executor's) or plain (the file's): the
    emptiness of a dictionary column is decided on its values, then spread by its indices."""

    def __init__(self, samples: int = 5):
        self.bad = _Found(samples)
        self.unnamed = _Found(samples)
        self.zero = _Found(samples)
        self.which = dict.fromkeys(RatingValues.REQUIRED, 0)
        self.prefixes: dict[str, int] = {}

    def add(self, t: pa.Table) -> None:
        if not t.num_rows:
            return
        masks = {name: m for name in RatingValues.REQUIRED if (m := _empty_where(t.column(name))) is not None}
        if masks:
            any_empty = None
            for m in masks.values():
                any_empty = m if any_empty is None else pc.or_(any_empty, m)
            if self.bad.add(t.filter(any_empty)):
                for k, v in masks.items():
                    self.which[k] += int(pc.sum(pc.cast(v, pa.int64())).as_py() or 0)
        no_name = _empty_where(t.column("destination"))
        if no_name is not None:
            named = pc.and_(pc.invert(_empty(t.column("prefix"))), no_name)
            if pc.any(named).as_py():
                sub = t.filter(named)
                if self.unnamed.add(sub):
                    for k, v in _counts(sub.column("prefix")).items():
                        self.prefixes[k] = self.prefixes.get(k, 0) + v
        amount = t.column("amount")
        nothing = (pa.scalar(Decimal(0), amount.type) if pa.types.is_decimal(amount.type)
                   else pa.scalar(0).cast(amount.type))
        zero = pc.and_(pc.fill_null(pc.equal(amount, nothing), False),
                       pc.fill_null(pc.greater(t.column("billed_units"), 0), False))
        if pc.any(zero).as_py():
            self.zero.add(t.filter(zero))

    def findings(self) -> list[Finding]:
        out = []
        bad, unnamed, zero = self.bad, self.unnamed, self.zero
        if bad.n:
            which = {k: v for k, v in self.which.items() if v}
            out.append(Finding(
                "empty_rating_values", "error",
                f"{bad.n} rated record(s) with empty values: " + ", ".join(f"{k} ({v})" for k, v in which.items()),
                bad.n, bad.samples, {"columns": which}))
        if unnamed.n:
            out.append(Finding(
                "unnamed_destination", "warning",
                f"{unnamed.n} record(s) rated at prefixes without a destination name: "
                + ", ".join(sorted(self.prefixes)[:10]),
                unnamed.n, unnamed.samples, {"prefixes": self.prefixes}))
        if zero.n:
            out.append(Finding(
                "zero_amount", "info", f"{zero.n} record(s) billed units at a zero amount (free destinations?)",
                zero.n, zero.samples))
        return out


def scans_rated(chosen: Iterable[Any] | None) -> bool:
    """Whether the validators that will run (None: :func:`validators`) include
    :class:`RatingValues`, whose checks the engine then makes while rating."""
    return any(isinstance(v, RatingValues) for v in (validators() if chosen is None else chosen))


def _empty_where(col: pa.ChunkedArray | pa.Array) -> pa.Array | None:
    """:func:`_empty` of a column, or None when no value is empty (known from a dictionary's
    values and null count without looking at every record)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type) and not arr.null_count and not pc.any(_empty(arr.dictionary)).as_py():
        return None
    if not pa.types.is_dictionary(arr.type) and not arr.null_count and not (
            pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None  # a number or an amount is empty only when null
    mask = _empty(arr)
    return mask if pc.any(mask).as_py() else None


def _empty(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Whether each value is empty: null, or a text of white space only (decided once per
    distinct value of a dictionary column)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type) and (pa.types.is_string(col.type.value_type)
                                             or pa.types.is_large_string(col.type.value_type)):
        by_value = _empty(col.dictionary)
        return pc.fill_null(by_value.take(col.indices), True)  # a null index: a null value
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        # Kleene or: a null text is empty (plain or_ gives null for it, and the filter dropped it)
        return pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_trim_whitespace(col), ""))
    return pc.is_null(col)


class _Found:
    """Records found over several batches: how many, and the first few ids."""

    def __init__(self, limit: int):
        self.limit = limit
        self.n = 0
        self.samples: tuple[str, ...] = ()

    def add(self, table: pa.Table) -> bool:
        if not table.num_rows:
            return False
        self.n += table.num_rows
        if len(self.samples) < self.limit:
            self.samples += _samples(table, self.limit - len(self.samples))
        return True


class TrafficProfile:
    name = "traffic_profile"
    description = "days without traffic, or with far less than usual, from a partner that sends it every day"

    def validate(self, context: ValidationContext) -> list[Finding]:
        pol = context.policy
        start = context.period.local_start
        window = {start - timedelta(days=i): context.history.get(start - timedelta(days=i), 0)
                  for i in range(1, pol.traffic_window + 1)}
        # only days since the partner's first traffic in the window count (a new partner has no past)
        active_days = sorted(d for d, n in window.items() if n > 0)
        if len(active_days) >= pol.traffic_min_history:
            reference = {d: n for d, n in window.items() if d >= active_days[0]}
            where = f"the {len(reference)} days before {start}"
        else:
            reference = dict(context.daily)
            where = f"the other days of {context.period.label}"
        last = context.last_day
        if context.last_data_day is not None and context.last_data_day <= last:
            last = context.last_data_day - timedelta(days=1)  # the latest day may still be filling up
        days = [start + timedelta(days=i) for i in range((last - start).days + 1)]
        if not days or not reference:
            return []
        counts = [n for n in reference.values()]
        active = [n for n in counts if n > 0]
        if not active or Decimal(len(active)) / Decimal(len(counts)) < pol.traffic_active_share:
            return []
        typical = median(active)
        if typical < pol.traffic_min_daily:
            return []
        gaps = [d for d in days if context.daily.get(d, 0) == 0]
        low = [d for d in days if 0 < context.daily.get(d, 0) < typical * float(pol.traffic_drop_share)]
        out = []
        if gaps:
            out.append(Finding(
                "traffic_gap", "warning",
                f"no traffic from {context.partner} on {_days(gaps)} (usually about {int(typical)} records a day "
                f"over {where}): a missing file or an outage?",
                len(gaps), (), {"days": [d.isoformat() for d in gaps], "typical_daily": int(typical)}))
        if low:
            out.append(Finding(
                "traffic_drop", "warning",
                f"little traffic from {context.partner} on {_days(low)} "
                + ", ".join(f"{d}: {context.daily[d]}" for d in low[:5])
                + f" (usually about {int(typical)} records a day over {where})",
                len(low), (), {"days": {d.isoformat(): context.daily[d] for d in low}, "typical_daily": int(typical)}))
        return out


def _days(days: list[date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:7])
    return shown + (f" and {len(days) - 7} more day(s)" if len(days) > 7 else "")


class Currencies:
    name = "currencies"
    description = "amounts that cannot be converted into the invoice currency"

    def validate(self, context: ValidationContext) -> list[Finding]:
        out = []
        by_hash = {a.source_hash: a for a in context.plan.agreements}
        unknown = sorted({g.currency for g in context.lines if not is_currency(g.currency)}
                         | ({context.invoice_currency} if not is_currency(context.invoice_currency) else set()))
        if unknown:
            out.append(Finding("unknown_currency", "error",
                               f"unknown ISO 4217 currency code(s): {', '.join(unknown)}", len(unknown)))
        missing: dict[tuple[str, str, str], int] = {}
        for g in context.lines:
            if g.currency == context.invoice_currency:
                continue
            a = by_hash.get(g.agreement_hash)
            source = a.fx if a is not None else None
            q = context.fx.quote(source, g.currency, context.invoice_currency, context.last_day) if source else None
            if q is None:
                key = (a.key if a else g.agreement_hash[:12], g.currency, source or "")
                missing[key] = missing.get(key, 0) + g.count
        for (agreement, currency, source), n in sorted(missing.items()):
            why = (f"its fx source '{source}' has no {currency}/{context.invoice_currency} rate in force on "
                   f"{context.last_day}" if source else "it names no fx source")
            out.append(Finding(
                "no_fx_rate", "error",
                f"{n} record(s) of \"{agreement}\" are in {currency} but {context.partner} is invoiced in "
                f"{context.invoice_currency}, and {why}",
                n, (), {"agreement": agreement, "currency": currency, "source": source}))
        return out


BUILTIN: tuple[Validator, ...] = (RatingRejects(), RatingValues(), TrafficProfile(), Currencies())
_registered: dict[str, Validator] = {}


def register(validator: Validator | type) -> Validator | type:
    """Add a validator (an instance, or a class made with no arguments); usable as a decorator.
    A name already taken is a ValueError."""
    v = validator() if isinstance(validator, type) else validator
    if not getattr(v, "name", "") or not callable(getattr(v, "validate", None)):
        raise ValueError(f"{validator!r} is not a validator: it needs a name and validate(context)")
    if v.name in {b.name for b in BUILTIN} or v.name in _registered:
        raise ValueError(f"a validator named '{v.name}' is already registered")
    _registered[v.name] = v
    return validator


def unregister(name: str) -> None:
    _registered.pop(name, None)


def validators() -> list[Validator]:
    """The built-in validators, then the registered ones."""
    return [*BUILTIN, *_registered.values()]


def run_validators(context: ValidationContext, chosen: Iterable[Validator] | None = None,
                   accept: Iterable[str] = ()) -> list[Finding]:
    """Every validator over ``context``; errors whose code is in ``accept`` (or ``all``) are
    marked accepted. Sorted: errors, warnings, info, then by code."""
    accepted = set(accept)
    out: list[Finding] = []
    for v in (validators() if chosen is None else chosen):
        try:
            found = list(v.validate(context))
        except Exception as exc:  # a check that could not run must not let an invoice through
            found = [Finding("validator_failed", "error",
                             f"validator '{v.name}' raised {type(exc).__name__}: {exc}; the cycle was not checked by it")]
        for f in found:
            sev = f.severity if f.severity in SEVERITIES else "error"
            ok = sev == "error" and (f.code in accepted or ACCEPT_ALL in accepted)
            out.append(replace(f, severity=sev, validator=f.validator or v.name, accepted=ok))
    out.sort(key=lambda f: (SEVERITIES.index(f.severity), f.code))
    return out
