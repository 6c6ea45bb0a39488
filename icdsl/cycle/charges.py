"""A cycle's charges as plain data: events and refunds set apart, the usage's charge lines
evaluated against the history, and where each line goes (an invoice stream, the settlement
statement, a revenue-share statement). No database: :mod:`icdsl.billing.charging` reads the
history from the store and writes the lines (the recipe of ``docs/charges.md``).

:func:`icdsl.cycle.engine.run` calls, in order:

1. :func:`split_refunds` and :func:`split_events` on every chunk of records: refund records
   (``event`` = ``refund``) and event records (a porting, a SIM activation: records whose
   ``event`` field, else whose ``service``, is the event of an ``event`` charge of the
   partner's agreements, and that no agreement prices as a service) are set apart, not rated;
2. the rater rates the rest with ``rate_batch_with_charges`` and sums :class:`Usage`;
3. :func:`evaluate` evaluates the surcharge lines (``record_charge_lines``) and, per agreement
   version in force during the cycle, every cycle-level charge (``evaluate_cycle``) with the
   partner's inventory, the cycle's events, the earlier cycles (``history``) and what other
   cycles billed (``billed``): an application billed on another cycle is skipped, a changed
   amount becomes a correction line. A :class:`ChargeHold` becomes an error finding
   (``charge_hold``): the cycle stops before invoicing unless it is accepted (the held charge
   is then left out of this cycle);
4. :func:`drafts_of` turns charge lines into invoice lines (on the stream the agreement says,
   converted into the invoice currency like traffic) or into payable lines of the settlement
   statement (surcharges of netted services, revenue shares due to the partner), and
   :func:`share_statements` gives one revenue-share statement per party and currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from icdsl.charges.context import (
    Adjustment,
    ChargeContext,
    CycleUsage,
    EventRecord,
    FxRate,
    Rates,
    Usage,
    agreement_days,
    event_or_service,
    event_values,
)
from icdsl.charges.evaluate import charge_type, evaluate_cycle, needs_cycle_totals, record_charge_lines
from icdsl.charges.lines import STAGES, ChargeError, ChargeHold, ChargeLine
from icdsl.charges.periods import Days
from icdsl.cycle.amounts import convert, exact_sum, round_line, rounding_text
from icdsl.cycle.errors import CycleError
from icdsl.cycle.invoicing import DEFAULT_STREAM, NETTING, DraftLine, fx_for
from icdsl.cycle.periods import Period, local_days, to_us
from icdsl.cycle.validation import Finding
from icdsl.plan.model import Agreement, Partner, Plan
from icdsl.rating.batch import rate_batch

HOLD = "charge_hold"
BAD_REFUND = "bad_refund"
#: stream selectors naming several kinds of charge
KIND_ALIASES = {
    "fees": ("recurring", "one_time", "event", "percentage"),
    "discount": ("volume_discount",),
    "discounts": ("volume_discount",),
    "tiered": ("tiered_price",),
    "tiers": ("tiered_price",),
    "commit": ("commitment",),
    "commitments": ("commitment",),
    "share": ("revenue_share",),
    "shares": ("revenue_share",),
}


# --------------------------------------------------------------------------- events


def event_names(plan: Plan, partner: str) -> list[str]:
    """Event types counted by the charges of the partner's agreements (the ``event`` charges'
    event, and what a charge type's optional ``event_types(charge)`` returns: a plugin's
    slice-hours) that none of them prices as a service."""
    ags = plan.agreements_for(partner)
    services = {sp.service for a in ags for sp in a.services}
    names = {str(c.param("event")) for a in ags for c in a.charges if c.kind == "event" and c.param("event")}
    for a in ags:
        for c in a.charges:
            try:
                fn = getattr(charge_type(c.kind, None, c.span), "event_types", None)
            except ChargeError:  # a charge type not installed: the evaluation reports it
                continue
            names.update(str(x) for x in (fn(c) if callable(fn) else ()))
    return sorted(names - services)


def split_events(table: pa.Table, names: Sequence[str], timezone: str, partner: str
                 ) -> tuple[pa.Table, list[EventRecord]]:
    """(the records to rate, the event records) of a chunk: records whose ``event`` field (where
    it is empty or absent: whose ``service``) is one of ``names``, counted on their local day
    in ``timezone`` with their ``units`` (empty: 1)."""
    if not names or table.num_rows == 0:
        return table, []
    which = event_or_service(table)
    mask = pc.fill_null(pc.is_in(which, value_set=pa.array(list(names), pa.string())), False)
    if not pc.any(mask).as_py():
        return table, []
    sub = table.filter(mask)
    kinds = which.filter(mask)
    if "partner" in sub.column_names:  # another partner's record is not this partner's event
        mine = pc.fill_null(pc.equal(pc.cast(sub.column("partner"), pa.string()), partner), False)
        sub, kinds = sub.filter(mine), kinds.filter(mine)
    n = sub.num_rows
    ids = sub.column("id").to_pylist() if "id" in sub.column_names else [None] * n
    units = sub.column("units").to_pylist() if "units" in sub.column_names else [None] * n
    parts = sub.column("partner").to_pylist() if "partner" in sub.column_names else [""] * n
    starts = to_us(sub.column("start"))
    days = local_days(starts, timezone)
    values, ats = event_values(sub), starts.tolist()
    events = [EventRecord(str(ids[i]), ev, days[i], 1 if units[i] is None else int(units[i]), parts[i] or "",
                          values[i], int(ats[i] or 0))
              for i, ev in enumerate(kinds.to_pylist())]
    return table.filter(pc.invert(mask)), events


# --------------------------------------------------------------------------- refunds

#: the ``event`` of a refund record
REFUND = "refund"


def split_refunds(table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
    """(the records to rate, the refund records) of a chunk: records whose ``event`` field is
    ``refund``. A refund record is never rated as traffic (see :func:`refunds_of`)."""
    if table.num_rows == 0 or "event" not in table.column_names:
        return table, None
    mask = pc.fill_null(pc.equal(pc.cast(table.column("event"), pa.string()), REFUND), False)
    if not pc.any(mask).as_py():
        return table, None
    return table.filter(pc.invert(mask)), table.filter(mask)


def _text(table: pa.Table, name: str) -> list[str]:
    if name not in table.column_names:
        return [""] * table.num_rows
    return [("" if v is None else str(v).strip()) for v in pc.cast(table.column(name), pa.string()).to_pylist()]


def refunds_of(plan: Plan, table: pa.Table, timezone: str, partner: str) -> tuple[list[Adjustment], list[tuple[str, str]]]:
    """The refunds of a chunk of refund records, and a problem per refund that cannot be used.

    A refund record is a record of the refunded traffic (its ``direction``, ``service``,
    ``b_number``, ``units``... as the purchase had them) with ``event`` = ``refund``,
    ``refund_of`` = the id of the purchase it refunds (required) and, for a partial refund,
    ``refund_amount`` (a positive decimal; ``refund_currency``, default the currency the record
    is priced in). The record is rated like a purchase by the agreement version in force on its
    day: that says which agreement version and scope it is against, and, without
    ``refund_amount``, how much is refunded (the full price). It counts in the cycle holding
    its local day; it never changes the rated traffic or the invoice: ``on net`` revenue
    shares deduct it."""
    ids = _text(table, "id")
    extra = {i: (r, a, c) for i, r, a, c in zip(ids, _text(table, "refund_of"), _text(table, "refund_amount"),
                                                 _text(table, "refund_currency"), strict=True)}
    rated, rejects = rate_batch(plan, table)
    problems = []
    if rejects.num_rows:
        rid = _text(rejects, "id")
        why = _text(rejects, "reason")
        for i, r in zip(rid, why, strict=True):
            problems.append((i, f"refund {i}: not priced by any agreement ({r}), so it is against no traffic"))
    out = []
    cols = {k: rated.column(k).to_pylist() for k in ("id", "agreement", "agreement_version", "direction", "service",
                                                       "currency", "amount")}
    days = local_days(to_us(rated.column("start")), timezone)
    for n in range(rated.num_rows):
        rid = str(cols["id"][n])
        refers, amount_text, cur = extra.get(rid, ("", "", ""))
        if not refers:
            problems.append((rid, f"refund {rid}: refund_of is empty: say which purchase (record id) it refunds"))
            continue
        amount = Decimal(cols["amount"][n])
        if amount_text:
            try:
                amount = Decimal(amount_text)
            except ArithmeticError:
                problems.append((rid, f"refund {rid}: refund_amount '{amount_text}' is not a number"))
                continue
            if not amount.is_finite() or amount <= 0:
                problems.append((rid, f"refund {rid}: refund_amount {amount_text} must be positive"))
                continue
        day = days[n]
        out.append(Adjustment(
            direction=str(cols["direction"][n]), service=str(cols["service"][n]), amount=amount,
            currency=cur.upper() if cur and amount_text else str(cols["currency"][n]),
            description=f"refund of {refers}", kind="refund", id=rid, refers_to=refers, day=day, partner=partner,
            agreement=str(cols["agreement"][n]), agreement_version=int(cols["agreement_version"][n])))
    return out, problems


def rates_of(fx: Any, agreement: Agreement) -> Rates | None:
    """The charges' view of the store's fx table for ``agreement`` (its ``fx`` source)."""
    if fx is None or not agreement.fx:
        return None
    source = agreement.fx

    def rate(base: str, quote: str, day: date) -> FxRate | None:
        q = fx.quote(source, base, quote, day)
        return None if q is None else FxRate(base, quote, q.rate, day, str(q))

    return rate


# --------------------------------------------------------------------------- usage as JSON


def usage_json(usage: Iterable[Usage], events: Iterable[EventRecord], refunds: Iterable[Adjustment] = ()
               ) -> dict[str, Any]:
    ev: dict[str, int] = defaultdict(int)
    for e in events:
        ev[e.event] += e.units
    out: dict[str, Any] = {
        "usage": [{k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(u).items()} for u in usage],
        "events": dict(sorted(ev.items()))}
    rf: dict[str, Decimal] = defaultdict(Decimal)
    n = 0
    for a in refunds:
        rf[a.currency] += a.amount
        n += 1
    if n:
        out["refunds"] = {"records": n, "amounts": {k: str(v) for k, v in sorted(rf.items())}}
    return out


def usage_of_json(data: dict[str, Any] | None) -> tuple[list[Usage], int]:
    if not data:
        return [], 0
    out = []
    for u in data.get("usage", []):
        d = dict(u)
        d["amount"] = Decimal(d["amount"])
        d["record_charges"] = Decimal(d["record_charges"])
        out.append(Usage(**d))
    return out, sum(int(v) for v in data.get("events", {}).values())


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluated:
    lines: list[ChargeLine] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def needs_totals(plan: Plan, partner: str) -> bool:
    """True when a per-record charge of the partner's agreements reads ``cycle.*``."""
    sub = replace(plan, agreements=plan.agreements_for(partner))
    return needs_cycle_totals(sub)


