"""Where a cycle's commitments stand, from the engine's run of the cycle so far.

``icdsl commitments`` (:func:`icdsl.billing.commitments.commitment_progress`) reads the
store's inputs of the partner's current cycle with the records through a day, runs the engine
(:func:`icdsl.cycle.engine.run`) and calls :func:`progress_of`: each commitment of an agreement
version in force on that day is measured in the version's charge context
(:func:`icdsl.cycle.charges.charge_contexts`, the one the engine's evaluation used) with the
lines the cycle so far gave before the commitment stage (tiered prices, volume discounts), as
the commitment itself measures at the end of the cycle
(:func:`icdsl.charges.commitment.measure`), and compared with a pro rata pace
(:func:`icdsl.charges.commitment.progress`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from icdsl.charges.commitment import CommitmentProgress, measure, progress
from icdsl.charges.context import agreement_days
from icdsl.charges.lines import STAGES, ChargeError
from icdsl.charges.tiers import measuring_period
from icdsl.cycle.charges import charge_contexts
from icdsl.cycle.engine import CycleInputs, CycleResult
from icdsl.cycle.errors import CycleError


@dataclass
class CommitmentStatus:
    partner: str
    agreement: str
    charge: str
    rule: str
    progress: CommitmentProgress

    def __str__(self) -> str:
        p = self.progress
        state = "on track" if p.on_track else "behind"
        return (f"{self.partner} {self.agreement} \"{self.charge}\" ({self.rule})\n"
                f"  period {p.period.label}, measured through {p.as_of} ({p.elapsed_days} of {p.period_days} days)\n"
                f"  so far {p.so_far} of {p.committed} {p.unit} committed: {p.percent}%; a pro rata pace expects "
                f"{p.expected} ({p.expected_percent}%) by now: {state}\n"
                f"  shortfall if the period ended now: {p.shortfall_now} {p.unit}")


def has_commitments(inputs: CycleInputs, day: date) -> bool:
    """True when an agreement version of the partner in force on ``day`` has a commitment."""
    return any(day in agreement_days(a) and any(c.kind == "commitment" for c in a.charges)
               for a in inputs.plan.agreements_for(inputs.partner.code))


def progress_of(inputs: CycleInputs, result: CycleResult, day: date) -> list[CommitmentStatus]:
    """Every commitment of the versions in force on ``day``, as it stands in ``result`` (the
    engine's run of ``inputs``, records through ``day``)."""
    code = inputs.partner.code
    before = set(STAGES[:STAGES.index("commitment")])
    hist = inputs.history
    out = []
    for ag, ctx in charge_contexts(inputs.plan, inputs.partner, inputs.period, result.usage, result.events,
                                   fx=inputs.fx, refunds=result.refunds, history=hist.cycles, billed=hist.billed,
                                   items=inputs.inventory, credits=hist.credits):
        commitments = [c for c in ag.charges if c.kind == "commitment"]
        if not commitments or day not in agreement_days(ag):
            continue
        earlier = tuple(ln for ln in result.charge_lines
                        if ln.agreement_hash == ag.source_hash and ln.stage in before)
        ctx = replace(ctx, lines=earlier)
        try:
            for c in commitments:
                period = measuring_period(c.param("period", "cycle"), ctx)
                so_far = measure(c, ctx, period).actual
                done = Decimal(so_far.numerator) / Decimal(so_far.denominator)
                out.append(CommitmentStatus(code, ag.key, c.name, str(c.span), progress(c, done, period, day)))
        except ChargeError as e:
            raise CycleError(f"agreement {ag.key}: {e}") from None
    return out
