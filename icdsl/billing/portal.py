"""What the partner portal reads and writes, always through a :class:`~icdsl.billing.accounts.Principal`.

Every function here takes the principal first and the partner asked for, and reads only that
partner's rows, with the partner in the query itself (``WHERE partner_id = ...``), never by
filtering what a wider query returned. A partner's user or token asking for another partner, or
for a document, dispute or file of another partner, gets :class:`NotFound`, worded exactly as for
one that does not exist: the portal cannot be used to learn what exists elsewhere. Partners see
only finalized documents (and the traffic of finalized cycles); our staff (a principal with no
partner) sees every partner's, drafts too.

Documents are the store's own (:meth:`icdsl.billing.store.Store.document`, seal checked) and
files are written by the same outputs as ``icdsl invoice export``; the disputes a partner raises
on a line of our invoice live in ``portal_disputes`` (migration 0017), its attached file under
the data folder's ``portal/`` with a generated name; the disputes we raised on the partner's own
invoices (:mod:`icdsl.billing.disputes`) are listed beside them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import threading
import uuid
from collections import OrderedDict, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.billing.accounts import AccessError, Principal, principal_event
from icdsl.billing.amounts import present
from icdsl.billing.base import now
from icdsl.billing.credits import clean_reason, issue_credit_note, parse_amount
from icdsl.billing.disputes import attach_positions, list_disputes
from icdsl.billing.errors import StoreError
from icdsl.outputs import write

if TYPE_CHECKING:
    from icdsl.billing.store import Store

DOWNLOAD_FORMATS = {"pdf": "application/pdf", "csv": "text/csv; charset=utf-8",
                    "json": "application/json", "ubl": "application/xml"}
MAX_ATTACHMENT = 5 * 1024 * 1024
MAX_COMMENT = 5000
# the attached files taken: declared type -> (extension, check of the content's first bytes)
ATTACHMENT_TYPES: dict[str, tuple[str, Any]] = {
    "application/pdf": ("pdf", lambda b: b.startswith(b"%PDF-")),
    "image/png": ("png", lambda b: b.startswith(b"\x89PNG\r\n\x1a\n")),
    "image/jpeg": ("jpg", lambda b: b.startswith(b"\xff\xd8\xff")),
    "text/csv": ("csv", lambda b: _is_text(b)),
    "text/plain": ("txt", lambda b: _is_text(b)),
}
ATTACHMENT_DIR = "portal/attachments"
TRAFFIC_BY = ("day", "service", "destination")
_REF = re.compile(r"^(inv|stm)-([0-9]{1,9})$")  # ids fit a 32-bit integer column


class NotFound(StoreError):
    """Nothing by that name for this principal: the same whether it does not exist or is another
    partner's."""

    def __init__(self, what: str = "not found") -> None:
        super().__init__(what)


def _is_text(b: bytes) -> bool:
    if b"\x00" in b:
        return False
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------- scope


def ping(store: Store) -> None:
    """Read one row: the store answers (the portal's /health)."""
    with store.reading() as s:
        s.execute(select(M.StoreMeta.key).limit(1)).first()


def partner_row(s: Session, p: Principal, partner: str) -> M.Partner:
    """The partner ``p`` may read, asked by code: its own (a partner's principal) or any (staff)."""
    if p.partner is not None and partner != p.partner:
        raise NotFound()
    row = s.scalars(select(M.Partner).where(M.Partner.code == partner)).first()
    if row is None:
        raise NotFound()
    return row


def partners(store: Store, p: Principal) -> list[dict[str, Any]]:
    """The partners ``p`` may read: staff every one, a partner itself."""
    with store.reading() as s:
        q = select(M.Partner).order_by(M.Partner.code)
        if p.partner is not None:
            q = q.where(M.Partner.code == p.partner)
        return [{"code": r.code, "name": r.name, "currency": r.currency, "country": r.country}
                for r in s.scalars(q)]


# --------------------------------------------------------------------------- documents


def _ref(kind: str, number: str | None, id_: int) -> str:
    return number or f"{'inv' if kind != 'statement' else 'stm'}-{id_}"


