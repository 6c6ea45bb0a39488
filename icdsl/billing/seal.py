"""Tamper evidence: every finalized document sealed, the seals chained (``icdsl verify``).

Finalizing a cycle seals each document it finalizes (invoices and credit notes, the settlement
statement, revenue-share statements; credit and debit notes in their own series) in the same transaction (:func:`seal_cycle`):

- the document's **content** is read back from the store and written in a canonical form
  (:func:`document_content`, :func:`canonical`): its header (number, partner, period, currency,
  dates, totals, status), every line with its amounts, rates, quantities and keys (an invoice
  line's charge lines too), the FX rates it used, the agreement versions it was billed under,
  and its cycle: the intake batches the cycle read (their sha256, their Parquet files'), and the
  cycle's own files (rated records, rating rejects, record charges) as the store knows them;
- ``content_hash`` = SHA-256 of that canonical text;
- ``seal`` = SHA-256 of the canonical ``{"v", "position", "kind", "number", "content", "previous"}``
  where ``previous`` is the seal of the document finalized just before (one chain per store, in
  the order of finalization; the first links to :data:`GENESIS`).

The canonical form (version :data:`VERSION`) is the same bytes on SQLite and PostgreSQL: JSON with
sorted keys, no spaces, ASCII only; money as decimal text with 8 decimals and rates with 12 (the
columns' scales), days ``YYYY-MM-DD``, instants ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, lists in a
fixed order (lines by number, the rest sorted). Only the columns named here are covered: a column
added later does not change what a seal of version 1 means. An invoice's kind (``doc_type``:
invoice, credit note, debit note) and the parties it was finalized with (``seller``, ``buyer``:
names, addresses, VAT identifiers, bank account; migration 0016) are covered when set, and left
out of the content of documents finalized before 0016 (so their seals still hold); a
statement's parties are in its ``details``, covered whole.

:func:`verify` recomputes every document's content and every seal from the store and walks the
chain; :func:`check_documents` does it for the documents a face is about to present (``invoice
show``, ``invoice export``), which refuse a document that fails (:class:`SealBroken`).

Reading is by table, not by document (:class:`_Reader`): sealing a cycle is a few statements
whatever the number of its documents (on PostgreSQL the chain's lock; the unsealed documents with
the chain's head; the invoices joined to their lines and charge lines; the statements; the cycle
with its inputs and files in one ``UNION ALL``; the agreement versions and FX rates they used; one
insert), and ``verify`` reads the chain by pages of :data:`_CHUNK` seals, the same few statements
a page. IN lists hold at most :data:`_CHUNK` values (SQLite's bound-parameter limit).

What it protects against, and what not: a change made behind the store's back (the triggers
dropped, a row edited) is found, and so is a seal removed or altered (the chain breaks). Someone who
owns the database can still recompute every seal after the change they made: that is found only
against a chain head recorded elsewhere (``icdsl verify`` prints it; ``--head`` checks the chain
still leads to it). The data files' bytes are checked by ``Store.verify_files`` (their sha256),
not here: a seal covers the hashes the store recorded for them.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, aliased

from icdsl.billing import base
from icdsl.billing import models as M
from icdsl.billing.errors import StoreError
from icdsl.billing.types import MONEY_SCALE, RATE_SCALE

VERSION = 1
GENESIS = hashlib.sha256(b"icdsl document seals v1: genesis").hexdigest()

Conn = Session | sa.Connection
DocRef = tuple[str, int]  # (kind, id): kind is "invoice", "settlement" or "share"

_MONEY = Decimal(1).scaleb(-MONEY_SCALE)
_RATE = Decimal(1).scaleb(-RATE_SCALE)


class SealBroken(StoreError):
    """A finalized document whose seal no longer holds: it is not presented."""


# --------------------------------------------------------------------------- the canonical form


def money(v: Any) -> str | None:
    """Money in the canonical form: 8 decimals (the money columns' scale)."""
    return None if v is None else format(Decimal(v).quantize(_MONEY), "f")


def rate(v: Any) -> str | None:
    """A rate (prices per unit, FX and tax rates) in the canonical form: 12 decimals."""
    return None if v is None else format(Decimal(v).quantize(_RATE), "f")


def day(v: date | None) -> str | None:
    return None if v is None else v.isoformat()


def instant(v: datetime | None) -> str | None:
    if v is None:
        return None
    u = v.astimezone(UTC)
    if u.year < 1000:  # strftime's year, as the canonical form always wrote it
        return u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return u.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"  # the same text, faster


def canonical(content: Any) -> str:
    """The canonical text of a content (JSON values only: the helpers above made them)."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()  # the canonical text is ASCII: the same bytes


def seal_of(position: int, kind: str, number: str, content_hash: str, previous: str) -> str:
    return sha256(canonical({"v": VERSION, "position": position, "kind": kind, "number": number,
                             "content": content_hash, "previous": previous}))


# --------------------------------------------------------------------------- a document's content

_C, _I, _L = M.BillingCycle, M.Invoice, M.InvoiceLine
_INVOICE_COLS_0007 = (_I.number, _I.status, _I.partner_code, _I.partner_name, _I.cycle_id, _I.stream, _I.currency,
                      _I.issue_date, _I.due_date, _I.subtotal, _I.taxable_amount, _I.tax_kind, _I.tax_rate,
                      _I.tax_amount, _I.total, _I.tax_note, _I.fx_rate_id, _I.corrects_invoice_id, _I.finalized_at)
# columns added later (0016): in the content only when set, so that a document sealed before keeps
# its hash (and not read at all by migration 0007, which runs before they exist)
_LATER_COLS = ("doc_type", "seller", "buyer")
_INVOICE_COLS = (*_INVOICE_COLS_0007, _I.doc_type, _I.seller, _I.buyer)
_LINE_COLS = (_L.id, _L.line_no, _L.kind, _L.description, _L.direction, _L.service, _L.destination, _L.prefix,
              _L.band, _L.quantity, _L.unit, _L.rate, _L.rate_unit, _L.amount, _L.currency, _L.agreement_version_id,
              _L.agreement_hash, _L.rule, _L.data_file_id, _L.line_key, _L.record_count, _L.first_start,
              _L.last_start, _L.corrects_line_id, _L.source_amount, _L.source_currency, _L.fx_rate, _L.fx_rate_id,
              _L.rounding, _L.group_key, _L.adjustment_id)
_RATE_COLS = {"rate", "fx_rate", "tax_rate"}


def _value(k: str, v: Any) -> Any:
    """A column's value as a JSON value: money and rates at their fixed scales, days and instants
    in ISO form (JSON columns as the database returns them). The hot loop of sealing: by type,
    not isinstance."""
    t = type(v)
    if t is Decimal:  # at the column's scale; a value the column could not hold keeps its digits
        q = v.quantize(_RATE if k in _RATE_COLS else _MONEY)
        return format(q if q == v else v, "f")
    if t is datetime:
        return instant(v)
    if t is date:
        return v.isoformat()
    return v


def _row(row: Any) -> dict[str, Any]:
    """A row as JSON values (:func:`_value`)."""
    return {k: _value(k, v) for k, v in zip(row._fields, row, strict=True)}


Fields = tuple[tuple[str, int, Decimal], ...]


def _part(row: Any, fields: Fields) -> dict[str, Any]:
    """Some columns of a row (see :func:`_fields`) as JSON values: :func:`_value` inlined (the
    hot loop: every line of every document)."""
    out = {}
    for k, i, unit in fields:
        v = row[i]
        t = type(v)
        if t is Decimal:
            q = v.quantize(unit)
            v = format(q if q == v else v, "f")
        elif t is datetime:
            v = instant(v)
        elif t is date:
            v = v.isoformat()
        out[k] = v
    return out


def _fields(q: Any, prefix: str) -> Fields:
    """The columns of a query labelled ``prefix`` + name: (name, index, a Decimal's unit), to
    read one table's part of a joined row."""
    out = []
    for i, c in enumerate(q.selected_columns):
        if c.key.startswith(prefix):
            k = c.key[len(prefix):]
            out.append((k, i, _RATE if k in _RATE_COLS else _MONEY))
    return tuple(out)


def _index(q: Any, key: str) -> int:
    return [c.key for c in q.selected_columns].index(key)


def _labelled(prefix: str, cols: Iterable[Any]) -> list[Any]:
    return [c.label(prefix + c.key) for c in cols]


# Documents are read in bulk: one query per table for all the documents of a cycle (sealing) or of
# a page of the chain (verifying), by IN lists of at most _CHUNK ids (under SQLite's bound-parameter
# limit). Built once: SQLAlchemy caches their compiled form.
_CHUNK = 400
_B = sa.bindparam
_DF, _IB, _CI, _RC, _X, _V, _CL = (M.DataFile, M.IntakeBatch, M.CycleInput, M.RecordChargeFile, M.FxRate,
                                   M.AgreementVersion, M.ChargeLine)
_SS, _SH = M.SettlementStatement, M.ShareStatement
_CORRECTED = aliased(M.Invoice)
# invoices, then each invoice's lines (with their data file's hash) and charge lines (a row per
# charge line): one UNION ALL, the invoice's own row first (``part`` 0: its columns typed, so that
# every part's values are read by their column's type; each row carries only its part's values)
_CHARGE_COLS = (_CL.key_hash, _CL.kind, _CL.stage, _CL.amount, _CL.currency)


def _nulls(prefix: str, cols: Iterable[Any]) -> list[Any]:
    return [sa.null().label(prefix + c.key) for c in cols]


def _typed_nulls(prefix: str, cols: Iterable[Any]) -> list[Any]:
    return [sa.type_coerce(sa.null(), c.type).label(prefix + c.key) for c in cols]


_INVOICE_IDS = _B("ids", expanding=True)


@dataclass(frozen=True)
class _InvoiceQuery:
    """The invoices-and-lines query of a schema (its invoice columns), and where its parts are."""

    q: Any
    invoice: Fields
    line: Fields
    charge: Fields
    line_id: int
    line_fx: int
    line_agreement: int
    line_hash: int
    charge_key: int


def _invoice_query(cols: tuple[Any, ...]) -> _InvoiceQuery:
    u = sa.union_all(
        select(_I.id.label("doc"), sa.literal_column("0").label("part"), _CORRECTED.number.label("corrects_number"),
               *_labelled("i_", cols), *_typed_nulls("l_", _LINE_COLS),
               sa.type_coerce(sa.null(), _DF.sha256.type).label("l_data_file_sha256"),
               *_typed_nulls("c_", _CHARGE_COLS))
        .outerjoin(_CORRECTED, _CORRECTED.id == _I.corrects_invoice_id)
        .where(_I.id.in_(_INVOICE_IDS)),
        select(_L.invoice_id, sa.literal_column("1"), sa.null(), *_nulls("i_", cols), *_LINE_COLS, _DF.sha256,
               *_CHARGE_COLS)
        .outerjoin(_DF, _DF.id == _L.data_file_id)
        .outerjoin(_CL, _CL.invoice_line_id == _L.id)
        .where(_L.invoice_id.in_(_INVOICE_IDS)))
    c = u.selected_columns
    q = u.order_by(c.doc, c.part, c.l_line_no, c.l_id, c.c_key_hash)
    return _InvoiceQuery(q, *(_fields(q, p) for p in ("i_", "l_", "c_")), *(_index(q, k) for k in (
        "l_id", "l_fx_rate_id", "l_agreement_version_id", "l_agreement_hash", "c_key_hash")))


_Q_INVOICES = _invoice_query(_INVOICE_COLS)
_Q_INVOICES_0007 = _invoice_query(_INVOICE_COLS_0007)  # the schema migration 0007 seals in
_Q_SETTLEMENTS = select(_SS.id.label("doc"), _SS.number, _SS.status, _SS.partner_id, _SS.cycle_id, _SS.currency,
                        _SS.receivable, _SS.payable, _SS.net, _SS.finalized_at,
                        _SS.details).where(_SS.id.in_(_B("ids", expanding=True)))
_Q_SHARES = select(_SH.id.label("doc"), _SH.number, _SH.status, _SH.partner_id, _SH.cycle_id, _SH.party,
                   _SH.currency, _SH.total, _SH.finalized_at, _SH.details).where(_SH.id.in_(_B("ids", expanding=True)))


# a cycle, the intake batches it read (with their files) and its own files: one UNION ALL, told
# apart by ``part`` (the cycle's row first: its columns' types read the result)
_CYCLE_COLS = (_C.partner_code, _C.frequency, _C.label, _C.timezone, _C.local_start, _C.local_end, _C.period_start,
               _C.period_end, _C.status, _C.plan_hash, _C.records_in, _C.rated_count, _C.rejected_count)
_INPUT_COLS = (_CI.batch_id, _CI.records, _IB.sha256, _IB.size_bytes, _IB.passed_count)
_FILE_COLS = (_DF.kind, _DF.path, _DF.sha256, _DF.rows)
_CYCLE_IDS = _B("ids", expanding=True)
_Q_CYCLES = sa.union_all(
    select(_C.id.label("cycle"), sa.literal("cycle", sa.String()).label("part"), *_labelled("y_", _CYCLE_COLS),
           *_nulls("n_", _INPUT_COLS), *_nulls("f_", _FILE_COLS)).where(_C.id.in_(_CYCLE_IDS)),
    select(_CI.cycle_id, sa.literal("input", sa.String()), *_nulls("y_", _CYCLE_COLS), *_INPUT_COLS, *_FILE_COLS)
    .join(_IB, _IB.id == _CI.batch_id, isouter=True)
    .join(_DF, sa.and_(_DF.batch_id == _CI.batch_id, _DF.cycle_id.is_(None)), isouter=True)
    .where(_CI.cycle_id.in_(_CYCLE_IDS)),
    select(_DF.cycle_id, sa.literal("file", sa.String()), *_nulls("y_", _CYCLE_COLS), *_nulls("n_", _INPUT_COLS),
           *_FILE_COLS).where(_DF.cycle_id.in_(_CYCLE_IDS)),
    select(_RC.cycle_id, sa.literal("file", sa.String()), *_nulls("y_", _CYCLE_COLS), *_nulls("n_", _INPUT_COLS),
           sa.literal("record_charges", sa.String()), _RC.path, _RC.sha256, _RC.rows).where(_RC.cycle_id.in_(_CYCLE_IDS)))
_CYCLE_FIELDS = _fields(_Q_CYCLES, "y_")
_N = len(_CYCLE_FIELDS) + 2  # where the input columns start, then the files'
_Q_FX = select(_X.id, _X.source, _X.base, _X.quote, _X.rate, _X.effective_from).where(
    _X.id.in_(_B("ids", expanding=True)))
_AGREEMENT_COLS = (_V.id, _V.name, _V.version, _V.revision, _V.partner_code, _V.effective_from, _V.effective_to,
                   _V.currency, _V.source_file_hash, _V.content_hash, _V.decks)
_Q_AGREEMENTS = select(*_AGREEMENT_COLS).where(
    sa.or_(_V.id.in_(_B("ids", expanding=True)), _V.content_hash.in_(_B("hashes", expanding=True))))


def _connection(c: Conn) -> sa.Connection:
    """The session's connection (its pending changes flushed): Core statements, no ORM overhead."""
    if isinstance(c, Session):
        c.flush()
        return c.connection()
    return c


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = sorted(set(values))
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


class _Reader:
    """Reads documents' contents in bulk (:meth:`contents`); cycles, FX rates and agreements
    read once per reader."""

    def __init__(self, c: Conn, *, schema_0007: bool = False):
        self.c = _connection(c)
        self.iq = _Q_INVOICES_0007 if schema_0007 else _Q_INVOICES
        self._cycles: dict[int, dict[str, Any] | None] = {}
        self._fx: dict[int, dict[str, Any] | None] = {}
        self._by_id: dict[int, dict[str, Any] | None] = {}
        self._by_hash: dict[str, list[dict[str, Any]]] = {}

    def _rows(self, q: Any, ids: Iterable[Any]) -> Iterable[Any]:
        for chunk in _chunks(ids):
            yield from self.c.execute(q, {"ids": chunk}).all()

    # ----------------------------------------------------------------- what documents share

    def _load_cycles(self, ids: Iterable[int | None]) -> None:
        wanted = {i for i in ids if i is not None and i not in self._cycles}
        if not wanted:
            return
        heads: dict[int, dict[str, Any]] = {}
        inputs: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
        files: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in self._rows(_Q_CYCLES, wanted):
            cid, part = r[0], r[1]
            if part == "cycle":
                heads[cid] = _part(r, _CYCLE_FIELDS)
                continue
            kind, path, sha, rows = r[_N + 5], r[_N + 6], r[_N + 7], r[_N + 8]
            if part == "file":
                files[cid].append({"kind": kind, "path": path, "sha256": sha, "rows": rows})
                continue
            batch_id, records, batch_sha, size, passed = r[_N:_N + 5]
            i = inputs[cid].get(batch_id)
            if i is None:
                i = inputs[cid][batch_id] = {"batch_id": batch_id, "records": records, "sha256": batch_sha,
                                             "size_bytes": size, "passed_count": passed, "files": []}
            if path is not None:
                i["files"].append({"kind": kind, "path": path, "sha256": sha, "rows": rows})
        for cid in wanted:
            head = heads.get(cid)
            if head is None:
                self._cycles[cid] = None
                continue
            ins = list(inputs[cid].values())
            for i in ins:
                i["files"].sort(key=lambda f: (f["kind"], f["path"]))
            self._cycles[cid] = {**head, "inputs": sorted(ins, key=lambda i: (i["sha256"] or "", i["batch_id"])),
                                 "files": sorted(files[cid], key=lambda f: (f["kind"], f["path"]))}

    def _load_fx(self, ids: Iterable[int]) -> None:
        wanted = {i for i in ids if i not in self._fx}
        if wanted:
            got = {r.id: _row(r) for r in self._rows(_Q_FX, wanted)}
            self._fx.update({i: got.get(i) for i in wanted})

    def _load_agreements(self, ids: Iterable[int], hashes: Iterable[str]) -> None:
        """The agreement versions of these ids, and those of these content hashes (one query for
        both, by chunks of each)."""
        ids = sorted({i for i in ids if i not in self._by_id})
        hashes = sorted({h for h in hashes if h not in self._by_hash})
        got: dict[int, dict[str, Any]] = {}
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for i in range(0, max(len(ids), len(hashes)), _CHUNK):
            for r in self.c.execute(_Q_AGREEMENTS, {"ids": ids[i:i + _CHUNK], "hashes": hashes[i:i + _CHUNK]}):
                a = _row(r)
                got[a["id"]] = a
        for a in got.values():
            found[a["content_hash"]].append(a)
        self._by_id.update({i: got.get(i) for i in ids})
        self._by_hash.update({h: sorted(found.get(h, []), key=lambda a: a["id"]) for h in hashes})

    def _fx_of(self, ids: set[int]) -> list[dict[str, Any]]:
        got = [self._fx[i] for i in sorted(ids) if self._fx[i] is not None]
        return got + [{"id": i, "missing": True} for i in sorted(ids) if self._fx[i] is None]

    def _agreements_of(self, ids: set[int], hashes: set[str]) -> list[dict[str, Any]]:
        got = {i: self._by_id[i] for i in ids if self._by_id[i] is not None}
        for h in hashes:
            got.update((a["id"], a) for a in self._by_hash[h])
        rows = [got[i] for i in sorted(got)]
        have_ids, have_hashes = set(got), {a["content_hash"] for a in rows}
        return (rows + [{"id": i, "missing": True} for i in sorted(ids - have_ids)]
                + [{"content_hash": h, "missing": True} for h in sorted(hashes - have_hashes)])

    # ----------------------------------------------------------------- the documents

    def _invoices(self, ids: list[int]) -> dict[DocRef, dict[str, Any]]:
        out: dict[DocRef, dict[str, Any]] = {}
        uses: dict[int, tuple[set[int], set[int], set[str]]] = {}  # fx ids, agreement ids, hashes
        line: dict[str, Any] | None = None
        lines: list[dict[str, Any]] = []
        fx: set[int] = set()
        agreement_ids: set[int] = set()
        hashes: set[str] = set()
        iq = self.iq
        later = [k for k in _LATER_COLS if any(f[0] == k for f in iq.invoice)]
        for r in self._rows(iq.q, ids):  # by invoice, line, charge line (rows by index: the hot loop)
            if r[1] == 0:  # the invoice's own row, before its lines
                head = _part(r, iq.invoice)
                for k in later:
                    if head[k] is None:
                        del head[k]
                lines, fx, agreement_ids, hashes = [], {head["fx_rate_id"]} - {None}, set(), set()
                out["invoice", r[0]] = {"kind": "invoice", "id": r[0], **head, "corrects_number": r[2],
                                        "lines": lines}
                uses[r[0]] = (fx, agreement_ids, hashes)
                line = None
                continue
            line_id = r[iq.line_id]
            if line is None or line["id"] != line_id:
                line = _part(r, iq.line)
                line["charges"] = []
                lines.append(line)
                if r[iq.line_fx] is not None:
                    fx.add(r[iq.line_fx])
                if r[iq.line_agreement] is not None:
                    agreement_ids.add(r[iq.line_agreement])
                if r[iq.line_hash]:
                    hashes.add(r[iq.line_hash])
            if r[iq.charge_key] is not None:
                line["charges"].append(_part(r, iq.charge))
        for d in out.values():
            for ln in d["lines"]:
                ln["charges"].sort(key=lambda x: x["key_hash"])
        self._finish(out, uses)
        return out

    def _statements(self, kind: str, q: Any, ids: list[int]) -> dict[DocRef, dict[str, Any]]:
        out: dict[DocRef, dict[str, Any]] = {}
        uses: dict[int, tuple[set[int], set[int], set[str]]] = {}
        for r in self._rows(q, ids):
            head = _row(r)
            doc_id = head.pop("doc")
            details = head.pop("details")
            lines = [ln for ln in ((details or {}).get("lines") or []) if isinstance(ln, dict)]
            out[kind, doc_id] = {"kind": kind, "id": doc_id, **head, "details": details}
            uses[doc_id] = ({ln.get("fx_rate_id") for ln in lines} - {None}, set(),
                            {h for h in (ln.get("agreement_hash") for ln in lines) if h})
        self._finish(out, uses)
        return out

    def _finish(self, docs: dict[DocRef, dict[str, Any]], uses: dict[int, tuple[set[int], set[int], set[str]]]) -> None:
        """What the documents refer to (their cycles, FX rates, agreements), read at once."""
        self._load_cycles(d["cycle_id"] for d in docs.values())
        self._load_fx(i for u in uses.values() for i in u[0])
        self._load_agreements((i for u in uses.values() for i in u[1]), (h for u in uses.values() for h in u[2]))
        for (_kind, doc_id), d in docs.items():
            fx, ids, hashes = uses[doc_id]
            d["fx"] = self._fx_of(fx)
            d["agreements"] = self._agreements_of(ids, hashes)
            d["cycle"] = None if d["cycle_id"] is None else self._cycles[d["cycle_id"]]

    def _read(self, refs: list[DocRef]) -> dict[DocRef, dict[str, Any] | None]:
        by_kind: dict[str, list[int]] = defaultdict(list)
        for kind, doc_id in refs:
            by_kind[kind].append(doc_id)
        out: dict[DocRef, dict[str, Any] | None] = {}
        if by_kind["invoice"]:
            out.update(self._invoices(by_kind["invoice"]))
        if by_kind["settlement"]:
            out.update(self._statements("settlement", _Q_SETTLEMENTS, by_kind["settlement"]))
        if by_kind["share"]:
            out.update(self._statements("share", _Q_SHARES, by_kind["share"]))
        return {ref: out.get(ref) for ref in refs}

    def contents(self, refs: Iterable[DocRef]) -> dict[DocRef, dict[str, Any] | None]:
        """The documents' contents (None: no such document), a few queries for all of them."""
        return self._read(list(refs))

    def contents_or_errors(self, refs: Iterable[DocRef]) -> dict[DocRef, dict[str, Any] | None | Exception]:
        """As :meth:`contents`; a document with a value that can no longer be read gets the error
        (read again one by one to know which)."""
        refs = list(refs)
        try:
            return dict(self._read(refs))
        except UNREADABLE:
            pass
        out: dict[DocRef, dict[str, Any] | None | Exception] = {}
        for ref in refs:
            try:
                out[ref] = self._read([ref])[ref]
            except UNREADABLE as e:
                out[ref] = e
        return out


# what reading a value changed outside icdsl can raise (text in a money column, a bad date...)
UNREADABLE = (ArithmeticError, ValueError, TypeError, sa.exc.StatementError)


def document_content(c: Conn, kind: str, doc_id: int) -> dict[str, Any] | None:
    """What the seal of a document covers, as JSON values (None: no such document)."""
    return _Reader(c).contents([(kind, doc_id)])[kind, doc_id]


# --------------------------------------------------------------------------- sealing


_S = M.DocumentSeal
_SEAL_COLS = (_S.position, _S.kind, _S.document_id, _S.number, _S.cycle_id, _S.version, _S.content,
              _S.content_hash, _S.previous, _S.seal)


def _lock_chain(c: sa.Connection) -> None:
    """One finalization at a time appends to the chain (PostgreSQL: an advisory lock of this
    schema; SQLite: the transaction already holds the write lock)."""
    if c.dialect.name == "postgresql":
        c.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':icdsl:seals', 0))"))


