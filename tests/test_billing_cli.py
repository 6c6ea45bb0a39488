"""The billing commands end to end (load, ingest, cycle run/status/finalize, rerate, trace,
invoice show/export), their error messages and exit codes, the outputs, and `icdsl demo`
(small, deterministic, resumable after a kill)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest
from test_billing_store import PARTNER, V1_OPEN, march_traffic, write_csv
from typer.testing import CliRunner

from icdsl.cli.main import app


@pytest.fixture
def env(tmp_path, monkeypatch):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "orfr.icd").write_text(PARTNER + V1_OPEN, encoding="utf-8")
    write_csv(tmp_path / "march.csv", march_traffic())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICDSL_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("ICDSL_DATA", raising=False)
    return tmp_path


def run(*args: str, code: int = 0) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, (res.output, res.exception)
    assert "Traceback" not in res.output
    return res.output


def test_cycle_commands_end_to_end(env):
    assert "partners added: ORFR" in run("load", "rules")
    assert "march.csv: batch #1: read 63, passed 63" in run("ingest", "march.csv", "--rules", "rules")
    out = run("cycle", "run", "ORFR", "2026-03", "--rules", "rules", code=1)  # validation stops it
    assert "error[invalid_destination]" in out and "--accept" in out
    out = run("cycle", "run", "ORFR", "2026-03", "--rules", "rules", "--accept", "invalid_destination")
    assert "ORFR 2026-03: invoiced" in out and "subtotal 4.72, tax 0.94, total 5.66 EUR" in out
    out = run("cycle", "status", "--events")
    assert "invoiced" in out and "invalid_destination" in out and "rated -> validated" in out
    assert "INV-2026-000001" in run("cycle", "finalize", "ORFR", "2026-03")
    out = run("invoice", "show", "INV-2026-000001")
    assert "outbound voice to France mobile" in out and "total 5.66 EUR" in out
    assert "outbound voice" in run("invoice", "show", "INV-2026-000001", "--view", "summary")
    out = run("invoice", "export", "--cycle", "ORFR", "2026-03", "--format", "csv", "--format", "json",
              "--format", "pdf", "--out", "out")
    names = sorted(p.name for p in (env / "out").iterdir())
    assert names == ["INV-2026-000001.csv", "INV-2026-000001.json", "INV-2026-000001.pdf"]
    doc = json.loads((env / "out" / "INV-2026-000001.json").read_text())
    assert (doc["subtotal"], doc["tax_amount"], doc["total"]) == ("4.72", "0.94", "5.66")
    assert sum(float(x["amount"]) for x in doc["lines"]) == pytest.approx(4.72)
    csv = (env / "out" / "INV-2026-000001.csv").read_text().splitlines()
    assert csv[-1].split(",")[6:8] == ["total", "total"] and csv[-1].split(",")[16] == "5.66"
    assert (env / "out" / "INV-2026-000001.pdf").read_bytes().startswith(b"%PDF")
    # the audit trail: line 3 is French mobile
    out = run("trace", "3", "--records", "2", "--explain", "C0001", "--rules", "rules")
    assert 'agreement "ORFR voice" v1' in out and '336 "France mobile" 0.0200' in out
    assert "first 2 record(s)" in out and "record C0001" in out and "=> 0.0" in out
    # a correction of the finalized month goes on April
    out = run("rerate", "--partner", "ORFR", "--from", "2026-03-01", "--to", "2026-03-31", "--rules", "rules")
    assert "nothing changed" in out


def test_user_mistakes_are_messages_not_tracebacks(env):
    run("load", "rules")
    out = run("cycle", "run", "XXXX", "2026-03", "--rules", "rules", code=1)
    assert "partner XXXX is not declared" in out or "not in the store" in out
    assert "is not a period" in run("cycle", "run", "ORFR", "March", "--rules", "rules", code=2)
    assert "there is no cycle ORFR 2026-03" in run("cycle", "finalize", "ORFR", "2026-03", code=1)
    assert "no invoice or statement numbered" in run("invoice", "show", "INV-1999-000001", code=1)
    assert "no invoice line 99" in run("trace", "99", code=1)
    assert "needs the rules" in run("trace", "1", "--explain", "C1", code=2)
    assert "is not a date" in run("rerate", "--partner", "ORFR", "--from", "2026-13-01", "--to", "2026-03-31",
                                  "--rules", "rules", code=2)
    assert "unsupported database" in run("cycle", "status", "--db", "nonsense://", code=1)
    assert "not a database URL" in run("cycle", "status", "--db", "::", code=1)
    assert "no such file" in run("ingest", "nope.csv", "--rules", "rules", code=2)


def test_outputs_are_deterministic(env):
    from icdsl.billing.store import open_store
    from icdsl.outputs.pdf import render

    run("ingest", "march.csv", "--rules", "rules")
    run("cycle", "run", "ORFR", "2026-03", "--rules", "rules", "--accept", "all")
    run("cycle", "finalize", "ORFR", "2026-03")
    with open_store() as store:
        doc = store.document("INV-2026-000001")
    assert render(doc) == render(doc) and render(doc, view="summary") != render(doc)
    assert doc["kind"] == "invoice" and doc["tax_label"] == "VAT 20%"


# --------------------------------------------------------------------------- demo

KILL = textwrap.dedent("""
    import os, sys
    import icdsl.billing.store as st
    from pathlib import Path
    from icdsl.demo import run_demo
    stage, hits = sys.argv[2], int(sys.argv[3])
    seen = []
    def die(at):
        if at == stage:
            seen.append(at)
            if len(seen) == hits:
                os._exit(137)
    st.checkpoint = die
    import icdsl.billing.base
    icdsl.billing.base.checkpoint = die  # where the store's parts call it
    sys.exit(run_demo(Path(sys.argv[1]), records=6000, seed=5))
