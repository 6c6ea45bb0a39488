"""Commitment progress mid-cycle (``icdsl commitments PARTNER``).

A commitment is settled by the cycle that closes its period (a shortfall line). Before that,
:func:`commitment_progress` says where it stands on a day, through the cycle engine: the
store's inputs of the partner's current cycle (:func:`icdsl.billing.cycles.cycle_inputs`:
inventory, history of earlier cycles, what other cycles billed, FX rates) with the partner's
ingested records of the cycle through that day (local, included) are run by
:func:`icdsl.cycle.run` (rated records counted, not kept; nothing is stored), and
:func:`icdsl.cycle.commitments.progress_of` measures each commitment in the charge context the
engine evaluated, with the cycle's tiered-price and volume-discount lines so far.

They are measured exactly as the cycle measures them (:func:`icdsl.charges.commitment.measure`):
money commitments count the records' amounts and surcharges, plus the tiered-price lines and
minus the volume-discount lines of their scope as the cycle so far bills them (a discount whose
tier the month has not reached yet counts nothing), amounts in other currencies converted with
the agreement's fx source at the rate in force on the cycle's last day; quantity commitments
count the measure (minutes, messages...).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from icdsl.billing import models as M
from icdsl.billing.cycles import _read_partner, cycle_inputs, partner_inputs
from icdsl.billing.errors import CycleError
from icdsl.cycle import engine
from icdsl.cycle import errors as engine_errors
from icdsl.cycle.commitments import CommitmentStatus, has_commitments, progress_of
from icdsl.cycle.offline import SummarySinks
from icdsl.cycle.periods import local_midnight, parse_period, zone
from icdsl.plan.model import Plan

if TYPE_CHECKING:
    from icdsl.billing.store import Store

__all__ = ["CommitmentStatus", "commitment_progress"]


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
        end = local_midnight(min(day + timedelta(days=1), per.local_end), prow.timezone)
        cyc = s.scalars(select(M.BillingCycle).where(M.BillingCycle.partner_id == prow.id,
                                                     M.BillingCycle.local_start == per.local_start,
                                                     M.BillingCycle.local_end == per.local_end)).first()
        batches = partner_inputs(s, partner, per.start, end)
        # the current cycle's own lines, if it ran already, are not "billed on another cycle"
        inputs = cycle_inputs(store, s, prow, per, plan, cyc.id if cyc is not None else -1, batches,
                              accept=("all",), validators=(), sinks=SummarySinks())
    if not has_commitments(inputs, day):
        return []
    data = store.data

    def records():  # the partner's records of the cycle through the day
        for batch_id, path, _sha, _n in batches:
            for chunk in _read_partner(str(data.abs(path)), partner, start=per.start, end=end):
                yield batch_id, chunk

    inputs = replace(inputs, records=records)
    try:
        return progress_of(inputs, engine.run(inputs), day)
    except engine_errors.CycleError as e:
        if isinstance(e, CycleError):
            raise
        raise CycleError(f"commitments of {partner}: {e}") from None
