"""What the dashboard and the reconciliation screen read besides the billing documents, as
functions handed to the terminal (``IcdslApp(feeds=...)``), so that the screens know no store
module and tests give them plain data.

- ``reconcile(partner, period) -> Reconciliation`` (:mod:`icdsl.recon.model`): the partner's
  invoice of the period against our view of the same traffic (``icdsl reconcile``'s result);
- ``reconciliations() -> [Reconciliation]``: the ones to list on the dashboard (the latest
  per partner and period);
- ``disputes() -> [dispute]``: the disputes still open (not fully accepted, rejected or
  withdrawn); each a mapping or an object with the fields of :class:`DisputeRow`;
- ``assurance() -> [finding]``: revenue-assurance findings (``icdsl assure``), each a mapping
  or an object with the fields of :class:`FindingRow`;
- ``partner_invoices() -> [PartnerInvoice]``: the partners' invoices imported, to choose one.

A feed left ``None`` is a panel that says what is not connected; a feed that raises shows its
error in the panel (the terminal carries on). :func:`dispute_row` and :func:`finding_row` read
objects by field name, so that a module's own dataclasses need no adapter when they use these
names (``status`` is accepted for ``state``, ``kind`` for ``code``, ``what_to_do`` for
``action``).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from icdsl.recon.model import LINE_MATCHED, PartnerInvoice, Reconciliation


@dataclass
class Feeds:
    reconcile: Callable[[str, str], Reconciliation] | None = None
    reconciliations: Callable[[], Sequence[Reconciliation]] | None = None
    disputes: Callable[[], Sequence[Any]] | None = None
    assurance: Callable[[], Sequence[Any]] | None = None
    partner_invoices: Callable[[], Sequence[PartnerInvoice]] | None = None


@dataclass(frozen=True)
class ReconRow:
    """One reconciliation on the dashboard: both totals and what differs."""

    partner: str
    period: str
    invoice: str  # their invoice number
    currency: str
    their_total: Decimal
    our_total: Decimal
    lines: int
    differing: int  # lines outside the tolerances (differs, only theirs, only ours)
    disputable: Decimal  # what they billed above our view on the lines outside the tolerances

    @property
    def difference(self) -> Decimal:
        return self.their_total - self.our_total


def period_label(start: date, end: date) -> str:
    """``2026-03`` for a whole calendar month, else ``2026-03-01..2026-03-15`` (end inclusive)."""
    last = calendar.monthrange(start.year, start.month)[1]
    if start.day == 1 and end == start.replace(day=last):
        return f"{start:%Y-%m}"
    return f"{start}..{end}"


def recon_row(r: Reconciliation) -> ReconRow:
    period = period_label(r.period_start, r.period_end)
    differing = [c for c in r.lines if c.status != LINE_MATCHED]
    return ReconRow(r.partner, period, r.invoice.number, r.currency or r.invoice.currency, r.their_total,
                    r.our_total, len(r.lines), len(differing), sum((c.amount_difference for c in r.disputable),
                                                                   Decimal(0)))


@dataclass(frozen=True)
class DisputeRow:
    number: str
    partner: str
    state: str  # open, sent, partially_accepted, ...
    amount: Decimal  # disputed
    currency: str
    period: str = ""
    invoice: str = ""  # the partner's invoice disputed
    opened: date | None = None
    accepted: Decimal | None = None  # credited by the partner so far


@dataclass(frozen=True)
class FindingRow:
    severity: str  # error | warning | info
    code: str
    partner: str
    message: str
    action: str = ""  # what to do
    amount: Decimal | None = None  # the money at stake, when known
    currency: str = ""
    subject: str = ""  # the item, agreement, destination ... the finding is about


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = obj.get(n) if isinstance(obj, Mapping) else getattr(obj, n, None)
        if v is not None:
            return v
    return default


def _money(v: Any) -> Decimal | None:
    if v is None or v == "":
        return None
    return v if isinstance(v, Decimal) else Decimal(str(v))


def dispute_row(d: Any) -> DisputeRow:
    if isinstance(d, DisputeRow):
        return d
    return DisputeRow(str(_get(d, "number", "id", default="")), str(_get(d, "partner", "partner_code", default="")),
                      str(_get(d, "state", "status", default="")),
                      _money(_get(d, "amount", "disputed_amount", "disputed")) or Decimal(0),
                      str(_get(d, "currency", default="")), str(_get(d, "period", default="")),
                      str(_get(d, "invoice", "invoice_number", default="")), _get(d, "opened", "opened_on", "created"),
                      _money(_get(d, "accepted", "accepted_amount")))


def finding_row(f: Any) -> FindingRow:
    if isinstance(f, FindingRow):
        return f
    return FindingRow(str(_get(f, "severity", default="warning")), str(_get(f, "code", "kind", default="")),
                      str(_get(f, "partner", "partner_code", default="")), str(_get(f, "message", default="")),
                      str(_get(f, "action", "what_to_do", "fix", default="")), _money(_get(f, "amount")),
                      str(_get(f, "currency", default="")), str(_get(f, "subject", "item", "destination", default="")))


def call(feed: Callable[[], Sequence[Any]] | None) -> tuple[list[Any] | None, str | None]:
    """(rows, None), (None, None) for a feed not connected, or (None, why) when it failed."""
    if feed is None:
        return None, None
    try:
        return list(feed()), None
    except Exception as e:  # a feed's failure is its panel's message, never the terminal's end
        return None, f"{type(e).__name__}: {e}"


def store_feeds(store: Any) -> Feeds:
    """The feeds of a store, for ``icdsl tui --db URL``.

    THE WIRING POINT (for the merge of issue 13): each feed is one function of the store-side
    module that computes it. Until those modules are on main, the feeds stay ``None`` and the
    panels say what is not connected. At merge::

        from icdsl.billing.reconcile import reconcile_partner
        feeds.reconcile = lambda partner, period: reconcile_partner(store, partner, period)
        feeds.reconciliations = lambda: <the latest reconciliation per partner invoice>
        feeds.disputes = lambda: <disputes.list_disputes(store, open_only=True)>
        feeds.assurance = lambda: <assurance.findings(store, <the current period>)>
        feeds.partner_invoices = lambda: <partner_invoices.list_invoices(store)>
    """
    return Feeds()
