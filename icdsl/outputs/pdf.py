"""A document as a readable PDF (fpdf2, core Helvetica font: nothing to install).

Header (partner, period, number, issue and due dates, stream), the lines (itemized: one per
destination and band; summary: one per service), subtotal, tax (its label, and the legal note of
a reverse charge or an exemption), total; for a settlement statement the netted lines, what each
side owes and the balance. The footer names the agreement versions (and their hashes), the FX
rates used and how amounts are rounded. Core fonts know Latin-1 only: other characters are
replaced by their closest Latin-1 spelling. The output is deterministic (the creation date is the
issue date), so the same document gives the same bytes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from icdsl.outputs.pdfnotes import notes_block
from icdsl.outputs.views import POSITION_TITLE, file_stem, position_rows, view_lines

FONT = "Helvetica"
REPLACE = {"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
           "\u2026": "...", "\u2192": "->", "\u00a0": " ", "\u20ac": "EUR"}
TITLES = {"invoice": "INVOICE", "credit_note": "CREDIT NOTE", "statement": "SETTLEMENT STATEMENT",
          "share_statement": "REVENUE-SHARE STATEMENT"}


def latin1(text: Any) -> str:
    s = "" if text is None else str(text)
    s = "".join(REPLACE.get(ch, ch) for ch in s)
    out = []
    for ch in s:
        try:
            ch.encode("latin-1")
            out.append(ch)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", ch).encode("latin-1", "ignore").decode("latin-1")
            out.append(base or "?")
    return "".join(out)


def money_text(v: Decimal | None) -> str:
    return "" if v is None else f"{v:,f}"


def quantity_text(q: Decimal | None, unit: str | None) -> str:
    if q is None:
        return ""
    if unit == "second":
        return f"{(q / 60).quantize(Decimal('0.01')):,f} min"
    if unit == "byte":
        return f"{(q / 1_048_576).quantize(Decimal('0.001')):,f} MB"
    n = f"{q.normalize():,f}" if q == q.to_integral_value() else f"{q:,f}"
    return f"{n} {unit or ''}".strip()


def _date(d: date | None) -> str:
    return d.isoformat() if d else "-"


#: seconds in a unit of time (to state an average rate per the unit the line is priced in)
_SECONDS = {"second": Decimal(1), "minute": Decimal(60), "hour": Decimal(3600)}


def average_rate_text(ln: Mapping[str, Any], ccy: str) -> str:
    """A line whose records were priced at several rates (a destination's prefixes priced
    differently) has no single rate: its average, exact sum / quantity in the unit it is priced
    in, to 4 decimals, marked ``avg``; ``mixed`` when the units do not convert."""
    exact, q = ln.get("source_amount"), ln.get("quantity")
    unit, per = ln.get("unit"), ln.get("rate_unit")
    if exact is None or not q or not per:
        return "mixed rates" if ln.get("record_count") else ""
    if unit == per:
        factor = Decimal(1)
    elif unit in _SECONDS and per in _SECONDS:
        factor = _SECONDS[unit] / _SECONDS[per]
    else:
        return "mixed rates"
    avg = (Decimal(exact) / (Decimal(q) * factor)).quantize(Decimal("0.0001"))
    return f"avg {avg:f} {ccy}/{per}".replace("  ", " ")


def party_lines(p: Mapping[str, Any]) -> list[str]:
    """A party's address and identifiers as printed under its name."""
    out = list(p.get("address") or ())
    town = " ".join(x for x in (p.get("postcode"), p.get("city")) if x)
    if town or p.get("country"):
        out.append(", ".join(x for x in (town, p.get("country")) if x))
    ids = []
    if p.get("vat"):
        ids.append(f"VAT {p['vat']}")
    if p.get("registration"):
        ids.append(f"Reg. {p['registration']}")
    if ids:
        out.append(", ".join(ids))
    contacts = p.get("contacts") or ()
    if contacts:
        c = contacts[0]
        out.append(", ".join(x for x in (c.get("name"), c.get("email"), c.get("phone")) if x))
    return out


