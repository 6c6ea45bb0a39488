# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Corrections through the engine, on SQLite and PostgreSQL: ``icdsl rerate`` of a finalized
month evaluates the whole corrected month (traffic lines and every charge line) and bills each
difference as an adjustment on the next cycle, pointing at the line it corrects; the
adjustments add up to what a fresh run of the corrected month bills minus what was billed, to
the cent; rerating again adds nothing. Late records of a finalized month are found at ingest,
reported, and billed once by ``icdsl rerate``."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_billing_store import count, db_url, make_plan, store  # noqa: F401 - fixtures
from test_cycle_engine import _bench
from typer.testing import CliRunner

from icdsl.billing import models as M
from icdsl.billing.store import open_store
from icdsl.cli.main import app
from icdsl.cycle import CycleInputs, run
from icdsl.plan.compiler import build

RULES = """partner ACME "Acme Telecom" {
  kind interconnect currency EUR timezone "Europe/Paris" billing monthly due 30 days tax vat 20%
}
partner AGGR "Mobiquity" { kind content currency EUR timezone "Europe/Paris" billing monthly due 30 days tax none }

agreement "ACME deal" v1 with ACME effective 2026-02-01 .. {
  currency EUR
  outbound voice {
    price by destination in EUR per minute from deck "decks/acme.csv"
    increments 60/60
    surcharge "Heavy month" 0.0010 EUR per minute when cycle.revenue >= 50
  }
  inbound voice {
    price 0.0060 EUR per minute
    increments 60/60
  }
  commit "Monthly minimum" 100 EUR per month, shortfall charged, of outbound voice
  volume discount "Voice volume" retroactive on revenue per cycle {
    from 50: 10%
  }, of outbound voice
  revenue share "Voice share" on gross of outbound voice {
    AGGR: 20%
    ACME: 10%
    us: remainder
  }
  netting with inbound voice
}
"""
DECK = "prefix,destination,rate\n33,France,0.0100\n336,France mobile,{mobile}\n"
HEADER = "id,partner,direction,service,a_number,b_number,start,duration_s\n"


def traffic(month: int, n: int, tag: str) -> list[tuple]:
    """Outbound calls to French fixed and mobile numbers and inbound calls, spread over the
    month (Paris time), with durations that give odd cents."""
    rows = []
    t0 = datetime(2026, month, 1, 8, 0, tzinfo=UTC)
    for i in range(n):
        at = (t0 + timedelta(hours=(i * 7) % (27 * 24))).strftime("%Y-%m-%dT%H:%M:%SZ")
        if i % 5 == 4:
            rows.append((f"{tag}I{i:04d}", "ACME", "inbound", "voice", "33142685300", "33170000001", at, 40 + i % 300))
        elif i % 3 == 0:
            rows.append((f"{tag}F{i:04d}", "ACME", "outbound", "voice", "33170000001", "33142685300", at,
                         30 + 17 * i % 400))
        else:
            rows.append((f"{tag}M{i:04d}", "ACME", "outbound", "voice", "33170000001", "33612345678", at,
                         20 + 13 * i % 500))
    return rows


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(",".join(str(x) for x in r) + "\n" for r in rows), encoding="utf-8")
    return path


def rules(tmp_path, mobile: str | None = None, name: str = "rules", extra: str = ""):
    """The rules; with ``mobile``, v1 ends in February and v2 prices French mobiles at
    ``mobile`` from March on (a version is immutable once loaded: a new deck is a new version)."""
    (tmp_path / name / "rules" / "decks").mkdir(parents=True, exist_ok=True)
    (tmp_path / name / "rules" / "decks" / "acme.csv").write_text(DECK.format(mobile="0.0200"), encoding="utf-8")
    text = RULES.replace("  netting with", extra + "  netting with")
    if mobile is not None:
        (tmp_path / name / "rules" / "decks" / "acme-v2.csv").write_text(DECK.format(mobile=mobile), encoding="utf-8")
        v1 = text[text.index("agreement"):]
        v2 = v1.replace('"ACME deal" v1', '"ACME deal" v2').replace("2026-02-01 ..", "2026-03-01 ..") \
            .replace("decks/acme.csv", "decks/acme-v2.csv")
        text = text.replace("2026-02-01 ..", "2026-02-01 .. 2026-02-28") + "\n" + v2
    return make_plan(tmp_path / name, text, "acme.icd")


