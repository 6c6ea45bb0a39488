"""``icdsl reconcile P PERIOD``: a partner's invoice against our view of the same traffic, on the
store's side.

Our view is read from the store, nothing is written:

- when the partner's cycle of the period has run (draft or finalized), its rated records (the
  cycle's ``rated`` file, verified against its sha256) are what we billed: our lines are their
  sums by the cycle's ``line`` (the same lines as the cycle's, rounded once in the invoice's
  currency as our draft lines are), and our records for the record-level comparison are those
  rows with the calling and called numbers of the intake records they came from;
- otherwise the engine rates the partner's ingested records of the period the way a cycle run
  reads them (:func:`icdsl.billing.cycles.cycle_inputs`: intake files, FX rates), keeping only
  what the comparison needs (:func:`icdsl.recon.ours.run_ours`).

Their invoice comes from an :class:`InvoiceSource`: the partner-invoice import of the store
(``icdsl partner-invoice import``) through :func:`default_source`, or any object with the same
two methods (tests pass one of their own). The comparison itself is :func:`icdsl.recon.engine.reconcile`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from icdsl.billing import models as M
from icdsl.billing import partner_invoices
from icdsl.billing.cycles import _read_partner, cycle_inputs, partner_inputs, resolve_period
from icdsl.billing.errors import StoreError
from icdsl.billing.fx import FxTable
from icdsl.billing.partner_invoices import PartnerInvoiceError
from icdsl.cycle.invoicing import Group
from icdsl.cycle.periods import Period
from icdsl.cycle.rater import plan_scale
from icdsl.plan.model import Plan
from icdsl.recon.engine import Detail, reconcile
from icdsl.recon.errors import ReconcileError
from icdsl.recon.model import PartnerInvoice, Reconciliation
from icdsl.recon.ours import (
    NumberKeeper,
    OurView,
    RecordKeeper,
    billed_by_partner,
    billed_rows,
    our_lines,
    run_ours,
)
from icdsl.recon.spill import Spill, parquet_batches

if TYPE_CHECKING:
    from icdsl.billing.store import Store

__all__ = ["InvoiceSource", "ReconcileStoreError", "default_source", "reconcile_partner"]


class ReconcileStoreError(StoreError):
    """A reconciliation the store cannot make (no invoice imported, an unknown partner...)."""


class InvoiceSource(Protocol):
    """Where partners' invoices come from (the partner-invoice import, or a test's own).

    ``invoice``: the partner's invoice numbered ``number`` or, with None, the latest imported
    one whose period overlaps ``first .. last`` (local days, ``last`` included); None when there
    is none. ``detail``: their CDR detail of that invoice as an Arrow table (``id``,
    ``a_number``, ``b_number``, ``start`` int64 µs UTC, ``duration_s``, optional ``amount`` and
    ``rate``), or tables of it read one after the other, or a function giving them (a detail
    of any size: :data:`icdsl.recon.engine.Detail`); None when they sent none."""

    def invoice(self, partner: str, number: str | None, first: Any, last: Any) -> PartnerInvoice | None: ...

    def detail(self, invoice: PartnerInvoice) -> Detail | None: ...


class _ImportedInvoices:
    """The store's imported invoices (``icdsl partner-invoice import``, :mod:`icdsl.billing.partner_invoices`)."""

    def __init__(self, store: Store):
        self.store = store

    def invoice(self, partner: str, number: str | None, first: Any, last: Any) -> PartnerInvoice | None:
        if number:
            try:
                return partner_invoices.load_partner_invoice(self.store, number, partner)
            except PartnerInvoiceError as e:
                raise ReconcileStoreError(str(e)) from None
        # the latest invoice (not a credit note) whose period overlaps the days reconciled
        found = [inv for inv in partner_invoices.partner_invoices(self.store, partner, first=first, last=last)
                 if inv.kind == "invoice"]
        return found[-1] if found else None

    def detail(self, invoice: PartnerInvoice) -> Detail | None:
        if invoice.id is None or not partner_invoices.details(self.store, invoice.id):
            return None
        ref = invoice.id
        return lambda: partner_invoices.detail_batches(self.store, ref)  # read a batch at a time


