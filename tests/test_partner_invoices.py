"""Partners' invoices in: the readers (UBL 2.1, CSV in an invoice layout), the store (kept,
hashed, never altered, re-import recognized, a number clash refused, CDR detail apart from our
traffic) and ``icdsl partner-invoice``, on SQLite and PostgreSQL.

Error texts are golden files (tests/golden/partner_invoices/); ``ICDSL_UPDATE_GOLDEN=1``
rewrites them when a change of message is intended.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import threading
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from helpers import compare_golden
from test_billing_store import db_url  # noqa: F401 - fixture
from test_billing_store import store as store  # noqa: F401 - a fixture (its name is the tests' parameter)
from typer.testing import CliRunner

from icdsl.billing import models as M
from icdsl.billing.errors import IngestError
from icdsl.billing.partner_invoices import (
    PartnerInvoiceError,
    detail_rejects,
    detail_table,
    import_partner_invoice,
    load_partner_invoice,
    partner_invoices,
)
from icdsl.cli.main import app
from icdsl.plan.compiler import build
from icdsl.recon.readers import InvoiceFileError, read_invoice, read_ubl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "interconnect"
SAMPLES = EXAMPLES / "partner-invoices"
GOLDEN = Path(__file__).parent / "golden" / "partner_invoices"
UBL = SAMPLES / "lumiere-2026-03.xml"
CSV = SAMPLES / "lumiere-2026-02.csv"
DETAIL = SAMPLES / "lumiere-2026-03-detail.csv"
DETAIL_LAYOUT = """
records lumiere_detail {
  id = column "call_ref"
  a_number = column "calling"
  b_number = column "called"
  start = column "setup_time"
  duration_s = column "duration"
  amount = column "charge"
  service = voice
  timezone "Europe/Paris"
  country FR
  format "%Y-%m-%d %H:%M:%S"
}
"""


@pytest.fixture(scope="module")
def plan():
    p, _program, diags = build([EXAMPLES])
    assert p is not None, [str(d) for d in diags]
    return p


@pytest.fixture(scope="module")
def program():
    _p, prog, _d = build([EXAMPLES])
    return prog


@pytest.fixture
def loaded(store, plan, program):  # noqa: F811 - the fixture
    store.load_plan(plan, program)
    return store


def ubl_text(**repl: str) -> str:
    text = UBL.read_text(encoding="utf-8")
    for a, b in repl.items():
        text = text.replace(a.replace("_", " ") if a.startswith("SP_") else a, b)
    return text


def problems_of(data: bytes, name: str, layout=None) -> str:
    with pytest.raises(InvoiceFileError) as e:
        read_invoice(data, name, "LUMFR", layout=layout, layouts=["lumiere_csv"])
    return str(e.value) + "\n"


# --------------------------------------------------------------------------- readers: worked examples


def test_ubl_sample_read_exactly():
    inv = read_invoice(UBL.read_bytes(), UBL.name, "LUMFR")
    assert (inv.number, inv.kind, inv.currency, inv.format) == ("LUM-2026-000318", "invoice", "EUR", "ubl")
    assert (str(inv.period_start), str(inv.period_end), str(inv.issue_date)) == ("2026-03-01", "2026-03-31",
                                                                                 "2026-04-03")
    # 4.1 min x 0.0070 = 0.0287 -> 0.03 as they rounded it; the lines add up to the stated total
    first = inv.lines[0]
    assert (first.service, first.destination, first.prefix, first.band, first.calls) == \
        ("voice", "France fixed", "33", "peak", 3)
    assert (first.quantity, first.unit, first.rate, first.amount) == \
        (Decimal("4.1"), "minute", Decimal("0.0070"), Decimal("0.03"))
    assert inv.lines[8].unit == "message" and inv.lines[8].service == "sms" and inv.lines[8].destination is None
    assert sum(x.amount for x in inv.lines) == inv.total == Decimal("10.89")
    assert inv.tax_total == Decimal("2.18") and inv.findings == ()
    assert all(isinstance(x.amount, Decimal) for x in inv.lines)


def test_csv_sample_read_with_its_layout(plan):
    inv = read_invoice(CSV.read_bytes(), CSV.name, "LUMFR", layout=plan.invoice_layout("lumiere_csv"))
    assert (inv.number, inv.format, str(inv.issue_date)) == ("LUM-2026-000211", "csv", "2026-03-04")
    assert (str(inv.period_start), str(inv.period_end)) == ("2026-02-01", "2026-02-28")
    assert [x.service for x in inv.lines] == ["voice"] * 5 + ["sms"]  # "Voice termination" as voice
    assert inv.lines[0].quantity == Decimal("41230.5") and inv.lines[0].rate == Decimal("0.0070")  # decimal commas
    assert inv.total == sum(x.amount for x in inv.lines) == Decimal("1295.42") and inv.findings == ()


def test_stated_total_against_lines_is_a_finding(plan):
    ubl = ubl_text(**{'<cbc:LineExtensionAmount currencyID="EUR">10.89': '<cbc:LineExtensionAmount '
                      'currencyID="EUR">10.99'})
    inv = read_ubl(ubl.encode(), "x.xml", "LUMFR")
    assert inv.total == Decimal("10.89")  # their TaxExclusiveAmount, as stated
    assert any("their lines add up to 10.89 EUR, but the invoice states 10.99 EUR" in f for f in inv.findings)
    text = CSV.read_text().replace(";1295,42", ";1300,00")
    inv = read_invoice(text.encode(), "x.csv", "LUMFR", layout=plan.invoice_layout("lumiere_csv"))
    assert inv.total == Decimal("1300.00")
    assert inv.findings == ('their lines add up to 1295.42 EUR, but the invoice states 1300.00 EUR (column '
                            '"Invoice Total"): a difference of 4.58 EUR',)


def test_credit_note():
    text = ubl_text().replace("Invoice-2", "CreditNote-2").replace("<Invoice ", "<CreditNote ") \
        .replace("</Invoice>", "</CreditNote>").replace("InvoiceLine>", "CreditNoteLine>") \
        .replace("InvoicedQuantity", "CreditedQuantity").replace("<cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>", "")
    inv = read_ubl(text.encode(), "cn.xml", "LUMFR")
    assert inv.kind == "credit_note" and len(inv.lines) == 9 and inv.total == Decimal("10.89")


# --------------------------------------------------------------------------- readers: hostile files (golden)


def test_xxe_local_file_refused_nothing_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    xml = (f'<?xml version="1.0"?>\n<!DOCTYPE Invoice [ <!ENTITY x SYSTEM "file://{secret}"> ]>\n'
           '<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
           'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
           '<cbc:ID>&x;</cbc:ID></Invoice>')
    text = problems_of(xml.encode(), "xxe.xml")
    assert "TOP-SECRET-42" not in text
    compare_golden(GOLDEN / "xxe.txt", text)


def test_the_parser_itself_resolves_no_entity(tmp_path):
    """Belt and braces: even past the DOCTYPE refusal, the lxml parser reads no file."""
    from lxml import etree

    from icdsl.recon.readers import _safe_parser

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    xml = f'<!DOCTYPE r [ <!ENTITY x SYSTEM "file://{secret}"> ]><r>&x;</r>'.encode()
    root = etree.fromstring(xml, parser=_safe_parser())
    assert "TOP-SECRET-42" not in etree.tostring(root).decode()


def test_xxe_over_http_refused_no_request():
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<x>fetched</x>")

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/evil.dtd"
        for xml in (f'<!DOCTYPE Invoice SYSTEM "{url}"><Invoice/>',
                    f'<!DOCTYPE Invoice [ <!ENTITY % p SYSTEM "{url}"> %p; ]><Invoice/>'):
            with pytest.raises(InvoiceFileError, match="declares a DOCTYPE: refused"):
                read_invoice(xml.encode(), "net.xml", "LUMFR")
            from lxml import etree

            from icdsl.recon.readers import _safe_parser

            with pytest.raises(etree.XMLSyntaxError):  # undefined parameter entity: not fetched
                etree.fromstring(xml.encode(), parser=_safe_parser())
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []


def test_billion_laughs_refused():
    xml = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
           "<lolz>&lol2;</lolz>")
    with pytest.raises(InvoiceFileError, match="declares a DOCTYPE"):
        read_invoice(xml.encode(), "lol.xml", "LUMFR")


def test_ubl_problems_located_golden():
    text = ubl_text()
    text = text.replace("<cbc:IssueDate>2026-04-03</cbc:IssueDate>", "<cbc:IssueDate>03/04/2026</cbc:IssueDate>")
    text = text.replace('<cbc:LineExtensionAmount currencyID="EUR">9.68</cbc:LineExtensionAmount>',
                        '<cbc:LineExtensionAmount currencyID="USD">9,68</cbc:LineExtensionAmount>')
    text = text.replace('unitCode="MIN">5.6', 'unitCode="XYZ">5.6')
    text = text.replace("<cbc:PriceAmount currencyID=\"EUR\">0.0134</cbc:PriceAmount>",
                        "<cbc:PriceAmount currencyID=\"EUR\">1e-2</cbc:PriceAmount>")
    text = text.replace("<cbc:Value>3</cbc:Value>", "<cbc:Value>three</cbc:Value>")
    compare_golden(GOLDEN / "ubl_problems.txt", problems_of(text.encode(), "bad.xml"))


def test_not_xml_not_ubl_golden():
    out = problems_of(b"<Invoice><unclosed></Invoice>", "broken.xml")
    out += problems_of(b'<Order xmlns="urn:x"/>', "order.xml")
    out += problems_of(b"Invoice No;Amount\n1;2\n", "plain.csv")
    compare_golden(GOLDEN / "not_ubl.txt", out)


def test_csv_problems_located_golden(plan):
    lay = plan.invoice_layout("lumiere_csv")
    rows = CSV.read_text().splitlines()
    bad = list(rows)
    bad[1] = bad[1].replace("288,61", "288.61x")
    bad[2] = bad[2].replace("01/02/2026", "2026-02-01")
    bad[3] = bad[3].replace("LUM-2026-000211", "LUM-2026-000999")
    bad[4] = bad[4] + ";extra"
    out = problems_of(("\n".join(bad) + "\n").encode(), "bad.csv", lay)
    out += problems_of(rows[0].replace("Amount", "Amt").encode() + b"\n", "header.csv", lay)
    out += problems_of(b"\xff\xfe\x00bad", "binary.csv", lay)
    out += problems_of(b"Invoice No;Service\n", "short.csv", lay)
    compare_golden(GOLDEN / "csv_problems.txt", out)


# --------------------------------------------------------------------------- the store


def test_import_keep_reimport_detail(loaded, plan):
    rep = import_partner_invoice(loaded, UBL, "LUMFR", plan, details=[DETAIL])
    inv = rep.invoice
    assert not rep.already and inv.id is not None and len(inv.lines) == 9
    assert inv.sha256 and inv.total == Decimal("10.89") and inv.lines[0].amount == Decimal("0.03")
    with loaded.reading() as s:
        row = s.get(M.PartnerInvoice, inv.id)
        kept = loaded.data.abs(row.file_path)
        assert kept.read_bytes() == UBL.read_bytes()  # the file as received
        audit = s.scalars(sa.select(M.AuditEntry).where(M.AuditEntry.action == "partner_invoice_imported")).all()
        assert len(audit) == 1 and audit[0].entity_id == inv.id
        assert s.scalar(sa.select(sa.func.count()).select_from(M.IntakeBatch)) == 0  # never our traffic
    assert kept.as_posix().split("/icdsl-data/")[-1] if "/icdsl-data/" in kept.as_posix() else True
    with loaded.reading() as s:
        assert row.file_path in loaded.referenced_files(s)  # kept by gc
    (d,) = rep.details
    assert (d.read, d.passed, d.rejected, d.duplicates) == (14, 13, 1, 0) and d.by_reason == {"negative_duration": 1}
    # again: recognized, nothing added
    again = import_partner_invoice(loaded, UBL, "LUMFR", plan, details=[DETAIL])
    assert again.already and again.invoice.id == inv.id and again.details[0].already
    assert "already imported as LUMFR invoice LUM-2026-000318" in str(again)
    assert len(partner_invoices(loaded, "LUMFR")) == 1
    from datetime import date

    assert [i.number for i in partner_invoices(loaded, "LUMFR", first=date(2026, 3, 31), last=date(2026, 4, 30))] \
        == ["LUM-2026-000318"]
    assert partner_invoices(loaded, "LUMFR", first=date(2026, 4, 1)) == []
    assert load_partner_invoice(loaded, "LUM-2026-000318") == load_partner_invoice(loaded, inv.id)
    assert loaded.verify_files() == []
    # the detail for the reconciliation: normalized like our records
    t = detail_table(loaded, inv.id)
    assert t.num_rows == 13
    assert t.schema.field("start").type == pa.int64() and t.schema.field("amount").type == pa.decimal128(24, 8)
    first = t.slice(0, 1).to_pylist()[0]
    assert first["id"] == "IC-0001" and first["b_number"] == "33142685300" and first["duration_s"] == 61
    assert first["start"] == 1772441952000000  # 2026-03-02 09:59:12 Paris = 08:59:12 UTC
    assert first["amount"] == Decimal("0.007700")
    rej = detail_rejects(loaded, d.id)
    assert rej.column("reason").to_pylist() == ["negative_duration"]


def test_same_number_other_content_refused(loaded, plan, tmp_path):
    import_partner_invoice(loaded, UBL, "LUMFR", plan)
    other = tmp_path / "lumiere-2026-03-v2.xml"
    other.write_text(ubl_text().replace("<cbc:DueDate>2026-05-03", "<cbc:DueDate>2026-05-04"), encoding="utf-8")
    with pytest.raises(PartnerInvoiceError) as e:
        import_partner_invoice(loaded, other, "LUMFR", plan)
    msg = str(e.value)
    assert "LUMFR invoice LUM-2026-000318 was already imported (id 1" in msg and "credit note" in msg
    with loaded.reading() as s:
        failed = s.scalars(sa.select(M.AuditEntry).where(M.AuditEntry.action == "partner_invoice_import_failed")).all()
        assert len(failed) == 1


def test_imported_rows_are_immutable(loaded, plan):
    inv = import_partner_invoice(loaded, UBL, "LUMFR", plan, details=[DETAIL]).invoice
    for stmt in ("UPDATE partner_invoices SET total = 0", "DELETE FROM partner_invoices",
                 "UPDATE partner_invoice_lines SET amount = 0", "DELETE FROM partner_invoice_lines",
                 "UPDATE partner_invoice_details SET passed_count = 0", "DELETE FROM partner_invoice_details"):
        with pytest.raises(sa.exc.DBAPIError, match="never altered"), loaded.engine.begin() as conn:
            conn.execute(sa.text(stmt))
    assert load_partner_invoice(loaded, inv.id).total == Decimal("10.89")


def test_unknown_partner_layout_and_csv_import(loaded, plan):
    with pytest.raises(PartnerInvoiceError, match="unknown partner 'LUMFX'"):
        import_partner_invoice(loaded, UBL, "LUMFX", plan)
    with pytest.raises(PartnerInvoiceError, match="no invoice layout named 'lumiere'"):
        import_partner_invoice(loaded, CSV, "LUMFR", plan, layout="lumiere")
    rep = import_partner_invoice(loaded, CSV, "LUMFR", plan, layout="lumiere_csv")
    assert rep.invoice.format == "csv" and rep.invoice.number == "LUM-2026-000211"
    assert detail_table(loaded, rep.invoice.id).num_rows == 0


# --------------------------------------------------------------------------- the command


def test_cli_import_list_show(db_url, tmp_path):  # noqa: F811 - the fixture
    runner = CliRunner()
    rules = tmp_path / "rules"
    shutil.copytree(EXAMPLES, rules, ignore=shutil.ignore_patterns("tools"))
    base = ["--db", db_url, "--data", str(tmp_path / "data")]
    r = runner.invoke(app, ["partner-invoice", "import", str(UBL), "--partner", "LUMFR", "--rules", str(rules),
                            "--detail", str(DETAIL), *base])
    assert r.exit_code == 0, r.output
    assert "imported LUMFR invoice LUM-2026-000318 (id 1): 9 lines" in r.output
    r = runner.invoke(app, ["partner-invoice", "import", str(CSV), "--partner", "LUMFR", "--rules", str(rules),
                            *base])
    assert r.exit_code == 1
    compare_golden(GOLDEN / "cli_csv_without_layout.txt", r.output.replace(str(CSV.parent) + "/", ""))
    r = runner.invoke(app, ["partner-invoice", "list", *base])
    assert r.exit_code == 0 and "LUM-2026-000318" in r.output and "10.89" in r.output
    r = runner.invoke(app, ["partner-invoice", "show", "LUM-2026-000318", *base])
    assert r.exit_code == 0, r.output
    assert "sha256 " in r.output and "detail 1: lumiere-2026-03-detail.csv" in r.output
    assert "total before tax (as stated): 10.89 EUR" in r.output
    r = runner.invoke(app, ["partner-invoice", "show", "1", "--format", "json", *base])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["total"] == "10.89" and len(doc["lines"]) == 9 and doc["detail_files"][0]["passed_count"] == 13
    assert Path(doc["kept_as"]).read_bytes() == UBL.read_bytes()
    r = runner.invoke(app, ["partner-invoice", "show", "NOPE", *base])
    assert r.exit_code == 1 and "no partner invoice 'NOPE'" in r.output
    r = runner.invoke(app, ["partner-invoice", "import", str(tmp_path / "missing.xml"), "--partner", "LUMFR",
                            "--rules", str(rules), *base])
    assert r.exit_code == 2


def test_detail_sent_later_repeats_and_bad_amounts(loaded, plan, tmp_path):
    inv = import_partner_invoice(loaded, UBL, "LUMFR", plan, details=[DETAIL]).invoice
    # their second file in their own layout, described in the rules by a records layout
    rules = tmp_path / "rules"
    shutil.copytree(EXAMPLES, rules, ignore=shutil.ignore_patterns("tools", "partner-invoices"))
    (rules / "detail.icd").write_text(DETAIL_LAYOUT, encoding="utf-8")
    plan2, _program, diags = build([rules])
    assert plan2 is not None, [str(d) for d in diags]
    later = tmp_path / "lumiere-2026-03-detail-2.csv"
    later.write_text("call_ref,calling,called,setup_time,duration,charge\n"
                     "IC-0001,33170000001,33142685300,2026-03-02 09:59:12,61,0.007700\n"  # in the first file
                     "LUM-90001,33170000050,0612345678,2026-03-20 11:00:00,30,0.005350\n"  # national number
                     "LUM-90002,33170000051,33612345678,2026-03-20 11:05:00,30,abc\n", encoding="utf-8")
    rep = import_partner_invoice(loaded, UBL, "LUMFR", plan2, details=[later], detail_layout="lumiere_detail")
    assert rep.already and rep.invoice.id == inv.id
    assert "already imported as LUMFR invoice LUM-2026-000318 (id 1); 1 new detail file(s) added to it" in str(rep)
    (d,) = rep.details
    assert (d.read, d.passed, d.rejected, d.duplicates) == (3, 1, 1, 1)
    assert d.by_reason == {"duplicate_id": 1, "bad_amount": 1}
    t = detail_table(loaded, inv.id)
    assert t.num_rows == 14 and t.column("id").to_pylist().count("IC-0001") == 1
    row = [r for r in t.to_pylist() if r["id"] == "LUM-90001"][0]
    assert row["b_number"] == "33612345678" and row["amount"] == Decimal("0.005350")  # E.164 as our intake does
    rej = detail_rejects(loaded, d.id).to_pylist()
    assert [(r["id"], r["reason"]) for r in rej] == [("IC-0001", "duplicate_id"), ("LUM-90002", "bad_amount")]
    assert rej[0]["detail"] == "also in their detail file lumiere-2026-03-detail.csv"


# --------------------------------------------------------------------------- the example, reconciled and disputed


def test_the_example_invoice_reconciles_with_exactly_its_designed_differences(loaded, plan):
    """examples/interconnect/partner-invoices/lumiere-2026-03.xml and its detail are Lumière's bill
    for our March traffic in examples/interconnect/traffic.csv, with the differences its README
    explains: United Kingdom mobile at 0.1940 a minute instead of 0.0194 (IC-0004), a call we
    have no record of (LUM-77120, France fixed), IC-0006 two seconds longer, and IC-0007 (United
    States) not billed. Nothing else differs, and the dispute takes exactly what they billed over us."""
    from icdsl.billing.disputes import open_dispute
    from icdsl.billing.reconcile import reconcile_partner
    from icdsl.recon.model import LINE_DIFFERS, LINE_MATCHED, LINE_ONLY_OURS

    loaded.ingest(EXAMPLES / "traffic.csv", None, plan)
    import_partner_invoice(loaded, UBL, "LUMFR", plan, details=[DETAIL])
    r = reconcile_partner(loaded, "LUMFR", "2026-03", plan=plan, all_records=True)
    lines = {(c.service, c.destination): (c.status, c.amount_difference) for c in r.lines}
    assert {k: v for k, v in lines.items() if v[0] != LINE_MATCHED} == {
        ("voice", "France fixed"): (LINE_DIFFERS, Decimal("0.02")),
        ("voice", "United Kingdom mobile"): (LINE_DIFFERS, Decimal("0.91")),
        ("voice", "United States"): (LINE_ONLY_OURS, Decimal("-0.04")),
    }
    assert len(lines) == 10 and all(d == 0 for s, d in lines.values() if s == LINE_MATCHED)
    assert (r.their_total, r.our_total) == (Decimal("10.89"), Decimal("10.00"))
    classes = {(x["their_id"] or x["our_id"]): x["class"] for x in r.records.to_pylist() if x["class"] != "matched"}
    assert classes == {"IC-0004": "differs_rate", "IC-0006": "differs_duration", "LUM-77120": "only_theirs",
                       "IC-0007": "only_ours"}
    assert r.record_counts["matched"] == 10
    doc = open_dispute(loaded, reconcile_partner(loaded, "LUMFR", "2026-03", plan=plan))
    assert Decimal(doc["amount"]) == Decimal("0.93") == Decimal("0.02") + Decimal("0.91")
    assert sorted(ln["their_lines"][0] for ln in doc["lines"]) == [1, 8]


def test_a_failed_import_leaves_no_file_behind(loaded, plan, tmp_path):
    """The invoice and a first detail file are written before a second detail fails: the import
    is rolled back and the files it wrote are removed at once (not left to the garbage collection)."""
    bad = tmp_path / "bad-detail.csv"
    bad.write_text("who,what\nx,y\n", encoding="utf-8")
    with pytest.raises((PartnerInvoiceError, IngestError)):
        import_partner_invoice(loaded, UBL, "LUMFR", plan, details=[DETAIL, bad])
    folder = loaded.data.abs("partner-invoices")
    assert not [f for f in folder.rglob("*") if f.is_file()] if folder.exists() else True
    assert partner_invoices(loaded, "LUMFR") == []
    rep = import_partner_invoice(loaded, UBL, "LUMFR", plan, details=[DETAIL])  # then as if never tried
    assert not rep.already and loaded.verify_files() == []


# --------------------------------------------------------------------------- the user's way: an external entity


class _Watched:
    """A secret file that says whether anything opened it, even below Python (libxml2 reads
    files in C, unseen by audit hooks): a FIFO that a thread keeps offering to write; a reader's
    open is the only way its non-blocking open for writing succeeds. And an HTTP server that
    counts its requests."""

    def __init__(self, folder: Path):
        import os

        self.path = folder / "secret.txt"
        os.mkfifo(self.path)
        self.opened = 0
        self.stop = threading.Event()
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server name
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"<!ENTITY x 'fetched'>")

            def log_message(self, *a):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.threads = [threading.Thread(target=self._offer, daemon=True),
                        threading.Thread(target=self.server.serve_forever, daemon=True)]

    def _offer(self) -> None:
        import os

        while not self.stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader
                self.stop.wait(0.005)
                continue
            self.opened += 1
            with contextlib.suppress(OSError):
                os.write(fd, b"TOP-SECRET-42")
            os.close(fd)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        for t in self.threads:
            t.join(5)


def test_the_watch_sees_a_parser_that_reads_entities(tmp_path):
    """The file watch of the test below is not blind: an lxml parser told to resolve entities is
    seen opening the file (whatever it does with the URL: this libxml2 may have no HTTP client,
    so only the server's count says no request was made)."""
    from lxml import etree

    with _Watched(tmp_path) as w:
        root = etree.fromstring(f'<!DOCTYPE r [ <!ENTITY x SYSTEM "file://{w.path}"> ]><r>&x;</r>'.encode(),
                                parser=etree.XMLParser(resolve_entities=True))
    assert w.opened >= 1 and "TOP-SECRET-42" in etree.tostring(root).decode()


def test_cli_refuses_an_external_entity_and_reads_no_file_and_no_network(db_url, tmp_path):  # noqa: F811
    """`icdsl partner-invoice import` of a UBL invoice declaring an external entity (a local file,
    a URL, a parameter entity over the network): exit 1, a clear located message, no traceback,
    the file never opened, no request made, nothing imported or kept."""
    rules = tmp_path / "rules"
    shutil.copytree(EXAMPLES, rules, ignore=shutil.ignore_patterns("tools"))
    base = ["--partner", "LUMFR", "--rules", str(rules), "--db", db_url, "--data", str(tmp_path / "data")]
    ns = ('xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
          'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"')
    runner = CliRunner()
    with _Watched(tmp_path) as w:
        hostile = {
            "file.xml": f'<?xml version="1.0"?>\n<!DOCTYPE Invoice [ <!ENTITY x SYSTEM "file://{w.path}"> ]>\n'
                        f'<Invoice {ns}><cbc:ID>&x;</cbc:ID></Invoice>',
            "url.xml": f'<?xml version="1.0"?>\n<!DOCTYPE Invoice [ <!ENTITY x SYSTEM "{w.url}/x"> ]>\n'
                       f'<Invoice {ns}><cbc:ID>&x;</cbc:ID></Invoice>',
            "param.xml": f'<?xml version="1.0"?>\n<!DOCTYPE Invoice [ <!ENTITY % p SYSTEM "{w.url}/e.dtd"> %p; ]>\n'
                         f'<Invoice {ns}/>',
        }
        for name, text in hostile.items():
            (tmp_path / name).write_text(text, encoding="utf-8")
            r = runner.invoke(app, ["partner-invoice", "import", str(tmp_path / name), *base])
            assert r.exit_code == 1, r.output
            assert "Traceback" not in r.output and "internal error" not in r.output
            assert f"{name}: line 2: the document declares a DOCTYPE: refused" in r.output
            assert "nothing was read" in r.output and "TOP-SECRET-42" not in r.output
    assert (w.opened, w.hits) == (0, [])
    r = runner.invoke(app, ["partner-invoice", "list", "--db", db_url, "--data", str(tmp_path / "data")])
    assert r.exit_code == 0 and "no partner invoices imported" in r.output
    kept = [p.name for p in (tmp_path / "data").rglob("*") if p.is_file()] if (tmp_path / "data").exists() else []
    assert kept in ([], ["STORE_ID"])  # the store's own mark, and no file of the invoice
