"""Partners' invoices in the store: imported as received, kept, hashed and never altered.

``icdsl partner-invoice import FILE --partner P`` reads the file (:mod:`icdsl.recon.readers`:
UBL 2.1 or CSV in an ``invoice layout``), then, in one transaction under the
``partner_invoices`` lock:

- **the same file again** (same sha256) adds nothing: the report says which invoice it is
  (``already imported as ...``); CDR detail files given with it that are new are added to it;
- **the same number with other content** (partner, kind, number) is refused: an imported
  invoice is never replaced, a partner corrects it with a credit note, imported like an invoice;
- **the file as received** is copied into the data folder (``partner-invoices/PARTNER/..``),
  named by its sha256 and fsync'ed before the transaction commits; its rows (invoice, lines,
  their findings) are written and an audit entry says who imported what;
- **their CDR detail** (``--detail FILE``) is read through the record readers and the same
  intake normalization as our own traffic (E.164 numbers, UTC starts, rejects with reasons,
  duplicates by id, within a file and across the invoice's detail files) into Parquet next to the invoice's file: never an intake batch, so no
  billing cycle ever reads a partner's records. Their ``amount`` and ``rate`` columns, when a
  records layout maps them, are read as exact decimals (a value that is not a number is a
  reject, ``bad_amount``).

Triggers (migration 0009) refuse UPDATE and DELETE of the three tables on both back ends.
:func:`load_partner_invoice` and :func:`detail_table` hand the invoice and its detail to the
reconciliation as plain data (:mod:`icdsl.recon.model`) and an Arrow table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import base
from icdsl.billing import models as M
from icdsl.billing.errors import IngestError, StoreError
from icdsl.billing.files import TMP_PREFIX, fsync_dir, sha256_file
from icdsl.billing.sources import Source
from icdsl.plan.model import Plan, RecordLayout
from icdsl.rating.rejects import REJECTS_SCHEMA
from icdsl.recon.model import PartnerInvoice, PartnerInvoiceLine
from icdsl.recon.readers import InvoiceFileError, decimal_text, read_invoice
from icdsl.recon.spill import parquet_batches

if TYPE_CHECKING:
    from icdsl.billing.store import Store

FOLDER = "partner-invoices"
LOCK = "partner_invoices"
AMOUNT_TYPE = pa.decimal128(24, 8)
RATE_TYPE = pa.decimal128(24, 12)
#: their columns read as exact decimals when a records layout maps them
DECIMAL_COLUMNS = {"amount": AMOUNT_TYPE, "rate": RATE_TYPE}
BAD_AMOUNT = "bad_amount"
DETAIL_COLUMNS = ("id", "a_number", "b_number", "start", "duration_s", "service")


class PartnerInvoiceError(StoreError):
    """A partner's invoice that cannot be imported (the CLI exits with 1)."""


@dataclass
class DetailReport:
    """One CDR detail file of a partner's invoice: what was read of it."""

    file_name: str
    sha256: str
    read: int = 0
    passed: int = 0
    rejected: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    already: bool = False
    id: int | None = None

    @property
    def reconciles(self) -> bool:
        return self.read == self.passed + self.rejected + self.duplicates

    def __str__(self) -> str:
        if self.already:
            return f"  detail {self.file_name}: already imported with this invoice (detail {self.id})"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.by_reason.items()))
        return (f"  detail {self.file_name}: read {self.read}, passed {self.passed}, rejected {self.rejected}, "
                f"duplicates {self.duplicates}" + (f" ({reasons})" if reasons else ""))


@dataclass
class ImportReport:
    invoice: PartnerInvoice
    already: bool = False
    details: list[DetailReport] = field(default_factory=list)

    def __str__(self) -> str:
        inv = self.invoice
        what = "credit note" if inv.kind == "credit_note" else "invoice"
        if self.already:
            added = [d for d in self.details if not d.already]
            head = (f"{inv.source_name}: already imported as {inv.partner} {what} {inv.number} (id {inv.id}); "
                    + (f"{len(added)} new detail file(s) added to it" if added else "nothing changed"))
        else:
            head = (f"imported {inv.partner} {what} {inv.number} (id {inv.id}): {len(inv.lines)} lines, "
                    f"{inv.period_start} .. {inv.period_end}, total {inv.total} {inv.currency} before tax, "
                    f"tax {inv.tax_total} {inv.currency}")
        out = [head]
        out += [f"  finding: {f}" for f in ([] if self.already else inv.findings)]
        out += [str(d) for d in self.details]
        return "\n".join(out)


