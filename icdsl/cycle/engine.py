"""The billing-cycle engine: :func:`run` turns a :class:`CycleInputs` into a :class:`CycleResult`.

A pure function of its inputs: no database, no UI. The store (:mod:`icdsl.billing.cycles`)
reads the inputs in its transaction and writes the result in the same one; anything else
(what-if, ``example cycle`` blocks, commitments, the plugin kit) builds the inputs by hand.

Stages, reported to ``inputs.progress(stage, done, total)``: ``rate`` (records rated chunk by
chunk, streamed to the sinks, lines summed on columns: :mod:`icdsl.cycle.rater`), ``validate``
(counts reconciled, lines merged), ``charges`` (charge lines against the history, validation
findings), ``invoice`` (draft invoices, settlement statement, revenue-share statements) unless
a finding that is an error and not accepted blocks invoicing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from icdsl.charges.context import Adjustment, CycleTotals, CycleUsage, EventRecord, Usage
from icdsl.charges.lines import ChargeLine, billed_amounts
from icdsl.cycle.charges import (
    ShareAdjustment,
    ShareDraft,
    drafts_of,
    evaluate,
    event_names,
    needs_totals,
    share_statements,
)
from icdsl.cycle.daily import Daily, DailyTraffic, Scans
from icdsl.cycle.errors import CycleError, ReconciliationError
from icdsl.cycle.fx import FxTable
from icdsl.cycle.interim import Interim, deduct
from icdsl.cycle.invoicing import DraftLine, Drafts, Group, check_dims, draft_documents
from icdsl.cycle.periods import Period, parse_period
from icdsl.cycle.rater import REJECTS_FILE_SCHEMA, Discard, RatedPiece, Rater, plan_scale
from icdsl.cycle.validation import (
    Finding,
    Policy,
    RatedValuesScan,
    ValidationContext,
    refile_flags,
    run_validators,
    scans_rated,
)
from icdsl.plan.model import Partner, Plan

Chunk = tuple[int, pa.Table]  # (the intake batch a chunk of records comes from, the records)
Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- sinks


class MemorySink:
    """Keeps what is written (the default: a cycle of a few million records at most)."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.tables.append(table)
        self.rows += table.num_rows

    def table(self) -> pa.Table | None:
        """What was written, as the store's files hold it: plain strings instead of
        dictionaries, amounts as decimal128(38, scale)."""
        if not self.tables:
            return None
        return pa.concat_tables([_plain(t) for t in self.tables], promote_options="permissive")


def _plain(table: pa.Table) -> pa.Table:
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_decimal(t):
            t = pa.decimal128(38, t.scale)
        fields.append(pa.field(f.name, t))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)


class MemorySinks:
    """Where a cycle's rated records, rating rejects and per-record charges go, kept in memory.

    A sink set has ``rated``, ``rejects`` and ``record_charges`` (each with ``write(table)``),
    ``finish()`` (called once everything is written; the store makes its files durable there,
    on a thread of its own while the engine goes on: its sinks write behind the rating too)
    and ``read_rated(columns)``, ``read_rejects()`` and ``read_record_charges()`` (read after
    ``finish``: what validation and the charges need)."""

    def __init__(self) -> None:
        self.rated = MemorySink()
        self.rejects = MemorySink()
        self.record_charges = MemorySink()

    def finish(self) -> None:
        pass

    def read_rated(self, columns: Sequence[str]) -> pa.Table:
        t = self.rated.table()
        if t is None:
            return pa.table({c: pa.array([], pa.string()) for c in columns})
        return t.select(list(columns))

    def read_rejects(self) -> pa.Table:
        t = self.rejects.table()
        return REJECTS_FILE_SCHEMA.empty_table() if t is None else t

    def read_record_charges(self) -> pa.Table | None:
        return self.record_charges.table()


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class History:
    """What the cycle is evaluated against, from earlier cycles.

    ``cycles``: the partner's earlier cycles (their days, usage, event units and charge lines:
    period-to-date tiers and commitments add them up); ``billed_lines``: charge lines billed on
    other cycles (an application billed there is not billed again; a changed amount becomes a
    correction); ``credits``: corrections of earlier cycles' traffic billed on this cycle, as
    charge adjustments (``on net`` revenue shares deduct them); ``adjustments``: their invoice
    lines; ``share_adjustments``: corrections of earlier cycles' revenue shares owed to other
    parties, listed on their statements; ``daily``: the partner's records by local day before the period and
    ``last_data_day``: the latest local day with any traffic (the traffic profile check)."""

    cycles: tuple[CycleUsage, ...] = ()
    billed_lines: tuple[ChargeLine, ...] = ()
    credits: tuple[Adjustment, ...] = ()
    adjustments: tuple[DraftLine, ...] = ()
    share_adjustments: tuple[ShareAdjustment, ...] = ()
    daily: Mapping[date, int] = field(default_factory=dict)
    last_data_day: date | None = None

    @property
    def billed(self) -> dict[str, Decimal]:
        return billed_amounts(self.billed_lines)


