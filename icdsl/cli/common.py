"""The typer app and helpers shared by the command modules of the ``icdsl`` command line."""

from __future__ import annotations

from pathlib import Path

import typer

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


@app.callback()
def _root(
    plugin: list[str] = typer.Option([], "--plugin", metavar="MODULE",
                                      help="Load a plugin module (dotted name or .py path); repeatable."),
) -> None:
    """Interconnect billing as code: check, format, compile, rate and bill telecom agreements."""
    if plugin:
        from icdsl.plugins import add_default_modules

        for problem in add_default_modules(plugin):
            echo_err(f"warning: {problem}")


def existing(paths: list[Path]) -> list[Path]:
    missing = [p for p in paths if not p.exists()]
    if missing:
        echo_err(f"error: no such file or folder: {missing[0]}")
        raise typer.Exit(2)
    return paths


def build_or_exit(paths: list[Path], root: Path | None):
    """Compile rule files, or print their diagnostics and exit 1."""
    from icdsl.lang.diagnostics import render_all
    from icdsl.plan.compiler import build

    p, program, diags = build(existing(paths), root)
    if p is None:
        typer.echo(render_all(diags, program.sources))
        typer.echo("\nthe rule files have errors: fix them first ('icdsl check' lists them)")
        raise typer.Exit(1)
    return p


def build_with_program_or_exit(paths: list[Path], root: Path | None):
    from icdsl.lang.diagnostics import render_all
    from icdsl.plan.compiler import build

    p, program, diags = build(existing(paths), root)
    if p is None:
        typer.echo(render_all(diags, program.sources))
        typer.echo("\nthe rule files have errors: fix them first ('icdsl check' lists them)")
        raise typer.Exit(1)
    return p, program
