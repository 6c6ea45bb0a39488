"""Plugins: the hook API, loading and discovery, broken plugins, the registries, the author kit.

Every hook is documented (in ``icdsl/hookspecs.py`` and ``docs/plugins.md``) and exercised here
by a built-in or a test plugin. A broken plugin is reported with its name and never takes the
core down: after each kind of breakage the same rules still compile and rate.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import ROOT

from icdsl import hookspecs, plugins
from icdsl.charges.base import ChargeType
from icdsl.hookspecs import HOOK_API_VERSION, hookimpl
from icdsl.plugins import (
    PluginError,
    charge_types,
    describe_plugins,
    installed_plugins,
    load_plugins,
    make_plugin_manager,
    reject_reasons,
)
from icdsl.testing import PluginKit, build_plan, check_condition_function, check_rounding_mode, rate_both

ICDSL_HOOK_API = 1  # this module is a plugin too (see test_kit_with_a_charge_type)

RULES = """
partner ORFR "Orange France" {
  currency EUR
  timezone "Europe/Paris"
}

agreement "ORFR voice" v1 with ORFR effective 2026-01-01 .. {
  outbound voice {
    price 0.0100 EUR per minute
    increments 60/60
    surcharge "Premium route" 0.0020 EUR per minute when route_class == "premium"
  }
}
"""
RECORD = {"id": "1", "partner": "ORFR", "direction": "outbound", "service": "voice", "b_number": "33612345678",
          "start": "2026-03-04T09:15:00Z", "duration_s": "61"}


def core_still_works(pm) -> None:
    """The built-in charge types are there, and rules compile and rate through both executors."""
    assert {"surcharge", "recurring", "revenue_share"} <= set(charge_types(pm))
    assert isinstance(charge_types(pm)["surcharge"], __import__("icdsl.charges.builtin").charges.builtin.Surcharge)
    plan = build_plan(RULES, pm)
    assert rate_both(plan, [RECORD], pm=pm).assert_agree().amounts == [Decimal("0.020000")]


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


# --------------------------------------------------------------------------- the hook API


def test_every_hook_is_documented_in_the_module_and_in_the_guide():
    specs = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("icdsl_")]
    assert sorted(specs) == sorted(hookspecs.HOOKS)
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for name in specs:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert "versionadded" in doc and "firstresult" in doc, name
        assert f"`{name}`" in guide, f"{name} is not documented in docs/plugins.md"
    assert f"HOOK_API_VERSION = {HOOK_API_VERSION}" in inspect.getsource(hookspecs)


def test_every_hook_has_a_builtin_implementation():
    pm = make_plugin_manager()
    assert pm.problems == []
    text = describe_plugins(pm, installed=False)
    for hook in set(hookspecs.HOOKS) - {"icdsl_reject_reasons"}:  # the core's reasons are its own table
        assert f"      {hook}: " in text, hook
    assert set(reject_reasons(pm)) == set(__import__("icdsl.rating.rejects").rating.rejects.REJECT_REASONS)


def test_built_in_plugins_follow_the_contract():
    for name in plugins.BUILTIN_PLUGINS:
        module = importlib.import_module(name)
        assert module.ICDSL_HOOK_API == HOOK_API_VERSION, name


# --------------------------------------------------------------------------- broken plugins


def test_plugin_that_raises_on_import(tmp_path):
    path = plugin_file(tmp_path, "icdsl_test_import", """
        ICDSL_HOOK_API = 1
        import icdsl_no_such_dependency
    """)
    pm = make_plugin_manager()
    problems = load_plugins(pm, [path], entry_points=False)
    assert [str(p) for p in problems] == [
        f"plugin '{path}': raised on import: ModuleNotFoundError: No module named 'icdsl_no_such_dependency' "
        "(at icdsl_test_import.py:3); not loaded"
    ]
    assert "icdsl_test_import" not in sys.modules
    core_still_works(pm)


def test_plugin_that_raises_in_its_hook(tmp_path):
    path = plugin_file(tmp_path, "icdsl_test_hook", """
        from icdsl.hookspecs import hookimpl
        ICDSL_HOOK_API = 1

        @hookimpl
        def icdsl_charge_types():
            raise RuntimeError("licence server unreachable")

        @hookimpl
        def icdsl_reject_reasons():
            return {"late_cdr": "the CDR arrived after the cycle was closed"}
    """)
    pm = make_plugin_manager(modules=[path])
    core_still_works(pm)
    assert [str(p) for p in pm.problems] == [
        "plugin 'icdsl_test_hook': its icdsl_charge_types hook raised RuntimeError: licence server unreachable "
        "(at icdsl_test_hook.py:7); its charge types are not available"
    ]
    # the plugin's other hooks still work
    assert reject_reasons(pm)["late_cdr"] == "the CDR arrived after the cycle was closed"


def test_plugin_targeting_another_hook_api_version(tmp_path):
    newer = plugin_file(tmp_path, "icdsl_test_newer", "ICDSL_HOOK_API = 2\n")
    older = plugin_file(tmp_path, "icdsl_test_older", "ICDSL_HOOK_API = 0\n")
    none = plugin_file(tmp_path, "icdsl_test_undeclared", "X = 1\n")
    pm = make_plugin_manager(modules=[newer, older, none])
    assert [str(p) for p in pm.problems] == [
        f"plugin 'icdsl_test_newer': targets icdsl hook API 2, but icdsl 0.1.0 provides hook API "
        f"{HOOK_API_VERSION}: upgrade icdsl, or install a release of the plugin written for hook API 1; not loaded",
        "plugin 'icdsl_test_older': targets icdsl hook API 0, but icdsl 0.1.0 provides hook API 1: install a "
        "release of the plugin written for hook API 1; not loaded",
        "plugin 'icdsl_test_undeclared': declares no hook API version: add 'ICDSL_HOOK_API = 1' to the module, "
        "naming the icdsl hook API it was written for; not loaded",
    ]
    assert not pm.has_plugin("icdsl_test_newer")
    core_still_works(pm)


def test_plugin_registering_a_taken_charge_type_name(tmp_path):
    path = plugin_file(tmp_path, "icdsl_test_dup", """
        from icdsl.charges.base import ChargeType
        from icdsl.hookspecs import hookimpl
        ICDSL_HOOK_API = 1

        class MySurcharge(ChargeType):
            name = "surcharge"

        class PortFee(ChargeType):
            name = "port_fee"
            required = ("amount",)

        @hookimpl
        def icdsl_charge_types():
            return [MySurcharge, PortFee]
    """)
    pm = make_plugin_manager(modules=[path])
    assert [str(p) for p in plugins.all_problems(pm)] == [
        "plugin 'icdsl_test_dup': registers charge type 'surcharge', which 'icdsl.charges.builtin' already "
        "registers; this one is ignored (give it another name)"
    ]
    assert "port_fee" in charge_types(pm)  # the rest of the plugin is in use
    assert plugins.owner(pm, "icdsl_charge_types", "surcharge") == "icdsl.charges.builtin"
    core_still_works(pm)


def test_plugin_with_a_misspelled_hook(tmp_path):
    path = plugin_file(tmp_path, "icdsl_test_typo", """
        from icdsl.hookspecs import hookimpl
        ICDSL_HOOK_API = 1

        @hookimpl
        def icdsl_chrage_types():
            return []
    """)
    pm = make_plugin_manager(modules=[path])
    (problem,) = pm.problems
    assert "implements 'icdsl_chrage_types' (did you mean 'icdsl_charge_types'?)" in str(problem)
    assert not pm.has_plugin("icdsl_test_typo")
    pm.check_pending()  # nothing unknown is left registered
    core_still_works(pm)


def test_bad_registrations_are_reported_not_raised():
    class NoName(ChargeType):
        pass

    class Broken(ChargeType):
        name = "broken"

        def __init__(self):
            raise ValueError("needs a config file")

    class Plugin:
        ICDSL_HOOK_API = 1
        __name__ = "icdsl_test_bad"

        @hookimpl
        def icdsl_charge_types(self):
            return [NoName, Broken, "not a class"]

        @hookimpl
        def icdsl_reject_reasons(self):
            return {"no_rate": "mine", "Bad Code": "x"}

    pm = make_plugin_manager((Plugin(),))
    reasons = reject_reasons(pm)
    messages = [p.message for p in plugins.all_problems(pm)]
    assert any("charge type class NoName has no valid name" in m for m in messages)
    assert any("charge type 'broken' cannot be created: ValueError: needs a config file" in m for m in messages)
    assert any("returned 'not a class', not a class" in m for m in messages)
    assert any("reject reason 'Bad Code'" in m for m in messages)
    assert any("reject reason 'no_rate' is one of icdsl's own" in m for m in messages)
    assert reasons["no_rate"] != "mine"
    core_still_works(pm)


def test_strict_kit_fails_on_a_broken_plugin():
    class Plugin:
        ICDSL_HOOK_API = 2

    with pytest.raises(PluginError, match="targets icdsl hook API 2"):
        PluginKit(Plugin())


# --------------------------------------------------------------------------- discovery


def fake_distribution(tmp_path: Path, monkeypatch, entry_points: str, modules: dict[str, str]) -> None:
    """An installed distribution 'icdsl-fake 2.3' (a dist-info folder on sys.path)."""
    site = tmp_path / "site"
    info = site / "icdsl_fake-2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: icdsl-fake\nVersion: 2.3\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, body in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()


GOOD = """
    from icdsl.hookspecs import hookimpl
    ICDSL_HOOK_API = 1

    @hookimpl
    def icdsl_reject_reasons():
        return {"fake_reason": "a reason from the fake plugin"}
