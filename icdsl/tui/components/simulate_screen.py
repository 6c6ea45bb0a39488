"""Simulated billing cycle: choose partners, a period and the traffic; run the real pipeline
(``icdsl.tui.simulate``) in a worker thread with a progress bar; see the invoices, statements
and their lines; enter on a line drills into its records."""

from __future__ import annotations

import time

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Checkbox, DataTable, Footer, Input, Label, ProgressBar, Static
from textual.worker import Worker, get_current_worker

from icdsl.tui.bindings import bindings
from icdsl.tui.components.documents import DocumentsTable, LinesTable, document_summary, table_label
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.components.source_picker import SourcePicker
from icdsl.tui.messages import unheard_end
from icdsl.tui.simulate import SimulationRequest, billable_partners, simulate
from icdsl.tui.traffic_source import Cancelled

DEFAULT_PERIOD = "2026-03"  # the month of the examples' and the generator's traffic
PROGRESS_EVERY = 0.1  # seconds between progress messages from the worker


class SimProgress(Message):
    def __init__(self, stage: str, done: int, total: int) -> None:
        super().__init__()
        self.stage, self.done, self.total = stage, done, total


class SimFinished(Message):
    def __init__(self, simulation, error: str | None, cancelled: bool = False) -> None:
        super().__init__()
        self.simulation, self.error, self.cancelled = simulation, error, cancelled