_ORDER = {"invoice": 0, "settlement": 1, "share": 2}


def _unsealed_query(one_cycle: bool) -> sa.CompoundSelect:
    parts = []
    for kind, T in (("invoice", M.Invoice), ("settlement", M.SettlementStatement), ("share", M.ShareStatement)):
        q = (select(T.finalized_at, sa.literal(kind, sa.String()).label("kind"), T.id, T.number, T.cycle_id)
             .outerjoin(_S, sa.and_(_S.kind == kind, _S.document_id == T.id))
             .where(T.status == "finalized", _S.position.is_(None)))
        parts.append(q.where(T.cycle_id == _B("cycle_id")) if one_cycle else q)
    return sa.union_all(*parts)


def _unsealed_with_head(one_cycle: bool) -> sa.Select[Any]:
    """The unsealed documents, each with the chain's head (one query: after the lock)."""
    u = _unsealed_query(one_cycle).subquery()
    h = select(_S.position, _S.seal).order_by(_S.position.desc()).limit(1).subquery()
    return select(*u.c, h.c.position.label("head_position"), h.c.seal.label("head_seal")).select_from(
        u.outerjoin(h, sa.true()))


_Q_UNSEALED = {one: _unsealed_with_head(one) for one in (False, True)}
_EPOCH = datetime.min.replace(tzinfo=UTC)


