"""``icdsl margin PERIOD``: revenue, cost and margin of the records we sold, and what-ifs.

A thin face over :mod:`icdsl.routing.margin`: the sold records come from a rated file of
``icdsl rate`` (``--rated``, with the traffic it was rated from, ``--cdrs``, for the called
number and the supplier column; both read side by side, a batch at a time, and costed and
summed batch by batch: :func:`icdsl.routing.margin.sold_batches`) or from the rated records of
a store's cycles (``--db``).
Negative-margin destinations are findings in the report (exit code 0); 1 when the margins cannot
be worked out (the message says why), 2 for a wrong usage.
"""

from __future__ import annotations

import calendar
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import typer

from icdsl.cli.billing import opened
from icdsl.cli.common import app, build_or_exit, echo_err
from icdsl.cli.routing import policy_or_exit

FORMATS = ("table", "csv", "json")
BY = ("partner", "destination", "supplier", "day")


def period_days(text: str) -> tuple[date, date]:
    """A month (2026-03) or a day (2026-03-02) as (first day, last day), UTC days."""
    try:
        if len(text) == 7:
            y, m = int(text[:4]), int(text[5:7])
            if text[4] != "-":
                raise ValueError
            return date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])
        d = date.fromisoformat(text)
        return d, d
    except (ValueError, IndexError):
        echo_err(f"error: period {text!r} is neither a month (YYYY-MM) nor a day (YYYY-MM-DD)")
        raise typer.Exit(2) from None


def _decks(specs: list[str], plan: Any, policy: Any) -> dict[str, Any]:
    from icdsl.routing.margin import MarginError, read_supplier_deck  # lazy: polars and pyarrow

    out = {}
    for spec in specs:
        code, sep, path = spec.partition("=")
        if not sep or not code.strip() or not path.strip():
            echo_err(f"error: --supplier-deck {spec!r}: write PARTNER=path/to/deck.csv")
            raise typer.Exit(2)
        p = Path(path.strip())
        if not p.is_file():
            echo_err(f"error: --supplier-deck {code}: cannot find the deck {p}")
            raise typer.Exit(2)
        try:
            out[code.strip()] = read_supplier_deck(plan, policy, code.strip(), p)
        except MarginError as e:
            echo_err(f"error: {e}")
            raise typer.Exit(1) from None
    return out


@app.command("margin")
def margin_cmd(
    period: str = typer.Argument(..., help="A month (2026-03) or a day (2026-03-02), UTC days of the records' start."),
    paths: list[Path] = typer.Argument(None, help="Rule files or folders (default: the current folder)."),
    rated: Path | None = typer.Option(None, "--rated", help="Rated records of 'icdsl rate' (Parquet or CSV)."),
    cdrs: Path | None = typer.Option(None, "--cdrs", help="The traffic they were rated from: its b_number and "
                                     "supplier (or route, out_trunk) columns, joined by id."),
    db: str | None = typer.Option(None, "--db", envvar="ICDSL_DB", show_envvar=False,
                                  help="Database URL: the rated records of the store's cycles of the period."),
    data: Path | None = typer.Option(None, "--data", envvar="ICDSL_DATA", show_envvar=False,
                                     help="The store's data folder (with --db)."),
    by: str = typer.Option("destination", "--by", help="partner, destination, supplier or day."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    policy: str | None = typer.Option(None, "--policy", help="The lcr policy: its currency, FX and the LCR "
                                      "choice for records that do not name their supplier."),
    supplier_deck: list[str] = typer.Option([], "--supplier-deck", metavar="PARTNER=DECK.csv",
                                            help="What-if: price the traffic with this new deck of the supplier "
                                                 "and show the margin difference per destination."),
    records_out: Path | None = typer.Option(None, "--records", help="Write every record's revenue, supplier, "
                                            "cost and margin to this file (.parquet or .csv)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the report to this file."),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Put on each record we sold the cost of carrying it (its supplier's deck, or the LCR choice)
    and report revenue, cost and margin by partner, destination, supplier or day."""
    if by not in BY:
        echo_err(f"error: --by {by!r}: choose one of {', '.join(BY)}")
        raise typer.Exit(2)
    if fmt not in FORMATS:
        echo_err(f"error: --format {fmt!r}: choose one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if rated is not None and db is not None and db == os.environ.get("ICDSL_DB"):
        db = None  # the store named by the environment: --rated FILE, given here, says where the records are
    if (rated is None) == (db is None):
        echo_err("error: give the sold records either with --rated FILE or from a store with --db")
        raise typer.Exit(2)
    first, last = period_days(period)
    plan = build_or_exit(list(paths or [Path(".")]), root)
    chosen = policy_or_exit(plan, policy)
    import polars as pl  # lazy: the margins run on columns

    from icdsl.routing import margin as M  # lazy: polars, numpy and pyarrow

    decks = _decks(supplier_deck, plan, chosen)
    for path, what in ((rated, "rated records"), (cdrs, "traffic file")):
        if path is not None and not path.is_file():
            echo_err(f"error: cannot find the {what} {path}")
            raise typer.Exit(1)
    sink = M.RecordsFile(records_out) if records_out is not None else None
    try:
        if rated is not None:  # read and costed batch by batch: the memory of a batch, not of the files
            result, after = M.streamed_margins(plan, M.sold_batches(rated, cdrs), chosen, first, last, decks,
                                                 sink, (by,))
        else:
            from icdsl.billing.margin import sold_records  # lazy: the store brings sqlalchemy

            with opened(db, data) as store:
                table = sold_records(store, first, last)
            result, after = M.streamed_margins(plan, [table], chosen, first, last, decks, sink, (by,))
    except M.MarginError as e:
        if sink is not None:
            sink.close()
        echo_err(f"error: {e}")
        raise typer.Exit(1) from None
    except OSError as e:  # a data file of the store missing or changed
        if sink is not None:
            sink.close()
        echo_err(f"error: {e}; give the store's own data folder with --data (by default: beside the database)")
        raise typer.Exit(1) from None
    for note in result.notes:
        echo_err(f"note: {note}")
    shown = after if after is not None else result
    report = M.money_columns(shown.report(by)).with_columns(pl.lit(shown.currency).alias("currency"))
    findings = shown.findings()
    totals = shown.totals()
    whatif = M.money_columns(M.compare(result, after)) if after is not None else None
    if fmt == "csv":
        text = (whatif if whatif is not None else report).write_csv()
    elif fmt == "json":
        text = json.dumps({
            "period": period, "currency": shown.currency, "by": by,
            "totals": {k[:-2] if k.endswith("_n") else k: M.money_text(v) if k.endswith("_n") else v
                       for k, v in totals.items()},
            "rows": report.to_dicts(),
            "what_if": whatif.to_dicts() if whatif is not None else None,
            "findings": [{"code": f.code, "subject": f.subject, "size": M.money_text(f.size_n)
                          if f.code == "negative-margin" else f.size_n, "records": f.records,
                          "message": f.message, "help": f.help} for f in findings],
            "notes": shown.notes,
        }, indent=2, default=str) + "\n"
    else:
        text = M.to_text(report, totals, shown.currency, findings, whatif, period, by,
                         [f"{c}={p}" for c, p in (s.partition("=")[::2] for s in supplier_deck)])
    if output is not None:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}: {report.height} rows by {by}, {len(findings)} finding(s)")
    else:
        typer.echo(text, nl=False)
    if sink is not None:
        typer.echo(f"wrote {records_out}: {sink.finish()} records", err=output is None)
