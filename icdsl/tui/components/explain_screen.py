"""Explain: pick a record of a traffic file, see its rating step by step (``icdsl explain``)."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer
from textual.worker import get_current_worker

from icdsl.plan.model import Plan
from icdsl.tui.bindings import bindings
from icdsl.tui.components.explanation import ExplanationView
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.components.traffic_table import TrafficGrid
from icdsl.tui.messages import OpenLocation
from icdsl.tui.project import Analysis, Location
from icdsl.tui.traffic import Explanation, TrafficRow, TrafficTable, explain, read_traffic

EXPLAIN_DELAY = 0.08  # seconds the cursor rests on a record before it is explained


class TrafficLoaded(Message):
    def __init__(self, table: TrafficTable) -> None:
        super().__init__()
        self.table = table


class ExplanationReady(Message):
    def __init__(self, explanation: Explanation, note: str) -> None:
        super().__init__()
        self.explanation = explanation
        self.note = note


class ExplainScreen(Screen):
    """A traffic file's records over the explanation of the selected one."""

    BINDINGS = bindings("explain")

    DEFAULT_CSS = """
    ExplainScreen {
        layout: vertical;
        #ex-records { height: auto; min-height: 5; }
        #ex-steps { height: 1fr; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.traffic_path: Path | None = None
        self._layouts: tuple = ()
        self._timer: Timer | None = None
        self._fixed_plan: Plan | None = None  # records of a simulated line: rated with its plan

    def compose(self) -> ComposeResult:
        yield NavBar("explain")
        with Vertical(id="ex-records", classes="panel") as box:
            box.border_title = "Traffic"
            yield TrafficGrid(id="ex-grid")
        with Vertical(id="ex-steps", classes="panel") as box:
            box.border_title = "Explanation"
            yield ExplanationView(id="ex-view")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "analysis", self._analysis_changed, init=False)
        if self.traffic_path is None:
            traffic = self.app.project.files().traffic
            if traffic:
                self.show_file(traffic[0])
            else:
                self.query_one(ExplanationView).show(None, "This folder has no traffic file (*.csv, *.parquet "
                                                          "outside decks/).")

    def focus_main(self) -> None:
        self.query_one(TrafficGrid).focus()

    # ------------------------------------------------------------------ traffic
    @property
    def plan(self) -> Plan | None:
        if self._fixed_plan is not None:
            return self._fixed_plan
        good = self.app.good
        return good.plan if good is not None else None

    def show_file(self, path: Path) -> None:
        self._fixed_plan = None
        self.traffic_path = path.resolve()
        plan = self.plan
        self._layouts = plan.layouts if plan is not None else ()
        self.query_one("#ex-records").border_title = f"Traffic: {self.app.project.shown(self.traffic_path)} (reading…)"
        self._load(self.traffic_path, plan)

    @work(thread=True, exclusive=True, group="traffic")
    def _load(self, path: Path, plan: Plan | None) -> None:
        table = read_traffic(path, plan)
        if not get_current_worker().is_cancelled:
            self.post_message(TrafficLoaded(table))

    @on(TrafficLoaded)
    def _loaded(self, event: TrafficLoaded) -> None:
        table = event.table
        if table.path != self.traffic_path:
            return
        grid = self.query_one(TrafficGrid)
        grid.show(table)
        title = f"Traffic: {self.app.project.shown(table.path)}"
        if table.error:
            title += " (cannot read)"
            self.query_one(ExplanationView).show(None, table.error)
        else:
            n = len(table.rows)
            title += f" · {n}{'+' if table.truncated else ''} row{'s' if n != 1 else ''}"
            if table.layout:
                title += f" · layout {table.layout}"
        self.query_one("#ex-records").border_title = title
        self._explain_selected()

    def show_table(self, table: TrafficTable, index: int = 0, plan: Plan | None = None) -> None:
        """Records that are not a file's rows (those behind a simulated line), explained with
        ``plan`` (the one that billed them) until a traffic file is shown again."""
        self.traffic_path = None
        self._fixed_plan = plan
        grid = self.query_one(TrafficGrid)
        grid.table = None
        grid.show(table)
        if 0 <= index < len(table.rows):
            grid.move_cursor(row=index)
        n = len(table.rows)
        self.query_one("#ex-records").border_title = (f"Records: {table.label or table.path.name} · {n}"
                                                      f"{'+' if table.truncated else ''} row{'s' if n != 1 else ''}")
        self._explain_selected()
        grid.focus()

    # ------------------------------------------------------------------ explanation
    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Explain the record once the cursor rests on it (holding a key queues no work)."""
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(EXPLAIN_DELAY, self._explain_selected)

    def _explain_selected(self) -> None:
        row = self.query_one(TrafficGrid).selected
        view = self.query_one(ExplanationView)
        if row is None:
            return
        plan = self.plan
        if plan is None:
            view.show(None, "No plan: fix the errors of the rules first (F2).")
            return
        analysis = self.app.analysis
        note = ""
        if self._fixed_plan is not None:
            note = "rated with the rules of the simulation"
        elif analysis is not None and analysis.plan is None:
            note = f"rated with the last plan that compiled: the rules now have {analysis.errors} error(s)"
        self._explain(row, plan, note)

    @work(thread=True, exclusive=True, group="explain")
    def _explain(self, row: TrafficRow, plan: Plan, note: str) -> None:
        exp = explain(self.app.project, plan, row)
        if not get_current_worker().is_cancelled:
            self.post_message(ExplanationReady(exp, note))

    @on(ExplanationReady)
    def _explained(self, event: ExplanationReady) -> None:
        row = self.query_one(TrafficGrid).selected
        if row is None or row.row != event.explanation.row:
            return  # the cursor moved on: its own explanation is on the way
        self.query_one(ExplanationView).show(event.explanation, event.note)
        box = self.query_one("#ex-steps")
        record_id = row.values.get("id")
        box.border_title = f"Explanation: line {row.row}" + (f", id {record_id}" if record_id is not None else "")
        box.border_subtitle = event.explanation.outcome

    def _analysis_changed(self, analysis: Analysis | None) -> None:
        plan = self.plan
        if self.traffic_path is None or plan is None:
            return
        if plan.layouts != self._layouts:
            self.show_file(self.traffic_path)
        else:
            self._explain_selected()

    # ------------------------------------------------------------------ actions
    def action_next_traffic(self) -> None:
        traffic = [p.resolve() for p in self.app.project.files().traffic]
        if not traffic:
            self.notify("This folder has no traffic file.", severity="warning")
            return
        i = traffic.index(self.traffic_path) + 1 if self.traffic_path in traffic else 0
        self.show_file(traffic[i % len(traffic)])

    def action_open_row(self) -> None:
        row = self.query_one(TrafficGrid).selected
        if row is not None and self.traffic_path is not None:
            self.post_message(OpenLocation(Location(self.traffic_path, row.row)))