def versions_in_force(plan: Plan, partner: str, days: Days) -> list[Agreement]:
    return [a for a in plan.agreements_for(partner) if agreement_days(a).intersect(days) is not None]


def evaluate(plan: Plan, partner: Partner, period: Period, usage: Sequence[Usage], events: Sequence[EventRecord],
             record_charges: pa.Table | None, accept: Iterable[str] = (), *, fx: Any = None,
             refunds: Sequence[Adjustment] = (), refund_problems: Sequence[tuple[str, str]] = (),
             history: Sequence[CycleUsage] = (), billed: Mapping[str, Any] | None = None,
             items: Sequence[Any] = (), credits: Sequence[Adjustment] = ()) -> Evaluated:
    """Every charge of the partner's cycle (see the module's documentation). ``fx``: an
    :class:`~icdsl.cycle.fx.FxTable`; ``refunds``: the cycle's refund records (:func:`refunds_of`),
    deducted with ``credits`` (corrections of earlier cycles' traffic billed on this one) by
    ``on net`` revenue shares; ``refund_problems``: refund records that cannot be used (an error
    finding ``bad_refund``: accepted, they are left out); ``history``: the partner's earlier
    cycles; ``billed``: what other cycles billed (``icdsl.charges.lines.billed_amounts``);
    ``items``: the partner's inventory."""
    accepted = set(accept)
    out = Evaluated()
    if refund_problems:
        ok = BAD_REFUND in accepted or "all" in accepted
        out.findings.append(Finding(
            BAD_REFUND, "error", f"{len(refund_problems)} refund record(s) cannot be deducted: "
            f"{refund_problems[0][1]}" + (f" (and {len(refund_problems) - 1} more)" if len(refund_problems) > 1 else "")
            + f"; fix them, or accept with --accept {BAD_REFUND} to leave them out", count=len(refund_problems),
            samples=tuple(i for i, _ in refund_problems[:10]), validator="charges", accepted=ok,
            details={"problems": [m for _, m in refund_problems[:50]]}))
    if record_charges is not None and record_charges.num_rows:
        try:
            out.lines += record_charge_lines(plan, [record_charges], period.label)
        except ChargeError as e:
            raise CycleError(f"cycle {partner.code} {period.label}: {e}") from None
    for ag, ctx in charge_contexts(plan, partner, period, usage, events, fx=fx, refunds=refunds, history=history,
                                   billed=billed, items=items, credits=credits):
        current = ag
        while True:
            try:
                out.lines += evaluate_cycle(ctx)
                break
            except ChargeHold as h:
                ok = HOLD in accepted or "all" in accepted
                out.findings.append(Finding(HOLD, "error", f"{h} (the cycle is held for review: accept with "
                                            f"--accept {HOLD} to invoice it without this charge)",
                                            validator="charges", accepted=ok,
                                            details={"rule": str(h.span), "agreement": ag.key}))
                if not ok:
                    break
                left = tuple(c for c in current.charges if c.span != h.span)
                if len(left) == len(current.charges):
                    break
                current = replace(current, charges=left)
                ctx = replace(ctx, agreement=current, versions=tuple(current if v is ctx.agreement else v
                                                                     for v in ctx.versions))
            except ChargeError as e:
                raise CycleError(f"cycle {partner.code} {period.label}, agreement {ag.key}: {e}") from e
    return out


