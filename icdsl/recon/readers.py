"""Partners' invoices read into :class:`~icdsl.recon.model.PartnerInvoice`: UBL 2.1 XML
(Invoice and CreditNote) and CSV in an ``invoice layout`` of the rules. No database here.

A partner's file is hostile input. Every problem is a :class:`Problem` that says where (file,
line or element), which field, what is wrong and what to do; a file with problems raises one
:class:`InvoiceFileError` that lists them all (up to :data:`MAX_PROBLEMS`), never a traceback.
What does not add up but can be read (their stated total against the sum of their lines, tax
against its subtotals) is a *finding*: the invoice is read as they sent it and the findings go
with it (``PartnerInvoice.findings``), for the reconciliation and the dispute.

XML is parsed with lxml and a parser that resolves no entity, loads no DTD, reaches no network
and refuses huge trees; before that, a document that declares a DOCTYPE or an entity is refused
outright (the only way an XML file can make a parser read another file or a URL), so nothing
but the given bytes is ever read.

Money is exact: amounts are read as :class:`~decimal.Decimal` from their text (no float, no
exponent, no NaN), at most 8 decimals for amounts and 12 for rates and quantities (what the
store keeps exactly).
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lxml import etree

from icdsl.plan.model import InvoiceLayout
from icdsl.recon.model import PartnerInvoice, PartnerInvoiceLine

#: problems listed at most (a file with more says how many more)
MAX_PROBLEMS = 30
#: a partner's invoice file larger than this is refused (a 5,000-line UBL invoice is ~5 MB)
MAX_BYTES = 256 * 1024 * 1024
AMOUNT_DECIMALS = 8
RATE_DECIMALS = 12
MAX_DIGITS = 24

UBL_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
UBL_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
NS = {"cac": CAC, "cbc": CBC}

#: UN/ECE recommendation 20 unit codes -> our units
UNIT_CODES = {
    "MIN": "minute", "SEC": "second", "HUR": "hour", "C62": "unit", "H87": "unit", "EA": "unit", "NAR": "unit",
    "AD": "byte", "2P": "kB", "4L": "MB", "E34": "GB", "E35": "TB", "MON": "month", "DAY": "day",
}
#: our services whatever the layout says (lower-cased words taken as they are)
STANDARD_SERVICES = ("voice", "sms", "mms", "data")
KINDS = {"invoice": "invoice", "credit_note": "credit_note", "credit note": "credit_note", "creditnote": "credit_note",
         "credit": "credit_note"}


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One problem of a partner's file: ``where`` is ``line N`` (CSV) or ``line N, ELEMENT``
    (XML), ``field`` the invoice field concerned (or ""), ``help`` what to do."""

    file: str
    where: str
    field: str
    message: str
    help: str = ""

    def __str__(self) -> str:
        head = f"{self.file}: {self.where}: " if self.where else f"{self.file}: "
        text = head + (f"{self.field}: " if self.field else "") + self.message
        return text + (f"\n  = help: {self.help}" if self.help else "")


