# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Amending agreements: a later version amends an earlier one from its own first day
(``amends v1``) or ends it early (``ends v1 on DATE``), whatever end date the earlier one was
written with. The earlier version's text stays as signed (and as loaded); the plan holds it in
force up to the amendment; both executors rate each record by the version in force on its local
start; a cycle whose period holds the change bills each part under its version; the store loads
the amendment next to the loaded version and refuses it over finalized cycles, pointing at
``icdsl rerate``.

Regressions named after what they broke: "icdsl load refuses a new version of a fixed-term
agreement, and the advice its message gives is refused too" (issue 10, item 4).
"""

from __future__ import annotations

import contextlib
import tempfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_billing_store import count, db_url, make_plan, store, write_csv  # noqa: F401 - the fixtures
from test_rating_batch import assert_same
from typer.testing import CliRunner

from icdsl.billing import models as M
from icdsl.billing.errors import AgreementVersionConflict, RetroactiveChange
from icdsl.cli.main import app
from icdsl.cycle.examples import report, run_examples
from icdsl.plan.compiler import build

PARTNER = """partner ORFR "Orange France" {
  currency EUR
  timezone "Europe/Paris"
}
"""
V1 = """agreement "ORFR voice" v1 with ORFR effective 2026-01-01 .. 2026-12-31 {
  outbound voice {
    price 0.0100 EUR per minute
  }
  recurring "Port" 310.00 EUR monthly flat, prorate daily
  commit "Minimum spend" 62.00 EUR per month, prorate daily, shortfall charged, of outbound voice
  one_time "Early termination" 500.00 EUR on termination
}
"""
V2_BODY = """{
  outbound voice {
    price 0.0080 EUR per minute
  }
  recurring "Port" 620.00 EUR monthly flat, prorate daily
  commit "Minimum spend" 31.00 EUR per month, prorate daily, shortfall charged, of outbound voice
}
"""
V2_AMENDS = 'agreement "ORFR voice" v2 with ORFR effective 2026-03-16 .. 2026-12-31 amends v1 ' + V2_BODY
V2_OVERLAPS = 'agreement "ORFR voice" v2 with ORFR effective 2026-03-16 .. 2026-12-31 ' + V2_BODY
V2_ENDS = 'agreement "ORFR voice" v2 with ORFR ends v1 on 2026-03-15\n'

# March 2026 in Paris is UTC+1 until the 29th: 22:59:59 UTC on the 15th is the last second of
# v1, 23:00:00 UTC the first of v2.
TRAFFIC = [
    ("A1", "ORFR", "outbound", "voice", "331", "33612345678", "2026-03-04T08:15:00Z", 600),
    ("A2", "ORFR", "outbound", "voice", "331", "33612345678", "2026-03-10T08:15:00Z", 600),
    ("A3", "ORFR", "outbound", "voice", "331", "33612345678", "2026-03-15T22:59:59Z", 600),
    ("A4", "ORFR", "outbound", "voice", "331", "33612345678", "2026-03-15T23:00:00Z", 600),
    ("A5", "ORFR", "outbound", "voice", "331", "33612345678", "2026-03-28T10:00:00Z", 600),
    ("B1", "ORFR", "outbound", "voice", "331", "33612345678", "2026-04-02T10:00:00Z", 1200),
]


def plan_of(tmp_path, text: str):
    return make_plan(tmp_path, PARTNER + text)[0]


# --------------------------------------------------------------------------- the plan


def test_amends_cuts_the_earlier_version_whatever_its_end_date(tmp_path):
    plan = plan_of(tmp_path, V1 + V2_AMENDS)
    v1, v2 = sorted(plan.agreements, key=lambda a: a.version)
    assert (v1.effective_from, v1.effective_to, v1.written_to) == (date(2026, 1, 1), date(2026, 3, 15),
                                                                     date(2026, 12, 31))
    assert v1.amendment.by == 2 and not v1.amendment.ends and v1.amendment.source_hash == v2.source_hash
    assert v1.terminated_on is None
    assert (v2.effective_from, v2.effective_to, v2.amendment) == (date(2026, 3, 16), date(2026, 12, 31), None)
    # v1's own text, hence its hash, is the same as before the amendment was written
    assert v1.source_hash == plan_of(tmp_path, V1).agreements[0].source_hash


def test_ends_terminates_the_earlier_version(tmp_path):
    plan = plan_of(tmp_path, V1 + V2_ENDS)
    (v1,) = plan.agreements  # a version that only ends another has no terms of its own
    assert (v1.effective_to, v1.written_to, v1.terminated_on) == (date(2026, 3, 15), date(2026, 12, 31),
                                                                  date(2026, 3, 16))
    assert v1.amendment.ends and v1.amendment.by == 2 and len(v1.amendment.source_hash) == 64


def record(id_: int, start: str) -> dict:
    return dict(id=id_, partner="ORFR", direction="outbound", service="voice", a_number="331",
                b_number="33612345678", start=datetime.fromisoformat(start).replace(tzinfo=UTC),
                duration_s=600, volume=None, units=None)


@pytest.mark.parametrize("amendment", ["amends", "ends"])
def test_both_executors_rate_each_record_under_the_version_in_force(tmp_path, amendment):
    plan = plan_of(tmp_path, V1 + (V2_AMENDS if amendment == "amends" else V2_ENDS))
    records = [record(1, "2026-03-15T22:59:59"), record(2, "2026-03-15T23:00:00"), record(3, "2026-12-31T12:00:00")]
    rated, rejects = assert_same(plan, records)
    got = {r["id"]: (r["agreement_version"], r["amount"]) for r in rated.to_pylist()}
    if amendment == "amends":
        assert got == {1: (1, Decimal("0.100000")), 2: (2, Decimal("0.080000")), 3: (2, Decimal("0.080000"))}
    else:
        assert got == {1: (1, Decimal("0.100000"))}
        assert rejects["reason"].to_pylist() == ["outside_agreement_period"] * 2


@settings(max_examples=25, deadline=None)
@given(day=st.dates(date(2026, 1, 2), date(2026, 12, 31)),
       offsets=st.lists(st.integers(-2 * 86400, 2 * 86400), min_size=1, max_size=6))
def test_executors_agree_on_any_amendment_date(day, offsets):
    """Whatever the amendment's date, both executors agree on every record, and a record is rated
    by v1 exactly when its local (Paris) start date is before the amendment's first day."""
    with tempfile.TemporaryDirectory() as d:
        plan = plan_of(Path(d), V1 + V2_AMENDS.replace("2026-03-16", day.isoformat()))
    paris = ZoneInfo("Europe/Paris")
    midnight = datetime(day.year, day.month, day.day, tzinfo=paris).astimezone(UTC).replace(tzinfo=None)
    records = [record(i, (midnight + timedelta(seconds=o)).isoformat()) for i, o in enumerate(offsets)]
    rated, rejects = assert_same(plan, records)
    for r in rated.to_pylist():
        local = r["start"].astimezone(paris).date()
        assert r["agreement_version"] == (1 if local < day else 2), (r["start"], day)
    assert all(reason == "outside_agreement_period" for reason in rejects["reason"].to_pylist())