def charge_contexts(plan: Plan, partner: Partner, period: Period, usage: Sequence[Usage],
                    events: Sequence[EventRecord], *, fx: Any = None, refunds: Sequence[Adjustment] = (),
                    history: Sequence[CycleUsage] = (), billed: Mapping[str, Any] | None = None,
                    items: Sequence[Any] = (), credits: Sequence[Adjustment] = ()
                    ) -> Iterator[tuple[Agreement, ChargeContext]]:
    """(agreement version, its :class:`ChargeContext`) of every version of the
    partner's agreements in force during the period: the one place a cycle's charge context is
    assembled (:func:`evaluate` evaluates them; ``icdsl commitments`` measures in them)."""
    days = Days(period.local_start, period.local_end)
    billed = dict(billed or {})
    history, items = tuple(history), tuple(items)
    adjustments = tuple(refunds) + tuple(credits)
    for ag in versions_in_force(plan, partner.code, days):
        versions = tuple(a for a in plan.agreements_for(partner.code) if a.name == ag.name)
        yield ag, ChargeContext(agreement=ag, partner=partner, cycle=days, cycle_label=period.label,
                                usage=tuple(usage), inventory=items, events=tuple(events), history=history,
                                billed=billed, versions=versions, adjustments=adjustments, fx=rates_of(fx, ag))