class InvoiceFileError(Exception):
    """A partner's invoice file that cannot be imported; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem], more: int = 0):
        self.problems = problems
        self.more = more
        text = "\n".join(str(p) for p in problems)
        if more:
            text += f"\n... and {more} more problems"
        super().__init__(text)


class _Problems:
    def __init__(self, file: str):
        self.file = file
        self.items: list[Problem] = []
        self.more = 0

    def add(self, where: str, field: str, message: str, help: str = "") -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(self.file, where, field, message, help))
        else:
            self.more += 1

    def fatal(self, where: str, field: str, message: str, help: str = "") -> InvoiceFileError:
        self.add(where, field, message, help)
        return InvoiceFileError(self.items, self.more)

    def raise_any(self) -> None:
        if self.items:
            # in the order of the file (an element's problems are found after its children's)
            self.items.sort(key=lambda x: int(m.group(1)) if (m := re.match(r"line ([0-9]+)", x.where)) else 0)
            raise InvoiceFileError(self.items, self.more)


# --------------------------------------------------------------------------- values


_PLAIN = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_GROUPED_DOTS = re.compile(r"-?[0-9]{1,3}(\.[0-9]{3})+(,[0-9]+)?")
_GROUPED_COMMAS = re.compile(r"-?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?")


def decimal_text(text: str, mark: str = ".") -> Decimal | None:
    """An exact Decimal from a number as written (``-1234.5``; with ``mark=","``: ``1.234,5``,
    ``1234,5``), or None: no exponent, no NaN or infinity, groups of three only."""
    t = text.strip()
    if mark == "." and _PLAIN.fullmatch(t):  # the common case: nothing to take out
        return Decimal(t)
    t = t.replace("\u00a0", "").replace("\u202f", "")
    if mark == ",":
        if _GROUPED_DOTS.fullmatch(t):
            t = t.replace(".", "")
        t = t.replace(",", ".")
    elif _GROUPED_COMMAS.fullmatch(t):
        t = t.replace(",", "")
    t = t.replace(" ", "")
    if not _PLAIN.fullmatch(t):
        return None
    return Decimal(t)


def _too_precise(value: Decimal, decimals: int) -> str | None:
    exp = value.as_tuple().exponent
    assert isinstance(exp, int)
    if -exp > decimals:
        return f"has more than {decimals} decimals"
    if value.adjusted() + 1 + decimals > MAX_DIGITS:
        return "is too large"
    return None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean '{close[0]}'?" if close else ""


def map_service(word: str, services: Mapping[str, str]) -> tuple[str, bool]:
    """Our service for their word: the layout's mapping (exact, then ignoring case and spaces),
    a standard service name, or their word as it is (``False``: not one of ours)."""
    if word in services:
        return services[word], True
    key = " ".join(word.split()).casefold()
    for theirs, ours in services.items():
        if " ".join(theirs.split()).casefold() == key:
            return ours, True
    if key in STANDARD_SERVICES:
        return key, True
    if key in services.values():
        return key, True
    return word, False


# --------------------------------------------------------------------------- choosing a reader


def looks_like_xml(data: bytes) -> bool:
    """XML (UTF-8, or UTF-16 with its byte order mark) starts with '<' after blanks."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data[2:512].decode("utf-16-le" if data[:2] == b"\xff\xfe" else "utf-16-be", "ignore") \
            .lstrip().startswith("<")
    return data[:512].lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"<")


def read_invoice(data: bytes, name: str, partner: str, *, layout: InvoiceLayout | None = None,
                 layouts: Iterable[str] = ()) -> PartnerInvoice:
    """A partner's invoice from the bytes of its file: UBL 2.1 XML when the file is XML, else
    CSV read with ``layout`` (an ``invoice layout`` of the rules; ``layouts``: the names the
    rules declare, for the message when none was given). A layout given with a UBL file maps
    their service words (``service "..." as NAME``)."""
    if len(data) > MAX_BYTES:
        raise InvoiceFileError([Problem(name, "", "", f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB",
                                        "a partner's invoice is a few MB at most: check that this is the invoice")])
    if not data.lstrip(b"\xef\xbb\xbf").strip():
        raise InvoiceFileError([Problem(name, "", "", "the file is empty",
                                        "check that the partner's file was saved or downloaded whole")])
    if looks_like_xml(data):
        return read_ubl(data, name, partner, services=dict(layout.services) if layout else {})
    if layout is None:
        known = ", ".join(layouts) or "none"
        raise InvoiceFileError([Problem(
            name, "", "", "this is not XML (UBL), so it is read as CSV, which needs a layout",
            f"give --layout NAME with an 'invoice layout NAME {{ ... }}' of the rules (declared: {known})")])
    return read_csv_invoice(data, name, partner, layout)


# --------------------------------------------------------------------------- UBL 2.1