def billed(store, cycle_id: int, partner: str = "ACME") -> dict[str, Decimal]:
    """Everything a cycle billed, by currency, adjustments of earlier cycles left out: its
    invoice lines, its settlement statement's lines, and the revenue-share lines of the parties
    other than the partner (the partner's own share is a line of the settlement statement)."""
    acc: dict[str, Decimal] = defaultdict(Decimal)
    for inv in store.invoices(cycle_id):
        for ln in store.invoice_lines(inv.id):
            if ln.kind != "adjustment":
                acc[ln.currency] += ln.amount
    for st in store.statements(cycle_id):
        for ln in st.details["lines"]:
            if ln["kind"] != "adjustment":
                acc[ln["currency"]] += Decimal(ln["amount"])
    for sh in store.share_statements(cycle_id):
        if sh.party != partner:
            for ln in sh.details["lines"]:
                if ln["kind"] != "adjustment":
                    acc[ln["currency"]] += Decimal(ln["amount"])
    return dict(acc)


def fresh_run(tmp_path, plan, program, files, period="2026-03") -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """(what a fresh run of ``period`` bills, its charge lines' amounts by key) on a new store."""
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}", data_dir=tmp_path / "fresh-data")
    try:
        fresh.load_plan(plan, program)
        for f in files:
            fresh.ingest(f, None, plan)
        rep = fresh.run_cycle("ACME", period, plan)
        assert rep.status == "invoiced", str(rep)
        return billed(fresh, rep.cycle_id), {c.key: c.amount for c in fresh.charge_lines(rep.cycle_id)}
    finally:
        fresh.close()


def cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, (res.output, res.exception)
    return res.output


