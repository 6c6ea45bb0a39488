"""What every writer shares: the formats and views, a document's file name and its lines in a view."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FORMATS = ("csv", "json", "pdf", "ubl", "facturx")
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


#: a statement's dispute position (``dispute_position``, computed when shown: billing.disputes) as
#: rows (key, label): the same order on screen, in CSV and in PDF
POSITION_ROWS = (("invoiced", "Partner's invoiced amount"), ("disputed", "Disputed"),
                 ("credited", "Credited (their credit notes)"), ("held", "Disputed amount held"),
                 ("undisputed_payable", "Undisputed amount payable"))
POSITION_TITLE = "Dispute position (computed now, not part of the sealed statement)"


def position_rows(position: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(key, label, amount) of a dispute position: payable = invoiced - held - credited."""
    return [(k, label, position.get(k)) for k, label in POSITION_ROWS]
