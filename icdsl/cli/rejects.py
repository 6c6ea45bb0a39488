"""``icdsl rejects``: the quarantine of records that were not billed (intake rejects, a cycle's
rating rejects, records of partners unknown at ingest): a summary by reason, partner and file,
the records themselves, an export, and their resubmission once the rules are fixed. A thin
face over :mod:`icdsl.billing.quarantine` and :mod:`icdsl.billing.resubmit` (the logic) and :mod:`icdsl.outputs.rejects` (files)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from icdsl.cli.billing import _data_option, _db_option, _load_quietly, _plan, opened, user_errors
from icdsl.cli.common import app, echo_err, table_console
from icdsl.safecsv import Writer

if TYPE_CHECKING:
    from rich.console import Console

rejects_app = typer.Typer(help="The quarantine: rejected records by reason, partner and file; export; resubmit.",
                          invoke_without_command=True)
app.add_typer(rejects_app, name="rejects")

LIST_FORMATS = ("table", "csv", "json")
DETAIL_COLUMNS = ("state", "reason", "partner", "file", "row", "id", "start", "detail")


def _reason() -> Any:
    return typer.Option(None, "--reason", help="Only this reason (no_rate, bad_timestamp, unknown_partner...).")


def _partner() -> Any:
    return typer.Option(None, "--partner", help="Only this partner's records.")


def _file() -> Any:
    return typer.Option(None, "--file", help="Only records of this traffic file (its name, or its batch as #N).")


def _period() -> Any:
    return typer.Option(None, "--period", help="Only records starting in this period (2026-03, 2026-W10...), "
                        "in their partner's time zone.")


def _rules() -> Any:
    return typer.Option([], "--rules", help="Rule files or folders: their records layouts name the columns of "
                        "partner, start and b_number in intake rejects (default: the columns of those names).")


def _plan_if(rules: list[Path]) -> Any:
    return _plan(rules, None)[0] if rules else None


def _state() -> Any:
    return typer.Option(None, "--state", help="Only 'open' or 'resubmitted' entries.")


def _filters(reason: str | None, partner: str | None, file: str | None, period: str | None,
             state: str | None = None) -> Any:
    # lazy: the quarantine needs pyarrow and sqlalchemy: loaded when the command runs
    from icdsl.billing.quarantine import Filters

    if state is not None and state not in ("open", "resubmitted"):
        echo_err(f"error: --state is 'open' or 'resubmitted', not '{state}'")
        raise typer.Exit(2)
    return Filters(reason=reason, partner=partner, file=file, period=period, state=state)


def _check_format(fmt: str) -> None:
    if fmt not in LIST_FORMATS:
        echo_err(f"error: --format is one of {', '.join(LIST_FORMATS)}, not '{fmt}'")
        raise typer.Exit(2)


def _console(width: int = 120) -> Console:
    return table_console(width)


def _reconciliation(q: Any) -> list[str]:
    out = [f"intake rejects: {q.intake_found} in the rejects files, {q.intake_expected} counted by the intake batches"
           + ("" if q.intake_found == q.intake_expected else "  MISMATCH"),
           f"rating rejects: {q.rating_found} in the cycles' rejects files, {q.rating_expected} counted by the cycles"
           + ("" if q.rating_found == q.rating_expected else "  MISMATCH")]
    return out


@rejects_app.callback()
def rejects_summary(
    ctx: typer.Context,
    reason: str | None = _reason(),
    partner: str | None = _partner(),
    file: str | None = _file(),
    period: str | None = _period(),
    state: str | None = _state(),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    rules: list[Path] = _rules(),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """The quarantine by reason, partner and file: open and resubmitted records (then: list, export, resubmit)."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    if ctx.invoked_subcommand is not None:
        return
    _check_format(fmt)
    # lazy: the quarantine needs pyarrow and sqlalchemy: loaded when the command runs
    from icdsl.billing.quarantine import listing

    filters = _filters(reason, partner, file, period, state)
    with opened(db, data) as store, user_errors():
        q = listing(store, filters, _plan_if(rules))
    rows = q.summary()
    if fmt == "json":
        typer.echo(json.dumps({"summary": rows, "open": sum(r["open"] for r in rows),
                               "resubmitted": sum(r["resubmitted"] for r in rows), "outcomes": q.outcomes(),
                               "reconciles": q.reconciles}, indent=2))
        raise typer.Exit(0 if q.reconciles else 3)
    if fmt == "csv":
        _echo_csv(rows, ("reason", "partner", "file", "open", "resubmitted", "total"))
        return
    table = Table(title="rejected records (the quarantine)")
    for col in ("reason", "partner", "file", "open", "resubmitted", "total"):
        table.add_column(col, justify="right" if col in ("open", "resubmitted", "total") else "left")
    for r in rows:
        table.add_row(r["reason"], r["partner"] or "-", r["file"], str(r["open"]), str(r["resubmitted"]),
                      str(r["total"]))
    console = _console()
    console.print(table)
    n_open, n_res = sum(r["open"] for r in rows), sum(r["resubmitted"] for r in rows)
    outcomes = ", ".join(f"{k} {v}" for k, v in q.outcomes().items())
    console.print(f"open {n_open}, resubmitted {n_res}" + (f" ({outcomes})" if outcomes else ""), highlight=False,
                  markup=False)
    dups = sum(r["open"] for r in rows if r["reason"] == "duplicate_id")
    if dups:
        console.print(f"of which duplicates {dups}: not resubmittable (the first record with the id was kept)",
                      highlight=False, markup=False)
    for line in _reconciliation(q):
        console.print(line, highlight=False, markup=False)
    if not rows:
        console.print("no rejected records" + (" match" if filters.as_dict() else ""), highlight=False)
    if not q.reconciles:  # a file that does not hold what its row says: a bug or a damaged data folder
        raise typer.Exit(3)


