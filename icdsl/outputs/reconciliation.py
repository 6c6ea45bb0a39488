"""A reconciliation (:class:`icdsl.recon.model.Reconciliation`) as a table on screen, CSV, JSON
and a PDF the partner can be sent.

- **lines**: one row per comparison (service, destination, band, status, their and our calls,
  quantity and amount, the differences, their invoice lines); amounts are exact decimal text;
- **records** (``records=True``): the records that differ or are on one side only (every
  record with ``all_records=True``), one row each, from the Arrow table of the record-level
  reconciliation;
- the JSON document has both, the totals, the tolerances applied and what could not be
  compared (``problems``);
- the PDF: the invoice reconciled, the tolerances, the totals, every line (the ones outside the
  tolerances marked), record counts by class and the differing records (the first
  :data:`PDF_RECORDS`; the CSV has them all).

CSV cells go through :mod:`icdsl.safecsv` (their destination names are the partner's words:
a formula is neutralized).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from icdsl.outputs.json import plain
from icdsl.outputs.pdf import FONT, latin1, money_text, quantity_text
from icdsl.outputs.pdfnotes import notes_block
from icdsl.recon.model import LINE_MATCHED, MATCHED, LineComparison, Reconciliation
from icdsl.safecsv import Writer

FORMATS = ("table", "csv", "json", "pdf")
LINE_COLUMNS = ("service", "destination", "band", "status", "their_calls", "our_calls", "calls_difference",
                "their_quantity", "our_quantity", "quantity_difference", "unit", "their_amount", "our_amount",
                "amount_difference", "currency", "their_lines", "our_lines")
LINE_NUMERIC = ("their_calls", "our_calls", "calls_difference", "their_quantity", "our_quantity",
                "quantity_difference", "their_amount", "our_amount", "amount_difference")
RECORD_COLUMNS = ("class", "their_id", "our_id", "a_number", "b_number", "their_start", "our_start", "their_duration",
                  "our_duration", "their_amount", "our_amount", "their_rate", "our_rate", "service", "line")
RECORD_NUMERIC = ("their_duration", "our_duration", "their_amount", "our_amount", "their_rate", "our_rate")
PDF_RECORDS = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATUS_TEXT = {"matched": "matched", "differs": "DIFFERS", "only_theirs": "only theirs", "only_ours": "only ours"}


def line_row(c: LineComparison) -> dict[str, Any]:
    return {"service": c.service, "destination": c.destination, "band": c.band, "status": c.status,
            "their_calls": c.their_calls, "our_calls": c.our_calls, "calls_difference": c.calls_difference,
            "their_quantity": c.their_quantity, "our_quantity": c.our_quantity,
            "quantity_difference": c.quantity_difference, "unit": c.unit, "their_amount": c.their_amount,
            "our_amount": c.our_amount, "amount_difference": c.amount_difference, "currency": c.currency,
            "their_lines": " ".join(str(n) for n in c.their_lines), "our_lines": "; ".join(c.our_lines)}


def _instant(us: int | None) -> str | None:
    """An instant kept as integer µs, as ISO text in UTC (``2026-03-02T09:00:01Z``)."""
    if us is None:
        return None
    t = _EPOCH + timedelta(microseconds=us)
    return t.strftime("%Y-%m-%dT%H:%M:%S" + (".%f" if us % 1_000_000 else "") + "Z")


def record_rows(r: Reconciliation, *, all_records: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
    """The records of the record-level reconciliation (the differing ones unless ``all_records``)."""
    t = r.records
    if t is None:
        return []
    import pyarrow.compute as pc  # lazy: pyarrow only when there are records

    if not all_records:
        t = t.filter(pc.not_equal(pc.cast(t.column("class"), "string"), MATCHED))
    if limit is not None:
        t = t.slice(0, limit)
    out = []
    for x in t.to_pylist():
        out.append({"class": x["class"], "their_id": x["their_id"], "our_id": x["our_id"], "a_number": x["a_number"],
                    "b_number": x["b_number"], "their_start": _instant(x["their_start_us"]),
                    "our_start": _instant(x["our_start_us"]), "their_duration": x["their_duration"],
                    "our_duration": x["our_duration"], "their_amount": x["their_amount"],
                    "our_amount": x["our_amount"], "their_rate": x.get("their_rate"), "our_rate": x.get("our_rate"),
                    "service": x.get("service"), "line": x["line"]})
    return out


def document(r: Reconciliation, *, records: bool = False, all_records: bool = False) -> dict[str, Any]:
    """The reconciliation as a plain mapping (what the JSON holds)."""
    inv, t = r.invoice, r.tolerances
    doc: dict[str, Any] = {
        "kind": "reconciliation", "partner": r.partner, "period_start": r.period_start, "period_end": r.period_end,
        "invoice": {"number": inv.number, "kind": inv.kind, "issue_date": inv.issue_date,
                    "period_start": inv.period_start, "period_end": inv.period_end, "currency": inv.currency,
                    "stated_total": inv.total, "sha256": inv.sha256, "source": inv.source_name, "id": inv.id},
        "currency": r.currency, "agreement": r.agreement,
        "tolerances": {"line_percent": t.line_percent, "line_amount": t.line_amount,
                       "start_seconds": t.start_seconds, "duration_seconds": t.duration_seconds},
        "their_total": r.their_total, "our_total": r.our_total, "difference": r.difference,
        "their_stated_total": r.their_stated_total,
        "disputable": sum((c.amount_difference for c in r.disputable), Decimal(0)),
        "lines": [line_row(c) for c in r.lines],
        "record_counts": dict(r.record_counts),
        "problems": list(r.problems),
    }
    if records:
        doc["records"] = record_rows(r, all_records=all_records)
    return doc


def dumps_json(r: Reconciliation, *, records: bool = False, all_records: bool = False) -> str:
    return json.dumps(plain(document(r, records=records, all_records=all_records)), indent=2,
                      ensure_ascii=False) + "\n"


def dumps_csv(r: Reconciliation, *, records: bool = False, all_records: bool = False) -> str:
    """The lines as CSV, or with ``records`` the (differing) records."""
    out = io.StringIO()
    cols, numeric = (RECORD_COLUMNS, RECORD_NUMERIC) if records else (LINE_COLUMNS, LINE_NUMERIC)
    w = Writer(out, numeric=[cols.index(c) for c in numeric])
    w.writerow(cols)
    rows = record_rows(r, all_records=all_records) if records else [line_row(c) for c in r.lines]
    for row in rows:
        w.writerow([row.get(c) for c in cols])
    return out.getvalue()


def write_reconciliation(r: Reconciliation, path: str | Path, fmt: str, *, records: bool = False,
                         all_records: bool = False) -> Path:
    """Write ``r`` to ``path`` as ``csv``, ``json`` or ``pdf``."""
    path = Path(path)
    if fmt == "csv":
        path.write_text(dumps_csv(r, records=records, all_records=all_records), encoding="utf-8")
    elif fmt == "json":
        path.write_text(dumps_json(r, records=records, all_records=all_records), encoding="utf-8")
    elif fmt == "pdf":
        path.write_bytes(render_pdf(r))
    else:
        raise ValueError(f"unknown format '{fmt}': use csv, json or pdf")
    return path


def default_name(r: Reconciliation, fmt: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in r.invoice.number)[:80]
    return f"reconciliation-{r.partner}-{safe}.{fmt}"


# --------------------------------------------------------------------------- on screen


def rich_tables(r: Reconciliation, *, records: bool = False, limit: int = 200) -> list[Any]:
    """Rich renderables: the lines (and the differing records), then the totals."""
    inv = r.invoice
    title = (f"{r.partner} invoice {inv.number} ({inv.period_start} .. {inv.period_end}) against our view of "
             f"{r.period_start} .. {r.period_end}, {r.currency}")
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for name, justify in (("service", "left"), ("destination", "left"), ("band", "left"), ("status", "left"),
                          ("calls theirs/ours", "right"), ("quantity theirs/ours", "right"),
                          ("theirs", "right"), ("ours", "right"), ("difference", "right")):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in r.lines:
        style = None if c.status == LINE_MATCHED else "bold"
        t.add_row(c.service, c.destination or "", c.band or "", STATUS_TEXT.get(c.status, c.status),
                  f"{c.their_calls:,}/{c.our_calls:,}",
                  f"{quantity_text(c.their_quantity, c.unit)}/{quantity_text(c.our_quantity, c.unit)}",
                  money_text(c.their_amount), money_text(c.our_amount), money_text(c.amount_difference),
                  style=style)
    out: list[Any] = [t]
    if records and r.records is not None:
        rt = Table(title="records that differ", box=box.SIMPLE_HEAD, title_justify="left")
        for name in ("class", "their id", "our id", "a", "b", "their start", "dur theirs/ours", "rate theirs/ours",
                     "theirs", "ours"):
            rt.add_column(name)
        for x in record_rows(r, limit=limit):
            rt.add_row(x["class"], str(x["their_id"] or ""), str(x["our_id"] or ""), x["a_number"] or "",
                       x["b_number"] or "", x["their_start"] or x["our_start"] or "",
                       f"{x['their_duration'] if x['their_duration'] is not None else '-'}/"
                       f"{x['our_duration'] if x['our_duration'] is not None else '-'}",
                       f"{x['their_rate'] or '-'}/{x['our_rate'] or '-'}",
                       money_text(x["their_amount"]), money_text(x["our_amount"]))
        out.append(rt)
    out.append(summary_text(r))
    return out


def summary_text(r: Reconciliation) -> str:
    t = r.tolerances
    lines = [f"their total {money_text(r.their_total)} {r.currency}, ours {money_text(r.our_total)} {r.currency}, "
             f"difference {money_text(r.difference)} {r.currency}; "
             f"{len(r.differing)} of {len(r.lines)} lines outside the tolerances "
             f"({t.line_percent}% or {t.line_amount} {r.currency} per line"
             + (f", {r.agreement}" if r.agreement else ", the defaults: no agreement states any") + ")"]
    if r.record_counts:
        lines.append("records: " + ", ".join(f"{k} {v:,}" for k, v in r.record_counts.items()))
    lines.extend(f"note: {p}" for p in r.problems)
    return "\n".join(lines)


# --------------------------------------------------------------------------- PDF


def render_pdf(r: Reconciliation) -> bytes:
    # lazy: fpdf2 loads only when a PDF is written
    from fpdf import FPDF

    inv = r.invoice
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_margins(12, 12, 12)
    pdf.set_auto_page_break(True, 14)
    when = inv.issue_date or r.period_end or date(2000, 1, 1)
    pdf.set_creation_date(datetime(when.year, when.month, when.day, tzinfo=UTC))
    pdf.set_producer("icdsl")
    pdf.set_title(latin1(f"Reconciliation of invoice {inv.number}"))
    pdf.set_author("icdsl")
    pdf.alias_nb_pages()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.add_page()
    pdf.set_font(FONT, "B", 16)
    pdf.cell(width, 8, latin1(f"RECONCILIATION OF INVOICE {inv.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 9)
    t = r.tolerances
    facts = [
        ("Partner", r.partner),
        ("Their invoice", f"{inv.number}, issued {inv.issue_date or '-'}, {inv.period_start} to {inv.period_end}, "
                          f"stated total {money_text(inv.total)} {inv.currency}"),
        ("Our view", f"our records of {r.period_start} to {r.period_end}, rated with "
                     f"{r.agreement or 'the agreement in force'}"),
        ("Tolerances", f"per line {t.line_percent}% of our amount or {t.line_amount} {r.currency}, whichever is "
                       f"larger; starts within {t.start_seconds} s, durations within {t.duration_seconds} s"),
        ("Totals", f"theirs {money_text(r.their_total)}, ours {money_text(r.our_total)}, difference "
                   f"{money_text(r.difference)} {r.currency}"),
    ]
    if r.record_counts:
        facts.append(("Records", ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in r.record_counts.items())))
    for label, value in facts:
        pdf.set_font(FONT, "B", 9)
        pdf.cell(32, 5, latin1(label))
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(width - 32, 5, latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    cols = [("Service", 0.07, "L"), ("Destination", 0.17, "L"), ("Band", 0.07, "L"), ("Status", 0.08, "L"),
            ("Calls (theirs/ours)", 0.11, "R"), ("Quantity theirs", 0.10, "R"), ("Quantity ours", 0.10, "R"),
            ("Theirs", 0.10, "R"), ("Ours", 0.10, "R"), ("Difference", 0.10, "R")]
    _head(pdf, cols, width)
    for c in r.lines:
        pdf.set_font(FONT, "B" if c.status != LINE_MATCHED else "", 8)
        values = [c.service, c.destination or "", c.band or "", STATUS_TEXT.get(c.status, c.status),
                  f"{c.their_calls:,}/{c.our_calls:,}", quantity_text(c.their_quantity, c.unit),
                  quantity_text(c.our_quantity, c.unit), money_text(c.their_amount), money_text(c.our_amount),
                  money_text(c.amount_difference)]
        if pdf.will_page_break(5):
            pdf.add_page()
            _head(pdf, cols, width)
            pdf.set_font(FONT, "B" if c.status != LINE_MATCHED else "", 8)
        for (_name, w, align), v in zip(cols, values, strict=True):
            pdf.cell(width * w, 5, latin1(v)[:60], align=align)
        pdf.ln(5)
    pdf.set_font(FONT, "B", 9)
    pdf.cell(width * 0.70, 6, "Total")
    pdf.cell(width * 0.10, 6, money_text(r.their_total), align="R")
    pdf.cell(width * 0.10, 6, money_text(r.our_total), align="R")
    pdf.cell(width * 0.10, 6, money_text(r.difference), align="R", new_x="LMARGIN", new_y="NEXT")
    rows = record_rows(r, limit=PDF_RECORDS)
    if rows:
        pdf.ln(4)
        pdf.set_font(FONT, "B", 11)
        differing = sum(v for k, v in r.record_counts.items() if k != MATCHED)
        pdf.cell(width, 7, latin1(f"Records that differ ({differing:,}"
                                  + (f", the first {PDF_RECORDS} shown" if differing > PDF_RECORDS else "") + ")"),
                 new_x="LMARGIN", new_y="NEXT")
        rcols = [("Class", 0.11, "L"), ("Their id", 0.11, "L"), ("Our id", 0.11, "L"), ("Calling", 0.10, "L"),
                 ("Called", 0.10, "L"), ("Start", 0.14, "L"), ("Duration (theirs/ours)", 0.11, "R"),
                 ("Theirs", 0.11, "R"), ("Ours", 0.11, "R")]
        _head(pdf, rcols, width)
        pdf.set_font(FONT, "", 7.5)
        for x in rows:
            if pdf.will_page_break(4.5):
                pdf.add_page()
                _head(pdf, rcols, width)
                pdf.set_font(FONT, "", 7.5)
            values = [x["class"].replace("_", " "), x["their_id"] or "", x["our_id"] or "", x["a_number"] or "",
                      x["b_number"] or "", x["their_start"] or x["our_start"] or "",
                      f"{_or_dash(x['their_duration'])}/{_or_dash(x['our_duration'])}",
                      money_text(x["their_amount"]), money_text(x["our_amount"])]
            for (_name, w, align), v in zip(rcols, values, strict=True):
                pdf.cell(width * w, 4.5, latin1(v)[:40], align=align)
            pdf.ln(4.5)
    notes_block(pdf, r.problems, width, encode=latin1, prefix="Note: ", size=8, line=4, gap=3, grey=0)
    return bytes(pdf.output())


def _or_dash(v: Any) -> str:
    return "-" if v is None else str(v)


def _head(pdf: Any, cols: list[tuple[str, float, str]], width: float) -> None:
    pdf.set_font(FONT, "B", 8)
    pdf.set_fill_color(235)
    for name, w, align in cols:
        pdf.cell(width * w, 6, latin1(name), align=align, fill=True)
    pdf.ln(6)

