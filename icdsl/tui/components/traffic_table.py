"""The rows of a traffic file: normalized records, and the rows rejected at intake."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from icdsl.tui.traffic import TrafficRow, TrafficTable, show_value


class TrafficGrid(DataTable):
    """One line per row of the file, in file order; a row rejected at intake is dimmed."""

    DEFAULT_CSS = """
    TrafficGrid {
        height: auto;
        max-height: 40vh;
        border: none;
        background: $surface;
        &:focus { border: none; background-tint: $foreground 3%; }
    }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.table: TrafficTable | None = None

    def show(self, table: TrafficTable) -> None:
        keep = self.cursor_row if self.table is not None and self.table.path == table.path else 0
        self.table = table
        self.clear(columns=True)
        if table.error or not table.rows:
            return
        self.add_column("line", key="line")
        for c in table.columns:
            self.add_column(c, key=c)
        for r in table.rows:
            style = "dim" if r.reject else ""
            cells = [Text(str(r.row), style="dim")]
            cells += [Text(show_value(r.values.get(c)), style=style) for c in table.columns]
            self.add_row(*cells, key=str(r.row))
        if keep < len(table.rows):
            self.move_cursor(row=keep)

    @property
    def selected(self) -> TrafficRow | None:
        if self.table is None or not self.table.rows or not (0 <= self.cursor_row < len(self.table.rows)):
            return None
        return self.table.rows[self.cursor_row]