def _safe_parser() -> etree.XMLParser:
    """No entity resolved, no DTD loaded, no network, no huge trees, nothing but these bytes."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True, remove_pis=True, collect_ids=False)


def _declaration(data: bytes) -> tuple[int, str] | None:
    """(line, what) of a DOCTYPE or entity declaration in the document, if it has one."""
    text: str
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = data.decode("utf-16", errors="replace")
    else:
        text = data.decode("utf-8", errors="replace")
    m = re.search(r"<!\s*(DOCTYPE|ENTITY)", text, re.IGNORECASE)
    if m is None:
        return None
    return text.count("\n", 0, m.start()) + 1, m.group(1).upper()


def parse_xml(data: bytes, name: str) -> Any:
    """The root element of a partner's XML, parsed safely; a DOCTYPE or ENTITY is refused."""
    found = _declaration(data)
    if found is not None:
        line, what = found
        raise InvoiceFileError([Problem(
            name, f"line {line}", "", f"the document declares a {what}: refused (an XML declaration can make a "
            "reader fetch other files or URLs; nothing was read)",
            "a UBL invoice needs no DOCTYPE or entities: ask the partner for the invoice without them")])
    try:
        root = etree.fromstring(data, parser=_safe_parser())
    except etree.XMLSyntaxError as e:
        line = e.lineno or (e.position[0] if e.position else 0)
        msg = str(e.msg if hasattr(e, "msg") else e).split(", line ")[0]
        if "Excessive depth" in msg:
            msg = "elements nested more than 256 deep (an invoice needs a dozen)"
        raise InvoiceFileError([Problem(name, f"line {line}", "", f"not well-formed XML: {msg}",
                                        "the file is damaged or not XML: ask the partner to send it again")]) from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:  # the bytes check missed nothing: belt and braces
        raise InvoiceFileError([Problem(name, "line 1", "", "the document declares a DOCTYPE: refused",
                                        "a UBL invoice needs no DOCTYPE or entities")])
    return root


class _Ubl:
    """One UBL document being read: helpers that find, read and locate elements."""

    def __init__(self, root: Any, name: str, problems: _Problems):
        self.root = root
        self.name = name
        self.p = problems
        self.kind = "credit_note" if etree.QName(root).namespace == UBL_CREDIT_NOTE else "invoice"
        self.line_tag = "CreditNoteLine" if self.kind == "credit_note" else "InvoiceLine"
        self.qty_tag = "CreditedQuantity" if self.kind == "credit_note" else "InvoicedQuantity"
        self.currency = ""

    def where(self, el: Any, path: str) -> str:
        line = getattr(el, "sourceline", None)
        return f"line {line}, {path}" if line else path

    def one(self, parent: Any, path: str) -> Any:
        found = parent.findall(path, NS)
        return found[0] if found else None

    def text(self, parent: Any, path: str, label: str, where: str, *, required: bool = False) -> str | None:
        el = self.one(parent, path)
        if el is None or not (el.text or "").strip():
            if required:
                self.p.add(self.where(parent, where), label, f"missing: the document has no {path}",
                           "a UBL invoice must carry it: ask the partner for a complete document")
            return None
        return (el.text or "").strip()

    def day(self, parent: Any, path: str, label: str, where: str, *, required: bool = False) -> date | None:
        t = self.text(parent, path, label, where, required=required)
        if t is None:
            return None
        try:
            if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?", t):
                raise ValueError(t)
            return date.fromisoformat(t[:10])
        except ValueError:
            self.p.add(self.where(self.one(parent, path), f"{where}/{path}"), label,
                       f"'{_short(t)}' is not a date", "UBL dates are written YYYY-MM-DD")
            return None

    def amount(self, parent: Any, path: str, label: str, where: str, *, required: bool = False,
               decimals: int = AMOUNT_DECIMALS, currency: bool = True) -> Decimal | None:
        el = self.one(parent, path)
        t = self.text(parent, path, label, where, required=required)
        if t is None:
            return None
        at = self.where(el, f"{where}/{path}")
        v = decimal_text(t)
        if v is None:
            self.p.add(at, label, f"'{_short(t)}' is not a number",
                       "UBL amounts are written with a '.' and no grouping: 1234.56")
            return None
        bad = _too_precise(v, decimals)
        if bad:
            self.p.add(at, label, f"{t} {bad}", "amounts are kept exactly: ask the partner for the amount as invoiced")
            return None
        cur = el.get("currencyID")
        if currency and cur is not None and self.currency and cur != self.currency:
            self.p.add(at, label, f"in {cur}, but the document's currency is {self.currency}",
                       "every amount of a partner's invoice must be in its DocumentCurrencyCode")
        return v