@dataclass
class CycleInputs:
    """Everything one partner's cycle depends on.

    ``records``: the period's records as ``(batch id, Arrow table)`` chunks (normalized as the
    intake passes them: ``id``, ``partner``, ``direction``, ``service``, ``b_number``,
    ``start``...), a sequence or a function returning a fresh iterable (the records are read
    twice when a per-record charge reads ``cycle.*``); ``inventory``: the partner's inventory
    items (:class:`icdsl.inventory.InventoryItem`); ``fx``: the rates (:class:`FxTable`);
    ``dims``: the line dimensions (default ``destination``, ``band``); ``accept``: codes of
    error findings to accept (``all``: every one); ``validators``: None for the registered
    ones; ``sinks``: where rated records, rejects and record charges go (default: memory);
    ``kept``: records rated before whose rating stands, with ``kept_charges``, their record
    charges as billed (a correction of part of a finalized period re-rates the rest:
    :meth:`icdsl.cycle.rater.Rater.keep`; they are counted, written and summed with the
    records rated now);
    ``on_chunk``: called after each chunk is rated; ``expected``: records to expect (progress);
    ``pieces``: the period's records rated already, piece by piece on their own
    (:class:`icdsl.cycle.rater.RatedPiece`, in the order of the records: workers rate a large
    partner's pieces at once), merged in that order instead of rating ``records``; not with
    per-record charges that read ``cycle.*`` (they need the cycle's totals first);
    ``interims``: the interim invoices of progressive billing raised in the period, which the
    final invoices deduct (:func:`icdsl.cycle.interim.deduct`)."""

    plan: Plan
    partner: Partner
    period: Period
    records: Sequence[Chunk] | Callable[[], Iterable[Chunk]] = ()
    inventory: Sequence[Any] = ()
    history: History = field(default_factory=History)
    fx: FxTable | None = None
    dims: Sequence[str] | None = None
    accept: Sequence[str] = ()
    policy: Policy | None = None
    validators: Iterable[Any] | None = None
    sinks: Any = None
    kept: pa.Table | None = None
    kept_charges: pa.Table | None = None
    progress: Progress | None = None
    on_chunk: Callable[[], None] | None = None
    expected: int = 0
    pieces: Sequence[RatedPiece] = ()
    interims: Sequence[Interim] = ()

    @classmethod
    def of(cls, plan: Plan, partner: str, period: str | date | Period, records: pa.Table | Sequence[Chunk] = (),
           **options: Any) -> CycleInputs:
        """Inputs for ``partner`` (declared in ``plan``) and ``period`` (``2026-03``, a day, a
        :class:`Period`); ``records``: one table (batch 0) or chunks."""
        p = plan.partner(partner)
        if p is None:
            raise CycleError(f"partner {partner} is not declared in the rules given")
        per = parse_period(period, p.timezone, p.billing)
        if isinstance(records, pa.Table):
            records = [(0, records)]
        return cls(plan=plan, partner=p, period=per, records=records, **options)

    def chunks(self) -> Iterable[Chunk]:
        return self.records() if callable(self.records) else iter(self.records)


# --------------------------------------------------------------------------- result


@dataclass
class Counts:
    """Every record read is rated, rejected, an event, a refund or an unusable refund."""

    read: int = 0
    records_in: int = 0  # rated or rejected
    rated: int = 0
    rejected: int = 0
    events: int = 0
    refunds: int = 0
    unusable_refunds: int = 0
    record_charges: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_batch: dict[int, int] = field(default_factory=dict)

    @property
    def set_aside(self) -> int:
        return self.events + self.refunds + self.unusable_refunds

    def problems(self) -> list[str]:
        out = []
        if self.records_in != self.rated + self.rejected:
            out.append(f"records {self.records_in} != rated {self.rated} + rejected {self.rejected}")
        if self.read != self.records_in + self.set_aside:
            out.append(f"read {self.read} != rated or rejected {self.records_in} + events {self.events} "
                       f"+ refunds {self.refunds} + unusable refunds {self.unusable_refunds}")
        return out


