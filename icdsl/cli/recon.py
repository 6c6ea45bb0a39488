"""``icdsl reconcile P PERIOD``: a partner's invoice against our view of the same traffic.

A thin face over :func:`icdsl.billing.reconcile.reconcile_partner` (the store's side) and
:mod:`icdsl.outputs.reconciliation` (table, CSV, JSON, PDF). Exit codes: 0 when every line is
within the agreement's tolerances, 1 when some line or record differs or the reconciliation
cannot be made (the message says why), 2 for a wrong usage.
"""

from __future__ import annotations

from pathlib import Path

import typer

from icdsl.cli.billing import RULES_HELP, _data_option, _db_option, _plan, opened, user_errors
from icdsl.cli.common import app, echo_err, table_console

FORMATS = ("table", "csv", "json", "pdf")

RULES_HERE_HELP = RULES_HELP
project_plan = _plan  # the plan of --rules, or of the current folder when it holds rule files


@app.command("reconcile")
def reconcile_cmd(
    partner: str = typer.Argument(..., help="Partner code."),
    period: str = typer.Argument(..., help="Period: a month (2026-03) or a day of it, in the partner's time zone."),
    invoice: str | None = typer.Option(None, "--invoice", help="Their invoice number (default: the latest "
                                       "imported invoice of the period)."),
    records: bool = typer.Option(False, "--records", help="Show (or write) the records that differ, where their "
                                 "CDR detail was imported."),
    fmt: str = typer.Option("table", "--format", help="table, csv, json or pdf."),
    out: Path | None = typer.Option(None, "-o", "--out", help="File to write (default: the screen; a PDF: "
                                    "reconciliation-PARTNER-NUMBER.pdf in the working folder)."),
    rules: list[Path] = typer.Option([], "--rules", help=RULES_HERE_HELP),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Compare a partner's invoice with our own view of the same traffic: per service,
    destination and band (calls, quantity, amount on both sides), and record by record where
    their CDR detail was imported, within the tolerances of the agreement (`reconcile { ... }`)."""
    # lazy: lxml (outputs): loaded when this command runs, not at every `icdsl` start
    from icdsl.outputs.reconciliation import (
        default_name,
        dumps_csv,
        dumps_json,
        rich_tables,
        write_reconciliation,
    )


    if fmt not in FORMATS:
        echo_err(f"error: unknown format '{fmt}': use {', '.join(FORMATS)}")
        raise typer.Exit(2)
    # lazy: the store (sqlalchemy) loads when the command runs, not at every `icdsl` start
    from icdsl.billing.reconcile import reconcile_partner

    plan, program = project_plan(rules, root)
    with opened(db, data) as store, user_errors():
        report = store.load_plan(plan, program)
        if report.changed:
            typer.echo(f"loaded: {report}")
        r = reconcile_partner(store, partner, period, invoice, plan=plan, records=records or fmt != "table")
    if fmt == "table":
        console = table_console()
        for part in rich_tables(r, records=records):
            console.print(part)
    elif fmt == "pdf" or out is not None:
        path = write_reconciliation(r, out or Path(default_name(r, fmt)), fmt, records=records)
        typer.echo(f"wrote {path}")
    else:
        typer.echo(dumps_csv(r, records=records) if fmt == "csv" else dumps_json(r, records=records), nl=False)
    differs = bool(r.differing) or any(n for k, n in r.record_counts.items() if k != "matched")
    if differs:
        raise typer.Exit(1)
