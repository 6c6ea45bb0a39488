"""Document layouts (icdsl.layouts): a layout file drives the PDF, chosen per partner and stream,
numbers and dates per the partner's locale; hostile layouts refused with a located reason; the
PDF's fonts embedded (Factur-X PDF/A-3); the parties sealed into a finalized document."""

from __future__ import annotations

import io
import shutil
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest
from test_einvoice import BUYER_DE, SELLER, invoice

from icdsl import layouts
from icdsl.outputs.pdf import render

GERMAN = """
[titles]
invoice = "RECHNUNG"

[labels]
subtotal = "Zwischensumme"
total = "Gesamtbetrag"

[texts]
owes = "{{ debtor }} schuldet {{ creditor }} {{ amount }} {{ currency }}."
closing = "Vielen Dank, {{ buyer.name }}: {{ total }} {{ currency }} bis {{ due_date }}."
"""


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages).split())


def german_doc(**over):
    buyer = dict(BUYER_DE, locale="de_DE", templates=[{"stream": None, "name": "de.toml", "text": GERMAN}])
    long = "outbound voice to Germany mobile, a description long enough to wrap over several lines, end of it"
    lines = [dict(invoice()["lines"][0], description=long, amount=D("1234.56")), invoice()["lines"][1]]
    return invoice(buyer=buyer, lines=lines, subtotal=D("1235.85"), total=D("1235.85"), **over)


def test_the_partners_layout_and_locale_write_the_pdf():
    text = pdf_text(render(german_doc()))
    assert "RECHNUNG" in text and "INVOICE" not in text
    assert "Zwischensumme 1.235,85 EUR" in text and "Gesamtbetrag 1.235,85 EUR" in text
    assert "1.234,56" in text and "31.03.2026" in text  # numbers and dates for de_DE
    assert "Vielen Dank, Fleetrix Telematics GmbH: 1.235,85 EUR bis 30.04.2026." in text
    assert "Fleetrix Telematics GmbH schuldet Arcadia Telecom SAS 1.235,85 EUR." in text
    assert "end of it" in text  # a long description wraps, never cut
    # no locale, no template: the default layout, numbers as 1,235.85 and ISO dates
    text = pdf_text(render(invoice(subtotal=D("1235.85"), total=D("1235.85"))))
    assert "INVOICE" in text and "1,235.85 EUR" in text and "2026-03-31" in text


def test_a_stream_has_its_own_layout_else_the_partners_else_the_companys():
    data = {"stream": "data", "name": "data.toml", "text": '[titles]\ninvoice = "DATA INVOICE"\n'}
    every = {"stream": None, "name": "all.toml", "text": '[titles]\ninvoice = "PARTNER INVOICE"\n'}
    ours = {"stream": None, "name": "ours.toml", "text": '[titles]\ninvoice = "OUR INVOICE"\n'}
    seller = dict(SELLER, templates=[ours])
    buyer = dict(BUYER_DE, templates=[data, every])
    assert layouts.choose(invoice(stream="data", buyer=buyer, seller=seller)).titles["invoice"] == "DATA INVOICE"
    assert layouts.choose(invoice(stream="voice", buyer=buyer, seller=seller)).titles["invoice"] == "PARTNER INVOICE"
    assert layouts.choose(invoice(stream="voice", seller=seller)).titles["invoice"] == "OUR INVOICE"
    assert layouts.choose(invoice()).titles["invoice"] == "INVOICE"


LUMIERE = Path(__file__).parent.parent / "examples" / "interconnect" / "layouts" / "lumiere.toml"
#: the English words of the default layout a French settlement statement must not carry
STATEMENT_ENGLISH = ("Partner code", "Receivable", "Payable", "Net balance", "Balance", "you owe us", "we owe you",
                     "Invoices", "SETTLEMENT STATEMENT", "Counterparty", "What we owe you", " owes ", "VAT ",
                     "Reg. ")


