"""Tamper evidence: every finalized document sealed, the seals chained (``icdsl verify``).

Finalizing a cycle seals each document it finalizes (invoices and credit notes, the settlement
statement, revenue-share statements) in the same transaction (:func:`seal_cycle`):

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
added later does not change what a seal of version 1 means.

:func:`verify` recomputes every document's content and every seal from the store and walks the
chain; :func:`check_documents` does it for the documents a face is about to present (``invoice
show``, ``invoice export``), which refuse a document that fails (:class:`SealBroken`).

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
from sqlalchemy.orm import Session

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
    return None if v is None else v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
_INVOICE_COLS = (_I.number, _I.status, _I.partner_code, _I.partner_name, _I.cycle_id, _I.stream, _I.currency,
                 _I.issue_date, _I.due_date, _I.subtotal, _I.taxable_amount, _I.tax_kind, _I.tax_rate,
                 _I.tax_amount, _I.total, _I.tax_note, _I.fx_rate_id, _I.corrects_invoice_id, _I.finalized_at)
_LINE_COLS = (_L.id, _L.line_no, _L.kind, _L.description, _L.direction, _L.service, _L.destination, _L.prefix,
              _L.band, _L.quantity, _L.unit, _L.rate, _L.rate_unit, _L.amount, _L.currency, _L.agreement_version_id,
              _L.agreement_hash, _L.rule, _L.data_file_id, _L.line_key, _L.record_count, _L.first_start,
              _L.last_start, _L.corrects_line_id, _L.source_amount, _L.source_currency, _L.fx_rate, _L.fx_rate_id,
              _L.rounding, _L.group_key, _L.adjustment_id)
_RATE_COLS = {"rate", "fx_rate", "tax_rate"}


def _row(row: Any) -> dict[str, Any]:
    """A row as JSON values: money and rates at their fixed scales, days and instants in ISO form
    (JSON columns as the database returns them). The hot loop of sealing: by type, not isinstance."""
    out = {}
    for k, v in zip(row._fields, row, strict=True):
        t = type(v)
        if t is Decimal:  # at the column's scale; a value the column could not hold keeps its digits
            q = v.quantize(_RATE if k in _RATE_COLS else _MONEY)
            v = format(q if q == v else v, "f")
        elif t is datetime:
            v = instant(v)
        elif t is date:
            v = v.isoformat()
        out[k] = v
    return out


_B = sa.bindparam
_DF, _IB, _CI, _RC, _X, _V, _CL = (M.DataFile, M.IntakeBatch, M.CycleInput, M.RecordChargeFile, M.FxRate,
                                   M.AgreementVersion, M.ChargeLine)
_SS, _SH = M.SettlementStatement, M.ShareStatement
# built once (finalizing a month seals hundreds of documents): SQLAlchemy caches their compiled form
_Q_CYCLE = select(_C.partner_code, _C.frequency, _C.label, _C.timezone, _C.local_start, _C.local_end, _C.period_start,
                  _C.period_end, _C.status, _C.plan_hash, _C.records_in, _C.rated_count,
                  _C.rejected_count).where(_C.id == _B("id"))
_Q_INPUTS = (select(_CI.batch_id, _CI.records, _IB.sha256, _IB.size_bytes, _IB.passed_count,
                    _DF.kind.label("file_kind"), _DF.path.label("file_path"), _DF.sha256.label("file_sha256"),
                    _DF.rows.label("file_rows"))
             .join(_IB, _IB.id == _CI.batch_id, isouter=True)
             .join(_DF, sa.and_(_DF.batch_id == _CI.batch_id, _DF.cycle_id.is_(None)), isouter=True)
             .where(_CI.cycle_id == _B("id")))
_Q_CYCLE_FILES = sa.union_all(
    select(_DF.kind, _DF.path, _DF.sha256, _DF.rows).where(_DF.cycle_id == _B("id")),
    select(sa.literal("record_charges", sa.String()).label("kind"), _RC.path, _RC.sha256, _RC.rows)
    .where(_RC.cycle_id == _B("id")))
_Q_FX = select(_X.id, _X.source, _X.base, _X.quote, _X.rate, _X.effective_from).where(
    _X.id.in_(_B("ids", expanding=True))).order_by(_X.id)
_Q_AGREEMENTS = select(_V.id, _V.name, _V.version, _V.revision, _V.partner_code, _V.effective_from, _V.effective_to,
                       _V.currency, _V.source_file_hash, _V.content_hash, _V.decks).where(
    sa.or_(_V.id.in_(_B("ids", expanding=True)), _V.content_hash.in_(_B("hashes", expanding=True)))).order_by(_V.id)
_Q_INVOICE = select(*_INVOICE_COLS).where(_I.id == _B("id"))
_Q_LINES = (select(*_LINE_COLS, _DF.sha256.label("data_file_sha256"))
            .join(_DF, _DF.id == _L.data_file_id, isouter=True)
            .where(_L.invoice_id == _B("id")).order_by(_L.line_no, _L.id))
_Q_LINE_CHARGES = (select(_CL.invoice_line_id, _CL.key_hash, _CL.kind, _CL.stage, _CL.amount, _CL.currency)
                   .join(_L, _L.id == _CL.invoice_line_id).where(_L.invoice_id == _B("id")))
_Q_NUMBER = select(_I.number).where(_I.id == _B("id"))
_Q_SETTLEMENT = select(_SS.number, _SS.status, _SS.partner_id, _SS.cycle_id, _SS.currency, _SS.receivable, _SS.payable,
                       _SS.net, _SS.finalized_at, _SS.details).where(_SS.id == _B("id"))
_Q_SHARE = select(_SH.number, _SH.status, _SH.partner_id, _SH.cycle_id, _SH.party, _SH.currency, _SH.total,
                  _SH.finalized_at, _SH.details).where(_SH.id == _B("id"))


def _connection(c: Conn) -> sa.Connection:
    """The session's connection (its pending changes flushed): Core statements, no ORM overhead."""
    if isinstance(c, Session):
        c.flush()
        return c.connection()
    return c