def read_ubl(data: bytes, name: str, partner: str, *, services: Mapping[str, str] | None = None) -> PartnerInvoice:
    """A UBL 2.1 Invoice or CreditNote (header, lines, totals); see the module's doc."""
    services = dict(services or {})
    root = parse_xml(data, name)
    ns = etree.QName(root).namespace
    local = etree.QName(root).localname
    if (ns, local) not in ((UBL_INVOICE, "Invoice"), (UBL_CREDIT_NOTE, "CreditNote")):
        raise InvoiceFileError([Problem(
            name, f"line {root.sourceline}", "", f"the document is {f'a {{{ns}}}{local}' if ns else f'an {local} in no namespace'}"
            ", not a UBL 2.1 Invoice or CreditNote",
            f"the root element must be Invoice in {UBL_INVOICE} (or CreditNote in {UBL_CREDIT_NOTE})")])
    p = _Problems(name)
    u = _Ubl(root, name, p)
    top = local
    number = u.text(root, "cbc:ID", "number", top, required=True) or ""
    issue = u.day(root, "cbc:IssueDate", "issue_date", top, required=True)
    cur = u.text(root, "cbc:DocumentCurrencyCode", "currency", top, required=True) or ""
    if cur and not re.fullmatch(r"[A-Z]{3}", cur):
        p.add(u.where(u.one(root, "cbc:DocumentCurrencyCode"), f"{top}/cbc:DocumentCurrencyCode"), "currency",
              f"'{_short(cur)}' is not a currency code", "write an ISO 4217 code such as EUR")
    u.currency = cur
    period = u.one(root, "cac:InvoicePeriod")
    p_start = u.day(period, "cbc:StartDate", "period_start", f"{top}/cac:InvoicePeriod") if period is not None else None
    p_end = u.day(period, "cbc:EndDate", "period_end", f"{top}/cac:InvoicePeriod") if period is not None else None
    lines: list[PartnerInvoiceLine] = []
    findings: list[str] = []
    els = root.findall(f"cac:{u.line_tag}", NS)
    if not els:
        p.add(f"line {root.sourceline}, {top}", "lines", f"the document has no cac:{u.line_tag}",
              "an invoice without lines cannot be reconciled: ask the partner for the detailed invoice")
    seen_ids: dict[str, int] = {}
    for i, el in enumerate(els, 1):
        line = _ubl_line(u, el, i, services, findings, seen_ids)
        if line is not None:
            lines.append(line)
    total_el = u.one(root, "cac:LegalMonetaryTotal")
    if total_el is None:
        p.add(f"line {root.sourceline}, {top}", "total", "missing: the document has no cac:LegalMonetaryTotal",
              "a UBL invoice must state its totals: ask the partner for a complete document")
    p.raise_any()
    if p_start is None or p_end is None:
        starts = [x.period_start for x in lines if x.period_start]
        ends = [x.period_end for x in lines if x.period_end]
        if (p_start is None and not starts) or (p_end is None and not ends):
            raise p.fatal(f"line {root.sourceline}, {top}", "period", "the document says no invoice period "
                          "(cac:InvoicePeriod), nor do its lines",
                          "the period billed is needed to reconcile: ask the partner for cac:InvoicePeriod")
        p_start = p_start or min(starts)
        p_end = p_end or max(ends)
    assert p_start is not None and p_end is not None
    if p_end < p_start:
        raise p.fatal(u.where(period, f"{top}/cac:InvoicePeriod"), "period",
                      f"the period ends ({p_end}) before it starts ({p_start})", "ask the partner to correct it")
    where_t = f"{top}/cac:LegalMonetaryTotal"
    line_ext = u.amount(total_el, "cbc:LineExtensionAmount", "total", where_t, required=True)
    tax_excl = u.amount(total_el, "cbc:TaxExclusiveAmount", "total", where_t)
    tax_incl = u.amount(total_el, "cbc:TaxInclusiveAmount", "total", where_t)
    allowance = u.amount(total_el, "cbc:AllowanceTotalAmount", "total", where_t) or Decimal(0)
    charge = u.amount(total_el, "cbc:ChargeTotalAmount", "total", where_t) or Decimal(0)
    prepaid = u.amount(total_el, "cbc:PrepaidAmount", "total", where_t) or Decimal(0)
    rounding = u.amount(total_el, "cbc:PayableRoundingAmount", "total", where_t) or Decimal(0)
    payable = u.amount(total_el, "cbc:PayableAmount", "total", where_t)
    tax_total = Decimal(0)
    for t in root.findall("cac:TaxTotal", NS):
        amt = u.amount(t, "cbc:TaxAmount", "tax_total", f"{top}/cac:TaxTotal", required=True) or Decimal(0)
        tax_total += amt
        subs = [u.amount(s, "cbc:TaxAmount", "tax_total", f"{top}/cac:TaxTotal/cac:TaxSubtotal") or Decimal(0)
                for s in t.findall("cac:TaxSubtotal", NS)]
        if subs and sum(subs, Decimal(0)) != amt:
            findings.append(f"line {t.sourceline}: their tax total {amt} {cur} is not the sum of its subtotals "
                            f"({sum(subs, Decimal(0))} {cur})")
    p.raise_any()
    assert line_ext is not None
    lines_sum = sum((x.amount for x in lines), Decimal(0))
    if lines_sum != line_ext:
        findings.append(f"their lines add up to {lines_sum} {cur}, but the invoice states {line_ext} {cur} "
                        f"(LineExtensionAmount): a difference of {line_ext - lines_sum} {cur}")
    total = tax_excl if tax_excl is not None else line_ext - allowance + charge
    if tax_excl is not None and tax_excl != line_ext - allowance + charge:
        findings.append(f"their total before tax {tax_excl} {cur} is not lines {line_ext} - allowances {allowance} "
                        f"+ charges {charge} = {line_ext - allowance + charge} {cur}")
    if tax_incl is not None and tax_incl != total + tax_total:
        findings.append(f"their total with tax {tax_incl} {cur} is not {total} + tax {tax_total} = "
                        f"{total + tax_total} {cur}")
    if payable is not None and tax_incl is not None and payable != tax_incl - prepaid + rounding:
        findings.append(f"their amount payable {payable} {cur} is not {tax_incl} - prepaid {prepaid} + rounding "
                        f"{rounding} = {tax_incl - prepaid + rounding} {cur}")
    return PartnerInvoice(partner=partner, number=number, issue_date=issue, period_start=p_start, period_end=p_end,
                          currency=cur, total=total, lines=tuple(lines), kind=u.kind, tax_total=tax_total,
                          source_name=name, findings=tuple(findings), format="ubl")