# plain columns, not ORM objects: the list is every document of the partner, read at each view
_I, _S = M.Invoice, M.SettlementStatement
_INVOICES = (select(_I.id, _I.number, _I.stream, _I.status, _I.issue_date, _I.due_date, _I.subtotal, _I.tax_amount,
                    _I.total, _I.currency, M.BillingCycle.label)
             .outerjoin(M.BillingCycle, M.BillingCycle.id == M.Invoice.cycle_id)
             .where(M.Invoice.partner_id == sa.bindparam("pid")).order_by(M.Invoice.id))
_STATEMENTS = (select(_S.id, _S.number, _S.status, _S.net, _S.currency, M.BillingCycle.label)
               .outerjoin(M.BillingCycle, M.BillingCycle.id == M.SettlementStatement.cycle_id)
               .where(M.SettlementStatement.partner_id == sa.bindparam("pid")).order_by(M.SettlementStatement.id))


def documents(store: Store, p: Principal, partner: str, *, period: str | None = None, state: str | None = None,
              kind: str | None = None) -> list[dict[str, Any]]:
    """The partner's invoices, credit notes and settlement statements (newest first); filters:
    ``period`` (a cycle's label or its beginning: ``2026`` or ``2026-03``), ``state`` (draft,
    finalized, void), ``kind`` (invoice, credit_note, statement)."""
    out = []
    with store.reading() as s:
        prow = partner_row(s, p, partner)
        for inv in s.execute(_INVOICES, {"pid": prow.id}):
            label = inv.label
            k = "credit_note" if inv.total is not None and inv.total < 0 else "invoice"
            out.append({"kind": k, "ref": _ref(k, inv.number, inv.id), "number": inv.number, "period": label or "",
                        "stream": inv.stream, "status": inv.status, "issue_date": inv.issue_date,
                        "due_date": inv.due_date, "subtotal": inv.subtotal, "tax": inv.tax_amount,
                        "total": inv.total, "currency": inv.currency})
        for st in s.execute(_STATEMENTS, {"pid": prow.id}):
            label = st.label
            out.append({"kind": "statement", "ref": _ref("statement", st.number, st.id), "number": st.number,
                        "period": label or "", "stream": "netting", "status": st.status, "issue_date": None,
                        "due_date": None, "subtotal": None, "tax": None, "total": st.net, "currency": st.currency})
    if p.partner is not None:
        out = [d for d in out if d["status"] != "draft"]
    out.sort(key=lambda d: (d["period"], d["ref"]), reverse=True)
    return select_documents(out, period=period, state=state, kind=kind)


def select_documents(docs: list[dict[str, Any]], *, period: str | None = None, state: str | None = None,
                     kind: str | None = None) -> list[dict[str, Any]]:
    """The documents (of :func:`documents`, already scoped) that pass the filters."""
    if period:
        docs = [d for d in docs if d["period"] == period or d["period"].startswith(period)]
    if state:
        docs = [d for d in docs if d["status"] == state]
    if kind:
        docs = [d for d in docs if d["kind"] == kind]
    return docs


def _find(s: Session, p: Principal, prow: M.Partner, ref: str) -> str:
    """The store's reference (``#12``, ``stm:3``) of the partner's document ``ref`` (its number,
    or ``inv-12``/``stm-3``), looked up with the partner in the query."""
    text = ref.strip()
    m = _REF.match(text)
    hidden = ("draft",) if p.partner is not None else ()
    if m is None or m.group(1) == "inv":
        q = select(M.Invoice.id).where(M.Invoice.partner_id == prow.id, M.Invoice.status.not_in(hidden) if hidden
                                       else sa.true())
        q = q.where(M.Invoice.id == int(m.group(2))) if m else q.where(M.Invoice.number == text)
        found = s.scalars(q).first()
        if found is not None:
            return f"#{found}"
    if m is None or m.group(1) == "stm":
        q = select(M.SettlementStatement.id).where(
            M.SettlementStatement.partner_id == prow.id,
            M.SettlementStatement.status.not_in(hidden) if hidden else sa.true())
        q = q.where(M.SettlementStatement.id == int(m.group(2))) if m else q.where(
            M.SettlementStatement.number == text)
        found = s.scalars(q).first()
        if found is not None:
            return f"stm:{found}"
    raise NotFound()