class _Reader:
    """Reads documents' contents; each cycle's part, FX rates and agreements once."""

    def __init__(self, c: Conn):
        self.c = _connection(c)
        self._cycles: dict[int, dict[str, Any] | None] = {}
        self._fx: dict[tuple[int, ...], list[dict[str, Any]]] = {}
        self._agreements: dict[tuple[tuple[int, ...], tuple[str, ...]], list[dict[str, Any]]] = {}

    def cycle(self, cycle_id: int | None) -> dict[str, Any] | None:
        if cycle_id is None:
            return None
        if cycle_id not in self._cycles:
            self._cycles[cycle_id] = self._cycle(cycle_id)
        return self._cycles[cycle_id]

    def _cycle(self, cycle_id: int) -> dict[str, Any] | None:
        c = self.c
        row = c.execute(_Q_CYCLE, {"id": cycle_id}).first()
        if row is None:
            return None
        inputs: dict[int, dict[str, Any]] = {}
        for r in c.execute(_Q_INPUTS, {"id": cycle_id}):
            i = inputs.get(r.batch_id)
            if i is None:
                i = inputs[r.batch_id] = {"batch_id": r.batch_id, "records": r.records, "sha256": r.sha256,
                                          "size_bytes": r.size_bytes, "passed_count": r.passed_count, "files": []}
            if r.file_path is not None:
                i["files"].append({"kind": r.file_kind, "path": r.file_path, "sha256": r.file_sha256,
                                   "rows": r.file_rows})
        for i in inputs.values():
            i["files"].sort(key=lambda f: (f["kind"], f["path"]))
        files = [_row(r) for r in c.execute(_Q_CYCLE_FILES, {"id": cycle_id})]
        return {**_row(row), "inputs": sorted(inputs.values(), key=lambda i: (i["sha256"] or "", i["batch_id"])),
                "files": sorted(files, key=lambda f: (f["kind"], f["path"]))}

    def fx(self, ids: Iterable[int | None]) -> list[dict[str, Any]]:
        wanted = tuple(sorted({i for i in ids if i is not None}))
        if not wanted:
            return []
        if wanted not in self._fx:
            got = [_row(r) for r in self.c.execute(_Q_FX, {"ids": list(wanted)})]
            missing = set(wanted) - {r["id"] for r in got}
            self._fx[wanted] = got + [{"id": i, "missing": True} for i in sorted(missing)]
        return [dict(r) for r in self._fx[wanted]]

    def agreements(self, ids: Iterable[int | None], hashes: Iterable[str | None]) -> list[dict[str, Any]]:
        key = (tuple(sorted({i for i in ids if i is not None})), tuple(sorted({h for h in hashes if h})))
        if not key[0] and not key[1]:
            return []
        if key not in self._agreements:
            got = [_row(r) for r in self.c.execute(_Q_AGREEMENTS, {"ids": list(key[0]), "hashes": list(key[1])})]
            missing = (set(key[0]) - {r["id"] for r in got}, set(key[1]) - {r["content_hash"] for r in got})
            self._agreements[key] = (got + [{"id": i, "missing": True} for i in sorted(missing[0])]
                                     + [{"content_hash": h, "missing": True} for h in sorted(missing[1])])
        return [dict(r) for r in self._agreements[key]]

    def invoice(self, invoice_id: int) -> dict[str, Any] | None:
        c = self.c
        row = c.execute(_Q_INVOICE, {"id": invoice_id}).first()
        if row is None:
            return None
        head = _row(row)
        raw = list(c.execute(_Q_LINES, {"id": invoice_id}))
        charges: dict[int, list[dict[str, Any]]] = defaultdict(list)
        if raw:
            for r in c.execute(_Q_LINE_CHARGES, {"id": invoice_id}):
                d = _row(r)
                charges[d.pop("invoice_line_id")].append(d)
        lines = []
        for ln in raw:
            d = _row(ln)
            d["charges"] = sorted(charges.get(ln.id, []), key=lambda x: x["key_hash"])
            lines.append(d)
        corrects = None
        if head["corrects_invoice_id"] is not None:
            corrects = c.execute(_Q_NUMBER, {"id": head["corrects_invoice_id"]}).scalar()
        return {
            "kind": "invoice", "id": invoice_id, **head, "corrects_number": corrects, "lines": lines,
            "fx": self.fx([head["fx_rate_id"], *(ln.fx_rate_id for ln in raw)]),
            "agreements": self.agreements((ln.agreement_version_id for ln in raw), (ln.agreement_hash for ln in raw)),
            "cycle": self.cycle(head["cycle_id"]),
        }

    def _statement(self, kind: str, doc_id: int, row: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        head = _row(row)
        details = head.pop("details")
        lines = (details or {}).get("lines") or []
        return {
            "kind": kind, "id": doc_id, **head, "details": details,
            "fx": self.fx(ln.get("fx_rate_id") for ln in lines if isinstance(ln, dict)),
            "agreements": self.agreements((), (ln.get("agreement_hash") for ln in lines if isinstance(ln, dict))),
            "cycle": self.cycle(head["cycle_id"]),
        }

    def settlement(self, stm_id: int) -> dict[str, Any] | None:
        return self._statement("settlement", stm_id, self.c.execute(_Q_SETTLEMENT, {"id": stm_id}).first())

    def share(self, shr_id: int) -> dict[str, Any] | None:
        return self._statement("share", shr_id, self.c.execute(_Q_SHARE, {"id": shr_id}).first())

    def content(self, kind: str, doc_id: int) -> dict[str, Any] | None:
        return {"invoice": self.invoice, "settlement": self.settlement, "share": self.share}[kind](doc_id)


def document_content(c: Conn, kind: str, doc_id: int) -> dict[str, Any] | None:
    """What the seal of a document covers, as JSON values (None: no such document)."""
    return _Reader(c).content(kind, doc_id)


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


_Q_UNSEALED = {one: _unsealed_query(one) for one in (False, True)}
_Q_HEAD = select(_S.position, _S.seal).order_by(_S.position.desc()).limit(1)
_EPOCH = datetime.min.replace(tzinfo=UTC)


def _missing_query(kind: str, T: Any) -> sa.Select[Any]:
    """Documents without a seal that were finalized by the look of anything left: their status,
    a number (given only by finalization), or their cycle's status."""
    return (select(T.id, T.number, T.status)
            .outerjoin(_S, sa.and_(_S.kind == kind, _S.document_id == T.id))
            .outerjoin(_C, _C.id == T.cycle_id)
            .where(_S.position.is_(None),
                   sa.or_(T.status == "finalized", T.number.is_not(None), _C.status == "finalized")))


_Q_MISSING = [(kind, _missing_query(kind, T)) for kind, T in
              (("invoice", M.Invoice), ("settlement", M.SettlementStatement), ("share", M.ShareStatement))]


def _unsealed(c: sa.Connection, cycle_id: int | None) -> list[tuple[Any, str, int, str, int | None]]:
    """Finalized documents without a seal: (finalized_at, kind, id, number, cycle_id), in the order
    they are sealed (finalization, then invoices, settlement, shares, each by id)."""
    out = [(r.finalized_at, r.kind, r.id, r.number, r.cycle_id)
           for r in c.execute(_Q_UNSEALED[cycle_id is not None], {"cycle_id": cycle_id})]
    return sorted(out, key=lambda d: (d[0] or _EPOCH, _ORDER[d[1]], d[2]))


def _head(c: sa.Connection) -> tuple[int, str]:
    row = c.execute(_Q_HEAD).first()
    return (0, GENESIS) if row is None else (row.position, row.seal)


def seal_unsealed(c: Conn, cycle_id: int | None = None) -> int:
    """Seal the finalized documents that have no seal yet (of one cycle, or all: migration 0007
    seals the documents finalized before it), appended to the chain. Returns how many."""
    conn = _connection(c)
    _lock_chain(conn)
    docs = _unsealed(conn, cycle_id)
    if not docs:
        return 0
    position, previous = _head(conn)
    reader = _Reader(conn)
    t = base.now()
    rows = []
    for _at, kind, doc_id, number, cyc in docs:
        content = canonical(reader.content(kind, doc_id))
        position += 1
        h = sha256(content)
        seal = seal_of(position, kind, number, h, previous)
        rows.append({"position": position, "kind": kind, "document_id": doc_id, "number": number, "cycle_id": cyc,
                     "version": VERSION, "content": content, "content_hash": h, "previous": previous, "seal": seal,
                     "sealed_at": t})
        previous = seal
    conn.execute(insert(M.DocumentSeal.__table__), rows)
    return len(rows)


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


# what reading a value changed outside icdsl can raise (text in a money column, a bad date...)
UNREADABLE = (ArithmeticError, ValueError, TypeError, sa.exc.StatementError)


def _current(reader: _Reader, kind: str, doc_id: int) -> dict[str, Any] | str | None:
    """A document's content now; the error as text if a value of it can no longer be read."""
    try:
        return reader.content(kind, doc_id)
    except UNREADABLE as e:
        return f"a value of it can no longer be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r})"


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


def verify(c: Conn, *, head: str | None = None) -> Verification:
    """Every seal recomputed from the store, the chain walked from genesis to its head, and
    every finalized document checked to have a seal. ``head``: a chain head recorded earlier,
    which must still be in the chain."""
    c = _connection(c)
    reader = _Reader(c)
    v = Verification(anchor=head)
    before = None
    anchored = False
    for row in c.execute(select(*_SEAL_COLS).order_by(_S.position)):
        v.seals += 1
        label = _label(row.kind, row.number, row.document_id)
        expected = before if before is not None and before.position == row.position - 1 else None
        for p in (_link_problem(row, label, expected), _seal_problem(row, label),
                  _content_problem(row, _current(reader, row.kind, row.document_id), label)):
            if p is not None:
                v.problems.append(p)
        anchored = anchored or (head is not None and row.seal == head.strip().lower())
        before = row
        v.head_position, v.head = row.position, row.seal
    for kind, q in _Q_MISSING:
        for r in c.execute(q):
            why = "finalized" if r.status == "finalized" else f"{r.status} but numbered or of a finalized cycle"
            v.problems.append(SealProblem("unsealed", _label(kind, r.number, r.id),
                                          f"{why}, but it has no seal (its seal was removed)"))
    v.documents = _finalized_count(c)
    if head is not None and not anchored:
        v.problems.append(SealProblem("anchor", "the chain", f"the recorded head {head.strip()} is not one of its "
                                                             "seals: seals were rewritten or removed"))
    return v


def _finalized_count(c: sa.Connection) -> int:
    n = 0
    for T in (M.Invoice, M.SettlementStatement, M.ShareStatement):
        n += c.execute(select(sa.func.count()).select_from(T).where(T.status == "finalized")).scalar() or 0
    return n


_Q_SEAL_OF = select(*_SEAL_COLS).where(_S.kind == _B("kind"), _S.document_id == _B("id"))
_Q_SEAL_AT = select(*_SEAL_COLS).where(_S.position == _B("position"))
_DOC_KINDS = {"invoice": "invoice", "credit_note": "invoice", "statement": "settlement", "share_statement": "share"}


def check_documents(c: Conn, docs: Iterable[dict[str, Any]]) -> None:
    """Raise :class:`SealBroken` for the first document (a mapping of :mod:`icdsl.billing.documents`)
    whose seal does not hold: its content, its seal row and its link to the seal before it are
    checked (``icdsl verify`` walks the whole chain). A draft has no seal to check."""
    c = _connection(c)
    reader = _Reader(c)
    for doc in docs:
        kind = _DOC_KINDS.get(doc.get("kind", ""))
        if kind is None or doc.get("id") is None:
            continue
        label = _label(kind, doc.get("number"), doc["id"])
        row = c.execute(_Q_SEAL_OF, {"kind": kind, "id": doc["id"]}).first()
        if row is None:
            if doc.get("status") == "finalized" or doc.get("number"):
                _refuse(SealProblem("unsealed", label, "finalized, but it has no seal (its seal was removed)"))
            continue
        before = None
        if row.position > 1:
            before = c.execute(_Q_SEAL_AT, {"position": row.position - 1}).first()
        for p in (_content_problem(row, _current(reader, kind, doc["id"]), label), _seal_problem(row, label),
                  _link_problem(row, label, before)):
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