def _ubl_line(u: _Ubl, el: Any, i: int, services: Mapping[str, str], findings: list[str],
              seen_ids: dict[str, int]) -> PartnerInvoiceLine | None:
    p = u.p
    before = len(p.items) + p.more
    line_id = u.text(el, "cbc:ID", "line", f"cac:{u.line_tag}[{i}]", required=True) or str(i)
    where = f"cac:{u.line_tag}[{i}] (ID {_short(line_id, 20)})"
    if line_id in seen_ids:
        p.add(u.where(el, where), "line", f"the ID {line_id} is also the ID of line {seen_ids[line_id]}",
              "each line of an invoice has its own ID: ask the partner to correct the document")
    seen_ids.setdefault(line_id, i)
    amount = u.amount(el, "cbc:LineExtensionAmount", "amount", where, required=True)
    qty_el = u.one(el, f"cbc:{u.qty_tag}")
    quantity = u.amount(el, f"cbc:{u.qty_tag}", "quantity", where, decimals=RATE_DECIMALS, currency=False)
    unit = None
    if qty_el is not None:
        code = (qty_el.get("unitCode") or "").strip()
        if code:
            unit = UNIT_CODES.get(code.upper())
            if unit is None:
                p.add(u.where(qty_el, f"{where}/cbc:{u.qty_tag}"), "unit",
                      f"unit code '{_short(code)}' is not one icdsl reads",
                      "UN/ECE rec. 20 codes read: " + ", ".join(sorted(UNIT_CODES)))
    price = u.one(el, "cac:Price")
    rate = u.amount(price, "cbc:PriceAmount", "rate", f"{where}/cac:Price", decimals=RATE_DECIMALS) \
        if price is not None else None
    if price is not None and rate is not None:
        base_qty = u.amount(price, "cbc:BaseQuantity", "rate", f"{where}/cac:Price", decimals=RATE_DECIMALS,
                            currency=False)
        if base_qty is not None and base_qty != 1:
            if base_qty <= 0:
                p.add(u.where(price, f"{where}/cac:Price/cbc:BaseQuantity"), "rate",
                      f"base quantity {base_qty} is not positive", "ask the partner to correct the document")
            else:
                per = rate / base_qty
                if per * base_qty != rate or _too_precise(per, RATE_DECIMALS):
                    p.add(u.where(price, f"{where}/cac:Price/cbc:BaseQuantity"), "rate",
                          f"{rate} per {base_qty} is not an exact price per unit",
                          "ask the partner for the price per unit (BaseQuantity 1)")
                rate = per
    lp = u.one(el, "cac:InvoicePeriod")
    start = u.day(lp, "cbc:StartDate", "period_start", f"{where}/cac:InvoicePeriod") if lp is not None else None
    end = u.day(lp, "cbc:EndDate", "period_end", f"{where}/cac:InvoicePeriod") if lp is not None else None
    if start and end and end < start:
        p.add(u.where(lp, f"{where}/cac:InvoicePeriod"), "period", f"the line's period ends ({end}) before it "
              f"starts ({start})", "ask the partner to correct the document")
    item = u.one(el, "cac:Item")
    props: dict[str, str] = {}
    item_name = description = ""
    if item is not None:
        item_name = u.text(item, "cbc:Name", "description", f"{where}/cac:Item") or ""
        description = u.text(item, "cbc:Description", "description", f"{where}/cac:Item") or ""
        for prop in item.findall("cac:AdditionalItemProperty", NS):
            k = (u.text(prop, "cbc:Name", "", f"{where}/cac:Item/cac:AdditionalItemProperty") or "").strip().casefold()
            v = (u.text(prop, "cbc:Value", "", f"{where}/cac:Item/cac:AdditionalItemProperty") or "").strip()
            if k:
                props[k] = v
    calls = None
    if "calls" in props:
        c = decimal_text(props["calls"])
        if c is None or c != int(c) or c < 0 or c > 10**15:
            p.add(u.where(item, f"{where}/cac:Item/cac:AdditionalItemProperty[calls]"), "calls",
                  f"'{_short(props['calls'])}' is not a number of calls", "a whole number, e.g. 1204")
        else:
            calls = int(c)
    word = props.get("service") or item_name
    if not word:
        p.add(u.where(el, where), "service", "the line says no service (AdditionalItemProperty 'service' "
              "nor cac:Item/cbc:Name)", "ask the partner to name the service of each line")
    if len(p.items) + p.more > before or amount is None:
        return None
    service, known = map_service(word, services)
    if not known:
        findings.append(f"line {i} (ID {line_id}): their service '{word}' is none of ours: map it in an invoice "
                        f"layout with 'service \"{word}\" as NAME' and import with --layout")
    if service in ("sms", "mms") and unit == "unit":
        unit = "message"
    return PartnerInvoiceLine(
        number=i, service=service, destination=props.get("destination") or None, prefix=props.get("prefix") or None,
        band=props.get("band") or None, period_start=start, period_end=end, calls=calls, quantity=quantity,
        unit=unit, rate=rate, amount=amount, currency=u.currency,
        description=" - ".join(x for x in (item_name, description) if x))