def _missing_query() -> sa.Select[Any]:
    """Documents without a seal that were finalized by the look of anything left: their status,
    a number (given only by finalization), or their cycle's status."""
    parts = [select(sa.literal(kind, sa.String()).label("kind"), sa.literal(_ORDER[kind]).label("o"), T.id, T.number,
                    T.status)
             .outerjoin(_S, sa.and_(_S.kind == kind, _S.document_id == T.id))
             .outerjoin(_C, _C.id == T.cycle_id)
             .where(_S.position.is_(None),
                    sa.or_(T.status == "finalized", T.number.is_not(None), _C.status == "finalized"))
             for kind, T in (("invoice", M.Invoice), ("settlement", M.SettlementStatement),
                             ("share", M.ShareStatement))]
    u = sa.union_all(*parts).subquery()
    return select(u.c.kind, u.c.id, u.c.number, u.c.status).order_by(u.c.o, u.c.id)


_Q_MISSING = _missing_query()


def _unsealed(c: sa.Connection, cycle_id: int | None) -> tuple[list[tuple[Any, str, int, str, int | None]],
                                                                tuple[int, str]]:
    """Finalized documents without a seal: (finalized_at, kind, id, number, cycle_id), in the order
    they are sealed (finalization, then invoices, settlement, shares, each by id); and the chain's
    head (position, seal)."""
    rows = c.execute(_Q_UNSEALED[cycle_id is not None], {"cycle_id": cycle_id}).all()
    out = [(r.finalized_at, r.kind, r.id, r.number, r.cycle_id) for r in rows]
    head = (0, GENESIS) if not rows or rows[0].head_position is None else (rows[0].head_position, rows[0].head_seal)
    return sorted(out, key=lambda d: (d[0] or _EPOCH, _ORDER[d[1]], d[2])), head