def addressee_label(doc: Mapping[str, Any]) -> str:
    """Who the document is addressed to, and in what role (never "Bill to" someone we pay)."""
    kind = doc.get("kind", "invoice")
    if kind == "credit_note":
        return "Credit to"
    if kind == "statement":
        return "Counterparty"
    if kind == "share_statement":
        return "Internal: our share" if doc.get("party") == "us" else "Payable to"
    return "Bill to"


def who_owes_whom(doc: Mapping[str, Any]) -> str:
    """One sentence: who owes whom how much (the document's direction of money)."""
    kind, ccy = doc.get("kind", "invoice"), doc.get("currency") or ""
    us = (doc.get("seller") or {}).get("name") or "We"
    them = doc.get("partner_name") or doc.get("partner_code") or "the partner"
    total = doc.get("total")
    if kind in ("invoice", "credit_note") and total is not None:
        if total >= 0:
            return f"{them} owes {us} {money_text(total)} {ccy}."
        return f"{us} owes {them} {money_text(-total)} {ccy} (a credit: deduct it from a payment or it is refunded)."
    if kind == "statement" and doc.get("net") is not None:
        net = doc["net"]
        if net > 0:
            return f"{them} owes {us} {money_text(net)} {ccy} net."
        if net < 0:
            return f"{us} owes {them} {money_text(-net)} {ccy} net."
        return "Nothing is owed: the period nets to zero."
    if kind == "share_statement" and total is not None:
        if doc.get("party") == "us":
            return f"Kept by {us}: {money_text(total)} {ccy} (our own share; nothing to pay)."
        return f"{us} owes {doc.get('party_name') or doc.get('party')} {money_text(total)} {ccy}."
    return ""


