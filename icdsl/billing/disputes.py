"""Disputes of partners' invoices: opened from a reconciliation, sent, settled by credit notes.

A dispute claims back what a partner billed over what we expected, line by line, from a
:class:`~icdsl.recon.model.Reconciliation` (the engine's plain result: this module needs no
reconciliation code, only its model):

- :func:`open_dispute` takes the reconciliation's disputable lines (outside the tolerances,
  billed more than we expected), or the lines of their invoice chosen by number, and writes a
  dispute numbered ``DSP-YYYY-NNNNNN`` from the gap-free counter ``dispute-YYYY`` (the same
  counters as invoices: a number is taken in the dispute's transaction and given back if it
  rolls back). Each line disputes theirs - ours, exactly; the dispute's amount is the sum of its
  lines. Its evidence is the differing records of those lines (the reconciliation's record
  classes, every class but ``matched``), written as Parquet in the data folder
  (``disputes/<partner>/DSP-...-<sha256>.parquet``), referenced by path and sha256.
  The SHA-256 of its canonical content (:func:`content_of`) is kept: a dispute whose rows or
  evidence were changed behind the store's back is refused when shown or exported.
- States: ``open -> sent -> partially_accepted -> accepted``, or ``rejected``, or ``withdrawn``
  (:data:`TRANSITIONS`). :func:`change_state` refuses any other change with a message saying
  what, why and what to do (:class:`DisputeRefused`); the database refuses it too (migration
  0011's triggers), and writes every change's audit entry (who, when, from, to, why) itself.
- :func:`accept_dispute` applies a partner's credit note (a
  :class:`~icdsl.recon.model.PartnerInvoice` of kind ``credit_note``): the amount applied is what
  is left of the dispute or of the credit note, whichever is less; the dispute is then
  ``accepted`` when covered in full, ``partially_accepted`` otherwise (accepted amount recorded).
- :func:`position` is the dispute position of a partner's period: the partner's invoiced
  amount, the amount disputed, held (disputes not yet settled), credited, and the undisputed
  amount payable (invoiced - held - credited). A finalized settlement statement is sealed and
  never changes: the position is computed when it is shown (:func:`attach_positions`), a
  separate section of its rendering, never written into its rows.

Where this meets the other parts of partners' invoices (kept small): a partner invoice is
referenced by its store id, number and sha256 as plain columns (no foreign key to the import's
tables); the reconciliation and the credit note are passed in as model objects (the CLI gets
them from ``icdsl.billing.reconcile`` and ``icdsl.billing.partner_invoices`` in one place,
:mod:`icdsl.cli.disputes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import base
from icdsl.billing import models as M
from icdsl.billing.amounts import present
from icdsl.billing.cycles import next_numbers, resolve_period
from icdsl.billing.errors import StoreError
from icdsl.billing.partner_invoices import partner_invoices
from icdsl.billing.seal import canonical, day, instant, money, sha256
from icdsl.recon.model import LINE_MATCHED, MATCHED, LineComparison, PartnerInvoice, Reconciliation

if TYPE_CHECKING:
    from icdsl.billing.store import Store

STATES = M.DISPUTE_STATES
OPEN, SENT, PARTIAL, ACCEPTED, REJECTED, WITHDRAWN = STATES
FINAL = (ACCEPTED, REJECTED, WITHDRAWN)
HELD = (OPEN, SENT, PARTIAL)  # their amount still held back
#: the changes of state (as the database's triggers allow them)
TRANSITIONS = {OPEN: (SENT, WITHDRAWN), SENT: (PARTIAL, ACCEPTED, REJECTED, WITHDRAWN),
               PARTIAL: (PARTIAL, ACCEPTED, REJECTED, WITHDRAWN)}
#: the action that leads to each state
ACTIONS = {"send": SENT, "reject": REJECTED, "withdraw": WITHDRAWN, "accept": ACCEPTED}
EVIDENCE_DIR = "disputes"
#: the evidence's own column: which line of the dispute a record belongs to (null: the invoice's)
DISPUTE_LINE = "dispute_line"


class DisputeError(StoreError):
    """A dispute cannot be opened, found or shown as asked (the CLI exits with 1)."""


class DisputeRefused(DisputeError):
    """A change of a dispute that is not allowed: the message says what, why and what to do."""


class DisputeBroken(DisputeError):
    """A dispute whose rows or evidence no longer match what was opened: it is not presented."""


# --------------------------------------------------------------------------- the canonical content


def _line_values(i: int, c: LineComparison, currency: str, evidence: int) -> dict[str, Any]:
    return {"line_no": i, "service": c.service, "destination": c.destination, "band": c.band, "status": c.status,
            "their_lines": [int(x) for x in c.their_lines], "our_lines": [str(x) for x in c.our_lines],
            "their_calls": int(c.their_calls), "our_calls": int(c.our_calls),
            "their_quantity": _qty(c.their_quantity), "our_quantity": _qty(c.our_quantity),
            "their_amount": c.their_amount, "our_amount": c.our_amount, "amount": c.amount_difference,
            "currency": c.currency or currency, "evidence_records": evidence}


def _qty(q: Decimal | int | None) -> str:
    return format(Decimal(q or 0), "f")


_HEAD = ("number", "partner_code", "period_start", "period_end", "currency", "invoice_id", "invoice_number",
         "invoice_sha256", "invoice_total", "their_amount", "our_amount", "amount", "line_count", "evidence_path",
         "evidence_sha256", "evidence_rows", "tolerances", "opened_at", "opened_by", "opened_reason")
_MONEY = {"invoice_total", "their_amount", "our_amount", "amount"}
_LINE = ("line_no", "service", "destination", "band", "status", "their_lines", "our_lines", "their_calls",
         "our_calls", "their_quantity", "our_quantity", "their_amount", "our_amount", "amount", "currency",
         "evidence_records")


def _json(k: str, v: Any) -> Any:
    if k in _MONEY:
        return money(v)
    if isinstance(v, datetime):
        return instant(v)
    if isinstance(v, date):
        return day(v)
    return v


def content_of(head: dict[str, Any], lines: Iterable[dict[str, Any]]) -> str:
    """A dispute's canonical text (JSON, sorted keys, money at 8 decimals: as seals write it):
    the fixed part of its header and every line. Its SHA-256 is kept as ``content_hash``."""
    return canonical({"v": 1, "dispute": {k: _json(k, head[k]) for k in _HEAD},
                      "lines": [{k: _json(k, ln[k]) for k in _LINE} for ln in sorted(lines, key=lambda x: x["line_no"])]})


# --------------------------------------------------------------------------- opening


def _invoice_label(inv: PartnerInvoice) -> str:
    return f"invoice {inv.number} of {inv.partner}"


def _choose(rec: Reconciliation, chosen: Sequence[int] | None) -> list[LineComparison]:
    """The lines to dispute: every disputable one, or those holding their invoice's lines ``chosen``."""
    inv = rec.invoice
    if not chosen:
        lines = rec.disputable
        if not lines:
            raise DisputeError(f"nothing to dispute on {_invoice_label(inv)} for {rec.period_start} to "
                               f"{rec.period_end}: every line is within the agreement's tolerances or billed no more "
                               "than we expected (`icdsl reconcile` shows the comparison)")
        return lines
    known = sorted({n for c in rec.lines for n in c.their_lines})
    out: list[LineComparison] = []
    for n in chosen:
        found = [c for c in rec.lines if n in c.their_lines]
        if not found:
            span = f"its lines are {_ranges(known)}" if known else "it has no lines"
            raise DisputeError(f"line {n} is not a line of {_invoice_label(inv)} ({span}): give --line with the line "
                               "numbers printed on their invoice")
        c = found[0]
        what = _describe(c)
        if c.status == LINE_MATCHED:
            raise DisputeError(f"line {n} of {_invoice_label(inv)} ({what}) is within the agreement's tolerances: "
                               "nothing to dispute (`icdsl reconcile` shows the comparison)")
        if c.amount_difference <= 0:
            raise DisputeError(f"line {n} of {_invoice_label(inv)} ({what}) is billed {-c.amount_difference} "
                               f"{c.currency or rec.currency} less than we expected: nothing to claim back (a dispute "
                               "claims what they billed over our view)")
        if c not in out:
            out.append(c)
    return out