def seal_unsealed(c: Conn, cycle_id: int | None = None, *, schema_0007: bool = False) -> int:
    """Seal the finalized documents that have no seal yet (of one cycle, or all: migration 0007
    seals the documents finalized before it, ``schema_0007``: reading only the columns that
    exist then), appended to the chain. Returns how many.

    A few queries whatever the number of documents: the lock, the documents with the chain's
    head, their contents (:meth:`_Reader.contents`, by pages) and one insert per page."""
    conn = _connection(c)
    _lock_chain(conn)
    docs, (position, previous) = _unsealed(conn, cycle_id)
    reader = _Reader(conn, schema_0007=schema_0007)
    t = base.now()
    for start in range(0, len(docs), _CHUNK):
        page = docs[start:start + _CHUNK]
        contents = reader.contents((kind, doc_id) for _at, kind, doc_id, _n, _c in page)
        rows = []
        for _at, kind, doc_id, number, cyc in page:
            content = canonical(contents[kind, doc_id])
            position += 1
            h = sha256(content)
            seal = seal_of(position, kind, number, h, previous)
            rows.append({"position": position, "kind": kind, "document_id": doc_id, "number": number,
                         "cycle_id": cyc, "version": VERSION, "content": content, "content_hash": h,
                         "previous": previous, "seal": seal, "sealed_at": t})
            previous = seal
        conn.execute(insert(M.DocumentSeal.__table__), rows)
    return len(docs)