@pytest.mark.parametrize("net", [D("1250.40"), D("-310.00")])
def test_a_french_statement_has_its_labels_from_the_layout(net):
    from test_einvoice import BUYER_FR

    payable = D("2000.00")
    buyer = dict(BUYER_FR, locale="fr_FR", templates=[{"stream": None, "name": "lumiere.toml",
                                                       "text": LUMIERE.read_text(encoding="utf-8")}])
    doc = {"kind": "statement", "number": "STM-2026-000007", "status": "finalized", "currency": "EUR",
           "issue_date": date(2026, 4, 5), "due_date": date(2026, 5, 5), "period": "2026-03",
           "period_start": date(2026, 3, 1), "period_end": date(2026, 3, 31), "partner_code": "LUMFR",
           "partner_name": "Lumière Télécom SA", "partner_country": "FR", "seller": SELLER, "buyer": buyer,
           "stream": "netting", "receivable": payable + net, "payable": payable, "net": net,
           "subtotal": payable, "total": None, "tax_amount": None,
           "invoices": [{"number": "INV-2026-000031", "id": 31, "stream": "traffic", "subtotal": payable + net}],
           "receivable_items": [{"stream": "traffic", "description": "inbound voice", "amount": payable + net}],
           "lines": [{"line_no": 1, "kind": "traffic", "description": "outbound voice", "quantity": D("1000"),
                      "unit": "minute", "amount": payable, "rate": D("2"), "rate_unit": "minute", "currency": "EUR"}]}
    text = pdf_text(render(doc))
    assert [w for w in STATEMENT_ENGLISH if w in text] == []
    for french in ("RELEVÉ DE COMPENSATION", "Code partenaire LUMFR", "TVA FR03552081317", "SIREN 732829320", "À recevoir : nos factures de la période",
                   "À payer (lignes compensées ci-dessus) 2 000,00 EUR", "Factures: INV-2026-000031",
                   "Ce que nous vous devons pour les services compensés"):
        assert french.replace("\u202f", " ") in text.replace("\u202f", " ").replace("\xa0", " "), french
    owed = "Solde : vous nous devez 1 250,40" if net > 0 else "Solde : nous vous devons 310,00"
    assert owed in text.replace("\u202f", " ").replace("\xa0", " ")
    # the default layout keeps its English words
    english = pdf_text(render(dict(doc, buyer=BUYER_FR)))
    assert "Partner code LUMFR" in english and "Net balance" in english and "Receivable (our invoices)" in english


#: the English words icdsl itself writes on an invoice (tax line, average rate, small print)
INVOICE_ENGLISH = ("VAT ", "avg ", "mixed rates", "Agreement ", "FX ", "Rounding", "rounded", "Summary view",
                   " owes ", "Payment", "Bill to", "Subtotal", "record", "outbound", "voice", "peak",
                   "Description", "Lines", "Records", "Quantity", "Amount")