@dataclass
class CycleResult:
    """Everything a cycle produces, as plain data. ``lines``: the invoice lines' exact sums
    (one :class:`Group` per line, its ``key`` the ``line`` column of the rated records);
    ``drafts``: the draft invoices and settlement statement (None when ``blocked``);
    ``shares``: the revenue-share statements; ``sinks``: where the records went."""

    partner: Partner
    period: Period
    dims: tuple[str, ...]
    counts: Counts
    lines: list[Group]
    totals: dict[str, Decimal]  # rated amounts by currency, exact
    daily: dict[date, int]  # records (rated + rejected) by local day
    usage: list[Usage]
    events: list[EventRecord]
    refunds: list[Adjustment]
    refund_problems: list[tuple[str, str]]
    charge_lines: list[ChargeLine]
    findings: list[Finding]
    drafts: Drafts | None
    shares: list[ShareDraft]
    sinks: Any
    timings: dict[str, float] = field(default_factory=dict)
    traffic: Daily | None = None  # rated traffic by local day and series (direction, service, destination, currency)
    accept: tuple[str, ...] = ()  # the codes of error findings accepted (for findings the store adds)

    @property
    def blocked(self) -> bool:
        """A finding that is an error and not accepted stopped invoicing."""
        return any(f.blocking for f in self.findings)

    @property
    def applications(self) -> list[tuple[ChargeLine, str, Decimal]]:
        """(charge line, application key, amount) of every application billed for the first
        time (a correction amends an application: it bills none)."""
        return [(ln, key, amount) for ln in self.charge_lines if ln.corrects is None
                for key, amount in ln.application_amounts().items()]


class _Clock:
    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._t0 = 0.0

    def stage(self, name: str | None, total: int = 0) -> None:
        t = time.perf_counter()
        if self._stage is not None:
            self.timings[self._stage] = self.timings.get(self._stage, 0.0) + t - self._t0
        self._stage, self._t0 = name, t
        if name is not None and self.progress is not None:
            self.progress(name, 0, total)

    def tick(self, done: int, total: int) -> None:
        if self.progress is not None and self._stage is not None:
            self.progress(self._stage, done, total)


# --------------------------------------------------------------------------- the run


def _mode(plan: Plan, partner: str) -> str:
    """The rounding mode of the partner's progressive agreement (how its deductions are shown)."""
    modes = [a.rounding.mode for a in plan.agreements_for(partner) if a.progressive]
    return modes[-1] if modes else "half_up"


