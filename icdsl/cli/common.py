"""The typer app and helpers shared by the command modules of the ``icdsl`` command line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer

from icdsl.lang.diagnostics import render_all
from icdsl.plan.cache import build_cached

app = typer.Typer(
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