# --------------------------------------------------------------------------- import


def _partner_row(s: Session, code: str, plan: Plan | None) -> M.Partner:
    row = s.scalars(select(M.Partner).where(M.Partner.code == code)).first()
    if row is None:
        known = sorted(s.scalars(select(M.Partner.code)))
        if plan is not None:
            known = sorted(set(known) | {p.code for p in plan.partners})
        raise PartnerInvoiceError(f"unknown partner '{code}': declare it in the rules and load them "
                                  f"(partners: {', '.join(known) or 'none'})")
    return row


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "invoice"
    return cleaned[:120]


def _keep_file(store: Store, data: bytes, rel_dir: str, name: str, written: list[str] | None = None) -> str:
    """The file as received, written into the data folder (fsync'ed, renamed into place);
    ``written``: the files this import wrote (removed at once if it fails)."""
    rel = f"{rel_dir}/{name}"
    dest = store.data.abs(rel)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and dest.read_bytes() == data:
        return rel
    if written is not None:
        written.append(rel)
    tmp = dest.parent / f"{TMP_PREFIX}{os.getpid()}-{name}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    return rel


def import_partner_invoice(store: Store, path: str | os.PathLike[str], partner: str, plan: Plan | None = None, *,
                           layout: str | None = None, details: list[str | os.PathLike[str]] | tuple = (),
                           detail_reader: str | None = None, detail_layout: str | None = None,
                           detail_options: dict[str, str] | None = None) -> ImportReport:
    """Import a partner's invoice (or credit note) and its CDR detail files; see the module."""
    p = Path(path)
    if not p.is_file():
        raise PartnerInvoiceError(f"no such file: {p}")
    for d in details:
        if not Path(d).is_file():
            raise PartnerInvoiceError(f"no such detail file: {d}")
    inv_layout = None
    if layout is not None:
        inv_layout = plan.invoice_layout(layout) if plan is not None else None
        if inv_layout is None:
            known = ", ".join(x.name for x in plan.invoice_layouts) if plan is not None else ""
            raise PartnerInvoiceError(f"no invoice layout named '{layout}' in the rules (invoice layouts: "
                                      f"{known or 'none'})")
    rec_layout = _detail_layout(plan, detail_layout, partner)
    data = p.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    written: list[str] = []  # the data files this import writes: removed at once if it fails
    try:
        with store.session() as s:
            store.lock(s, LOCK, wait=True)
            partner_row = _partner_row(s, partner, plan)
            existing = s.scalars(select(M.PartnerInvoice).where(M.PartnerInvoice.sha256 == sha)).first()
            if existing is not None:
                if existing.partner_code != partner:
                    raise PartnerInvoiceError(
                        f"{p.name}: this file was imported for partner {existing.partner_code} (as "
                        f"{existing.number}, id {existing.id}), not {partner}")
                reports = _add_details(store, s, existing, details, rec_layout, detail_reader, detail_options,
                                       written)
                return ImportReport(_model(s, existing), already=True, details=reports)
            try:
                inv = read_invoice(data, p.name, partner, layout=inv_layout,
                                   layouts=[x.name for x in plan.invoice_layouts] if plan is not None else ())
            except InvoiceFileError as e:
                raise PartnerInvoiceError(f"cannot import {p.name}:\n{e}") from None
            same = s.scalars(select(M.PartnerInvoice).where(
                M.PartnerInvoice.partner_code == partner, M.PartnerInvoice.kind == inv.kind,
                M.PartnerInvoice.number == inv.number)).first()
            if same is not None:
                what = "credit note" if inv.kind == "credit_note" else "invoice"
                raise PartnerInvoiceError(
                    f"{p.name}: {partner} {what} {inv.number} was already imported (id {same.id}, from "
                    f"{same.file_name}, sha256 {same.sha256[:16]}...) with other content (sha256 {sha[:16]}...); "
                    f"an imported invoice is never replaced: a partner corrects an invoice with a credit note, "
                    f"import theirs")
            rel_dir = f"{FOLDER}/{partner}/{sha[:2]}/{sha}"
            kept = _keep_file(store, data, rel_dir, _safe_name(p.name), written)
            lines_total = sum((x.amount for x in inv.lines), Decimal(0))
            row = M.PartnerInvoice(
                partner_id=partner_row.id, partner_code=partner, kind=inv.kind, number=inv.number,
                issue_date=inv.issue_date, period_start=inv.period_start, period_end=inv.period_end,
                currency=inv.currency, total=inv.total, tax_total=inv.tax_total, lines_total=lines_total,
                line_count=len(inv.lines), format=inv.format, layout=inv_layout.name if inv_layout else None,
                file_name=p.name[:500], file_path=kept, sha256=sha, size_bytes=len(data),
                findings=list(inv.findings) or None, imported_at=base.now(), imported_by=base.actor())
            s.add(row)
            s.flush()
            for x in inv.lines:
                s.add(M.PartnerInvoiceLine(
                    invoice_id=row.id, number=x.number, service=x.service[:200], destination=x.destination,
                    prefix=x.prefix, band=x.band, period_start=x.period_start, period_end=x.period_end,
                    calls=x.calls, quantity=x.quantity, unit=x.unit, rate=x.rate, amount=x.amount,
                    currency=x.currency, description=x.description))
            s.flush()
            store.audit(s, "partner_invoice_imported", "partner_invoice", row.id,
                        f"{p.name}: {partner} {inv.kind} {inv.number}, {len(inv.lines)} lines, total {inv.total} "
                        f"{inv.currency}", {"sha256": sha, "file": kept, "findings": list(inv.findings),
                                            "layout": row.layout, "format": inv.format})
            reports = _add_details(store, s, row, details, rec_layout, detail_reader, detail_options, written)
            return ImportReport(_model(s, row), already=False, details=reports)
    except (PartnerInvoiceError, IngestError) as e:
        _remove_unreferenced(store, written)
        store._audit_apart("partner_invoice_import_failed", "partner_invoice", str(e)[:2000],
                           {"file": str(p), "sha256": sha, "partner": partner})
        raise
    except BaseException:
        _remove_unreferenced(store, written)
        raise