def test_the_example_amendments_pass():
    root = Path(__file__).resolve().parent.parent
    plan, _program, diags = build([root / "examples" / "charges" / "amendment.icd"])
    assert plan is not None, [str(d) for d in diags]
    results = run_examples(plan)
    assert len(results) == 3 and all(r.ok for r in results), report(results)


# --------------------------------------------------------------------------- the user's way, CLI


def test_user_follows_the_messages_from_refusal_to_a_billed_amendment(tmp_path):
    """The report: v1 signed with a fixed end; a v2 from 16 March. `icdsl check` says how to write
    it; the advice of `icdsl load` (after the user edited v1's end) is written as told and loads."""
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'icdsl.db'}"
    rules = tmp_path / "rules.icd"
    with contextlib.chdir(tmp_path):
        rules.write_text(PARTNER + V1, encoding="utf-8")
        res = runner.invoke(app, ["load", "rules.icd", "--db", db])
        assert res.exit_code == 0, res.output

        rules.write_text(PARTNER + V1 + V2_OVERLAPS, encoding="utf-8")
        res = runner.invoke(app, ["check", "rules.icd"])
        assert res.exit_code == 1 and "E303" in res.output
        assert "write 'effective 2026-03-16 .. 2026-12-31 amends v1' on v2" in res.output

        # the old advice: end v1 the day before; the store says how to write it instead
        rules.write_text(PARTNER + V1.replace(".. 2026-12-31", ".. 2026-03-15") + V2_OVERLAPS, encoding="utf-8")
        res = runner.invoke(app, ["load", "rules.icd", "--db", db])
        assert res.exit_code == 1
        assert ("put v1 back as loaded ('effective 2026-01-01 .. 2026-12-31') and write 'amends v1' on v2: "
                "'effective 2026-03-16 .. 2026-12-31 amends v1'") in res.output

        rules.write_text(PARTNER + V1 + V2_AMENDS, encoding="utf-8")
        res = runner.invoke(app, ["load", "rules.icd", "--db", db])
        assert res.exit_code == 0, res.output
        assert "amended: ORFR voice v1 in force until 2026-03-15, then ORFR voice v2" in res.output
        res = runner.invoke(app, ["plan", "rules.icd"])
        assert "amended by v2 from 2026-03-16" in res.output and "(written end: 2026-12-31)" in res.output