def _ranges(ns: list[int]) -> str:
    parts: list[str] = []
    for n in ns:
        if parts and parts[-1][1] == n - 1:
            parts[-1] = (parts[-1][0], n)
        else:
            parts.append((n, n))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)


def _describe(c: LineComparison | M.DisputeLine) -> str:
    return " ".join(x for x in (c.service, c.destination, c.band) if x)


def _key(service: str, destination: str | None, band: str | None) -> tuple[str, str, str]:
    return (service, destination or "", band or "")


def _already(s: Session, inv: PartnerInvoice, lines: list[LineComparison]) -> None:
    """Refuse lines another live dispute (not rejected or withdrawn) of the same invoice holds."""
    q = (select(M.Dispute.number, M.Dispute.state, M.DisputeLine.service, M.DisputeLine.destination,
                M.DisputeLine.band)
         .join(M.DisputeLine, M.DisputeLine.dispute_id == M.Dispute.id)
         .where(M.Dispute.partner_code == inv.partner, M.Dispute.invoice_number == inv.number,
                M.Dispute.state.not_in((REJECTED, WITHDRAWN))))
    held = {_key(r.service, r.destination, r.band): (r.number, r.state) for r in s.execute(q)}
    for c in lines:
        got = held.get(_key(c.service, c.destination, c.band))
        if got is not None:
            raise DisputeError(f"{_describe(c)} of {_invoice_label(inv)} is disputed already in {got[0]} ({got[1]}): "
                               f"one dispute per line; withdraw {got[0]} first (`icdsl dispute withdraw {got[0]}`) to "
                               "dispute it again, or choose other lines with --line")


