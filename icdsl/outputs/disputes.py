"""A dispute (the document of :func:`icdsl.billing.disputes.document`) as a file to send the
partner: PDF (fpdf2, core font, deterministic: dated the day it was opened), CSV (a row per
disputed line, then the total, the credit notes applied and the evidence records; a ``section``
column says which; every text cell neutralized, :mod:`icdsl.safecsv`) or JSON (every key,
amounts as exact decimal text)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from icdsl.outputs.json import plain
from icdsl.outputs.pdf import FONT, latin1, money_text
from icdsl.outputs.pdfnotes import notes_block
from icdsl.safecsv import Writer

DISPUTE_FORMATS = ("pdf", "csv", "json")
COLUMNS = ("dispute", "partner", "invoice", "state", "section", "line_no", "service", "destination", "band",
           "status", "their_lines", "their_calls", "our_calls", "their_quantity", "our_quantity", "their_amount",
           "our_amount", "amount", "currency", "record_class", "their_id", "our_id", "a_number", "b_number",
           "their_start", "our_start", "their_duration", "our_duration", "description")
NUMERIC = ("line_no", "their_calls", "our_calls", "their_quantity", "our_quantity", "their_amount", "our_amount",
           "amount", "their_duration", "our_duration")
#: evidence records shown in the PDF at most (the CSV and JSON hold them all)
PDF_RECORDS = 400
STATE_TEXT = {"open": "open (not yet sent)", "sent": "sent, awaiting your answer",
              "partially_accepted": "partially accepted", "accepted": "accepted", "rejected": "rejected",
              "withdrawn": "withdrawn"}


def _instant(us: Any) -> str:
    if us is None:
        return ""
    return datetime.fromtimestamp(int(us) / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(plain(doc), indent=2, ensure_ascii=False) + "\n"


def dumps_csv(doc: Mapping[str, Any]) -> str:
    out = io.StringIO()
    w = Writer(out, numeric=[COLUMNS.index(c) for c in NUMERIC])
    w.writerow(COLUMNS)
    head = {"dispute": doc["number"], "partner": doc["partner_code"], "invoice": doc["invoice"]["number"],
            "state": doc["state"], "currency": doc["currency"]}

    def row(**kw: Any) -> None:
        r = dict(head, **kw)
        w.writerow([r.get(c) for c in COLUMNS])

    for ln in doc["lines"]:
        row(section="line", **{k: ln.get(k) for k in COLUMNS if k in ln and k != "their_lines"},
            their_lines=" ".join(str(n) for n in ln["their_lines"]), description=_what(ln))
    row(section="total", their_amount=doc["their_amount"], our_amount=doc["our_amount"], amount=doc["amount"],
        description="amount disputed = their amount - ours, the sum of the lines")
    for c in doc.get("credits", []):
        row(section="credit", amount=c["amount"], description=f"credit note {c['credit_note_number']} "
                                                              f"(total {c['credit_note_total']}) applied")
    if doc.get("credits"):
        row(section="accepted", amount=doc["accepted_amount"], description="accepted (credited)")
        row(section="held", amount=doc["held_amount"], description="still disputed")
    for r in doc.get("evidence_records", []):
        row(section="evidence", line_no=r.get("dispute_line"), record_class=r.get("class"), their_id=r.get("their_id"),
            our_id=r.get("our_id"), a_number=r.get("a_number"), b_number=r.get("b_number"),
            their_start=_instant(r.get("their_start_us")), our_start=_instant(r.get("our_start_us")),
            their_duration=r.get("their_duration"), our_duration=r.get("our_duration"),
            their_amount=r.get("their_amount"), our_amount=r.get("our_amount"))
    return out.getvalue()


def _what(ln: Mapping[str, Any]) -> str:
    return " ".join(str(x) for x in (ln.get("service"), ln.get("destination"), ln.get("band")) if x)


def render_pdf(doc: Mapping[str, Any]) -> bytes:
    # lazy: fpdf2 loads only when a PDF is written
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(False)
    when = doc["issue_date"]
    pdf.set_creation_date(datetime(when.year, when.month, when.day, tzinfo=UTC))
    pdf.set_producer("icdsl")
    pdf.set_author("icdsl")
    pdf.set_title(latin1(f"DISPUTE {doc['number']}"))
    pdf.alias_nb_pages()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    ccy = doc["currency"]

    def footer() -> None:
        pdf.set_y(-12)
        pdf.set_font(FONT, "", 7)
        pdf.set_text_color(110)
        pdf.cell(width / 2, 4, latin1(f"{doc['partner_code']} {doc['invoice']['number']} {doc['number']}"))
        pdf.cell(width / 2, 4, f"page {pdf.page_no()} of {{nb}}", align="R")
        pdf.set_text_color(0)

    def page() -> None:
        if pdf.page_no() > 0:
            footer()
        pdf.add_page()

    def need(h: float, head: Any = None) -> None:
        if pdf.get_y() + h > pdf.h - 20:
            page()
            if head is not None:
                head()

    page()
    pdf.set_font(FONT, "B", 18)
    pdf.cell(width, 9, latin1(f"INVOICE DISPUTE {doc['number']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font(FONT, "", 9)
    facts = [("To", f"{doc['partner_name']} (partner code {doc['partner_code']})"),
             ("Your invoice", f"{doc['invoice']['number']}, total {money_text(doc['invoice']['total'])} {ccy}"),
             ("Period", f"{doc['period_start']} to {doc['period_end']}"), ("Opened", str(doc["issue_date"])),
             ("State", STATE_TEXT.get(doc["state"], doc["state"])), ("Currency", ccy)]
    if doc.get("reason"):
        facts.append(("Reason", doc["reason"]))
    for label, value in facts:
        pdf.set_font(FONT, "B", 9)
        pdf.cell(width * 0.18, 5, latin1(label))
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(width * 0.82, 5, latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.multi_cell(width, 4.5, latin1(
        "We dispute the lines below of your invoice: for each, what you billed, what our records of the same traffic "
        "give under our agreement, and the difference we dispute. The records that differ are listed after the "
        "lines. Please answer with a credit note for the amount disputed, or with your reasons."),
        new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    cols = [("#", 0.05, "R"), ("Your line", 0.09, "R"), ("Description", 0.30, "L"), ("Calls yours/ours", 0.14, "R"),
            ("You billed", 0.14, "R"), ("We expect", 0.14, "R"), ("Disputed", 0.14, "R")]

    def head() -> None:
        pdf.set_font(FONT, "B", 8.5)
        pdf.set_fill_color(230, 233, 238)
        for name, w, align in cols:
            pdf.cell(width * w, 6, name, border="B", align=align, fill=True)
        pdf.ln(6)
        pdf.set_font(FONT, "", 8.5)

    def cells(values: list[str], spec: list[tuple[str, float, str]]) -> None:
        for (_n, w, align), value in zip(spec, values, strict=True):
            text = latin1(value)
            cw = width * w
            while text and pdf.get_string_width(text) > cw - 1.5:
                text = text[:-2] + "."
            pdf.cell(cw, 5, text, align=align)
        pdf.ln(5)

    head()
    for ln in doc["lines"]:
        need(5, head)
        cells([str(ln["line_no"]), " ".join(str(n) for n in ln["their_lines"]) or "-", _what(ln),
               f"{ln['their_calls']:,}/{ln['our_calls']:,}", money_text(ln["their_amount"]),
               money_text(ln["our_amount"]), money_text(ln["amount"])], cols)
    need(40)
    pdf.ln(2)
    pdf.set_draw_color(150)
    pdf.line(pdf.l_margin + width * 0.55, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
    pdf.ln(1)
    rows: list[tuple[str, Decimal, bool]] = [("You billed (these lines)", doc["their_amount"], False),
                                             ("We expect", doc["our_amount"], False),
                                             ("Amount disputed", doc["amount"], True)]
    if doc.get("credits"):
        rows += [(f"Credited ({c['credit_note_number']})", c["amount"], False) for c in doc["credits"]]
        rows.append(("Still disputed", doc["held_amount"], True))
    for label, amount, strong in rows:
        pdf.set_x(pdf.l_margin + width * 0.55)
        pdf.set_font(FONT, "B" if strong else "", 10 if strong else 9)
        pdf.cell(width * 0.25, 6, latin1(label))
        pdf.cell(width * 0.20, 6, latin1(f"{money_text(amount)} {ccy}"), align="R", new_x="LMARGIN", new_y="NEXT")
    records = list(doc.get("evidence_records", []))
    if records:
        pdf.ln(4)
        need(20)
        pdf.set_font(FONT, "B", 10)
        pdf.cell(width, 6, latin1(f"Evidence: {len(records):,} record(s) that differ"), new_x="LMARGIN", new_y="NEXT")
        rcols = [("#", 0.05, "R"), ("Class", 0.15, "L"), ("Your id", 0.13, "L"), ("Our id", 0.13, "L"),
                 ("B number", 0.16, "L"), ("Start (UTC)", 0.20, "L"), ("Secs yours/ours", 0.18, "R")]

        def rhead() -> None:
            pdf.set_font(FONT, "B", 7.5)
            pdf.set_fill_color(230, 233, 238)
            for name, w, align in rcols:
                pdf.cell(width * w, 5, name, border="B", align=align, fill=True)
            pdf.ln(5)
            pdf.set_font(FONT, "", 7.5)

        rhead()
        for r in records[:PDF_RECORDS]:
            need(5, rhead)
            durations = f"{_text(r.get('their_duration'))}/{_text(r.get('our_duration'))}"
            cells([_text(r.get("dispute_line")) or "-", str(r.get("class") or "").replace("_", " "),
                   _text(r.get("their_id")), _text(r.get("our_id")), _text(r.get("b_number")),
                   _instant(r.get("their_start_us") if r.get("their_start_us") is not None else r.get("our_start_us")),
                   durations], rcols)
        if len(records) > PDF_RECORDS:
            pdf.set_font(FONT, "I", 8)
            pdf.cell(width, 5, latin1(f"... and {len(records) - PDF_RECORDS:,} more in the CSV and JSON of this "
                                      "dispute"), new_x="LMARGIN", new_y="NEXT")
    notes = [f"Amounts are exact: each line disputes your amount minus ours; the amount disputed is the sum of "
             f"the lines. Tolerances of our agreement: {_tolerances(doc.get('tolerances') or {})}.",
             f"Your invoice's sha256 as received: {doc['invoice'].get('sha256') or '-'}."]
    if doc["evidence"].get("sha256"):
        notes.append(f"Evidence file sha256: {doc['evidence']['sha256']} ({doc['evidence']['rows']} records).")
    notes_block(pdf, notes, width, encode=latin1, need=need, room=6 + 8 * len(notes))
    footer()
    return bytes(pdf.output())


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _tolerances(t: Mapping[str, Any]) -> str:
    return (f"{t.get('line_percent', 0)} % or {t.get('line_amount', 0)} per line, start within "
            f"{t.get('start_seconds', 0)} s, duration within {t.get('duration_seconds', 0)} s")


def write_dispute(doc: Mapping[str, Any], path: str | Path, fmt: str) -> Path:
    """Write the dispute to ``path`` in ``fmt`` (pdf, csv, json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pdf":
        path.write_bytes(render_pdf(doc))
    elif fmt == "csv":
        path.write_text(dumps_csv(doc), encoding="utf-8")
    elif fmt == "json":
        path.write_text(dumps_json(doc), encoding="utf-8")
    else:
        raise ValueError(f"unknown format '{fmt}': use {', '.join(DISPUTE_FORMATS)}")
    return path