def _remove_unreferenced(store: Store, written: list[str]) -> None:
    """The files a failed import wrote, removed now (not left to the garbage collection) unless
    a row references them (the same content imported meanwhile); when the store cannot say,
    they are left to the garbage collection."""
    if not written:
        return
    try:
        with store.reading() as s:
            referenced = referenced_files(s)
    except Exception:  # the database is what failed: gc removes them later
        return
    for rel in written:
        if rel not in referenced:
            with contextlib.suppress(OSError):
                store.data.abs(rel).unlink(missing_ok=True)


def _detail_layout(plan: Plan | None, name: str | None, partner: str) -> RecordLayout:
    """The records layout of their detail, with the partner (theirs) and the direction (traffic
    we sent them: outbound) filled in where the file and the layout give none."""
    lay: RecordLayout | None = None
    if name is not None:
        lay = next((x for x in plan.layouts if x.name == name), None) if plan is not None else None
        if lay is None:
            known = ", ".join(x.name for x in plan.layouts) if plan is not None else ""
            raise PartnerInvoiceError(f"no records layout named '{name}' in the rules (records layouts: "
                                      f"{known or 'none'})")
    lay = lay or RecordLayout(name="partner_detail")
    mapped = {f for f, _ in lay.columns} | {f for f, _ in lay.constants}
    extra = tuple((f, v) for f, v in (("partner", partner), ("direction", "outbound")) if f not in mapped)
    return dataclasses.replace(lay, constants=lay.constants + extra)


# --------------------------------------------------------------------------- their CDR detail


