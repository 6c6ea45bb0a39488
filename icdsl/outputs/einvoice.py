"""E-invoices: a finalized invoice or credit note as UBL 2.1 (EN 16931; Peppol BIS Billing 3.0
when the buyer has a Peppol endpoint) and as Factur-X (PDF/A-3 with the CII XML embedded).

The input is the invoice document of :mod:`icdsl.billing.documents` (with its ``seller`` and
``buyer``, :mod:`icdsl.parties`). How icdsl's invoice maps to EN 16931:

- a credit note (``kind`` ``credit_note``: its own CN- series, or before 0016 an invoice whose
  total is negative) is a UBL ``CreditNote`` (type 381) and a CII document of type 381, its
  amounts written positive (BR-CO: a credit note states what is credited); a debit note
  (``debit_note``, DN- series: a correction that adds) is a UBL ``Invoice`` of type 383 and a
  CII document of type 383; both reference the invoices they correct (BT-25);
- each line is an invoice line (BG-25): quantity with its UN/ECE Rec. 20 unit, net amount (the
  line's amount, already rounded to the currency's minor unit), item name (the line's
  description), net price = |amount| / |quantity| to 6 decimals (informative: icdsl rates per
  record, so price × quantity may differ from the amount by the records' rounding); a negative
  line (an adjustment on an invoice) has a negative quantity and a positive price (BR-27);
- VAT: ``vat`` → category S with the rate; ``vat`` at 0% → Z; ``reverse_charge`` → AE, rate 0,
  exemption reason code VATEX-EU-AE and the reverse-charge note, both VAT identifiers;
  ``exempt`` → E (VATEX-EU-132); ``none`` → O (not subject: no VAT identifiers, BR-O-02..04);
- payment: credit transfer (code 30) to the seller's IBAN (BIC when declared), remittance
  reference the invoice number; due date the invoice's.

Amounts are Decimal, written with the currency's minor units; nothing is a float.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from icdsl.outputs.pdf import write_pdf
from icdsl.outputs.views import file_stem

UBL_NS = {
    "invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "credit_note": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
}
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
EN16931 = "urn:cen.eu:en16931:2017"
PEPPOL_CUSTOMIZATION = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PEPPOL_PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"

#: icdsl units -> UN/ECE Recommendation 20 codes (C62 "one" for counted things)
UNIT_CODES = {
    "s": "SEC", "sec": "SEC", "second": "SEC", "seconds": "SEC", "min": "MIN", "minute": "MIN", "minutes": "MIN",
    "h": "HUR", "hour": "HUR", "hours": "HUR", "day": "DAY", "days": "DAY", "month": "MON", "months": "MON",
    "B": "AD", "byte": "AD", "KB": "2P", "kB": "2P", "MB": "4L", "GB": "E34", "TB": "E35",
}


class EInvoiceError(ValueError):
    """A document that cannot be written as an e-invoice (a statement, a draft): says why."""


#: document kind -> UNTDID 1001 type code (BT-3)
TYPE_CODES = {"invoice": "380", "credit_note": "381", "debit_note": "383"}
TITLES = {"invoice": "Invoice", "credit_note": "Credit note", "debit_note": "Debit note"}


def is_einvoice(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") in TYPE_CODES


def unit_code(unit: str | None) -> str:
    return UNIT_CODES.get(unit or "", "C62")


def _minor(currency: str) -> int:
    # lazy: babel's currency data only when an e-invoice is written
    from babel.numbers import get_currency_precision

    return get_currency_precision(currency)


def money(v: Decimal | int | None, currency: str) -> str:
    q = Decimal(1).scaleb(-_minor(currency))
    return str(Decimal(v or 0).quantize(q, rounding=ROUND_HALF_UP))


def _dec(v: Decimal, places: int = 6) -> str:
    s = format(v.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP).normalize(), "f")
    return s


def tax_category(doc: Mapping[str, Any]) -> tuple[str, Decimal, str | None, str | None]:
    """(EN 16931 VAT category, rate, exemption reason code, exemption reason text)."""
    kind = doc.get("tax_kind") or "none"
    rate = Decimal(doc.get("tax_rate") or 0)
    if kind == "vat":
        return ("S", rate, None, None) if rate > 0 else ("Z", Decimal(0), None, None)
    if kind == "reverse_charge":
        return "AE", Decimal(0), "VATEX-EU-AE", doc.get("tax_note") or "Reverse charge"
    if kind == "exempt":
        return "E", Decimal(0), "VATEX-EU-132", doc.get("tax_note") or "Exempt from VAT"
    return "O", Decimal(0), "VATEX-EU-O", doc.get("tax_note") or "Not subject to VAT"


def _sign(doc: Mapping[str, Any]) -> int:
    return -1 if doc.get("kind") == "credit_note" else 1


class _X:
    """A small builder over lxml: ``x.cbc(parent, "ID", "1", schemeID="0088")``."""

    @staticmethod
    def el(parent: etree._Element, ns: str, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
        e = etree.SubElement(parent, f"{{{ns}}}{tag}", {k: v for k, v in attrs.items() if v is not None})
        if text is not None:
            e.text = str(text)
        return e

    def cbc(self, parent, tag, text=None, **attrs):
        return self.el(parent, CBC, tag, text, **attrs)

    def cac(self, parent, tag):
        return self.el(parent, CAC, tag)


def _endpoint(peppol: str | None) -> tuple[str, str] | None:
    if not peppol or ":" not in peppol:
        return None
    scheme, ident = peppol.split(":", 1)
    return scheme, ident


def _party(x: _X, parent: etree._Element, p: Mapping[str, Any], *, with_vat: bool, seller: bool) -> None:
    party = x.cac(parent, "Party")
    ep = _endpoint(p.get("peppol"))
    if ep:
        x.cbc(party, "EndpointID", ep[1], schemeID=ep[0])
    x.cbc(x.cac(party, "PartyName"), "Name", p.get("name"))
    addr = x.cac(party, "PostalAddress")
    street = list(p.get("address") or ())
    if street:
        x.cbc(addr, "StreetName", street[0])
    if len(street) > 1:
        x.cbc(addr, "AdditionalStreetName", ", ".join(street[1:]))
    if p.get("city"):
        x.cbc(addr, "CityName", p["city"])
    if p.get("postcode"):
        x.cbc(addr, "PostalZone", p["postcode"])
    x.cbc(x.cac(addr, "Country"), "IdentificationCode", p.get("country") or "")
    if with_vat and p.get("vat"):
        pts = x.cac(party, "PartyTaxScheme")
        x.cbc(pts, "CompanyID", p["vat"])
        x.cbc(x.cac(pts, "TaxScheme"), "ID", "VAT")
    legal = x.cac(party, "PartyLegalEntity")
    x.cbc(legal, "RegistrationName", p.get("name"))
    if p.get("registration"):
        x.cbc(legal, "CompanyID", p["registration"])
    contacts = p.get("contacts") or ()
    if contacts:
        c = contacts[0]
        ce = x.cac(party, "Contact")
        x.cbc(ce, "Name", c.get("name"))
        if c.get("phone"):
            x.cbc(ce, "Telephone", c["phone"])
        if c.get("email"):
            x.cbc(ce, "ElectronicMail", c["email"])


def ubl_xml(doc: Mapping[str, Any], *, corrects: str | None = None) -> bytes:
    """The document as a UBL 2.1 Invoice or CreditNote (bytes, UTF-8). ``corrects``: the number
    of the invoice a credit note corrects (BT-25), when known."""
    if not is_einvoice(doc):
        raise EInvoiceError(f"{doc.get('number') or 'this document'} is a {doc.get('kind')}: only invoices and "
                            "credit notes are e-invoices")
    if not doc.get("number") or doc.get("status") != "finalized":
        raise EInvoiceError(f"{doc.get('number') or 'the draft'} is not finalized: finalize its cycle first "
                            "(`icdsl cycle finalize`)")
    seller, buyer = doc.get("seller"), doc.get("buyer")
    if not seller:
        raise EInvoiceError("no company is declared: add a `company CODE \"Legal name\" { ... }` block to the rules "
                            "(our address, VAT identifier and IBAN), then `icdsl load`")
    kind = "credit_note" if doc["kind"] == "credit_note" else "invoice"  # UBL's two document types
    ccy = doc["currency"]
    sign = _sign(doc)
    cat, rate, reason_code, reason = tax_category(doc)
    x = _X()
    root_tag = "Invoice" if kind == "invoice" else "CreditNote"
    root = etree.Element(f"{{{UBL_NS[kind]}}}{root_tag}", nsmap={None: UBL_NS[kind], "cac": CAC, "cbc": CBC})
    peppol = bool(buyer and buyer.get("peppol") and seller.get("peppol"))
    x.cbc(root, "CustomizationID", PEPPOL_CUSTOMIZATION if peppol else EN16931)
    if peppol:
        x.cbc(root, "ProfileID", PEPPOL_PROFILE)
    x.cbc(root, "ID", doc["number"])
    x.cbc(root, "IssueDate", doc["issue_date"].isoformat())
    if kind == "invoice" and doc.get("due_date"):
        x.cbc(root, "DueDate", doc["due_date"].isoformat())
    x.cbc(root, "InvoiceTypeCode" if kind == "invoice" else "CreditNoteTypeCode", TYPE_CODES[doc["kind"]])
    if doc.get("tax_note"):
        x.cbc(root, "Note", doc["tax_note"])
    x.cbc(root, "DocumentCurrencyCode", ccy)
    x.cbc(root, "BuyerReference", doc.get("partner_code"))
    if doc.get("period_start") and doc.get("period_end"):
        per = x.cac(root, "InvoicePeriod")
        x.cbc(per, "StartDate", doc["period_start"].isoformat())
        x.cbc(per, "EndDate", doc["period_end"].isoformat())
    for ref in _corrects(doc, corrects):
        x.cbc(x.cac(x.cac(root, "BillingReference"), "InvoiceDocumentReference"), "ID", ref)
    with_vat = cat != "O"
    _party(x, x.cac(root, "AccountingSupplierParty"), seller, with_vat=with_vat, seller=True)
    _party(x, x.cac(root, "AccountingCustomerParty"), buyer or {}, with_vat=with_vat, seller=False)
    if seller.get("iban"):
        pm = x.cac(root, "PaymentMeans")
        x.cbc(pm, "PaymentMeansCode", "30")
        if kind == "credit_note" and doc.get("due_date"):
            x.cbc(pm, "PaymentDueDate", doc["due_date"].isoformat())
        x.cbc(pm, "PaymentID", doc["number"])
        acct = x.cac(pm, "PayeeFinancialAccount")
        x.cbc(acct, "ID", seller["iban"])
        x.cbc(acct, "Name", seller.get("name"))
        if seller.get("bic"):
            x.cbc(x.cac(acct, "FinancialInstitutionBranch"), "ID", seller["bic"])
    if kind == "invoice" and doc.get("due_days") is not None:
        x.cbc(x.cac(root, "PaymentTerms"), "Note", f"Due {doc['due_days']} days from the issue date")
    subtotal = sign * Decimal(doc["subtotal"])
    tax = sign * Decimal(doc.get("tax_amount") or 0)
    total = sign * Decimal(doc["total"])
    tt = x.cac(root, "TaxTotal")
    x.cbc(tt, "TaxAmount", money(tax, ccy), currencyID=ccy)
    ts = x.cac(tt, "TaxSubtotal")
    x.cbc(ts, "TaxableAmount", money(subtotal, ccy), currencyID=ccy)
    x.cbc(ts, "TaxAmount", money(tax, ccy), currencyID=ccy)
    _tax_category(x, x.cac(ts, "TaxCategory"), cat, rate, reason_code, reason)
    lmt = x.cac(root, "LegalMonetaryTotal")
    x.cbc(lmt, "LineExtensionAmount", money(subtotal, ccy), currencyID=ccy)
    x.cbc(lmt, "TaxExclusiveAmount", money(subtotal, ccy), currencyID=ccy)
    x.cbc(lmt, "TaxInclusiveAmount", money(total, ccy), currencyID=ccy)
    x.cbc(lmt, "PayableAmount", money(total, ccy), currencyID=ccy)
    line_tag = "InvoiceLine" if kind == "invoice" else "CreditNoteLine"
    qty_tag = "InvoicedQuantity" if kind == "invoice" else "CreditedQuantity"
    for i, ln in enumerate(doc.get("lines") or (), start=1):
        amount = sign * Decimal(ln["amount"])
        qty, price = line_quantity_price(ln.get("quantity"), amount)
        le = x.cac(root, line_tag)
        x.cbc(le, "ID", str(ln.get("line_no") or i))
        x.cbc(le, qty_tag, _dec(qty), unitCode=unit_code(ln.get("unit")) if ln.get("quantity") else "C62")
        x.cbc(le, "LineExtensionAmount", money(amount, ccy), currencyID=ccy)
        item = x.cac(le, "Item")
        x.cbc(item, "Description", line_text(ln))
        x.cbc(item, "Name", (ln.get("description") or ln.get("kind") or "line")[:200])
        ctc = x.cac(item, "ClassifiedTaxCategory")
        x.cbc(ctc, "ID", cat)
        if cat != "O":
            x.cbc(ctc, "Percent", _dec(rate, 2))
        x.cbc(x.cac(ctc, "TaxScheme"), "ID", "VAT")
        x.cbc(x.cac(le, "Price"), "PriceAmount", _dec(price), currencyID=ccy)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _corrects(doc: Mapping[str, Any], corrects: str | None) -> list[str]:
    """The invoices a document corrects (BT-25): given, or those of its lines' corrected lines."""
    return [corrects] if corrects else list(doc.get("corrects") or ())


