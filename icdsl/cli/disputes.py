"""``icdsl dispute``: disputes of partners' invoices, opened from a reconciliation, sent, accepted
(a partner's credit note), rejected or withdrawn; shown, listed, exported (PDF, CSV, JSON) and the
dispute position of a partner's period. A thin face over :mod:`icdsl.billing.disputes` (the
logic) and :mod:`icdsl.outputs.disputes` (files).

Where it meets the parts built beside it (one place each, :func:`reconcile` and
:func:`credit_note`): the reconciliation engine (``icdsl.billing.reconcile.reconcile_partner``)
and the partner-invoice import (``icdsl.billing.partner_invoices.load_partner_invoice``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from icdsl.cli.billing import _data_option, _db_option, _load_quietly, opened, user_errors
from icdsl.cli.common import app, echo_err, table_console
from icdsl.cli.recon import project_plan

dispute_app = typer.Typer(help="Disputes of partners' invoices: open (from a reconciliation), send, accept, reject, "
                          "withdraw; list, show, export; the dispute position of a period.", no_args_is_help=True)
app.add_typer(dispute_app, name="dispute")

STATES = ("open", "sent", "partially_accepted", "accepted", "rejected", "withdrawn")


# --------------------------------------------------------------------------- the seams


def reconcile(store: Any, partner: str, period: str, invoice: str | None, plan: Any) -> Any:
    """The partner's invoice of the period reconciled against our view of the same traffic
    (``plan``: the rules, whose agreements say how they bill us and the tolerances): the one
    place the command line calls the reconciliation engine."""
    from icdsl.billing.reconcile import reconcile_partner  # lazy: the engine brings pyarrow and the store

    return reconcile_partner(store, partner, period, invoice, plan=plan)


def credit_note(store: Any, partner: str, number: str) -> Any:
    """A partner's credit note as imported (``icdsl partner-invoice import``), as a
    :class:`~icdsl.recon.model.PartnerInvoice`: the one place the command line reads one."""
    from icdsl.billing.partner_invoices import load_partner_invoice  # lazy: lxml and the store's tables

    return load_partner_invoice(store, number, partner=partner)  # refuses a number it does not know


# --------------------------------------------------------------------------- commands


def _reason() -> Any:
    return typer.Option(None, "--reason", help="Why (kept in the audit trail with who and when).")


@dispute_app.command("open")
def open_cmd(
    partner: str = typer.Argument(..., help="Partner code."),
    period: str = typer.Argument(..., help="Billing period (2026-03, ...), in the partner's calendar."),
    invoice: str | None = typer.Option(None, "--invoice", help="Their invoice's number (default: their invoice of "
                                       "the period)."),
    line: list[int] = typer.Option([], "--line", help="A line of their invoice to dispute, by its number on their "
                                   "invoice (repeat; default: every line outside the tolerances billed over ours)."),
    reason: str | None = _reason(),
    rules: list[Path] = typer.Option([], "--rules", help="Rule files or folders (the agreements say how they bill us "
                                     "and the tolerances); default: the current folder, when it holds rule files."),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Open a dispute on the differing lines of a partner's invoice, with the differing records as evidence."""
    # lazy: the store's tables and pyarrow
    from icdsl.billing.disputes import open_dispute

    plan, program = project_plan(rules, root)
    with opened(db, data) as store, user_errors():
        _load_quietly(store, plan, program)
        rec = reconcile(store, partner, period, invoice, plan)
        doc = open_dispute(store, rec, lines=line or None, reason=reason)
    ev = doc["evidence"]
    typer.echo(f"opened {doc['number']}: {len(doc['lines'])} line(s) of invoice {doc['invoice']['number']} of "
               f"{partner}, {doc['amount']} {doc['currency']} disputed (their {doc['their_amount']} - our "
               f"{doc['our_amount']})")
    typer.echo(f"evidence: {ev['rows']} record(s)" + (f" in {ev['path']}" if ev["path"] else
                                                     " (no record detail: the lines are the evidence)"))
    typer.echo(f"next: `icdsl dispute export {doc['number']} --format pdf -o FILE`, then "
               f"`icdsl dispute send {doc['number']}`")