def _add_details(store: Store, s: Session, inv: M.PartnerInvoice, details: list | tuple, layout: RecordLayout,
                 reader: str | None, options: dict[str, str] | None,
                 written: list[str] | None = None) -> list[DetailReport]:
    reports = []
    for d in details:
        dp = Path(d)
        dsha = sha256_file(dp)
        found = s.scalars(select(M.PartnerInvoiceDetail).where(
            M.PartnerInvoiceDetail.invoice_id == inv.id, M.PartnerInvoiceDetail.sha256 == dsha)).first()
        if found is not None:
            reports.append(DetailReport(dp.name, dsha, found.read_count, found.passed_count, found.rejected_count,
                                        found.duplicate_count, dict(found.by_reason or {}), already=True, id=found.id))
            continue
        earlier = _earlier_ids(store, s, inv.id)
        rep, rec_f, rej_f, reader_name = _read_detail(store, inv, dp, dsha, layout, reader, options, earlier)
        if written is not None:
            written.extend((rec_f.path, rej_f.path))
        row = M.PartnerInvoiceDetail(
            invoice_id=inv.id, file_name=dp.name[:500], sha256=dsha, size_bytes=dp.stat().st_size,
            reader=reader_name[:64], layout=layout.name,
            records_path=rec_f.path, records_sha256=rec_f.sha256, rejects_path=rej_f.path,
            rejects_sha256=rej_f.sha256, read_count=rep.read, passed_count=rep.passed,
            rejected_count=rep.rejected, duplicate_count=rep.duplicates, by_reason=rep.by_reason or None,
            imported_at=base.now())
        s.add(row)
        s.flush()
        rep.id = row.id
        store.audit(s, "partner_detail_imported", "partner_invoice", inv.id,
                    f"{dp.name}: detail of {inv.partner_code} {inv.number}: read {rep.read}, passed {rep.passed}, "
                    f"rejected {rep.rejected}, duplicates {rep.duplicates}",
                    {"sha256": dsha, "by_reason": rep.by_reason, "records": rec_f.path})
        reports.append(rep)
    return reports


def _detail_schema(schema: pa.Schema) -> pa.Schema:
    fields = []
    for f in schema:
        if f.name in DECIMAL_COLUMNS and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)):
            fields.append(pa.field(f.name, DECIMAL_COLUMNS[f.name]))
        else:
            fields.append(f)
    return pa.schema(fields)


def _decimals(records: pa.Table, schema: pa.Schema) -> tuple[pa.Table, pa.Table]:
    """Their amount/rate texts as exact decimals; the rows whose value is not a number, as
    rejects (``bad_amount``, with the record as JSON)."""
    bad = [False] * records.num_rows
    cols: dict[str, pa.Array] = {}
    for name, typ in DECIMAL_COLUMNS.items():
        if name not in records.column_names or schema.field(name).type != typ:
            continue
        scale = typ.scale
        values: list[Decimal | None] = []
        for i, t in enumerate(records.column(name).to_pylist()):
            if t is None or str(t).strip() == "":
                values.append(None)
                continue
            v = decimal_text(str(t))
            if v is None or -v.as_tuple().exponent > scale or v.adjusted() >= typ.precision - scale:  # type: ignore[operator]
                bad[i] = True
                values.append(None)
            else:
                values.append(v)
        cols[name] = pa.array(values, type=typ)
    for name, arr in cols.items():
        records = records.set_column(records.column_names.index(name), name, arr)
    if not any(bad):
        return records.cast(schema), REJECTS_SCHEMA.empty_table()
    mask = pa.array(bad)
    rejected = records.filter(mask)
    raw = [json.dumps({k: (str(v) if v is not None else None) for k, v in r.items()}, ensure_ascii=False)
           for r in rejected.to_pylist()]
    ids = [None if x is None else str(x) for x in rejected.column("id").to_pylist()]
    rejects = pa.table({"row": pa.array([None] * rejected.num_rows, pa.int64()), "id": pa.array(ids, pa.string()),
                        "reason": pa.array([BAD_AMOUNT] * rejected.num_rows, pa.string()),
                        "detail": pa.array(["their amount or rate is not a number"] * rejected.num_rows, pa.string()),
                        "raw": pa.array(raw, pa.string())}, schema=REJECTS_SCHEMA)
    return records.filter(pc.invert(mask)).cast(schema), rejects


