"""Charges in a billing cycle, on the store's side: the history a cycle's charges are evaluated
against (earlier cycles' usage and charge lines, corrections billed on the cycle), read from the
database, and the charge lines written once and only once. The evaluation itself is pure:
:mod:`icdsl.cycle.charges` (re-exported here for the store's callers).

:func:`icdsl.billing.cycles.run_locked` reads :func:`other_lines`, :func:`history_of` and
:func:`billed_adjustments` into the engine's inputs; after the engine ran, :func:`store_lines`
writes every charge line (its JSON audit trail, ``key_hash`` unique) and each of its
applications (``key_hash`` unique: a double application is impossible), and
:func:`write_share_statements` one revenue-share statement per party and currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.billing.errors import CycleError
from icdsl.charges.context import Adjustment, CycleUsage
from icdsl.charges.keys import key_hash
from icdsl.charges.lines import ChargeLine
from icdsl.charges.periods import Days
from icdsl.cycle.charges import (
    BAD_REFUND,
    HOLD,
    KIND_ALIASES,
    REFUND,
    Evaluated,
    ShareAdjustment,
    ShareDraft,
    draft_of,
    drafts_of,
    event_names,
    needs_totals,
    placement,
    rates_of,
    receivable_items,
    refunds_of,
    share_lines,
    share_statements,
    split_events,
    split_refunds,
    usage_json,
    usage_of_json,
    versions_in_force,
)
from icdsl.cycle.periods import Period
from icdsl.plan.model import Plan

# a correction that evaluated the corrected cycle whole (it has a record charges file)
# corrected that cycle's revenue shares itself: its traffic is not deducted again on the cycle
_WHOLE = select(M.Correction.id).where(M.Correction.charges_path.is_not(None))
# the adjustments billed on a cycle, each with whether it is traffic to deduct (see above)
_TARGETED = (select(M.Adjustment, sa.and_(M.Adjustment.charge_key.is_(None),
                                          M.Adjustment.correction_id.not_in(_WHOLE)).label("deduct"))
             .where(M.Adjustment.target_cycle_id == sa.bindparam("cycle_id")).order_by(M.Adjustment.id))


def targeted(s: Session, cycle_id: int) -> list[tuple[M.Adjustment, bool]]:
    """The adjustments billed on the cycle (corrections of earlier cycles), by id, each with
    whether :func:`billed_adjustments` deducts it: read once for the cycle's inputs."""
    return [(a, bool(deduct)) for a, deduct in s.execute(_TARGETED, {"cycle_id": cycle_id}).all()]


def billed_adjustments(s: Session, plan: Plan, cycle_id: int,
                       rows: list[tuple[M.Adjustment, bool]] | None = None) -> list[Adjustment]:
    """The corrections of earlier cycles' traffic billed on this cycle (``adjustments`` rows),
    as credits against that traffic: positive when money is given back (the records' change,
    in their currency, with its sign reversed). ``rows``: :func:`targeted`, when read."""
    by_hash = {a.source_hash: a for a in plan.agreements}
    out = []
    for a, deduct in (rows if rows is not None else targeted(s, cycle_id)):
        if not deduct or a.source_delta == 0:
            continue
        ag = by_hash.get(a.agreement_hash or "")
        out.append(Adjustment(
            direction=a.direction, service=a.service, amount=-a.source_delta, currency=a.source_currency,
            description=f"correction {a.correction_id} of an earlier cycle's traffic", kind="adjustment",
            id=f"adjustment:{a.id}", agreement=ag.name if ag else "", agreement_version=ag.version if ag else 0))
    return out


# the statements every cycle runs, built once (building and keying one costs more than running it)
_OTHER_LINES = (select(M.BillingCycle, M.ChargeLine).join(M.ChargeLine, M.ChargeLine.cycle_id == M.BillingCycle.id)
                .where(M.ChargeLine.partner_id == sa.bindparam("partner_id"),
                       M.ChargeLine.cycle_id != sa.bindparam("cycle_id"))
                .order_by(M.ChargeLine.id))
_CORRECTIONS_OF = (select(M.Correction).where(M.Correction.partner_id == sa.bindparam("partner_id"))
                   .order_by(M.Correction.id))
_CYCLES_BEFORE = (select(M.BillingCycle).where(M.BillingCycle.partner_id == sa.bindparam("partner_id"),
                                               M.BillingCycle.local_end <= sa.bindparam("start"))
                  .order_by(M.BillingCycle.local_start))


def other_lines(s: Session, partner_id: int, cycle_id: int) -> list[tuple[M.BillingCycle, ChargeLine]]:
    """The partner's charge lines billed on other cycles than ``cycle_id``, with their cycle."""
    rows = s.execute(_OTHER_LINES, {"partner_id": partner_id, "cycle_id": cycle_id}).all()
    return [(c, ChargeLine.from_dict(ln.data)) for c, ln in rows]


_other_lines = other_lines  # (compatibility)