def seal_cycle(c: Conn, cycle_id: int) -> int:
    """Seal the documents a cycle's finalization just finalized (in its transaction)."""
    return seal_unsealed(c, cycle_id)


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class SealProblem:
    """One document (or seal) that does not hold. ``what``: ``content`` (the document changed),
    ``link`` (the chain is broken here), ``seal`` (the seal row itself was altered), ``missing``
    (the sealed document is gone), ``unsealed`` (a finalized document without a seal),
    ``anchor`` (the recorded chain head is not in the chain)."""

    what: str
    document: str
    detail: str
    position: int | None = None

    def __str__(self) -> str:
        where = f" (seal #{self.position})" if self.position is not None else ""
        return f"{self.document}{where}: {self.what}: {self.detail}"


@dataclass
class Verification:
    """What ``icdsl verify`` checked and found."""

    documents: int = 0
    seals: int = 0
    head_position: int = 0
    head: str = GENESIS
    problems: list[SealProblem] = field(default_factory=list)
    anchor: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"checked {self.seals} seal(s) of {self.documents} finalized document(s), from genesis to the head"]
        if self.anchor:
            out.append(f"recorded head {self.anchor}: "
                       + ("not found" if any(p.what == "anchor" for p in self.problems) else "in the chain"))
        for p in self.problems:
            out.append(f"FAILS {p}")
        if self.ok:
            out.append("every document matches its seal and every seal links to the one before it")
        docs = {p.document for p in self.problems if p.what != "anchor"}
        if docs:
            out.append(f"{len(docs)} document(s) fail: a document that fails is not shown or exported")
        if any(p.what == "anchor" for p in self.problems):
            out.append("the chain does not lead to the recorded head: seals were rewritten after it was recorded")
        out.append(f"chain head: #{self.head_position} {self.head}")
        out.append("(record the head elsewhere; `icdsl verify --head HASH` checks the chain still leads to it)")
        return out