def _earlier_ids(store: Store, s: Session, invoice_id: int) -> dict[str, str]:
    """The record ids of the invoice's detail files imported before, and the file of each."""
    ids: dict[str, str] = {}
    for d in s.scalars(select(M.PartnerInvoiceDetail).where(M.PartnerInvoiceDetail.invoice_id == invoice_id)
                       .order_by(M.PartnerInvoiceDetail.id)):
        store.data.verify(d.records_path, d.records_sha256)
        col = pq.read_table(store.data.abs(d.records_path), columns=["id"]).column("id")
        for x in pc.cast(col, pa.string()).to_pylist():
            ids.setdefault(x, d.file_name)
    return ids


def _repeats(records: pa.Table, earlier: dict[str, str]) -> tuple[pa.Table, pa.Table]:
    """The records whose id an earlier detail file of the invoice has: rejects (``duplicate_id``)."""
    if not earlier or not records.num_rows:
        return records, REJECTS_SCHEMA.empty_table()
    ids = pc.cast(records.column("id"), pa.string()).to_pylist()
    again = [x in earlier for x in ids]
    if not any(again):
        return records, REJECTS_SCHEMA.empty_table()
    mask = pa.array(again)
    dup = records.filter(mask)
    raw = [json.dumps({k: (None if v is None else str(v)) for k, v in r.items()}, ensure_ascii=False)
           for r in dup.to_pylist()]
    dup_ids = [x for x, a in zip(ids, again, strict=True) if a]
    rejects = pa.table({"row": pa.array([None] * dup.num_rows, pa.int64()), "id": pa.array(dup_ids, pa.string()),
                        "reason": pa.array(["duplicate_id"] * dup.num_rows, pa.string()),
                        "detail": pa.array([f"also in their detail file {earlier[x]}" for x in dup_ids], pa.string()),
                        "raw": pa.array(raw, pa.string())}, schema=REJECTS_SCHEMA)
    return records.filter(pc.invert(mask)), rejects


def _read_detail(store: Store, inv: M.PartnerInvoice, path: Path, dsha: str, layout: RecordLayout,
                 reader: str | None, options: dict[str, str] | None,
                 earlier: dict[str, str]) -> tuple[DetailReport, Any, Any, str]:
    rel_dir = f"{FOLDER}/{inv.partner_code}/{inv.sha256[:2]}/{inv.sha256}/detail-{dsha[:16]}"
    source = Source(path, layout, reader=reader, options=options)
    schema = _detail_schema(source.schema)
    rec_w = store.data.writer(rel_dir, "records", schema)
    rej_w = store.data.writer(rel_dir, "rejects", REJECTS_SCHEMA)
    bad_amounts = repeats = 0
    with rec_w, rej_w:
        for batch in source.batches():
            records, again = _repeats(batch.records, earlier)
            records, bad = _decimals(records, schema)
            bad_amounts += bad.num_rows
            repeats += again.num_rows
            rec_w.write(records)
            rej_w.write(batch.rejects)
            for extra in (again, bad):
                if extra.num_rows:
                    rej_w.write(extra)
        c = source.counts
        by_reason = dict(c.by_reason)
        for reason, n in ((BAD_AMOUNT, bad_amounts), ("duplicate_id", repeats)):
            if n:
                by_reason[reason] = by_reason.get(reason, 0) + n
        rep = DetailReport(path.name, dsha, c.read, c.passed - bad_amounts - repeats, c.rejected + bad_amounts,
                           c.duplicates + repeats, by_reason)
        if not rep.reconciles or rec_w.rows != rep.passed or rej_w.rows != rep.rejected + rep.duplicates:
            raise IngestError(f"{path.name}: the counts of their detail do not reconcile: read {rep.read}, passed "
                              f"{rep.passed}, rejected {rep.rejected}, duplicates {rep.duplicates}")
        rec_f = rec_w.commit()
        rej_f = rej_w.commit()
    return rep, rec_f, rej_f, source.name


# --------------------------------------------------------------------------- reading back


