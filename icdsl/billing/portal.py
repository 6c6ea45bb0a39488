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

import functools
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
from icdsl.lang import ast as A
from icdsl.lang.decks import RateColumns, read_deck
from icdsl.lang.parser import parse_text
from icdsl.outputs import write
from icdsl.spans import NO_SPAN

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
_REF = re.compile(r"^(inv|stm|shr)-([0-9]{1,9})$")  # ids fit a 32-bit integer column
#: the kinds of document a partner is party to, as the list and its ``kind`` filter name them
KINDS = ("invoice", "credit_note", "debit_note", "statement", "share_statement")
#: the kinds written as e-invoices (UBL); statements are not
E_INVOICES = ("invoice", "credit_note", "debit_note")


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


_PARTNER = select(M.Partner.id, M.Partner.code, M.Partner.decl_hash).where(M.Partner.code == sa.bindparam("code"))


def partner_row(s: Session | sa.Connection, p: Principal, partner: str) -> sa.Row[Any]:
    """The partner ``p`` may read, asked by code: its own (a partner's principal) or any (staff):
    its ``id``, ``code`` and ``decl_hash`` (a row, not an ORM object: read at every request)."""
    if p.partner is not None and partner != p.partner:
        raise NotFound()
    row = s.execute(_PARTNER, {"code": partner}).first()
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
    return number or f"{_PREFIX.get(kind, 'inv')}-{id_}"


_PREFIX = {"statement": "stm", "share_statement": "shr"}

# plain columns, not ORM objects: the list is every document of the partner, read at each view.
# A partner is party to: our invoices, credit and debit notes to it and its settlement statements
# (``partner_id``: the documents of its cycles), and the revenue-share statements addressed to it
# (``party``: its code; the share may come from another partner's cycle, and is what we pay it, or
# what it pays us when negative). Not to the revenue-share statements of its cycles addressed to
# other parties, nor to our own share (``us``).
_I, _S, _H, _C = M.Invoice, M.SettlementStatement, M.ShareStatement, M.BillingCycle
_INVOICES = (select(_I.id, _I.number, _I.stream, _I.status, _I.issue_date, _I.due_date, _I.subtotal, _I.tax_amount,
                    _I.total, _I.currency, _I.doc_type, _C.label)
             .outerjoin(_C, _C.id == _I.cycle_id)
             .where(_I.partner_id == sa.bindparam("pid")).order_by(_I.id))
_STATEMENTS = (select(_S.id, _S.number, _S.status, _S.net, _S.currency, _C.label)
               .outerjoin(_C, _C.id == _S.cycle_id)
               .where(_S.partner_id == sa.bindparam("pid")).order_by(_S.id))
_SHARES_OF = (select(_H.id, _H.number, _H.status, _H.total, _H.currency, _H.details, _C.label)
              .join(_C, _C.id == _H.cycle_id).order_by(_H.id))
_SHARES = _SHARES_OF.where(_H.party == sa.bindparam("code"))
# our staff: those too of the partner's cycles addressed to other parties and to us (what we keep)
_STAFF_SHARES = _SHARES_OF.where(sa.or_(_H.party == sa.bindparam("code"), _H.partner_id == sa.bindparam("pid")))


def invoice_kind(doc_type: str | None, total: Decimal | None) -> str:
    """An invoice row's kind: as drafted (``doc_type``, 0016), else by the total's sign."""
    if doc_type:
        return doc_type
    return "credit_note" if total is not None and total < 0 else "invoice"


def documents(store: Store, p: Principal, partner: str, *, period: str | None = None, state: str | None = None,
              kind: str | None = None) -> list[dict[str, Any]]:
    """The partner's invoices, credit and debit notes, settlement statements and the
    revenue-share statements addressed to it (newest first); filters: ``period`` (a cycle's label
    or its beginning: ``2026`` or ``2026-03``), ``state`` (draft, finalized, void), ``kind``
    (:data:`KINDS`)."""
    with store.read_rows() as c:
        return documents_in(c, p, partner, period=period, state=state, kind=kind)


