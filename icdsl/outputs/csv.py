"""A document's lines as CSV (one row per line, then ``subtotal``, ``tax`` and ``total`` rows
whose ``kind`` says what they are), with the document's number, partner, period and currency
on every row so that files can be concatenated. Amounts are exact decimal text; text cells
that a spreadsheet would read as a formula (a destination name from a partner's deck, say) are
written with a leading apostrophe, numbers as they are (:mod:`icdsl.safecsv`)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from icdsl.outputs.views import file_stem, position_rows, view_lines
from icdsl.safecsv import Writer

COLUMNS = ("document", "kind_of_document", "partner", "period", "stream", "line_no", "kind", "description",
           "direction", "service", "destination", "band", "quantity", "unit", "rate", "rate_unit", "amount",
           "currency", "record_count", "corrects_line_id")
NUMERIC = ("line_no", "quantity", "rate", "amount", "record_count", "corrects_line_id")


def dumps(doc: Mapping[str, Any], *, view: str = "itemized") -> str:
    out = io.StringIO()
    w = Writer(out, numeric=[COLUMNS.index(c) for c in NUMERIC])
    w.writerow(COLUMNS)
    head = {"document": doc.get("number") or f"draft #{doc.get('id')}", "kind_of_document": doc.get("kind"),
            "partner": doc.get("partner_code"), "period": doc.get("period"), "stream": doc.get("stream"),
            "currency": doc.get("currency")}
    for i, ln in enumerate(view_lines(doc, view), 1):
        row = dict(head, **{k: ln.get(k) for k in COLUMNS if k in ln})
        row["line_no"] = ln.get("line_no", i)
        row["currency"] = ln.get("currency") or doc.get("currency")
        w.writerow([row.get(c) for c in COLUMNS])
    if doc.get("kind") == "statement":
        for item in doc.get("receivable_items", []):
            row = dict(head, kind="receivable", stream=item.get("stream"), description=item.get("description"),
                       amount=item.get("amount"))
            w.writerow([row.get(c) for c in COLUMNS])
        totals = [("receivable", doc.get("receivable")), ("payable", doc.get("payable")), ("net", doc.get("net"))]
    elif doc.get("kind") == "share_statement":
        for sp in doc.get("splits", []):
            for party, amount in sp["parties"].items():
                row = dict(head, kind="split", description=f"{sp['charge']}: {party} of {sp.get('amount_split')}",
                           amount=amount)
                w.writerow([row.get(c) for c in COLUMNS])
        totals = [("total", doc.get("total"))]
    else:
        totals = [("subtotal", doc.get("subtotal")), ("tax", doc.get("tax_amount")), ("total", doc.get("total"))]
    pos = doc.get("dispute_position")
    if pos:  # computed when shown (partners' disputes), beside the statement's own totals
        totals += [(f"dispute_{k}", amount) for k, _label, amount in position_rows(pos)]
    for kind, amount in totals:
        desc = doc.get("tax_label") if kind == "tax" else kind
        if kind == "tax" and doc.get("tax_note"):
            desc = f"{desc}: {doc['tax_note']}"
        row = dict(head, kind=kind, description=desc, amount=amount)
        w.writerow([row.get(c) for c in COLUMNS])
    return out.getvalue()


def write_csv(doc: Mapping[str, Any], directory: Path, *, view: str = "itemized") -> Path:
    suffix = "-summary" if view == "summary" else ""
    path = Path(directory) / f"{file_stem(doc)}{suffix}.csv"
    path.write_text(dumps(doc, view=view), encoding="utf-8")
    return path
