"""The documents of a simulation (invoices and settlement statements of every partner) and the
lines of one of them, shown generically by kind: traffic, fees, discounts, commitments,
revenue share, adjustments ... whatever the cycle wrote."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from icdsl.tui.drill import document_label

KIND_STYLE = {"traffic": "", "adjustment": "yellow", "discount": "green", "credit": "green"}


def money(value: Any, currency: str | None = None) -> str:
    if value is None or value == "":
        return ""
    return f"{value}" + (f" {currency}" if currency else "")


class DocumentsTable(DataTable):
    """One row per invoice or statement (and per partner whose cycle failed or was stopped)."""

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
        for name in ("partner", "document", "stream", "lines", "subtotal", "tax", "total / net", "ccy", "status"):
            self.add_column(name, key=name)

    def show(self, sim: Any) -> None:
        self.clear()
        self.entries = []
        if sim is None:
            return
        for run in sim.runs:
            if run.error or run.report is None:
                self.entries.append((run.partner, None))
                self.add_row(run.partner, Text("failed", style="bold red"), "", "", "", "", "", "",
                             Text((run.error or "")[:60], style="red"))
                continue
            if not run.documents:
                self.entries.append((run.partner, None))
                why = "stopped by validation" if run.report.blocked else run.report.status
                self.add_row(run.partner, Text("no invoice", style="yellow"), "", "", "", "", "", "",
                             Text(why, style="yellow"))
                continue
            for d in run.documents:
                self.entries.append((run.partner, d))
                if d["kind"] == "statement" and "payable" in d:
                    self.add_row(run.partner, document_label(d), "netting", str(len(d["lines"])),
                                 Text(f"-{d['payable']}", style="red"), "", money(d["net"]),
                                 d["currency"], d["status"])
                else:
                    self.add_row(run.partner, document_label(d), d["stream"], str(len(d["lines"])),
                                 money(d["subtotal"]), money(d.get("tax_amount")), money(d.get("total")),
                                 d["currency"], d["status"])

    @property
    def selected(self) -> tuple[str, dict[str, Any] | None] | None:
        if not self.entries or not 0 <= self.cursor_row < len(self.entries):
            return None
        return self.entries[self.cursor_row]


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
        for name in ("#", "kind", "description", "quantity", "rate", "amount", "records"):
            self.add_column(name, key=name)

    def show(self, partner: str | None, document: dict[str, Any] | None) -> None:
        self.clear()
        self.partner, self.document = partner, document
        if document is None:
            return
        for ln in document["lines"]:
            kind = ln.get("kind") or ""
            qty = f"{ln.get('quantity') or ''} {ln.get('unit') or ''}".strip()
            rate = f"{ln['rate']}/{ln.get('rate_unit') or ''}" if ln.get("rate") not in (None, "") else ""
            self.add_row(str(ln.get("line_no", "")), Text(kind, style=KIND_STYLE.get(kind, "cyan")),
                         ln.get("description") or "", qty, rate, money(ln.get("amount")),
                         str(ln.get("record_count") or ""))

    @property
    def selected(self) -> dict[str, Any] | None:
        doc = self.document
        if doc is None or not 0 <= self.cursor_row < len(doc["lines"]):
            return None
        return doc["lines"][self.cursor_row]