def default_source(store: Store) -> InvoiceSource:
    """The store's partner-invoice import as an :class:`InvoiceSource`."""
    return _ImportedInvoices(store)


def reconcile_partner(store: Store, partner: str, period: Any, invoice: PartnerInvoice | str | None = None, *,
                      plan: Plan, source: InvoiceSource | None = None, records: bool = True,
                      all_records: bool = False) -> Reconciliation:
    """The partner's invoice for ``period`` (``invoice``: the invoice itself, its number, or
    None for the latest imported one of the period) against our view of the same traffic.
    ``records``: compare record by record when their detail exists; the reconciliation's
    ``records`` then hold the records that differ (``all_records``: every record)."""
    with store.reading() as s:
        try:
            prow, per = resolve_period(s, partner, period, plan)
        except StoreError as e:
            raise ReconcileStoreError(str(e)) from None
        first, last = per.local_start, per.local_end - timedelta(days=1)
        src = source
        if isinstance(invoice, PartnerInvoice):
            inv = invoice
        else:
            src = src if src is not None else default_source(store)
            inv = src.invoice(partner, invoice, first, last)
            if inv is None:
                what = f"invoice {invoice}" if invoice else f"invoice for {per.label}"
                raise ReconcileStoreError(f"no {what} of {partner} is imported: import it first with "
                                          f"`icdsl partner-invoice import FILE --partner {partner}`")
        if inv.partner != partner:
            raise ReconcileStoreError(f"invoice {inv.number} is {inv.partner}'s, not {partner}'s")
        detail = None
        if records:
            if src is None and inv.detail_batches:
                src = default_source(store)
            detail = src.detail(inv) if src is not None else None
        cycle = s.scalars(select(M.BillingCycle).where(
            M.BillingCycle.partner_id == prow.id, M.BillingCycle.period_start == per.start,
            M.BillingCycle.period_end == per.end)).first()
        rated = None
        if cycle is not None:
            rated = s.scalars(select(M.DataFile).where(M.DataFile.cycle_id == cycle.id, M.DataFile.kind == "rated")
                              .order_by(M.DataFile.id.desc())).first()
        batches = partner_inputs(s, partner, per.start, per.end)
        fx = FxTable.load(s, plan)
        inputs = None
        if rated is not None:
            note = f"our view: cycle #{cycle.id} ({cycle.status}) as rated"
        else:
            inputs = cycle_inputs(store, s, prow, per, plan, -1, batches, accept=("all",), validators=())
            note = f"our view: {partner}'s ingested records of {per.label} rated now (no cycle has run)"
    # the inputs are plain data (files by path): the rating and the comparison run outside the transaction
    try:
        if inputs is None:
            ours = _from_cycle(store, rated, plan, partner, per, inv.currency, fx, batches, keep=detail is not None)
        else:
            ours = run_ours(inputs, inv.currency, records=detail is not None)
        out = reconcile(inv, ours, plan, detail=detail, keep_matched=all_records)
    except ReconcileError as e:
        raise ReconcileStoreError(str(e)) from None
    finally:
        if "ours" in locals() and isinstance(ours.records, Spill):
            ours.records.close()  # our records on disk: their temporary files removed now
    out.problems.insert(0, note)
    return out


BATCH_ROWS = 500_000  # rated records read at a time

_RATED_COLUMNS = ["id", "direction", "service", "agreement", "agreement_version", "agreement_hash", "prefix",
                  "destination", "band", "billed_units", "rate", "amount", "currency", "rule", "start", "duration_s",
                  "line"]


