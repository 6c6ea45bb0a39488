"""``icdsl invoice validate``: an e-invoice checked against the UBL/CII schema and the EN 16931
business rules (:mod:`icdsl.outputs.einvoice_check`), offline.

DOC is a file (a UBL or CII ``.xml``, a Factur-X ``.pdf``) or the number of a finalized invoice or
credit note in the store, which is then written as UBL and as CII and both are checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from icdsl.cli.billing import _data_option, _db_option, invoice_app, opened, user_errors
from icdsl.cli.common import echo_err


def _from_pdf(data: bytes) -> bytes:
    # lazy: factur-x (pypdf) only to read a Factur-X PDF
    from facturx import get_xml_from_pdf

    _name, xml = get_xml_from_pdf(data, check_xsd=False)
    if not xml:
        raise ValueError("the PDF carries no Factur-X/ZUGFeRD XML")
    return xml


@invoice_app.command("validate")
def invoice_validate(
    doc: str = typer.Argument(..., help="A UBL/CII .xml or Factur-X .pdf file, or an invoice or credit note number."),
    fmt: str = typer.Option("text", "--format", help="text or json"),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Check an e-invoice against the UBL 2.1 / CII XSD and the official EN 16931 schematron: exit 1 on an error."""

    from icdsl.outputs.einvoice import cii_xml, ubl_xml
    from icdsl.outputs.einvoice_check import artefacts, syntax_of, validate_xml

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
            results.append((name, syntax, validate_xml(xml, syntax)))
    except ValueError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(1) from None
    errors = sum(1 for _n, _s, probs in results for p in probs if p.severity == "error")
    if fmt == "json":
        typer.echo(json.dumps([{"document": n, "syntax": s, "artefacts": artefacts(s),
                                "problems": [{"check": p.check, "severity": p.severity, "rule": p.rule,
                                              "message": p.message, "location": p.location} for p in probs]}
                               for n, s, probs in results], indent=2))
    else:
        for name, syntax, probs in results:
            a = artefacts(syntax)
            n_err = sum(1 for p in probs if p.severity == "error")
            typer.echo(f"{name}: {syntax.upper()}, {n_err} error(s), {len(probs) - n_err} warning(s) "
                       f"({a['schematron_version']}, XSD and schematron from {a['package']})")
            for p in probs:
                typer.echo(f"  {p}")
    raise typer.Exit(1 if errors else 0)
