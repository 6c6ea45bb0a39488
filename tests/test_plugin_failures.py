"""Broken plugins, each with the message a user sees: a plugin that raises (on import, in its
registration hook, while checking a rule, while evaluating a charge in either executor or in the
cycle), one written for another hook API version, and one registering a charge type name that a
built-in or another plugin already has. After each, the core still works."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest
from helpers import ROOT

from icdsl import plugins
from icdsl.charges.context import ChargeContext
from icdsl.charges.evaluate import evaluate_cycle
from icdsl.charges.lines import ChargeError
from icdsl.charges.periods import Days
from icdsl.plugins import PLUGIN_CHECK_FAILED, charge_types, make_plugin_manager, use_plugin_manager
from icdsl.testing import build_plan, check_rules

SLICES_SRC = ROOT / "plugins" / "icdsl-slices" / "src"
MARCH = Days(date(2026, 3, 1), date(2026, 4, 1))

FAULTY = """
    from icdsl.charges.evaluate import CycleChargeType, RecordChargeType
    from icdsl.hookspecs import hookimpl
    ICDSL_HOOK_API = 1

    class Flaky(CycleChargeType):
        name = "flaky"
        optional = ("fee", "fail")

        def check(self, node, checker):
            super().check(node, checker)
            if node.param("fail") is not None and node.param("fail").text == "check":
                raise KeyError("fee")

        def compile(self, node, compiler):
            if node.param("fail") is not None and node.param("fail").text == "compile":
                raise ValueError("no tariff for this slice")
            return super().compile(node, compiler)

        def evaluate(self, charge, ctx):
            return [1 / 0]

    class PerCall(RecordChargeType):
        name = "per_call"
        optional = ("fee",)

        def evaluate_record(self, charge, rec):
            raise RuntimeError("tariff service down (row)")

        def evaluate_batch(self, charge, batch):
            raise RuntimeError("tariff service down (batch)")

    @hookimpl
    def icdsl_charge_types():
        return [Flaky, PerCall]
"""

RULES = """partner ORFR "Orange France" {
  currency EUR
}