def history_of(s: Session, prow: M.Partner, per: Period, others: list[tuple[M.BillingCycle, ChargeLine]]
               ) -> tuple[CycleUsage, ...]:
    """The partner's earlier cycles (before this one), with their usage and charge lines."""
    lines_by_cycle: dict[int, list[ChargeLine]] = defaultdict(list)
    for c, ln in others:
        lines_by_cycle[c.id].append(ln)
    # a finalized cycle corrected since (icdsl rerate): what its latest correction evaluated
    corrected = {c.cycle_id: c for c in s.scalars(_CORRECTIONS_OF, {"partner_id": prow.id}) if c.charge_usage}
    out = []
    for c in s.scalars(_CYCLES_BEFORE, {"partner_id": prow.id, "start": per.local_start}):
        fix = corrected.get(c.id)
        usage, events = usage_of_json(fix.charge_usage if fix else c.charge_usage)
        lines = [ChargeLine.from_dict(d) for d in fix.charge_lines or ()] if fix else lines_by_cycle[c.id]
        out.append(CycleUsage(Days(c.local_start, c.local_end), tuple(usage), events, tuple(lines)))
    return tuple(out)


# --------------------------------------------------------------------------- storing


def store_lines(s: Session, cyc: M.BillingCycle, prow: M.Partner, lines: Sequence[ChargeLine], plan: Plan,
                invoice_lines: dict[int, M.InvoiceLine], t: Any) -> None:
    """Every charge line and its applications (see the module's documentation).
    ``invoice_lines``: ``id(charge line)`` -> the invoice line it became."""
    by_hash = {a.source_hash: a for a in plan.agreements}
    seen: dict[str, str] = {}
    for ln in lines:
        kh = key_hash(ln.key)
        if kh in seen:
            raise CycleError(f"two charge lines of cycle {prow.code} {cyc.label} have the same key {ln.key}: "
                             "a charge would be billed twice (a bug of the charge type)")
        seen[kh] = ln.key
        where, _stream, _payable = placement(ln, by_hash.get(ln.agreement_hash), prow.code)
        inv = invoice_lines.get(id(ln))
        row = M.ChargeLine(
            cycle_id=cyc.id, partner_id=prow.id, key=ln.key, key_hash=kh, kind=ln.kind[:64],
            charge_name=ln.charge_name[:300], agreement=ln.agreement[:300], agreement_version=ln.agreement_version,
            agreement_hash=ln.agreement_hash, stage=ln.stage, placement=where,
            invoice_line_id=inv.id if inv is not None else None, amount=ln.amount, currency=ln.currency,
            corrects_hash=key_hash(ln.corrects) if ln.corrects else None, data=ln.to_dict(), created_at=t)
        s.add(row)
        s.flush()
        for app, amount in ln.application_amounts().items():
            if ln.corrects is not None:
                continue  # a correction amends an application; it bills none for the first time
            s.add(M.ChargeApplication(key_hash=key_hash(app), key=app, charge_line_id=row.id, cycle_id=cyc.id,
                                      amount=amount, currency=ln.currency, created_at=t))
    if not lines:
        return  # nothing to write (the cycle's row is written with the rest of the result)
    try:
        s.flush()
    except Exception as e:  # the unique key of an application: billed on another cycle already
        if isinstance(e, sa.exc.IntegrityError):
            raise CycleError(f"cycle {prow.code} {cyc.label}: a charge application is already billed on another "
                             "cycle (the store refused to bill it twice)") from None
        raise


def share_adjustments(s: Session, cycle_id: int,
                      rows: list[tuple[M.Adjustment, bool]] | None = None) -> list[ShareAdjustment]:
    """The corrections of earlier cycles' revenue shares owed to other parties that are billed
    on the cycle (adjustments placed ``share``): lines of their party's statement. ``rows``:
    :func:`targeted`, when read."""
    return [ShareAdjustment(str(a.party), a.currency, a.amount, {
        "charge": a.charge_key, "adjustment_id": a.id, "corrects_charge_line_id": a.charge_line_id,
        "corrects_line_id": a.corrects_line_id, "key": a.charge_key,
        "description": f"Adjustment of an earlier cycle's share (correction {a.correction_id})"})
        for a, _deduct in (rows if rows is not None else targeted(s, cycle_id)) if a.placement == "share"]


def write_share_statements(s: Session, cyc: M.BillingCycle, prow: M.Partner,
                           shares: Sequence[ShareDraft], t: Any) -> list[M.ShareStatement]:
    """One statement row per party and currency of the cycle's revenue shares, as the engine
    drafted them (:func:`icdsl.cycle.charges.share_statements`, with the corrections of
    earlier cycles' shares billed on the cycle: :func:`share_adjustments`)."""
    out = []
    for d in shares:
        row = M.ShareStatement(cycle_id=cyc.id, partner_id=prow.id, party=d.party[:64], currency=d.currency,
                               status="draft", total=d.total, details=d.details, created_at=t)
        s.add(row)
        out.append(row)
    if out:
        s.flush()
    return out


def last_day(per: Period) -> date:
    return per.local_end - timedelta(days=1)


__all__ = ["BAD_REFUND", "HOLD", "KIND_ALIASES", "REFUND", "Evaluated", "billed_adjustments", "draft_of", "drafts_of",
           "event_names", "history_of", "needs_totals", "other_lines", "placement", "rates_of",
           "receivable_items", "refunds_of", "share_adjustments", "share_lines", "share_statements", "split_events", "split_refunds",
           "store_lines", "targeted", "usage_json", "usage_of_json", "versions_in_force", "write_share_statements"]