def _label(kind: str, number: str | None, doc_id: int) -> str:
    return number or f"{kind} #{doc_id}"


def _diff(before: Any, after: Any, path: str = "", out: list[str] | None = None) -> list[str]:
    """Where two contents differ, as paths (``lines[2].amount: 0.28000000 -> 0.01000000``)."""
    out = [] if out is None else out
    if isinstance(before, dict) and isinstance(after, dict):
        for k in sorted(set(before) | set(after)):
            _diff(before.get(k), after.get(k), f"{path}.{k}" if path else k, out)
    elif isinstance(before, list) and isinstance(after, list):
        for i, (b, a) in enumerate(zip(before, after, strict=False)):
            numbered = isinstance(b, dict) and b.get("line_no") is not None  # lines by the number shown
            _diff(b, a, f"{path}[#{b['line_no']}]" if numbered else f"{path}[{i}]", out)
        if len(before) != len(after):
            out.append(f"{path}: {len(before)} -> {len(after)} item(s)")
    elif before != after:
        def show(v: Any) -> str:
            text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            return text if len(text) <= 40 else text[:37] + "..."
        out.append(f"{path}: {show(before)} -> {show(after)}")
    return out


def _current(got: dict[str, Any] | None | Exception) -> dict[str, Any] | str | None:
    """A document's content now (:meth:`_Reader.contents_or_errors`); the error as text if a
    value of it can no longer be read."""
    if isinstance(got, Exception):
        e = got
        return f"a value of it can no longer be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r})"
    return got