def _evidence(rec: Reconciliation, lines: list[LineComparison], every: bool) -> tuple[pa.Table | None, list[int]]:
    """The differing records of the disputed lines, with the dispute line each belongs to (by
    ``line``, our line key, else ``their_line``, their invoice's line number, when the engine
    gives it); records of no line go with the dispute when it takes every disputable line.
    On columns (a month's detail can hold a hundred thousand differing records). Returns (table,
    or None when the reconciliation has no record detail; records per line)."""
    t = rec.records
    if t is None:
        return None, [0] * len(lines)
    assert isinstance(t, pa.Table)
    if "class" not in t.column_names or t.num_rows == 0:
        return t.slice(0, 0).append_column(DISPUTE_LINE, pa.array([], pa.int32())), [0] * len(lines)
    t = t.filter(pc.not_equal(t["class"], MATCHED)).combine_chunks()
    owner: dict[str, int] = {}
    their: dict[int, int] = {}
    for i, c in enumerate(lines, 1):
        for k in c.our_lines:
            owner.setdefault(str(k), i)
        for n in c.their_lines:
            their.setdefault(int(n), i)
    none = pa.nulls(t.num_rows, pa.int32())
    no_line = pa.array([True] * t.num_rows, pa.bool_())
    which = none
    for col, table, typ in (("line", owner, pa.string()), ("their_line", their, pa.int64())):
        if col not in t.column_names:
            continue
        values = pc.cast(t[col], typ)
        no_line = pc.and_(no_line, pc.is_null(values))
        if table:
            at = pc.index_in(values, value_set=pa.array(list(table), typ))
            which = pc.coalesce(which, pc.take(pa.array(list(table.values()), pa.int32()), at))
    keep = pc.is_valid(which)
    if every:
        keep = pc.or_(keep, no_line)
    out = t.filter(keep).append_column(DISPUTE_LINE, pc.filter(which, keep))
    found = {r["values"]: r["counts"] for r in pc.value_counts(pc.drop_null(which)).to_pylist()}
    return out, [int(found.get(i, 0)) for i in range(1, len(lines) + 1)]


