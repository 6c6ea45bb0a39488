"""``icdsl lcr``: the least-cost routing table of a day, as text, CSV or a switch's tables."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import typer

from icdsl.cli.billing import opened
from icdsl.cli.common import app, build_or_exit, echo_err

FORMATS = ("table", "csv", "freeswitch", "kamailio")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        echo_err(f"error: --date {text!r} is not a date: write YYYY-MM-DD")
        raise typer.Exit(2) from None


def policy_or_exit(plan: Any, name: str | None) -> Any:
    """The lcr policy of ``--policy NAME`` (:func:`icdsl.routing.lcr.choose_policy`); a wrong or
    missing name is a usage error (exit 2) saying what to give."""
    # lazy: the routing engine brings polars and pyarrow
    from icdsl.routing.lcr import PolicyChoiceError, choose_policy

    try:
        return choose_policy(plan, name)
    except PolicyChoiceError as e:
        echo_err(f"error: {e.args[0].replace('name one', 'give one with --policy')}")
        raise typer.Exit(2) from None


def _records(path: Path) -> Any:
    import polars as pl  # lazy: columns only when call records are read

    try:
        if path.suffix.lower() == ".parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError, UnicodeDecodeError) as e:
        echo_err(f"error: cannot read the call records {path}: {str(e).splitlines()[0]}")
        raise typer.Exit(1) from None


def _numbers(frame: Any) -> Any:
    """Durations and delays of a CSV read as text, as numbers (a bad value is a located error)."""
    import polars as pl  # lazy: columns only when call records are read

    for col in ("duration_s", "pdd_ms"):
        if col in frame.columns and frame.schema[col] == pl.Utf8:
            parsed = frame[col].cast(pl.Int64, strict=False)
            bad = frame.with_row_index("line", 2).filter(parsed.is_null() & frame[col].is_not_null())
            if len(bad):
                row = bad.row(0, named=True)
                echo_err(f"error: line {row['line']}: {col} {row[col]!r} is not a whole number")
                raise typer.Exit(1)
            frame = frame.with_columns(parsed.alias(col))
    return frame


@app.command()
def lcr(
    paths: list[Path] = typer.Argument(None, help="Rule files or folders (default: the current folder)."),
    day: str = typer.Option(..., "--date", help="The day whose agreements and rates are in force (YYYY-MM-DD)."),
    policy: str | None = typer.Option(None, "--policy", help="The lcr policy to apply (default: the only one)."),
    fmt: str = typer.Option("table", "--format", help="table, csv, freeswitch (mod_lcr SQL) or kamailio (lcr SQL)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the table to this file."),
    previous: Path | None = typer.Option(None, "--previous", help="A CSV table written before: show what changed."),
    excluded: Path | None = typer.Option(None, "--excluded", help="Write the suppliers left out, and why, as CSV."),
    records: Path | None = typer.Option(None, "--records", help="Outbound call records (CSV or Parquet) to measure "
                                        "route quality from."),
    from_store: bool = typer.Option(False, "--from-store", help="Measure route quality from the store's outbound "
                                    "records (with --db, --data)."),
    db: str | None = typer.Option(None, "--db", envvar="ICDSL_DB", help="Database URL (with --from-store).",
                                  show_envvar=False),
    data: Path | None = typer.Option(None, "--data", envvar="ICDSL_DATA", help="Data folder (with --from-store).",
                                     show_envvar=False),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
    limit: int = typer.Option(50, "--limit", help="Destinations shown by --format table on the terminal."),
) -> None:
    """Rank the suppliers of every destination by the cost of a reference call, as an lcr policy says."""
    if fmt not in FORMATS:
        echo_err(f"error: --format {fmt!r}: choose one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    when = _day(day)
    plan = build_or_exit(list(paths or [Path(".")]), root)
    chosen = policy_or_exit(plan, policy)
    from icdsl.routing import export  # lazy: the routing engine brings polars and pyarrow
    from icdsl.routing.diff import compare, read_previous, summary  # lazy: polars
    from icdsl.routing.lcr import LcrError, build_table  # lazy: polars, numpy and pyarrow
    from icdsl.routing.quality import QualityError  # lazy: polars

    calls = None
    if records is not None:
        calls = _numbers(_records(records))
    elif from_store:
        from icdsl.billing.routing import outbound_records  # lazy: the store brings sqlalchemy

        with opened(db, data) as store:
            calls = outbound_records(store, when, chosen.window_days)
    try:
        table = build_table(plan, chosen, when, records=calls)
        before = read_previous(previous) if previous is not None else None
    except LcrError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(1) from None
    except QualityError as e:
        echo_err(f"error: the call records{f' {records}' if records else ''}: {e}")
        raise typer.Exit(1) from None
    if calls is None and any(lim.measure in ("asr", "acd", "pdd") for lim in chosen.limits):
        echo_err("note: no call records given (--records or --from-store): every route is unmeasured")
    for note in table.notes:
        echo_err(f"note: {note}")
    if fmt == "table":
        text = export.to_text(table, None if output is not None else limit)
    elif fmt == "csv":
        text = export.to_csv(table)
    elif fmt == "freeswitch":
        text = export.to_freeswitch(table)
    else:
        text = export.to_kamailio(table)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}: {table.routes.height} routes for {table.destinations.height} destinations, "
                   f"{len(table.bands)} band(s), {len(table.suppliers)} supplier(s)")
    else:
        typer.echo(text, nl=False)
    if excluded is not None:
        excluded.write_text(export.excluded_csv(table), encoding="utf-8")
        typer.echo(f"wrote {excluded}: {table.excluded.height} routes left out", err=output is None)
    if before is not None:
        changes = compare(before, table)
        lines = [f"changes against {previous}: {summary(changes)}"] + [str(c) for c in changes]
        typer.echo("\n".join(lines), err=output is None)