@pytest.mark.parametrize("view", ["itemized", "summary"])
def test_a_french_invoice_writes_icdsls_own_words_in_french(view):
    """Lumière's layout (fr_FR): a traffic line's description (from its direction, service,
    destination and band, the rules' names printed as its [names] say), the tax line, a line's
    average rate and its unit, and the small print (agreement, FX rate, rounding, the summary
    view's note) in French; the default layout keeps the English ones, word for word as before."""
    from test_einvoice import BUYER_FR

    buyer = dict(BUYER_FR, locale="fr_FR", templates=[{"stream": None, "name": "lumiere.toml",
                                                       "text": LUMIERE.read_text(encoding="utf-8")}])
    lines = [{"line_no": 1, "kind": "traffic", "description": "outbound voice to Germany mobile (peak)",
              "direction": "outbound", "destination": "Germany mobile", "band": "peak", "quantity": D("600"),
              "unit": "second", "rate_unit": "minute", "source_amount": D("1.2345"), "amount": D("1.23"),
              "currency": "EUR", "service": "voice", "record_count": 3},
             {"line_no": 2, "kind": "surcharge", "description": "Origine hors EEE", "quantity": D("15"),
              "unit": "record", "rate": D("0.056"), "rate_unit": "record", "amount": D("0.84"), "currency": "EUR",
              "service": "voice"}]
    summary = [{"kind": "traffic", "direction": "outbound", "service": "voice", "description": "outbound voice",
                "lines": 2, "record_count": 18, "quantity": None, "unit": None, "amount": D("2.07")}]
    doc = invoice(buyer=buyer, partner_code="LUMFR", partner_name="Lumière Télécom SA", tax_kind="vat",
                  tax_rate=D("20"), tax_note=None, tax_label="VAT 20%", subtotal=D("2.07"), tax_amount=D("0.41"),
                  total=D("2.48"), lines=lines, summary=summary,
                  agreements=[{"name": "Lumière bilateral", "version": 1, "hash": "6d7ca8cc2a0873de" * 4}],
                  fx=[{"from": "USD", "to": "EUR", "rate": "0.92", "source": "ECB", "listed": "2026-03-31",
                       "effective_from": date(2026, 3, 1)}],
                  rounding="each line rounded once to 2 decimals (half_up); subtotal = sum of the lines; tax "
                           "rounded half_up on the subtotal")
    text = pdf_text(render(doc, view=view)).replace("\u202f", " ").replace("\xa0", " ")
    assert [w for w in INVOICE_ENGLISH if w in text] == [], text
    expected = ["TVA 20 % 0,41 EUR", "Accord « Lumière bilateral » v1 (sha256 6d7ca8cc2a0873de)",
                "Change USD en EUR : 0.92 (ECB 2026-03-31, en vigueur depuis le 2026-03-01)",
                "Arrondi : chaque ligne arrondie une fois à 2 décimales (au plus proche, demi vers le haut)"]
    expected += (["Trafic sortant : voix vers Germany mobile (heures pleines)", "moy. 0,1234 /minute",
                  "15 enregistrement", "0,056 /enregistrement"] if view == "itemized"
                 else ["Vue résumée : les lignes additionnées par service", "Trafic sortant : voix",
                       "Désignation Lignes", "Quantité Montant HT"])
    for french in expected:
        assert french in text, french
    english = pdf_text(render(dict(doc, buyer=BUYER_FR), view=view))
    for words in ("VAT 20% 0.41 EUR", 'Agreement "Lumière bilateral" v1 (sha256 6d7ca8cc2a0873de)',
                  "FX USD to EUR: 0.92 (ECB 2026-03-31, in force from 2026-03-01)", "Rounding: each line rounded once",
                  *(["outbound voice to Germany mobile (peak)", "avg 0.1234 /minute", "15 record"]
                    if view == "itemized" else ["Summary view:", "outbound voice"])):
        assert words in english, words


@pytest.mark.parametrize(("text", "message"), [
    ("[page]\nsize = \"B9\"\n", "x.toml:2: [page] size: 'B9' is not one of A4, A5, letter, legal"),
    ("[labls]\n", "x.toml:1: unknown section [labls]"),
    ("\n[labels]\nnumbr = \"N\"\n", "x.toml:3: unknown key 'numbr' in [labels] (did you mean 'number'?)"),
    ("[texts]\npayment = \"{{ seller.name \"\n", "x.toml:2: [texts] payment: unexpected end of template"),
    ("[columns]\nitemized = [{ field = \"amount\", width = 50 }]\n", "the widths of the itemized columns add up to 50"),
    ("[columns]\nitemized = [{ field = \"password\", width = 100 }]\n", "unknown field 'password'"),
    ("[page]\nfont = \"../../etc/passwd\"\n", "is not a font icdsl has"),
    ("x = [\n", "x.toml: not TOML"),
    ("[texts]\nclosing = \"" + "x" * 5000 + "\"\n", "longer than 4000 characters"),
])
def test_a_wrong_layout_is_refused_with_where_and_why(text, message):
    with pytest.raises(layouts.LayoutError) as e:
        layouts.parse(text, "x.toml")
    assert message in str(e.value)


def test_a_layouts_texts_run_sandboxed():
    lay = layouts.parse('[texts]\nclosing = "{{ seller.__class__.__mro__[1].__subclasses__() }}"\n', "evil.toml")
    with pytest.raises(layouts.LayoutError, match="the text 'closing' cannot be written: SecurityError"):
        render(invoice(), layout=lay)