def open_dispute(store: Store, rec: Reconciliation, *, lines: Sequence[int] | None = None,
                 reason: str | None = None) -> dict[str, Any]:
    """Open a dispute of the reconciled invoice's differing lines (``lines``: their invoice's line
    numbers; default every disputable line). Returns the dispute as a document (:func:`document`)."""
    inv = rec.invoice
    if inv.kind != "invoice":
        raise DisputeError(f"{inv.number} of {inv.partner} is a {inv.kind.replace('_', ' ')}, not an invoice: a "
                           "dispute is opened on an invoice")
    chosen = _choose(rec, lines)
    currency = rec.currency or inv.currency
    odd = sorted({c.currency for c in chosen if c.currency and c.currency != currency})
    if odd:
        raise DisputeError(f"the lines to dispute are in {', '.join(odd)}, {_invoice_label(inv)} in {currency}: a "
                           "dispute is in one currency")
    every = not lines or set(map(id, chosen)) == set(map(id, rec.disputable))
    evidence, counts = _evidence(rec, chosen, every)
    values = [_line_values(i, c, currency, n) for i, (c, n) in enumerate(zip(chosen, counts, strict=True), 1)]
    their = sum((c.their_amount for c in chosen), Decimal(0))
    ours = sum((c.our_amount for c in chosen), Decimal(0))
    t = base.now()
    who = base.actor()
    with store.session() as s:
        prow = s.scalars(select(M.Partner).where(M.Partner.code == rec.partner)).first()
        if prow is None:
            raise DisputeError(f"partner {rec.partner} is not in the store: load the rules that declare it first "
                               "with `icdsl load RULES`")
        # one opening per invoice at a time: two could otherwise both find its lines free
        store.lock(s, f"dispute-invoice:{inv.partner}:{inv.number}", wait=True)
        _already(s, inv, chosen)
        (n,) = next_numbers(store, s, f"dispute-{t.year}", 1)
        number = f"DSP-{t.year}-{n:06d}"
        written = None
        if evidence is not None:
            with store.data.writer(f"{EVIDENCE_DIR}/{_safe(rec.partner)}", number, evidence.schema, small=True) as w:
                w.write(evidence)
                written = w.commit()
        head = {"number": number, "partner_code": rec.partner, "period_start": rec.period_start,
                "period_end": rec.period_end, "currency": currency, "invoice_id": inv.id,
                "invoice_number": inv.number, "invoice_sha256": inv.sha256 or None, "invoice_total": inv.total,
                "their_amount": their, "our_amount": ours, "amount": their - ours, "line_count": len(values),
                "evidence_path": written.path if written else None,
                "evidence_sha256": written.sha256 if written else None,
                "evidence_rows": written.rows if written else 0,
                "tolerances": base.jsonable(asdict(rec.tolerances)), "opened_at": t, "opened_by": who,
                "opened_reason": reason}
        row = M.Dispute(**head, partner_id=prow.id, content_hash=sha256(content_of(head, values)), state=OPEN,
                        accepted_amount=Decimal(0), changed_at=t, changed_by=who, change_reason=reason)
        s.add(row)
        s.flush()
        s.add_all([M.DisputeLine(dispute_id=row.id, **v) for v in values])
        s.flush()
        return _document(store, s, row, evidence=True)


def _safe(code: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in code) or "_"


# --------------------------------------------------------------------------- changes of state


def _find(s: Session, number: str, *, lock: bool = False) -> M.Dispute:
    q = select(M.Dispute).where(M.Dispute.number == number.strip())
    if lock:
        q = q.with_for_update()
    row = s.scalars(q).first()
    if row is None:
        near = list(s.scalars(select(M.Dispute.number).where(M.Dispute.number.like(f"%{number.strip()[-6:]}%"))
                              .order_by(M.Dispute.number).limit(5)))
        raise DisputeError(f"no dispute numbered '{number}'" + (f" (did you mean {', '.join(near)}?)" if near else
                                                                "; `icdsl dispute list` lists them"))
    return row


def _since(d: M.Dispute) -> str:
    return f"since {d.changed_at.date()}, by {d.changed_by}"


def refusal(d: M.Dispute, action: str) -> str | None:
    """Why ``action`` (send, reject, withdraw, accept) cannot be done to the dispute now, and what
    to do instead; None: it can."""
    target = ACTIONS[action]
    if target in TRANSITIONS.get(d.state, ()):
        return None
    head = f"cannot {action} {d.number}: it is {d.state.replace('_', ' ')} ({_since(d)})"
    if d.state in FINAL:
        return (f"{head}, and a {d.state} dispute is closed: it never changes. If the matter is not settled, open a "
                f"new dispute from a new reconciliation (`icdsl dispute open {d.partner_code} PERIOD`)")
    if d.state == OPEN:
        return (f"{head}: the partner has not been sent it, so it has nothing to {action}. Send it first "
                f"(`icdsl dispute send {d.number}`), or withdraw it (`icdsl dispute withdraw {d.number}`)")
    # sent or partially accepted, asked to send
    return (f"{head}: it was sent already. The partner answers it: `icdsl dispute accept {d.number} --credit-note "
            f"NUMBER` when they credit it, `icdsl dispute reject {d.number}` when they refuse it")


