"""Invoices and settlement statements as *documents*: plain mappings every output writes.

The keys follow the document format of :mod:`icdsl.exporters` (``kind``, ``number``,
``partner_code``, ``partner_name``, ``currency``, ``issue_date``, ``due_date``, ``period``,
``stream``, ``subtotal``, ``tax_kind``, ``tax_rate``, ``tax_amount``, ``total``, ``lines``;
statements: ``receivable``, ``payable``, ``net``) so that any exporter plugin can write them,
plus what icdsl's own outputs show: ``summary`` (the lines added up by service), ``tax_label``,
``tax_note``, ``agreements`` (name, version, hash), ``fx`` (the rates used) and ``rounding``;
``seller`` (our company as the rules declare it, or None) and ``buyer`` (the partner's legal
details), as :meth:`icdsl.parties.Party.as_json` mappings; on an invoice that corrects others,
``corrects`` (their numbers).
Amounts are exact ``Decimal``; dates are ``date`` objects.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.billing.amounts import Tax, minor_units, plain_number, present
from icdsl.billing.errors import StoreError
from icdsl.billing.periods import parse_period
from icdsl.parties import Party


def _period(s: Session, cycle_id: int | None) -> dict[str, Any]:
    cyc = s.get(M.BillingCycle, cycle_id) if cycle_id else None
    if cyc is None:
        return {"period": None, "period_start": None, "period_end": None}
    return {"period": cyc.label, "period_start": cyc.local_start, "period_end": cyc.local_end - timedelta(days=1),
            "timezone": cyc.timezone}


def _interim(s: Session, inv: M.Invoice) -> dict[str, Any]:
    """An interim invoice of progressive billing (0018; no cycle): its period from its first day
    to the last day of the usage it billed, and what it is."""
    label = getattr(inv, "interim_period", None)
    if not label:
        return {}
    p = s.get(M.Partner, inv.partner_id)
    per = parse_period(label, p.timezone, p.billing)
    return {"period": label, "period_start": per.local_start, "period_end": inv.interim_until,
            "timezone": per.timezone,
            "interim": {"period": label, "until": inv.interim_until,
                        "threshold": present(inv.interim_threshold, inv.currency),
                        "note": f"Interim invoice: usage of {label} to {inv.interim_until} (progressive billing); "
                                "the period's final invoice deducts it"}}


def _period_cycle(s: Session, inv: M.Invoice) -> int | None:
    """The cycle whose period a document covers: its own; a credit note issued on its own (by
    hand, for an accepted dispute) covers the period of the invoice it credits (EN 16931 BG-14)."""
    if inv.cycle_id is None and inv.corrects_invoice_id is not None:
        return s.scalar(select(M.Invoice.cycle_id).where(M.Invoice.id == inv.corrects_invoice_id))
    return inv.cycle_id


def _partner(s: Session, partner_id: int) -> dict[str, Any]:
    p = s.get(M.Partner, partner_id)
    return {"partner_code": p.code, "partner_name": p.name, "partner_country": p.country,
            "partner_kind": p.kind, "due_days": p.due_days, "buyer": buyer_party(p)}


def buyer_party(p: M.Partner) -> dict[str, Any]:
    """The partner's legal details (:mod:`icdsl.parties`, as JSON); its name and country when it
    declares nothing more."""
    d = dict(p.party) if p.party else Party(p.code, p.name, p.country).as_json()
    d.update(code=p.code, name=p.name, country=p.country)
    return d


#: our company's row (read at every cycle's finalization: built once, read as a row)
_SELLER = select(M.Company.party, M.Company.code, M.Company.name).order_by(M.Company.id).limit(1)


def seller_party(s: Session) -> dict[str, Any] | None:
    """Our company as declared (``company``), or None when the rules declare none."""
    row = s.execute(_SELLER).first()
    return None if row is None else dict(row.party, code=row.code, name=row.name)


def share_party(s: Session, party: str) -> dict[str, Any] | None:
    """The party a revenue-share statement is for (a partner's legal details; None for ``us``
    or a party the store does not know)."""
    if party == "us":
        return None
    p = s.scalars(select(M.Partner).where(M.Partner.code == party)).first()
    return None if p is None else buyer_party(p)


def doc_type(inv: M.Invoice) -> str:
    """``invoice``, ``credit_note`` or ``debit_note``: as drafted (0016), else (documents written
    before) a credit note when the total is negative."""
    if getattr(inv, "doc_type", None):
        return inv.doc_type
    return "credit_note" if inv.total is not None and inv.total < 0 else "invoice"


def _sealed_parties(doc: dict[str, Any], seller: dict[str, Any] | None, buyer: dict[str, Any] | None,
                    finalized: bool) -> None:
    """The parties as the document was finalized with them (0016), in place of the rules' current
    ones; ``parties`` says which (``sealed``, or ``current`` on drafts and older documents)."""
    if buyer is not None:
        doc["buyer"] = dict(buyer)
    if seller is not None or (finalized and buyer is not None):
        doc["seller"] = None if seller is None else dict(seller)
    doc["parties"] = "sealed" if buyer is not None else "current"


def summarize(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary view: lines added up by kind, direction and service (sums of rounded lines,
    so the summary adds up to the same subtotal)."""
    out: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
    for ln in lines:
        key = (ln["kind"], ln.get("direction") or "", ln.get("service") or "", ln.get("unit") or "")
        acc = out.get(key)
        if acc is None:
            desc = f"{key[1]} {key[2]}".strip() or ln["description"]
            if ln["kind"] != "traffic":
                desc = f"{ln['kind']}: {desc}"
            acc = out[key] = {"kind": ln["kind"], "description": desc, "direction": ln.get("direction"),
                              "service": ln.get("service"), "quantity": Decimal(0), "unit": ln.get("unit"),
                              "amount": Decimal(0), "currency": ln["currency"], "lines": 0, "record_count": 0}
        acc["quantity"] += ln["quantity"] or Decimal(0)
        acc["amount"] += ln["amount"]
        acc["lines"] += 1
        acc["record_count"] += ln.get("record_count") or 0
    return list(out.values())


