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

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FORMATS = ("csv", "json", "pdf")
VIEWS = ("itemized", "summary")


def file_stem(doc: Mapping[str, Any]) -> str:
    raw = doc.get("number")
    if not raw:
        raw = f"draft-{doc.get('partner_code', 'x')}-{doc.get('period') or ''}-{doc.get('stream') or doc.get('kind')}"
        if doc.get("kind") == "statement":
            raw = f"draft-{doc.get('partner_code', 'x')}-{doc.get('period') or ''}-statement"
        elif doc.get("kind") == "share_statement":
            raw = f"draft-{doc.get('partner_code', 'x')}-{doc.get('period') or ''}-share-{doc.get('party')}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(raw)).strip("._") or "document"


def view_lines(doc: Mapping[str, Any], view: str) -> list[Mapping[str, Any]]:
    if view not in VIEWS:
        raise ValueError(f"unknown view '{view}': use {' or '.join(VIEWS)}")
    return list(doc["summary"] if view == "summary" else doc["lines"])


def write(documents: Sequence[Mapping[str, Any]], directory: str | Path, fmt: str, *,
          view: str = "itemized") -> list[Path]:
    """Write ``documents`` in format ``fmt`` (csv, json, pdf) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        from icdsl.outputs.csv import write_csv

        return [write_csv(d, directory, view=view) for d in documents]
    if fmt == "json":
        from icdsl.outputs.json import write_json

        return [write_json(d, directory) for d in documents]
    if fmt == "pdf":
        from icdsl.outputs.pdf import write_pdf

        return [write_pdf(d, directory, view=view) for d in documents]
    raise ValueError(f"unknown output format '{fmt}': use {', '.join(FORMATS)}")