def _model(s: Session, row: M.PartnerInvoice) -> PartnerInvoice:
    lines = s.scalars(select(M.PartnerInvoiceLine).where(M.PartnerInvoiceLine.invoice_id == row.id)
                      .order_by(M.PartnerInvoiceLine.number)).all()
    details = s.scalars(select(M.PartnerInvoiceDetail.id).where(M.PartnerInvoiceDetail.invoice_id == row.id)
                        .order_by(M.PartnerInvoiceDetail.id)).all()
    return PartnerInvoice(
        partner=row.partner_code, number=row.number, issue_date=row.issue_date, period_start=row.period_start,
        period_end=row.period_end, currency=row.currency, total=_plain(row.total) or Decimal(0),
        lines=tuple(PartnerInvoiceLine(
            number=x.number, service=x.service, destination=x.destination, prefix=x.prefix, band=x.band,
            period_start=x.period_start, period_end=x.period_end, calls=x.calls,
            quantity=_plain(x.quantity), unit=x.unit, rate=_plain(x.rate), amount=_plain(x.amount) or Decimal(0),
            currency=x.currency, description=x.description) for x in lines),
        kind=row.kind, tax_total=_plain(row.tax_total) or Decimal(0), sha256=row.sha256, source_name=row.file_name,
        id=row.id, detail_batches=tuple(details), findings=tuple(row.findings or ()), format=row.format)


def _plain(v: Decimal | None) -> Decimal | None:
    """A stored decimal without the column's trailing zeros (0.00700000 -> 0.007)."""
    if v is None:
        return None
    n = v.normalize()
    return n.quantize(Decimal(1)) if n == n.to_integral_value() else n


def find_partner_invoice(s: Session, ref: str | int, partner: str | None = None) -> M.PartnerInvoice:
    """An imported invoice by id (a number) or by their invoice number (``partner`` narrows it)."""
    rows: list[M.PartnerInvoice] = []
    text = str(ref).strip()
    if text.isdigit():
        row = s.get(M.PartnerInvoice, int(text))
        if row is not None and (partner is None or row.partner_code == partner):
            rows = [row]
    if not rows:
        q = select(M.PartnerInvoice).where(M.PartnerInvoice.number == text)
        if partner is not None:
            q = q.where(M.PartnerInvoice.partner_code == partner)
        rows = list(s.scalars(q.order_by(M.PartnerInvoice.id)))
    if not rows:
        raise PartnerInvoiceError(f"no partner invoice '{text}'" + (f" of {partner}" if partner else "")
                                  + ": `icdsl partner-invoice list` shows those imported")
    if len(rows) > 1:
        which = ", ".join(f"id {r.id} ({r.partner_code} {r.kind})" for r in rows)
        raise PartnerInvoiceError(f"'{text}' is the number of several partner invoices ({which}): give the id "
                                  "or --partner")
    return rows[0]


def load_partner_invoice(store: Store, ref: str | int, partner: str | None = None) -> PartnerInvoice:
    """An imported partner invoice as plain data (:class:`icdsl.recon.model.PartnerInvoice`)."""
    with store.reading() as s:
        return _model(s, find_partner_invoice(s, ref, partner))


def partner_invoices(store: Store, partner: str | None = None, *, first: date | None = None,
                     last: date | None = None) -> list[PartnerInvoice]:
    """The imported partner invoices and credit notes (of ``partner``; whose period overlaps the
    days ``first`` .. ``last``, inclusive, when given), in the order they were imported."""
    with store.reading() as s:
        q = select(M.PartnerInvoice).order_by(M.PartnerInvoice.id)
        if partner is not None:
            q = q.where(M.PartnerInvoice.partner_code == partner)
        if first is not None:
            q = q.where(M.PartnerInvoice.period_end >= first)
        if last is not None:
            q = q.where(M.PartnerInvoice.period_start <= last)
        return [_model(s, r) for r in s.scalars(q)]


def kept_file(store: Store, ref: str | int, partner: str | None = None) -> Path:
    """Where the file as received is kept (in the data folder), checked against its sha256."""
    with store.reading() as s:
        row = find_partner_invoice(s, ref, partner)
        rel, sha = row.file_path, row.sha256
    store.data.verify(rel, sha)
    return store.data.abs(rel)


