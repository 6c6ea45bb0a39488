"""``icdsl invoice validate`` and ``icdsl journal``.

``invoice validate``: an e-invoice checked against the UBL/CII schema and the EN 16931
business rules (:mod:`icdsl.outputs.einvoice_check`), offline.

DOC is a file (a UBL or CII ``.xml``, a Factur-X ``.pdf``) or the number of a finalized invoice or
credit note in the store, which is then written as UBL and as CII and both are checked.

``invoice credit``: a credit note issued against a finalized invoice (an accepted dispute of
our invoice, a commercial gesture): :func:`icdsl.billing.credits.credit_invoice`.

``invoice template``: the default document layout (:mod:`icdsl.layouts`) copied into the project
to start a layout of one's own from (``--copy FILE``), or a layout file checked (``--check FILE``).

``journal``: the entries of a period's finalized invoices and credit notes
(:mod:`icdsl.outputs.journal`), with the ledger accounts of the rules.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import typer

from icdsl.cli.billing import _data_option, _db_option, _plan, invoice_app, opened, user_errors
from icdsl.cli.common import app, echo_err


def _from_pdf(data: bytes) -> bytes:
    # lazy: factur-x (pypdf) only to read a Factur-X PDF
    from facturx import get_xml_from_pdf

    try:
        _name, xml = get_xml_from_pdf(data, check_xsd=False)
    except Exception as exc:  # a hostile or broken PDF: pypdf raises many kinds; say what, never a traceback
        raise ValueError(f"cannot read the PDF: {type(exc).__name__}: {exc}") from None
    if not xml:
        raise ValueError("the PDF carries no Factur-X/ZUGFeRD XML")
    return xml


@invoice_app.command("credit")
def invoice_credit(
    number: str = typer.Argument(..., help="The finalized invoice to credit (INV-YYYY-NNNNNN)."),
    amount: str = typer.Option(..., "--amount", help="The net amount credited, in the invoice's currency (tax is "
                               "added as the invoice was taxed)."),
    reason: str = typer.Option(..., "--reason", help="Why (printed on the credit note), e.g. 'dispute DSP-2026-000004 "
                               "accepted: 12 calls billed twice'."),
    line: int | None = typer.Option(None, "--line", help="The invoice line credited (its number)."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Issue a credit note against a finalized invoice (an accepted dispute, a gesture): numbered CN-, sealed."""

    # lazy: the store (SQLAlchemy) loads only when a command opens one
    from icdsl.billing.credits import credit_invoice

    with opened(db, data) as store, user_errors():
        cn = credit_invoice(store, number, amount, reason, line_no=line)
        doc = store.document(cn)
    typer.echo(f"{cn}: credit note of {doc['total']} {doc['currency']} (net {doc['subtotal']}) on {number}; "
               f"`icdsl invoice export {cn} --format pdf --format ubl --out DIR` writes it")


@invoice_app.command("template")
def invoice_template(
    copy: Path | None = typer.Option(None, "--copy", help="Write the default layout to this file (inside your "
                                     "project), to change it."),
    check: Path | None = typer.Option(None, "--check", help="Check a layout file: say where it is wrong."),
    force: bool = typer.Option(False, "--force", help="With --copy: replace the file if it exists."),
) -> None:
    """The documents' layout: copy the default (every key documented in it) or check a layout file."""
    # lazy: Jinja2 loads only for this command
    from icdsl.layouts import DEFAULT_PATH, LayoutError, default_text
    from icdsl.layouts import parse as parse_layout

    if (copy is None) == (check is None):
        echo_err(f"error: give --copy FILE or --check FILE (the default layout is {DEFAULT_PATH})")
        raise typer.Exit(2)
    if check is not None:
        try:
            parse_layout(check.read_bytes().decode("utf-8"), str(check))
        except (OSError, UnicodeDecodeError) as e:
            echo_err(f"error: cannot read {check}: {getattr(e, 'strerror', None) or e}")
            raise typer.Exit(1) from None
        except LayoutError as e:
            echo_err(f"error: {e}")
            raise typer.Exit(1) from None
        typer.echo(f"{check}: a valid layout")
        return
    assert copy is not None
    if copy.exists() and not force:
        echo_err(f"error: {copy} exists: give another file, or --force to replace it")
        raise typer.Exit(1)
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(default_text(), encoding="utf-8")
    except OSError as e:
        echo_err(f"error: cannot write {copy}: {e.strerror}")
        raise typer.Exit(1) from None
    typer.echo(f"{copy}: the default layout, to change. Name it in the rules, in a partner block "
               f'(or the company block, for every document): template "{copy.as_posix()}" '
               "(the path relative to the rule file; add `stream NAME` for one invoice stream only)")