def _short(text: str, limit: int = 60) -> str:
    t = text.replace("\n", " ").replace("\r", " ")
    return t if len(t) <= limit else t[: limit - 1] + "…"


# --------------------------------------------------------------------------- CSV in an invoice layout


def read_csv_invoice(data: bytes, name: str, partner: str, layout: InvoiceLayout) -> PartnerInvoice:
    """A partner's CSV invoice: one invoice per file, one line per row, in ``layout``."""
    p = _Problems(name)
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise p.fatal(f"line {line}", "", "the file contains NUL bytes: it is not a CSV text file",
                      "check that the right file was given (a spreadsheet must be saved as CSV)")
    enc = "utf-8-sig" if layout.encoding.replace("_", "-").lower() in ("utf-8", "utf8") else layout.encoding
    try:
        text = data.decode(enc)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise p.fatal(f"line {line}", "", f"the file is not valid {layout.encoding} (byte 0x{data[e.start:e.start + 1].hex()})",
                      f"set the file's encoding in the layout: encoding \"latin-1\" (or ask for {layout.encoding})") \
            from None
    except LookupError:
        raise p.fatal("", "", f"unknown encoding {layout.encoding!r} in layout {layout.name}") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise p.fatal("line 1", "", f"the header cannot be read: {e}", "check the layout's delimiter") from None
    if not header or not any(h.strip() for h in header):
        raise p.fatal("line 1", "", "the file is empty (no header line)", "a CSV invoice starts with its header")
    names = [h.strip() for h in header]
    columns = dict(layout.columns)
    index: dict[str, int] = {}
    missing = [(f, c) for f, c in columns.items() if c not in names]
    index = {f: names.index(c) for f, c in columns.items() if c in names}
    listed = ", ".join(f'"{n}"' for n in names[:20]) + (", ..." if len(names) > 20 else "")
    if len(missing) > 3:  # most of the layout's columns: the wrong layout or the wrong file, said once
        cols = ", ".join(f'"{c}"' for _, c in missing)
        p.add("line 1", "", f"the file has none of the columns {cols} of layout {layout.name}",
              f"is this the right layout for this file? the file's columns are: {listed}")
    else:
        for field_name, col in missing:
            hint = _did_you_mean(col, names)
            p.add("line 1", field_name, f"the file has no column \"{col}\" (layout {layout.name})",
                  (hint + " " if hint else "") + f"the columns are: {listed}")
    if len(names) == 1 and layout.delimiter not in header[0] and any(d in header[0] for d in ";,\t|"):
        p.add("line 1", "", f"the header is one column: the file is not delimited by {layout.delimiter!r}",
              "set the layout's delimiter (delimiter \";\") to the one the file uses")
    p.raise_any()
    const = dict(layout.constants)
    services = dict(layout.services)
    head: dict[str, tuple[Any, int]] = {}  # invoice-level field -> (value, first row)
    lines: list[PartnerInvoiceLine] = []
    findings: list[str] = []
    numbers: dict[int, int] = {}
    row_no = 1
    try:
        for row in reader:
            row_no = reader.line_num
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(names):
                p.add(f"line {row_no}", "", f"{len(row)} fields, the header has {len(names)}",
                      f"check the delimiter ({layout.delimiter!r}) and the quoting of this line")
                continue
            line = _csv_line(layout, p, row, row_no, index, const, services, head, findings, len(lines) + 1)
            if line is not None:
                if line.number in numbers:
                    p.add(f"line {row_no}", "line", f"line number {line.number} is also on line {numbers[line.number]}",
                          "each line of an invoice has its own number")
                numbers.setdefault(line.number, row_no)
                lines.append(line)
            if len(p.items) >= MAX_PROBLEMS:
                break
    except csv.Error as e:
        p.add(f"line {reader.line_num}", "", f"unreadable CSV: {e}", "check the quoting of this line")
    p.raise_any()
    if not lines:
        raise p.fatal(f"line {row_no}", "", "the invoice has no lines", "a CSV invoice has one line per row")
    number = _head(head, const, "number")
    cur = _head(head, const, "currency")
    if not number:
        raise p.fatal("", "number", "no invoice number in the file", "map it with number = column \"...\"")
    kind = _head(head, const, "kind") or "invoice"
    starts = [x.period_start for x in lines if x.period_start]
    ends = [x.period_end for x in lines if x.period_end]
    p_start = _head(head, const, "period_start") or (min(starts) if starts else None)
    p_end = _head(head, const, "period_end") or (max(ends) if ends else None)
    if p_start is None or p_end is None:
        raise p.fatal("", "period", "the invoice says no period", "map period_start and period_end to columns")
    if isinstance(p_start, str) or isinstance(p_end, str):  # a constant: written YYYY-MM-DD
        try:
            p_start = date.fromisoformat(str(p_start)) if isinstance(p_start, str) else p_start
            p_end = date.fromisoformat(str(p_end)) if isinstance(p_end, str) else p_end
        except ValueError:
            raise p.fatal("", "period", "a period constant is not a date", "write constants as YYYY-MM-DD") from None
    if p_end < p_start:
        raise p.fatal("", "period", f"the period ends ({p_end}) before it starts ({p_start})")
    lines_sum = sum((x.amount for x in lines), Decimal(0))
    stated = head.get("total", (None, 0))[0]
    if stated is not None and stated != lines_sum:
        findings.append(f"their lines add up to {lines_sum} {cur}, but the invoice states {stated} {cur} (column "
                        f"\"{columns['total']}\"): a difference of {stated - lines_sum} {cur}")
    issue = head.get("issue_date", (None, 0))[0]
    tax = head.get("tax_total", (Decimal(0), 0))[0]
    return PartnerInvoice(partner=partner, number=str(number), issue_date=issue, period_start=p_start, period_end=p_end,
                          currency=str(cur), total=stated if stated is not None else lines_sum, lines=tuple(lines),
                          kind=kind, tax_total=tax, source_name=name, findings=tuple(findings), format="csv")