@pytest.mark.parametrize("via", ["api", "cli"])
def test_rerate_corrects_every_dependent_charge(store, db_url, tmp_path, via, monkeypatch):
    plan1, prog1 = rules(tmp_path, None, "rules")
    store.load_plan(plan1, prog1)
    march = write(tmp_path / "in" / "march.csv", traffic(3, 900, "C"))
    april = write(tmp_path / "in" / "april.csv", traffic(4, 100, "D"))
    store.ingest(march, None, plan1)
    mar = store.run_cycle("ACME", "2026-03", plan1)
    assert mar.status == "invoiced", str(mar)
    store.finalize_cycle("ACME", "2026-03")
    before = billed(store, mar.cycle_id)
    lines0 = {c.key: c for c in store.charge_lines(mar.cycle_id)}
    kinds = {c.kind for c in lines0.values()}
    assert {"commitment", "volume_discount", "revenue_share", "surcharge"} <= kinds
    # from March, the deck's French mobile rate falls from 0.0200 to 0.0087 (v2): the revenue
    # falls under the discount's 50 EUR tier and the surcharge's 50 EUR cycle total, the
    # shortfall grows, every share shrinks
    plan2, prog2 = rules(tmp_path, "0.0087", "rules2")
    if via == "api":
        rep = store.rerate("ACME", "2026-03-01", "2026-03-31", plan2, program=prog2)
    else:
        monkeypatch.chdir(tmp_path / "rules2" / "rules")  # rule files are named relative to the folder
        out = cli("rerate", "--partner", "ACME", "--from", "2026-03-01", "--to", "2026-03-31",
                  "--rules", "acme.icd", "--db", db_url, "--data", str(tmp_path / "data"))
        assert "adjustment(s) on 2026-04" in out and "Monthly minimum" in out, out
        rep = None
    adjustments = [a for a in store.adjustments() if a.source_cycle_id == mar.cycle_id]
    if rep is not None:
        (corr,) = rep.corrections
        assert corr.target == "2026-04" and len(corr.adjustments) == len(adjustments)
        assert "Monthly minimum" in str(rep) and "Voice volume" in str(rep)
    # every dependent amount is adjusted, each pointing at the March line it corrects: v1's
    # lines are credited, v2's billed, both pointing at the line of the same charge
    by_charge = {a.charge_key: a for a in adjustments if a.charge_key}
    assert set(lines0) <= set(by_charge), (set(lines0), set(by_charge))
    by_line = {c.id: c for c in lines0.values()}
    for key, a in by_charge.items():
        orig = by_line[a.charge_line_id]
        assert orig.key.replace("|v1|", "|v2|") == key.replace("|v1|", "|v2|")
        assert a.corrects_line_id == orig.invoice_line_id
        assert (a.placement == "invoice") == (orig.placement == "invoice")
    assert {by_line[a.charge_line_id].kind for a in by_charge.values()} == \
        {"commitment", "volume_discount", "revenue_share", "surcharge"}
    traffic_adj = [a for a in adjustments if not a.charge_key]
    # (a netted line is a line of the settlement statement, which has no line rows to point at)
    assert traffic_adj and all(a.corrects_line_id is not None for a in traffic_adj if not a.netted)
    # the sum of the adjustments is what a fresh run of the corrected month bills minus what
    # was billed, to the cent, per currency
    fresh, fresh_lines = fresh_run(tmp_path, plan2, prog2, [march])
    adj: dict[str, Decimal] = defaultdict(Decimal)
    for a in adjustments:
        adj[a.currency] += a.amount
    assert set(fresh) == set(before)
    assert {c: fresh[c] - before[c] for c in fresh} == dict(adj)
    # and, line by line, each charge line as billed plus its adjustment is the fresh line
    for key, a in by_charge.items():
        c = lines0.get(key)
        assert (c.amount if c else 0) + a.source_delta == fresh_lines.get(key, 0), key
    assert rep is None or not rep.corrections[0].warnings
    # rerating again adds nothing: nothing is adjusted twice
    n = count(store, M.Adjustment)
    again = store.rerate("ACME", "2026-03-01", "2026-03-31", plan2)
    assert again.corrections[0].correction_id is None and count(store, M.Adjustment) == n
    # April carries them: invoice and statement lines pointing at March's lines, share
    # statements with the share adjustments
    store.ingest(april, None, plan2)
    apr = store.run_cycle("ACME", "2026-04", plan2)
    assert apr.status == "invoiced", str(apr)
    on_april = []
    for inv in store.invoices(apr.cycle_id):
        on_april += [(ln.adjustment_id, ln.corrects_line_id, ln.amount) for ln in store.invoice_lines(inv.id)
                     if ln.kind == "adjustment"]
    for st in store.statements(apr.cycle_id):
        on_april += [(ln["adjustment_id"], ln["corrects_line_id"], Decimal(ln["amount"]))
                     for ln in st.details["lines"] if ln["kind"] == "adjustment"]
    for sh in store.share_statements(apr.cycle_id):
        on_april += [(ln["adjustment_id"], ln.get("corrects_line_id"), Decimal(ln["amount"]))
                     for ln in sh.details["lines"] if ln["kind"] == "adjustment"]
    expected = [(a.id, a.corrects_line_id, a.amount) for a in adjustments if a.amount != 0]
    assert sorted(on_april, key=lambda x: x[0]) == sorted(expected, key=lambda x: x[0])
    # the trail of an adjustment of the shortfall: the charge line and the invoice line it corrects
    shortfall = next(a for a in adjustments if a.charge_key and "Monthly minimum" in a.charge_key
                     and a.corrects_line_id == lines0[next(k for k in lines0 if "Monthly minimum" in k)].invoice_line_id
                     and "|v1|" in a.charge_key)
    (line,) = [ln for inv in store.invoices(apr.cycle_id) for ln in store.invoice_lines(inv.id)
               if ln.adjustment_id == shortfall.id]
    text = str(store.trace(line.id))
    assert f"charge line {shortfall.charge_line_id}" in text and f"corrects line {shortfall.corrects_line_id}" in text
    assert "Adjustment 2026-03: Monthly minimum" in line.description