# --------------------------------------------------------------------------- placement


def placement(line: ChargeLine, agreement: Agreement | None, partner: str) -> tuple[str, str, bool]:
    """(placement, stream, payable): ``invoice`` on a stream, ``statement`` (payable to the
    partner on the settlement statement) or ``share`` (a revenue-share statement; a share due
    to the partner itself is also payable on the settlement statement)."""
    if line.kind == "revenue_share" or line.stage == "share":
        return "share", NETTING, line.dimensions.get("party") == partner
    if agreement is not None and line.kind == "surcharge" and line.scope and \
            all(tuple(x) in agreement.netting for x in line.scope):
        return "statement", NETTING, True
    explicit = line.dimensions.get("stream")
    if explicit:
        return "invoice", str(explicit), False
    if agreement is None or not agreement.streams:
        return "invoice", DEFAULT_STREAM, False
    for st in agreement.streams:
        if ("charge", line.charge_name) in st.selectors:
            return "invoice", st.name, False
    for st in agreement.streams:
        for sel in st.selectors:
            if sel[0] == "kind" and line.kind in KIND_ALIASES.get(sel[1], (sel[1],)):
                return "invoice", st.name, False
    return "invoice", agreement.streams[0].name, False


def draft_of(line: ChargeLine, agreement: Agreement | None, invoice_currency: str, fx: Any, last_day: date,
             stream: str, netted: bool) -> DraftLine:
    """A charge line as an invoice (or statement) line: converted into the invoice currency at
    the cycle's last day's rate and rounded once, as traffic lines are."""
    mode = agreement.rounding.mode if agreement is not None else "half_up"
    q = fx_for(fx, agreement, line.currency, invoice_currency, last_day)
    amount = line.amount if q is None else round_line(convert(line.amount, q.rate), invoice_currency, mode)
    direction = service = None
    if len(line.scope) == 1:
        direction, service = line.scope[0]
    records = line.details.get("records")
    return DraftLine(
        kind=line.line_kind, description=line.description[:1000], direction=direction, service=service,
        destination=None, prefix=None, band=None, quantity=Decimal(line.quantity), unit=(line.unit or "unit")[:32],
        rate=line.unit_price, rate_unit=(line.unit or None) and line.unit[:32] if line.unit_price is not None else None,
        amount=amount, currency=invoice_currency, source_amount=line.amount, source_currency=line.currency, fx=q,
        rounding=rounding_text(invoice_currency, mode), agreement_hash=line.agreement_hash or None, rule=line.rule[:1100],
        line_key=None, record_count=records if isinstance(records, int) else None, first_start=None, last_start=None,
        group_key=line.key[:2000], stream=stream, netted=netted, charge=line,
        order=1 + (STAGES.index(line.stage) if line.stage in STAGES else 0),
    )