def _content_problem(row: Any, current: dict[str, Any] | str | None, label: str) -> SealProblem | None:
    if isinstance(current, str):
        return SealProblem("content", label, current, row.position)
    if current is None:
        return SealProblem("missing", label, f"the sealed {row.kind} #{row.document_id} is no longer in the store",
                           row.position)
    text = canonical(current)
    if sha256(text) == row.content_hash:
        return None
    if sha256(row.content) != row.content_hash:
        detail = "its content no longer matches its seal (and the seal's copy of it was altered too)"
    else:
        changes = _diff(json.loads(row.content), current)
        more = f", and {len(changes) - 4} more" if len(changes) > 4 else ""
        detail = ("its content no longer matches what was finalized: " + "; ".join(changes[:4]) + more
                  if changes else "its content no longer matches what was finalized")
    return SealProblem("content", label, detail, row.position)


def _seal_problem(row: Any, label: str) -> SealProblem | None:
    if seal_of(row.position, row.kind, row.number, row.content_hash, row.previous) != row.seal:
        return SealProblem("seal", label, "the seal row was altered: its hash does not match its fields",
                           row.position)
    return None


def _link_problem(row: Any, label: str, before: Any | None) -> SealProblem | None:
    """``before``: the seal row at position - 1 (None: none there)."""
    if row.position == 1:
        if row.previous != GENESIS:
            return SealProblem("link", label, "the first seal does not link to the genesis value", row.position)
        return None
    if before is None:
        return SealProblem("link", label, f"the seal before it (#{row.position - 1}) is missing", row.position)
    if row.previous != before.seal:
        return SealProblem("link", label, f"it links to {row.previous[:16]}..., but seal #{before.position} is "
                                          f"{before.seal[:16]}...", row.position)
    return None


_Q_SEALS = select(*_SEAL_COLS).where(_S.position > _B("after")).order_by(_S.position).limit(_B("page"))