def change_state(store: Store, number: str, action: str, *, reason: str | None = None) -> dict[str, Any]:
    """``send``, ``reject`` or ``withdraw`` a dispute (``accept`` takes a credit note:
    :func:`accept_dispute`). The audit entry is written by the database with the change."""
    if action not in ("send", "reject", "withdraw"):
        raise ValueError(f"unknown action {action!r}")
    with store.session() as s:
        d = _find(s, number, lock=store.is_postgres)
        why = refusal(d, action)
        if why is not None:
            raise DisputeRefused(why)
        d.state = ACTIONS[action]
        _changed(d, reason)
        s.flush()
        return _document(store, s, d)


def _changed(d: M.Dispute, reason: str | None) -> None:
    """Who, when and why: the database writes the audit entry from them (a change needs a new instant:
    one later than the last, should the clock not have moved)."""
    t = max(base.now(), d.changed_at + timedelta(microseconds=1))
    d.changed_at, d.changed_by, d.change_reason = t, base.actor(), reason


def accept_dispute(store: Store, number: str, credit_note: PartnerInvoice, *, reason: str | None = None) -> dict[str, Any]:
    """Apply the partner's credit note to a sent (or partly accepted) dispute: the amount applied
    is what is left of the dispute or of the credit note (across the partner's disputes),
    whichever is less; the dispute becomes ``accepted`` when covered in full, else
    ``partially_accepted``, with the accepted amount recorded."""
    cn = credit_note
    with store.session() as s:
        d = _find(s, number, lock=store.is_postgres)
        why = refusal(d, "accept")
        if why is not None:
            raise DisputeRefused(why)
        label = f"{cn.number} of {cn.partner}"
        if cn.kind != "credit_note":
            raise DisputeRefused(f"cannot accept {d.number} with {label}: it is a {cn.kind.replace('_', ' ')}, not a "
                                 "credit note. Import the partner's credit note (`icdsl partner-invoice import FILE "
                                 f"--partner {d.partner_code}`) and give its number")
        if cn.partner != d.partner_code:
            raise DisputeRefused(f"cannot accept {d.number} with {label}: the dispute is of {d.partner_code}'s "
                                 f"invoice {d.invoice_number}. Give a credit note of {d.partner_code}")
        if cn.currency != d.currency:
            raise DisputeRefused(f"cannot accept {d.number} with {label}: the credit note is in {cn.currency}, the "
                                 f"dispute in {d.currency}. Ask {d.partner_code} for a credit note in {d.currency}")
        total = abs(cn.total)
        store.lock(s, f"credit-note:{cn.partner}:{cn.number}", wait=True)
        used = list(s.execute(select(M.DisputeCredit.amount, M.Dispute.number)
                              .join(M.Dispute, M.Dispute.id == M.DisputeCredit.dispute_id)
                              .where(M.DisputeCredit.partner_code == cn.partner,
                                     M.DisputeCredit.credit_note_number == cn.number)
                              .order_by(M.DisputeCredit.id)))
        left_note = total - sum((a for a, _n in used), Decimal(0))
        if left_note <= 0:
            on = "; ".join(f"{n} {present(a, cn.currency)}" for a, n in used)
            raise DisputeRefused(f"cannot accept {d.number} with {label}: the credit note ({total} {cn.currency}) is "
                                 + (f"used up (applied: {on})" if used else "of nothing")
                                 + ". Give another credit note of the partner")
        left = d.amount - d.accepted_amount
        applied = min(left, left_note)
        t = base.now()
        s.add(M.DisputeCredit(dispute_id=d.id, partner_code=d.partner_code, credit_note_id=cn.id,
                              credit_note_number=cn.number, credit_note_sha256=cn.sha256 or None,
                              credit_note_total=total, amount=applied, applied_at=t, applied_by=base.actor()))
        s.flush()
        d.accepted_amount = d.accepted_amount + applied
        d.state = ACCEPTED if d.accepted_amount == d.amount else PARTIAL
        note = f"credit note {cn.number}: {present(applied, d.currency)} {d.currency} applied"
        _changed(d, f"{note}; {reason}" if reason else note)
        s.flush()
        return _document(store, s, d)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class DisputeSummary:
    """A dispute as ``icdsl dispute list`` shows it."""

    number: str
    partner: str
    period_start: date
    period_end: date
    invoice_number: str
    currency: str
    amount: Decimal
    accepted_amount: Decimal
    state: str
    lines: int
    changed_at: datetime

    @property
    def held(self) -> Decimal:
        return self.amount - self.accepted_amount if self.state in HELD else Decimal(0)