def test_late_records_are_found_reported_and_billed_once(store, db_url, tmp_path, monkeypatch):
    plan, prog = rules(tmp_path, None, "rules")
    store.load_plan(plan, prog)
    march_rows = traffic(3, 300, "C")
    late_rows = [r for r in traffic(3, 40, "L")]  # records of March that arrive in April
    store.ingest(write(tmp_path / "in" / "march.csv", march_rows), None, plan)
    mar = store.run_cycle("ACME", "2026-03", plan)
    store.finalize_cycle("ACME", "2026-03")
    before = billed(store, mar.cycle_id)
    # a file of April traffic with 40 records of March: found at ingest, kept, not billed
    batch = store.ingest(write(tmp_path / "in" / "april.csv", traffic(4, 100, "D") + late_rows), None, plan)
    assert batch.reconciles and batch.passed == 140 and batch.late == {"ACME 2026-03": 40}, str(batch)
    assert "40 late record(s) of finalized ACME 2026-03" in str(batch)
    (late,) = store.late_records("ACME")
    assert (late.cycle, late.records, late.pending) == ("2026-03", 40, 40)
    assert set(late.samples) <= {r[0] for r in late_rows} and len(late.samples) == 10
    # the next cycle reports them: a finding with the count, samples and what to do
    apr = store.run_cycle("ACME", "2026-04", plan)
    assert apr.status == "invoiced" and apr.records_in + apr.events == 100  # April's own records only
    (f,) = [f for f in apr.findings if f.code == "late_records"]
    assert f.severity == "warning" and f.count == 40 and len(f.samples) == 10
    assert "icdsl rerate --partner ACME --from 2026-03-01 --to 2026-03-31" in f.message
    # and so does `icdsl cycle status`
    monkeypatch.chdir(tmp_path)
    out = cli("cycle", "status", "ACME", "--db", db_url, "--data", str(tmp_path / "data"))
    assert "late records" in out and "40 record(s) of 2026-03 (finalized)" in out and "icdsl rerate" in out
    # rerate with the same rules bills them (and nothing else) as a correction, once
    rep = store.rerate("ACME", "2026-03-01", "2026-03-31", plan)
    (corr,) = rep.corrections
    assert corr.records == 340 and corr.adjustments
    fresh, _ = fresh_run(tmp_path, plan, prog, [tmp_path / "in" / "march.csv", write(tmp_path / "in" / "late.csv",
                                                                                       late_rows)])
    adj: dict[str, Decimal] = defaultdict(Decimal)
    for a in store.adjustments():
        adj[a.currency] += a.amount
    assert {c: fresh[c] - before[c] for c in fresh} == dict(adj)
    assert sum(a.new_count - a.old_count for a in store.adjustments() if not a.charge_key) == 40
    (late,) = store.late_records("ACME")
    assert late.pending == 0
    again = store.rerate("ACME", "2026-03-01", "2026-03-31", plan)
    assert again.corrections[0].correction_id is None
    apr = store.run_cycle("ACME", "2026-04", plan, rerate=True)
    assert not [f for f in apr.findings if f.code == "late_records"]


