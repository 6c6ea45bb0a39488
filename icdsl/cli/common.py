"""The typer app and helpers shared by the command modules of the ``icdsl`` command line."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_command_name, get_group_from_info

from icdsl.lang.diagnostics import render_all
from icdsl.plan.cache import build_cached

# Which module defines each top-level command (or command group), in the order `icdsl --help` lists
# them: `icdsl NAME` imports only NAME's modules (a group's subcommands may come from several), so
# that a command does not pay for the imports of all the others. A new command module or command
# is added here (tests/test_cli_lazy.py checks this table against what the modules register).
_MAIN = "icdsl.cli.main"
_BILLING = "icdsl.cli.billing"
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    **{name: (_MAIN,) for name in ("check", "fmt", "plan", "test", "explain", "rate", "plugins", "tui",
                                   "lsp", "version")},
    **{name: (_BILLING,) for name in ("load", "ingest", "conflicts", "rerate", "trace", "verify", "demo",
                                      "commitments")},
    "assure": ("icdsl.cli.assure",),
    "reconcile": ("icdsl.cli.recon",),
    "journal": ("icdsl.cli.einvoice",),
    "lcr": ("icdsl.cli.routing",),
    "margin": ("icdsl.cli.margin",),
    "serve": ("icdsl.cli.portal",),
    "cycle": (_BILLING,),
    "invoice": (_BILLING, "icdsl.cli.einvoice"),
    "inventory": (_BILLING,),
    "dispute": ("icdsl.cli.disputes",),
    "partner-invoice": ("icdsl.cli.partner_invoices",),
    "users": ("icdsl.cli.portal",),
    "tokens": ("icdsl.cli.portal",),
    "rejects": ("icdsl.cli.rejects",),
    "server": ("icdsl.cli.server",),
}


class LazyCommands(TyperGroup):
    """The root command group: a command's module is imported when that command is asked for (to
    run it, or to list it in the help), not when ``icdsl`` starts. The click command is then made
    from what the module registered on ``app``, the way typer makes it for a module imported at once."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._loaded: set[str] = set()

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMAND_MODULES, *(n for n in self.commands if n not in COMMAND_MODULES)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        modules = COMMAND_MODULES.get(cmd_name)
        if modules is None:
            if cmd_name not in self.commands:  # unknown: load all, so that "did you mean" knows every name
                for name in COMMAND_MODULES:
                    self.get_command(ctx, name)
            return self.commands.get(cmd_name)
        if cmd_name not in self._loaded:
            for module in modules:
                importlib.import_module(module)
            command = self._make(cmd_name)
            if command is not None:
                self.commands[cmd_name] = command
            self._loaded.add(cmd_name)
        return self.commands.get(cmd_name)

    def _make(self, name: str) -> Any:
        for info in app.registered_commands:
            if (info.name or get_command_name(info.callback.__name__)) == name:
                return get_command_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                             rich_markup_mode=self.rich_markup_mode)
        for group in app.registered_groups:
            if group.name == name:
                return get_group_from_info(group, pretty_exceptions_short=app.pretty_exceptions_short,
                                           rich_markup_mode=self.rich_markup_mode,
                                           suggest_commands=self.suggest_commands)
        return None


app = typer.Typer(
    cls=LazyCommands,
    name="icdsl",
    help="Interconnect billing as code: check, format, compile, rate and bill telecom agreements.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def echo_err(text: str) -> None:
    typer.echo(text, err=True)


class _PlainFormatter(logging.Formatter):
    """``warning: message`` on stderr, without tracebacks (ICDSL_DEBUG=1 shows them)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and os.environ.get("ICDSL_DEBUG"):
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (not the one of the moment it was made)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never break a command
            self.handleError(record)


def _log_to_stderr() -> None:
    """icdsl's own log messages (a plugin that fails to load or raises) as plain lines on stderr."""
    logger = logging.getLogger("icdsl")
    if not any(getattr(h, "_icdsl", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_PlainFormatter())
        handler._icdsl = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


@app.callback()
def _root(
    plugin: list[str] = typer.Option([], "--plugin", metavar="MODULE",
                                      help="Load a plugin module (dotted name or .py path); repeatable."),
) -> None:
    """Interconnect billing as code: check, format, compile, rate and bill telecom agreements."""
    _log_to_stderr()
    if plugin:
        # lazy: the plugin manager imports pluggy: only when --plugin is given
        from icdsl.plugins import add_default_modules

        add_default_modules(plugin)  # problems are logged (a warning line on stderr) when found


def existing(paths: list[Path]) -> list[Path]:
    missing = [p for p in paths if not p.exists()]
    if missing:
        echo_err(f"error: no such file or folder: {missing[0]}")
        raise typer.Exit(2)
    return paths


def build_or_exit(paths: list[Path], root: Path | None):
    """Compile rule files (or take their plan from the cache: icdsl.plan.cache), or print their
    diagnostics and exit 1."""
    built = build_cached(existing(paths), root)
    if not built.ok:
        typer.echo(render_all(built.diagnostics, built.sources))
        typer.echo("\nthe rule files have errors: fix them first ('icdsl check' lists them)")
        raise typer.Exit(1)
    return built.get_plan()


def build_with_program_or_exit(paths: list[Path], root: Path | None):
    # lazy: this command needs lark: loaded when it runs, not at every `icdsl` start
    from icdsl.plan.compiler import build

    p, program, diags = build(existing(paths), root)
    if p is None:
        typer.echo(render_all(diags, program.sources))
        typer.echo("\nthe rule files have errors: fix them first ('icdsl check' lists them)")
        raise typer.Exit(1)
    return p, program


def table_console(width: int = 120) -> Any:
    """The console of a command's tables: in a terminal, the terminal's width (rich wraps the
    cells of an 80-column window); written to a file or a pipe, at least ``width`` columns, so
    that a report saved or read by a program keeps one row per line."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.console import Console

    here = Console()
    return here if here.is_terminal else Console(width=max(width, here.width))