def verify(c: Conn, *, head: str | None = None) -> Verification:
    """Every seal recomputed from the store, the chain walked from genesis to its head, and
    every finalized document checked to have a seal. ``head``: a chain head recorded earlier,
    which must still be in the chain. The chain is read by pages: a few queries a page."""
    c = _connection(c)
    reader = _Reader(c)
    v = Verification(anchor=head)
    before = None
    anchored = False
    after = 0
    while page := c.execute(_Q_SEALS, {"after": after, "page": _CHUNK}).all():
        after = page[-1].position
        current = reader.contents_or_errors((row.kind, row.document_id) for row in page)
        for row in page:
            v.seals += 1
            label = _label(row.kind, row.number, row.document_id)
            expected = before if before is not None and before.position == row.position - 1 else None
            for p in (_link_problem(row, label, expected), _seal_problem(row, label),
                      _content_problem(row, _current(current[row.kind, row.document_id]), label)):
                if p is not None:
                    v.problems.append(p)
            anchored = anchored or (head is not None and row.seal == head.strip().lower())
            before = row
            v.head_position, v.head = row.position, row.seal
    for r in c.execute(_Q_MISSING):
        why = "finalized" if r.status == "finalized" else f"{r.status} but numbered or of a finalized cycle"
        v.problems.append(SealProblem("unsealed", _label(r.kind, r.number, r.id),
                                      f"{why}, but it has no seal (its seal was removed)"))
    v.documents = c.execute(_Q_FINALIZED).scalar() or 0
    if head is not None and not anchored:
        v.problems.append(SealProblem("anchor", "the chain", f"the recorded head {head.strip()} is not one of its "
                                                             "seals: seals were rewritten or removed"))
    return v


_Q_FINALIZED = select(sum((select(sa.func.count()).select_from(T).where(T.status == "finalized").scalar_subquery()
                           for T in (M.Invoice, M.SettlementStatement, M.ShareStatement)), sa.literal(0)))
_Q_SEALS_OF = select(*_SEAL_COLS).where(sa.or_(*(sa.and_(_S.kind == kind, _S.document_id.in_(_B(kind, expanding=True)))
                                               for kind in _ORDER)))
_Q_SEALS_AT = select(*_SEAL_COLS).where(_S.position.in_(_B("ids", expanding=True)))
_DOC_KINDS = {"invoice": "invoice", "credit_note": "invoice", "debit_note": "invoice", "statement": "settlement", "share_statement": "share"}


def check_documents(c: Conn, docs: Iterable[dict[str, Any]]) -> None:
    """Raise :class:`SealBroken` for the first document (a mapping of :mod:`icdsl.billing.documents`)
    whose seal does not hold: its content, its seal row and its link to the seal before it are
    checked (``icdsl verify`` walks the whole chain). A draft has no seal to check. A few queries
    for all the documents."""
    c = _connection(c)
    reader = _Reader(c)
    wanted = [(kind, doc) for doc in docs if (kind := _DOC_KINDS.get(doc.get("kind", ""))) is not None
              and doc.get("id") is not None]
    if not wanted:
        return
    seals: dict[DocRef, Any] = {}
    for start in range(0, len(wanted), _CHUNK):
        ids: dict[str, list[int]] = {kind: [] for kind in _ORDER}
        for kind, doc in wanted[start:start + _CHUNK]:
            ids[kind].append(doc["id"])
        seals.update(((r.kind, r.document_id), r) for r in c.execute(_Q_SEALS_OF, ids))
    befores = {r.position: r for r in reader._rows(_Q_SEALS_AT, (r.position - 1 for r in seals.values()
                                                                  if r.position > 1))}
    current = reader.contents_or_errors(seals)
    for kind, doc in wanted:
        label = _label(kind, doc.get("number"), doc["id"])
        row = seals.get((kind, doc["id"]))
        if row is None:
            if doc.get("status") == "finalized" or doc.get("number"):
                _refuse(SealProblem("unsealed", label, "finalized, but it has no seal (its seal was removed)"))
            continue
        for p in (_content_problem(row, _current(current[kind, doc["id"]]), label), _seal_problem(row, label),
                  _link_problem(row, label, befores.get(row.position - 1))):
            if p is not None:
                _refuse(p)


def unreadable(ref: str, e: Exception) -> SealBroken:
    """The error for a document a face cannot even read (a value changed outside icdsl)."""
    return SealBroken(f"{ref} cannot be read from the store: a value of it was changed outside icdsl "
                      f"({type(e).__name__}). Run `icdsl verify` to check every finalized document and the chain "
                      "of seals")


def _refuse(p: SealProblem) -> None:
    raise SealBroken(f"{p.document} fails its seal: {p.detail}. It is not presented: the store was changed "
                     "outside icdsl. Run `icdsl verify` to check every finalized document and the chain of seals")


__all__ = [
    "GENESIS",
    "VERSION",
    "SealBroken",
    "SealProblem",
    "UNREADABLE",
    "Verification",
    "canonical",
    "check_documents",
    "document_content",
    "seal_cycle",
    "seal_unsealed",
    "unreadable",
    "verify",
]
