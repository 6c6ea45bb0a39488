"""``icdsl partner-invoice``: partners' invoices in (import, list, show).

A partner's file that cannot be read (a located problem per line: file, line or element,
field, what to do), an unknown partner or layout, or an invoice number already imported with
other content is a message and exit code 1; a file or option missing is exit code 2 (as the
other commands); never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from icdsl.cli.billing import DATA_HELP, DB_HELP, _load_quietly, _reader_options, opened
from icdsl.cli.common import app, echo_err, existing, table_console
from icdsl.cli.recon import RULES_HERE_HELP, project_plan

partner_invoice_app = typer.Typer(help="Partners' invoices to us: import (UBL 2.1 or CSV, with their CDR detail), "
                                  "list, show. Imported invoices are kept as received and never altered.",
                                  no_args_is_help=True)
app.add_typer(partner_invoice_app, name="partner-invoice")


def _db() -> Any:
    return typer.Option(None, "--db", envvar="ICDSL_DB", help=DB_HELP, show_envvar=False)


def _data() -> Any:
    return typer.Option(None, "--data", envvar="ICDSL_DATA", help=DATA_HELP, show_envvar=False)


@partner_invoice_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="The partner's invoice or credit note: UBL 2.1 XML, or CSV (--layout)."),
    partner: str = typer.Option(..., "--partner", help="Our code of the partner who sent it."),
    rules: list[Path] = typer.Option([], "--rules", help=RULES_HERE_HELP),
    layout: str | None = typer.Option(None, "--layout", help="The `invoice layout` (from the rules) of a CSV "
                                      "invoice; with a UBL invoice, its `service \"...\" as NAME` map their words."),
    detail: list[Path] = typer.Option([], "--detail", help="Their CDR detail file of this invoice (repeat)."),
    detail_format: str | None = typer.Option(None, "--detail-format", metavar="READER",
                                             help="The record reader of the detail files (default: the one that "
                                             "recognizes them: CSV with a header, Parquet)."),
    detail_layout: str | None = typer.Option(None, "--detail-layout", help="The `records` layout (from the rules) "
                                             "of the detail files."),
    detail_option: list[str] = typer.Option([], "--detail-option", metavar="KEY=VALUE",
                                            help="An option for the detail's reader (repeat)."),
    db: str | None = _db(),
    data: Path | None = _data(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Import a partner's invoice (or credit note) and its CDR detail: kept as received, hashed,
    never altered. The same file again is recognized; the same number with other content is refused."""
    # lazy: the store (sqlalchemy, pyarrow) loads when the command runs, not at every `icdsl` start
    from icdsl.billing.partner_invoices import import_partner_invoice

    existing([file, *detail])
    options = _reader_options(detail_option)
    plan, program = project_plan(rules, root)
    with opened(db, data) as store:
        _load_quietly(store, plan, program)
        report = import_partner_invoice(store, file, partner, plan, layout=layout, details=detail,
                                        detail_reader=detail_format, detail_layout=detail_layout,
                                        detail_options=options)
        typer.echo(str(report))
    raise typer.Exit(0)