""")


def _documents(folder):
    return {p.name: json.loads(p.read_text()) for p in sorted((folder / "invoices").glob("*.json"))}


def _summary_tells_the_truth(out: str, docs: dict) -> None:
    """The demo's summary, in 80 columns: invoices per partner (what each pays us), and the
    revenue-share and settlement statements in a table of their own, each with the party it is
    addressed to; no statement is added to a partner's invoices."""
    assert max(len(line) for line in out.splitlines()) <= 80

    def row(*cells: str) -> bool:
        return re.search(r"\s+".join(re.escape(c) for c in cells), out) is not None

    invoices = out[out.index("Invoices: what each partner pays us"):out.index("March 2026: charges beyond traffic")]
    assert row("LUMFR", "INV-2026-000001", "fees", "1778.22", "355.64", "2133.86", "EUR")
    assert row("LUMFR", "INV-2026-000002", "traffic", "8.23", "1.65", "9.88", "EUR")
    assert row("LUMFR pays", "1786.45", "357.29", "2143.74", "EUR")
    assert row("BRKGB pays", "5190.40", "0.00", "5190.40", "GBP")
    assert row("CPX", "INV-2026-000005", "main", "2904.90", "0.00", "2904.90", "EUR")
    assert row("FLTX pays", "28393.09", "0.00", "28393.09", "EUR")
    assert "CPX pays" not in invoices and "SHR-" not in invoices and "STM-" not in invoices
    # each invoice row is its document's subtotal, tax and total
    for d in docs.values():
        if d["kind"] == "invoice":
            assert row(d["number"], d["stream"], d["subtotal"], d["tax_amount"], d["total"], d["currency"])
    statements = out[out.index("Revenue-share and settlement statements"):]
    assert row("SHR-2026-000001", "CPX", "AGGR", "revenue share to pay", "11.56", "EUR")
    assert row("SHR-2026-000002", "CPX", "CPX", "revenue share to pay", "1100.79", "EUR")
    assert row("SHR-2026-000003", "CPX", "us", "our own share (kept)", "318.83", "EUR")
    assert row("STM-2026-000001", "LUMFR", "LUMFR", "net: LUMFR pays us", "1486.52", "EUR")
    assert row("STM-2026-000002", "BRKGB", "BRKGB", "net: BRKGB pays us", "5153.64", "GBP")
    assert row("STM-2026-000003", "CPX", "CPX", "net: CPX pays us", "1804.11", "EUR")
    assert row("STM-2026-000003 CPX: receivable 2904.90 - payable 1100.79 = net 1804.11 EUR")
    assert statements.index("SHR-2026-000002") < statements.index("STM-2026-000003")


