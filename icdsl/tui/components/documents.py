"""The documents of a simulation (invoices and settlement statements of every partner) and the
lines of one of them, shown generically by kind: traffic, fees, discounts, commitments,
revenue share, adjustments ... whatever the cycle wrote."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from icdsl.tui.drill import document_label


def table_label(d: dict[str, Any]) -> str:
    """The document's number, or ``INV #4`` for a draft (its status is in its own column)."""
    return d.get("number") or document_label(d).removeprefix("draft ")


def document_row(partner: str, d: dict[str, Any]) -> list[Any]:
    """The cells of :data:`DOC_COLUMNS` for one document."""
    status = Text(d["status"], style="dim" if d["status"] == "draft" else "green")
    common = [table_label(d), partner, status, d["currency"]]
    tail = [str(len(d["lines"])), d.get("stream") or ""]
    if d["kind"] == "statement" and "payable" in d:
        net = d["net"]
        return common + [amount(net, style="green" if net >= 0 else "red"), amount(d["payable"]), "", ""] + tail
    return common + [amount(d.get("total")), "", amount(d.get("subtotal")), amount(d.get("tax_amount"))] + tail


def document_summary(d: dict[str, Any]) -> str:
    """One line of a document's figures, for a title: ``subtotal 1,718.22 + tax 343.64 =
    total 2,061.86 EUR`` or ``receivable 1,728.91 - payable 282.16 = net 1,446.75 EUR``."""
    ccy = d["currency"]
    if d["kind"] == "statement" and "payable" in d:
        return (f"receivable {money(d['receivable'])} - payable {money(d['payable'])} = net "
                f"{money(d['net'], ccy)}")
    if d.get("tax_amount") is not None:
        return f"subtotal {money(d['subtotal'])} + tax {money(d['tax_amount'])} = total {money(d.get('total'), ccy)}"
    return f"total {money(d.get('total') or d.get('subtotal'), ccy)}"


KIND_STYLE = {"traffic": "", "adjustment": "yellow", "discount": "green", "credit": "green"}


def money(value: Any, currency: str | None = None) -> str:
    """An exact amount with thousands separators and its own decimals (``1,718.22``), and the
    currency if given; empty for no amount."""
    if value is None or value == "":
        return ""
    try:
        text = f"{Decimal(str(value)):,}"
    except (InvalidOperation, ValueError):
        text = str(value)
    return text + (f" {currency}" if currency else "")


def amount(value: Any, currency: str | None = None, style: str = "") -> Text:
    """:func:`money`, right-aligned (for a table column)."""
    return Text(money(value, currency), style=style, justify="right")


# The columns of the documents, narrowest first where it matters: at 80 columns the document,
# its status, currency and bottom line and a statement's payable show without scrolling.
DOC_COLUMNS = ("document", "partner", "status", "ccy", "total / net", "payable", "subtotal", "tax", "lines",
               "stream")


class DocumentsTable(DataTable):
    """One row per invoice or statement (and per partner whose cycle failed or was stopped).

    An invoice's total, subtotal and tax are in their columns; a settlement statement's net
    (receivable - payable) is its bottom line (``total / net``) and what we owe in ``payable``,
    never in ``subtotal``."""

    DEFAULT_CSS = """
    DocumentsTable {
        height: 1fr;
        border: none;
        background: $surface;
        &:focus { border: none; background-tint: $foreground 3%; }
    }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.entries: list[tuple[str, dict[str, Any] | None]] = []  # (partner, document or None)

    def on_mount(self) -> None:
        for name in DOC_COLUMNS:
            self.add_column(name, key=name)

    def show(self, sim: Any) -> None:
        self.clear()
        self.entries = []
        if sim is None:
            return
        blank = [""] * (len(DOC_COLUMNS) - 4)  # a partner without documents: why, in the last column
        for run in sim.runs:
            if run.error or run.report is None:
                self.entries.append((run.partner, None))
                self.add_row("", run.partner, Text("failed", style="bold red"), *blank,
                             Text((run.error or "")[:60], style="red"))
                continue
            if not run.documents:
                self.entries.append((run.partner, None))
                why = "stopped by validation" if run.report.blocked else run.report.status
                self.add_row("", run.partner, Text("no invoice", style="yellow"), *blank, Text(why, style="yellow"))
                continue
            for d in run.documents:
                self.entries.append((run.partner, d))
                self.add_row(*document_row(run.partner, d))

    @property
    def selected(self) -> tuple[str, dict[str, Any] | None] | None:
        if not self.entries or not 0 <= self.cursor_row < len(self.entries):
            return None
        return self.entries[self.cursor_row]


# The amount first (in the document's currency, said in the panel's title; a line in another
# currency says its own), the long description last.
LINE_COLUMNS = ("#", "amount", "kind", "quantity", "rate", "records", "description")


class LinesTable(DataTable):
    """The lines of one document, every kind alike."""

    DEFAULT_CSS = """
    LinesTable {
        height: 1fr;
        border: none;
        background: $surface;
        &:focus { border: none; background-tint: $foreground 3%; }
    }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.partner: str | None = None
        self.document: dict[str, Any] | None = None

    def on_mount(self) -> None:
        for name in LINE_COLUMNS:
            self.add_column(name, key=name)

    def show(self, partner: str | None, document: dict[str, Any] | None) -> None:
        self.clear()
        self.partner, self.document = partner, document
        if document is None:
            return
        for i, ln in enumerate(document["lines"], 1):
            kind = ln.get("kind") or ""
            qty = f"{money(ln.get('quantity'))} {ln.get('unit') or ''}".strip()
            rate = f"{ln['rate']}/{ln.get('rate_unit') or ''}" if ln.get("rate") not in (None, "") else ""
            ccy = ln.get("currency") or document["currency"]
            self.add_row(str(ln.get("line_no") or i),
                         amount(ln.get("amount"), ccy if ccy != document["currency"] else None),
                         Text(kind, style=KIND_STYLE.get(kind, "cyan")), qty, rate,
                         str(ln.get("record_count") or ""), ln.get("description") or "")

    @property
    def selected(self) -> dict[str, Any] | None:
        doc = self.document
        if doc is None or not 0 <= self.cursor_row < len(doc["lines"]):
            return None
        return doc["lines"][self.cursor_row]
