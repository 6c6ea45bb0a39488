"""``icdsl assure PERIOD``: revenue assurance over the store (leakage and expected versus
billed traffic). A thin face over :mod:`icdsl.billing.assurance` (reading) and
:mod:`icdsl.assure` (the checks).

Exit codes: 0 no error finding (warnings may be listed), 1 at least one error finding (a
billing error or revenue lost: records no agreement prices, fees after termination, traffic
after an agreement ended), 2 usage errors.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import typer

from icdsl.cli.billing import RULES_HELP, _data_option, _db_option, _plan, opened, user_errors
from icdsl.cli.common import app, echo_err, table_console
from icdsl.safecsv import Writer

FORMATS = ("table", "csv", "json")
COLUMNS = ("severity", "code", "partner", "subject", "day", "until", "count", "amount", "currency", "expected",
           "actual", "deviation", "message", "action")


@app.command("assure")
def assure_cmd(
    period: str = typer.Argument(..., help="The period: 2026-03 (month), 2026-W10, 2026-Q1, 2026-03-01..2026-03-15."),
    partner: str | None = typer.Option(None, "--partner", help="Only this partner."),
    within: int = typer.Option(90, "--within", metavar="DAYS", help="Report agreements and commitments ending "
                               "within DAYS after the period (default 90)."),
    own_prefix: list[str] = typer.Option([], "--own-prefix", help="A number prefix of our own network (repeat): "
                                         "inbound traffic to other numbers is compared with suppliers' prices."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    rules: list[Path] = typer.Option([], "--rules", help=RULES_HELP),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Revenue assurance: unbilled inventory, fees after termination, agreements and commitments
    ending, traffic no agreement prices, destinations sold below cost, and each partner's daily
    traffic against its baseline (median and MAD by weekday). Each finding says what to do."""
    if fmt not in FORMATS:
        echo_err(f"error: --format is one of {', '.join(FORMATS)}, not '{fmt}'")
        raise typer.Exit(2)
    if within < 0:
        echo_err(f"error: --within is a number of days, 0 or more, not {within}")
        raise typer.Exit(2)
    plan, program = _plan(rules, root)
    # lazy: the checks' store side needs numpy, pyarrow, sqlalchemy: loaded when the command runs
    from icdsl.billing.assurance import Policy, assure

    policy = Policy(within=within, own_prefixes=tuple(p.lstrip("+") for p in own_prefix))
    with opened(db, data) as store, user_errors():
        loaded = store.load_plan(plan, program)
        if loaded.changed:  # on stderr: stdout is the report (JSON or CSV read by programs)
            echo_err(f"loaded: {loaded}")
        report = assure(store, plan, period, partner=partner, policy=policy)
    errors = sum(1 for f in report.findings if f.severity == "error")
    if fmt == "json":
        typer.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    elif fmt == "csv":
        buf = io.StringIO()
        w = Writer(buf)
        w.writerow(COLUMNS)
        for f in report.findings:
            d = f.as_dict()
            w.writerow([d[c] for c in COLUMNS])
        typer.echo(buf.getvalue(), nl=False)
    else:
        _table(report)
    raise typer.Exit(1 if errors else 0)


def _table(report) -> None:
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    console = table_console(160)
    console.print(f"revenue assurance {report.period} ({report.start} .. {report.end - timedelta(days=1)}): "
                  f"{len(report.partners)} partner(s), {report.series} traffic series, history from "
                  f"{report.history_from}", highlight=False, markup=False)
    if not report.findings:
        console.print("no findings", highlight=False)
        return
    table = Table(show_lines=True)
    for col, just in (("severity", "left"), ("code", "left"), ("partner", "left"), ("subject", "left"),
                      ("when", "left"), ("size", "right"), ("finding and what to do", "left")):
        table.add_column(col, justify=just, overflow="fold")
    for f in report.findings:
        when = "" if f.day is None else str(f.day) + (f"..{f.until}" if f.until and f.until != f.day else "")
        size = []
        if f.count is not None:
            size.append(str(f.count))
        if f.amount is not None:
            size.append(f"{f.amount} {f.currency}")
        if f.deviation is not None:
            size.append(f"{f.deviation} MADs")
        table.add_row(f.severity, f.code, f.partner, f.subject, when, "\n".join(size),
                      f"{f.message}\n-> {f.action}")
    console.print(table)
    by = {s: sum(1 for f in report.findings if f.severity == s) for s in ("error", "warning", "info")}
    console.print(f"{by['error']} error(s), {by['warning']} warning(s), {by['info']} info", highlight=False)
