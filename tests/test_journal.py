"""The journal (ERP export): exact entries of a worked example, the mapping of the rules, and
the demo's month balancing to the cent with its revenue equal to the invoices' subtotals."""

from __future__ import annotations

import csv
import json
import os
from datetime import date
from decimal import Decimal as D

import pytest

from icdsl.outputs.journal import JournalError, JournalLine, balances, entries, revenue, to_json, write_csv
from icdsl.plan.compiler import build
from icdsl.plan.model import Accounts

ACCOUNTS = Accounts("411000", "706000", by_kind=(("recurring", "706300"),), by_service=(("sms", "706200"),),
                    tax=(("vat", "445710"),))


def doc(number, total, subtotal, tax, lines, *, kind="invoice", tax_kind="vat"):
    return {"kind": kind, "status": "finalized", "number": number, "partner_code": "LUMFR",
            "partner_name": "Lumière Télécom SA", "currency": "EUR", "issue_date": date(2026, 3, 31),
            "total": D(total), "subtotal": D(subtotal), "tax_amount": D(tax), "tax_kind": tax_kind,
            "tax_label": "VAT 20%", "lines": lines}


def line(amount, kind="traffic", service="voice"):
    return {"amount": D(amount), "kind": kind, "service": service}


def test_worked_example_invoice_and_credit_note():
    inv = doc("INV-1", "144.12", "120.10", "24.02",
              [line("100.00"), line("15.10", service="sms"), line("7.50", "recurring", None), line("-2.50")])
    cn = doc("INV-2", "-12.00", "-10.00", "-2.00", [line("-10.00", "adjustment")], kind="credit_note")
    got = entries([inv, cn, {"kind": "statement", "status": "finalized", "number": "STM-1"}], ACCOUNTS)
    d = "2026-03-31"
    assert got == [
        JournalLine(d, "sales", "INV-1", "LUMFR", "411000", D("144.12"), D("0.00"), "EUR", "Invoice INV-1 Lumière Télécom SA"),
        JournalLine(d, "sales", "INV-1", "LUMFR", "706000", D("0.00"), D("97.50"), "EUR", "Invoice INV-1: revenue"),
        JournalLine(d, "sales", "INV-1", "LUMFR", "706200", D("0.00"), D("15.10"), "EUR", "Invoice INV-1: revenue"),
        JournalLine(d, "sales", "INV-1", "LUMFR", "706300", D("0.00"), D("7.50"), "EUR", "Invoice INV-1: revenue"),
        JournalLine(d, "sales", "INV-1", "LUMFR", "445710", D("0.00"), D("24.02"), "EUR", "Invoice INV-1: VAT 20%"),
        JournalLine(d, "sales", "INV-2", "LUMFR", "411000", D("0.00"), D("12.00"), "EUR", "Credit note INV-2 Lumière Télécom SA"),
        JournalLine(d, "sales", "INV-2", "LUMFR", "706000", D("10.00"), D("0.00"), "EUR", "Credit note INV-2: revenue"),
        JournalLine(d, "sales", "INV-2", "LUMFR", "445710", D("2.00"), D("0.00"), "EUR", "Credit note INV-2: VAT 20%"),
    ]
    assert balances(got) == {"EUR": (D("156.12"), D("156.12"))}
    assert revenue(got, ACCOUNTS) == {"EUR": D("110.10")}  # 120.10 - 10.00, the subtotals


def test_tax_without_an_account_and_drafts_are_refused_with_the_fix():
    inv = doc("INV-1", "12.00", "10.00", "2.00", [line("10.00")])
    with pytest.raises(JournalError, match=r'add `tax vat "ACCOUNT"` to `accounts`'):
        entries([inv], Accounts("411000", "706000"))
    with pytest.raises(JournalError, match="is not finalized"):
        entries([dict(inv, status="draft", number=None)], ACCOUNTS)


def test_csv_and_json_carry_the_same_exact_amounts(tmp_path):
    got = entries([doc("INV-1", "12.00", "10.00", "2.00", [line("10.00", service="=cmd")])], ACCOUNTS)
    rows = list(csv.DictReader(write_csv(got, tmp_path / "j.csv").open(encoding="utf-8")))
    assert [(r["account"], r["debit"], r["credit"]) for r in rows] == [
        ("411000", "12.00", "0.00"), ("706000", "0.00", "10.00"), ("445710", "0.00", "2.00")]
    data = json.loads(to_json(got))
    assert [(e["account"], e["debit"], e["credit"]) for e in data["entries"]] == [
        (r["account"], r["debit"], r["credit"]) for r in rows]
    assert data["balances"] == {"EUR": {"debit": "12.00", "credit": "12.00"}}


def test_the_accounts_of_the_rules(tmp_path):
    (tmp_path / "a.icd").write_text('accounts {\n  receivable "411000"\n  revenue "706000"\n'
                                    '  revenue kind recurring "706300"\n  revenue service sms "706200"\n'
                                    '  tax vat "445710"\n}\n', encoding="utf-8")
    plan, _program, diags = build([tmp_path])
    assert diags == [] and plan.accounts == ACCOUNTS
    (tmp_path / "a.icd").write_text('accounts {\n  revenue "706000"\n  revenue "706001"\n}\n', encoding="utf-8")
    plan, _program, diags = build([tmp_path])
    assert plan is None
    assert sorted((d.code, d.message) for d in diags) == [
        ("E103", "'revenue' is mapped twice"),
        ("E264", "the ledger accounts have no account for VAT collected"),
        ("E264", "the ledger accounts have no receivable account"),
    ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from rich.console import Console

    from icdsl.demo import run_demo

    folder = tmp_path_factory.mktemp("journal_demo")
    with open(os.devnull, "w") as devnull:
        assert run_demo(folder, records=3000, seed=5, console=Console(file=devnull, width=100)) == 0
    return folder


def test_the_demo_month_balances_and_its_revenue_is_the_subtotals(demo, tmp_path):
    from typer.testing import CliRunner

    from icdsl.billing.store import open_store
    from icdsl.cli.main import app

    db = f"sqlite:///{demo / 'icdsl.db'}"
    out = tmp_path / "journal.json"
    r = CliRunner().invoke(app, ["journal", "--period", "2026-03", "--rules", str(demo / "rules"), "--format", "json",
                                 "--out", str(out), "--db", db])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text(encoding="utf-8"))
    store = open_store(db, data_dir=demo / "icdsl-data")
    try:
        invoices = [i for i in store.invoices() if i.status == "finalized"]
    finally:
        store.close()
    subtotals: dict[str, D] = {}
    for i in invoices:
        subtotals[i.currency] = subtotals.get(i.currency, D(0)) + i.subtotal
    for b in data["balances"].values():
        assert D(b["debit"]) == D(b["credit"]) > 0
    rev_accounts = {"706000", "706200", "706300", "706400"}
    booked: dict[str, D] = {}
    for e in data["entries"]:
        if e["account"] in rev_accounts:
            booked[e["currency"]] = booked.get(e["currency"], D(0)) + D(e["credit"]) - D(e["debit"])
    assert booked == subtotals and set(booked) == {"EUR", "GBP"}
    assert {e["document"] for e in data["entries"]} == {i.number for i in invoices}