def test_records_ingested_between_the_run_and_finalization_are_late_records(store, tmp_path):
    plan, prog = rules(tmp_path, None, "rules")
    store.load_plan(plan, prog)
    store.ingest(write(tmp_path / "in" / "march.csv", traffic(3, 300, "C")), None, plan)
    mar = store.run_cycle("ACME", "2026-03", plan)
    # more March records arrive while March is invoiced: finalizing without a rerun does not
    # bill them, so they are late records, reported and billed by a rerate like any other
    store.ingest(write(tmp_path / "in" / "more.csv", traffic(3, 12, "X")), None, plan)
    fin = store.finalize_cycle("ACME", "2026-03")
    assert fin.records_in == mar.records_in == 300
    (late,) = store.late_records("ACME")
    assert (late.cycle, late.records, late.pending) == ("2026-03", 12, 12)
    store.rerate("ACME", "2026-03-01", "2026-03-31", plan)
    (late,) = store.late_records("ACME")
    assert late.pending == 0
    adjusted = [a for a in store.adjustments() if not a.charge_key]
    assert sum(a.new_count - a.old_count for a in adjusted) == 12


def test_a_window_that_leaves_records_on_a_version_no_longer_in_force_says_so(store, tmp_path):
    plan1, prog1 = rules(tmp_path, None, "rules")
    store.load_plan(plan1, prog1)
    store.ingest(write(tmp_path / "in" / "march.csv", traffic(3, 300, "C")), None, plan1)
    store.run_cycle("ACME", "2026-03", plan1)
    store.finalize_cycle("ACME", "2026-03")
    plan2, prog2 = rules(tmp_path, "0.0087", "rules2")
    rep = store.rerate("ACME", "2026-03-01", "2026-03-31", plan2, destination="336", program=prog2)
    (warning,) = rep.corrections[0].warnings
    assert 'stay rated by "ACME deal" v1' in warning and "--from 2026-03-01 --to 2026-03-31" in warning
    assert "warning: " in str(rep)


def test_corrections_of_corrections_add_up_to_a_fresh_run(store, tmp_path):
    """A first, partial rerate (half the month, French mobiles) and then the whole month: the
    second corrects the lines the first added too; all adjustments together are what a fresh
    run of the corrected month bills minus what was billed, and a third changes nothing."""
    plan1, prog1 = rules(tmp_path, None, "rules")
    store.load_plan(plan1, prog1)
    march = write(tmp_path / "in" / "march.csv", traffic(3, 900, "C"))
    store.ingest(march, None, plan1)
    mar = store.run_cycle("ACME", "2026-03", plan1)
    store.finalize_cycle("ACME", "2026-03")
    before = billed(store, mar.cycle_id)
    plan2, prog2 = rules(tmp_path, "0.0087", "rules2")
    first = store.rerate("ACME", "2026-03-01", "2026-03-15", plan2, destination="336", program=prog2)
    assert first.corrections[0].adjustments
    second = store.rerate("ACME", "2026-03-01", "2026-03-31", plan2)
    (corr,) = second.corrections
    assert corr.adjustments and not corr.warnings
    new_keys = {a.charge_key for a in store.adjustments() if a.charge_key and a.correction_id == first.corrections[0].correction_id
                and "|v2|" in a.charge_key}
    assert new_keys and new_keys <= {a.charge_key for a in store.adjustments()
                                     if a.correction_id == corr.correction_id}
    fresh, _ = fresh_run(tmp_path, plan2, prog2, [march])
    adj: dict[str, Decimal] = defaultdict(Decimal)
    for a in store.adjustments():
        adj[a.currency] += a.amount
    assert {c: fresh[c] - before[c] for c in fresh} == dict(adj)
    assert store.rerate("ACME", "2026-03-01", "2026-03-31", plan2).corrections[0].correction_id is None


YEARLY = """  tiered "Yearly minutes" graduated on minutes per year {
    from 0: 0.0010 EUR per minute
    from 1200: 0.0004 EUR per minute
  }, of outbound voice
"""