def list_disputes(store: Store, *, partner: str | None = None, state: str | None = None) -> list[DisputeSummary]:
    if state is not None and state not in STATES:
        raise DisputeError(f"unknown state '{state}': the states are {', '.join(STATES)}")
    with store.reading() as s:
        q = select(M.Dispute).order_by(M.Dispute.number)
        if partner is not None:
            q = q.where(M.Dispute.partner_code == partner)
        if state is not None:
            q = q.where(M.Dispute.state == state)
        return [DisputeSummary(d.number, d.partner_code, d.period_start, d.period_end, d.invoice_number, d.currency,
                               d.amount, d.accepted_amount, d.state, d.line_count, d.changed_at)
                for d in s.scalars(q)]


def _line_doc(ln: M.DisputeLine) -> dict[str, Any]:
    return {k: getattr(ln, k) for k in _LINE}


def _shown(ln: dict[str, Any]) -> dict[str, Any]:
    """A line's money as shown (``present``: 2.25, not the stored 2.25000000)."""
    return {k: present(v, ln["currency"]) if k in _MONEY else v for k, v in ln.items()}


def check(store: Store, s: Session, d: M.Dispute, lines: list[M.DisputeLine]) -> None:
    """Refuse a dispute whose rows no longer give its content hash, or whose evidence file is not
    the one recorded (:class:`DisputeBroken`)."""
    head = {k: getattr(d, k) for k in _HEAD}
    if sha256(content_of(head, [_line_doc(ln) for ln in lines])) != d.content_hash:
        raise DisputeBroken(f"{d.number} no longer matches what was opened: its rows were changed outside icdsl. It "
                            "is not presented or exported; the audit trail (audit_log) lists every change icdsl "
                            "made to it")
    if d.evidence_path:
        try:
            store.data.verify(d.evidence_path, d.evidence_sha256 or "")
        except OSError as e:
            raise DisputeBroken(f"{d.number}'s evidence cannot be presented: {e}") from None


