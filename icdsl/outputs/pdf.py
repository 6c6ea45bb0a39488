"""A document as a readable PDF (fpdf2), laid out by a layout file (:mod:`icdsl.layouts`).

Header (our company, the addressee in its role, number, issue and due dates, period, stream), the
lines (itemized: one per destination and band; summary: one per service; the columns the layout
names), subtotal, tax (its label, and the legal note of a reverse charge or an exemption), total;
for a settlement statement the netted lines, what each side owes and the balance; who owes whom;
the payment instructions and the invoices a credit or debit note corrects. The footer names the
agreement versions (and their hashes), the FX rates used and how amounts are rounded.

The layout is the one the rules choose for the document (its partner's, for its stream, or our
company's; sealed with the document's parties when it was finalized), else the default; numbers
and dates are written for the partner's ``locale`` (babel). The text is set in DejaVu Sans
Condensed, embedded (the glyphs used), so that any Unicode text the font covers prints as written
and a Factur-X file is PDF/A-3 with embedded fonts; a layout may ask for a PDF core font instead
(Helvetica: Latin-1 only, other characters replaced by their closest Latin-1 spelling). Long texts
wrap onto more lines, never cut. The output is deterministic (the creation date is the issue
date), so the same document gives the same bytes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

from icdsl.cycle.amounts import minor_units
from icdsl.layouts import Layout, Local, choose, locale_of
from icdsl.outputs.views import file_stem, position_rows, view_lines

FONT = "Helvetica"  # the core font of the other PDFs (disputes, reconciliations)
FONTS_DIR = Path(__file__).with_name("fonts")
#: the embedded font's files (regular, bold): DejaVu Sans Condensed 2.37, fonts/LICENSE-DejaVu.txt
FONT_FILES = {"": FONTS_DIR / "DejaVuSansCondensed.ttf", "B": FONTS_DIR / "DejaVuSansCondensed-Bold.ttf"}
REPLACE = {"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
           "\u2026": "...", "\u2192": "->", "\u00a0": " ", "\u20ac": "EUR"}
TITLES = {"invoice": "INVOICE", "credit_note": "CREDIT NOTE", "debit_note": "DEBIT NOTE",
          "statement": "SETTLEMENT STATEMENT", "share_statement": "REVENUE-SHARE STATEMENT"}


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


def quantity_text(q: Decimal | None, unit: str | None, local: Local | None = None,
                  layout: Layout | None = None) -> str:
    if q is None:
        return ""
    shown = layout.word(unit) if layout is not None and unit not in ("second", "byte") else unit
    if local is not None and local.locale:
        if unit == "second":
            return f"{local.number((q / 60).quantize(Decimal('0.01')))} min"
        if unit == "byte":
            return f"{local.number((q / 1_048_576).quantize(Decimal('0.001')))} MB"
        n = local.number(q.normalize() if q == q.to_integral_value() else q, 0 if q == q.to_integral_value() else None)
        return f"{n} {shown or ''}".strip()
    if unit == "second":
        return f"{(q / 60).quantize(Decimal('0.01')):,f} min"
    if unit == "byte":
        return f"{(q / 1_048_576).quantize(Decimal('0.001')):,f} MB"
    n = f"{q.normalize():,f}" if q == q.to_integral_value() else f"{q:,f}"
    return f"{n} {shown or ''}".strip()


def _date(d: date | None) -> str:
    return d.isoformat() if d else "-"


#: seconds in a unit of time (to state an average rate per the unit the line is priced in)
_SECONDS = {"second": Decimal(1), "minute": Decimal(60), "hour": Decimal(3600)}


def average_rate_text(ln: Mapping[str, Any], ccy: str, local: Local | None = None,
                      layout: Layout | None = None) -> str:
    """A line whose records were priced at several rates (a destination's prefixes priced
    differently) has no single rate: its average, exact sum / quantity in the unit it is priced
    in, to 4 decimals, marked ``avg``; ``mixed`` when the units do not convert (the words and the
    unit: the layout's, the number: the locale's)."""
    labels = layout.labels if layout is not None else {"average": "avg", "mixed_rates": "mixed rates"}
    exact, q = ln.get("source_amount"), ln.get("quantity")
    unit, per = ln.get("unit"), ln.get("rate_unit")
    if exact is None or not q or not per:
        return labels["mixed_rates"] if ln.get("record_count") else ""
    if unit == per:
        factor = Decimal(1)
    elif unit in _SECONDS and per in _SECONDS:
        factor = _SECONDS[unit] / _SECONDS[per]
    else:
        return labels["mixed_rates"]
    avg = (Decimal(exact) / (Decimal(q) * factor)).quantize(Decimal("0.0001"))
    shown = f"{avg:f}" if local is None else local.number(avg, 4)
    per = layout.word(per) if layout is not None else per
    return f"{labels['average']} {shown} {ccy}/{per}".replace("  ", " ")


def party_lines(p: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> list[str]:
    """A party's address and identifiers as printed under its name (``labels``: the layout's
    words for the VAT identifier and the registration number)."""
    lb = {"vat_id": "VAT", "registration": "Reg.", **(labels or {})}
    out = list(p.get("address") or ())
    town = " ".join(x for x in (p.get("postcode"), p.get("city")) if x)
    if town or p.get("country"):
        out.append(", ".join(x for x in (town, p.get("country")) if x))
    ids = []
    if p.get("vat"):
        ids.append(f"{lb['vat_id']} {p['vat']}")
    if p.get("registration"):
        ids.append(f"{lb['registration']} {p['registration']}")
    if ids:
        out.append(", ".join(ids))
    contacts = p.get("contacts") or ()
    if contacts:
        c = contacts[0]
        out.append(", ".join(x for x in (c.get("name"), c.get("email"), c.get("phone")) if x))
    return out


def addressee_label(doc: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """Who the document is addressed to, and in what role (never "Bill to" someone we pay)."""
    lb = {"credit_to": "Credit to", "counterparty": "Counterparty", "our_share": "Internal: our share",
          "payable_to": "Payable to", "bill_to": "Bill to", **(labels or {})}
    kind = doc.get("kind", "invoice")
    if kind == "credit_note":
        return lb["credit_to"]
    if kind == "statement":
        return lb["counterparty"]
    if kind == "share_statement":
        return lb["our_share"] if doc.get("party") == "us" else lb["payable_to"]
    return lb["bill_to"]


def owes_parts(doc: Mapping[str, Any]) -> tuple[str, str, Decimal] | None:
    """(who owes, to whom, how much) of a document; None when nothing is owed or it is ours."""
    kind = doc.get("kind", "invoice")
    us = (doc.get("seller") or {}).get("name") or "We"
    them = doc.get("partner_name") or (doc.get("buyer") or {}).get("name") or doc.get("partner_code") or "the partner"
    total = doc.get("total")
    if kind in ("invoice", "credit_note", "debit_note") and total is not None:
        return (them, us, total) if total >= 0 else (us, them, -total)
    if kind == "statement" and doc.get("net"):
        return (them, us, doc["net"]) if doc["net"] > 0 else (us, them, -doc["net"])
    if kind == "share_statement" and total is not None and doc.get("party") != "us":
        return us, str(doc.get("party_name") or doc.get("party")), total
    return None


def who_owes_whom(doc: Mapping[str, Any], local: Local | None = None) -> str:
    """One sentence: who owes whom how much (the document's direction of money)."""
    amount = money_text if local is None else (lambda v: "" if v is None else local.number(v))
    kind, ccy = doc.get("kind", "invoice"), doc.get("currency") or ""
    us = (doc.get("seller") or {}).get("name") or "We"
    them = doc.get("partner_name") or doc.get("partner_code") or "the partner"
    total = doc.get("total")
    if kind in ("invoice", "credit_note", "debit_note") and total is not None:
        if total >= 0:
            return f"{them} owes {us} {amount(total)} {ccy}."
        return f"{us} owes {them} {amount(-total)} {ccy} (a credit: deduct it from a payment or it is refunded)."
    if kind == "statement" and doc.get("net") is not None:
        net = doc["net"]
        if net > 0:
            return f"{them} owes {us} {amount(net)} {ccy} net."
        if net < 0:
            return f"{us} owes {them} {amount(-net)} {ccy} net."
        return "Nothing is owed: the period nets to zero."
    if kind == "share_statement" and total is not None:
        if doc.get("party") == "us":
            return f"Kept by {us}: {amount(total)} {ccy} (our own share; nothing to pay)."
        return f"{us} owes {doc.get('party_name') or doc.get('party')} {amount(total)} {ccy}."
    return ""


def _tax_label(doc: Mapping[str, Any], lay: Layout, local: Local) -> str:
    """The invoice's tax line, in the layout's words (the rate written for the locale)."""
    kind = doc.get("tax_kind")
    if kind == "vat" and doc.get("tax_rate") is not None:
        rate = Decimal(doc["tax_rate"]).normalize()
        return lay.text("tax_vat", {"rate": local.number(rate)})
    if kind in ("reverse_charge", "exempt"):
        return lay.labels[f"tax_{kind}"]
    return doc.get("tax_label") or lay.labels["tax"]


def _setup_fonts(pdf: Any, layout: Layout) -> tuple[str, Any]:
    """The layout's font on ``pdf``: its family name, and how a text is made printable in it."""
    if layout.core_font:
        return layout.page["font"], latin1
    for style, path in FONT_FILES.items():
        pdf.add_font("DejaVu", style, str(path))
    return "DejaVu", lambda text: "" if text is None else str(text)


def _cell_value(ln: Mapping[str, Any], field: str, i: int, doc: Mapping[str, Any], local: Local, view: str,
                lay: Layout) -> str:
    """The text of one column of a line."""
    if field == "line_no":
        return str(ln.get("line_no", i))
    if field == "description":
        # the layout's own words for a line made of the rules' names (else as billed)
        own = "summary_line" if view == "summary" else "traffic_line" if ln.get("kind") == "traffic" else None
        if own and ln.get("direction") and (lay.texts.get(own) or "").strip():
            return lay.text(own, {"kind": lay.word(ln.get("kind")), "direction": lay.word(ln["direction"]),
                                  "service": lay.word(ln.get("service")), "destination": ln.get("destination"),
                                  "band": lay.word(ln.get("band"))})
        return str(ln.get("description") or "")
    if field == "quantity":
        return quantity_text(ln.get("quantity"), ln.get("unit"), local, lay)
    if field == "amount":
        return local.number(ln.get("amount")) if ln.get("amount") is not None else ""
    if field == "lines":
        return str(ln.get("lines", ""))
    if field == "records":
        return local.number(ln.get("record_count") or 0, 0)
    if field == "rate":
        if view == "summary":
            return ""
        rate = ln.get("rate")
        ccy = ln.get("source_currency") if ln.get("source_currency") not in (None, doc.get("currency")) else ""
        unit = ln.get("rate_unit") or ln.get("unit")
        if rate is not None:
            return f"{local.number(rate.normalize())} {ccy}/{lay.word(unit)}".replace("  ", " ")
        return average_rate_text(ln, ccy, local, lay) if ln.get("kind") == "traffic" else ""
    return str(ln.get(field) or "")


def _output_intent(pdf: Any) -> None:
    """The sRGB output intent PDF/A asks for (the ICC profile fpdf2 ships: sRGB2014)."""
    # lazy: fpdf2 loads only when a PDF is written
    from fpdf.enums import OutputIntentSubType
    from fpdf.output import PDFICCProfile

    icc = files("fpdf").joinpath("data/color_profiles/sRGB2014.icc").read_bytes()
    pdf.add_output_intent(OutputIntentSubType.PDFA, output_condition_identifier="sRGB",
                          output_condition="IEC 61966-2-1:1999", registry_name="http://www.color.org",
                          dest_output_profile=PDFICCProfile(contents=icc, n=3, alternate="DeviceRGB"),
                          info="sRGB2014 (v2)")


def render(doc: Mapping[str, Any], *, view: str = "itemized", layout: Layout | None = None,
           pdfa: bool = False) -> bytes:
    """The document as PDF bytes, laid out by ``layout`` (default: the one the rules chose for it,
    :func:`icdsl.layouts.choose`). ``pdfa``: with the sRGB output intent of PDF/A (Factur-X adds
    the rest: XMP metadata, the embedded XML); the fonts are embedded unless the layout asks for
    a core font (then it is not PDF/A)."""
    # lazy: fpdf2 loads only when a PDF is written
    from fpdf import FPDF

    lay = layout if layout is not None else choose(doc)
    local = Local(locale_of(doc, lay), lay.format["date"])
    labels, page = lay.labels, lay.page
    base = float(page["font_size"])
    kind = doc.get("kind", "invoice")
    pdf = FPDF(orientation="P", unit="mm", format=page["size"] if page["size"] in ("A4", "A5") else page["size"].lower())
    margin = float(page["margin"])
    pdf.set_margins(margin, margin, margin)
    pdf.set_auto_page_break(False)
    font, text = _setup_fonts(pdf, lay)
    if pdfa:
        _output_intent(pdf)
    when = doc.get("issue_date") or doc.get("period_end") or date(2000, 1, 1)
    pdf.set_creation_date(datetime(when.year, when.month, when.day, tzinfo=UTC))
    pdf.set_producer("icdsl")
    title = lay.titles.get(kind) or TITLES.get(kind, kind.upper())
    pdf.set_title(text(f"{title} {doc.get('number') or 'draft'}"))
    pdf.set_author("icdsl")
    pdf.alias_nb_pages()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    number = doc.get("number")
    seller = doc.get("seller")
    ccy = doc.get("currency") or ""
    values = {"kind": kind, "title": title, "number": number, "issue_date": local.date(doc.get("issue_date"))
              if doc.get("issue_date") else None, "due_date": local.date(doc.get("due_date"))
              if doc.get("due_date") else None, "period": doc.get("period"), "currency": ccy,
              "total": local.number(doc.get("total")) if doc.get("total") is not None else None,
              "subtotal": local.number(doc.get("subtotal")) if doc.get("subtotal") is not None else None,
              "stream": doc.get("stream"), "partner_code": doc.get("partner_code"),
              "partner_name": doc.get("partner_name"), "corrects": list(doc.get("corrects") or ()),
              "seller": seller or {}, "buyer": doc.get("buyer") or {}}

    def money(v: Any) -> str:
        return "" if v is None else local.number(v)

    def footer_line() -> None:
        pdf.set_y(-12)
        pdf.set_font(font, "", base - 2)
        pdf.set_text_color(110)
        pdf.cell(width / 2, 4, text(lay.text("footer", values)))
        pdf.cell(width / 2, 4, text(f"{labels['page']} {pdf.page_no()} {labels['of']} {{nb}}"), align="R")
        pdf.set_text_color(0)

    def new_page() -> None:
        if pdf.page_no() > 0:
            footer_line()
        pdf.add_page()

    def paragraph(body: str, size: float, style: str = "", h: float = 4.5) -> None:
        if body:
            pdf.set_font(font, style, size)
            pdf.multi_cell(width, h, text(body), new_x="LMARGIN", new_y="NEXT")

    new_page()
    # ---- header
    pdf.set_font(font, "B", base * 2)
    pdf.cell(width * 0.6, 9, text(title + ("" if number else f" ({labels['draft']})")))
    period = f"{doc.get('period') or ''} ({local.date(doc.get('period_start'))} - {local.date(doc.get('period_end'))})"
    facts = [(labels["number"], number or labels["not_numbered"]),
             (labels["issue_date"], local.date(doc.get("issue_date"))),
             (labels["due_date"], local.date(doc.get("due_date"))), (labels["period"], period),
             (labels["currency"], ccy)]
    if kind not in ("statement", "share_statement") and doc.get("stream") and doc.get("stream") != "main":
        facts.append((labels["stream"], doc.get("stream")))
    pdf.ln(11)
    if seller:  # who we are, as the rules declare it (company)
        pdf.set_font(font, "B", base)
        pdf.multi_cell(width * 0.5, 5, text(seller.get("name")), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(font, "", base - 1)
        for t in party_lines(seller, labels):
            pdf.multi_cell(width * 0.5, 3.8, text(t), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    top = pdf.get_y()
    pdf.set_font(font, "B", base)
    pdf.cell(width * 0.5, 5, text(addressee_label(doc, labels)), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(font, "", base + 1)
    pdf.multi_cell(width * 0.5, 5, text(doc.get("party_name") if kind == "share_statement"
                                        else doc.get("partner_name")), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(font, "", base)
    who = f"{labels['partner_code']} {doc.get('partner_code')}"
    if kind == "share_statement":
        who = lay.text("share_party", dict(values, party=doc.get("party")))
    if doc.get("partner_country"):
        who += f", {doc.get('partner_country')}"
    pdf.multi_cell(width * 0.5, 5, text(who), new_x="LMARGIN", new_y="NEXT")
    buyer = doc.get("buyer") if kind != "share_statement" else doc.get("recipient")
    if buyer and buyer.get("address"):
        pdf.set_font(font, "", base - 1)
        for t in party_lines(buyer, labels):
            pdf.multi_cell(width * 0.5, 3.8, text(t), new_x="LMARGIN", new_y="NEXT")
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + width * 0.55, top)
    for label, value in facts:
        pdf.set_x(pdf.l_margin + width * 0.55)
        y = pdf.get_y()
        pdf.set_font(font, "B", base)
        pdf.multi_cell(width * 0.17, 5, text(label), new_x="RIGHT", new_y="TOP")
        pdf.set_font(font, "", base)
        pdf.multi_cell(width * 0.28, 5, text(value), new_x="LMARGIN", new_y="NEXT")
        pdf.set_y(max(pdf.get_y(), y + 5))
    pdf.set_y(max(pdf.get_y(), left_bottom) + 6)

    # ---- lines
    lines = view_lines(doc, view)
    cols = lay.columns[view]
    r, g, b = (int(page["header_fill"][i:i + 2], 16) for i in (1, 3, 5))

    def table_head() -> None:
        pdf.set_font(font, "B", base - 0.5)
        pdf.set_fill_color(r, g, b)
        for c in cols:
            pdf.cell(width * float(c.width) / 100, 6, text(c.title), border="B", align=c.align, fill=True)
        pdf.ln(6)
        pdf.set_font(font, "", base - 0.5)

    def need(h: float) -> None:
        if pdf.get_y() + h > pdf.h - 20:
            new_page()
            table_head()

    intro = lay.text(f"{kind}_intro", values) if f"{kind}_intro" in lay.texts else ""
    if intro:
        paragraph(intro, base)
        pdf.ln(2)
    table_head()
    row_h = 5
    for i, ln in enumerate(lines, 1):
        cells = [_cell_value(ln, c.field, i, doc, local, view, lay) for c in cols]
        # long texts wrap onto more lines of the row, never cut: the row is as tall as its
        # tallest cell
        heights = [len(pdf.multi_cell(width * float(c.width) / 100 - 1, 4, text(v), dry_run=True, output="LINES"))
                   or 1 for c, v in zip(cols, cells, strict=True)]
        h = max(row_h, 4 * max(heights) + 1)
        need(h)
        y = pdf.get_y()
        x = pdf.l_margin
        for c, value in zip(cols, cells, strict=True):
            pdf.set_xy(x, y)
            pdf.multi_cell(width * float(c.width) / 100 - 1, 4 if h > row_h else row_h, text(value), align=c.align)
            x += width * float(c.width) / 100
        pdf.set_xy(pdf.l_margin, y + h)
    if not lines:
        pdf.set_font(font, "", base)
        pdf.cell(width, 6, text(labels["no_lines"]), new_x="LMARGIN", new_y="NEXT")

    # ---- totals
    need(30)
    pdf.ln(2)
    pdf.set_draw_color(150)
    pdf.line(pdf.l_margin + width * 0.55, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
    pdf.ln(1)
    if kind == "statement" and doc.get("receivable_items"):
        pdf.set_font(font, "B", base - 0.5)
        pdf.cell(width, 5, text(labels["receivable_items"]), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(font, "", base - 0.5)
        for item in doc["receivable_items"]:
            need(5)
            pdf.multi_cell(width * 0.82, 5, text(f"{item.get('stream')}: {item.get('description')}"),
                           new_x="RIGHT", new_y="TOP")
            pdf.cell(width * 0.18, 5, text(money(item.get("amount"))), align="R", new_x="LMARGIN", new_y="NEXT")
    if kind == "share_statement":
        pdf.set_font(font, "", base - 0.5)
        for sp in doc.get("splits", []):
            need(10)
            parts = " + ".join(f"{k} {money(v)}" for k, v in sp["parties"].items())
            pdf.multi_cell(width, 4.5, text(lay.text("split", dict(
                values, charge=sp["charge"], agreement=sp["agreement"], basis=sp.get("basis"), tier=sp.get("tier"),
                amount=money(sp.get("amount_split")), currency=sp["currency"], parts=parts,
                adds_up=bool(sp.get("adds_up"))))), new_x="LMARGIN", new_y="NEXT")
    if kind == "statement":
        rows = [(labels["receivable"], doc.get("receivable"), False),
                (labels["payable"], doc.get("payable"), False), (labels["net_balance"], doc.get("net"), True)]
    elif kind == "share_statement":
        rows = [(labels["shares_total"], doc.get("total"), True)]
    else:
        tax_label = _tax_label(doc, lay, local)
        rows = [(labels["subtotal"], doc.get("subtotal"), False), (tax_label, doc.get("tax_amount"), False),
                (labels["total"], doc.get("total"), True)]
    for label, amount, strong in rows:
        pdf.set_x(pdf.l_margin + width * 0.55)
        pdf.set_font(font, "B" if strong else "", base + 1 if strong else base)
        pdf.cell(width * 0.25, 6, text(label))
        pdf.cell(width * 0.20, 6, text(f"{money(amount)} {ccy}"), align="R", new_x="LMARGIN", new_y="NEXT")
    if kind == "statement" and doc.get("net") is not None:
        pdf.set_font(font, "", base - 0.5)
        owed = labels["balance_you_owe_us"] if doc["net"] >= 0 else labels["balance_we_owe_you"]
        pdf.set_x(pdf.l_margin + width * 0.55)
        pdf.cell(width * 0.45, 5, text(f"{owed} {money(abs(doc['net']))} {ccy}"),
                 new_x="LMARGIN", new_y="NEXT")
        invs = [i.get("number") or f"#{i.get('id')}" for i in doc.get("invoices", [])]
        if invs:
            pdf.set_x(pdf.l_margin + width * 0.55)
            pdf.multi_cell(width * 0.45, 5, text(f"{labels['invoices']}: {', '.join(invs)}"), new_x="LMARGIN", new_y="NEXT")
    pos = doc.get("dispute_position")
    if pos:  # a separate section: computed when shown, not part of the sealed statement
        need(12 + 6 * 5)
        pdf.ln(4)
        pdf.set_x(pdf.l_margin + width * 0.55)
        pdf.set_font(font, "B", base)
        pdf.multi_cell(width * 0.45, 5, text(labels["position_title"]), new_x="LMARGIN", new_y="NEXT")
        for key, _english, amount in position_rows(pos):
            label = labels[f"position_{key}"]
            pdf.set_x(pdf.l_margin + width * 0.55)
            pdf.set_font(font, "B" if key == "undisputed_payable" else "", base)
            pdf.cell(width * 0.25, 6, text(label))
            pdf.cell(width * 0.20, 6, text(f"{money(amount)} {pos.get('currency') or ccy}"), align="R",
                     new_x="LMARGIN", new_y="NEXT")
        held = [d["number"] for d in pos.get("disputes", []) if d.get("held")]
        if held:
            pdf.set_font(font, "", base - 1)
            pdf.set_x(pdf.l_margin + width * 0.55)
            pdf.multi_cell(width * 0.45, 4, text(f"{labels['held_by']} {', '.join(held)}"), new_x="LMARGIN",
                           new_y="NEXT")
    owes = who_owes_whom(doc, local)
    parts = owes_parts(doc)
    if parts is not None and (lay.texts.get("owes") or "").strip():  # the layout's own words
        owes = lay.text("owes", dict(values, debtor=parts[0], creditor=parts[1], amount=money(parts[2])))
    if owes:
        pdf.ln(2)
        paragraph(owes, base, "B", 5)
    if kind in ("invoice", "credit_note", "debit_note") and seller and seller.get("iban") and (doc.get("total") or 0) > 0:
        paragraph(lay.text("payment", values), base - 0.5)
    if doc.get("corrects"):
        paragraph(lay.text("corrects", values), base - 0.5)
    if doc.get("tax_note"):
        pdf.ln(3)
        paragraph(doc["tax_note"], base, "B", 5)
    closing = lay.text("closing", values)
    if closing:
        pdf.ln(2)
        paragraph(closing, base)

    # ---- provenance
    notes = [lay.text("agreement_note", dict(values, name=a["name"], version=a["version"], hash=a["hash"][:16]))
             for a in doc.get("agreements", [])]
    for fx in doc.get("fx", []):
        notes.append(lay.text("fx_note", dict(values, **{"from": fx["from"], "to": fx["to"], "rate": fx["rate"],
                                                         "source": fx["source"], "listed": fx["listed"],
                                                         "effective_from": _date(fx["effective_from"])})))
    if doc.get("rounding"):
        modes = re.search(r"\(([a-z_, ]+)\)", doc["rounding"])
        notes.append(lay.text("rounding_note", dict(values, rounding=doc["rounding"], places=minor_units(ccy),
                                                    modes=modes.group(1) if modes else "half_up")))
    if view == "summary" and kind not in ("statement", "share_statement"):
        notes.append(lay.text("summary_note", values))
    notes = [n for n in notes if n]
    if notes:
        need(6 + 4 * len(notes))
        pdf.ln(4)
        pdf.set_text_color(90)
        for n in notes:
            paragraph(n, base - 1.5, "", 3.8)
        pdf.set_text_color(0)
    footer_line()
    return bytes(pdf.output())


def write_pdf(doc: Mapping[str, Any], directory: Path, *, view: str = "itemized", pdfa: bool = False) -> Path:
    suffix = "-summary" if view == "summary" else ""
    path = Path(directory) / f"{file_stem(doc)}{suffix}.pdf"
    path.write_bytes(render(doc, view=view, pdfa=pdfa))
    return path