class SimulateScreen(Screen):
    """The form over the documents over the lines of the selected document."""

    BINDINGS = bindings("simulate")

    DEFAULT_CSS = """
    SimulateScreen {
        layout: vertical;
        #sim-form { height: auto; padding: 0 1; }
        #sim-row { height: 1; }
        #sim-row > Label { padding: 0 1 0 0; color: $text-muted; }
        #sim-partners { width: auto; height: 1; }
        #sim-partners > Checkbox { margin: 0 1 0 0; }
        #sim-period { width: 10; margin: 0 1 0 0; }
        #sim-row > Button { width: auto; min-width: 8; margin: 0 1 0 0; }
        #sim-state { height: 1; }
        #sim-progress { width: auto; margin: 0 1 0 0; }
        #sim-progress Bar { width: 24; }
        #sim-status { width: 1fr; color: $text-muted; }
        #sim-docs-box { height: auto; max-height: 40%; }
        #sim-docs { height: auto; max-height: 100%; }
        #sim-lines-box { height: 1fr; min-height: 5; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._worker: Worker | None = None
        self._partners: tuple[str, ...] = ()
        self._started = 0.0

    def compose(self) -> ComposeResult:
        yield NavBar("simulate")
        with Vertical(id="sim-form", classes="panel") as form:
            form.border_title = "Simulated billing cycle"
            form.border_subtitle = "ctrl+g run · escape cancel"
            with Horizontal(id="sim-row"):
                yield Label("Partners")
                yield Horizontal(id="sim-partners")
                yield Label("Period")
                yield Input(DEFAULT_PERIOD, compact=True, id="sim-period",
                            tooltip="2026-03, 2026-W10, 2026-Q1 or 2026-03-01..2026-03-15")
                yield Button("Run", compact=True, id="sim-run", variant="primary")
                yield Button("Cancel", compact=True, id="sim-cancel", disabled=True)
            yield SourcePicker(id="sim-source")
            with Horizontal(id="sim-state"):
                yield ProgressBar(total=100, show_eta=False, id="sim-progress")
                yield Static("Choose partners, a period and the traffic, then run (ctrl+g).", id="sim-status")
        with Vertical(id="sim-docs-box", classes="panel") as box:
            box.border_title = "Invoices and statements"
            yield DocumentsTable(id="sim-docs")
        with Vertical(id="sim-lines-box", classes="panel") as box:
            box.border_title = "Lines"
            box.border_subtitle = "enter: the records behind a line"
            yield LinesTable(id="sim-lines")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "analysis", self._analysis_changed)
        if self.app.simulation is not None:
            self._show(self.app.simulation)

    def focus_main(self) -> None:
        self.query_one(DocumentsTable).focus()

    # ------------------------------------------------------------------ partners
    def _analysis_changed(self, *_: object) -> None:
        good = self.app.good
        if good is None or good.plan is None:
            return
        partners = tuple(billable_partners(good.plan))
        if partners != self._partners:
            self._partners = partners
            self.run_worker(self._show_partners(partners), group="partners", exclusive=True)

    async def _show_partners(self, partners: tuple[str, ...]) -> None:
        box = self.query_one("#sim-partners", Horizontal)
        checked = {c.label.plain: c.value for c in box.query(Checkbox)}
        await box.remove_children()
        await box.mount_all([Checkbox(p, checked.get(p, True), compact=True, name=p) for p in partners])

    def chosen_partners(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.query(Checkbox) if c.value and c.name)

    def set_partners(self, partners: set[str]) -> None:
        for c in self.query(Checkbox):
            c.value = c.name in partners

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        # until the screen has heard how it ended (SimFinished): the worker's thread ends first
        return self._worker is not None

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        ended, error = unheard_end(self._worker, event)
        if ended:
            self._finished(SimFinished(None, error) if error else SimFinished(None, None, cancelled=True))

    def action_run(self) -> None:
        if self.running:
            self.notify("A simulation is running: escape cancels it.", severity="warning")
            return
        partners = self.chosen_partners()
        if not partners:
            self.notify("Choose at least one partner.", severity="warning")
            return
        period = self.query_one("#sim-period", Input).value.strip() or DEFAULT_PERIOD
        try:
            source = self.query_one(SourcePicker).source()
        except ValueError as e:
            self.notify(str(e), severity="error")
            return
        ws = self.app.workspace
        overlay = {p: ws.editors[p].text for p in ws.modified() if p in ws.editors}
        request = SimulationRequest(partners, period, source)
        self._started = time.monotonic()
        self._set_running(True)
        self._status(f"starting: {', '.join(partners)} {period}, {source.describe(self.app.project)}"
                     + (" (with unsaved edits)" if overlay else ""))
        self._worker = self._simulate(request, overlay)

    def action_cancel(self) -> None:
        if not self.running:
            return
        self._worker.cancel()
        self._status("cancelling…")

    @work(thread=True, exclusive=True, group="simulate", exit_on_error=False)
    def _simulate(self, request: SimulationRequest, overlay: dict) -> None:
        worker = get_current_worker()
        last, last_stage = 0.0, ""

        def progress(stage: str, done: int, total: int) -> None:
            nonlocal last, last_stage
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY or stage != last_stage:
                last, last_stage = now, stage
                self.post_message(SimProgress(stage, done, total))

        try:
            sim = simulate(self.app.project, request, overlay, self.app.scratch, progress=progress,
                           cancelled=lambda: worker.is_cancelled)
        except Cancelled:
            self.post_message(SimFinished(None, None, cancelled=True))
            return
        except Exception as e:  # shown in the status line; the terminal carries on
            self.post_message(SimFinished(None, str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"))
            return
        if worker.is_cancelled:
            sim.close()
            self.post_message(SimFinished(None, None, cancelled=True))
            return
        self.post_message(SimFinished(sim, None))

    @on(SimProgress)
    def _progress(self, event: SimProgress) -> None:
        bar = self.query_one(ProgressBar)
        if event.total:
            bar.update(total=event.total, progress=event.done)
        else:
            bar.update(total=None)
        extra = f" {event.done:,}/{event.total:,}" if event.total > 1 else ""
        self._status(f"{event.stage}{extra} · {time.monotonic() - self._started:.1f} s")

    @on(SimFinished)
    def _finished(self, event: SimFinished) -> None:
        self._set_running(False)
        self._worker = None
        bar = self.query_one(ProgressBar)
        if event.cancelled:
            bar.update(total=100, progress=0)
            self._status("Cancelled: nothing kept" + (" (the results below are the previous run's)."
                                                      if self.app.simulation is not None else "."))
            self.notify("Simulation cancelled.", timeout=2)
            return
        if event.error is not None:
            bar.update(total=100, progress=0)
            self._status(f"Failed: {event.error}")
            self.notify(event.error, severity="error", timeout=6)
            return
        bar.update(total=100, progress=100)
        sim = event.simulation
        self.app.set_simulation(sim)
        self._show(sim)
        self.query_one(DocumentsTable).focus()

    def _show(self, sim) -> None:
        docs = self.query_one(DocumentsTable)
        docs.show(sim)
        n = sum(len(r.documents) for r in sim.runs)
        findings = sim.findings()
        warn = sum(1 for _, f in findings if f.severity in ("error", "warning"))
        self._status(f"{sim.records:,} records · {n} documents · {sim.seconds:.1f} s"
                     + (f" · {warn} finding(s): F9" if warn else "")
                     + (" · with unsaved edits" if sim.edited else ""))
        self.query_one("#sim-docs-box").border_title = (
            f"Invoices and statements · {', '.join(sim.request.partners)} {sim.request.period}")
        self._show_lines()

    def _set_running(self, running: bool) -> None:
        self.query_one("#sim-run", Button).disabled = running
        self.query_one("#sim-cancel", Button).disabled = not running

    def _status(self, text: str) -> None:
        status = self.query_one("#sim-status", Static)
        status.update(text)
        status.tooltip = text

    # ------------------------------------------------------------------ results
    def _show_lines(self) -> None:
        sel = self.query_one(DocumentsTable).selected
        lines = self.query_one(LinesTable)
        box = self.query_one("#sim-lines-box")
        if sel is None or sel[1] is None:
            lines.show(None, None)
            box.border_title = "Lines"
            box.border_subtitle = "enter: the records behind a line"
            return
        partner, doc = sel
        lines.show(partner, doc)
        box.border_title = f"Lines of {partner} {table_label(doc)} ({doc['stream']}, {len(doc['lines'])})"
        box.border_subtitle = document_summary(doc)

    @on(DataTable.RowHighlighted, "#sim-docs")
    def _doc_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_lines()

    @on(DataTable.RowSelected, "#sim-docs")
    def _doc_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.query_one(LinesTable).focus()

    @on(DataTable.RowSelected, "#sim-lines")
    async def _line_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        await self.action_drill()

    async def action_drill(self) -> None:
        lines = self.query_one(LinesTable)
        line = lines.selected
        if line is None or lines.document is None:
            self.notify("Select a line of an invoice or statement first.", severity="warning")
            return
        await self.app.drill(lines.partner, lines.document, line)

    @on(Button.Pressed, "#sim-run")
    def _run_pressed(self) -> None:
        self.action_run()

    @on(Button.Pressed, "#sim-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()
