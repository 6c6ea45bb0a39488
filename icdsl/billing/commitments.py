"""Commitment progress mid-cycle (``icdsl commitments PARTNER``).

A commitment is settled by the cycle that closes its period (a shortfall line). Before that,
:func:`commitment_progress` says where it stands on a day: the partner's ingested records of
the current cycle through that day (local, included) are rated on the fly (nothing is stored),
earlier cycles of the commitment's period count with the usage they measured, and
:func:`icdsl.charges.commitment.progress` compares the result with the commitment (percent
reached, what a pro rata pace expects by that day, the shortfall if the period ended now).

They are measured exactly as the cycle measures them (:func:`icdsl.charges.commitment.measure`):
money commitments count the records' amounts and surcharges, plus the tiered-price lines and
minus the volume-discount lines of their scope as the cycle so far would bill them (the tiers
and discounts of the agreement evaluated on the usage through that day: a discount whose tier
the month has not reached yet counts nothing), amounts in other currencies converted with the
agreement's fx source at the rate in force on the cycle's last day; quantity commitments count
the measure (minutes, messages...).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from icdsl.billing import models as M
from icdsl.billing.charging import (
    _other_lines,
    event_names,
    history_of,
    rates_of,
    split_events,
    split_refunds,
)
from icdsl.billing.cycles import _read_partner, partner_inputs
from icdsl.billing.errors import CycleError
from icdsl.billing.fx import FxTable
from icdsl.billing.periods import local_midnight, parse_period, zone
from icdsl.charges.commitment import CommitmentProgress, measure, progress
from icdsl.charges.context import ChargeContext, agreement_days, merge_usage, usage_from_rated
from icdsl.charges.evaluate import _when_holds, charge_type
from icdsl.charges.lines import ChargeError
from icdsl.charges.periods import Days
from icdsl.charges.tiers import measuring_period
from icdsl.plan.model import Plan
from icdsl.rating.batch import rate_batch_with_charges

if TYPE_CHECKING:
    from icdsl.billing.store import Store


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


def _last_day(s, prow: M.Partner) -> date | None:
    latest = s.scalar(select(func.max(M.IntakePartnerStat.max_start)).where(M.IntakePartnerStat.partner == prow.code))
    return latest.astimezone(zone(prow.timezone)).date() if latest is not None else None


def commitment_progress(store: Store, partner: str, plan: Plan, as_of: date | None = None) -> list[CommitmentStatus]:
    """Every commitment of the partner's agreements in force on ``as_of`` (default: the last
    local day with ingested records), as it stands through that day."""

    with store.reading() as s:
        prow = s.scalars(select(M.Partner).where(M.Partner.code == partner)).first()
        if prow is None:
            raise CycleError(f"partner {partner} is not in the store: load the rules that declare it first")
        day = as_of or _last_day(s, prow) or date.today()
        per = parse_period(day, prow.timezone, prow.billing)
        cycle = Days(per.local_start, per.local_end)
        ags = [a for a in plan.agreements_for(partner)
               if day in agreement_days(a) and any(c.kind == "commitment" for c in a.charges)]
        if not ags:
            return []
        end = local_midnight(min(day + timedelta(days=1), per.local_end), prow.timezone)
        usage: list = []
        events: list = []
        names = event_names(plan, partner)
        for _b, path, _sha, _n in partner_inputs(s, partner, per.start, end):
            for chunk in _read_partner(str(store.data.abs(path)), partner, start=per.start, end=end):
                chunk, _refunds = split_refunds(chunk)
                chunk, ev = split_events(chunk, names, prow.timezone, partner)
                events += ev
                if chunk.num_rows:
                    rated, _rejects, rc = rate_batch_with_charges(plan, chunk)
                    usage = merge_usage(usage, usage_from_rated(plan, rated, rc))
        history = history_of(s, prow, per, _other_lines(s, prow.id, -1))
        fx = FxTable.load(s, plan)
    out = []
    for ag in ags:
        versions = tuple(a for a in plan.agreements_for(partner) if a.name == ag.name)
        ctx = ChargeContext(agreement=ag, partner=plan.partner(partner), cycle=cycle, cycle_label=per.label,
                            usage=tuple(usage), events=tuple(events), history=history, versions=versions,
                            fx=rates_of(fx, ag))
        try:
            # the tier and discount lines of the cycle so far, as the commitment stage sees them
            lines = []
            for c in ag.charges:
                if c.kind in ("tiered_price", "volume_discount") and _when_holds(c, ctx):
                    lines += charge_type(c.kind, None, c.span).evaluate(c, replace(ctx, lines=tuple(lines)))
            ctx = replace(ctx, lines=tuple(lines))
            for c in ag.charges:
                if c.kind != "commitment":
                    continue
                period = measuring_period(c.param("period", "cycle"), ctx)
                so_far = measure(c, ctx, period).actual
                done = Decimal(so_far.numerator) / Decimal(so_far.denominator)
                out.append(CommitmentStatus(partner, ag.key, c.name, str(c.span), progress(c, done, period, day)))
        except ChargeError as e:
            raise CycleError(f"commitments of {partner}, agreement {ag.key}: {e}") from None
    return out