def _from_cycle(store: Store, rated_file: M.DataFile, plan: Plan, partner: str, per: Period, currency: str,
                fx: FxTable, batches: list[tuple[int, str, str, int]], *, keep: bool) -> OurView:
    """Our view from the cycle's rated file, read a batch at a time: our lines summed as it is
    read; our records (``keep``) given the numbers of the intake records they were rated from,
    read alongside in the same order (:class:`NumberKeeper`), and held by called number
    (:class:`~icdsl.recon.spill.Spill`: on disk once many)."""
    store.data.verify(rated_file.path, rated_file.sha256)
    services = billed_by_partner(plan, partner)
    scale = plan_scale(plan)
    keeper = None
    if keep:
        def intake() -> Iterator[pa.Table]:
            for _batch, path, sha, _n in batches:
                store.data.verify(path, sha)
                yield from _read_partner(str(store.data.abs(path)), partner, per)
        keeper = RecordKeeper(services, scale, NumberKeeper(services, more=intake()))
    sums = _LineSums()
    for batch in parquet_batches(store.data.abs(rated_file.path), BATCH_ROWS, list(_RATED_COLUMNS)):
        rated = billed_rows(pa.Table.from_batches([batch]), services)
        if rated is None or not rated.num_rows:
            continue
        sums.add(rated)
        if keeper is not None:
            keeper.write(rated)
    lines = our_lines(sums.groups(), plan, services, currency, fx, per)
    records = keeper.result() if keeper is not None else None
    return OurView(partner=partner, period=per, currency=currency, lines=lines, records=records, scale=scale,
                   services=services)


_DIMS = ("destination", "band")
_KEYS = ("line", "agreement_hash", "agreement", "agreement_version", "direction", "service", "currency", *_DIMS)
_SETS = ("rate", "prefix", "rule")


class _LineSums:
    """The cycle's lines of rated records read batch by batch, summed by their ``line`` (exact
    decimal sums)."""

    def __init__(self) -> None:
        self.acc: dict[tuple[Any, ...], dict[str, Any]] = {}

    def add(self, rated: pa.Table) -> None:
        t = rated.select([*_KEYS, "billed_units", "amount", "start", *_SETS])
        for c in ("destination", "band", *_SETS):
            t = t.set_column(t.schema.get_field_index(c), c, pc.fill_null(pc.cast(t.column(c), pa.string()), ""))
        sums = t.group_by(list(_KEYS)).aggregate([("line", "count"), ("billed_units", "sum"), ("amount", "sum"),
                                                  ("start", "min"), ("start", "max"), ("rate", "distinct"),
                                                  ("prefix", "distinct"), ("rule", "distinct")])
        for r in sums.to_pylist():
            k = tuple(r[x] for x in _KEYS)
            a = self.acc.get(k)
            amount = Decimal(r["amount_sum"] or 0)
            if a is None:
                self.acc[k] = {"count": r["line_count"], "units": r["billed_units_sum"] or 0, "amount": amount,
                               "first": r["start_min"], "last": r["start_max"],
                               **{c: set(r[f"{c}_distinct"]) for c in _SETS}}
                continue
            a["count"] += r["line_count"]
            a["units"] += r["billed_units_sum"] or 0
            a["amount"] += amount
            a["first"] = min(a["first"], r["start_min"])
            a["last"] = max(a["last"], r["start_max"])
            for c in _SETS:
                a[c].update(r[f"{c}_distinct"])

    def groups(self) -> list[Group]:
        out = []
        for k, a in self.acc.items():
            r = dict(zip(_KEYS, k, strict=True))
            out.append(Group(key=r["line"], agreement_hash=r["agreement_hash"], agreement=r["agreement"],
                             agreement_version=r["agreement_version"], direction=r["direction"],
                             service=r["service"], currency=r["currency"], dims={d: r[d] or "" for d in _DIMS},
                             count=a["count"], units=a["units"], amount=a["amount"], first=a["first"],
                             last=a["last"], values={c: a[c] for c in _SETS}))
        out.sort(key=lambda g: g.key)
        return out