# --------------------------------------------------------------------------- the store


def test_load_amendment_of_a_loaded_fixed_term_version(store, tmp_path):
    p1, g1 = make_plan(tmp_path, PARTNER + V1)
    store.load_plan(p1, g1)
    (row1,) = store.agreement_versions()
    p2, g2 = make_plan(tmp_path, PARTNER + V1 + V2_AMENDS)
    rep = store.load_plan(p2, g2)
    assert rep.agreements_added == ["ORFR voice v2"] and rep.agreements_unchanged == ["ORFR voice v1"]
    assert rep.agreements_amended == ["ORFR voice v1 in force until 2026-03-15, then ORFR voice v2"]
    rows = store.agreement_versions("ORFR voice")
    assert [(r.version, r.revision, r.effective_from, r.effective_to) for r in rows] == [
        (1, 0, date(2026, 1, 1), date(2026, 12, 31)), (2, 0, date(2026, 3, 16), date(2026, 12, 31))]
    assert rows[0].content_hash == row1.content_hash and rows[0].loaded_at == row1.loaded_at
    assert rows[1].amends_id == row1.id and "amends v1" in rows[1].source_text
    assert not store.load_plan(p2, g2).changed


def test_load_ending_of_a_loaded_version(store, tmp_path):
    p1, g1 = make_plan(tmp_path, PARTNER + V1)
    store.load_plan(p1, g1)
    p2, g2 = make_plan(tmp_path, PARTNER + V1 + V2_ENDS)
    rep = store.load_plan(p2, g2)
    assert rep.agreements_added == ["ORFR voice v2"]
    assert rep.agreements_amended == ["ORFR voice v1 ends on 2026-03-15 (by v2)"]
    v1, v2 = store.agreement_versions("ORFR voice")
    # the ending version is in force on no day: from the day after v1's new last day, to that day
    assert (v2.version, v2.effective_from, v2.effective_to, v2.amends_id) == (2, date(2026, 3, 16),
                                                                              date(2026, 3, 15), v1.id)
    assert v2.source_text == V2_ENDS.strip() and v2.content_hash == p2.agreements[0].amendment.source_hash
    assert v1.effective_to == date(2026, 12, 31)
    assert not store.load_plan(p2, g2).changed


def test_changed_text_of_a_loaded_version_says_how_to_amend_it(store, tmp_path):
    p1, g1 = make_plan(tmp_path, PARTNER + V1)
    store.load_plan(p1, g1)
    # v1 ended early by editing it, with no successor: the advice is an `ends` version
    p2, g2 = make_plan(tmp_path, PARTNER + V1.replace(".. 2026-12-31", ".. 2026-03-15"))
    with pytest.raises(AgreementVersionConflict) as e:
        store.load_plan(p2, g2)
    assert "add 'agreement \"ORFR voice\" v2 with ORFR ends v1 on 2026-03-15'" in str(e.value)
    assert "'agreement \"ORFR voice\" v2 with ORFR effective 2026-03-16 .. amends v1 { ... }'" in str(e.value)
    # ... which loads, written as told
    p3, g3 = make_plan(tmp_path, PARTNER + V1 + 'agreement "ORFR voice" v2 with ORFR ends v1 on 2026-03-15\n')
    assert store.load_plan(p3, g3).agreements_added == ["ORFR voice v2"]


def _bill_march_under_v1(store, tmp_path):
    p1, g1 = make_plan(tmp_path, PARTNER + V1)
    store.load_plan(p1, g1)
    store.ingest(write_csv(tmp_path / "in" / "t.csv", TRAFFIC), None, p1)
    store.run_cycle("ORFR", "2026-03", p1)
    store.finalize_cycle("ORFR", "2026-03")