def test_demo_small_deterministic_and_resumable_after_a_kill(tmp_path):
    from rich.console import Console

    from icdsl.demo import run_demo

    console = Console(file=open(os.devnull, "w"), width=150)  # noqa: SIM115
    screen = io.StringIO()
    assert run_demo(tmp_path / "clean", records=6000, seed=5, console=Console(file=screen, width=80)) == 0
    clean = _documents(tmp_path / "clean")
    _summary_tells_the_truth(screen.getvalue(), clean)
    kinds = sorted((d["partner_code"], d["kind"], d["stream"]) for d in clean.values())
    assert kinds == [("BRKGB", "invoice", "fees"), ("BRKGB", "invoice", "traffic"), ("BRKGB", "statement", "netting"),
                     ("CPX", "invoice", "main"), ("CPX", "share_statement", "share-AGGR"),
                     ("CPX", "share_statement", "share-CPX"), ("CPX", "share_statement", "share-us"),
                     ("CPX", "statement", "netting"), ("FLTX", "invoice", "platform"), ("FLTX", "invoice", "usage"),
                     ("LUMFR", "invoice", "fees"), ("LUMFR", "invoice", "traffic"), ("LUMFR", "statement", "netting")]
    brk = next(d for d in clean.values() if d["partner_code"] == "BRKGB" and d["stream"] == "traffic")
    assert brk["currency"] == "GBP" and brk["tax_note"].startswith("Reverse charge") and brk["fx"][0]["rate"] == "0.8511"
    # the charges: a prorated fee (E1 port activated on 10 March: 22/31 x 150.00), the events,
    # a commitment shortfall, shares that add up, settlements that net exactly
    lum = next(d for d in clean.values() if d["partner_code"] == "LUMFR" and d["stream"] == "fees")
    assert {"E1 port rental", "106.45"} <= {x for ln in lum["lines"] if "E1-PAR-002" in ln["description"]
                                             and "2026-03-01" in ln["description"]
                                             for x in (ln["description"].split(":")[0], ln["amount"])}
    assert any(ln["kind"] == "event" and ln["description"].startswith("Number porting") for ln in lum["lines"])
    fltx = next(d for d in clean.values() if d["partner_code"] == "FLTX" and d["stream"] == "usage")
    assert any(ln["kind"] == "commitment" for ln in fltx["lines"])  # the first stream: no stream selects it
    for d in clean.values():
        if d["kind"] == "statement":
            assert Decimal(d["net"]) == Decimal(d["receivable"]) - Decimal(d["payable"])
            assert sum(Decimal(i["amount"]) for i in d["receivable_items"]) == Decimal(d["receivable"])
            assert sum(Decimal(i["amount"]) for i in d["payable_items"]) == Decimal(d["payable"])
        if d["kind"] == "share_statement":
            assert all(sp["adds_up"] for sp in d["splits"])
            for sp in d["splits"]:
                assert sum(Decimal(v) for v in sp["parties"].values()) == Decimal(sp["amount_split"])
    pdfs = {p.name: p.read_bytes() for p in (tmp_path / "clean" / "invoices").glob("*.pdf")}
    # killed while invoicing the third partner, then run again: the same documents, none twice
    res = subprocess.run([sys.executable, "-c", KILL, str(tmp_path / "killed"), "cycle:before_commit", "3"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 137, res.stdout + res.stderr
    assert run_demo(tmp_path / "killed", records=6000, seed=5, console=console) == 0
    assert _documents(tmp_path / "killed") == clean
    assert {p.name: p.read_bytes() for p in (tmp_path / "killed" / "invoices").glob("*.pdf")} == pdfs


def test_store_commands_read_the_rules_of_the_current_folder(env, monkeypatch):
    """Run from the project's folder, `ingest` and `cycle run` need no --rules; elsewhere the
    message says what to do (exit 2, no traceback)."""
    out = run("ingest", "march.csv", code=2)  # env's folder holds no *.icd
    assert "holds no rule files (*.icd)" in out and "--rules FOLDER" in out
    monkeypatch.chdir(env / "rules")
    assert "batch #1: read 63, passed 63" in run("ingest", str(env / "march.csv"))
    out = run("cycle", "run", "ORFR", "2026-03", "--accept", "invalid_destination")
    assert "ORFR 2026-03: invoiced" in out
