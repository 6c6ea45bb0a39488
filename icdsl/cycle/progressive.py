"""Progressive billing: interim invoices raised in a period still in progress, as soon as the
usage billed so far passes a threshold, and the final invoice that deducts them.

An agreement says ``progressive billing at 10_000.00 EUR, 25_000.00 EUR`` (thresholds in the
partner's invoice currency, rising). Pure functions over the cycle engine (no database):

- :func:`check` rates the records of the period received so far (those that start before the
  end of the local day ``until``) with :func:`icdsl.cycle.engine.run` and measures the
  **usage to date**: the traffic lines of the agreement (every version of it) as they would be
  invoiced (converted, each rounded once), netted services left out. When it reaches a
  threshold above the one the last interim invoice was raised at, the result holds one
  **interim invoice** per invoice stream (``DraftInvoice.kind == "interim"``): the traffic
  lines to date, less one line per earlier interim invoice of the stream (``kind
  "progressive"``, its number, minus its subtotal). Thresholds passed at once give one invoice
  (at the highest of them). Fees, commitments, tiers, discounts and caps are not on interim
  invoices: they are settled on the final invoice, whose cycle knows the whole period.
- :func:`deduct` (called by :func:`icdsl.cycle.engine.run` with ``CycleInputs.interims``)
  adds the same deduction lines to the final invoice of each stream, so that, per stream,
  **final subtotal + the interim subtotals = the subtotal of a single invoice** exactly (the
  deductions are the interim subtotals, which are sums of rounded lines).
- **Tax, cumulative**: an interim invoice's tax is the tax of the usage billed to date minus
  the tax of the earlier interim invoices; the final invoice's, the tax of the whole period
  minus the tax of every interim invoice. Each is rounded once, so the taxes add up exactly to
  the tax of a single invoice (an invoice's own tax may differ from rate x its own subtotal by
  one minor unit: the rounding already billed is carried over).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from icdsl.cycle.amounts import exact_sum
from icdsl.cycle.engine import CycleInputs, CycleResult, run
from icdsl.cycle.errors import CycleError
from icdsl.cycle.interim import INTERIM, Interim, cumulative_tax, deduction
from icdsl.cycle.invoicing import DraftInvoice, DraftLine, Drafts
from icdsl.cycle.periods import local_midnight
from icdsl.plan.model import Agreement, Plan


@dataclass
class ProgressiveCheck:
    """What :func:`check` found for a period in progress."""

    agreement: str
    until: date
    currency: str
    thresholds: tuple[Decimal, ...]
    usage: Decimal  # the usage to date (the agreement's traffic lines, invoice currency)
    passed: Decimal | None  # the threshold passed now (None: no interim invoice is due)
    invoices: list[DraftInvoice] = field(default_factory=list)  # kind "interim", one per stream
    result: CycleResult | None = None  # the CycleResult of the usage to date

    @property
    def next_threshold(self) -> Decimal | None:
        above = [t for t in self.thresholds if t > self.usage]
        return above[0] if above else None

    def __str__(self) -> str:
        cur = self.currency
        if self.passed is None:
            nxt = self.next_threshold
            return (f"{self.agreement}: usage to {self.until} {self.usage} {cur}; "
                    + (f"next threshold {nxt} {cur}: no interim invoice" if nxt is not None
                       else "every threshold already billed: no interim invoice"))
        total = exact_sum(inv.total for inv in self.invoices)
        return (f"{self.agreement}: usage to {self.until} {self.usage} {cur} passed {self.passed} {cur}: "
                f"{len(self.invoices)} interim invoice(s), {total} {cur}")


def progressive_agreement(plan: Plan, partner: str, day: date) -> Agreement | None:
    """The agreement version of ``partner`` in force on ``day`` that bills progressively (None:
    none does); a CycleError when two agreements of the partner do."""
    found = [a for a in plan.agreements_for(partner) if a.progressive and a.effective_from <= day
             and (a.effective_to is None or day <= a.effective_to)]
    names = sorted({a.name for a in found})
    if len(names) > 1:
        raise CycleError(f"{len(names)} agreements with {partner} bill progressively on {day} "
                         f"({', '.join(names)}): one agreement per partner may")
    return found[0] if found else None


def records_until(chunks: Iterable[tuple[int, pa.Table]], end: object) -> Iterable[tuple[int, pa.Table]]:
    """The records that start before ``end`` (a UTC instant); a record without a start stays in
    (the rater rejects it with its reason)."""
    for batch, table in chunks:
        if not table.num_rows or "start" not in table.column_names:
            yield batch, table
            continue
        start = table.column("start")
        if not pa.types.is_timestamp(start.type):
            start = pc.cast(start, pa.timestamp("us", tz="UTC"))
        yield batch, table.filter(pc.fill_null(pc.less(start, pa.scalar(end, start.type)), True))


def threshold_passed(thresholds: Sequence[Decimal], usage: Decimal, interims: Sequence[Interim]) -> Decimal | None:
    """The highest threshold ``usage`` reaches above the one the last interim invoice was raised
    at (None: no interim invoice is due)."""
    done = max((it.threshold for it in interims), default=None)
    passed = [t for t in thresholds if t <= usage and (done is None or t > done)]
    return passed[-1] if passed else None


def usage_lines(drafts: Drafts, hashes: set[str]) -> dict[str, list[DraftLine]]:
    """The traffic lines of the agreement versions ``hashes`` on the invoices, by stream."""
    out: dict[str, list[DraftLine]] = defaultdict(list)
    for inv in drafts.invoices:
        if inv.kind != "invoice":
            continue
        for ln in inv.lines:
            if ln.kind == "traffic" and ln.agreement_hash in hashes:
                out[inv.stream].append(ln)
    return out


def check(inputs: CycleInputs, until: date, interims: Sequence[Interim] = ()) -> ProgressiveCheck:
    """Whether an interim invoice is due on ``until`` for the period of ``inputs`` in progress
    (``inputs.records``: what was received so far; records after ``until`` are left out), given
    the interim invoices already raised in the period (see the module's documentation)."""
    per, partner = inputs.period, inputs.partner
    if not per.local_start <= until < per.local_end:
        raise CycleError(f"{until} is not a day of {per.label} ({per.local_start} .. "
                         f"{per.local_end - timedelta(days=1)})")
    ag = progressive_agreement(inputs.plan, partner.code, until)
    if ag is None:
        raise CycleError(f"no agreement with {partner.code} in force on {until} bills progressively "
                         "(say so in the agreement: 'progressive billing at 10_000.00 EUR')")
    if inputs.pieces:
        raise CycleError("a progressive billing check rates the records received so far: give them as records, "
                         "not as pieces rated already")
    late = [it for it in interims if it.until >= until]
    if late:
        raise CycleError(f"interim invoice {late[0].number} already billed the usage to {late[0].until}: "
                         f"a check on {until} comes after it")
    end = local_midnight(until + timedelta(days=1), per.timezone)
    source = inputs.records

    def records() -> Iterable[tuple[int, pa.Table]]:
        return records_until(source() if callable(source) else source, end)

    result = run(replace(inputs, records=records, interims=()))
    if result.drafts is None:
        raise CycleError(f"the usage of {partner.code} to {until} is held by findings that are errors: "
                         + "; ".join(f.message for f in result.findings if f.blocking)[:500])
    hashes = {a.source_hash for a in inputs.plan.agreements_for(partner.code) if a.name == ag.name}
    by_stream = usage_lines(result.drafts, hashes)
    currency = partner.currency
    usage = exact_sum(ln.amount for lines in by_stream.values() for ln in lines)
    passed = threshold_passed(ag.progressive, usage, interims)
    out = ProgressiveCheck(ag.name, until, currency, ag.progressive, usage, passed, result=result)
    if passed is None:
        return out
    mode = ag.rounding.mode
    for stream in sorted(set(by_stream) | {it.stream for it in interims}):
        earlier = [it for it in interims if it.stream == stream]
        lines = sorted(by_stream.get(stream, []), key=DraftLine.sort_key)
        to_date = exact_sum(ln.amount for ln in lines)
        lines += [deduction(it, currency, mode) for it in earlier]
        subtotal = exact_sum(ln.amount for ln in lines)
        if subtotal == 0:
            continue
        tax = cumulative_tax(partner.tax.kind, partner.tax.rate, to_date, subtotal,
                             exact_sum(it.tax for it in earlier), currency)
        out.invoices.append(DraftInvoice(stream, currency, lines, subtotal, tax, subtotal + tax.amount, None,
                                         INTERIM))
    return out


__all__ = ["ProgressiveCheck", "check", "progressive_agreement", "records_until", "threshold_passed", "usage_lines"]
