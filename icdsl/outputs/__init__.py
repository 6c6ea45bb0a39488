"""Outputs: invoices and settlement statements written as files.

Every writer takes *documents* (the plain mappings of :mod:`icdsl.billing.documents`) and a
folder, and returns the paths it wrote: :mod:`~icdsl.outputs.csv` (the lines, then the subtotal,
tax and total rows), :mod:`~icdsl.outputs.json` (the whole document, amounts as exact decimal
text) and :mod:`~icdsl.outputs.pdf` (a readable invoice, fpdf2 with a core font: no system
library). ``view``: ``itemized`` (a line per destination and band) or ``summary`` (the lines
added up by service; the same subtotal). File names are the document numbers
(``INV-2026-000001.pdf``), or ``draft-PARTNER-PERIOD-STREAM`` before finalization.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# names and views of the documents live in outputs.views (the writers import them); re-exported
from icdsl.outputs.csv import write_csv
from icdsl.outputs.einvoice import EInvoiceError, is_einvoice, write_facturx, write_ubl
from icdsl.outputs.json import write_json
from icdsl.outputs.pdf import write_pdf
from icdsl.outputs.views import FORMATS as FORMATS
from icdsl.outputs.views import VIEWS as VIEWS
from icdsl.outputs.views import file_stem as file_stem
from icdsl.outputs.views import view_lines as view_lines


def write(documents: Sequence[Mapping[str, Any]], directory: str | Path, fmt: str, *,
          view: str = "itemized") -> list[Path]:
    """Write ``documents`` in format ``fmt`` (csv, json, pdf; ubl, facturx: the invoices and credit
    notes as e-invoices, :mod:`~icdsl.outputs.einvoice`) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        return [write_csv(d, directory, view=view) for d in documents]
    if fmt == "json":
        return [write_json(d, directory) for d in documents]
    if fmt == "pdf":
        return [write_pdf(d, directory, view=view) for d in documents]
    if fmt in ("ubl", "facturx"):
        # e-invoices: the invoices and credit notes (statements are not e-invoices)
        invoices = [d for d in documents if is_einvoice(d)]
        if not invoices:
            raise EInvoiceError("only invoices and credit notes are e-invoices: "
                                + ", ".join(str(d.get("number") or d.get("kind")) for d in documents)
                                + " is not one; export it as pdf, csv or json")
        if fmt == "ubl":
            return [write_ubl(d, directory) for d in invoices]
        return [write_facturx(d, directory, view=view) for d in invoices]
    raise ValueError(f"unknown output format '{fmt}': use {', '.join(FORMATS)}")
