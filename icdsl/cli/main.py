"""The ``icdsl`` command line: a thin face over the library. Each stage runs alone.

Exit codes: 0 success, 1 problems found in the user's input (errors in rule files, failing
examples, files that need formatting), 2 usage errors, 3 an internal error (a bug: please report).

Commands live in modules by stage: this one (language and rating) and ``billing`` (the store,
cycles and invoices), ...; all register on the one ``app`` of ``common``, whose table
``COMMAND_MODULES`` says which module defines which command: ``icdsl NAME`` imports only that one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import typer

from icdsl import __version__
from icdsl.cli.common import app, build_or_exit, echo_err, existing
from icdsl.lang.diagnostics import SourceCache, render, render_all, summary, to_json
from icdsl.plan.cache import build_cached
from icdsl.rating.cluster import ClusterError, dask_client


@app.command()
def check(
    paths: list[Path] = typer.Argument(..., help="Rule files or folders (searched for *.icd)."),
    fmt: str = typer.Option("text", "--format", help="Output format: text or json."),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing when there are no problems."),
) -> None:
    """Check rule files: report every problem at once, with its location and a hint."""
    if fmt not in ("text", "json"):
        echo_err("error: --format must be text or json")
        raise typer.Exit(2)
    built = build_cached(existing(paths), root)
    diags = built.diagnostics
    if fmt == "json":
        typer.echo(to_json(diags))
    else:
        if diags:
            typer.echo(render_all(diags, built.sources))
        if diags or not quiet:
            n = built.entry_count
            status = "ok" if built.ok else "failed"
            typer.echo(f"{'' if not diags else chr(10)}{status}: {n} file{'s' * (n != 1)} checked, {summary(diags)}")
    raise typer.Exit(0 if built.ok else 1)


@app.command()
def fmt(
    paths: list[Path] = typer.Argument(..., help="Rule files or folders."),
    check_only: bool = typer.Option(False, "--check", help="Only report files that are not formatted; change nothing."),
) -> None:
    """Format rule files in the canonical layout (idempotent; keeps comments)."""
    # lazy: this command needs lark: loaded when it runs, not at every `icdsl` start
    from icdsl.lang.formatter import format_file
    from icdsl.lang.loader import collect, display_path

    files, diags = collect(existing(paths))
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
    from icdsl.plan.render import render_plan  # lazy: the plan's model brings stdnum

    built = build_cached(existing(paths), root)
    if not built.ok:
        typer.echo(render_all(built.diagnostics, built.sources))
        raise typer.Exit(1)
    typer.echo(render_plan(built.get_plan()), nl=False)


@app.command("test")
def test_examples(
    paths: list[Path] = typer.Argument(..., help="Rule files or folders whose example blocks to run."),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="List passing examples too."),
) -> None:
    """Run the example blocks of rule files (records and billing cycles): expected versus actual,
    with each example's location and explanation."""
    # lazy: this command needs numpy, pyarrow: loaded when it runs, not at every `icdsl` start
    from icdsl.cycle.examples import report, run_examples

    p = build_or_exit(paths, root)
    results = run_examples(p)
    typer.echo(report(results, verbose=verbose))
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


