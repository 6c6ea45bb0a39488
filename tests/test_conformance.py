"""Conformance with the rating and billing engines a team migrates from (issue 16): tariffs and
expected amounts taken from the test suites of CGRateS (telecom rating), Lago and Kill Bill
(usage and subscription billing), translated into icdsl ``example`` blocks.

- ``tests/conformance/*.icd``: one file per engine; every example names the engine's test it
  comes from, and must agree to the cent. ``icdsl test`` runs them (record examples with both
  executors, which must agree on every field); here they also run as one batch through both
  executors, and per file the count of cases is pinned so that the suite cannot shrink unseen.
- ``tests/conformance_pending/*.icd``: cases icdsl cannot write today (or that another branch
  brings), each with the reason in its header; they are strict xfails, so the day one passes the
  mark must go (and the case moves to ``tests/conformance``).

docs/conformance.md lists every case and the conventions where the engines differ."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import ROOT
from typer.testing import CliRunner

from icdsl.cli.main import app
from icdsl.cycle.examples import report, run_examples
from icdsl.plan.compiler import build
from icdsl.rating.examples import example_record
from icdsl.testing import rate_both

SUITE = ROOT / "tests" / "conformance"
PENDING = ROOT / "tests" / "conformance_pending"

# cases per engine file: CGRateS record examples, Lago and Kill Bill cycle examples (and Lago's
# dynamic model, a record example)
CASES = {"cgrates_rating.icd": 27, "lago_charges.icd": 37, "killbill_usage.icd": 22}

# why each pending case fails today (strict: a pending case that passes must leave this list)
PENDING_REASONS = {
    "lago_prorated_units.icd":
        "not expressible: units of a recurring metric prorated by the day each was added",
}


def _plan(path: Path):
    plan, _program, diags = build([path], root=path.parent)
    errors = [str(d) for d in diags if d.is_error]
    assert plan is not None and not errors, errors
    return plan


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_case_agrees_to_the_cent(name):
    plan = _plan(SUITE / name)
    results = run_examples(plan)
    assert len(results) == CASES[name]
    failed = [r for r in results if not r.ok]
    assert not failed, report(failed)


# the cases that agree only because their tiers are written by their ends (`up to N`, as Lago and
# Kill Bill write them); written with today's default (`from N`) they differ (docs/conformance.md)
TIER_END_CASES = {
    "lago_charges.icd": {
        "graduated_service_spec.rb: does not apply the flat amount for 0",
        "graduated_service_spec.rb: applies all unit amount for top bound",
        "volume_service_spec.rb: when aggregation is 0, no flat amount",
        "volume_service_spec.rb: when aggregation is the limit of the first range",
        "volume_service_spec.rb: when aggregation is the upper limit of the second range",
        "graduated_percentage_service_spec.rb: when aggregation is 0",
        "graduated_percentage_service_spec.rb: when aggregation is 10",
    },
    "killbill_usage.icd": {
        "TestContiguousIntervalConsumableInArrear.testComputeBilledUsageWith_TOP_TIER: 1000 units (tier 1)",
        "TestContiguousIntervalConsumableInArrear.testComputeBilledUsageWith_TOP_TIER: 101000 units (tier 2)",
        "TestContiguousIntervalCapacityInArrear.testComputeBilledUsage: unit1 100, unit2 1000 -> tier 1, 10",
    },
}


def _tiers_by_starts(text: str) -> str:
    """The same tiers written by their starts: `up to A: X`, `up to B: Y`, `above B: Z` become
    `from 0: X`, `from A: Y`, `from B: Z` (the other convention of docs/charges.md)."""
    out, start = [], "0"
    for line in text.splitlines():
        m = re.match(r"(\s+)(up to|above) ([\d_]+): (.*)", line)
        if m:
            out.append(f"{m.group(1)}from {start if m.group(2) == 'up to' else m.group(3)}: {m.group(4)}")
            start = m.group(3) if m.group(2) == "up to" else "0"
            continue
        if line.strip().startswith("}"):
            start = "0"
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("name", sorted(TIER_END_CASES))
def test_the_tier_bound_convention_is_what_makes_these_cases_agree(name, tmp_path):
    """Written by their starts, exactly the cases at a tier's end (or at zero, with a flat fee)
    differ: the convention is the switch, and every other case bills the same either way."""
    path = tmp_path / name
    path.write_text(_tiers_by_starts((SUITE / name).read_text(encoding="utf-8")), encoding="utf-8")
    differ = {r.example.name for r in run_examples(_plan(path)) if not r.ok}
    assert differ == TIER_END_CASES[name]


# the CGRateS cases that agree only because the agreement rounds as the rating plan does
# (`*up` to 4 decimals: `rounding up to 4 decimals`); with icdsl's default (6 decimals, half up)
ROUNDING_CASES = {"tutorial_local_test.go TestTutLocalGetCosts: 1001 -> 1002, 85 s costs 0.6417",
                  "tutorial_local_test.go TestTutLocalGetCosts: 1001 -> 1002, 85 s costs 0.6417 (one rating plan)"}


def test_the_rounding_convention_is_what_makes_this_case_agree(tmp_path):
    text = (SUITE / "cgrates_rating.icd").read_text(encoding="utf-8")
    assert text.count("  rounding up to 4 decimals\n") == 7  # every agreement
    path = tmp_path / "cgrates_rating.icd"
    path.write_text(text.replace("  rounding up to 4 decimals\n", ""), encoding="utf-8")
    differ = {r.example.name for r in run_examples(_plan(path)) if not r.ok}
    assert differ == ROUNDING_CASES


def test_the_suite_lists_every_file():
    assert sorted(p.name for p in SUITE.glob("*.icd")) == sorted(CASES)
    assert sorted(p.name for p in PENDING.glob("*.icd")) == sorted(PENDING_REASONS)


def test_the_rating_cases_as_one_batch_agree_with_both_executors():
    """All the record examples of the CGRateS file rated together: the batch executor groups
    records by agreement, band and row, so one batch exercises what one-record batches do not."""
    plan = _plan(SUITE / "cgrates_rating.icd")
    # each partner's services belong to one agreement, so the whole plan rates each record as
    # its example (narrowed to its agreement) does
    records = [example_record(plan, ex) for ex in plan.examples]  # data sessions carry "data"
    cmp = rate_both(plan, records)
    assert len(records) == CASES["cgrates_rating.icd"]
    assert not cmp.differences, cmp.differences


def test_the_documentation_lists_every_case():
    doc = (ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")
    for name in CASES:
        plan = _plan(SUITE / name)
        for ex in [*plan.examples, *plan.cycle_examples]:
            assert f"| {ex.name} |" in doc, ex.name
    for name in PENDING_REASONS:
        assert f"`{name}`" in doc, name


def test_icdsl_test_runs_the_suite():
    result = CliRunner().invoke(app, ["test", str(SUITE)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"{sum(CASES.values())} passed, 0 failed")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=why))
                                  for n, why in sorted(PENDING_REASONS.items())])
def test_pending_case(name):
    path = PENDING / name
    plan, _program, diags = build([path], root=path.parent)
    assert plan is not None and not [d for d in diags if d.is_error], "does not compile"
    results = run_examples(plan)
    assert results and all(r.ok for r in results), report([r for r in results if not r.ok])