def details(store: Store, ref: str | int, partner: str | None = None) -> list[M.PartnerInvoiceDetail]:
    with store.reading() as s:
        inv = find_partner_invoice(s, ref, partner)
        return list(s.scalars(select(M.PartnerInvoiceDetail).where(M.PartnerInvoiceDetail.invoice_id == inv.id)
                              .order_by(M.PartnerInvoiceDetail.id)))


def detail_table(store: Store, ref: str | int, partner: str | None = None) -> pa.Table:
    """Their CDR detail of an imported invoice, every detail file's records, for the
    reconciliation: ``id`` (text), ``a_number``, ``b_number``, ``start`` (int64 µs since the
    epoch, UTC), ``duration_s``, ``service``, and ``amount`` (decimal128(24, 8)) and ``rate``
    (decimal128(24, 12)) when their detail has them (null otherwise); ``detail`` is the detail
    file's id. Each file is checked against its recorded sha256 first."""
    parts = [t for t in detail_batches(store, ref, partner) if t.num_rows]
    return pa.concat_tables(parts) if parts else _empty_detail()


DETAIL_BATCH_ROWS = 500_000


def detail_batches(store: Store, ref: str | int, partner: str | None = None, *,
                   rows: int = DETAIL_BATCH_ROWS) -> Iterator[pa.Table]:
    """:func:`detail_table` read a batch of at most ``rows`` records at a time (a detail of
    10M records is never held whole); the empty detail's table first, for its columns."""
    yield _empty_detail()
    for d in details(store, ref, partner):
        store.data.verify(d.records_path, d.records_sha256)
        for batch in parquet_batches(store.data.abs(d.records_path), rows):
            t = pa.Table.from_batches([batch])
            cols: dict[str, Any] = {
                "id": pc.cast(t.column("id"), pa.string()),
                "a_number": pc.cast(t.column("a_number"), pa.string()),
                "b_number": pc.cast(t.column("b_number"), pa.string()),
                "start": pc.cast(pc.cast(t.column("start"), pa.timestamp("us", tz="UTC")), pa.int64()),
                "duration_s": pc.cast(t.column("duration_s"), pa.int64()),
                "service": pc.cast(t.column("service"), pa.string()),
            }
            for name, typ in DECIMAL_COLUMNS.items():
                cols[name] = pc.cast(t.column(name), typ) if name in t.column_names else pa.nulls(t.num_rows, typ)
            cols["detail"] = pa.array(np.full(t.num_rows, d.id, np.int64))
            yield pa.table(cols)


def _empty_detail() -> pa.Table:
    return pa.schema([pa.field("id", pa.string()), pa.field("a_number", pa.string()),
                      pa.field("b_number", pa.string()), pa.field("start", pa.int64()),
                      pa.field("duration_s", pa.int64()), pa.field("service", pa.string()),
                      pa.field("amount", AMOUNT_TYPE), pa.field("rate", RATE_TYPE),
                      pa.field("detail", pa.int64())]).empty_table()


def detail_rejects(store: Store, detail_id: int) -> pa.Table:
    with store.reading() as s:
        d = s.get(M.PartnerInvoiceDetail, detail_id)
        if d is None:
            raise PartnerInvoiceError(f"no partner invoice detail {detail_id}")
    store.data.verify(d.rejects_path, d.rejects_sha256)
    return pq.read_table(store.data.abs(d.rejects_path))


def referenced_files(s: Session) -> set[str]:
    """The data files partner invoices reference (kept by the store's garbage collection)."""
    files = set(s.scalars(select(M.PartnerInvoice.file_path)))
    for rec, rej in s.execute(select(M.PartnerInvoiceDetail.records_path, M.PartnerInvoiceDetail.rejects_path)):
        files.update((rec, rej))
    return files


def file_checks(s: Session) -> list[tuple[str, str]]:
    """(path, sha256) of every partner-invoice file, for the store's verification."""
    out = [(r.file_path, r.sha256) for r in s.scalars(select(M.PartnerInvoice).order_by(M.PartnerInvoice.id))]
    for d in s.scalars(select(M.PartnerInvoiceDetail).order_by(M.PartnerInvoiceDetail.id)):
        out += [(d.records_path, d.records_sha256), (d.rejects_path, d.rejects_sha256)]
    return out