agreement "Deal" v1 with ORFR effective 2026-01-01 .. {
  outbound voice {
    price 0.0100 EUR per minute
  }

  %s
}
"""
RECORD = {"id": "1", "partner": "ORFR", "direction": "outbound", "service": "voice", "b_number": "33612345678",
          "start": "2026-03-04T09:15:00+00:00", "duration_s": 61}


def plugin_file(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def _forget_test_modules():
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("icdsl_test_"):
            del sys.modules[name]


@pytest.fixture
def faulty(tmp_path):
    pm = make_plugin_manager(modules=[plugin_file(tmp_path, "icdsl_test_faulty", FAULTY)])
    assert pm.problems == []
    return pm


def core_still_works(pm) -> None:
    plan = build_plan(RULES % 'recurring "Port" 10.00 EUR monthly flat', pm)
    ctx = ChargeContext(agreement=plan.agreements[0], partner=plan.partner("ORFR"), cycle=MARCH)
    assert [ln.amount for ln in evaluate_cycle(ctx, pm)] == [10]


# --------------------------------------------------------------------------- raising


def test_raising_while_checking_a_rule_is_a_located_diagnostic(faulty):
    diags = check_rules(RULES % 'charge flaky "Flaky" {\n    fail: check\n  }', faulty)
    assert diags.codes == [PLUGIN_CHECK_FAILED]
    assert diags.text == (
        "rules.icd:10:3: error[E121]: charge type 'flaky' of plugin 'icdsl_test_faulty' failed in check(): "
        "KeyError: 'fee' (at icdsl_test_faulty.py:13); this charge could not be checked\n"
        "   |\n"
        '10 |   charge flaky "Flaky" {\n'
        "   |   ^\n"
        "   = help: a bug of the plugin: report it to its authors with this message ('icdsl plugins' shows its "
        "version)")
    core_still_works(faulty)


def test_raising_while_compiling_a_rule_is_a_located_diagnostic(faulty, tmp_path):
    from icdsl.lang.diagnostics import render_all
    from icdsl.plan.compiler import build

    (tmp_path / "rules.icd").write_text(RULES % 'charge flaky "Flaky" {\n    fail: compile\n  }', encoding="utf-8")
    plan, program, diags = build([tmp_path / "rules.icd"], tmp_path, pm=faulty)
    assert plan is None
    assert [d.code for d in diags] == ["E122"]
    text = render_all(diags, program.sources)
    assert "rules.icd:10:3: error[E122]: " in text
    assert "charge type 'flaky' of plugin 'icdsl_test_faulty' failed in compile(): ValueError: no tariff" in text
    core_still_works(faulty)


def test_raising_while_evaluating_a_cycle_names_the_plugin_and_the_rule(faulty):
    plan = build_plan(RULES % 'charge flaky "Flaky" {\n    fee: 1\n  }', faulty)
    ctx = ChargeContext(agreement=plan.agreements[0], partner=plan.partner("ORFR"), cycle=MARCH)
    with pytest.raises(ChargeError) as got:
        evaluate_cycle(ctx, faulty)
    assert got.value.span.line == 10
    assert str(got.value) == (
        f"{got.value.span}: charge type 'flaky' of plugin 'icdsl_test_faulty' failed in evaluate(): "
        "ZeroDivisionError: division by zero (at icdsl_test_faulty.py:21); a bug of the plugin: report it to its "
        "authors with this message ('icdsl plugins' shows its version)")
    core_still_works(faulty)


@pytest.mark.parametrize("executor", ["row", "batch"])
def test_raising_in_a_per_record_charge_in_either_executor(faulty, executor):
    from icdsl.rating.batch import rate_batch_with_charges
    from icdsl.rating.intake import normalize_record, records_table
    from icdsl.rating.row import rate_record

    plan = build_plan(RULES % 'charge per_call "Setup" {\n    fee: 1\n  }', faulty)
    rec = normalize_record(RECORD, None)
    with use_plugin_manager(faulty), pytest.raises(ChargeError) as got:
        if executor == "row":
            rate_record(plan, rec)
        else:
            rate_batch_with_charges(plan, records_table([rec]))
    method = "evaluate_record" if executor == "row" else "evaluate_batch"
    assert f"charge type 'per_call' of plugin 'icdsl_test_faulty' failed in {method}(): RuntimeError: " \
           f"tariff service down ({executor})" in str(got.value)
    assert got.value.span.line == 10


def test_a_charge_error_raised_on_purpose_passes_unchanged(tmp_path):
    pm = make_plugin_manager(modules=[plugin_file(tmp_path, "icdsl_test_purpose", """
        from icdsl.charges.evaluate import CycleChargeType
        from icdsl.charges.lines import ChargeError
        from icdsl.hookspecs import hookimpl
        ICDSL_HOOK_API = 1

        class Metered(CycleChargeType):
            name = "metered"
            optional = ("fee",)

            def evaluate(self, charge, ctx):
                raise ChargeError("no meter readings for March: import them first", charge.span)

        @hookimpl
        def icdsl_charge_types():
            return [Metered]
    """)])
    plan = build_plan(RULES % 'charge metered "Meter" {\n    fee: 1\n  }', pm)
    ctx = ChargeContext(agreement=plan.agreements[0], partner=plan.partner("ORFR"), cycle=MARCH)
    with pytest.raises(ChargeError, match=r"^.*:10:3: no meter readings for March: import them first$"):
        evaluate_cycle(ctx, pm)


def test_raising_on_import_and_in_the_registration_hook(tmp_path):
    on_import = plugin_file(tmp_path, "icdsl_test_imp", "ICDSL_HOOK_API = 1\nimport icdsl_no_such_dependency\n")
    in_hook = plugin_file(tmp_path, "icdsl_test_reg", """
        from icdsl.hookspecs import hookimpl
        ICDSL_HOOK_API = 1

        @hookimpl
        def icdsl_charge_types():
            raise RuntimeError("licence file missing")
    """)
    pm = make_plugin_manager(modules=[on_import, in_hook])
    assert [str(p) for p in plugins.all_problems(pm)] == [
        f"plugin '{on_import}': raised on import: ModuleNotFoundError: No module named 'icdsl_no_such_dependency' "
        "(at icdsl_test_imp.py:2); not loaded",
        "plugin 'icdsl_test_reg': its icdsl_charge_types hook raised RuntimeError: licence file missing "
        "(at icdsl_test_reg.py:7); its charge types are not available",
    ]
    core_still_works(pm)


# --------------------------------------------------------------------------- versions and names


def test_another_hook_api_version(tmp_path):
    path = plugin_file(tmp_path, "icdsl_test_future", """
        from icdsl.hookspecs import hookimpl
        ICDSL_HOOK_API = 2

        @hookimpl
        def icdsl_charge_types():
            return []
    """)
    pm = make_plugin_manager(modules=[path])
    assert [str(p) for p in pm.problems] == [
        "plugin 'icdsl_test_future': targets icdsl hook API 2, but icdsl 0.1.0 provides hook API 1: upgrade "
        "icdsl, or install a release of the plugin written for hook API 1; not loaded"]
    core_still_works(pm)


def test_a_charge_type_name_taken_by_another_plugin(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SLICES_SRC))
    import icdsl_slices

    copycat = plugin_file(tmp_path, "icdsl_test_copycat", """
        from icdsl.charges.evaluate import CycleChargeType
        from icdsl.hookspecs import hookimpl
        ICDSL_HOOK_API = 1

        class Slices(CycleChargeType):
            name = "network_slice"

        class Recurring(CycleChargeType):
            name = "recurring"

        @hookimpl
        def icdsl_charge_types():
            return [Slices, Recurring]
    """)
    pm = make_plugin_manager(modules=[icdsl_slices.__name__, copycat])  # in this order: slices first
    assert [str(p) for p in plugins.all_problems(pm)] == [
        "plugin 'icdsl_test_copycat': registers charge type 'network_slice', which 'icdsl_slices' already "
        "registers; this one is ignored (give it another name)",
        "plugin 'icdsl_test_copycat': registers charge type 'recurring', which 'icdsl.charges.builtin' already "
        "registers; this one is ignored (give it another name)",
    ]
    assert type(charge_types(pm)["network_slice"]).__module__ == "icdsl_slices.charge"
    core_still_works(pm)


# --------------------------------------------------------------------------- on the command line


def icdsl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from icdsl.cli.main import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, env={**__import__("os").environ,
                                                                       "ICDSL_DISABLE_PLUGIN_AUTOLOAD": "1"})


def test_broken_plugins_on_the_command_line(tmp_path):
    (tmp_path / "rules.icd").write_text(RULES % 'recurring "Port" 10.00 EUR monthly flat', encoding="utf-8")
    bad = plugin_file(tmp_path, "icdsl_test_cli_import", "ICDSL_HOOK_API = 1\nimport icdsl_no_such_dependency\n")
    old = plugin_file(tmp_path, "icdsl_test_cli_v0", "ICDSL_HOOK_API = 0\n")
    res = icdsl("--plugin", bad, "--plugin", old, "check", "rules.icd", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "ok: 1 file checked" in res.stdout
    assert "raised on import: ModuleNotFoundError: No module named 'icdsl_no_such_dependency'" in res.stderr
    assert "plugin 'icdsl_test_cli_v0': targets icdsl hook API 0, but icdsl 0.1.0 provides hook API 1" in res.stderr
    res = icdsl("--plugin", bad, "plugins", cwd=tmp_path)
    assert res.returncode == 1
    assert "problems (1):\n  plugin '" in res.stdout and "; not loaded" in res.stdout