@invoice_app.command("validate")
def invoice_validate(
    doc: str = typer.Argument(..., help="A UBL/CII .xml or Factur-X .pdf file, or an invoice or credit note number."),
    fmt: str = typer.Option("text", "--format", help="text or json"),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Check an e-invoice against the UBL 2.1 / CII XSD and the official EN 16931 schematron: exit 1 on an error."""
    # lazy: lxml (outputs): loaded when this command runs, not at every `icdsl` start
    from icdsl.outputs.einvoice import cii_xml, ubl_xml
    from icdsl.outputs.einvoice_check import artefacts, not_run, syntax_of, validate_xml

    if fmt not in ("text", "json"):
        echo_err(f"error: --format is text or json, not '{fmt}'")
        raise typer.Exit(2)
    inputs: list[tuple[str, bytes]] = []
    path = Path(doc)
    try:
        if path.is_file():
            raw = path.read_bytes()
            inputs.append((str(path), _from_pdf(raw) if raw[:5] == b"%PDF-" else raw))
        else:
            with opened(db, data) as store, user_errors():
                document = store.document(doc)
            inputs += [(f"{doc} (UBL)", ubl_xml(document)), (f"{doc} (CII)", cii_xml(document))]
        results = []
        for name, xml in inputs:
            syntax = syntax_of(xml)
            results.append((name, syntax, validate_xml(xml, syntax), not_run(xml)))
    except ValueError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(1) from None
    errors = sum(1 for _n, _s, probs, _nr in results for p in probs if p.severity == "error")
    if fmt == "json":
        typer.echo(json.dumps([{"document": n, "syntax": s, "artefacts": artefacts(s),
                                "problems": [{"check": p.check, "severity": p.severity, "rule": p.rule,
                                              "message": p.message, "location": p.location} for p in probs],
                                "not_run": skipped}
                               for n, s, probs, skipped in results], indent=2))
    else:
        for name, syntax, probs, skipped in results:
            a = artefacts(syntax)
            n_err = sum(1 for p in probs if p.severity == "error")
            typer.echo(f"{name}: {syntax.upper()}, {n_err} error(s), {len(probs) - n_err} warning(s) "
                       f"({a['schematron_version']}, XSD and schematron from {a['package']})")
            for p in probs:
                typer.echo(f"  {p}")
            for why in skipped:
                typer.echo(f"  not run: {why}")
    raise typer.Exit(1 if errors else 0)


@app.command("journal")
def journal_cmd(
    period: str = typer.Option(..., "--period", help="The period to book, e.g. 2026-03 (every partner's cycle of it)."),
    rules: list[Path] = typer.Option([], "--rules", help="Rule files or folders declaring the `accounts`."),
    fmt: str = typer.Option("csv", "--format", help="csv or json"),
    out: Path | None = typer.Option(None, "--out", help="File to write (default: standard output)."),
    partner: str | None = typer.Option(None, "--partner", help="Only this partner's documents."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Journal entries (date, account, debit, credit, currency, document, partner) of the finalized
    invoices and credit notes of a period, with the ledger accounts of the rules' `accounts` block."""
    # lazy: lxml (outputs): loaded when this command runs, not at every `icdsl` start
    from icdsl.outputs import journal

    if fmt not in ("csv", "json"):
        echo_err(f"error: --format is csv or json, not '{fmt}'")
        raise typer.Exit(2)
    plan, _program = _plan(rules, None)
    if plan.accounts is None:
        echo_err("error: the rules declare no ledger accounts: add an `accounts { receivable \"411000\" revenue "
                 "\"706000\" tax vat \"445710\" }` block (docs/billing.md, Journal)")
        raise typer.Exit(1)
    with opened(db, data) as store, user_errors():
        cycles = [c for c in store.cycles(partner) if c.label == period]
        docs = [d for c in cycles for d in store.cycle_documents(c.id)]
        # credit notes issued by hand (`invoice credit`: of no cycle), booked in the month of their issue
        docs += [store.document(i.number) for i in store.invoices() if i.cycle_id is None and i.number
                 and i.status == "finalized" and i.issue_date is not None
                 and i.issue_date.strftime("%Y-%m") == period and (partner is None or i.partner_code == partner)]
    if not docs:
        echo_err(f"error: no documents for {period}" + (f" of {partner}" if partner else ""))
        raise typer.Exit(1)
    try:
        lines = journal.entries(docs, plan.accounts)
    except journal.JournalError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(1) from None
    unbalanced = {c: b for c, b in journal.balances(lines).items() if b[0] != b[1]}
    if unbalanced:  # never expected: every entry balances by construction; refuse rather than export
        echo_err(f"error: the journal does not balance: {unbalanced}")
        raise typer.Exit(3)
    if out is None:
        if fmt == "json":
            typer.echo(journal.to_json(lines))
        else:
            buf = io.StringIO()
            journal.write_csv_to(lines, buf)
            typer.echo(buf.getvalue(), nl=False)
    else:
        (journal.write_json if fmt == "json" else journal.write_csv)(lines, out)
        typer.echo(f"{out}: {len(lines)} lines; balanced per currency: " + ", ".join(
            f"{c} {d}" for c, (d, _k) in journal.balances(lines).items()))