def _tax_category(x: _X, tc: etree._Element, cat: str, rate: Decimal, reason_code: str | None,
                  reason: str | None) -> None:
    x.cbc(tc, "ID", cat)
    if cat != "O":
        x.cbc(tc, "Percent", _dec(rate, 2))
    if reason_code:
        x.cbc(tc, "TaxExemptionReasonCode", reason_code)
        x.cbc(tc, "TaxExemptionReason", reason)
    x.cbc(x.cac(tc, "TaxScheme"), "ID", "VAT")


def line_quantity_price(quantity: Any, amount: Decimal) -> tuple[Decimal, Decimal]:
    """(quantity, net price) of a line: the quantity carries the sign, the price is |amount| /
    |quantity| to 6 decimals; a line without a quantity is 1 of its amount."""
    q = Decimal(quantity) if quantity not in (None, "") else Decimal(0)
    if q == 0:
        return (Decimal(-1) if amount < 0 else Decimal(1)), abs(amount)
    price = (abs(amount) / abs(q)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    return (-abs(q) if amount < 0 else abs(q)), price


def line_text(ln: Mapping[str, Any]) -> str:
    """What a line is, with its rate (the description, destination, band, rate and rule)."""
    parts = [str(ln.get("description") or ln.get("kind") or "")]
    if ln.get("rate") is not None:
        parts.append(f"rate {ln['rate']} {ln.get('currency') or ''}{'/' + ln['rate_unit'] if ln.get('rate_unit') else ''}")
    if ln.get("record_count"):
        parts.append(f"{ln['record_count']} records")
    return "; ".join(p.strip() for p in parts if p and p.strip())


def write_ubl(doc: Mapping[str, Any], directory: str | Path, *, corrects: str | None = None) -> Path:
    path = Path(directory) / f"{file_stem(doc)}.xml"
    path.write_bytes(ubl_xml(doc, corrects=corrects))
    return path


# ---------------------------------------------------------------------------------------- CII
RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"


def _ram(parent, tag, text=None, **attrs):
    return _X.el(parent, RAM, tag, text, **attrs)


def _when(parent, tag, d) -> None:
    _X.el(_ram(parent, tag), UDT, "DateTimeString", d.strftime("%Y%m%d"), format="102")


def _cii_party(parent, tag: str, p: Mapping[str, Any], *, with_vat: bool) -> None:
    party = _ram(parent, tag)
    _ram(party, "Name", p.get("name"))
    if p.get("registration"):
        _ram(_ram(party, "SpecifiedLegalOrganization"), "ID", p["registration"])
    contacts = p.get("contacts") or ()
    if contacts:
        c = contacts[0]
        ce = _ram(party, "DefinedTradeContact")
        _ram(ce, "PersonName", c.get("name"))
        if c.get("phone"):
            _ram(_ram(ce, "TelephoneUniversalCommunication"), "CompleteNumber", c["phone"])
        if c.get("email"):
            _ram(_ram(ce, "EmailURIUniversalCommunication"), "URIID", c["email"])
    addr = _ram(party, "PostalTradeAddress")
    if p.get("postcode"):
        _ram(addr, "PostcodeCode", p["postcode"])
    street = list(p.get("address") or ())
    if street:
        _ram(addr, "LineOne", street[0])
    if len(street) > 1:
        _ram(addr, "LineTwo", ", ".join(street[1:]))
    if p.get("city"):
        _ram(addr, "CityName", p["city"])
    _ram(addr, "CountryID", p.get("country") or "")
    ep = _endpoint(p.get("peppol"))
    if ep:
        _ram(_ram(party, "URIUniversalCommunication"), "URIID", ep[1], schemeID=ep[0])
    if with_vat and p.get("vat"):
        _ram(_ram(party, "SpecifiedTaxRegistration"), "ID", p["vat"], schemeID="VA")


def cii_xml(doc: Mapping[str, Any], *, corrects: str | None = None) -> bytes:
    """The document as a UN/CEFACT CII D16B CrossIndustryInvoice, EN 16931 profile (the XML a
    Factur-X PDF carries)."""
    ubl_xml(doc, corrects=corrects)  # the same refusals (not an invoice, not finalized, no company)
    seller, buyer = doc["seller"], doc.get("buyer") or {}
    kind, ccy, sign = doc["kind"], doc["currency"], _sign(doc)
    cat, rate, reason_code, reason = tax_category(doc)
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap={"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT})
    ctx = _X.el(root, RSM, "ExchangedDocumentContext")
    _ram(_ram(ctx, "GuidelineSpecifiedDocumentContextParameter"), "ID", EN16931)
    ed = _X.el(root, RSM, "ExchangedDocument")
    _ram(ed, "ID", doc["number"])
    _ram(ed, "TypeCode", TYPE_CODES[kind])
    _when(ed, "IssueDateTime", doc["issue_date"])
    if doc.get("tax_note"):
        _ram(_ram(ed, "IncludedNote"), "Content", doc["tax_note"])
    tx = _X.el(root, RSM, "SupplyChainTradeTransaction")
    for i, ln in enumerate(doc.get("lines") or (), start=1):
        amount = sign * Decimal(ln["amount"])
        qty, price = line_quantity_price(ln.get("quantity"), amount)
        item = _ram(tx, "IncludedSupplyChainTradeLineItem")
        _ram(_ram(item, "AssociatedDocumentLineDocument"), "LineID", str(ln.get("line_no") or i))
        prod = _ram(item, "SpecifiedTradeProduct")
        _ram(prod, "Name", (ln.get("description") or ln.get("kind") or "line")[:200])
        _ram(prod, "Description", line_text(ln))
        _ram(_ram(_ram(item, "SpecifiedLineTradeAgreement"), "NetPriceProductTradePrice"), "ChargeAmount", _dec(price))
        _ram(_ram(item, "SpecifiedLineTradeDelivery"), "BilledQuantity", _dec(qty),
             unitCode=unit_code(ln.get("unit")) if ln.get("quantity") else "C62")
        lts = _ram(item, "SpecifiedLineTradeSettlement")
        tax = _ram(lts, "ApplicableTradeTax")
        _ram(tax, "TypeCode", "VAT")
        _ram(tax, "CategoryCode", cat)
        if cat != "O":
            _ram(tax, "RateApplicablePercent", _dec(rate, 2))
        _ram(_ram(lts, "SpecifiedTradeSettlementLineMonetarySummation"), "LineTotalAmount", money(amount, ccy))
    agr = _ram(tx, "ApplicableHeaderTradeAgreement")
    _ram(agr, "BuyerReference", doc.get("partner_code"))
    with_vat = cat != "O"
    _cii_party(agr, "SellerTradeParty", seller, with_vat=with_vat)
    _cii_party(agr, "BuyerTradeParty", buyer, with_vat=with_vat)
    delivery = _ram(tx, "ApplicableHeaderTradeDelivery")
    if doc.get("period_end"):  # BT-72: the service was delivered over the period, to its last day
        _when(_ram(delivery, "ActualDeliverySupplyChainEvent"), "OccurrenceDateTime", doc["period_end"])
    st = _ram(tx, "ApplicableHeaderTradeSettlement")
    _ram(st, "PaymentReference", doc["number"])
    _ram(st, "InvoiceCurrencyCode", ccy)
    if seller.get("iban"):
        pm = _ram(st, "SpecifiedTradeSettlementPaymentMeans")
        _ram(pm, "TypeCode", "30")
        acct = _ram(pm, "PayeePartyCreditorFinancialAccount")
        _ram(acct, "IBANID", seller["iban"])
        if seller.get("bic"):
            _ram(_ram(pm, "PayeeSpecifiedCreditorFinancialInstitution"), "BICID", seller["bic"])
    subtotal = sign * Decimal(doc["subtotal"])
    tax_amount = sign * Decimal(doc.get("tax_amount") or 0)
    total = sign * Decimal(doc["total"])
    tt = _ram(st, "ApplicableTradeTax")
    _ram(tt, "CalculatedAmount", money(tax_amount, ccy))
    _ram(tt, "TypeCode", "VAT")
    if reason:
        _ram(tt, "ExemptionReason", reason)
    _ram(tt, "BasisAmount", money(subtotal, ccy))
    _ram(tt, "CategoryCode", cat)
    if reason_code:
        _ram(tt, "ExemptionReasonCode", reason_code)
    if cat != "O":
        _ram(tt, "RateApplicablePercent", _dec(rate, 2))
    if doc.get("period_start") and doc.get("period_end"):
        per = _ram(st, "BillingSpecifiedPeriod")
        _when(per, "StartDateTime", doc["period_start"])
        _when(per, "EndDateTime", doc["period_end"])
    if doc.get("due_date"):
        terms = _ram(st, "SpecifiedTradePaymentTerms")
        if doc.get("due_days") is not None:
            _ram(terms, "Description", f"Due {doc['due_days']} days from the issue date")
        _when(terms, "DueDateDateTime", doc["due_date"])
    sm = _ram(st, "SpecifiedTradeSettlementHeaderMonetarySummation")
    _ram(sm, "LineTotalAmount", money(subtotal, ccy))
    _ram(sm, "TaxBasisTotalAmount", money(subtotal, ccy))
    _ram(sm, "TaxTotalAmount", money(tax_amount, ccy), currencyID=ccy)
    _ram(sm, "GrandTotalAmount", money(total, ccy))
    _ram(sm, "DuePayableAmount", money(total, ccy))
    for ref in _corrects(doc, corrects):
        _ram(_ram(st, "InvoiceReferencedDocument"), "IssuerAssignedID", ref)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_facturx(doc: Mapping[str, Any], directory: str | Path, *, corrects: str | None = None,
                  view: str = "itemized") -> Path:
    """The invoice's PDF (:mod:`icdsl.outputs.pdf`) with its CII XML embedded as Factur-X
    (EN 16931 profile) by the ``factur-x`` package, which also checks the XML against its XSD."""
    # lazy: factur-x (pypdf, its XSDs) loads only when a Factur-X file is written
    from facturx import generate_from_binary

    xml = cii_xml(doc, corrects=corrects)
    with tempfile.TemporaryDirectory() as tmp:
        pdf = write_pdf(doc, tmp, view=view, pdfa=True).read_bytes()
    title = TITLES[doc["kind"]]
    meta = {"author": doc["seller"].get("name"), "keywords": "Factur-X, EN 16931",
            "title": f"{doc['seller'].get('name')}: {title} {doc['number']}",
            "subject": f"{title} {doc['number']} dated "
                       f"{doc['issue_date'].isoformat()} issued by {doc['seller'].get('name')}"}
    out = generate_from_binary(pdf, xml, flavor="factur-x", level="en16931", check_xsd=True, pdf_metadata=meta,
                               lang="en-GB", xmp_compression=False)
    # lazy: pypdf (through icdsl.outputs.pdfa) only when a Factur-X file is written
    from icdsl.outputs.pdfa import finish

    out = finish(out)
    path = Path(directory) / f"{file_stem(doc)}.facturx.pdf"
    path.write_bytes(out)
    return path