class DocumentCache:
    """Finalized documents as the store built them, their seal checked, kept in this process and
    keyed by (seal kind, document id, seal digest) and the declarations a document shows as they
    are now rather than as sealed (the partner's and our company's ``decl_hash``): a sealed
    document cannot change (the seal's triggers refuse it), so building it again and checking its
    seal again at each view would only give the same answer. Who may read it is NOT cached:
    :func:`document` looks the document up with the partner in the query at every request, then
    reads its seal row (one indexed row): only a document found for this principal, whose seal is
    the one it was kept under, is served from here. A draft has no seal and is never kept; nor is
    a statement's dispute position, computed at each view. Bounded (``max_bytes`` of pickled
    documents per process): the least recently used are dropped first. Thread-safe (FastAPI runs
    plain handlers in a thread pool)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        # kept pickled (this process's own data, never outside input): each view unpickles its
        # own copy to change, several times cheaper than a deep copy
        self._docs: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            doc = self._docs.get(key)
            if doc is None:
                self.misses += 1
                return None
            self._docs.move_to_end(key)
            self.hits += 1
        return pickle.loads(doc)  # noqa: S301 - the caller's copy, never the kept one

    def put(self, key: tuple[Any, ...], doc: dict[str, Any]) -> None:
        kept = pickle.dumps({k: v for k, v in doc.items() if k not in _NOT_CACHED}, pickle.HIGHEST_PROTOCOL)
        if len(kept) > self.max_bytes // 8:  # a very large document: built at each view, as without a cache
            return
        with self._lock:
            before = self._docs.pop(key, None)
            self.bytes += len(kept) - (len(before) if before is not None else 0)
            self._docs[key] = kept
            while self.bytes > self.max_bytes:
                self.bytes -= len(self._docs.popitem(last=False)[1])

    def __len__(self) -> int:
        return len(self._docs)


# what a document holds that is computed at each view, not sealed (a statement's dispute position)
_NOT_CACHED = ("dispute_position", "dispute_positions_other", "ref")
# a document's seal, with what of it is read as it is now and not sealed: our company's declaration
# (the seller of documents finalized before 0016); the partner's (its kind, country, due days) is
# the partner row's, already read for the access check
_FIRST_COMPANY = select(M.Company.decl_hash).order_by(M.Company.id).limit(1).scalar_subquery()
_SEAL_OF = (select(M.DocumentSeal.seal, _FIRST_COMPANY)
            .where(M.DocumentSeal.kind == sa.bindparam("kind"), M.DocumentSeal.document_id == sa.bindparam("id")))


def document(store: Store, p: Principal, partner: str, ref: str, *,
             cache: DocumentCache | None = None) -> dict[str, Any]:
    """One of the partner's documents by its number (or ``inv-ID``/``stm-ID``), as the store
    builds it (seal checked); :class:`NotFound` for any other. With ``cache``: a finalized
    document already built and checked under the same seal is taken from it (the access check,
    above, is made at every call all the same)."""
    key = None
    with store.reading() as s:
        prow = partner_row(s, p, partner)
        inner = _find(s, p, prow, ref)
        if cache is not None:
            kind, id_ = ("settlement", int(inner[4:])) if inner.startswith("stm:") else ("invoice", int(inner[1:]))
            sealed = s.execute(_SEAL_OF, {"kind": kind, "id": id_}).first()
            if sealed is not None:
                key = (kind, id_, sealed[0], prow.decl_hash, sealed[1])
                doc = cache.get(key)
                if doc is not None:
                    if doc["kind"] == "statement":
                        attach_positions(store, s, [doc])  # computed now, as the store does
                    doc["ref"] = _ref(doc["kind"], doc.get("number"), doc["id"])
                    return doc
    doc = store.document(inner)
    if key is not None and doc.get("status") == "finalized":
        cache.put(key, doc)
    doc["ref"] = _ref(doc["kind"], doc.get("number"), doc["id"])
    return doc


def download(store: Store, p: Principal, partner: str, ref: str, fmt: str, *,
             cache: DocumentCache | None = None) -> tuple[str, str, bytes]:
    """The document written as ``fmt`` (pdf, csv, json, ubl) by the outputs ``icdsl invoice
    export`` uses: (file name, media type, content)."""
    if fmt not in DOWNLOAD_FORMATS:
        raise NotFound()
    doc = document(store, p, partner, ref, cache=cache)
    if fmt == "ubl" and doc["kind"] not in ("invoice", "credit_note"):
        raise NotFound("a statement is not an e-invoice: download it as pdf, csv or json")
    with tempfile.TemporaryDirectory(prefix="icdsl-portal-") as tmp:
        try:
            (path,) = write([doc], tmp, fmt)
        except ValueError as e:  # an e-invoice refused (a draft, no company declared): why
            raise NotFound(str(e)) from None
        return path.name, DOWNLOAD_FORMATS[fmt], path.read_bytes()


# --------------------------------------------------------------------------- traffic


def traffic(store: Store, p: Principal, partner: str, *, by: str = "day", first: date | None = None,
            last: date | None = None) -> list[dict[str, Any]]:
    """The partner's rated traffic added up by local day, service or destination (and currency),
    from the cycles' daily series (``traffic_daily``); ``first``..``last`` inclusive."""
    if by not in TRAFFIC_BY:
        raise NotFound()
    acc: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
    with store.reading() as s:
        prow = partner_row(s, p, partner)
        q = (select(M.TrafficDaily).join(M.BillingCycle, M.BillingCycle.id == M.TrafficDaily.cycle_id)
             .where(M.BillingCycle.partner_id == prow.id, M.TrafficDaily.partner_code == prow.code))
        if p.partner is not None:
            q = q.where(M.BillingCycle.status == "finalized")
        if last is not None:
            q = q.where(M.TrafficDaily.first_day <= last)
        if first is not None:
            q = q.where(M.TrafficDaily.first_day >= first - timedelta(days=62))  # a cycle's series is shorter
        rows = list(s.scalars(q))
    for r in rows:
        recs = r.daily_records.split(",")
        units = r.daily_units.split(",")
        amounts = r.daily_amounts.split(",")
        for i in range(r.days):
            day = r.first_day + timedelta(days=i)
            if (first is not None and day < first) or (last is not None and day > last):
                continue
            n = int(recs[i] or 0)
            if n == 0 and Decimal(amounts[i] or 0) == 0:
                continue
            key = day.isoformat() if by == "day" else (
                f"{r.direction} {r.service}" if by == "service" else f"{r.destination} ({r.service})")
            a = acc[(key, r.currency)]
            a[0] += n
            a[1] += int(units[i] or 0)
            a[2] += Decimal(amounts[i] or 0)
    out = [{"key": k, "currency": c, "records": v[0], "units": v[1], "amount": v[2]} for (k, c), v in acc.items()]
    out.sort(key=lambda r: (r["key"], r["currency"]) if by == "day" else (-r["amount"], r["key"]))
    return out


