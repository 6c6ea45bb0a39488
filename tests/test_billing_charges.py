# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Charges in billing cycles, on SQLite and PostgreSQL: every charge of a worked month to the
cent, reruns that change nothing, one-time fees billed once across cycles, a change after
finalization billed as a correction, revenue shares that add up, settlements that net exactly,
the inventory import, commitment progress and the trail of a charge line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from test_billing_store import count, db_url, make_plan, store  # noqa: F401 - fixtures
from typer.testing import CliRunner

from icdsl.billing import models as M

RULES = """partner ACME "Acme Telecom" {
  kind interconnect currency EUR timezone "Europe/Paris" billing monthly due 30 days tax vat 20%
}
partner AGGR "Mobiquity" { kind content currency EUR timezone "Europe/Paris" billing monthly due 30 days tax none }

agreement "ACME deal" v1 with ACME effective 2026-03-01 .. {
  currency EUR
  outbound voice {
    price 0.0100 EUR per minute
    increments 60/60
    surcharge "Premium route" 0.0020 EUR per minute when route_class == "premium"
  }
  inbound voice {
    price 0.0060 EUR per minute
    increments 60/60
  }
  outbound sms {
    price by destination in EUR per message {
      81010 "Quiz"  0.5000
      81020 "Games" 1.5000
    }
  }
  recurring "E1 port rental" 150.00 EUR monthly per inventory e1_port, prorate daily, in advance
  one_time "Setup" 500.00 EUR on activation
  event "Number porting" 25.00 EUR per porting
  commit "Monthly minimum" 100 EUR per month, shortfall charged, of outbound voice
  volume discount "Voice volume" retroactive on minutes per cycle {
    from 100: 10%
  }, of outbound voice
  revenue share "Premium SMS" on gross of outbound sms {
    AGGR: 0.0200 EUR per message
    ACME: 70%
    us: remainder
  }
  netting with inbound voice
  invoice streams {
    traffic: outbound voice, outbound sms
    fees: recurring, one_time, event, commitment
  }
}
"""
HEADER = "id,partner,direction,service,a_number,b_number,start,duration_s,units,route_class\n"
INVENTORY = "partner,item_id,kind,quantity,activated,terminated,description\n" \
            "ACME,E1-1,e1_port,1,2026-03-10,,E1 port Paris\n"