def test_the_facturx_pdf_embeds_its_fonts_and_carries_the_pdfa_output_intent(tmp_path):
    """Every font of the Factur-X PDF is embedded (FontFile2: DejaVu Sans Condensed, not a core
    font), the sRGB output intent and the PDF/A-3 identification are there, and the embedded XML
    passes the factur-x package's XSD check. What PDF/A-3 asks beyond PDF/A-1 (which PDFBox
    Preflight checks, tests/pdfa_preflight.py): the XML is an associated file (/AF) with its
    relationship and MIME type and dates; the information dictionary and the XMP say the same; no
    transparency group; the XMP unfiltered."""
    import re

    from facturx import get_facturx_xml_from_pdf, xml_check_xsd
    from pdfa_preflight import pdfa3_errors
    from pypdf import PdfReader

    from icdsl.outputs.einvoice import write_facturx
    from icdsl.outputs.pdfa import xmp_date

    path = write_facturx(german_doc(), tmp_path)
    reader = PdfReader(path)
    fonts = {}
    for page in reader.pages:
        for f in page["/Resources"]["/Font"].values():
            f = f.get_object()
            desc = f.get("/FontDescriptor") or f["/DescendantFonts"][0].get_object()["/FontDescriptor"]
            fonts[str(f["/BaseFont"])] = "/FontFile2" in desc.get_object()
    assert fonts and all(fonts.values()) and all("DejaVu" in name for name in fonts), fonts
    root = reader.trailer["/Root"]
    assert "/OutputIntents" in root
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert "<pdfaid:part>3</pdfaid:part>" in xmp and "<pdfaid:conformance>B</pdfaid:conformance>" in xmp
    _name, xml = get_facturx_xml_from_pdf(path.read_bytes(), check_xsd=False)
    assert xml_check_xsd(xml, flavor="factur-x", level="en16931")
    # PDF/A-3: the XML is an associated file of the document, Data, text/xml, with its dates
    (spec,) = [f.get_object() for f in root["/AF"].get_object()]
    assert spec["/AFRelationship"] == "/Data" and spec["/F"] == spec["/UF"] == "factur-x.xml"
    names = root["/Names"]["/EmbeddedFiles"]["/Names"]
    assert names[0] == "factur-x.xml" and names[1].get_object() == spec
    ef = spec["/EF"]["/F"].get_object()
    assert ef["/Subtype"] == "/text/xml" and ef["/Params"]["/ModDate"] and ef["/Params"]["/Size"] == len(xml)
    # the information dictionary and the XMP say the same (ISO 19005-3 6.6.2.3.1)
    info = reader.trailer["/Info"]
    assert re.search(r"<pdf:Producer>([^<]*)<", xmp).group(1) == info["/Producer"] == "icdsl"
    assert re.search(r"<pdf:Keywords>([^<]*)<", xmp).group(1) == info["/Keywords"]
    assert re.search(r"<xmp:CreateDate>([^<]*)<", xmp).group(1) == xmp_date(info["/CreationDate"])
    assert re.search(r"<xmp:ModifyDate>([^<]*)<", xmp).group(1) == xmp_date(info["/ModDate"])
    assert "/Filter" not in root["/Metadata"].get_object()
    assert all("/Group" not in page for page in reader.pages)  # nothing transparent
    assert pdfa3_errors(path) == []  # Apache PDFBox Preflight: no finding that PDF/A-3 forbids
    # the same file as fpdf2 and factur-x leave it: Preflight finds the gaps icdsl.outputs.pdfa closes
    from facturx import generate_from_binary

    from icdsl.outputs.pdf import render

    raw = tmp_path / "raw.pdf"
    raw.write_bytes(generate_from_binary(render(german_doc(), pdfa=True), xml, flavor="factur-x", level="en16931",
                                         pdf_metadata={"keywords": "Factur-X", "title": "t", "author": "a",
                                                       "subject": "s"}))
    assert {code for code, _text in pdfa3_errors(raw)} >= {"2.2.1", "1.2.7"}  # transparency, filtered XMP


def test_the_template_command_copies_the_default_and_checks_a_layout(tmp_path):
    from typer.testing import CliRunner

    from icdsl.cli.main import app

    runner = CliRunner()
    target = tmp_path / "layouts" / "mine.toml"
    r = runner.invoke(app, ["invoice", "template", "--copy", str(target)])
    assert r.exit_code == 0 and target.read_text(encoding="utf-8") == layouts.default_text()
    r = runner.invoke(app, ["invoice", "template", "--copy", str(target)])
    assert r.exit_code == 1 and "exists" in r.output
    assert runner.invoke(app, ["invoice", "template", "--check", str(target)]).exit_code == 0
    target.write_text("[labels]\nnumbr = 'x'\n", encoding="utf-8")
    r = runner.invoke(app, ["invoice", "template", "--check", str(target)])
    assert r.exit_code == 1 and "mine.toml:2: unknown key 'numbr'" in r.output and "Traceback" not in r.output