# --------------------------------------------------------------------------- agreements


def agreements(store: Store, p: Principal, partner: str) -> list[dict[str, Any]]:
    """The agreement versions the partner is billed under: those written for it, and those its
    invoices' lines were rated by (an agreement for any partner, ``*``, when it billed it)."""
    with store.reading() as s:
        return _agreements(s, p, partner)


def deck(store: Store, p: Principal, partner: str, agreement_id: int, n: int) -> tuple[str, bytes]:
    """The ``n``-th rate deck (from 1) of one of the partner's agreement versions, as loaded with
    it (the store keeps the deck files' text by path and sha256): (file name, content)."""
    with store.reading() as s:
        found = [a for a in _agreements(s, p, partner) if a["id"] == agreement_id]
        if not found or not 0 < n <= len(found[0]["deck_files"]):
            raise NotFound()
        path, sha = found[0]["deck_files"][n - 1]
        text = s.scalars(select(M.SourceFile.text).where(M.SourceFile.path == path, M.SourceFile.sha256 == sha)).first()
    if text is None:
        raise NotFound()
    name = re.split(r"[\\/]", path)[-1] or "deck.csv"
    return name, text.encode("utf-8")


def _agreements(s: Session, p: Principal, partner: str) -> list[dict[str, Any]]:
    prow = partner_row(s, p, partner)
    used = (select(M.InvoiceLine.agreement_hash).join(M.Invoice, M.Invoice.id == M.InvoiceLine.invoice_id)
            .where(M.Invoice.partner_id == prow.id, M.InvoiceLine.agreement_hash.is_not(None)))
    if p.partner is not None:
        used = used.where(M.Invoice.status != "draft")
    q = (select(M.AgreementVersion)
         .where(sa.or_(M.AgreementVersion.partner_code == prow.code,
                       M.AgreementVersion.content_hash.in_(used.distinct())))
         .order_by(M.AgreementVersion.name, M.AgreementVersion.version, M.AgreementVersion.revision))
    return [{"id": a.id, "name": a.name, "version": a.version, "revision": a.revision,
             "effective_from": a.effective_from, "effective_to": a.effective_to, "currency": a.currency,
             "hash": a.content_hash, "text": a.source_text, "decks": [d[0] for d in a.decks or []],
             "deck_files": [(d[0], d[1]) for d in a.decks or []]}
            for a in s.scalars(q)]