def run(inputs: CycleInputs) -> CycleResult:
    """The cycle of ``inputs.partner`` over ``inputs.period`` (see the module's documentation)."""
    plan, partner, per = inputs.plan, inputs.partner, inputs.period
    code = partner.code
    dims = check_dims(inputs.dims)
    accept = tuple(inputs.accept)
    sinks = inputs.sinks if inputs.sinks is not None else MemorySinks()
    clock = _Clock(inputs.progress)
    scale = plan_scale(plan)
    events = tuple(event_names(plan, code))
    two_pass = needs_totals(plan, code)

    # ---- rate
    clock.stage("rate", inputs.expected)
    chosen = list(inputs.validators) if inputs.validators is not None else None
    # the checks of the rated values are made on the chunks as they are written (no second read)
    scan = RatedValuesScan((inputs.policy or Policy()).samples) if scans_rated(chosen) else None
    daily = DailyTraffic(per)  # the rated traffic by local day and destination (revenue assurance's baseline)
    rater = Rater(plan, sinks.rated, sinks.rejects, scale, dims, per, charges=True,
                  charges_w=None if two_pass else sinks.record_charges, events=events, partner=code,
                  timezone=per.timezone, on_chunk=inputs.on_chunk, scan=Scans(scan, daily))
    if inputs.pieces:
        if two_pass:
            raise CycleError(f"the cycle {code} {per.label} has per-record charges that read cycle.*: its records "
                             "cannot be rated in pieces on their own (they need the cycle's totals first)")
        for piece in inputs.pieces:
            rater.absorb(piece)
            clock.tick(rater.records_in, max(inputs.expected, rater.records_in))
    else:
        for batch_id, chunk in inputs.chunks():
            rater.feed(chunk, batch_id)
            clock.tick(rater.records_in, max(inputs.expected, rater.records_in))
    rater.flush()
    rater.keep(inputs.kept, inputs.kept_charges)
    if two_pass:  # `cycle.*` conditions: evaluate the record charges again with the cycle's totals
        totals = CycleTotals.from_usage(rater.usage, {code: sum(e.units for e in rater.events)},
                                        {code: [a.name for a in plan.agreements_for(code)]})
        again = Rater(plan, Discard(), Discard(), scale, dims, None, charges=True, charges_w=sinks.record_charges,
                      cycle_totals=totals, events=events, partner=code, timezone=per.timezone)
        for batch_id, chunk in inputs.chunks():
            again.feed(chunk, batch_id)
        again.flush()
        again.keep(inputs.kept, inputs.kept_charges)
        rater.usage, rater.record_charges = again.usage, again.record_charges
    sinks.finish()
    clock.tick(rater.records_in, rater.records_in)

    # ---- counts and lines
    clock.stage("validate")
    groups = rater.groups()
    counts = Counts(read=rater.read, records_in=rater.records_in, rated=rater.rated, rejected=rater.rejected,
                    events=len(rater.events), refunds=len(rater.refunds),
                    unusable_refunds=len(rater.refund_problems), record_charges=rater.record_charges,
                    by_reason=dict(sorted(rater.by_reason.items())), by_batch=dict(sorted(rater.by_batch.items())))
    problems = counts.problems()
    if problems:
        raise ReconciliationError(f"cycle {code} {per.label} failed its reconciliation; nothing was committed: "
                                  + "; ".join(problems))
    by_currency: dict[str, Decimal] = defaultdict(Decimal)
    for g in groups:
        by_currency[g.currency] += g.amount

    # ---- charges, validation
    clock.stage("charges")
    fx = inputs.fx if inputs.fx is not None else FxTable(())
    hist = inputs.history
    record_charges = sinks.read_record_charges() if rater.record_charges else None
    evaluated = evaluate(plan, partner, per, rater.usage, rater.events, record_charges, accept, fx=fx,
                         refunds=rater.refunds, refund_problems=rater.refund_problems, history=hist.cycles,
                         billed=hist.billed, items=tuple(inputs.inventory), credits=hist.credits)
    flagged = refile_flags(record_charges)
    del record_charges
    context = ValidationContext(
        partner=code, partner_name=partner.name, timezone=per.timezone, invoice_currency=partner.currency,
        period=per, plan=plan, records_in=rater.records_in, rated_count=rater.rated, rejected_count=rater.rejected,
        rejects=sinks.read_rejects(), daily=rater.daily_counts(), history=dict(hist.daily),
        last_data_day=hist.last_data_day, lines=groups, fx=fx, policy=inputs.policy or Policy(),
        read_rated=sinks.read_rated, read_rated_batches=getattr(sinks, "read_rated_batches", None),
        rated_values=scan,
    )
    findings = run_validators(context, chosen, accept=accept) + evaluated.findings + flagged
    del context
    result = CycleResult(partner=partner, period=per, dims=dims, counts=counts, lines=groups,
                         totals=dict(sorted(by_currency.items())), daily=rater.daily_counts(), usage=rater.usage,
                         events=rater.events, refunds=rater.refunds, refund_problems=rater.refund_problems,
                         charge_lines=list(evaluated.lines), findings=findings, drafts=None, shares=[], sinks=sinks,
                         traffic=daily.daily(), accept=accept)
    if result.blocked:
        clock.stage(None)
        result.timings = clock.timings
        return result

    # ---- drafts
    clock.stage("invoice")
    last_day = per.local_end - timedelta(days=1)
    charge_drafts = drafts_of(evaluated.lines, plan, code, partner.currency, fx, last_day)
    drafts = draft_documents(groups, [a for a in hist.adjustments if a.amount != 0] + charge_drafts, plan=plan,
                             invoice_currency=partner.currency, tax_kind=partner.tax.kind, tax_rate=partner.tax.rate,
                             fx=fx, last_day=last_day)
    drafts.charges = list(evaluated.lines)
    deduct(drafts, inputs.interims, currency=partner.currency, tax_kind=partner.tax.kind, tax_rate=partner.tax.rate,
           mode=_mode(plan, code))
    result.drafts = drafts
    result.shares = share_statements(evaluated.lines, per.label, hist.share_adjustments)
    clock.stage(None)
    result.timings = clock.timings
    return result
