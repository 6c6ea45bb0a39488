"""`icdsl NAME` imports only the module that defines NAME; `icdsl --help` still lists every command.

The table icdsl.cli.common.COMMAND_MODULES says which module defines which command: checked here
against what the command modules really register, so that a new command cannot be left out of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer.main
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "interconnect"
COMMAND_MODULES_OF_CLI = sorted(p.stem for p in (ROOT / "icdsl" / "cli").glob("*.py")
                                if p.stem not in ("__init__", "common"))

_PROBE = """
import json, sys
from icdsl.cli.main import main
try:
    main()
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "modules": sorted(m for m in sys.modules if m.startswith(("icdsl.", "rich", "fastapi", "textual", "sqlalchemy", "pygls", "lark", "numpy", "pyarrow", "holidays")))}), file=sys.stderr)
"""


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    """Run `icdsl ARGS` in a fresh interpreter; its exit code, its output and the modules it imported."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env=env)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], done.stdout, set(report["modules"])


def test_check_imports_only_the_modules_it_needs(tmp_path):
    env = dict(os.environ, ICDSL_CACHE_DIR=str(tmp_path))
    _run("check", str(EXAMPLE), env=env)  # compiles: fills the plan cache
    code, out, modules = _run("check", str(EXAMPLE), env=env)
    assert code == 0, out
    assert "ok:" in out
    assert "icdsl.cli.main" in modules
    for name in COMMAND_MODULES_OF_CLI:
        if name != "main":
            assert f"icdsl.cli.{name}" not in modules, name
    # with its plan in the cache, check neither parses nor touches columns
    for heavy in ("icdsl.billing", "icdsl.web", "icdsl.tui", "icdsl.lsp", "rich", "fastapi", "textual",
                  "sqlalchemy", "pygls", "lark", "numpy", "pyarrow", "icdsl.charges"):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in modules), heavy


def test_warm_rate_and_explain_of_a_small_file_skip_what_it_does_not_need(tmp_path):
    """With the plan and the holiday dates in the cache: no compiling (lark), no holidays tables,
    no progress bar (rich) and no Acero for a 38-record file."""
    env = dict(os.environ, ICDSL_CACHE_DIR=str(tmp_path / "cache"))
    record = ("partner=LUMFR direction=outbound service=voice b_number=33612345678 "
              "start=2026-03-04T09:15:00+01:00 duration_s=61")
    for args in (["rate", str(EXAMPLE), "--cdrs", str(EXAMPLE / "traffic.csv"), "--out", str(tmp_path / "out")],
                 ["explain", str(EXAMPLE), "--record", record]):
        cold = _run(*args, env=env)
        code, out, modules = _run(*args, env=env)
        def said(text: str) -> list[str]:
            return [line for line in text.splitlines() if not line.endswith("records/s")]

        assert (code, said(out)) == (cold[0], said(cold[1]))
        assert code == 0, out
        assert "holidays" in cold[2] or args[0] == "explain"  # the traffic has a holiday calendar's days
        for heavy in ("lark", "holidays", "rich", "pyarrow.acero", "pyarrow.dataset", "icdsl.cli.billing"):
            assert not any(m == heavy or m.startswith(heavy + ".") for m in modules), (args[0], heavy)


def test_a_command_imports_its_own_module_and_not_the_others():
    code, out, modules = _run("users", "--help")
    assert code == 0, out
    assert "add" in out and "disable" in out
    assert "icdsl.cli.portal" in modules
    assert "icdsl.cli.rejects" not in modules and "icdsl.cli.disputes" not in modules


def test_help_lists_every_command_with_its_help():
    from icdsl.cli.common import COMMAND_MODULES

    code, out, _ = _run("--help")
    assert code == 0
    for name in COMMAND_MODULES:
        assert f" {name} " in out, name
    assert "Check rule files" in out  # check's help text
    assert "Billing cycles: run" in out  # a group's help text (cycle)


def test_the_table_names_every_command_the_modules_register():
    """Imported all at once, the modules register exactly the table's commands; the invoice group
    has its subcommands of both of its modules."""
    import importlib

    from icdsl.cli.common import COMMAND_MODULES, app

    for name in COMMAND_MODULES_OF_CLI:
        importlib.import_module(f"icdsl.cli.{name}")
    modules_of: dict[str, set[str]] = {}
    for info in app.registered_commands:
        name = info.name or typer.main.get_command_name(info.callback.__name__)
        modules_of.setdefault(name, set()).add(info.callback.__module__)
    for info in app.registered_groups:
        modules_of.setdefault(info.name, set()).update(
            c.callback.__module__ for c in info.typer_instance.registered_commands)
    assert {n: set(m) for n, m in COMMAND_MODULES.items()} == modules_of
    invoice = typer.main.get_command(app).get_command(None, "invoice")
    assert {"list", "show", "export", "credit", "template", "validate"} <= set(invoice.commands)


def test_the_help_lists_the_commands_in_the_order_of_before():
    """The order when main imported every command module at its end (in a fresh interpreter: the
    order of registration is that of the first imports)."""
    from icdsl.cli.common import COMMAND_MODULES

    imports = "; ".join(f"import icdsl.cli.{n}" for n in COMMAND_MODULES_OF_CLI if n != "main")
    probe = ("import json, typer.main; from icdsl.cli.main import app; " + imports +
             "; print(json.dumps(list(typer.main.get_command(app).commands)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          check=True)
    assert json.loads(done.stdout) == list(COMMAND_MODULES)


def test_an_unknown_command_suggests_the_close_names_of_every_module():
    result = CliRunner().invoke(_app(), ["dispte"])
    assert result.exit_code == 2
    assert "'dispute'" in result.output


def test_version_in_process():
    result = CliRunner().invoke(_app(), ["version"])
    assert result.exit_code == 0 and result.output.startswith("icdsl ")


def _app():
    from icdsl.cli.main import app

    return app