# --------------------------------------------------------------------------- disputes


def _dispute_doc(d: M.PortalDispute, s: Session | None = None) -> dict[str, Any]:
    """A dispute as the pages and the API show it (with ``s``, the number of its credit note)."""
    return {"credit_note": None if s is None else _credit_note_number(s, d),"number": d.number, "partner": d.partner_code, "invoice": d.invoice_number, "line_no": d.line_no,
            "line_id": d.line_id, "comment": d.comment, "state": d.state, "raised_at": d.raised_at,
            "raised_by": d.raised_by, "changed_at": d.changed_at, "changed_by": d.changed_by,
            "change_reason": d.change_reason,
            "accepted_amount": d.accepted_amount,
            "attachment": None if d.attachment_path is None else {
                "name": d.attachment_name, "type": d.attachment_type, "size": d.attachment_size,
                "sha256": d.attachment_sha256}}


def safe_name(name: str | None) -> str:
    """A file name as given, for showing only: its last part, printable, at most 200 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in "\"'<>")
    return base.strip(". ")[:200] or "attachment"


def check_attachment(content_type: str | None, data: bytes) -> str:
    """The extension a file is kept under, or :class:`AccessError` saying why it is refused."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if len(data) > MAX_ATTACHMENT:
        raise AccessError(f"the attached file is larger than {MAX_ATTACHMENT // (1024 * 1024)} MiB")
    if not data:
        raise AccessError("the attached file is empty")
    kind = ATTACHMENT_TYPES.get(ctype)
    if kind is None:
        raise AccessError("attach a PDF, PNG, JPEG, CSV or text file")
    ext, looks_right = kind
    if not looks_right(data[:4096] if ext not in ("csv", "txt") else data):
        raise AccessError(f"the attached file is not the {ext.upper()} file it says it is")
    return ext