def documents_in(c: sa.Connection, p: Principal, partner: str, *, period: str | None = None,
                 state: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    """:func:`documents`, read on the connection ``c`` (the request's, with its principal)."""
    out = []
    prow = partner_row(c, p, partner)
    for id_, number, stream, status, issued, due, subtotal, tax, total, ccy, dtype, label in c.execute(
            _INVOICES, {"pid": prow.id}):
        k = invoice_kind(dtype, total)
        out.append({"kind": k, "ref": number or f"inv-{id_}", "number": number, "period": label or "",
                    "stream": stream, "status": status, "issue_date": issued, "due_date": due,
                    "subtotal": subtotal, "tax": tax, "total": total, "currency": ccy})
    for id_, number, status, net, ccy, label in c.execute(_STATEMENTS, {"pid": prow.id}):
        out.append({"kind": "statement", "ref": number or f"stm-{id_}", "number": number, "period": label or "",
                    "stream": "netting", "status": status, "issue_date": None, "due_date": None,
                    "subtotal": None, "tax": None, "total": net, "currency": ccy})
    for id_, number, status, total, ccy, details, label in c.execute(
            _SHARES if p.partner is not None else _STAFF_SHARES, {"code": prow.code, "pid": prow.id}):
        issued = (details or {}).get("issue_date")
        out.append({"kind": "share_statement", "ref": number or f"shr-{id_}", "number": number,
                    "period": label or "", "stream": "revenue share", "status": status,
                    "issue_date": date.fromisoformat(issued) if issued else None, "due_date": None,
                    "subtotal": None, "tax": None, "total": total, "currency": ccy})
    if p.partner is not None:
        out = [d for d in out if d["status"] != "draft"]
    out.sort(key=_NEWEST, reverse=True)
    return select_documents(out, period=period, state=state, kind=kind)


def _NEWEST(d: dict[str, Any]) -> tuple[str, str]:  # noqa: N802 - a sort key
    return d["period"], d["ref"]


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


def _lookups() -> dict[tuple[str, bool, bool], Any]:
    """The lookups of :func:`_find`, built once: (table prefix, by id?, a partner asking?) ->
    statement of the document's id, with the partner in the query (``pid``, ``code``): an invoice
    or settlement statement of the partner's, a revenue-share statement addressed to it (our
    staff: also those of the partner's cycles); drafts hidden from partners."""
    out = {}
    for prefix, table, mine, staff in (
            ("inv", _I, _I.partner_id == sa.bindparam("pid"), None),
            ("stm", _S, _S.partner_id == sa.bindparam("pid"), None),
            ("shr", _H, _H.party == sa.bindparam("code"),
             sa.or_(_H.party == sa.bindparam("code"), _H.partner_id == sa.bindparam("pid")))):
        for by_id in (True, False):
            which = table.id == sa.bindparam("id") if by_id else table.number == sa.bindparam("number")
            out[(prefix, by_id, True)] = select(table.id).where(mine, table.status != "draft", which).limit(1)
            out[(prefix, by_id, False)] = select(table.id).where(staff if staff is not None else mine, which).limit(1)
    return out


_LOOKUPS = _lookups()
_INNER = {"inv": "#", "stm": "stm:", "shr": "shr:"}


def _find(s: Session | sa.Connection, p: Principal, prow: sa.Row[Any], ref: str) -> str:
    """The store's reference (``#12``, ``stm:3``, ``shr:4``) of the partner's document ``ref``
    (its number, or ``inv-12``/``stm-3``/``shr-4``), looked up with the partner in the query."""
    text = ref.strip()
    m = _REF.match(text)
    partner = p.partner is not None
    params = {"pid": prow.id, "code": prow.code, "id": int(m.group(2)) if m else None, "number": text}
    for prefix in (m.group(1),) if m else ("inv", "stm", "shr"):
        found = s.execute(_LOOKUPS[(prefix, m is not None, partner)], params).scalar()
        if found is not None:
            return f"{_INNER[prefix]}{found}"
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
# a revenue-share statement shows the partner of its cycle as it is now (maybe not the reader)
_SHARE_OWNER = (select(M.Partner.decl_hash).join(_H, _H.partner_id == M.Partner.id)
                .where(_H.id == sa.bindparam("id")))
_SEAL_KIND = {"#": "invoice", "stm:": "settlement", "shr:": "share"}


def document(store: Store, p: Principal, partner: str, ref: str, *,
             cache: DocumentCache | None = None) -> dict[str, Any]:
    """One of the partner's documents by its number (or ``inv-ID``/``stm-ID``/``shr-ID``), as the
    store builds it (seal checked); :class:`NotFound` for any other. With ``cache``: a finalized
    document already built and checked under the same seal is taken from it (the access check,
    above, is made at every call all the same)."""
    with store.read_rows() as c:
        found = find_document(c, p, partner, ref, cache=cache)
    return finish_document(store, found, cache=cache)


def find_document(c: sa.Connection, p: Principal, partner: str, ref: str, *,
                  cache: DocumentCache | None = None) -> tuple[str, tuple[Any, ...] | None, dict[str, Any] | None]:
    """The first half of :func:`document`, on the request's connection ``c``: the document looked
    up with the partner in the query (:class:`NotFound` for any other) and, if ``cache`` keeps it
    under its seal, the kept copy: (the store's reference, the cache key, the copy or None)."""
    prow = partner_row(c, p, partner)
    inner = _find(c, p, prow, ref)
    if cache is None:
        return inner, None, None
    prefix, id_ = inner.rstrip("0123456789"), int(inner.lstrip("#stmhr:"))
    kind = _SEAL_KIND[prefix]
    sealed = c.execute(_SEAL_OF, {"kind": kind, "id": id_}).first()
    if sealed is None:  # a draft (staff): built at each view
        return inner, None, None
    owner = prow.decl_hash if kind != "share" else c.execute(_SHARE_OWNER, {"id": id_}).scalar()
    key = (kind, id_, sealed[0], owner, sealed[1])
    return inner, key, cache.get(key)


def finish_document(store: Store, found: tuple[str, tuple[Any, ...] | None, dict[str, Any] | None], *,
                    cache: DocumentCache | None = None) -> dict[str, Any]:
    """The second half of :func:`document`, once the request's connection is given back (a miss
    reads with a session of its own): the document built and kept, or the kept copy with what is
    computed at each view (a statement's dispute position)."""
    inner, key, doc = found
    if doc is not None:
        if doc["kind"] == "statement":
            with store.reading() as s:
                attach_positions(store, s, [doc])  # computed now, as the store does
    else:
        doc = store.document(inner)
        if cache is not None and key is not None and doc.get("status") == "finalized":
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
    if fmt == "ubl" and doc["kind"] not in E_INVOICES:
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
        found = _agreements(s, p, partner)
    for a in found:
        a["tables"] = [{k: v for k, v in t.items() if k != "table"} for t in _tables_of(a)]
    return found


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


# --------------------------------------------------------------------------- rate tables

#: rows of a rate table shown on one page
RATE_PAGE = 100
# decks read into rows, per process: by content (sha256), mapping and delimiter (a deck is stored
# by its content, which cannot change); the access check is made before, at every request
_RATE_ROWS: OrderedDict[tuple[Any, ...], tuple[list[tuple[Any, ...]], str | None]] = OrderedDict()
_RATE_ROWS_KEPT = 16
_RATE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _price_tables(text: str) -> list[tuple[str, A.DestinationPrice]]:
    """The priced-by-destination tables of an agreement's text, in order: (service, table). Kept
    per process by the text (a loaded version's text never changes); the tables are read-only."""
    tree, _ = parse_text(text, "<agreement>")
    out: list[tuple[str, A.DestinationPrice]] = []
    for item in (tree.items if tree is not None else []):
        for svc in getattr(item, "services", None) or ():
            name = f"{svc.direction.text} {svc.service.text}"
            if svc.destination_price is not None:
                out.append((name, svc.destination_price))
            if svc.fallback is not None:
                out.append((f"{name} (fallback)", svc.fallback))
    return out


def _tables_of(a: dict[str, Any]) -> list[dict[str, Any]]:
    """An agreement version's rate tables: each priced-by-destination table of its text (inline,
    or a deck matched to one loaded with it by its path), then the decks loaded with it that its
    text does not name (from a template), read by their usual column names."""
    out = []
    files = list(a["deck_files"])
    for service, table in _price_tables(a["text"]):
        deck = None
        if table.deck is not None:
            written = table.deck.value.replace("\\", "/").lstrip("./")
            deck = next(((i, f) for i, f in enumerate(a["deck_files"]) if f in files
                         and (f[0].replace("\\", "/") == written or f[0].replace("\\", "/").endswith("/" + written))),
                        None)
            if deck is not None:
                files.remove(deck[1])
        out.append({"service": service, "table": table, "deck": deck[1] if deck else None,
                    "deck_n": deck[0] + 1 if deck else None,
                    "source": table.deck.value if table.deck is not None else "inline",
                    "currency": table.currency.text if table.currency is not None else a["currency"],
                    "unit": table.unit.text if table.unit is not None else None})
    for f in files:
        out.append({"service": "", "table": None, "deck": f, "deck_n": a["deck_files"].index(f) + 1,
                    "source": f[0], "currency": a["currency"], "unit": None})
    for n, t in enumerate(out, 1):
        t["n"] = n
    return out


def _deck_rows(s: Session, path: str, sha: str, table: A.DestinationPrice | None) -> tuple[list[tuple[Any, ...]],
                                                                                        str | None]:
    """A stored deck's rows as read for the table (its column mapping and delimiter): (prefix,
    destination, band, price, connect fee, increments, from, until) per row and band; with why
    it cannot be read, if it cannot."""
    mapping = table.columns if table is not None else ()
    delim = table.delimiter.value if table is not None and table.delimiter is not None else None
    key = (sha, delim, tuple((m.field.text, m.band.text if m.band else None, m.column.value) for m in mapping))
    with _RATE_LOCK:
        if key in _RATE_ROWS:
            _RATE_ROWS.move_to_end(key)
            return _RATE_ROWS[key]
    text = s.scalars(select(M.SourceFile.text).where(M.SourceFile.path == path, M.SourceFile.sha256 == sha)).first()
    if text is None:
        return [], "the deck's text is not in the store"
    name = re.split(r"[\\/]", path)[-1] or "deck.csv"
    with tempfile.TemporaryDirectory(prefix="icdsl-portal-") as tmp:
        f = Path(tmp) / "deck.csv"
        f.write_text(text, encoding="utf-8")
        deck, diags = read_deck(f, name, mapping, delim, NO_SPAN)
    errors = [d for d in diags if d.severity == "error"]
    if deck is None or errors:
        got: tuple[list[tuple[Any, ...]], str | None] = ([], errors[0].message if errors else "unreadable")
    else:
        got = (_rows_of(deck.columns) if deck.columns is not None else _node_rows(deck.rows), None)
    with _RATE_LOCK:
        _RATE_ROWS[key] = got
        while len(_RATE_ROWS) > _RATE_ROWS_KEPT:
            _RATE_ROWS.popitem(last=False)
    return got


def _rows_of(c: RateColumns) -> list[tuple[Any, ...]]:
    out = []
    for i in range(len(c)):
        prices = c.prices_of(i)
        fee = c.connect_fees[i] if c.connect_fees is not None else None
        inc = c.increments[i] if c.increments is not None else None
        start = c.effective_from[i] if c.effective_from is not None else None
        until = c.effective_to[i] if c.effective_to is not None else None
        for band, price in prices:
            out.append((c.prefixes[i], c.destinations[i], band, price, fee, str(inc) if inc else None, start, until))
    return out


def _node_rows(rows: Any) -> list[tuple[Any, ...]]:
    out = []
    for r in rows:
        prices = ([("*", r.price)] if r.price is not None else []) + list(r.band_prices)
        inc = f"{r.increments[0]}/{r.increments[1]}" if r.increments else None
        for band, price in prices:
            out.append((r.prefix, r.destination, band, price, r.connect, inc, r.start, r.until))
    return out


def rate_table(store: Store, p: Principal, partner: str, agreement_id: int, n: int, *, prefix: str | None = None,
               destination: str | None = None, band: str | None = None, page: int = 1) -> dict[str, Any]:
    """The ``n``-th rate table (from 1) of one of the partner's agreement versions as rows:
    prefix, destination, band (``*``: every band), price, connect fee, increments, effective from
    and until, in the table's currency; filtered (``prefix``: the prefixes beginning so;
    ``destination``: containing the words, any case; ``band``) and paged (:data:`RATE_PAGE`)."""
    with store.reading() as s:
        found = [a for a in _agreements(s, p, partner) if a["id"] == agreement_id]
        tables = _tables_of(found[0]) if found else []
        if not 0 < n <= len(tables):
            raise NotFound()
        t = tables[n - 1]
        problem = None
        if t["deck"] is not None:
            rows, problem = _deck_rows(s, t["deck"][0], t["deck"][1], t["table"])
        elif t["table"] is not None and t["table"].deck is None:
            rows = _node_rows(t["table"].rows)
        else:
            rows, problem = [], "the deck was not loaded with this version"
    bands = sorted({r[2] for r in rows})
    if prefix:
        rows = [r for r in rows if r[0].startswith(prefix.strip())]
    if destination:
        words = destination.casefold().split()
        rows = [r for r in rows if all(w in r[1].casefold() for w in words)]
    if band:
        rows = [r for r in rows if r[2] == band]
    pages = max(1, -(-len(rows) // RATE_PAGE))
    page = min(max(page, 1), pages)
    shown = rows[(page - 1) * RATE_PAGE: page * RATE_PAGE]
    keys = ("prefix", "destination", "band", "price", "connect_fee", "increments", "effective_from", "until")
    return {"agreement": {k: v for k, v in found[0].items() if k not in ("text", "deck_files")},
            "table": {k: v for k, v in t.items() if k != "table"}, "tables": len(tables), "bands": bands,
            "problem": problem, "matched": len(rows), "page": page, "pages": pages,
            "rows": [dict(zip(keys, r, strict=True)) | {"currency": t["currency"]} for r in shown]}


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
    if any(ord(c) < 32 and c not in "\n\r\t" for c in comment):
        raise AccessError("the comment holds control characters: write it as plain text")
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