def _document(store: Store, s: Session, d: M.Dispute, *, evidence: bool = False) -> dict[str, Any]:
    lines = list(s.scalars(select(M.DisputeLine).where(M.DisputeLine.dispute_id == d.id)
                           .order_by(M.DisputeLine.line_no)))
    check(store, s, d, lines)
    prow = s.get(M.Partner, d.partner_id)
    ccy = d.currency
    credits = [{"credit_note_number": c.credit_note_number, "credit_note_id": c.credit_note_id,
                "credit_note_sha256": c.credit_note_sha256, "credit_note_total": present(c.credit_note_total, ccy),
                "amount": present(c.amount, ccy), "applied_at": c.applied_at, "applied_by": c.applied_by}
               for c in s.scalars(select(M.DisputeCredit).where(M.DisputeCredit.dispute_id == d.id)
                                  .order_by(M.DisputeCredit.id))]
    history = [{"at": a.at, "actor": a.actor, "action": a.action, "message": a.message,
                "from": (a.details or {}).get("from"), "to": (a.details or {}).get("to"),
                "reason": (a.details or {}).get("reason")}
               for a in s.scalars(select(M.AuditEntry).where(M.AuditEntry.entity == "dispute",
                                                             M.AuditEntry.entity_id == d.id)
                                  .order_by(M.AuditEntry.id))]
    doc: dict[str, Any] = {
        "kind": "dispute", "id": d.id, "number": d.number, "state": d.state, "partner_code": d.partner_code,
        "partner_name": prow.name if prow is not None else d.partner_code,
        "partner_country": prow.country if prow is not None else None,
        "period": f"{d.period_start} to {d.period_end}", "period_start": d.period_start, "period_end": d.period_end,
        "currency": d.currency, "issue_date": d.opened_at.date(),
        "invoice": {"id": d.invoice_id, "number": d.invoice_number, "sha256": d.invoice_sha256,
                    "total": present(d.invoice_total, ccy)},
        "their_amount": present(d.their_amount, ccy), "our_amount": present(d.our_amount, ccy),
        "amount": present(d.amount, ccy), "accepted_amount": present(d.accepted_amount, ccy),
        "held_amount": present(d.amount - d.accepted_amount if d.state in HELD else Decimal(0), ccy),
        "lines": [_shown(_line_doc(ln)) for ln in lines],
        "credits": credits, "history": history, "tolerances": d.tolerances,
        "evidence": {"path": d.evidence_path, "sha256": d.evidence_sha256, "rows": d.evidence_rows},
        "opened_at": d.opened_at, "opened_by": d.opened_by, "reason": d.opened_reason,
        "changed_at": d.changed_at, "changed_by": d.changed_by, "content_hash": d.content_hash,
        "rounding": "exact: each line disputes their amount - ours; the dispute's amount is the sum of its lines",
    }
    if evidence:
        doc["evidence_records"] = evidence_records(store, d)
    return doc


def evidence_records(store: Store, d: M.Dispute) -> list[dict[str, Any]]:
    """The evidence's records (checked against the recorded sha256 first)."""
    if not d.evidence_path:
        return []
    store.data.verify(d.evidence_path, d.evidence_sha256 or "")
    return pq.read_table(store.data.abs(d.evidence_path)).to_pylist()


def document(store: Store, number: str, *, evidence: bool = True) -> dict[str, Any]:
    """A dispute as a document (its lines, credits, history and, with ``evidence``, the evidence
    records): refused when it no longer matches what was opened (:class:`DisputeBroken`)."""
    with store.reading() as s:
        return _document(store, s, _find(s, number), evidence=evidence)


def evidence_paths(s: Session) -> set[str]:
    """The data files the disputes reference (kept by the store's gc)."""
    return {p for p in s.scalars(select(M.Dispute.evidence_path)) if p}


def evidence_files(s: Session) -> list[tuple[str, str]]:
    """(path, sha256) of every dispute's evidence (checked by the store's ``verify_files``)."""
    return [(p, h or "") for p, h in s.execute(select(M.Dispute.evidence_path, M.Dispute.evidence_sha256)
                                                .order_by(M.Dispute.id)) if p]


# --------------------------------------------------------------------------- the position


@dataclass
class Position:
    """The dispute position of a partner's period in one currency. ``invoiced``: the partner's
    invoices (those disputed, plus any given); ``disputed``: what the disputes not withdrawn
    claim; ``held``: what is still held back (open, sent, and the rest of a partly accepted
    dispute); ``credited``: what their credit notes gave back; ``payable``: the undisputed
    amount payable = invoiced - held - credited."""

    partner: str
    period_start: date
    period_end: date
    currency: str
    invoices: dict[str, Decimal] = field(default_factory=dict)
    disputes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def invoiced(self) -> Decimal:
        return sum(self.invoices.values(), Decimal(0))

    @property
    def disputed(self) -> Decimal:
        return sum((d["amount"] for d in self.disputes if d["state"] != WITHDRAWN), Decimal(0))

    @property
    def held(self) -> Decimal:
        return sum((d["held"] for d in self.disputes), Decimal(0))

    @property
    def credited(self) -> Decimal:
        return sum((d["accepted"] for d in self.disputes), Decimal(0))

    @property
    def payable(self) -> Decimal:
        return self.invoiced - self.held - self.credited

    def as_dict(self) -> dict[str, Any]:
        """As shown (amounts at the currency's minor unit when exact: ``present``)."""
        c = self.currency
        return {"partner": self.partner, "period_start": self.period_start, "period_end": self.period_end,
                "currency": c, "invoiced": present(self.invoiced, c), "disputed": present(self.disputed, c),
                "held": present(self.held, c), "credited": present(self.credited, c),
                "undisputed_payable": present(self.payable, c),
                "invoices": [{"number": n, "total": present(t, c)} for n, t in sorted(self.invoices.items())],
                "disputes": [{k: present(v, c) if isinstance(v, Decimal) else v for k, v in d.items()}
                             for d in self.disputes]}


