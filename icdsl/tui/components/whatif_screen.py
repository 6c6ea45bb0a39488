"""What-if: the saved rules against the editor's unsaved edits (or one rule file in place of
another) over the same traffic and billing period; the revenue and cost difference by partner,
service, destination and charge (``icdsl.tui.whatif``: the batch executor and the cycle's
charges, no store)."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, ProgressBar, Select, Static
from textual.worker import Worker, get_current_worker

from icdsl.tui.bindings import bindings
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.components.simulate_screen import DEFAULT_PERIOD
from icdsl.tui.components.source_picker import SourcePicker
from icdsl.tui.messages import unheard_end
from icdsl.tui.simulate import billable_partners, build_plan
from icdsl.tui.traffic_source import Cancelled, prepare_traffic
from icdsl.tui.whatif import Versions, WhatIf, compare

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("partner", ("partner", "side")),
    ("service", ("partner", "side", "service")),
    ("destination", ("partner", "service", "destination")),
    ("charge", ("partner", "side", "charge")),
    ("all", ("partner", "side", "service", "destination", "charge")),
)
EDITED = "edited"


class WhatIfProgress(Message):
    def __init__(self, stage: str, done: int) -> None:
        super().__init__()
        self.stage, self.done = stage, done


class WhatIfDone(Message):
    def __init__(self, result: WhatIf | None, error: str | None = None, cancelled: bool = False) -> None:
        super().__init__()
        self.result, self.error, self.cancelled = result, error, cancelled


def signed(value, currency: str = "") -> Text:
    """``+1,234.50`` (green) / ``-0.20`` (red) / ``0.00`` (dim), with the currency if given."""
    suffix = f" {currency}" if currency else ""
    if value == 0:
        return Text(f"{0:.2f}{suffix}", style="dim", justify="right")
    return Text(f"{value:+,.2f}{suffix}", style="green" if value > 0 else "red", justify="right")


def plain(value) -> str:
    return f"{value:,.2f}"


def right(value) -> Text:
    return Text(plain(value), justify="right")


class WhatIfScreen(Screen):
    BINDINGS = bindings("whatif")

    DEFAULT_CSS = """
    WhatIfScreen {
        layout: vertical;
        #wi-form { height: auto; padding: 0 1; }
        #wi-row, #wi-row2 { height: 1; }
        #wi-row > Label, #wi-row2 > Label { padding: 0 1 0 0; color: $text-muted; }
        #wi-mode { width: 22; margin: 0 1 0 0; }
        #wi-old, #wi-new { width: 1fr; margin: 0 1 0 0; }
        #wi-period { width: 9; }
        #wi-row > Button { width: auto; min-width: 10; }
        #wi-state { height: 1; }
        #wi-progress { width: auto; margin: 0 1 0 0; }
        #wi-progress Bar { width: 16; }
        #wi-status { width: 1fr; color: $text-muted; }
        #wi-summary { height: auto; max-height: 8; padding: 0 1; }
        #wi-table-box { height: 1fr; }
        #wi-table { height: 1fr; border: none; background: $surface; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.result: WhatIf | None = None
        self.group = 0
        self._worker: Worker | None = None
        self._started = 0.0

    def compose(self) -> ComposeResult:
        yield NavBar("whatif")
        with Vertical(id="wi-form", classes="panel") as form:
            form.border_title = "What-if"
            form.border_subtitle = "ctrl+g compare · ctrl+o group by"
            with Horizontal(id="wi-row"):
                yield Label("Compare")
                yield Select([("saved vs edited", EDITED), ("file A vs file B", "files")], value=EDITED,
                             allow_blank=False, compact=True, id="wi-mode")
                yield Select(self._rule_files(), prompt="A: file", compact=True, id="wi-old")
                yield Select(self._rule_files(), prompt="B: in A's place", compact=True, id="wi-new")
                yield Button("Compare", compact=True, variant="primary", id="wi-run")
            with Horizontal(id="wi-row2"):
                yield SourcePicker(last=True, id="wi-source")
                yield Label("period")
                yield Input(DEFAULT_PERIOD, compact=True, id="wi-period",
                            tooltip="The billing cycle whose charges are compared: 2026-03, 2026-Q1, "
                                    "2026-03-01..2026-03-15")
            with Horizontal(id="wi-state"):
                yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="wi-progress")
                yield Static("Edit a rule (F2), then compare it with the saved files (ctrl+g).", id="wi-status")
        yield Static("", id="wi-summary")
        with Vertical(id="wi-table-box", classes="panel") as box:
            box.border_title = "Difference (B - A)"
            yield DataTable(id="wi-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self._mode_changed()
        self.watch(self.app, "simulation", self._simulation_changed)

    def _simulation_changed(self, sim) -> None:
        """Compare over the last simulation's traffic and period by default once there is one."""
        kind = self.query_one(SourcePicker).query_one("#src-kind", Select)
        if sim is not None and kind.value == "generated" and self.result is None:
            kind.value = "last"
            self.query_one("#wi-period", Input).value = sim.request.period

    def focus_main(self) -> None:
        self.query_one("#wi-table", DataTable).focus()

    def _rule_files(self) -> list[tuple[str, str]]:
        project = self.app.project
        return [(project.shown(p), str(p)) for p in project.files().rules]

    @on(Select.Changed, "#wi-mode")
    def _mode_changed(self) -> None:
        files = self.query_one("#wi-mode", Select).value == "files"
        self.query_one("#wi-old", Select).display = files
        self.query_one("#wi-new", Select).display = files

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        # until the screen has heard how it ended (WhatIfDone): the worker's thread ends first
        return self._worker is not None

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        ended, error = unheard_end(self._worker, event)
        if ended:
            self._done(WhatIfDone(None, error) if error else WhatIfDone(None, cancelled=True))

    def versions(self) -> Versions:
        if self.query_one("#wi-mode", Select).value != "files":
            return Versions()
        old, new = self.query_one("#wi-old", Select).value, self.query_one("#wi-new", Select).value
        if old is Select.BLANK or new is Select.BLANK:
            raise ValueError("choose file A and file B (B is read in A's place)")
        return Versions("files", Path(str(old)), Path(str(new)))

    def action_run(self) -> None:
        if self.running:
            self.notify("A comparison is running: escape cancels it.", severity="warning")
            return
        try:
            versions = self.versions()
            source = self.query_one(SourcePicker).source()
        except ValueError as e:
            self.notify(str(e), severity="error")
            return
        sim = self.app.simulation
        if source is None and sim is None:
            self.notify("No simulation yet: choose generated traffic or a traffic file.", severity="warning")
            return
        ws = self.app.workspace
        buffers = {p: ws.editors[p].text for p in ws.modified() if p in ws.editors}
        if versions.mode == "edited" and not buffers:
            self.notify("No unsaved edits: both versions are the same (edit a rule in F2 first).", timeout=4)
        self._started = time.monotonic()
        self.query_one("#wi-run", Button).disabled = True
        self.query_one("#wi-progress", ProgressBar).update(total=None)
        self._status("starting…")
        period = self.query_one("#wi-period", Input).value.strip() or DEFAULT_PERIOD
        self._worker = self._compare(versions, buffers, source, sim, period)

    def action_cancel(self) -> None:
        if self.running:
            self._worker.cancel()
            self._status("cancelling…")

    @work(thread=True, exclusive=True, group="whatif", exit_on_error=False)
    def _compare(self, versions: Versions, buffers: dict, source, sim, period: str) -> None:
        worker = get_current_worker()
        last, last_stage = 0.0, ""

        def progress(stage: str, done: int, total: int) -> None:
            nonlocal last, last_stage
            now = time.monotonic()
            if now - last >= 0.1 or stage != last_stage:
                last, last_stage = now, stage
                self.post_message(WhatIfProgress(stage, done))

        try:
            project = self.app.project
            good = self.app.good
            if source is None:
                traffic, partners = sim.traffic, list(sim.request.partners)
            else:
                plan = good.plan if good is not None else None
                if plan is None or versions.mode == "files":  # e.g. both files in the folder
                    plan, _, why = build_plan(project, versions.overlays(buffers)[0])
                    if plan is None:
                        raise ValueError(f"version A: {why}")
                partners = billable_partners(plan)
                traffic = prepare_traffic(project, plan, source, partners, self.app.scratch,
                                          progress=progress, cancelled=lambda: worker.is_cancelled)
            result = compare(project, versions, buffers, traffic, partners, period=period, progress=progress,
                             cancelled=lambda: worker.is_cancelled)
        except Cancelled:
            self.post_message(WhatIfDone(None, cancelled=True))
            return
        except Exception as e:
            self.post_message(WhatIfDone(None, str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"))
            return
        self.post_message(WhatIfDone(result))

    @on(WhatIfProgress)
    def _progress(self, event: WhatIfProgress) -> None:
        self._status(f"{event.stage}" + (f" {event.done:,}" if event.done > 1 else "")
                     + f" · {time.monotonic() - self._started:.1f} s")

    @on(WhatIfDone)
    def _done(self, event: WhatIfDone) -> None:
        self._worker = None
        self.query_one("#wi-run", Button).disabled = False
        self.query_one("#wi-progress", ProgressBar).update(total=1, progress=0 if event.result is None else 1)
        if event.cancelled:
            self._status("Cancelled.")
            return
        if event.error:
            self._status(f"Failed: {event.error}")
            self.notify(event.error, severity="error", timeout=6)
            return
        self.result = event.result
        self.show_result()

    def _status(self, text: str) -> None:
        self.query_one("#wi-status", Static).update(text)

    # ------------------------------------------------------------------ results
    def show_result(self) -> None:
        r = self.result
        if r is None:
            return
        a, b = r.labels
        cycle = f", {r.period} charges" if r.period else ""
        self._status(f"{r.records:,} records{cycle} in {r.seconds:.1f} s: A = {a}, B = {b}")
        summary = Text()
        for (side, ccy), (va, vb) in r.totals().items():
            summary.append(f"{side:<7} {ccy}  {plain(va)} → {plain(vb)}  ")
            summary.append_text(signed(vb - va))
            summary.append("\n")
        for (doc, ccy), (va, vb) in r.document_totals().items():  # as issued: converted, rounded, taxed
            summary.append(f"{doc} {ccy}  {plain(va)} → {plain(vb)}  ")
            summary.append_text(signed(vb - va))
            summary.append("\n")
        moved = [(k, v) for k, v in r.rejects.items() if v[0] != v[1]]
        for (partner, reason), (ra, rb) in moved[:2]:
            summary.append(f"rejected {partner} {reason}: {ra:,} → {rb:,}\n", style="yellow")
        if r.outside:
            summary.append(f"{r.outside:,} records outside {r.period} left out\n", style="dim")
        for note in r.notes[:2]:
            summary.append(f"{note}\n", style="yellow")
        if len(r.notes) > 2:
            summary.append(f"and {len(r.notes) - 2} more note(s)\n", style="yellow")
        if not r.changed:
            summary.append("No difference: both versions rate this traffic the same.", style="dim")
        summary.rstrip()
        self.query_one("#wi-summary", Static).update(summary)
        self._fill_table()

    def _fill_table(self) -> None:
        r = self.result
        table = self.query_one("#wi-table", DataTable)
        name, dims = GROUPS[self.group]
        table.clear(columns=True)
        # the short keys, then the currency and the amounts (on screen at 80 columns), then the
        # long keys (destination, charge)
        short = [d for d in ("partner", "side", "service") if d in dims]
        long = [d for d in ("destination", "charge") if d in dims]
        for c in (*short, "ccy", "B - A", "A", "B", "records", *long):  # every row says its currency
            table.add_column(c, key=c)
        rows = r.by(dims) if r is not None else []

        def key(row, c):
            v = row.value(c)
            return f"{row.value('direction')} {v}".strip() if c == "service" else v

        for row in rows[:2000]:
            if row.a.count == row.b.count:
                count = f"{row.a.count:,}" if row.a.count or not (row.a.lines or row.b.lines) else ""
            else:
                count = f"{row.a.count:,} → {row.b.count:,}"
            table.add_row(*(key(row, c) for c in short), row.value("currency") or "", signed(row.diff),
                          right(row.a.amount), right(row.b.amount), count, *(key(row, c) for c in long))
        box = self.query_one("#wi-table-box")
        box.border_title = f"Difference (B - A) by {name}" + (f" · {len(rows):,} rows" if r is not None else "")

    def action_group(self) -> None:
        self.group = (self.group + 1) % len(GROUPS)
        self._fill_table()

    @on(Button.Pressed, "#wi-run")
    def _run_pressed(self) -> None:
        self.action_run()