def test_later_cycles_read_the_corrected_period_as_history(store, tmp_path):
    """A tier per year: March's late records, billed by a correction, count in the year to date
    of April as a fresh run of both months counts them (1,126 minutes billed in March, 1,274
    with the late records: the 1,200 minutes tier is crossed in March, not in April)."""
    plan, prog = rules(tmp_path, None, "rules", YEARLY)
    store.load_plan(plan, prog)
    march, late_rows = traffic(3, 300, "C"), traffic(3, 40, "L")
    files = [write(tmp_path / "in" / "march.csv", march), write(tmp_path / "in" / "april.csv",
                                                                traffic(4, 100, "D") + late_rows)]

    def april_tier(st) -> Decimal:
        apr = st.cycle("ACME", "2026-04")
        return sum((c.amount for c in st.charge_lines(apr.id) if c.charge_name == "Yearly minutes"), Decimal(0))

    def month_by_month(st, *, rerate: bool):
        st.load_plan(plan, prog)
        st.ingest(files[0], None, plan)
        st.run_cycle("ACME", "2026-03", plan)
        st.finalize_cycle("ACME", "2026-03")
        st.ingest(files[1], None, plan)
        if rerate:
            st.rerate("ACME", "2026-03-01", "2026-03-31", plan)
        st.run_cycle("ACME", "2026-04", plan)
        return april_tier(st)

    corrected = month_by_month(store, rerate=True)
    uncorrected = open_store(f"sqlite:///{tmp_path / 'late.db'}", data_dir=tmp_path / "late-data")
    try:
        without = month_by_month(uncorrected, rerate=False)
    finally:
        uncorrected.close()
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}", data_dir=tmp_path / "fresh-data")
    try:
        fresh.load_plan(plan, prog)
        fresh.ingest(write(tmp_path / "in" / "all-march.csv", march + late_rows), None, plan)
        fresh.ingest(write(tmp_path / "in" / "only-april.csv", traffic(4, 100, "D")), None, plan)
        fresh.run_cycle("ACME", "2026-03", plan)
        fresh.run_cycle("ACME", "2026-04", plan)
        expected = april_tier(fresh)
    finally:
        fresh.close()
    assert corrected == expected != without
    assert (expected, without) == (Decimal("0.14"), Decimal("0.18"))  # 1.37 - 1.23; 1.31 - 1.13


def test_kept_records_are_summed_as_if_rated_now(tmp_path):
    """The engine's input for a correction of part of a period: records kept with the rating
    and record charges they were billed with (``CycleInputs.kept``) give the same lines, charge
    lines, counts and drafts as rating them all now (the same rules: the same ratings)."""
    bench = _bench()
    project, prefixes = bench.make_project(tmp_path / "project")
    (path,) = bench.make_traffic(tmp_path / "traffic", prefixes, 20_000, 1)
    with contextlib.chdir(project):
        plan, _program, diags = build(["bench.icd"])
        assert plan is not None, [str(d) for d in diags]
    records = pq.read_table(path)
    mine = records.filter(pc.equal(records.column("partner"), "P003"))
    half = mine.num_rows // 2
    whole = run(CycleInputs.of(plan, "P003", "2026-03", [(7, mine.slice(0, half)), (8, mine.slice(half))]))
    rated = whole.sinks.rated.table()
    kept = rated.filter(pc.is_in(rated.column("id"), value_set=mine.slice(0, half).column("id")))
    charges = whole.sinks.record_charges.table()
    kept_charges = None if charges is None else \
        charges.filter(pc.is_in(charges.column("id"), value_set=kept.column("id")))
    part = run(CycleInputs.of(plan, "P003", "2026-03", [(8, mine.slice(half))], kept=kept,
                              kept_charges=kept_charges))
    assert kept.num_rows and part.counts.rated == whole.counts.rated and not part.counts.problems()
    assert part.counts.by_batch == whole.counts.by_batch and part.daily == whole.daily

    def lines(result):
        return sorted((g.agreement_hash, g.group_key, g.count, g.units, g.amount) for g in result.lines)

    assert lines(part) == lines(whole) and part.totals == whole.totals
    assert sorted((c.key, c.amount) for c in part.charge_lines) == sorted((c.key, c.amount) for c in whole.charge_lines)
    assert [i.total for i in part.drafts.invoices] == [i.total for i in whole.drafts.invoices]
    assert part.sinks.rated.table().num_rows == rated.num_rows