def _echo_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    buf = io.StringIO()
    w = Writer(buf)
    w.writerow(columns)
    w.writerows([r.get(c) for c in columns] for r in rows)
    typer.echo(buf.getvalue(), nl=False)


@rejects_app.command("list")
def rejects_list(
    reason: str | None = _reason(),
    partner: str | None = _partner(),
    file: str | None = _file(),
    period: str | None = _period(),
    state: str | None = _state(),
    limit: int = typer.Option(50, "--limit", help="At most this many records in a table (0: all)."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    rules: list[Path] = _rules(),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """The rejected records themselves: state, reason, partner, file, row, id, start, detail."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    _check_format(fmt)
    # lazy: the quarantine needs pyarrow and sqlalchemy: loaded when the command runs
    from icdsl.billing.quarantine import COLUMNS, listing

    filters = _filters(reason, partner, file, period, state)
    with opened(db, data) as store, user_errors():
        q = listing(store, filters, _plan_if(rules))
    rows = [e.as_row() for e in q.entries]
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if fmt == "csv":
        _echo_csv(rows, COLUMNS)
        return
    shown = rows if limit <= 0 else rows[:limit]
    table = Table(title=f"rejected records ({len(rows)}; starts in UTC)")
    widest = {"file": 22, "id": 16}  # the detail takes the rest, wrapped
    for col in DETAIL_COLUMNS:
        table.add_column(col, justify="right" if col == "row" else "left", max_width=widest.get(col),
                         overflow="fold" if col == "detail" else "ellipsis", no_wrap=col != "detail")
    for r in shown:
        state = "open" if r["resubmission"] is None else f"resub. #{r['resubmission']}"
        detail = r["detail"] if r["resubmission"] is None else f"-> {r['outcome']}" + (
            f"; {r['detail']}" if r["detail"] else "")
        start = r["start"].replace("T", " ").removesuffix("Z") if r["start"] else "-"  # UTC, as the title says
        table.add_row(state, r["reason"], r["partner"] or "-", r["file"], "-" if r["row"] is None else str(r["row"]),
                      r["id"] or "-", start, detail)
    console = _console(160)
    console.print(table)
    if len(shown) < len(rows):
        console.print(f"... {len(rows) - len(shown)} more: --limit 0 for all, or `icdsl rejects export -o FILE.csv`",
                      highlight=False, markup=False)


@rejects_app.command("export")
def rejects_export(
    out: Path = typer.Option(..., "-o", "--out", help="The file to write: FILE.csv or FILE.parquet."),
    reason: str | None = _reason(),
    partner: str | None = _partner(),
    file: str | None = _file(),
    period: str | None = _period(),
    state: str | None = _state(),
    rules: list[Path] = _rules(),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Export the rejected records, every column and their raw content: CSV (formulas neutralized) or Parquet."""
    # lazy: lxml (outputs): loaded when this command runs, not at every `icdsl` start
    # lazy: the quarantine needs pyarrow and sqlalchemy: loaded when the command runs
    from icdsl.billing.quarantine import COLUMNS, listing
    from icdsl.outputs.rejects import export_format, write_rejects

    try:
        export_format(out)
    except ValueError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(2) from None
    filters = _filters(reason, partner, file, period, state)
    with opened(db, data) as store, user_errors():
        q = listing(store, filters, _plan_if(rules))
    t = q.table()
    path = write_rejects(t.to_pylist(), COLUMNS, out, schema=t.schema)
    typer.echo(f"wrote {t.num_rows} rejected record(s) to {path}")


@rejects_app.command("resubmit")
def rejects_resubmit(
    rules: list[Path] = typer.Option([], "--rules", help="Rule files or folders (repeat --rules for several)."),
    reason: str | None = _reason(),
    partner: str | None = _partner(),
    file: str | None = _file(),
    period: str | None = _period(),
    layout: str | None = typer.Option(None, help="Read resubmitted intake rejects with this layout of the rules "
                                      "(default: the layout their file was ingested with)."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Resubmit open rejects once the rules are fixed: intake rejects are ingested again, cycles holding the others reopened."""
    # lazy: the quarantine needs pyarrow and sqlalchemy: loaded when the command runs
    from icdsl.billing.resubmit import resubmit

    plan, program = _plan(rules, root)
    filters = _filters(reason, partner, file, period)
    with opened(db, data) as store, user_errors():
        _load_quietly(store, plan, program)
        rep = resubmit(store, plan, filters, layout=layout)
    typer.echo(str(rep))