def raise_dispute(store: Store, p: Principal, partner: str, ref: str, line_no: int, comment: str, *,
                  attachment: tuple[str | None, str | None, bytes] | None = None,
                  remote: str | None = None) -> dict[str, Any]:
    """A partner's dispute of line ``line_no`` of its finalized invoice ``ref``, with a comment
    and an optional attached file (name, declared type, content): checked, kept under a generated
    name. Our staff does not raise disputes for a partner."""
    if p.partner is None:
        raise AccessError("disputes are raised by the partner's own users")
    comment = (comment or "").strip()
    if not comment:
        raise AccessError("say what is wrong with the line (a comment is required)")
    if len(comment) > MAX_COMMENT:
        raise AccessError(f"the comment is longer than {MAX_COMMENT} characters")
    ext = None
    if attachment is not None:
        ext = check_attachment(attachment[1], attachment[2])
    rel = None
    with store.session() as s:
        prow = partner_row(s, p, partner)
        inner = _find(s, p, prow, ref)
        if not inner.startswith("#"):
            raise AccessError("disputes are raised on an invoice's lines (not on a statement)")
        inv = s.get(M.Invoice, int(inner[1:]))
        if inv.status != "finalized":
            raise AccessError(f"invoice {inv.number or ref} is {inv.status}: only a finalized invoice is disputed")
        if not 0 < line_no < 2**31:
            raise NotFound(f"invoice {inv.number} has no line {line_no}")
        line = s.scalars(select(M.InvoiceLine).where(M.InvoiceLine.invoice_id == inv.id,
                                                     M.InvoiceLine.line_no == line_no)).first()
        if line is None:
            raise NotFound(f"invoice {inv.number} has no line {line_no}")
        t = now()
        d = M.PortalDispute(partner_id=prow.id, partner_code=prow.code, invoice_id=inv.id,
                            invoice_number=inv.number, line_id=line.id, line_no=line.line_no, comment=comment,
                            state="open", raised_at=t, raised_by=p.name, changed_at=t, changed_by=p.name)
        if attachment is not None:
            data = attachment[2]
            rel = _keep(store, prow.code, ext, data)
            d.attachment_path = rel
            d.attachment_name = safe_name(attachment[0])
            d.attachment_type = attachment[1].split(";")[0].strip().lower() if attachment[1] else None
            d.attachment_size = len(data)
            d.attachment_sha256 = hashlib.sha256(data).hexdigest()
        try:
            s.add(d)
            s.flush()
            d.number = f"PD-{t.year}-{d.id:06d}"
            principal_event(s, p, "dispute_raised", partner=prow.code, target=d.number, remote=remote,
                            details={"invoice": inv.number, "line_no": line_no,
                                     "attachment": d.attachment_sha256})
            s.flush()
        except Exception:
            if rel is not None:
                store.data.abs(rel).unlink(missing_ok=True)
            raise
        return _dispute_doc(d)


def _keep(store: Store, partner: str, ext: str | None, data: bytes) -> str:
    """Write an attached file under the data folder with a generated name (atomically); its path
    relative to the data folder. Nothing of the name the partner gave is used."""
    folder = re.sub(r"[^A-Za-z0-9_-]", "_", partner) or "_"
    rel = f"{ATTACHMENT_DIR}/{folder}/{uuid.uuid4().hex}.{ext}"
    path = store.data.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rel


def portal_disputes(store: Store, p: Principal, partner: str, *, state: str | None = None) -> list[dict[str, Any]]:
    with store.reading() as s:
        prow = partner_row(s, p, partner)
        q = select(M.PortalDispute).where(M.PortalDispute.partner_id == prow.id).order_by(M.PortalDispute.id.desc())
        if state:
            q = q.where(M.PortalDispute.state == state)
        return [_dispute_doc(d, s) for d in s.scalars(q)]


def _dispute(s: Session, p: Principal, partner: str, number: str) -> M.PortalDispute:
    prow = partner_row(s, p, partner)
    d = s.scalars(select(M.PortalDispute).where(M.PortalDispute.partner_id == prow.id,
                                                M.PortalDispute.number == number)).first()
    if d is None:
        raise NotFound()
    return d


def portal_dispute(store: Store, p: Principal, partner: str, number: str) -> dict[str, Any]:
    """One of the partner's disputes, with the disputed line as billed (description, quantity, amount)."""
    with store.reading() as s:
        d = _dispute(s, p, partner, number)
        out = _dispute_doc(d, s)
        ln = s.get(M.InvoiceLine, d.line_id)
        out["line"] = {"description": ln.description, "quantity": ln.quantity, "unit": ln.unit, "amount": ln.amount,
                       "currency": ln.currency}
        return out


def attachment(store: Store, p: Principal, partner: str, number: str) -> tuple[str, str, bytes]:
    """A dispute's attached file: (name to show, type, content), checked against its sha256."""
    with store.reading() as s:
        d = _dispute(s, p, partner, number)
        if d.attachment_path is None:
            raise NotFound()
        rel, name, ctype, sha = d.attachment_path, d.attachment_name, d.attachment_type, d.attachment_sha256
    data = store.data.abs(rel).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise StoreError(f"the attached file of {number} was changed since it was received (sha256 differs)")
    return name or "attachment", ctype or "application/octet-stream", data