@partner_invoice_app.command("list")
def list_cmd(
    partner: str | None = typer.Option(None, "--partner", help="Only this partner's."),
    db: str | None = _db(),
    data: Path | None = _data(),
) -> None:
    """The partners' invoices imported: number, period, total, lines, findings."""
    # lazy: the store (sqlalchemy, pyarrow) loads when the command runs
    from icdsl.billing.partner_invoices import partner_invoices

    with opened(db, data) as store:
        rows = partner_invoices(store, partner)
    if not rows:
        typer.echo("no partner invoices imported" + (f" for {partner}" if partner else ""))
        return
    head = ("id", "partner", "number", "issued", "period", "lines", "total", "tax", "cur", "findings", "detail")
    body = [(str(inv.id), inv.partner, inv.number + (" (credit note)" if inv.kind == "credit_note" else ""),
             str(inv.issue_date or "-"), f"{inv.period_start}..{inv.period_end}", str(len(inv.lines)),
             money(inv.total), money(inv.tax_total), inv.currency, str(len(inv.findings)),
             str(len(inv.detail_batches))) for inv in rows]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    right = {0, 5, 6, 7, 9, 10}
    for r in [head, *body]:
        typer.echo("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                   .rstrip())


def money(v: Decimal) -> str:
    """An amount as written on an invoice: at least two decimals, no trailing zeros past them."""
    return str(v.quantize(Decimal("0.01"))) if v == v.quantize(Decimal("0.01")) else str(v)


@partner_invoice_app.command("show")
def show_cmd(
    ref: str = typer.Argument(..., help="The invoice's id (from `list`) or the partner's invoice number."),
    partner: str | None = typer.Option(None, "--partner", help="The partner, when a number is not unique."),
    fmt: str = typer.Option("text", "--format", help="text, or json (the invoice, its lines and detail files)."),
    db: str | None = _db(),
    data: Path | None = _data(),
) -> None:
    """A partner's invoice: its lines, totals, findings, the file as received (sha256) and its detail."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich import box
    from rich.table import Table

    # lazy: the store (sqlalchemy, pyarrow) loads when the command runs
    from icdsl.billing.base import jsonable
    from icdsl.billing.partner_invoices import details, kept_file, load_partner_invoice

    if fmt not in ("text", "json"):
        echo_err(f"error: --format is text or json, not '{fmt}'")
        raise typer.Exit(2)
    with opened(db, data) as store:
        inv = load_partner_invoice(store, ref, partner)
        dets = details(store, inv.id or ref)
        kept = kept_file(store, inv.id or ref)
    if fmt == "json":
        doc = dataclasses.asdict(inv)
        doc["kept_as"] = str(kept)
        doc["detail_files"] = [{k: getattr(d, k) for k in (
            "id", "file_name", "sha256", "reader", "layout", "read_count", "passed_count", "rejected_count",
            "duplicate_count", "by_reason", "records_path", "rejects_path")} for d in dets]
        typer.echo(json.dumps(jsonable(doc), indent=2, ensure_ascii=False))
        return
    what = "credit note" if inv.kind == "credit_note" else "invoice"
    typer.echo(f"{inv.partner} {what} {inv.number} (id {inv.id}), issued {inv.issue_date or '-'}, "
               f"period {inv.period_start} .. {inv.period_end}, {inv.format.upper()}")
    typer.echo(f"file: {inv.source_name}, sha256 {inv.sha256}")
    typer.echo(f"kept as: {kept}")
    own = any((x.period_start, x.period_end) not in ((None, None), (inv.period_start, inv.period_end))
              for x in inv.lines)  # a period column only when a line's differs from the invoice's
    t = Table(box=box.SIMPLE_HEAD)
    cols = [("#", "right"), ("service", "left"), ("destination", "left"), ("prefix", "left"), ("band", "left")]
    cols += [("period", "left")] if own else []
    cols += [("calls", "right"), ("quantity", "right"), ("unit", "left"), ("rate", "right"), ("amount", "right")]
    for col, just in cols:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for x in inv.lines:
        period = [f"{x.period_start or ''}..{x.period_end or ''}"] if own else []
        t.add_row(str(x.number), x.service, x.destination or "", x.prefix or "", x.band or "", *period,
                  "" if x.calls is None else str(x.calls), "" if x.quantity is None else str(x.quantity),
                  x.unit or "", "" if x.rate is None else str(x.rate), money(x.amount))
    table_console().print(t)
    lines_sum = sum((x.amount for x in inv.lines), Decimal(0))
    typer.echo(f"lines: {len(inv.lines)}, their sum {money(lines_sum)} {inv.currency}")
    typer.echo(f"total before tax (as stated): {money(inv.total)} {inv.currency}")
    typer.echo(f"tax: {money(inv.tax_total)} {inv.currency}; total with tax: {money(inv.total + inv.tax_total)} "
               f"{inv.currency}")
    for f in inv.findings:
        typer.echo(f"finding: {f}")
    for d in dets:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((d.by_reason or {}).items()))
        typer.echo(f"detail {d.id}: {d.file_name} ({d.reader}), sha256 {d.sha256}: read {d.read_count}, passed "
                   f"{d.passed_count}, rejected {d.rejected_count}, duplicates {d.duplicate_count}"
                   + (f" ({reasons})" if reasons else ""))
    if not dets:
        typer.echo("detail: none (import their CDRs with --detail FILE)")