@pytest.mark.parametrize("second", [V2_AMENDS, V2_ENDS], ids=["amends", "ends"])
def test_amendment_over_a_finalized_cycle_is_refused_and_rerate_corrects_it(store, tmp_path, second):
    _bill_march_under_v1(store, tmp_path)
    p2, g2 = make_plan(tmp_path, PARTNER + V1 + second)
    before = count(store, M.AgreementVersion)
    with pytest.raises(RetroactiveChange) as e:
        store.load_plan(p2, g2)
    msg = str(e.value)
    assert "ORFR's cycle 2026-03 (2026-03-01 .. 2026-03-31) is finalized and was billed under v1" in msg
    assert "run `icdsl rerate --partner ORFR --from 2026-03-16 --to 2026-03-31 --rules rules.icd`" in msg
    assert "Or let the change start on 2026-04-01" in msg
    assert count(store, M.AgreementVersion) == before  # nothing written
    # icdsl rerate loads it and bills the differences of the finalized days on the next cycle
    rep = store.rerate("ORFR", "2026-03-16", "2026-03-31", p2, program=g2)
    (corr,) = rep.corrections
    assert corr.target == "2026-04" and corr.records == 2
    assert count(store, M.AgreementVersion) == before + 1


def test_an_amendment_after_the_finalized_days_loads(store, tmp_path):
    _bill_march_under_v1(store, tmp_path)
    later = V2_AMENDS.replace("2026-03-16", "2026-04-01")
    p2, g2 = make_plan(tmp_path, PARTNER + V1 + later)
    assert store.load_plan(p2, g2).agreements_amended == ["ORFR voice v1 in force until 2026-03-31, then ORFR voice v2"]


# --------------------------------------------------------------------------- the worked example


def lines_of(store, cycle_id: int) -> list[tuple[str, Decimal]]:
    (inv,) = store.invoices(cycle_id)
    return sorted((ln.description, ln.amount) for ln in store.invoice_lines(inv.id))


def test_cycle_bills_each_part_under_its_version_to_the_cent(store, tmp_path):
    """v1 (2026-01-01 .. 2026-12-31, loaded and billed for February) amended by v2 from 16 March.

    March, 1-15 under v1: calls A1, A2, A3 (10 minutes each at 0.0100) = 0.30; Port 310.00 x
    15/31 = 150.00; Minimum spend 62.00 x 15/31 = 30.00 committed, 0.30 reached: 29.70.
    March, 16-31 under v2: calls A4, A5 (10 minutes each at 0.0080) = 0.16; Port 620.00 x 16/31 =
    320.00; Minimum spend 31.00 x 16/31 = 16.00 committed, 0.16 reached: 15.84.
    Total 0.30 + 0.16 + 150.00 + 320.00 + 29.70 + 15.84 = 516.00.
    April under v2 only: B1, 20 minutes at 0.0080 = 0.16; Port 620.00; 31.00 - 0.16 = 30.84.
    """
    p1, g1 = make_plan(tmp_path, PARTNER + V1)
    store.load_plan(p1, g1)
    store.ingest(write_csv(tmp_path / "in" / "t.csv", TRAFFIC), None, p1)
    feb = store.run_cycle("ORFR", "2026-02", p1)
    store.finalize_cycle("ORFR", "2026-02")
    assert lines_of(store, feb.cycle_id) == [
        ("Minimum spend: shortfall 62.00 EUR of 62.00 EUR committed (0.00 EUR reached), 2026-02-01..2026-02-28",
         Decimal("62.00")),
        ("Port: the agreement, 2026-02-01..2026-02-28", Decimal("310.00"))]

    p2, g2 = make_plan(tmp_path, PARTNER + V1 + V2_AMENDS)
    store.load_plan(p2, g2)  # February is finalized, but the amendment starts after it
    mar = store.run_cycle("ORFR", "2026-03", p2)
    assert (mar.rated, mar.rejected) == (5, 0)
    (inv,) = store.invoices(mar.cycle_id)
    got = store.invoice_lines(inv.id)
    by_version = {v.content_hash: v.version for v in store.agreement_versions("ORFR voice")}
    table = sorted((by_version[ln.agreement_hash], ln.description.split(":")[0], ln.quantity, ln.amount)
                   for ln in got)
    assert table == [
        (1, "Minimum spend", Decimal(1), Decimal("29.70")),
        (1, "Port", Decimal(1), Decimal("150.00")),
        (1, "outbound voice", Decimal(1800), Decimal("0.30")),  # quantities of traffic lines in seconds
        (2, "Minimum spend", Decimal(1), Decimal("15.84")),
        (2, "Port", Decimal(1), Decimal("320.00")),
        (2, "outbound voice", Decimal(1200), Decimal("0.16")),
    ]
    assert "15/31 days" in next(ln.description for ln in got if ln.amount == Decimal("150.00"))
    assert "16/31 days" in next(ln.description for ln in got if ln.amount == Decimal("320.00"))
    assert inv.subtotal == Decimal("516.00") == sum(ln.amount for ln in got)
    # each call under the version in force on its local start (A3: 23:59:59 on the 15th in Paris)
    rated = {r["id"]: r["agreement_version"] for r in store.rated(mar.cycle_id).to_pylist()}
    assert rated == {"A1": 1, "A2": 1, "A3": 1, "A4": 2, "A5": 2}

    apr = store.run_cycle("ORFR", "2026-04", p2)
    assert lines_of(store, apr.cycle_id) == [
        ("Minimum spend: shortfall 30.84 EUR of 31.00 EUR committed (0.16 EUR reached), 2026-04-01..2026-04-30",
         Decimal("30.84")),
        ("Port: the agreement, 2026-04-01..2026-04-30", Decimal("620.00")),
        ("outbound voice", Decimal("0.16"))]