def drafts_of(lines: Sequence[ChargeLine], plan: Plan, partner: str, invoice_currency: str, fx: Any,
              last_day: date) -> list[DraftLine]:
    """The invoice lines and payable statement lines of the charge lines (shares due to other
    parties and to us go on revenue-share statements only)."""
    by_hash = {a.source_hash: a for a in plan.agreements}
    out = []
    for ln in lines:
        ag = by_hash.get(ln.agreement_hash)
        where, stream, payable = placement(ln, ag, partner)
        if where == "share" and not payable:
            continue
        try:
            out.append(draft_of(ln, ag, invoice_currency, fx, last_day, stream, payable))
        except CycleError as e:
            raise CycleError(f"{ln.rule}: charge '{ln.charge_name}': {e}") from None
    return out


def share_lines(lines: Iterable[ChargeLine]) -> list[ChargeLine]:
    return [ln for ln in lines if ln.kind == "revenue_share" or ln.stage == "share"]


@dataclass
class ShareDraft:
    """A revenue-share statement to be: one party's share lines in one currency."""

    party: str
    currency: str
    total: Decimal
    details: dict[str, Any]


@dataclass(frozen=True)
class ShareAdjustment:
    """A correction of an earlier cycle's revenue share billed on this cycle: a line of its
    party's statement in its currency. ``item``: the statement line's other fields (what it
    corrects: ``charge``, ``adjustment_id``, ``corrects_charge_line_id``, ``description``...)."""

    party: str
    currency: str
    amount: Decimal
    item: Mapping[str, Any] = field(default_factory=dict)