@dispute_app.command("list")
def list_cmd(
    partner: str | None = typer.Option(None, "--partner", help="Only this partner's disputes."),
    state: str | None = typer.Option(None, "--state", help=f"Only disputes in this state ({', '.join(STATES)})."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Every dispute: number, partner, period, invoice, state, amounts disputed, accepted and held."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    # lazy: the store's tables
    from icdsl.billing.disputes import list_disputes

    with opened(db, data) as store, user_errors():
        rows = list_disputes(store, partner=partner, state=state)
    table = Table(title="disputes")
    for col in ("number", "partner", "period", "invoice", "state", "lines", "disputed", "accepted", "held",
                "currency", "changed"):
        table.add_column(col, justify="right" if col in ("lines", "disputed", "accepted", "held") else "left",
                         overflow="fold", no_wrap=col in ("number", "period", "changed", "state"))
    for d in rows:
        table.add_row(d.number, d.partner, f"{d.period_start}..{d.period_end}", d.invoice_number, d.state,
                      str(d.lines), _money(d.amount, d.currency), _money(d.accepted_amount, d.currency),
                      _money(d.held, d.currency), d.currency, str(d.changed_at.date()))
    table_console(160).print(table)
    if not rows:
        typer.echo("no disputes" + (f" of {partner}" if partner else "") + (f" in state {state}" if state else ""))


def _money(v: Any, ccy: str) -> str:
    from icdsl.billing.amounts import present  # lazy: babel's currency data

    return str(present(v, ccy))


@dispute_app.command("show")
def show_cmd(
    number: str = typer.Argument(..., help="Dispute number (DSP-2026-000001)."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Show a dispute: its invoice, lines, amounts, credit notes, evidence and history."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    # lazy: the store's tables
    from icdsl.billing.disputes import document

    with opened(db, data) as store, user_errors():
        doc = document(store, number, evidence=False)
    console = table_console()
    ccy = doc["currency"]
    console.print(f"[bold]Dispute {doc['number']}[/bold]  {doc['partner_name']} ({doc['partner_code']})  "
                  f"{doc['state']}", highlight=False)
    console.print(f"invoice {doc['invoice']['number']} (total {doc['invoice']['total']} {ccy}), period "
                  f"{doc['period_start']} to {doc['period_end']}, opened {doc['opened_at']:%Y-%m-%d %H:%M:%S} by "
                  f"{doc['opened_by']}" + (f": {doc['reason']}" if doc.get("reason") else ""),
                  highlight=False, markup=False, soft_wrap=True)
    table = Table()
    for col in ("#", "their line", "description", "status", "calls theirs/ours", "theirs", "ours", "disputed",
                "records"):
        table.add_column(col, justify="left" if col in ("description", "status") else "right", overflow="fold")
    for ln in doc["lines"]:
        table.add_row(str(ln["line_no"]), " ".join(str(n) for n in ln["their_lines"]) or "-",
                      " ".join(x for x in (ln["service"], ln["destination"], ln["band"]) if x), ln["status"],
                      f"{ln['their_calls']:,}/{ln['our_calls']:,}", str(ln["their_amount"]), str(ln["our_amount"]),
                      str(ln["amount"]), f"{ln['evidence_records']:,}")
    console.print(table)
    console.print(f"amount disputed {doc['amount']} {ccy} (theirs {doc['their_amount']} - ours {doc['our_amount']}, "
                  f"the sum of the lines); accepted {doc['accepted_amount']}; held {doc['held_amount']}",
                  highlight=False, markup=False, soft_wrap=True)
    for c in doc["credits"]:
        console.print(f"credit note {c['credit_note_number']} (total {c['credit_note_total']} {ccy}): "
                      f"{c['amount']} applied", highlight=False, markup=False, soft_wrap=True)
    ev = doc["evidence"]
    console.print(f"evidence: {ev['rows']} record(s)" + (f" in {ev['path']}" if ev["path"] else
                                                       " (no record detail)"), highlight=False, markup=False, soft_wrap=True)
    console.print("history:", highlight=False)
    for h in doc["history"]:
        console.print(f"  {h['at']:%Y-%m-%d %H:%M:%S} {h['actor']}: {h['message']}", highlight=False, markup=False, soft_wrap=True)


def _change(action: str, number: str, reason: str | None, db: str | None, data: Path | None) -> None:
    # lazy: the store's tables
    from icdsl.billing.disputes import change_state

    with opened(db, data) as store, user_errors():
        doc = change_state(store, number, action, reason=reason)
    typer.echo(f"{doc['number']} is {doc['state']}" + (f": {reason}" if reason else ""))


@dispute_app.command("send")
def send_cmd(number: str = typer.Argument(..., help="Dispute number."), reason: str | None = _reason(),
             db: str | None = _db_option(), data: Path | None = _data_option()) -> None:
    """Record that the dispute was sent to the partner (export it first: `icdsl dispute export`)."""
    _change("send", number, reason, db, data)


@dispute_app.command("reject")
def reject_cmd(number: str = typer.Argument(..., help="Dispute number."), reason: str | None = _reason(),
               db: str | None = _db_option(), data: Path | None = _data_option()) -> None:
    """Record that the partner rejected the dispute (what is left of it is payable)."""
    _change("reject", number, reason, db, data)


@dispute_app.command("withdraw")
def withdraw_cmd(number: str = typer.Argument(..., help="Dispute number."), reason: str | None = _reason(),
                 db: str | None = _db_option(), data: Path | None = _data_option()) -> None:
    """Withdraw the dispute (what is left of it is payable)."""
    _change("withdraw", number, reason, db, data)


@dispute_app.command("accept")
def accept_cmd(
    number: str = typer.Argument(..., help="Dispute number."),
    credit: str = typer.Option(..., "--credit-note", help="The partner's credit note number (imported with "
                               "`icdsl partner-invoice import`)."),
    reason: str | None = _reason(),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Settle the dispute with the partner's credit note: accepted when it covers what is left, else partially."""
    # lazy: the store's tables
    from icdsl.billing.disputes import accept_dispute, document

    with opened(db, data) as store, user_errors():
        partner = document(store, number, evidence=False)["partner_code"]
        doc = accept_dispute(store, number, credit_note(store, partner, credit), reason=reason)
    typer.echo(f"{doc['number']} is {doc['state']}: {doc['accepted_amount']} {doc['currency']} of {doc['amount']} "
               f"accepted, {doc['held_amount']} held")


@dispute_app.command("export")
def export_cmd(
    number: str = typer.Argument(..., help="Dispute number."),
    fmt: str = typer.Option("pdf", "--format", help="pdf, csv or json."),
    out: Path = typer.Option(..., "-o", "--out", help="The file to write."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Write the dispute, its lines and its evidence records as a file to send the partner."""
    # lazy: lxml (outputs): loaded when this command runs, not at every `icdsl` start
    from icdsl.outputs.disputes import DISPUTE_FORMATS, write_dispute

    if fmt not in DISPUTE_FORMATS:
        echo_err(f"error: --format must be {', '.join(DISPUTE_FORMATS)}")
        raise typer.Exit(2)
    # lazy: the store's tables
    from icdsl.billing.disputes import document

    with opened(db, data) as store, user_errors():
        doc = document(store, number, evidence=True)
    typer.echo(str(write_dispute(doc, out, fmt)))


@dispute_app.command("position")
def position_cmd(
    partner: str = typer.Argument(..., help="Partner code."),
    period: str = typer.Argument(..., help="Billing period (2026-03, ...), in the partner's calendar."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """The dispute position of a partner's period: invoiced, disputed, credited, held, undisputed payable."""
    # lazy: lxml (outputs): loaded when this command runs, not at every `icdsl` start
    # lazy: the store's tables
    from icdsl.billing.disputes import position
    from icdsl.outputs.views import position_rows

    with opened(db, data) as store, user_errors():
        found = [p.as_dict() for p in position(store, partner, period)]
    if not found:
        typer.echo(f"no disputes of {partner} for {period}")
        return
    console = table_console()
    for pos in found:
        ccy = pos["currency"]
        console.print(f"[bold]{partner} {pos['period_start']} to {pos['period_end']}, {ccy}[/bold]", highlight=False)
        for d in pos["disputes"]:
            console.print(f"  {d['number']} {d['state']}: invoice {d['invoice']}, disputed {d['amount']}, accepted "
                          f"{d['accepted']}, held {d['held']}", highlight=False, markup=False, soft_wrap=True)
        for _key, label, amount in position_rows(pos):
            console.print(f"  {label + ':':<32}{amount!s:>14} {ccy}", highlight=False, markup=False, soft_wrap=True)
        console.print("  (undisputed payable = invoiced - held - credited, exactly)", highlight=False)

