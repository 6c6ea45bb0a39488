"""Drill-down: the records behind a line of a simulated invoice or statement, and the selected
record's rating step by step (enter on a step, or ``o``, opens its rule in the editor)."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from icdsl.plan.model import Span
from icdsl.tui.bindings import bindings
from icdsl.tui.components.explanation import ExplanationView
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.components.traffic_table import TrafficGrid
from icdsl.tui.drill import LineRecords, line_records
from icdsl.tui.messages import OpenLocation
from icdsl.tui.traffic import Explanation, TrafficRow, explain

EXPLAIN_DELAY = 0.08
HINT = ("No line chosen: run a simulation (F5), select an invoice or statement, then press enter on "
        "one of its lines.")


class RecordsLoaded(Message):
    def __init__(self, records: LineRecords | None, error: str | None = None) -> None:
        super().__init__()
        self.records, self.error = records, error


class RecordExplained(Message):
    def __init__(self, row: int, explanation: Explanation) -> None:
        super().__init__()
        self.row, self.explanation = row, explanation


class DrillScreen(Screen):
    """The line (what it bills, its rules) over its records over the explanation."""

    BINDINGS = bindings("drill")

    DEFAULT_CSS = """
    DrillScreen {
        layout: vertical;
        #dr-line { height: auto; max-height: 4; padding: 0 1; }
        #dr-records { height: 1fr; min-height: 5; }
        #dr-steps { height: 1fr; min-height: 5; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: LineRecords | None = None
        self._key: tuple | None = None
        self._timer: Timer | None = None
        self._sim = None

    def compose(self) -> ComposeResult:
        yield NavBar("drill")
        yield Static(HINT, id="dr-line")
        with Vertical(id="dr-records", classes="panel") as box:
            box.border_title = "Records"
            yield TrafficGrid(id="dr-grid")
        with Vertical(id="dr-steps", classes="panel") as box:
            box.border_title = "Explanation"
            yield ExplanationView(id="dr-view")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "simulation", self._simulation_changed, init=False)

    def focus_main(self) -> None:
        self.query_one(TrafficGrid).focus()

    def _simulation_changed(self, sim) -> None:
        if self.records is not None and (sim is None or self._sim is not sim):
            self.records = None
            self.query_one(TrafficGrid).clear(columns=True)
            self.query_one(ExplanationView).show(None, "")
            self.query_one("#dr-line", Static).update(HINT)

    # ------------------------------------------------------------------ the line
    def show_line(self, partner: str, document: dict, line: dict) -> None:
        sim = self.app.simulation
        if sim is None:
            return
        self._sim = sim
        self._key = (partner, document.get("id"), document["kind"], line.get("line_no"))
        self.query_one("#dr-line", Static).update(f"{partner} · {line.get('description')} · reading the records…")
        self.query_one(TrafficGrid).focus()
        self._load(sim, partner, document, line)

    @work(thread=True, exclusive=True, group="drill")
    def _load(self, sim, partner: str, document: dict, line: dict) -> None:
        try:
            records = line_records(sim, partner, document, line)
        except Exception as e:
            self.post_message(RecordsLoaded(None, f"{type(e).__name__}: {e}"))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(RecordsLoaded(records))

    @on(RecordsLoaded)
    def _loaded(self, event: RecordsLoaded) -> None:
        head = self.query_one("#dr-line", Static)
        if event.records is None:
            head.update(f"Cannot read the records: {event.error}")
            return
        r = self.records = event.records
        ln = r.line
        rules = ", ".join(f"{self._shown_rule(rule)} ({n})" for rule, n in r.rules[:3])
        if len(r.rules) > 3:
            rules += f", … {len(r.rules) - 3} more"
        amount = f"{ln.get('amount')} {ln.get('currency') or ''}".strip()
        text = f"[b]{r.title}[/b]\n{ln.get('kind')}: {ln.get('quantity') or ''} {ln.get('unit') or ''} = {amount}"
        if ln.get("source_amount") not in (None, ""):
            text += f" (exact {ln['source_amount']} {ln.get('source_currency') or ''}, {ln.get('rounding') or ''})"
        if rules:
            text += f"\nrules: {rules}"
        if r.note:
            text += f"\n[dim]{r.note}[/dim]"
        head.update(text)
        grid = self.query_one(TrafficGrid)
        grid.show(r.table)
        box = self.query_one("#dr-records")
        shown = len(r.table.rows)
        box.border_title = (f"Records: {r.total:,}" + (f" (first {shown:,} shown)" if r.total > shown else ""))
        box.border_subtitle = "o: open the rule · x: in Explain"
        if shown:
            grid.move_cursor(row=0)
            self._explain_selected()
        else:
            self.query_one(ExplanationView).show(None, r.note or "No records.")

    def _shown_rule(self, rule: str) -> str:
        loc = self._rule_location(rule)
        return f"{self.app.project.shown(loc.path)}:{loc.line}" if loc is not None else str(rule)

    def _rule_location(self, rule: str | None):
        if not rule:
            return None
        parts = str(rule).rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None

        col = int(parts[2]) if parts[2].isdigit() else 1
        return self.app.project.location(Span(parts[0], int(parts[1]), col, int(parts[1]), col))

    # ------------------------------------------------------------------ the explanation
    @on(DataTable.RowHighlighted, "#dr-grid")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(EXPLAIN_DELAY, self._explain_selected)

    def _explain_selected(self) -> None:
        row = self.query_one(TrafficGrid).selected
        if row is None or self.records is None or self._sim is None:
            return
        self._explain(row, self._sim.plan)

    @work(thread=True, exclusive=True, group="drill-explain")
    def _explain(self, row: TrafficRow, plan) -> None:
        exp = explain(self.app.project, plan, row)
        if not get_current_worker().is_cancelled:
            self.post_message(RecordExplained(row.row, exp))

    @on(RecordExplained)
    def _explained(self, event: RecordExplained) -> None:
        row = self.query_one(TrafficGrid).selected
        if row is None or row.row != event.row:
            return
        view = self.query_one(ExplanationView)
        billed = row.values.get("amount")
        note = ""
        if event.explanation.ok and billed is not None and f"=> {billed} " not in event.explanation.outcome + " ":
            note = f"billed {billed} {row.values.get('currency') or ''}"
        view.show(event.explanation, note)
        box = self.query_one("#dr-steps")
        box.border_title = f"Explanation: record {row.values.get('id')}"
        box.border_subtitle = event.explanation.outcome

    # ------------------------------------------------------------------ actions
    def action_open_rule(self) -> None:
        row = self.query_one(TrafficGrid).selected
        rule = row.values.get("rule") if row is not None else None
        if rule is None and self.records is not None:
            rule = self.records.line.get("rule") or (self.records.rules[0][0] if self.records.rules else None)
        loc = self._rule_location(rule)
        if loc is None:
            self.notify("This line has no rule in a file.", severity="warning")
            return
        self.post_message(OpenLocation(loc))

    async def action_explain(self) -> None:
        if self.records is None or not self.records.table.rows:
            self.notify("No records to explain.", severity="warning")
            return
        index = self.query_one(TrafficGrid).cursor_row
        await self.app.switch_mode("explain")
        self.app.view("explain").show_table(self.records.table, index, self._sim.plan)

    async def action_back(self) -> None:
        await self.app.switch_mode("simulate")