def _head(head: dict[str, tuple[Any, int]], const: dict[str, str], key: str) -> Any:
    if key in head:
        return head[key][0]
    return const.get(key)


_HEAD_FIELDS = ("number", "kind", "issue_date", "currency", "total", "tax_total")


def _csv_line(layout: InvoiceLayout, p: _Problems, row: list[str], row_no: int, index: dict[str, int],
              const: dict[str, str], services: dict[str, str], head: dict[str, tuple[Any, int]],
              findings: list[str], position: int) -> PartnerInvoiceLine | None:
    where = f"line {row_no}"
    before = len(p.items) + p.more
    cells = {f: row[i].strip() for f, i in index.items()}

    def number(f: str, decimals: int) -> Decimal | None:
        t = cells.get(f, "")
        if not t:
            return None
        v = decimal_text(t, layout.decimal)
        if v is None:
            sample = "1234,56" if layout.decimal == "," else "1234.56"
            p.add(where, f, f"'{_short(t)}' is not a number (decimal mark {layout.decimal!r})",
                  f"write it like {sample}, or set the layout's decimal mark")
            return None
        bad = _too_precise(v, decimals)
        if bad:
            p.add(where, f, f"{t} {bad}", "amounts are kept exactly: ask the partner for the amount as invoiced")
            return None
        return v

    def day(f: str) -> date | None:
        t = cells.get(f, "")
        if not t:
            return None
        try:
            return datetime.strptime(t, layout.date_format).date()
        except ValueError:
            p.add(where, f, f"'{_short(t)}' is not a date in the layout's format {layout.date_format!r}",
                  f"dates are written like {date(2026, 3, 31).strftime(layout.date_format)}, or set the layout's "
                  "date format")
            return None

    values: dict[str, Any] = {}
    for f in ("total", "tax_total"):
        if f in cells:
            values[f] = number(f, AMOUNT_DECIMALS)
    for f in ("issue_date",):
        if f in cells:
            values[f] = day(f)
    for f in ("number", "currency"):
        if f in cells:
            values[f] = cells[f] or None
    if "kind" in cells:
        k = cells["kind"].casefold()
        if k:
            if k not in KINDS:
                p.add(where, "kind", f"'{_short(cells['kind'])}' is not invoice or credit note",
                      "write invoice or credit_note")
            values["kind"] = KINDS.get(k)
    cur = values.get("currency") or const.get("currency")
    if "currency" in values and values["currency"] and not re.fullmatch(r"[A-Z]{3}", values["currency"]):
        p.add(where, "currency", f"'{_short(values['currency'])}' is not a currency code", "write an ISO code: EUR")
    for f in _HEAD_FIELDS:
        v = values.get(f)
        if v is None:
            continue
        if f in head and head[f][0] != v:
            p.add(where, f, f"'{v}' differs from line {head[f][1]} ('{head[f][0]}')",
                  "one invoice per file: import each invoice from a file of its own" if f == "number"
                  else "every line of an invoice gives the same value")
        head.setdefault(f, (v, row_no))
    amount = number("amount", AMOUNT_DECIMALS)
    if amount is None and "amount" not in [x.field for x in p.items[before:]]:
        p.add(where, "amount", "empty", "every line has an amount")
    quantity = number("quantity", RATE_DECIMALS)
    rate = number("rate", RATE_DECIMALS)
    calls_v = number("calls", 0)
    if calls_v is not None and calls_v < 0:
        p.add(where, "calls", f"{calls_v} calls", "a number of calls is not negative")
    line_no = position
    if "line" in cells and cells["line"]:
        ln = decimal_text(cells["line"])
        if ln is None or ln != int(ln) or not (0 < ln < 10**9):
            p.add(where, "line", f"'{_short(cells['line'])}' is not a line number", "a whole number from 1")
        else:
            line_no = int(ln)
    start, end = day("period_start"), day("period_end")
    if start and end and end < start:
        p.add(where, "period_end", f"the line's period ends ({end}) before it starts ({start})")
    word = cells.get("service") or const.get("service") or ""
    if not word:
        p.add(where, "service", "empty", "every line names its service")
    if len(p.items) + p.more > before or amount is None:
        return None
    service, known = map_service(word, services)
    if not known:
        findings.append(f"line {row_no}: their service '{word}' is none of ours: map it in layout {layout.name} with "
                        f"'service \"{word}\" as NAME'")
    unit = cells.get("unit") or const.get("unit") or None
    return PartnerInvoiceLine(
        number=line_no, service=service, destination=cells.get("destination") or None,
        prefix=cells.get("prefix") or None, band=cells.get("band") or None, period_start=start, period_end=end,
        calls=int(calls_v) if calls_v is not None else None, quantity=quantity, unit=unit, rate=rate, amount=amount,
        currency=str(cur or ""), description=cells.get("description", ""))
