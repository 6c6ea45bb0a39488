"""Reconciliation: a partner's invoice (and their CDR detail, when sent) against our view of
the same traffic, within the tolerances of the agreement.

::

    from icdsl.recon.engine import reconcile, reconcile_traffic

    # our records given by hand (the store's side: icdsl.billing.reconcile.reconcile_partner)
    r = reconcile_traffic(plan, invoice, records, detail=their_cdrs)
    r.lines            # LineComparison per service, destination and band
    r.records          # one row per record of either side (Arrow), r.record_counts by class
    r.their_total, r.our_total, r.difference

Our view is made by the cycle engine (:mod:`icdsl.recon.ours`); the lines are compared by
:mod:`icdsl.recon.lines` and the records by :mod:`icdsl.recon.records`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from icdsl.cycle.fx import FxTable
from icdsl.cycle.periods import Period
from icdsl.plan.model import Plan, Tolerances
from icdsl.recon.errors import ReconcileError
from icdsl.recon.lines import compare_lines
from icdsl.recon.model import PartnerInvoice, Reconciliation
from icdsl.recon.ours import OurView, our_view
from icdsl.recon.records import compare_sides

DEFAULT_TOLERANCES = Tolerances()

#: their CDR detail: one table, tables read one after the other, or a function that gives them
Detail = pa.Table | Iterable[pa.Table] | Callable[[], Iterable[pa.Table]]


def tolerances_for(plan: Plan, partner: str, first: date, last: date) -> Tolerances:
    """The tolerances of the partner's agreement in force on ``last`` (the period's last day) that
    states a ``reconcile`` block, else of any of its versions in force in the period; the
    defaults (exact) when none does."""
    stated = []
    for a in plan.agreements_for(partner):
        if a.reconcile is None:
            continue
        if a.effective_from > last or (a.effective_to is not None and a.effective_to < first):
            continue
        stated.append(a)
    if not stated:
        return DEFAULT_TOLERANCES
    stated.sort(key=lambda a: (a.effective_from <= last and (a.effective_to is None or a.effective_to >= last),
                               a.effective_from, a.version))
    return stated[-1].reconcile  # type: ignore[return-value]


def reconcile(invoice: PartnerInvoice, ours: OurView, plan: Plan, *, detail: Detail | None = None,
              tolerances: Tolerances | None = None, keep_matched: bool = True) -> Reconciliation:
    """The reconciliation of ``invoice`` with ``ours`` (and ``detail``, their records: a table,
    or tables read one after the other, or a function giving them, for a detail of any size:
    see :func:`icdsl.recon.records.compare_sides`); ``keep_matched``: False keeps only the
    records that differ in ``records`` (all are counted)."""
    per = ours.period
    first, last = per.local_start, per.local_end - timedelta(days=1)
    tol = tolerances if tolerances is not None else tolerances_for(plan, ours.partner, first, last)
    problems: list[str] = []
    if invoice.partner != ours.partner:
        raise ReconcileError(f"invoice {invoice.number} is {invoice.partner}'s, not {ours.partner}'s")
    if (invoice.period_start, invoice.period_end) != (first, last):
        problems.append(f"their invoice {invoice.number} covers {invoice.period_start} .. {invoice.period_end}, "
                        f"our period {per.label} is {first} .. {last}: compared with our period")
    currency = invoice.currency
    other = sorted({ln.currency for ln in invoice.lines if ln.currency and ln.currency != currency})
    if other:
        raise ReconcileError(f"invoice {invoice.number} is in {currency} but has lines in {', '.join(other)}",
                             help="import the invoice again with its lines in the invoice's currency")
    lines = compare_lines(invoice.lines, ours.lines, plan, ours.partner, ours.services, tol, currency, problems)
    their_total = sum((ln.amount for ln in invoice.lines), Decimal(0))
    our_total = sum((ln.amount for ln in ours.lines), Decimal(0))
    if invoice.total != their_total:
        problems.append(f"their invoice states a total of {invoice.total} {currency}, its lines add up to "
                        f"{their_total} {currency}: the lines are compared")
    out = Reconciliation(partner=ours.partner, period_start=first, period_end=last, invoice=invoice, tolerances=tol,
                         lines=lines, their_total=their_total, our_total=our_total, currency=currency,
                         their_stated_total=invoice.total, problems=problems, agreement=tol.agreement)
    if detail is not None:
        if ours.records is None:
            raise ReconcileError("their CDR detail was given but our records were not kept",
                                 help="run with our records (keep_records=True)")
        keys = {ln.line: ln.key for ln in ours.lines}
        theirs = detail() if callable(detail) else detail
        out.records, out.record_counts = compare_sides(ours.records, theirs, tol, ours.scale, keys,
                                                       keep_matched=keep_matched)
        out.records_matched_kept = keep_matched
    return out


def reconcile_traffic(plan: Plan, invoice: PartnerInvoice, records: pa.Table | Sequence[Any], *,
                      detail: Detail | None = None, period: str | date | Period | None = None,
                      fx: FxTable | None = None, tolerances: Tolerances | None = None,
                      keep_matched: bool = True) -> Reconciliation:
    """Reconcile ``invoice`` with our ``records`` of its period (or ``period``), rated here by
    the cycle engine with the plan's agreements; ``detail``: their CDR detail."""
    ours = our_view(plan, invoice.partner, period if period is not None else invoice.period_start, records,
                    invoice.currency, fx=fx, keep_records=detail is not None)
    return reconcile(invoice, ours, plan, detail=detail, tolerances=tolerances, keep_matched=keep_matched)