def _line(ln: M.InvoiceLine) -> dict[str, Any]:
    return {
        "line_id": ln.id, "line_no": ln.line_no, "kind": ln.kind, "description": ln.description,
        "direction": ln.direction, "service": ln.service, "destination": ln.destination, "prefix": ln.prefix,
        "band": ln.band, "quantity": plain_number(ln.quantity), "unit": ln.unit, "rate": plain_number(ln.rate),
        "rate_unit": ln.rate_unit, "amount": present(ln.amount, ln.currency), "currency": ln.currency,
        "rule": ln.rule, "record_count": ln.record_count, "source_amount": plain_number(ln.source_amount),
        "source_currency": ln.source_currency, "fx_rate": plain_number(ln.fx_rate),
        "rounding": ln.rounding, "corrects_line_id": ln.corrects_line_id, "agreement_hash": ln.agreement_hash,
    }


_V = M.AgreementVersion
# built once: every invoice document asks it (finalizing a month builds hundreds)
_AGREEMENTS = (select(_V.name, _V.version, _V.content_hash, _V.id)
               .where(_V.content_hash.in_(bindparam("hashes", expanding=True))).order_by(_V.name, _V.version))


def _agreements(s: Session, hashes: set[str],
                cache: dict[frozenset[str], list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    if not hashes:
        return []
    key = frozenset(hashes)
    if cache is not None and key in cache:
        return [dict(a) for a in cache[key]]
    rows = s.execute(_AGREEMENTS, {"hashes": sorted(hashes)})
    out = [{"name": name, "version": version, "hash": h, "id": i} for name, version, h, i in rows]
    if cache is not None and len(out) == len(hashes):  # every one found (a hash names one version, for good)
        cache[key] = [dict(a) for a in out]
    return out


def _fx(s: Session, ids: set[int], lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rid in sorted(i for i in ids if i is not None):
        r = s.get(M.FxRate, rid)
        used = sorted({(ln["source_currency"], str(ln["fx_rate"])) for ln in lines
                       if ln.get("fx_rate_id") == rid and ln.get("fx_rate") is not None})
        for src_ccy, rate in used:
            out.append({"source": r.source, "from": src_ccy, "to": lines[0]["currency"], "rate": Decimal(rate),
                        "listed": f"{r.base}/{r.quote} {plain_number(r.rate)}", "effective_from": r.effective_from})
    return out


def invoice_document(s: Session, inv: M.Invoice, rows: list[Any] | None = None,
                     agreements: dict[frozenset[str], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The invoice as a document. ``rows``: its lines by line number when the caller read them
    (ORM objects or rows of ``invoice_lines``); ``agreements``: a cache of the agreements'
    descriptions shared by the documents of one call."""
    if rows is None:
        rows = list(s.scalars(select(M.InvoiceLine).where(M.InvoiceLine.invoice_id == inv.id)
                              .order_by(M.InvoiceLine.line_no)))
    lines = [_line(ln) for ln in rows]
    for ln, row in zip(lines, rows, strict=True):
        ln["fx_rate_id"] = row.fx_rate_id
    tax = Tax(inv.tax_kind, inv.tax_rate, inv.taxable_amount if inv.taxable_amount is not None else inv.subtotal,
              inv.tax_amount if inv.tax_amount is not None else Decimal(0), inv.tax_note)
    modes = sorted({(ln.rounding or "").split(" to ")[0] for ln in rows if ln.rounding})
    doc = {
        "kind": doc_type(inv),
        "id": inv.id, "number": inv.number, "status": inv.status, **_partner(s, inv.partner_id),
        # the partner as the invoice was issued to (sealed with it), not as renamed since
        "partner_code": inv.partner_code, "partner_name": inv.partner_name, "seller": seller_party(s),
        "currency": inv.currency, "issue_date": inv.issue_date, "due_date": inv.due_date,
        **_period(s, _period_cycle(s, inv)), **_interim(s, inv), "stream": inv.stream,
        "subtotal": present(inv.subtotal, inv.currency),
        "tax_kind": inv.tax_kind, "tax_rate": plain_number(inv.tax_rate),
        "tax_amount": present(inv.tax_amount, inv.currency), "total": present(inv.total, inv.currency),
        "taxable_amount": present(tax.taxable, inv.currency), "tax_label": tax.label, "tax_note": inv.tax_note,
        "lines": lines, "summary": summarize(lines),
        "agreements": _agreements(s, {ln.agreement_hash for ln in rows if ln.agreement_hash}, agreements),
        "fx": _fx(s, {ln.fx_rate_id for ln in rows if ln.fx_rate_id}, lines),
        "rounding": (f"each line rounded once to {minor_units(inv.currency)} decimals "
                     f"({', '.join(modes) or 'half_up'}); subtotal = sum of the lines; tax rounded half_up "
                     "on the subtotal"
                     + ("; progressive billing: tax of the usage billed to date less the tax of the interim "
                        "invoices already billed" if getattr(inv, "interim_period", None)
                        or any(ln.kind == "other" and ln.description.startswith("Interim invoice ") for ln in rows)
                        else "")),
    }
    doc["buyer"] = dict(doc["buyer"], name=inv.partner_name or doc["buyer"]["name"])
    _sealed_parties(doc, getattr(inv, "seller", None), getattr(inv, "buyer", None), inv.status == "finalized")
    corrected = {ln.corrects_line_id for ln in rows if getattr(ln, "corrects_line_id", None)}
    numbers: set[str] = set()
    if corrected:  # the invoices whose lines this one corrects (a credit note's BT-25)
        numbers.update(n for n in s.scalars(
            select(M.Invoice.number).join(M.InvoiceLine, M.InvoiceLine.invoice_id == M.Invoice.id)
            .where(M.InvoiceLine.id.in_(sorted(corrected)), M.Invoice.id != inv.id).distinct()) if n)
    if inv.corrects_invoice_id is not None:  # a credit note issued against an invoice
        corrected_inv = s.get(M.Invoice, inv.corrects_invoice_id)
        if corrected_inv is not None and corrected_inv.number:
            numbers.add(corrected_inv.number)
    if numbers:
        doc["corrects"] = sorted(numbers)
    return doc


def _charge_ids(s: Session, cycle_id: int | None) -> dict[str, int]:
    """Charge line ids of a cycle by key (to trace the lines of statements)."""
    if cycle_id is None:
        return {}
    return {k: i for k, i in s.execute(select(M.ChargeLine.key, M.ChargeLine.id).where(M.ChargeLine.cycle_id == cycle_id))}


def statement_document(s: Session, stm: M.SettlementStatement) -> dict[str, Any]:
    details = stm.details or {}
    lines = []
    ids = _charge_ids(s, stm.cycle_id)
    for ln in details.get("lines", []):
        d = dict(ln)
        if d.get("key"):
            d["charge_line_id"] = ids.get(d["key"])
        for k in ("quantity", "rate", "source_amount", "fx_rate"):
            if d.get(k) is not None:
                d[k] = plain_number(Decimal(d[k]))
        d["amount"] = present(Decimal(d["amount"]), d.get("currency") or stm.currency)
        lines.append(d)
    invoices = list(s.scalars(select(M.Invoice).where(M.Invoice.cycle_id == stm.cycle_id).order_by(M.Invoice.id)))
    out = {
        "kind": "statement", "id": stm.id, "number": stm.number, "status": stm.status,
        **_partner(s, stm.partner_id), "seller": seller_party(s), "currency": stm.currency,
        "issue_date": _date(details.get("issue_date")), "due_date": _date(details.get("due_date")),
        **_period(s, stm.cycle_id), "stream": "netting",
        "receivable": present(stm.receivable, stm.currency), "payable": present(stm.payable, stm.currency),
        "net": present(stm.net, stm.currency), "subtotal": present(stm.payable, stm.currency), "tax_kind": "none", "tax_rate": Decimal(0), "tax_amount": None, "total": None,
        "tax_label": None, "tax_note": None,
        "invoices": [{"number": i.number, "id": i.id, "stream": i.stream, "subtotal": present(i.subtotal, i.currency)}
                     for i in invoices],
        "lines": lines, "summary": summarize(lines),
        "receivable_items": [dict(i, amount=present(Decimal(i["amount"]), i.get("currency") or stm.currency))
                             for i in details.get("receivable_items", [])],
        "payable_items": [dict(i, amount=present(Decimal(i["amount"]), i.get("currency") or stm.currency))
                          for i in details.get("payable_items", [])],
        "agreements": _agreements(s, {ln["agreement_hash"] for ln in lines if ln.get("agreement_hash")}),
        "fx": _fx(s, {ln.get("fx_rate_id") for ln in lines if ln.get("fx_rate_id")}, lines),
        "rounding": f"each line rounded once to {minor_units(stm.currency)} decimals; net = receivable - payable",
        "payer": "partner" if stm.net > 0 else "us" if stm.net < 0 else "none",
    }
    if "buyer" in details:  # the parties as finalized (0016)
        _sealed_parties(out, details.get("seller"), details["buyer"], stm.status == "finalized")
    return out


def share_document(s: Session, shr: M.ShareStatement) -> dict[str, Any]:
    """A revenue-share statement: one party's shares of a cycle in one currency."""
    details = shr.details or {}
    lines = []
    ids = _charge_ids(s, shr.cycle_id)
    for ln in details.get("lines", []):
        d = dict(ln)
        d["charge_line_id"] = ids.get(d.get("key") or "")
        d["quantity"] = plain_number(Decimal(d.get("quantity") or "1"))
        d["amount"] = present(Decimal(d["amount"]), d.get("currency") or shr.currency)
        lines.append(d)
    party = shr.party
    name = party
    if party != "us":
        p = s.scalars(select(M.Partner).where(M.Partner.code == party)).first()
        name = p.name if p is not None else party
    else:
        name = "us (what we keep)"
    splits = []
    for sp in details.get("splits", []):
        splits.append(dict(sp, amount_split=present(Decimal(sp["amount_split"]), sp["currency"])
                           if sp.get("amount_split") is not None else None,
                           total_of_shares=present(Decimal(sp["total_of_shares"]), sp["currency"]),
                           parties={k: present(Decimal(v), sp["currency"]) for k, v in sp["parties"].items()}))
    total = present(shr.total, shr.currency)
    out = {
        "kind": "share_statement", "id": shr.id, "number": shr.number, "status": shr.status,
        **_partner(s, shr.partner_id), "seller": seller_party(s), "party": party, "party_name": name, "currency": shr.currency,
        "issue_date": _date(details.get("issue_date")), "due_date": None, **_period(s, shr.cycle_id),
        "stream": f"share-{party}", "subtotal": total, "total": total, "tax_kind": "none", "tax_rate": Decimal(0),
        "tax_amount": None, "tax_label": None, "tax_note": None, "lines": lines, "summary": summarize(lines),
        "splits": splits, "method": details.get("method"),
        "agreements": _agreements(s, {ln["agreement_hash"] for ln in lines if ln.get("agreement_hash")}), "fx": [],
        "rounding": ("each share: the exact share rounded towards zero to the minor unit, the units left to the "
                     "largest remainders (ties to the party listed first): the shares of a split add up to the "
                     "amount split exactly"),
    }
    if "seller" in details:  # the parties as finalized (0016)
        out["seller"] = details["seller"]
        if details.get("buyer") is not None:
            out["recipient"] = details["buyer"]
        out["parties"] = "sealed"
    return out


def _date(text: str | None):
    return date.fromisoformat(text) if text else None


def cycle_documents(s: Session, cycle_id: int) -> list[dict[str, Any]]:
    docs = [invoice_document(s, inv) for inv in s.scalars(
        select(M.Invoice).where(M.Invoice.cycle_id == cycle_id).order_by(M.Invoice.id))]
    docs += [statement_document(s, st) for st in s.scalars(
        select(M.SettlementStatement).where(M.SettlementStatement.cycle_id == cycle_id)
        .order_by(M.SettlementStatement.id))]
    docs += [share_document(s, sh) for sh in s.scalars(
        select(M.ShareStatement).where(M.ShareStatement.cycle_id == cycle_id).order_by(M.ShareStatement.id))]
    return docs


def find_document(s: Session, ref: str) -> dict[str, Any]:
    """An invoice or statement by number (``INV-2026-000001``, ``STM-...``) or by id (``#12``,
    ``12`` for an invoice, ``stm:3`` for a statement)."""
    text = ref.strip()
    if text.lower().startswith("shr:") and text[4:].isdigit():
        shr = s.get(M.ShareStatement, int(text[4:]))
        if shr is None:
            raise StoreError(f"no revenue-share statement #{text[4:]}")
        return share_document(s, shr)
    if text.upper().startswith("SHR-"):
        shr = s.scalars(select(M.ShareStatement).where(M.ShareStatement.number == text)).first()
        if shr is not None:
            return share_document(s, shr)
    if text.lower().startswith("stm:") and text[4:].isdigit():
        stm = s.get(M.SettlementStatement, int(text[4:]))
        if stm is None:
            raise StoreError(f"no settlement statement #{text[4:]}")
        return statement_document(s, stm)
    if text.lstrip("#").isdigit():
        inv = s.get(M.Invoice, int(text.lstrip("#")))
        if inv is None:
            raise StoreError(f"no invoice #{text.lstrip('#')}")
        return invoice_document(s, inv)
    inv = s.scalars(select(M.Invoice).where(M.Invoice.number == text)).first()
    if inv is not None:
        return invoice_document(s, inv)
    stm = s.scalars(select(M.SettlementStatement).where(M.SettlementStatement.number == text)).first()
    if stm is not None:
        return statement_document(s, stm)
    near = list(s.scalars(select(M.Invoice.number).where(
        M.Invoice.number.is_not(None), or_(M.Invoice.number.like(f"%{text[-6:]}%"))).limit(5)))
    raise StoreError(f"no invoice or statement numbered '{text}'" + (f" (did you mean {', '.join(near)}?)" if near
                                                                        else "; `icdsl invoice list` lists them"))