#: the changes of a partner's dispute: action -> (states it may be in, new state, who: staff or partner)
TRANSITIONS = {
    "review": (("open",), "in_review", "staff"),
    "accept": (("open", "in_review"), "accepted", "staff"),
    "reject": (("open", "in_review"), "rejected", "staff"),
    "withdraw": (("open", "in_review"), "withdrawn", "partner"),
}


def change_dispute(store: Store, p: Principal, partner: str, number: str, action: str, *,
                   reason: str | None = None, remote: str | None = None,
                   amount: str | Decimal | None = None) -> dict[str, Any]:
    """Move a partner's dispute on: our staff reviews, accepts or rejects it; the partner may
    withdraw it. Accepting it credits the partner in the same transaction: a credit note
    (``CN-YYYY-NNNNNN``, sealed, audited) on the disputed line of the invoice, of ``amount``
    (net, in the invoice's currency: a partial acceptance) or, without one, of the whole line."""
    if action not in TRANSITIONS:
        raise NotFound()
    states, new, who = TRANSITIONS[action]
    if (who == "staff") != p.is_staff:
        raise AccessError(f"only {'our staff' if who == 'staff' else 'the partner'} may {action} a dispute")
    if amount not in (None, "") and action != "accept":
        raise AccessError("an amount is given only when a dispute is accepted")
    with store.session() as s:
        d = _dispute(s, p, partner, number)
        if action == "accept":
            store.lock(s, f"dispute:{d.id}", wait=True)
            s.refresh(d)
        if d.state not in states:
            raise AccessError(f"dispute {number} is {d.state}: it cannot be {new} now")
        d.state = new
        d.changed_at = now()
        d.changed_by = p.name
        d.change_reason = (reason or "").strip()[:MAX_COMMENT] or None
        details = None
        if action == "accept":
            cn = _credit_accepted(store, s, d, amount)
            details = {"credit_note": cn.number, "amount": format(d.accepted_amount, "f")}
        principal_event(s, p, f"dispute_{action}", partner=d.partner_code, target=number, remote=remote,
                        details=details)
        s.flush()
        return _dispute_doc(d, s)


def _credit_accepted(store: Store, s: Session, d: M.PortalDispute, amount: str | Decimal | None) -> M.Invoice:
    """The credit note of an accepted dispute: the whole disputed line, or ``amount`` of it."""
    inv = s.get(M.Invoice, d.invoice_id)
    line = s.get(M.InvoiceLine, d.line_id)
    if line.amount <= 0:
        raise AccessError(f"line {d.line_no} of {d.invoice_number} is of {present(line.amount, line.currency)} "
                          f"{line.currency}: there is nothing to credit on it (reject the dispute, or credit the "
                          "invoice with `icdsl invoice credit`)")
    try:
        value = line.amount if amount in (None, "") else parse_amount(amount, inv.currency, "the accepted amount")
    except StoreError as e:
        raise AccessError(str(e)) from None
    if value > line.amount:
        raise AccessError(f"the accepted amount {present(value, inv.currency)} {inv.currency} is more than line "
                          f"{d.line_no} of {d.invoice_number} ({present(line.amount, line.currency)} "
                          f"{line.currency})")
    reason = clean_reason((d.change_reason or d.comment)[:500])
    try:
        cn = issue_credit_note(store, s, inv, value, reason, line=line, audit={"dispute": d.number},
                               dispute=(d.number, value < line.amount))
    except StoreError as e:
        raise AccessError(str(e)) from None
    d.accepted_amount, d.credit_note_id = value, cn.id
    return cn


def _credit_note_number(s: Session, d: M.PortalDispute) -> str | None:
    return None if d.credit_note_id is None else s.get(M.Invoice, d.credit_note_id).number


def our_disputes(store: Store, p: Principal, partner: str) -> list[Any]:
    """The disputes we raised on the partner's own invoices to us (:mod:`icdsl.billing.disputes`)."""
    with store.reading() as s:
        prow = partner_row(s, p, partner)
    return list_disputes(store, partner=prow.code)


def attachment_paths(s: Session) -> set[str]:
    """The attached files the store keeps (never collected as orphans)."""
    return set(s.scalars(select(M.PortalDispute.attachment_path).where(M.PortalDispute.attachment_path.is_not(None))))