def test_an_issued_invoice_keeps_the_parties_it_was_finalized_with(tmp_path):
    """The mvno example billed and finalized; then Fleetrix moves and our IBAN changes in the
    rules, loaded again: the finalized invoice still shows the old details (sealed), a draft of
    the next month the new ones."""
    from typer.testing import CliRunner

    from icdsl.billing.store import open_store
    from icdsl.cli.main import app

    rules = tmp_path / "mvno"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "mvno", rules)
    db = ["--db", f"sqlite:///{tmp_path / 's.db'}", "--data", str(tmp_path / "data")]
    runner = CliRunner()
    accept = ["--accept", "outside_agreement", "--accept", "invalid_record"]
    for args in (["load", str(rules)], ["inventory", "import", str(rules / "inventory.csv")],
                 ["ingest", str(rules / "traffic.csv"), "--rules", str(rules)],
                 ["cycle", "run", "FLTX", "2026-03", "--rules", str(rules), *accept],
                 ["cycle", "finalize", "FLTX", "2026-03"]):
        r = runner.invoke(app, [*args, *db])
        assert r.exit_code == 0, (args, r.output)
    partners = rules / "partners.icd"
    text = partners.read_text(encoding="utf-8")
    assert '"Am Hafen 3"' in text
    partners.write_text(text.replace('"Am Hafen 3"', '"Neuer Wall 10"').replace(
        'iban "FR76 3000 6000 0112 3456 7890 189"', 'iban "DE89 3704 0044 0532 0130 00"'), encoding="utf-8")
    r = runner.invoke(app, ["load", str(rules), *db])
    assert r.exit_code == 0, r.output
    s = open_store(db[1], data_dir=db[3])
    try:
        issued = [s.document(i.number) for i in s.invoices() if i.number]
        assert issued
        for doc in issued:
            assert doc["parties"] == "sealed" and doc["buyer"]["address"] == ["Am Hafen 3"]
            assert doc["seller"]["iban"] == "FR7630006000011234567890189"
        assert s.verify().ok
    finally:
        s.close()
    assert "Am Hafen 3" in pdf_text(render(issued[0]))
    # a partner's dispute of the invoice accepted: a credit note issued against it (CN- series),
    # taxed as the invoice, referencing it, sealed; never more than the invoice's subtotal
    from test_einvoice import errors

    from icdsl.outputs.einvoice import cii_xml, ubl_xml

    first = issued[0]
    r = runner.invoke(app, ["invoice", "credit", first["number"], "--amount", "1.50", "--line", "1", "--reason",
                            "dispute accepted: 3 sessions billed twice", *db])
    assert r.exit_code == 0, r.output
    number = r.output.split(":")[0]
    assert number.startswith("CN-2026-")
    r = runner.invoke(app, ["invoice", "credit", first["number"], "--amount", str(first["subtotal"]), "--reason",
                            "too much", *db])
    assert r.exit_code == 1 and "can be credited" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["invoice", "credit", first["number"], "--amount", "1.505", "--reason", "x", *db])
    assert r.exit_code == 1 and "at most 2 decimals" in r.output
    s = open_store(db[1], data_dir=db[3])
    try:
        cn = s.document(number)
        assert s.verify().ok
    finally:
        s.close()
    assert cn["kind"] == "credit_note" and cn["subtotal"] == D("-1.50") and cn["corrects"] == [first["number"]]
    assert cn["tax_kind"] == first["tax_kind"] and cn["total"] == cn["subtotal"] + (cn["tax_amount"] or 0)
    assert cn["lines"][0]["description"] == (f"Credit on {first['number']} line 1 ({first['lines'][0]['description']}"
                                             "): dispute accepted: 3 sessions billed twice")  # the default layout
    assert cn["period"] == first["period"]  # the period of the invoice it credits
    assert errors(ubl_xml(cn)) == [] and errors(cii_xml(cn)) == []
    # booked in the journal of the month it was issued, balanced
    r = runner.invoke(app, ["journal", "--period", cn["issue_date"].strftime("%Y-%m"), "--rules", str(rules),
                            "--format", "json", *db])
    assert r.exit_code == 0, r.output
    assert number in r.output