def positions(s: Session, partner: str, first: date, last: date,
              invoices: Iterable[PartnerInvoice] = ()) -> list[Position]:
    """The dispute positions (one per currency) of the partner's disputes whose period lies in
    ``first`` .. ``last`` (inclusive). ``invoices``: the partner's invoices of the period, to
    count those not disputed too (by number; the disputed ones are known from their disputes)."""
    out: dict[str, Position] = {}

    def of(ccy: str) -> Position:
        if ccy not in out:
            out[ccy] = Position(partner, first, last, ccy)
        return out[ccy]

    q = (select(M.Dispute).where(M.Dispute.partner_code == partner, M.Dispute.period_start >= first,
                                 M.Dispute.period_end <= last).order_by(M.Dispute.number))
    for d in s.scalars(q):
        p = of(d.currency)
        p.invoices[d.invoice_number] = d.invoice_total
        p.disputes.append({"number": d.number, "state": d.state, "invoice": d.invoice_number, "amount": d.amount,
                           "accepted": d.accepted_amount,
                           "held": d.amount - d.accepted_amount if d.state in HELD else Decimal(0)})
    for inv in invoices:
        if (inv.kind == "invoice" and inv.partner == partner and inv.period_start >= first
                and inv.period_end <= last):
            of(inv.currency).invoices.setdefault(inv.number, inv.total)
    return [out[k] for k in sorted(out)]


def partner_invoices_of(store: Store, partner: str) -> list[PartnerInvoice]:
    """The partner's imported invoices and credit notes: the one place disputes read the
    partner-invoice import (:mod:`icdsl.billing.partner_invoices`)."""
    return list(partner_invoices(store, partner))


def position(store: Store, partner: str, period: Any,
             invoices: Iterable[PartnerInvoice] | None = None) -> list[Position]:
    """:func:`positions` of a partner's billing period (``2026-03``, in the partner's calendar);
    ``invoices``: their invoices (default: those imported, :func:`partner_invoices_of`)."""
    with store.reading() as s:
        _prow, per = resolve_period(s, partner, period, None)
    got = partner_invoices_of(store, partner) if invoices is None else list(invoices)
    with store.reading() as s:
        return positions(s, partner, per.local_start, per.local_end - timedelta(days=1), got)


def attach_positions(store: Store, s: Session, docs: Iterable[dict[str, Any]]) -> None:
    """Add to each settlement statement document its ``dispute_position`` (computed now, never
    written into the sealed statement): the position in the statement's currency, with the
    statement's own payable (our view) beside it; ``dispute_positions_other``: those in other
    currencies. Nothing is added when the period has neither a dispute nor an imported invoice."""
    for doc in docs:
        if doc.get("kind") != "statement" or doc.get("period_start") is None:
            continue
        found = positions(s, doc["partner_code"], doc["period_start"], doc["period_end"],
                          partner_invoices_of(store, doc["partner_code"]))
        if not found:
            continue
        mine = [p for p in found if p.currency == doc.get("currency")]
        if mine:
            doc["dispute_position"] = dict(mine[0].as_dict(), our_payable=doc.get("payable"))
        others = [p.as_dict() for p in found if p.currency != doc.get("currency")]
        if others:
            doc["dispute_positions_other"] = others


__all__ = [
    "ACCEPTED", "DisputeBroken", "DisputeError", "DisputeRefused", "DisputeSummary", "FINAL", "OPEN", "PARTIAL",
    "Position", "REJECTED", "SENT", "STATES", "TRANSITIONS", "WITHDRAWN", "accept_dispute", "attach_positions",
    "change_state", "content_of", "document", "evidence_files", "evidence_paths", "evidence_records",
    "list_disputes", "open_dispute", "position", "positions", "refusal",
]
