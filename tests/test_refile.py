"""Refile policies (`refile origin ZONE surcharge AMOUNT | reject | flag`) in both executors, the
store's cycle counting refile rejects, and intake rejecting a record whose partner and
from_partner disagree."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from icdsl.rating.batch import rate_batch_with_charges
from icdsl.rating.intake import read_records
from icdsl.rating.row import rate_record
from tests.test_billing_store import db_url, make_plan, store  # noqa: F401 (fixtures)
from tests.test_rating_batch import assert_same, table
from tests.test_transit import REFILE_RULES

REJECT_RULES = REFILE_RULES.replace(
    "refile origin EEA surcharge 0.0500 EUR per minute", "refile origin EEA reject"
)
FLAG_RULES = REFILE_RULES.replace(
    "refile origin EEA surcharge 0.0500 EUR per minute", "refile origin EEA flag"
)
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
# France and Germany are EEA; the US and Switzerland are not; no a_number cannot be shown in the zone
CALLERS = ["33612345678", "12125550100", "4915112345678", None, "41791234567", ""]


def records():
    return [
        {
            "id": i,
            "partner": "HUBA",
            "direction": "transit",
            "service": "voice",
            "a_number": a,
            "b_number": "442071234567",
            "start": START,
            "duration_s": 61,
        }
        for i, a in enumerate(CALLERS)
    ]


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    return {
        name: make_plan(tmp_path_factory.mktemp(name), text)[0]
        for name, text in (("reject", REJECT_RULES), ("flag", FLAG_RULES))
    }


def test_refile_reject_rejects_the_refiled_records_in_both_executors(plans):
    assert "refile origin EEA reject" in REJECT_RULES
    rated, rejects = assert_same(plans["reject"], records())
    assert rated.column("id").to_pylist() == [0, 2]
    got = {r["id"]: (r["reason"], r["detail"]) for r in rejects.to_pylist()}
    assert got == {
        1: (
            "refiled",
            "calling number 12125550100: outside EEA, the origin the route is declared for "
            "(refile origin EEA reject)",
        ),
        3: (
            "refiled",
            "no calling number (a_number): outside EEA, the origin the route is declared for "
            "(refile origin EEA reject)",
        ),
        4: (
            "refiled",
            "calling number 41791234567: outside EEA, the origin the route is declared for "
            "(refile origin EEA reject)",
        ),
        5: (
            "refiled",
            "no calling number (a_number): outside EEA, the origin the route is declared for "
            "(refile origin EEA reject)",
        ),
    }
    # the explanation says why, at the service
    r = rate_record(plans["reject"], records()[1], trace=True)
    assert r.reason == "refiled" and "refile origin EEA reject" in r.trace[-1].text
    ok = rate_record(plans["reject"], records()[0], trace=True)
    assert any("33612345678 is in EEA: not refiled" in s.text for s in ok.trace)


def test_refile_flag_rates_the_record_and_marks_it(plans):
    plan = plans["flag"]
    rated, rejects, charges = rate_batch_with_charges(plan, table(records()))
    assert rejects.num_rows == 0 and rated.num_rows == 6
    # the price is untouched: 2 minutes (61 s in 60/60) of UK fixed at 0.0150 for every caller
    assert set(rated.column("amount").to_pylist()) == {Decimal("0.030000")}
    flag = "Refile flag (origin outside EEA)"
    assert charges.select(["record", "charge", "amount"]).to_pylist() == [
        {"record": i, "charge": flag, "amount": Decimal("0E-6")} for i in (1, 3, 4, 5)
    ]
    row = [[(h.charge, h.amount) for h in rate_record(plan, r).surcharges] for r in records()]
    assert row == [[], [(flag, 0)], [], [(flag, 0)], [(flag, 0)], [(flag, 0)]]


def _load_transit_with_a_us_caller(billing_store, tmp_path, rules):
    """The transit month's first two records and T7, a call from a US number (outside the EEA)
    handed over by HUBA for TERMB; loaded and ingested with ``rules``; returns the plan."""
    from tests.test_transit import ROWS, write

    t7 = ("T7", "HUBA", "TERMB", "transit", "voice", "12125550100", "442071234567", "2026-03-20T08:00:00Z", 90)
    plan, program = make_plan(tmp_path, rules)
    billing_store.load_plan(plan, program)
    billing_store.ingest(write(tmp_path, [*ROWS[:2], t7]), None, plan)
    return plan


def test_a_flagged_record_is_counted_on_its_own_line(store, tmp_path):  # noqa: F811 (fixture)
    plan = _load_transit_with_a_us_caller(store, tmp_path, FLAG_RULES)
    orig = store.run_cycle("HUBA", "2026-03", plan)
    (inv,) = store.invoices(orig.cycle_id)
    lines = {ln.description: ln for ln in store.invoice_lines(inv.id)}
    flag = next(ln for d, ln in lines.items() if "Refile flag" in d)
    assert flag.record_count == 1 and flag.amount == 0
    # and the cycle reports it: rated, but to be reviewed
    (found,) = [f for f in orig.findings if f.code == "refile_flagged"]
    assert (found.severity, found.count, found.samples) == ("info", 1, ("T7",))
    assert "Refile flag (origin outside EEA)" in found.message
    assert inv.subtotal == sum(ln.amount for ln in lines.values())


def test_a_refile_reject_is_counted_by_the_cycle(store, tmp_path):  # noqa: F811 (fixture)
    plan = _load_transit_with_a_us_caller(store, tmp_path, REJECT_RULES)
    orig = store.run_cycle("HUBA", "2026-03", plan)
    term = store.run_cycle("TERMB", "2026-03", plan)
    # the originating side rejects T7; the terminating side (no refile rule) bills it
    assert (orig.records_in, orig.rated, orig.rejected) == (3, 2, 1)
    assert (term.rated, term.rejected) == (3, 0)
    (found,) = [f for f in orig.findings if f.code == "refiled"]
    assert found.count == 1 and found.samples == ("T7",)


def test_partner_and_from_partner_that_disagree_are_rejected(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(
        "id,partner,from_partner,to_partner,direction,service,b_number,start,duration_s\n"
        "A,HUBA,HUBA,TERMB,transit,voice,442071234567,2026-03-02T10:00:00Z,60\n"
        "B,HUBA,HUBB,TERMB,transit,voice,442071234567,2026-03-02T10:00:00Z,60\n"
        "C,HUBA,,TERMB,transit,voice,442071234567,2026-03-02T10:00:00Z,60\n",
        encoding="utf-8",
    )
    recs, rejects, counts = read_records(p)
    assert counts.read == 3 and counts.passed == 2 and counts.reconciles()
    assert recs.column("id").to_pylist() == ["A", "C"]
    assert rejects.select(["id", "reason", "detail"]).to_pylist() == [
        {
            "id": "B",
            "reason": "partner_mismatch",
            "detail": "partner 'HUBA' but from_partner 'HUBB': the record came from one partner",
        }
    ]


def test_the_refile_example_of_docs_routing_passes_icdsl_test(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from icdsl.cli.main import app

    text = (Path(__file__).parent.parent / "docs" / "routing.md").read_text(encoding="utf-8")
    section = text[text.index("## Refile") :]
    block = section[section.index("```icd\n") + 7 :]
    block = block[: block.index("```\n")]
    (tmp_path / "refile.icd").write_text(block, encoding="utf-8")
    res = CliRunner().invoke(app, ["test", str(tmp_path / "refile.icd")])
    assert res.exit_code == 0, res.output
    assert "3 passed, 0 failed" in res.output


def test_a_ported_numbers_update_changes_the_plans_sources_not_the_agreements_hash(tmp_path):
    import contextlib
    import shutil

    from icdsl.billing.base import plan_hash
    from icdsl.plan.compiler import build
    from tests.test_origin_rates import ORIGINS

    root = tmp_path / "origins"
    shutil.copytree(ORIGINS, root)

    def built():
        with contextlib.chdir(root):
            plan, _, diags = build(["."])
        assert plan is not None, [str(d) for d in diags]
        return plan

    before = built()
    ported = root / "numbers" / "india-ported.csv"
    ported.write_text(
        ported.read_text(encoding="utf-8").rstrip("\n") + "\n919820000099,JIO,\n", encoding="utf-8"
    )
    after = built()
    files = dict(after.sources)
    assert "numbers/india-ported.csv" in files and "numbers/india-ranges.csv" in files
    assert files["numbers/india-ported.csv"] != dict(before.sources)["numbers/india-ported.csv"]
    # the cycle's identity of the rules changes; the agreement version's does not (reference data)
    assert plan_hash(after) != plan_hash(before)
    assert {a.key: a.source_hash for a in after.agreements} == {
        a.key: a.source_hash for a in before.agreements
    }


def test_both_executors_agree_on_any_calling_number(plans):
    callers = [
        None,
        "",
        " ",
        "+33612345678",
        "33",
        "3",
        "4",
        "33612345678 ",
        "0033612345678",
        "354123",
        "4915112345678",
        "41791234567",
        "12125550100",
        "447700900123",
        "358401234567",
        "x33",
    ]
    recs = [
        {
            "id": i,
            "partner": "HUBA",
            "direction": "transit",
            "service": "voice",
            "a_number": a,
            "b_number": "442071234567",
            "start": START,
            "duration_s": 61,
        }
        for i, a in enumerate(callers)
    ]
    rated, rejects = assert_same(plans["reject"], recs)
    assert rated.num_rows and rejects.num_rows and set(rejects.column("reason").to_pylist()) == {"refiled"}