"""


def test_entry_point_discovery(tmp_path, monkeypatch):
    fake_distribution(tmp_path, monkeypatch, """
        [icdsl]
        fake = icdsl_test_good
        fakebroken = icdsl_test_broken
        fakeold = icdsl_test_old
    """, {"icdsl_test_good": GOOD, "icdsl_test_broken": "ICDSL_HOOK_API = 1\n1 / 0\n",
          "icdsl_test_old": "ICDSL_HOOK_API = 7\n"})
    pm = make_plugin_manager(entry_points=True)
    assert pm.has_plugin("fake") and not pm.has_plugin("fakebroken") and not pm.has_plugin("fakeold")
    assert reject_reasons(pm)["fake_reason"] == "a reason from the fake plugin"
    messages = [str(p) for p in pm.problems]
    assert ("plugin 'fakebroken': raised on import of 'icdsl_test_broken' (distribution icdsl-fake 2.3): "
            "ZeroDivisionError: division by zero (at icdsl_test_broken.py:2); not loaded") in messages
    assert any(m.startswith("plugin 'fakeold': targets icdsl hook API 7 (icdsl-fake 2.3)") for m in messages)
    text = describe_plugins(pm)
    assert "  fake 2.3 (entry point 'fake = icdsl_test_good', distribution icdsl-fake 2.3)\n" in text
    assert "      icdsl_reject_reasons: fake_reason\n" in text
    assert "installed but not loaded (2):\n  fakebroken (icdsl_test_broken, distribution icdsl-fake 2.3)\n" in text
    assert "problems (2):\n  plugin 'fakebroken': raised on import" in text
    core_still_works(pm)


def test_listing_installed_plugins_imports_nothing(tmp_path, monkeypatch):
    fake_distribution(tmp_path, monkeypatch, "[icdsl]\nfake = icdsl_test_lazy\n",
                      {"icdsl_test_lazy": "raise SystemExit('imported!')\n"})
    found = {p.name: p for p in installed_plugins()}
    assert found["fake"].value == "icdsl_test_lazy" and found["fake"].version == "2.3"
    assert "icdsl_test_lazy" not in sys.modules


def test_autoload_can_be_switched_off(tmp_path, monkeypatch):
    fake_distribution(tmp_path, monkeypatch, "[icdsl]\nfake = icdsl_test_good\n", {"icdsl_test_good": GOOD})
    monkeypatch.setenv("ICDSL_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = make_plugin_manager(entry_points=True)
    assert not pm.has_plugin("fake")
    assert "installed but not loaded" in describe_plugins(pm)


def test_mediation_plugin_is_discovered_when_installed():
    from importlib.metadata import PackageNotFoundError, version

    try:
        dist_version = version("icdsl-mediation")
    except PackageNotFoundError:
        pytest.skip("icdsl-mediation is not installed (pip install -e plugins/icdsl-mediation)")
    pm = make_plugin_manager(entry_points=True)
    assert pm.has_plugin("mediation"), pm.problems
    text = describe_plugins(pm)
    assert (f"  mediation {dist_version} (entry point 'mediation = icdsl_mediation', distribution icdsl-mediation "
            f"{dist_version})\n      icdsl_record_readers: asterisk_csv, freeswitch_csv\n"
            "      icdsl_reject_reasons: unanswered\n") in text


def test_mediation_reader_on_the_real_sample_lines():
    """The example plugin from its source tree (installed or not) on Asterisk's and FreeSWITCH's own lines."""
    src = ROOT / "plugins" / "icdsl-mediation" / "src"
    fixtures = ROOT / "plugins" / "icdsl-mediation" / "tests" / "fixtures"
    sys.path.insert(0, str(src))
    try:
        import icdsl_mediation

        kit = PluginKit(icdsl_mediation)
        _, rejects, counts = kit.read(fixtures / "freeswitch_cdr_csv.txt",
                                      options={"timezone": "Europe/Madrid", "partner": "ORFR"})
        assert counts.by_reason == {"unanswered": 3}
        _, rejects, counts = kit.read(fixtures / "asterisk_master_csv.txt",
                                      options={"timezone": "Europe/Madrid", "partner": "ORFR"})
        assert counts.by_reason == {"invalid_number": 2}
        assert rejects.column("id").to_pylist() == ["1270167992.0", "1270168442.0"]
    finally:
        sys.path.remove(str(src))


def test_plugin_option_on_the_command_line_and_the_default_manager(tmp_path):
    path = plugin_file(tmp_path, "icdsl_test_cli", GOOD)
    plugins.reset_default_plugin_manager()
    try:
        assert plugins.add_default_modules([path]) == []  # loaded when the default is made
        pm = plugins.default_plugin_manager()
        assert pm.has_plugin("icdsl_test_cli")
        assert plugins.active_plugin_manager() is pm
        other = make_plugin_manager()
        with plugins.use_plugin_manager(other):
            assert plugins.active_plugin_manager() is other
        bad = plugin_file(tmp_path, "icdsl_test_cli_bad", "ICDSL_HOOK_API = 3\n")
        (problem,) = plugins.add_default_modules([bad])  # the default exists: loaded now
        assert "targets icdsl hook API 3" in str(problem)
        assert plugins.problems_text(pm).startswith("warning: plugin 'icdsl_test_cli_bad': targets")
    finally:
        plugins.reset_default_plugin_manager()


def test_tracing_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("ICDSL_TRACE_HOOKS", "1")
    pm = make_plugin_manager()
    charge_types(pm)
    err = capsys.readouterr().err
    assert "icdsl_charge_types" in err and "finish icdsl_charge_types" in err


# --------------------------------------------------------------------------- the kit and the other hooks


class SliceHours(ChargeType):
    name = "slice_hours"
    description = "a price per hour of each network slice"
    required = ("embb",)
    optional = ("urllc",)
    params = {"embb": "the price per hour of an eMBB slice", "urllc": "the price per hour of a URLLC slice"}


@hookimpl
def icdsl_charge_types():
    return [SliceHours]


SLICES = RULES.replace("  }\n}\n", """  }

  charge slice_hours "5G slices" {
    embb: 0.50 EUR per hour
    urllc: 2.00 EUR per hour
  }, stream fees
}
""")


def test_kit_with_a_charge_type():
    kit = PluginKit(sys.modules[__name__])
    plan = kit.build(SLICES)
    (charge,) = [c for c in plan.agreements[0].charges if c.kind != "surcharge"]
    assert (charge.kind, charge.name) == ("slice_hours", "5G slices")
    assert charge.param("embb").amount == Decimal("0.50") and charge.param("option:stream") == "fees"
    kit.rate(plan, [RECORD, {**RECORD, "id": "2", "route_class": "premium"}]).assert_agree()
    # without the plugin the same rules name it, and where to look
    with pytest.raises(pytest.fail.Exception, match=r"error\[E114\]: unknown charge type 'slice_hours'"):
        build_plan(SLICES, make_plugin_manager())
    with pytest.raises(pytest.fail.Exception, match=r"error\[E119\]: charge 'slice_hours' needs 'embb:' \(the price"):
        kit.build(SLICES.replace("embb:", "mbb:"))


class HalfDown:
    """Ties towards zero: a rounding mode some settlement agreements ask for."""

    name = "half_down"
    description = "to the nearest; ties towards zero"

    def round_int(self, n, d):
        q, r = divmod(abs(n), d)
        q += 2 * r > d
        return -q if n < 0 else q

    def round_array(self, n, d):
        import numpy as np

        q, r = np.divmod(np.abs(n), d)
        q = q + (2 * r > d)
        return np.where(n < 0, -q, q)


def test_rounding_modes():
    from icdsl import rounding
    from icdsl.rounding import RoundingMode

    class Plugin:
        ICDSL_HOOK_API = 1
        __name__ = "icdsl_test_rounding"

        @hookimpl
        def icdsl_rounding_modes(self):
            return [type("HalfDownMode", (HalfDown, RoundingMode), {})]

    kit = PluginKit(Plugin())
    modes = plugins.rounding_modes(kit.pm)
    assert list(modes) == ["half_up", "half_even", "up", "down", "half_down"]
    for mode in modes.values():
        check_rounding_mode(mode)
    with plugins.use_plugin_manager(kit.pm):
        assert rounding.div_round_int(25, 10, "half_down") == 2
        assert rounding.div_round_int(-25, 10, "half_down") == -2
        assert rounding.div_round_int(25, 10, "half_up") == 3
        assert rounding.round_decimal(Decimal("0.0000125"), 6, "half_down") == Decimal("0.000012")
        assert list(rounding.div_round_array([25, -35, 26], 10, "half_down")) == [2, -3, 3]
    with pytest.raises(KeyError, match="unknown rounding mode 'half_down'"):
        rounding.div_round_int(25, 10, "half_down", make_plugin_manager())


def test_a_wrong_rounding_mode_is_caught_by_the_kit():
    class Off(HalfDown):
        name = "off"

        def round_array(self, n, d):
            return super().round_array(n, d) + 1

    with pytest.raises(pytest.fail.Exception, match="round_array gives"):
        check_rounding_mode(Off())


def test_condition_functions_agree_in_both_executors():
    from datetime import UTC, datetime

    fns = plugins.condition_functions(make_plugin_manager())
    assert plugins.function_arities(make_plugin_manager()) == {"starts_with": 2, "length": 1, "hour": 1,
                                                               "weekday": 1}
    texts = [("33612345678", "336"), ("447700900123", "336"), (None, "33")]
    assert check_condition_function(fns["starts_with"], texts, constant=[False, True]) == [True, False, None]
    assert check_condition_function(fns["starts_with"], texts) == [True, False, None]
    assert check_condition_function(fns["length"], [("336",), (None,)]) == [3, None]
    # 2026-03-29 00:30 UTC is 01:30 in Paris (CET); 01:30 UTC is 03:30 (CEST, after the change)
    times = [(datetime(2026, 3, 29, 0, 30, tzinfo=UTC),), (datetime(2026, 3, 29, 1, 30, tzinfo=UTC),), (None,)]
    assert check_condition_function(fns["hour"], times, timezone="Europe/Paris") == [1, 3, None]
    assert check_condition_function(fns["weekday"], times, timezone="Europe/Paris") == ["sun", "sun", None]
    assert check_condition_function(fns["weekday"], times, timezone="Pacific/Auckland")[0] == "sun"


def test_exporters_and_validators(tmp_path):
    import json

    from icdsl.exporters import Exporter, export
    from icdsl.validators import InvoiceValidator, run_validators

    class Failing(Exporter):
        name = "ubl"

        def write(self, documents, directory, options):
            raise OSError("disk full")

    class Raising(InvoiceValidator):
        name = "vat_ids"

        def validate(self, documents, context):
            raise LookupError("VIES is down")

    class Plugin:
        ICDSL_HOOK_API = 1
        __name__ = "icdsl_test_outputs"

        @hookimpl
        def icdsl_exporters(self):
            return [Failing]

        @hookimpl
        def icdsl_invoice_validators(self):
            return [Raising]

    kit = PluginKit(Plugin())
    doc = {"kind": "invoice", "number": "INV/2026/0001", "partner_code": "ORFR", "currency": "EUR",
           "subtotal": Decimal("10.00"), "tax_amount": Decimal("2.00"), "total": Decimal("12.01"),
           "lines": [{"line_no": 1, "amount": Decimal("4.00")}, {"line_no": 2, "amount": Decimal("6.00")}]}
    (path,) = export("json", [doc], tmp_path, pm=kit.pm)
    assert path.name == "INV_2026_0001.json"
    assert json.loads(path.read_text())["lines"][1]["amount"] == "6.00"
    with pytest.raises(PluginError, match="exporter 'ubl' of plugin 'icdsl_test_outputs' failed: OSError: disk full"):
        export("ubl", [doc], tmp_path, pm=kit.pm)
    with pytest.raises(ValueError, match="unknown export format 'jsn'; did you mean 'json'"):
        export("jsn", [doc], tmp_path, pm=kit.pm)
    findings = run_validators([doc], pm=kit.pm)
    assert [str(f) for f in findings] == [
        "error[totals/total] INV/2026/0001: subtotal 10.00 + tax 2.00 is not the total 12.01",
        "error[vat_ids/validator_failed] validator 'vat_ids' of plugin 'icdsl_test_outputs' raised LookupError: "
        "VIES is down; the drafts were not checked by it",
    ]


def test_reader_choice_survives_a_broken_claim(tmp_path):
    from icdsl.readers import Reader, choose_reader

    class Greedy(Reader):
        name = "greedy"

        @classmethod
        def claims(cls, path, head):
            raise UnicodeError("cannot sniff")

        def batches(self):
            return iter(())

    class Plugin:
        ICDSL_HOOK_API = 1
        __name__ = "icdsl_test_reader"

        @hookimpl
        def icdsl_record_readers(self):
            return [Greedy]

    kit = PluginKit(Plugin())
    p = tmp_path / "traffic.csv"
    p.write_text("id,partner,direction,service,b_number,start,duration_s\n")
    assert choose_reader(p, pm=kit.pm).name == "table"
    assert "reader 'greedy': claims() raised UnicodeError: cannot sniff" in str(kit.pm.problems[-1])
    with pytest.raises(Exception, match="unknown reader 'gredy'; did you mean 'greedy'"):
        choose_reader(p, "gredy", pm=kit.pm)


def test_table_reader_through_the_hook(tmp_path):
    from icdsl.readers import read_all

    p = tmp_path / "traffic.csv"
    p.write_text("id,partner,direction,service,b_number,start,duration_s\n"
                 "1,ORFR,outbound,voice,33612345678,2026-03-04T09:15:00Z,61\n"
                 "2,ORFR,outbound,voice,33612345678,not a time,61\n")
    records, rejects, counts = read_all(p, pm=make_plugin_manager())
    assert (counts.passed, counts.rejected) == (1, 1)
    assert rejects.column("reason").to_pylist() == ["bad_timestamp"]


def test_the_test_command_installs_and_tests_every_example_plugin():
    import tomllib

    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"```sh\n{ci}\n```" in readme, "the README's test command and .ci/run differ"
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"][
        "ini_options"]["testpaths"]
    for pkg in sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml")):
        rel = pkg.relative_to(ROOT).as_posix()
        assert f"-e {rel} " in ci, f"{rel} is not installed by the test command"
        assert f"{rel}/tests" in testpaths, f"{rel}/tests is not in pyproject's testpaths"
        assert (pkg / "README.md").is_file() and (pkg / "tests").is_dir()