def march() -> list[tuple]:
    """120 one-minute calls (10 premium), 50 two-minute inbound calls, 26 premium SMS for
    36.00 EUR (23 at 1.50, 3 at 0.50), two portings: all in March 2026, Paris time."""
    rows = []
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def at(i: int) -> str:
        return (t0 + timedelta(hours=3 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")

    for i in range(120):
        rows.append((f"V{i:03d}", "ACME", "outbound", "voice", "33170000001", "33142685300", at(i), 60, "",
                     "premium" if i % 12 == 0 else "standard"))
    for i in range(50):
        rows.append((f"I{i:03d}", "ACME", "inbound", "voice", "33142685300", "33170000001", at(i), 120, "", ""))
    for i in range(26):
        rows.append((f"S{i:03d}", "ACME", "outbound", "sms", "33612345678", "81020" if i < 23 else "81010", at(i),
                     "", 1, ""))
    rows.append(("P001", "ACME", "inbound", "porting", "", "", at(3), "", "", ""))
    rows.append(("P002", "ACME", "inbound", "porting", "", "", at(7), "", "", ""))
    return rows


def write(path, rows, header=HEADER):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(",".join(str(x) for x in r) + "\n" for r in rows), encoding="utf-8")
    return path


def setup(store, tmp_path, inventory=INVENTORY):
    plan, program = make_plan(tmp_path, RULES, "acme.icd")
    store.load_plan(plan, program)
    rep = store.import_inventory(write(tmp_path / "inventory.csv", [], inventory))
    assert rep.read.ok, str(rep)
    store.ingest(write(tmp_path / "in" / "march.csv", march()), None, plan)
    return plan


def documents(store, cycle_id):
    return {(d["kind"], d["stream"]): d for d in store.cycle_documents(cycle_id)}


def lines(doc):
    return sorted((ln["kind"], ln["description"].split(":")[0], str(ln["amount"])) for ln in doc["lines"])


# --------------------------------------------------------------------------- a worked month


def test_a_month_of_charges_to_the_cent(store, tmp_path):
    plan = setup(store, tmp_path)
    rep = store.run_cycle("ACME", "2026-03", plan)
    assert rep.status == "invoiced", str(rep)
    assert rep.events == 2 and rep.records_in == 196  # the portings are counted, not rated
    docs = documents(store, rep.cycle_id)
    traffic = docs[("invoice", "traffic")]
    # 120 min at 0.0100 = 1.20; premium surcharge 10 x 0.0020 = 0.02 (its own line); 120 min reach
    # the 10 % tier: -0.12 on the records' 1.20 (not on the surcharge); SMS 23 x 1.50 + 3 x 0.50
    assert lines(traffic) == sorted([
        ("traffic", "outbound sms to Games", "34.50"), ("traffic", "outbound sms to Quiz", "1.50"),
        ("traffic", "outbound voice", "1.20"), ("surcharge", "Premium route", "0.02"),
        ("discount", "Voice volume", "-0.12")])
    assert traffic["subtotal"] == Decimal("37.10") and traffic["tax_amount"] == Decimal("7.42")
    fees = docs[("invoice", "fees")]
    # E1 port from 10 March: 22/31 x 150.00 = 106.4516... -> 106.45, April in advance 150.00;
    # setup 500.00; 2 portings x 25.00; commitment 100.00 - (1.20 + 0.02 - 0.12) = 98.90
    assert lines(fees) == sorted([
        ("recurring", "E1 port rental", "106.45"), ("recurring", "E1 port rental", "150.00"),
        ("one_time", "Setup", "500.00"), ("event", "Number porting", "50.00"),
        ("commitment", "Monthly minimum", "98.90")])
    assert fees["subtotal"] == Decimal("905.35")
    # revenue shares of the SMS: AGGR 26 x 0.02 = 0.52; ACME 70 % of 35.48 = 24.836 -> 24.84
    # (largest remainder), us 10.644 -> 10.64: 0.52 + 24.84 + 10.64 = 36.00 exactly
    shares = {d["party"]: d for (k, _), d in docs.items() if k == "share_statement"}
    assert {p: d["total"] for p, d in shares.items()} == {"AGGR": Decimal("0.52"), "ACME": Decimal("24.84"),
                                                          "us": Decimal("10.64")}
    split = shares["us"]["splits"][0]
    assert split["amount_split"] == Decimal("36.00") and split["adds_up"]
    assert sum(split["parties"].values()) == split["amount_split"]
    # settlement: what ACME owes (both invoices) against what we owe (netted inbound voice
    # 50 x 2 min x 0.0060 = 0.60, and ACME's share 24.84); net = the exact difference
    stm = docs[("statement", "netting")]
    assert (stm["receivable"], stm["payable"], stm["net"]) == (Decimal("942.45"), Decimal("25.44"), Decimal("917.01"))
    assert sum(Decimal(i["amount"]) for i in stm["receivable_items"]) == stm["receivable"]
    assert sorted(str(ln["amount"]) for ln in stm["lines"]) == ["0.60", "24.84"]
    assert stm["payer"] == "partner"
    # every line knows its rule, version and key; each application is stored once
    with store.reading() as s:
        rows = list(s.scalars(sa.select(M.ChargeLine).where(M.ChargeLine.cycle_id == rep.cycle_id)))
        assert len(rows) == 10 and all(r.agreement_hash == plan.agreements[0].source_hash for r in rows)
        assert all(r.data["rule_span"][0].endswith("acme.icd") and r.data["rule_span"][1] > 0 for r in rows)
        assert {r.placement for r in rows} == {"invoice", "share"}
        apps = list(s.scalars(sa.select(M.ChargeApplication.key).where(M.ChargeApplication.cycle_id == rep.cycle_id)))
    assert "icdsl1|ACME deal|*|Setup|activation|-" in apps
    assert sum(1 for a in apps if "|event:P00" in a) == 2


def test_rerun_twice_gives_identical_invoices(store, tmp_path):
    plan = setup(store, tmp_path)
    first = store.run_cycle("ACME", "2026-03", plan)
    before = {k: (lines(d), d.get("subtotal"), d.get("net")) for k, d in documents(store, first.cycle_id).items()}
    apps = count(store, M.ChargeApplication)
    for _ in range(2):
        again = store.run_cycle("ACME", "2026-03", plan, rerate=True)
        after = {k: (lines(d), d.get("subtotal"), d.get("net")) for k, d in documents(store, again.cycle_id).items()}
        assert after == before
        assert count(store, M.ChargeApplication) == apps
    with store.reading() as s:
        keys = sorted(s.scalars(sa.select(M.ChargeLine.key)))
    assert len(keys) == len(set(keys)) == 10


def test_once_only_across_cycles_and_a_correction_after_finalization(store, tmp_path):
    plan = setup(store, tmp_path)
    store.run_cycle("ACME", "2026-03", plan)
    store.finalize_cycle("ACME", "2026-03")
    # finalized charge lines and applications cannot change
    with pytest.raises(sa.exc.DatabaseError, match="finalized"), store.session() as s:
        s.execute(sa.update(M.ChargeLine).values(amount=Decimal(1)))
    # the database itself refuses a second application of the setup fee
    with pytest.raises(sa.exc.IntegrityError), store.session() as s:
        other = s.scalar(sa.select(M.ChargeLine.id))
        s.add(M.ChargeApplication(key_hash=s.scalar(sa.select(M.ChargeApplication.key_hash)), key="x",
                                  charge_line_id=other, cycle_id=s.scalar(sa.select(M.BillingCycle.id)),
                                  amount=Decimal(0), currency="EUR", created_at=datetime.now(UTC)))
    # the port is terminated on 16 April: April was billed in advance (150.00) on the
    # finalized March invoice; April is now 15/30 x 150.00 = 75.00: a correction of -75.00
    rep = store.import_inventory(write(tmp_path / "inv2.csv", [], INVENTORY.replace("2026-03-10,,", "2026-03-10,2026-04-16,")))
    assert len(rep.changed) == 1 and "v1 -> v2" in rep.changed[0]
    april = store.run_cycle("ACME", "2026-04", plan)
    fees = documents(store, april.cycle_id)[("invoice", "fees")]
    # no setup fee again, no May fee (the port ends in April), no record: the whole commitment
    assert lines(fees) == sorted([("recurring", "correction of E1 port rental", "-75.00"),
                                  ("commitment", "Monthly minimum", "100.00")])
    with store.reading() as s:
        corr = s.scalars(sa.select(M.ChargeLine).where(M.ChargeLine.cycle_id == april.cycle_id,
                                                       M.ChargeLine.corrects_hash.is_not(None))).one()
    assert corr.data["corrects"].endswith("|item:e1_port:E1-1|2026-04-01..2026-04-30")
    assert corr.data["details"]["billed_before"] == "150.00"
    # rerunning April changes nothing, and does not bill the correction twice
    again = store.run_cycle("ACME", "2026-04", plan, rerate=True)
    assert lines(documents(store, again.cycle_id)[("invoice", "fees")]) == lines(fees)


def test_charge_hold_stops_the_cycle_until_accepted(store, tmp_path):
    rules = RULES.replace('commit "Monthly minimum" 100 EUR per month', 'commit "Monthly minimum" 1_000 minutes per month')
    plan, program = make_plan(tmp_path, rules, "acme.icd")
    store.load_plan(plan, program)
    rep = store.run_cycle("ACME", "2026-04", plan)  # no traffic: the shortfall cannot be valued
    assert rep.status == "rated" and rep.blocked
    assert any(f.code == "charge_hold" and "cannot be valued" in f.message for f in rep.findings)
    rep = store.run_cycle("ACME", "2026-04", plan, accept=["charge_hold"])
    assert rep.status == "invoiced"


# --------------------------------------------------------------------------- inventory


def test_inventory_import_reports_bad_rows_and_versions_items(store, tmp_path):
    plan, program = make_plan(tmp_path, RULES, "acme.icd")
    store.load_plan(plan, program)
    text = INVENTORY + ("ACME,E1-2,e1_port,0,2026-03-01,,zero\n"
                        "ACME,E1-3,e1_port,1,2026-02-30,,no such day\n"
                        "NOPE,E1-4,e1_port,1,2026-03-01,,unknown partner\n"
                        "ACME,E1-5,e1_port,1,2026-03-05,2026-03-01,ends first\n"
                        "ACME,E1-1,e1_port,1,2026-03-10,,again\n"
                        "ACME,E1-6,e1_port,1\n")
    rep = store.import_inventory(write(tmp_path / "inv.csv", [], text))
    assert [(p.line, p.reason) for p in rep.read.problems] == [
        (3, "bad_quantity"), (4, "bad_date"), (5, "unknown_partner"), (6, "ends_before_start"), (7, "duplicate_item"),
        (8, "malformed_row")]
    assert rep.added == ["ACME E1-1 (e1_port)"]
    assert "inv.csv:4: error[bad_date]: activated '2026-02-30' is not a date" in str(rep)
    # idempotent: the same file again adds nothing
    rep = store.import_inventory(tmp_path / "inv.csv")
    assert (rep.added, rep.changed, rep.unchanged) == ([], [], 1)
    # strict: nothing imported when a row is bad
    rep = store.import_inventory(write(tmp_path / "inv3.csv", [], INVENTORY.replace("E1-1", "E1-9") + "ACME,X,e1_port,-1,2026-03-01,,\n"),
                                 strict=True)
    assert not rep.imported and count(store, M.InventoryItem) == 1


def test_cli_inventory_commitments_statements_trace(tmp_path, monkeypatch):
    from icdsl.cli.main import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICDSL_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("ICDSL_DATA", raising=False)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "acme.icd").write_text(RULES, encoding="utf-8")
    write(tmp_path / "march.csv", march())
    write(tmp_path / "inventory.csv", [], INVENTORY + "ACME,E1-2,e1_port,two,2026-03-01,,\n")

    def run(*args, code=0):
        res = CliRunner().invoke(app, list(args))
        assert res.exit_code == code, (res.output, res.exception)
        assert "Traceback" not in res.output
        return res.output

    run("load", "rules")
    out = run("inventory", "import", "inventory.csv", code=1)
    assert "1 added" in out and "inventory.csv:3: error[bad_quantity]: quantity 'two' is not a positive number" in out
    assert "no such file" in run("inventory", "import", "missing.csv", code=2)
    assert "E1-1" in run("inventory", "list", "--partner", "ACME")
    assert "partner NOPE is not in the store" in run("inventory", "list", "--partner", "NOPE", code=1)
    run("ingest", "march.csv", "--rules", "rules")
    # mid-cycle: through 10 March (Paris), 69 calls of one minute (0.69 EUR) + 6 premium surcharges (0.012)
    out = run("commitments", "ACME", "--rules", "rules", "--as-of", "2026-03-10")
    assert "period 2026-03-01..2026-03-31, measured through 2026-03-10 (10 of 31 days)" in out
    assert "so far 0.702 of 100 EUR committed: 0.70%" in out and "behind" in out
    assert "is not a date" in run("commitments", "ACME", "--rules", "rules", "--as-of", "10/03", code=2)
    # through 31 March the 120 minutes reach the volume discount's tier: progress counts the
    # discount line as the cycle will (1.20 + 0.02 - 0.12 = 1.10), as the shortfall of 98.90 below
    out = run("commitments", "ACME", "--rules", "rules", "--as-of", "2026-03-31")
    assert "so far 1.1 of 100 EUR committed: 1.10%" in out and "shortfall if the period ended now: 98.90 EUR" in out
    out = run("cycle", "run", "ACME", "2026-03", "--rules", "rules")
    assert "10 charge line(s)" in out and "2 event record(s)" in out and "revenue share (draft)" in out
    run("cycle", "finalize", "ACME", "2026-03")
    out = run("invoice", "list")
    assert "SHR-2026-000001" in out and "share: ACME" in out
    out = run("invoice", "show", "SHR-2026-000002")
    assert "amount split 36.00 = AGGR 0.52 + ACME 24.84 + us 10.64 (adds up exactly)" in out
    out = run("invoice", "show", "STM-2026-000001")
    assert "net 917.01 EUR (the partner pays us; net = receivable - payable exactly)" in out
    run("invoice", "export", "--cycle", "ACME", "2026-03", "--format", "json", "--format", "csv", "--format", "pdf",
        "--out", "out")
    doc = json.loads((tmp_path / "out" / "SHR-2026-000001.json").read_text())
    assert doc["kind"] == "share_statement" and doc["total"] == "24.84"
    assert (tmp_path / "out" / "SHR-2026-000001.pdf").read_bytes().startswith(b"%PDF")
    assert "split" in (tmp_path / "out" / "SHR-2026-000001.csv").read_text()
    # the trail of charge lines: a prorated fee (item and days), a surcharge (its records), an event
    fees = json.loads((tmp_path / "out" / "INV-2026-000001.json").read_text())
    by = {ln["description"].split(":")[0] + ln["amount"]: ln["line_id"] for ln in fees["lines"]}
    out = run("trace", str(by["E1 port rental106.45"]))
    assert 'recurring "E1 port rental"' in out and "factor: 22/31" in out and "inventory item E1-1" in out
    assert "acme.icd:" in out and 'recurring "E1 port rental" 150.00 EUR monthly' in out
    out = run("trace", str(by["Number porting50.00"]))
    assert "2 event record(s): P001, P002" in out
    traffic = json.loads((tmp_path / "out" / "INV-2026-000002.json").read_text())
    sur = next(ln["line_id"] for ln in traffic["lines"] if ln["kind"] == "surcharge")
    out = run("trace", str(sur), "--records", "2")
    assert "10 record(s) the surcharge applied to" in out and "first 2 record(s)" in out
    share_line = doc["lines"][0]["charge_line_id"]
    out = run("trace", f"charge:{share_line}")
    assert f"charge line {share_line} of ACME 2026-03 (finalized), on the revenue-share statements" in out
    assert "largest remainder" in out and "AGGR: 0.0200 EUR per message" not in out
    assert "is not a line id" in run("trace", "abc", code=2)