def share_statements(lines: Sequence[ChargeLine], label: str,
                     adjustments: Sequence[ShareAdjustment] = ()) -> list[ShareDraft]:
    """One statement per party and currency of the cycle's revenue shares. Each lists the
    party's share lines and, per split, the amount split and every party's share: the shares
    of a split add up to its amount exactly (largest remainder at the minor unit).
    ``adjustments``: corrections of earlier cycles' shares billed on this cycle, listed on their
    party's statement after its share lines (and in its total)."""
    shares = share_lines(lines)
    splits: dict[tuple[str, str, str], dict[str, Any]] = {}
    for ln in shares:
        k = (ln.charge_name, ln.currency, ln.agreement_hash)
        sp = splits.setdefault(k, {"charge": ln.charge_name, "agreement": f"{ln.agreement} v{ln.agreement_version}",
                                   "currency": ln.currency, "amount_split": ln.details.get("amount_split"),
                                   "basis": ln.details.get("basis"), "tier": ln.details.get("tier") or "",
                                   "parties": {}})
        if ln.details.get("basis") == "net":  # what the net amount deducted from the gross
            sp.update(gross=ln.details.get("gross"), deducted=ln.details.get("deducted"),
                      deductions=ln.details.get("deductions_count", 0))
        sp["parties"][ln.dimensions.get("party")] = str(ln.amount)
    for sp in splits.values():
        total = exact_sum(Decimal(v) for v in sp["parties"].values())
        sp["total_of_shares"] = str(total)
        sp["adds_up"] = sp["amount_split"] is not None and total == Decimal(sp["amount_split"])
    by_party: dict[tuple[str, str], list[ChargeLine]] = defaultdict(list)
    for ln in shares:
        by_party[(str(ln.dimensions.get("party")), ln.currency)].append(ln)
    fixes: dict[tuple[str, str], list[ShareAdjustment]] = defaultdict(list)
    for a in adjustments:
        fixes[(a.party, a.currency)].append(a)
        by_party.setdefault((a.party, a.currency), [])
    out = []
    for (party, cur), ls in sorted(by_party.items()):
        items = [{"line_no": i, "kind": "revenue_share", "description": ln.description, "charge": ln.charge_name,
                  "quantity": "1", "unit": "share", "amount": str(ln.amount), "currency": ln.currency,
                  "share_kind": ln.dimensions.get("share_kind"), "tier": ln.dimensions.get("tier") or "",
                  "basis": ln.details.get("basis"), "amount_split": ln.details.get("amount_split"),
                  "exact_share": ln.details.get("exact_share"), "how": ln.details.get("how"), "rule": ln.rule,
                  "agreement_hash": ln.agreement_hash, "key": ln.key}
                 for i, ln in enumerate(ls, 1)]
        items += [{**a.item, "line_no": len(items) + i, "kind": "adjustment", "quantity": "1", "unit": "share",
                   "amount": str(a.amount), "currency": a.currency} for i, a in enumerate(fixes[(party, cur)], 1)]
        mine = [sp for (name, c, h), sp in sorted(splits.items()) if c == cur and
                any(ln.charge_name == name and ln.agreement_hash == h for ln in ls)]
        out.append(ShareDraft(party, cur, exact_sum([*(ln.amount for ln in ls),
                                                     *(a.amount for a in fixes[(party, cur)])]),
                              {"period": label, "lines": items, "splits": mine,
                               "method": "largest remainder at the minor unit, ties to the party listed first"}))
    return out


def receivable_items(invoices: Sequence[Any]) -> list[dict[str, Any]]:
    """The settlement statement's receivable side itemized: each invoice's lines summed by kind,
    direction and service (sums of rounded lines: they add up to the receivable exactly)."""
    out = []
    for inv in invoices:
        acc: dict[tuple, Decimal] = {}
        for ln in inv.lines:
            k = (ln.kind, ln.direction or "", ln.service or "", ln.description if ln.kind != "traffic" else "")
            acc[k] = acc.get(k, Decimal(0)) + ln.amount
        for (kind, d, sv, desc), amount in acc.items():
            text = desc or f"{d} {sv}".strip() or kind
            out.append({"stream": inv.stream, "kind": kind, "description": text, "amount": str(amount),
                        "currency": inv.currency})
    return out
