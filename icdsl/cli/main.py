"""The ``icdsl`` command line: a thin face over the library. Each stage runs alone.

Exit codes: 0 success, 1 problems found in the user's input (errors in rule files, failing
examples, files that need formatting), 2 usage errors, 3 an internal error (a bug: please report).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import typer

from icdsl import __version__

app = typer.Typer(
    name="icdsl",
    help="Interconnect billing as code: check, format, compile, rate and bill telecom agreements.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _echo_err(text: str) -> None:
    typer.echo(text, err=True)


def _paths(paths: list[Path]) -> list[Path]:
    missing = [p for p in paths if not p.exists()]
    if missing:
        _echo_err(f"error: no such file or folder: {missing[0]}")
        raise typer.Exit(2)
    return paths


@app.command()
def check(
    paths: list[Path] = typer.Argument(..., help="Rule files or folders (searched for *.icd)."),
    fmt: str = typer.Option("text", "--format", help="Output format: text or json."),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing when there are no problems."),
) -> None:
    """Check rule files: report every problem at once, with its location and a hint."""
    from icdsl.lang.diagnostics import render_all, summary, to_json
    from icdsl.plan.compiler import build

    if fmt not in ("text", "json"):
        _echo_err("error: --format must be text or json")
        raise typer.Exit(2)
    plan, program, diags = build(_paths(paths), root)
    if fmt == "json":
        typer.echo(to_json(diags))
    else:
        if diags:
            typer.echo(render_all(diags, program.sources))
        if diags or not quiet:
            n = len(program.entry)
            status = "ok" if plan is not None else "failed"
            typer.echo(f"{'' if not diags else chr(10)}{status}: {n} file{'s' * (n != 1)} checked, {summary(diags)}")
    raise typer.Exit(0 if plan is not None else 1)


@app.command()
def fmt(
    paths: list[Path] = typer.Argument(..., help="Rule files or folders."),
    check_only: bool = typer.Option(False, "--check", help="Only report files that are not formatted; change nothing."),
) -> None:
    """Format rule files in the canonical layout (idempotent; keeps comments)."""
    from icdsl.lang.diagnostics import SourceCache, render
    from icdsl.lang.formatter import format_file
    from icdsl.lang.loader import collect, display_path

    files, diags = collect(_paths(paths))
    bad = changed = 0
    for f in files:
        shown = display_path(f)
        was_changed, new_text, ds = format_file(f, shown)
        if ds:
            bad += 1
            src = SourceCache()
            with contextlib.suppress(OSError):
                src.add(shown, f.read_text(encoding="utf-8", errors="replace"))
            for d in ds:
                typer.echo(render(d, src))
            continue
        if was_changed:
            changed += 1
            if check_only:
                typer.echo(f"would reformat {shown}")
            else:
                f.write_text(new_text, encoding="utf-8")
                typer.echo(f"reformatted {shown}")
    verb = "would be reformatted" if check_only else "reformatted"
    typer.echo(f"{len(files)} files, {changed} {verb}" + (f", {bad} with errors" if bad else ""))
    raise typer.Exit(1 if bad or (check_only and changed) else 0)


@app.command()
def plan(
    paths: list[Path] = typer.Argument(..., help="Rule files or folders."),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Compile rule files and print the evaluation plan, like a database's EXPLAIN."""
    from icdsl.lang.diagnostics import render_all
    from icdsl.plan.compiler import build
    from icdsl.plan.render import render_plan

    p, program, diags = build(_paths(paths), root)
    if p is None:
        typer.echo(render_all(diags, program.sources))
        raise typer.Exit(1)
    typer.echo(render_plan(p), nl=False)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"icdsl {__version__}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        _echo_err("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # a bug, never the user's mistake: say so plainly
        if os.environ.get("ICDSL_DEBUG"):
            raise
        _echo_err(f"internal error: {type(e).__name__}: {e}\n"
                  "This is a bug in icdsl, not in your files. Run again with ICDSL_DEBUG=1 for the details.")
        sys.exit(3)


if __name__ == "__main__":
    main()