def test_commitment_progress_is_the_engines_measure_before_and_after_the_cycle_runs(store, tmp_path):
    """``icdsl commitments`` runs the engine on the store's inputs: on the cycle's last day it
    measures what the cycle's shortfall line bills, and running the cycle first changes nothing
    (the cycle's own lines are not "billed on another cycle")."""
    from datetime import date

    from icdsl.billing.commitments import commitment_progress

    plan = setup(store, tmp_path)
    (before,) = commitment_progress(store, "ACME", plan, date(2026, 3, 31))
    rep = store.run_cycle("ACME", "2026-03", plan)
    (after,) = commitment_progress(store, "ACME", plan, date(2026, 3, 31))
    assert before.progress == after.progress and before.charge == "Monthly minimum"
    with store.reading() as s:
        billed = s.scalars(sa.select(M.ChargeLine.amount).where(M.ChargeLine.cycle_id == rep.cycle_id,
                                                                M.ChargeLine.charge_name == "Monthly minimum")).all()
    assert billed == [after.progress.shortfall_now] and billed[0] > 0
    # mid-month, only the records through that day count
    (mid,) = commitment_progress(store, "ACME", plan, date(2026, 3, 10))
    assert mid.progress.so_far < after.progress.so_far and mid.progress.elapsed_days == 10