def test_cycle_of_a_version_ended_early_to_the_cent(store, tmp_path):
    """v1 ended on 15 March by v2: 1-15 March billed under v1 (A1-A3 0.30, Port 150.00, Minimum
    spend 30.00 - 0.30 = 29.70) with its termination fee (500.00); later calls are outside the
    agreement; no cycle of April bills anything under it."""
    plan, program = make_plan(tmp_path, PARTNER + V1 + V2_ENDS)
    store.load_plan(plan, program)
    store.ingest(write_csv(tmp_path / "in" / "t.csv", TRAFFIC), None, plan)
    mar = store.run_cycle("ORFR", "2026-03", plan, accept=("all",))
    assert (mar.rated, mar.rejected) == (3, 2)
    got = lines_of(store, mar.cycle_id)
    assert [(d.split(":")[0], a) for d, a in got] == [
        ("Early termination", Decimal("500.00")), ("Minimum spend", Decimal("29.70")),
        ("Port", Decimal("150.00")), ("outbound voice", Decimal("0.30"))]
    assert sum(a for _, a in got) == Decimal("680.00")


def test_fee_billed_in_advance_before_an_amendment_is_corrected(store, tmp_path):
    """March (finalized under v1) billed v1's April port in advance: 300.00. v2 amends v1 from 16
    April (after the finalized days: it loads). April: v1 was due 300.00 x 15/30 = 150.00 of it, a
    correction of -150.00; v2's port 600.00 x 15/30 = 300.00 for April and 600.00 for May in
    advance: 750.00."""
    fee = 'recurring "Port" {} EUR monthly flat, prorate daily, in advance\n}}\n'
    v1 = ('agreement "ORFR voice" v1 with ORFR effective 2026-01-01 .. 2026-12-31 {\n'
          '  outbound voice { price 0.0100 EUR per minute }\n  ' + fee.format("300.00"))
    v2 = ('agreement "ORFR voice" v2 with ORFR effective 2026-04-16 .. 2026-12-31 amends v1 {\n'
          '  outbound voice { price 0.0080 EUR per minute }\n  ' + fee.format("600.00"))
    p1, g1 = make_plan(tmp_path, PARTNER + v1)
    store.load_plan(p1, g1)
    mar = store.run_cycle("ORFR", "2026-03", p1)
    store.finalize_cycle("ORFR", "2026-03")
    assert [a for _, a in lines_of(store, mar.cycle_id)] == [Decimal("300.00"), Decimal("300.00")]
    p2, g2 = make_plan(tmp_path, PARTNER + v1 + v2)
    store.load_plan(p2, g2)
    apr = store.run_cycle("ORFR", "2026-04", p2)
    assert lines_of(store, apr.cycle_id) == [
        ("Port: the agreement, 2026-04-01..2026-04-30, 15/30 days (actual)", Decimal("300.00")),
        ("Port: the agreement, 2026-05-01..2026-05-31", Decimal("600.00")),
        ("correction of Port: the agreement, 2026-04-01..2026-04-30, 15/30 days (actual): 300.00 billed, "
         "150.00 due", Decimal("-150.00"))]