def render(doc: Mapping[str, Any], *, view: str = "itemized") -> bytes:
    # lazy: fpdf2 loads only when a PDF is written
    from fpdf import FPDF

    kind = doc.get("kind", "invoice")
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(False)
    when = doc.get("issue_date") or doc.get("period_end") or date(2000, 1, 1)
    pdf.set_creation_date(datetime(when.year, when.month, when.day, tzinfo=UTC))
    pdf.set_producer("icdsl")
    pdf.set_title(latin1(f"{TITLES.get(kind, kind)} {doc.get('number') or 'draft'}"))
    pdf.set_author("icdsl")
    pdf.alias_nb_pages()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    number = doc.get("number")

    def footer_line() -> None:
        pdf.set_y(-12)
        pdf.set_font(FONT, "", 7)
        pdf.set_text_color(110)
        pdf.cell(width / 2, 4, latin1(f"{doc.get('partner_code')} {doc.get('period') or ''} "
                                      f"{number or 'DRAFT'}"))
        pdf.cell(width / 2, 4, f"page {pdf.page_no()} of {{nb}}", align="R")
        pdf.set_text_color(0)

    def new_page() -> None:
        if pdf.page_no() > 0:
            footer_line()
        pdf.add_page()

    new_page()
    # ---- header
    pdf.set_font(FONT, "B", 18)
    title = TITLES.get(kind, kind.upper())
    pdf.cell(width * 0.6, 9, latin1(title + ("" if number else " (DRAFT)")))
    pdf.set_font(FONT, "", 9)
    facts = [("Number", number or "draft, not yet numbered"), ("Issue date", _date(doc.get("issue_date"))),
             ("Due date", _date(doc.get("due_date"))),
             ("Period", f"{doc.get('period') or ''} ({_date(doc.get('period_start'))} to {_date(doc.get('period_end'))})"),
             ("Currency", doc.get("currency"))]
    if kind not in ("statement", "share_statement") and doc.get("stream") and doc.get("stream") != "main":
        facts.append(("Invoice stream", doc.get("stream")))
    pdf.ln(11)
    seller = doc.get("seller")
    if seller:  # who we are, as the rules declare it (company)
        pdf.set_font(FONT, "B", 9)
        pdf.cell(width * 0.5, 5, latin1(seller.get("name")), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FONT, "", 8)
        for text in party_lines(seller):
            pdf.multi_cell(width * 0.5, 3.8, latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    top = pdf.get_y()
    pdf.set_font(FONT, "B", 9)
    pdf.cell(width * 0.5, 5, latin1(addressee_label(doc)), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 10)
    pdf.multi_cell(width * 0.5, 5, latin1(doc.get("party_name") if kind == "share_statement"
                                          else doc.get("partner_name")), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 9)
    who = f"Partner code {doc.get('partner_code')}"
    if kind == "share_statement":
        who = f"Party {doc.get('party')}, shares of the revenue of {doc.get('partner_code')}"
    if doc.get("partner_country"):
        who += f", {doc.get('partner_country')}"
    pdf.multi_cell(width * 0.5, 5, latin1(who), new_x="LMARGIN", new_y="NEXT")
    buyer = doc.get("buyer") if kind != "share_statement" else None
    if buyer and buyer.get("address"):
        pdf.set_font(FONT, "", 8)
        for text in party_lines(buyer):
            pdf.multi_cell(width * 0.5, 3.8, latin1(text), new_x="LMARGIN", new_y="NEXT")
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + width * 0.55, top)
    for label, value in facts:
        pdf.set_x(pdf.l_margin + width * 0.55)
        pdf.set_font(FONT, "B", 9)
        pdf.cell(width * 0.17, 5, latin1(label))
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(width * 0.28, 5, latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), left_bottom) + 6)

    # ---- lines
    lines = view_lines(doc, view)
    if view == "summary":
        cols = [("Description", 0.46, "L"), ("Lines", 0.08, "R"), ("Records", 0.12, "R"), ("Quantity", 0.16, "R"),
                ("Amount", 0.18, "R")]
    else:
        cols = [("#", 0.05, "R"), ("Description", 0.45, "L"), ("Quantity", 0.16, "R"), ("Rate", 0.16, "R"),
                ("Amount", 0.18, "R")]

    def table_head() -> None:
        pdf.set_font(FONT, "B", 8.5)
        pdf.set_fill_color(230, 233, 238)
        for name, w, align in cols:
            pdf.cell(width * w, 6, name, border="B", align=align, fill=True)
        pdf.ln(6)
        pdf.set_font(FONT, "", 8.5)

    def need(h: float) -> None:
        if pdf.get_y() + h > pdf.h - 20:
            new_page()
            table_head()

    if kind == "statement":
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(width, 4.5, latin1(
            "What we owe you for the netted services of the period (the amounts your own invoice should "
            "show), offset against our invoices of the same period."), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    if kind == "share_statement":
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(width, 4.5, latin1(
            "Your shares of the period's revenue. Below the lines, each split: the amount split and every "
            "party's share; the shares add up to the amount split exactly."), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    table_head()
    row_h = 5
    for i, ln in enumerate(lines, 1):
        need(row_h)
        if view == "summary":
            values = [ln.get("description"), str(ln.get("lines", "")), f"{ln.get('record_count') or 0:,}",
                      quantity_text(ln.get("quantity"), ln.get("unit")), money_text(ln.get("amount"))]
        else:
            rate = ln.get("rate")
            ccy = ln.get("source_currency") if ln.get("source_currency") not in (None, doc.get("currency")) else ""
            unit = ln.get("rate_unit") or ln.get("unit")
            rate_text = f"{rate.normalize():f} {ccy}/{unit}".replace("  ", " ") if rate is not None else ""
            if rate is None and ln.get("kind") == "traffic":
                rate_text = average_rate_text(ln, ccy)
            values = [str(ln.get("line_no", i)), ln.get("description"), quantity_text(ln.get("quantity"), ln.get("unit")),
                      rate_text, money_text(ln.get("amount"))]
        # long texts wrap onto more lines of the row, never cut: the row is as tall as its
        # tallest cell
        heights = [len(pdf.multi_cell(width * w - 1, 4, latin1(v), dry_run=True, output="LINES")) or 1
                   for (_n, w, _a), v in zip(cols, values, strict=True)]
        h = max(row_h, 4 * max(heights) + 1)
        need(h)
        y = pdf.get_y()
        x = pdf.l_margin
        for (_name, w, align), value in zip(cols, values, strict=True):
            pdf.set_xy(x, y)
            pdf.multi_cell(width * w - 1, 4 if h > row_h else row_h, latin1(value), align=align)
            x += width * w
        pdf.set_xy(pdf.l_margin, y + h)
    if not lines:
        pdf.set_font(FONT, "I", 9)
        pdf.cell(width, 6, "No lines.", new_x="LMARGIN", new_y="NEXT")

    # ---- totals
    need(30)
    pdf.ln(2)
    pdf.set_draw_color(150)
    pdf.line(pdf.l_margin + width * 0.55, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
    pdf.ln(1)
    ccy = doc.get("currency") or ""
    if kind == "statement" and doc.get("receivable_items"):
        pdf.set_font(FONT, "B", 8.5)
        pdf.cell(width, 5, "Receivable: our invoices of the period", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FONT, "", 8.5)
        for item in doc["receivable_items"]:
            need(5)
            pdf.cell(width * 0.82, 5, latin1(f"{item.get('stream')}: {item.get('description')}"))
            pdf.cell(width * 0.18, 5, latin1(money_text(item.get("amount"))), align="R", new_x="LMARGIN",
                     new_y="NEXT")
    if kind == "share_statement":
        pdf.set_font(FONT, "", 8.5)
        for sp in doc.get("splits", []):
            need(10)
            parts = " + ".join(f"{k} {money_text(v)}" for k, v in sp["parties"].items())
            pdf.multi_cell(width, 4.5, latin1(
                f"{sp['charge']} ({sp['agreement']}, {sp.get('basis')}{', ' + sp['tier'] if sp.get('tier') else ''}): "
                f"amount split {money_text(sp.get('amount_split'))} {sp['currency']} = {parts}"
                + (" (adds up)" if sp.get("adds_up") else "")), new_x="LMARGIN", new_y="NEXT")
    if kind == "statement":
        rows = [("Receivable (our invoices)", doc.get("receivable"), False),
                ("Payable (netted lines above)", doc.get("payable"), False), ("Net balance", doc.get("net"), True)]
    elif kind == "share_statement":
        rows = [("Total of your shares", doc.get("total"), True)]
    else:
        tax_label = doc.get("tax_label") or "Tax"
        rows = [("Subtotal", doc.get("subtotal"), False), (tax_label, doc.get("tax_amount"), False),
                ("Total", doc.get("total"), True)]
    for label, amount, strong in rows:
        pdf.set_x(pdf.l_margin + width * 0.55)
        pdf.set_font(FONT, "B" if strong else "", 10 if strong else 9)
        pdf.cell(width * 0.25, 6, latin1(label))
        pdf.cell(width * 0.20, 6, latin1(f"{money_text(amount)} {ccy}"), align="R", new_x="LMARGIN", new_y="NEXT")
    if kind == "statement" and doc.get("net") is not None:
        pdf.set_font(FONT, "", 8.5)
        who = "you owe us" if doc["net"] >= 0 else "we owe you"
        pdf.set_x(pdf.l_margin + width * 0.55)
        pdf.cell(width * 0.45, 5, latin1(f"Balance: {who} {money_text(abs(doc['net']))} {ccy}"),
                 new_x="LMARGIN", new_y="NEXT")
        invs = [i.get("number") or f"#{i.get('id')}" for i in doc.get("invoices", [])]
        if invs:
            pdf.set_x(pdf.l_margin + width * 0.55)
            pdf.cell(width * 0.45, 5, latin1(f"Invoices: {', '.join(invs)}"), new_x="LMARGIN", new_y="NEXT")
    pos = doc.get("dispute_position")
    if pos:  # a separate section: computed when shown, not part of the sealed statement
        need(12 + 6 * 5)
        pdf.ln(4)
        pdf.set_x(pdf.l_margin + width * 0.55)
        pdf.set_font(FONT, "B", 9)
        pdf.multi_cell(width * 0.45, 5, latin1(POSITION_TITLE), new_x="LMARGIN", new_y="NEXT")
        for key, label, amount in position_rows(pos):
            pdf.set_x(pdf.l_margin + width * 0.55)
            pdf.set_font(FONT, "B" if key == "undisputed_payable" else "", 9)
            pdf.cell(width * 0.25, 6, latin1(label))
            pdf.cell(width * 0.20, 6, latin1(f"{money_text(amount)} {pos.get('currency') or ccy}"), align="R",
                     new_x="LMARGIN", new_y="NEXT")
        held = [d["number"] for d in pos.get("disputes", []) if d.get("held")]
        if held:
            pdf.set_font(FONT, "", 8)
            pdf.set_x(pdf.l_margin + width * 0.55)
            pdf.multi_cell(width * 0.45, 4, latin1(f"Held by {', '.join(held)}"), new_x="LMARGIN", new_y="NEXT")
    owes = who_owes_whom(doc)
    if owes:
        pdf.ln(2)
        pdf.set_font(FONT, "B", 9)
        pdf.multi_cell(width, 5, latin1(owes), new_x="LMARGIN", new_y="NEXT")
    if kind in ("invoice", "credit_note") and seller and seller.get("iban") and (doc.get("total") or 0) > 0:
        pdf.set_font(FONT, "", 8.5)
        pdf.multi_cell(width, 4.5, latin1(
            f"Payment by credit transfer to {seller.get('name')}, IBAN {seller['iban']}"
            + (f", BIC {seller['bic']}" if seller.get("bic") else "") + f", reference {number or 'to follow'}"
            + (f", by {_date(doc.get('due_date'))}" if doc.get("due_date") else "") + "."),
            new_x="LMARGIN", new_y="NEXT")
    if doc.get("corrects"):
        pdf.set_font(FONT, "", 8.5)
        pdf.multi_cell(width, 4.5, latin1("Corrects invoice(s) " + ", ".join(doc["corrects"]) + "."),
                       new_x="LMARGIN", new_y="NEXT")
    if doc.get("tax_note"):
        pdf.ln(3)
        pdf.set_font(FONT, "B", 9)
        pdf.multi_cell(width, 5, latin1(doc["tax_note"]), new_x="LMARGIN", new_y="NEXT")

    # ---- provenance
    notes = []
    for a in doc.get("agreements", []):
        notes.append(f"Agreement \"{a['name']}\" v{a['version']} (sha256 {a['hash'][:16]})")
    for fx in doc.get("fx", []):
        notes.append(f"FX {fx['from']} to {fx['to']}: {fx['rate']} ({fx['source']} {fx['listed']}, in force from "
                     f"{_date(fx['effective_from'])})")
    if doc.get("rounding"):
        notes.append(f"Rounding: {doc['rounding']}.")
    if view == "summary" and kind not in ("statement", "share_statement"):
        notes.append("Summary view: the lines added up by service; the itemized invoice lists each destination.")
    notes_block(pdf, notes, width, encode=latin1, need=need)
    footer_line()
    return bytes(pdf.output())


def write_pdf(doc: Mapping[str, Any], directory: Path, *, view: str = "itemized") -> Path:
    suffix = "-summary" if view == "summary" else ""
    path = Path(directory) / f"{file_stem(doc)}{suffix}.pdf"
    path.write_bytes(render(doc, view=view))
    return path
