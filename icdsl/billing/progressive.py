"""Progressive billing in the store (``icdsl cycle progressive PARTNER PERIOD --until DAY``): an
interim invoice raised in a period in progress, numbered, dated and sealed at once.

:func:`raise_interim` reads the partner's records of the period ingested so far, as a cycle
would (:func:`icdsl.billing.cycles.cycle_inputs`), and asks the engine
(:func:`icdsl.cycle.progressive.check`) whether the usage to ``until`` passed a threshold above
the one of the period's last interim invoice. If it did, each interim invoice is written as an
**invoice** (``doc_type`` ``invoice``, in the invoice series ``INV-YYYY-NNNNNN``) of no cycle,
with ``interim_period``, ``interim_until`` and ``interim_threshold`` (0018), finalized (issued
``until`` unless told, due ``due N days`` later) and sealed in the same transaction. The period's
cycle, when it runs, deducts it (:func:`icdsl.billing.cycles.interims_of`, read with the
cycle's inputs).

Refused (a :class:`CycleStateError`): a period whose cycle is invoiced or finalized already (its
invoice would not deduct the interim one), a day outside the period or before the last interim
invoice's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from icdsl.billing import base
from icdsl.billing import models as M
from icdsl.billing.cycles import (
    _FINALIZE_INVOICE,
    _insert,
    _insert_one,
    _lock_cycle,
    cycle_inputs,
    interims_of,
    line_row,
    next_numbers,
    partner_inputs,
    resolve_period,
    version_ids,
)
from icdsl.billing.documents import buyer_party, seller_party
from icdsl.billing.errors import CycleStateError
from icdsl.billing.seal import seal_unsealed
from icdsl.cycle import errors as engine_errors
from icdsl.cycle.offline import SummarySinks
from icdsl.cycle.progressive import ProgressiveCheck, check
from icdsl.plan.model import Plan


@dataclass
class InterimReport:
    """What :func:`raise_interim` did: the engine's finding and the invoices raised (number,
    stream, subtotal, tax, total)."""

    partner: str
    period: str
    found: ProgressiveCheck
    invoices: list[tuple[str, str, Decimal, Decimal, Decimal]] = field(default_factory=list)

    def __str__(self) -> str:
        out = [f"{self.partner} {self.period}: {self.found}"]
        cur = self.found.currency
        for number, stream, subtotal, tax, total in self.invoices:
            out.append(f"  {number} ({stream}): {subtotal} {cur} + tax {tax} = {total} {cur}, finalized")
        return "\n".join(out)


def raise_interim(store: Any, partner: str, period: Any, plan: Plan, until: date, *,
                  issue_date: date | None = None) -> InterimReport:
    """An interim invoice for ``partner``'s ``period`` if its usage to ``until`` passed a
    threshold (see the module's documentation)."""
    with store.session() as s:
        prow, per = resolve_period(s, partner, period, plan)
        cyc = _lock_cycle(store, s, prow, per)  # the partner's cycle lock: no cycle runs meanwhile
        if cyc is not None and cyc.status in ("invoiced", "finalized"):
            raise CycleStateError(f"the cycle {partner} {per.label} is {cyc.status}: progressive billing is for a "
                                  "period in progress (its final invoice would not deduct an interim one)")
        interims = interims_of(s, prow.id, per.label)
        batches = partner_inputs(s, prow.code, per.start, per.end)
        inputs = cycle_inputs(store, s, prow, per, plan, cyc.id if cyc is not None else 0, batches,
                              sinks=SummarySinks(), validators=())
        try:
            found = check(inputs, until, interims)
        except engine_errors.CycleError as e:
            raise CycleStateError(str(e)) from None
        report = InterimReport(prow.code, per.label, found)
        if not found.invoices:
            return report
        t = base.now()
        issue = issue_date or until
        due = issue + timedelta(days=prow.due_days)
        versions = version_ids(store, s, {ln.agreement_hash for inv in found.invoices for ln in inv.lines
                                          if ln.agreement_hash})
        numbers = next_numbers(store, s, f"invoice-{issue.year}", len(found.invoices))
        seller, buyer = seller_party(s), buyer_party(prow)
        for inv, n in zip(found.invoices, numbers, strict=True):
            number = f"INV-{issue.year}-{n:06d}"
            inv_id = _insert_one(
                s, M.Invoice, partner_id=prow.id, partner_code=prow.code, partner_name=prow.name, cycle_id=None,
                stream=inv.stream, currency=inv.currency, status="draft", subtotal=inv.subtotal,
                tax_kind=inv.tax.kind, tax_rate=prow.tax_rate, tax_amount=inv.tax.amount, total=inv.total,
                taxable_amount=inv.tax.taxable, tax_note=inv.tax.note, fx_rate_id=inv.fx_rate_id, created_at=t,
                doc_type="invoice", interim_period=per.label, interim_until=until, interim_threshold=found.passed)
            _insert(s, M.InvoiceLine, [line_row(inv_id, i, ln, versions, None, t) for i, ln in enumerate(inv.lines, 1)])
            s.connection().execute(_FINALIZE_INVOICE, [dict(b_id=inv_id, number=number, issue_date=issue,
                                                            due_date=due, finalized_at=t, seller=seller,
                                                            buyer=buyer)])
            report.invoices.append((number, inv.stream, inv.subtotal, inv.tax.amount, inv.total))
        store.audit(s, "interim_invoice", "partner", prow.id,
                    f"{partner} {per.label}: interim invoice(s) {', '.join(r[0] for r in report.invoices)} "
                    f"(usage to {until} {found.usage} passed {found.passed})")
        s.flush()
        seal_unsealed(s)  # tamper evidence, as for a cycle's documents
        return report


__all__ = ["InterimReport", "raise_interim"]
