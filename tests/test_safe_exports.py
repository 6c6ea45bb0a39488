"""Every CSV icdsl writes for people is safe to open in a spreadsheet: a partner's deck whose
destination names are formulas (``=HYPERLINK(...)``, ``+...``, ``-...``, ``@...``), billed in a
cycle with netting, then exported every way there is (invoices and statements, rated records,
record charges, rejects, the rejects listing): opened as text, no cell starts with a formula
character, and negative amounts in numeric columns are still plain numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pyarrow as pa
import pytest
from test_billing_cli import run  # the CLI run, its exit code and no traceback

from icdsl.safecsv import FORMULA_STARTS, Writer, cell, neutralize_table

HOSTILE = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)"]

RULES = """partner EVIL "Evil Telecom" {
  kind interconnect currency EUR timezone "UTC" billing monthly due 30 days tax vat 20%
}
agreement "Evil bilateral" v1 with EVIL effective 2026-01-01 .. {
  outbound voice {
    price by destination from deck "deck.csv"
    increments 60/60
    surcharge "Premium route" 0.0100 EUR per minute when route_class == "=premium"
  }
  inbound voice {
    price by destination from deck "deck.csv"
    increments 60/60
  }
  netting with outbound voice
}
"""
# prefixes 31..34 carry the hostile names; outbound (what EVIL charges us) outweighs inbound
DECK = "prefix,destination,rate\n" + "".join(f'{31 + i},"{n.replace(chr(34), chr(34) * 2)}",0.1000\n'
                                              for i, n in enumerate(HOSTILE))
TRAFFIC = ("id,partner,direction,service,a_number,b_number,start,duration_s,route_class\n"
           + "".join(f"O{i},EVIL,outbound,voice,4420000000{i},{31 + i}612345678,2026-03-0{i + 2}T09:00:00Z,600,=premium\n"
                     for i in range(4))
           + "".join(f"I{i},EVIL,inbound,voice,4420000000{i},{31 + i}612345678,2026-03-0{i + 2}T10:00:00Z,60,\n"
                     for i in range(4))
           + '"=HYPERLINK(""http://evil.example"",""y"")",EVIL,outbound,voice,+4420000000,99,2026-03-09T09:00:00Z,60,\n')


@pytest.fixture
def evil(tmp_path, monkeypatch):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "evil.icd").write_text(RULES, encoding="utf-8")
    (tmp_path / "rules" / "deck.csv").write_text(DECK, encoding="utf-8")
    (tmp_path / "march.csv").write_text(TRAFFIC, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICDSL_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("ICDSL_DATA", str(tmp_path / "data"))
    return tmp_path


def cells(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
    for r in rows:
        for column, value in r.items():
            assert not (value or "").startswith(FORMULA_STARTS) or _number(value), (column, value)
    return rows


def _number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return text.lstrip("-").replace(".", "", 1).isdigit()


def test_every_csv_export_of_a_cycle_with_a_hostile_deck_is_safe(evil):
    run("load", "rules")
    run("ingest", "march.csv", "--rules", "rules")
    out = run("cycle", "run", "EVIL", "2026-03", "--rules", "rules", "--accept", "all")
    assert "EVIL 2026-03: invoiced" in out
    run("cycle", "finalize", "EVIL", "2026-03")
    run("invoice", "export", "--cycle", "EVIL", "2026-03", "--format", "csv", "--out", "docs")
    run("invoice", "export", "--cycle", "EVIL", "2026-03", "--format", "csv", "--view", "summary", "--out", "docs")
    files = sorted((evil / "docs").glob("*.csv"))
    assert {f.name.split("-")[0] for f in files} == {"INV", "STM"}
    by_kind: dict[str, list[dict[str, str]]] = {}
    for f in files:
        by_kind.setdefault(f.name.split("-")[0], []).extend(cells(f.read_text(encoding="utf-8")))

    # the invoice: the hostile names are there, as text
    inv = by_kind["INV"]
    destinations = {r["destination"] for r in inv if r["kind"] == "traffic" and r["destination"]}
    assert destinations == {"'" + n for n in HOSTILE}
    # 1 inbound minute at 0.1000 to each of the 4 prefixes: 0.40, VAT 20% 0.08
    assert {r["kind"]: r["amount"] for r in inv if r["kind"] in ("subtotal", "tax", "total")} == {
        "subtotal": "0.40", "tax": "0.08", "total": "0.48"}
    # the statement nets what EVIL charges us (4 x 10 minutes at 0.1000, 0.40 of surcharges)
    # against what EVIL owes (before tax): a negative net, still a number
    stm = {r["kind"]: r["amount"] for r in by_kind["STM"] if r["kind"] in ("receivable", "payable", "net")}
    assert stm == {"receivable": "0.40", "payable": "4.40", "net": "-4.00"}

    # rated records (and the per-record charges beside them) as CSV
    run("rate", "rules", "--cdrs", "march.csv", "--out", "rated.csv")
    rated = cells((evil / "rated.csv").read_text(encoding="utf-8"))
    assert {r["destination"] for r in rated} == {"'" + n for n in HOSTILE}
    assert {r["amount"] for r in rated} == {"1.000000", "0.100000"} and {r["rate"] for r in rated} == {"0.1"}
    charges = cells((evil / "rated.charges.csv").read_text(encoding="utf-8"))
    assert {r["charge"] for r in charges} == {"Premium route"}
    rejects = cells((evil / "rated.rejects.csv").read_text(encoding="utf-8"))
    assert [r["id"] for r in rejects] == ["'=HYPERLINK(\"http://evil.example\",\"y\")"]
    assert rejects[0]["raw"].startswith('"=HYPERLINK(') and ",+4420000000," in rejects[0]["raw"]

    # the quarantine: exported and listed
    run("rejects", "export", "-o", "q.csv")
    quarantined = cells((evil / "q.csv").read_text(encoding="utf-8"))
    assert "'=HYPERLINK(\"http://evil.example\",\"y\")" in {r["id"] for r in quarantined}
    cells(run("rejects", "list", "--format", "csv"))


def test_the_writer_keeps_numbers_and_neutralizes_text():
    assert [cell(v) for v in (Decimal("-12.50"), -3, None, "=1", "-3", "+33", "\tx", "ok")] == [
        "-12.50", "-3", "", "'=1", "'-3", "'+33", "'\tx", "ok"]
    assert [cell(v, numeric=True) for v in ("-12.50", "-3", "-1+1", "-", "@1")] == [
        "-12.50", "-3", "'-1+1", "'-", "'@1"]
    buf = io.StringIO()
    w = Writer(buf, numeric=[1])
    w.writerows([["=cmd", "-0.50"], ["-0.50", "@x"]])
    assert buf.getvalue() == "'=cmd,-0.50\n'-0.50,'@x\n"


def test_arrow_tables_are_neutralized_column_by_column():
    t = pa.table({"name": ["=x", "ok", None, "-2+3"],
                  "code": pa.array(["@a", "b", "@a", "+1"]).dictionary_encode(),
                  "rate": ["-0.5", "0.1", "=1", None],
                  "amount": pa.array([Decimal("-1.50"), Decimal("2"), None, Decimal("0")], pa.decimal128(10, 2))})
    got = neutralize_table(t, numeric=["rate"])
    assert got.schema == t.schema
    assert got.column("name").to_pylist() == ["'=x", "ok", None, "'-2+3"]
    assert got.column("code").to_pylist() == ["'@a", "b", "'@a", "'+1"]
    assert got.column("rate").to_pylist() == ["-0.5", "0.1", "'=1", None]
    assert got.column("amount").equals(t.column("amount"))


def test_a_share_statement_with_hostile_names_is_safe_and_keeps_its_amounts():
    from icdsl.outputs.csv import dumps

    doc = {"number": "SHR-1", "kind": "share_statement", "partner_code": "CPX", "period": "2026-03",
           "stream": "share-AGGR", "currency": "EUR", "party": "@AGGR", "lines": [], "total": Decimal("-2.50"),
           "splits": [{"charge": "=Premium SMS", "amount_split": Decimal("-10.00"),
                       "parties": {"@AGGR": Decimal("-2.50"), "+CPX": Decimal("-7.50")}}]}
    rows = cells(dumps(doc))
    assert [(r["kind"], r["description"], r["amount"]) for r in rows] == [
        ("split", "'=Premium SMS: @AGGR of -10.00", "-2.50"), ("split", "'=Premium SMS: +CPX of -10.00", "-7.50"),
        ("total", "total", "-2.50")]