def _parse_record(text: str) -> dict:
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            echo_err(f"error: --record is not valid JSON: {e}")
            raise typer.Exit(2) from None
        if not isinstance(data, dict):
            echo_err("error: --record must be a JSON object")
            raise typer.Exit(2)
        return data
    out = {}
    for part in text.replace(",", " ").split():
        if "=" not in part:
            echo_err(f"error: --record expects key=value pairs (or JSON), not '{part}'")
            raise typer.Exit(2)
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command()
def explain(
    paths: list[Path] = typer.Argument(..., help="Rule files or folders."),
    record: str | None = typer.Option(None, "--record", help="The record: JSON or key=value pairs, e.g. "
                                      "'partner=ORFR direction=outbound service=voice b_number=33612345678 "
                                      "start=2026-03-04T09:15:00+01:00 duration_s=61'."),
    cdrs: Path | None = typer.Option(None, "--cdrs", help="A traffic file to take the record from (with --id)."),
    record_id: str | None = typer.Option(None, "--id", help="The id of the record in --cdrs."),
    layout: str | None = typer.Option(None, help="Records layout (from the rule files) for --cdrs."),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Rate one record and print every step: agreement, destination, band, increments, rate, rounding."""
    # lazy: this command needs numpy, pyarrow: loaded when it runs, not at every `icdsl` start
    from icdsl.rating.intake import IntakeError, normalize_record, read_records
    from icdsl.rating.row import rate_record
    from icdsl.rating.run import LayoutError, choose_layout

    if (record is None) == (cdrs is None):
        echo_err("error: give either --record or --cdrs with --id")
        raise typer.Exit(2)
    if cdrs is not None and record_id is None:
        echo_err("error: --cdrs needs --id")
        raise typer.Exit(2)
    p = build_or_exit(paths, root)
    try:
        lay = choose_layout(p, layout)
    except LayoutError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(2) from None
    if record is not None:
        rec = normalize_record(_parse_record(record), lay)
        if not isinstance(rec, dict):
            typer.echo(f"rejected at intake: {rec.reason}: {rec.detail}")
            raise typer.Exit(1)
    else:
        try:
            records, rejects, _ = read_records(existing([cdrs])[0], lay, dedupe=False)
        except IntakeError as e:
            echo_err(f"error: {e}")
            raise typer.Exit(1) from None
        # lazy: this command needs pyarrow: loaded when it runs, not at every `icdsl` start
        import pyarrow.compute as pc

        ids = records.column("id")
        hit = records.filter(pc.equal(ids.cast("string"), record_id))
        if hit.num_rows == 0:
            rej = rejects.filter(pc.equal(rejects.column("id"), record_id)) if rejects.num_rows else rejects
            if rej.num_rows:
                row = rej.to_pylist()[0]
                typer.echo(f"record {record_id} was rejected at intake: {row['reason']}: {row['detail']}")
                raise typer.Exit(1)
            echo_err(f"error: no record with id {record_id} in {cdrs}")
            raise typer.Exit(1)
        rec = hit.to_pylist()[0]
    # an event record (a porting, a payment) is counted by its charges, not rated
    # lazy: the charges bring numpy and pyarrow: loaded when explain runs, not for `icdsl check`
    from icdsl.charges.percentage import explain_event_record

    counted = explain_event_record(p.agreements_for(str(rec["partner"])), rec) if rec.get("partner") else []
    if counted:
        for step in counted:
            typer.echo(step)
        typer.echo("=> an event record: counted by the cycle's charges, not rated")
        return
    out = rate_record(p, rec, trace=True)
    for step in out.trace:
        typer.echo(str(step))
    if out.ok:
        typer.echo(f"=> {out.amount} {out.currency}")
    else:
        typer.echo(f"=> rejected: {out.reason}: {out.detail}")
        raise typer.Exit(1)


SHOW_ROWS = 100
SHOW_RATED = ("id", "partner", "direction", "service", "agreement", "prefix", "destination", "band", "billed_units",
              "rate", "amount", "currency")
SHOW_CHARGES = ("id", "charge", "amount", "currency")
SHOW_REJECTS = ("id", "reason", "detail")


@app.command()
def rate(
    paths: list[Path] = typer.Argument(..., help="Rule files or folders (the agreements)."),
    cdrs: Path = typer.Option(..., "--cdrs", help="Traffic file: CSV or Parquet."),
    out: Path | None = typer.Option(None, "--out", help="Output: a folder (rated.parquet, rejects.parquet, "
                                    "record_charges.parquet, summary.json) or a file ending in .parquet or .csv "
                                    "(rejects, record charges and summary beside it). Optional with --show."),
    show: bool = typer.Option(False, "--show", help="Also print the rated records and the rejects (the first "
                              f"{SHOW_ROWS} of each): for a small file."),
    layout: str | None = typer.Option(None, help="Records layout to read the traffic file with."),
    batch_rows: int = typer.Option(500_000, help="Records per batch: memory stays bounded by it (about 0.85 GiB peak at the default)."),
    reader: str | None = typer.Option(None, help="Record reader (e.g. asterisk_csv from a plugin); "
                                      "default: the reader that recognizes the file."),
    reader_option: list[str] = typer.Option([], "--reader-option", metavar="KEY=VALUE",
                                            help="An option for the reader, e.g. timezone=Europe/Paris."),
    workers: int | None = typer.Option(None, "--workers", help="Rate the batches on a local Dask cluster of N "
                                       "worker processes (reading and writing stay here: the same outputs)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Rate the batches on a running Dask cluster: "
                                         "tcp://HOST:PORT (docs/fleet.md)."),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Rate a traffic file in bulk: rated records, rejects with reasons, counts that reconcile."""

    # lazy: this command needs numpy, pyarrow: loaded when it runs, not at every `icdsl` start
    from icdsl.rating.intake import IntakeError
    from icdsl.rating.run import LayoutError, choose_layout, rate_file

    p = build_or_exit(paths, root)
    try:
        lay = choose_layout(p, layout)
    except LayoutError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(2) from None
    if batch_rows <= 0:
        echo_err("error: --batch-rows must be positive")
        raise typer.Exit(2)
    if out is None and not show:
        echo_err("error: give --out (where to write the rated records), or --show to print them")
        raise typer.Exit(2)
    if workers is not None and (workers < 1 or scheduler is not None):
        echo_err("error: --workers must be 1 or more, and not given with --scheduler")
        raise typer.Exit(2)
    options = {}
    for opt in reader_option:
        if "=" not in opt:
            echo_err(f"error: --reader-option expects KEY=VALUE, not '{opt}'")
            raise typer.Exit(2)
        k, v = opt.split("=", 1)
        options[k.strip()] = v.strip()
    total = _count_rows(existing([cdrs])[0])
    with _progress_bar(cdrs, total) as progress:
        try:
            with contextlib.ExitStack() as stack:
                client = (stack.enter_context(dask_client(workers=workers, scheduler=scheduler))
                          if workers is not None or scheduler is not None else None)
                target = out if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
                summary = rate_file(p, cdrs, target, layout=lay, batch_rows=batch_rows, progress=progress,
                                    reader=reader, reader_options=options, client=client)
                if show:
                    _show_records(summary.outputs)
        except (IntakeError, ClusterError) as e:
            echo_err(f"error: {e}")
            raise typer.Exit(1) from None
    typer.echo(summary.text())
    if out is not None:
        typer.echo(f"wrote {summary.outputs['rated']}, {summary.outputs['rejects']}, "
                   f"{summary.outputs['record_charges']} (per-record charges), {summary.outputs['summary']}")
    raise typer.Exit(0 if summary.reconciles() else 3)


def _show_records(outputs: dict[str, str]) -> None:
    """Print the first SHOW_ROWS rated records, per-record charges and rejects of ``icdsl rate`` as
    aligned text tables (``--show``)."""
    # lazy: this command needs pyarrow: loaded when it runs, not at every `icdsl` start
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    for title, key, columns in (("rated records", "rated", SHOW_RATED),
                                ("per-record charges", "record_charges", SHOW_CHARGES),
                                ("rejects", "rejects", SHOW_REJECTS)):
        path = Path(outputs[key])
        table = pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)
        names = [c for c in columns if c in table.column_names]
        n = table.num_rows
        if n == 0 and key == "record_charges":
            continue
        typer.echo(f"{title}: {n:,}" + (f" (the first {SHOW_ROWS} shown)" if n > SHOW_ROWS else ""))
        if n == 0:
            continue
        rows = table.slice(0, SHOW_ROWS).select(names).to_pylist()
        cells = [names] + [["" if r[c] is None else str(r[c]) for c in names] for r in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(names))]
        for row in cells:
            typer.echo("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


BAR_RECORDS = 200_000  # a file of fewer records is rated before a progress bar would be read
BAR_BYTES = 16 * 2**20  # a CSV file's size below which it has fewer (about 80 bytes a record)


@contextlib.contextmanager
def _progress_bar(cdrs: Path, total: int | None):
    """A progress callback of ``rate_file``: a bar for a large file, nothing for a small one
    (rich is then not imported: a small file's whole command takes less than its import)."""
    large = total >= BAR_RECORDS if total is not None else _size(cdrs) >= BAR_BYTES
    if not large:
        yield lambda _batch_read, _read_so_far: None
        return
    # lazy: rich's progress bar: loaded for a large file only, not at every `icdsl rate`
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    count = "{task.completed:,}/{task.total:,} records" if total else "{task.completed:,} records"
    with Progress(TextColumn("rating"), BarColumn(), TextColumn(count), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("rate", total=total)
        yield lambda _batch_read, read_so_far: bar.update(task, completed=read_so_far)


def _size(path: Path) -> int:
    try:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    except OSError:
        return 0


def _count_rows(path: Path) -> int | None:
    if path.suffix.lower() == ".parquet":
        try:
            # lazy: this command needs pyarrow: loaded when it runs, not at every `icdsl` start
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        except Exception:
            return None
    return None


@app.command()
def plugins() -> None:
    """List the plugins loaded (built-in and installed), their versions and what they provide."""
    # lazy: making the manager imports every plugin: only this command needs them at start
    from icdsl.plugins import all_problems, default_plugin_manager, describe_plugins

    pm = default_plugin_manager()
    typer.echo(describe_plugins(pm), nl=False)
    raise typer.Exit(1 if all_problems(pm) else 0)


@app.command()
def tui(folder: Path = typer.Argument(Path("."), help="The project folder: rule files, decks, traffic."),
        db: str | None = typer.Option(None, "--db", "--store",
                                      help="A billing store (database URL or SQLite file) whose finalized and "
                                           "draft cycles the dashboard shows; read, never created or upgraded."),
        data: str | None = typer.Option(None, "--data", help="The store's Parquet folder (default: $ICDSL_DATA, "
                                                             "else icdsl-data next to the SQLite file)."),
        months: int = typer.Option(12, "--months", min=1, help="Months of the store's cycles to read.")) -> None:
    """Open the analyst's terminal: edit rules with live diagnostics, see the plan, explain records,
    simulate billing cycles, compare versions (what-if), drill into lines, see the dashboard
    (of a store with --db) and reconcile partners' invoices."""
    if not folder.is_dir():
        echo_err(f"error: {folder} is not a folder")
        raise typer.Exit(2)
    # lazy: this command needs lark, textual: loaded when it runs, not at every `icdsl` start
    from icdsl.tui.app import run

    run(folder, db=db, data_dir=data, months=months)


@app.command()
def lsp() -> None:
    """Run the language server over stdio, for editors: diagnostics as you type, hover, completion,
    definitions and references, formatting, fixes (docs/editors.md)."""
    # lazy: this command needs pygls and lark: loaded when it runs, not at every `icdsl` start
    from icdsl.lsp.server import run

    run()


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"icdsl {__version__}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        echo_err("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # a bug, never the user's mistake: say so plainly
        if os.environ.get("ICDSL_DEBUG"):
            raise
        echo_err(f"internal error: {type(e).__name__}: {e}\n"
                  "This is a bug in icdsl, not in your files. Run again with ICDSL_DEBUG=1 for the details.")
        sys.exit(3)


if __name__ == "__main__":
    main()
