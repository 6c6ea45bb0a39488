"""The analyst's terminal: ``icdsl tui [FOLDER]`` runs :func:`run`.

The app holds the state every screen shows: the project, the last check (``analysis``), the
last check that compiled (``good``), whether a check is running and the editor's cursor. Screens
watch these reactives; the checking worker reports with :class:`~icdsl.tui.messages.AnalysisReady`
and never touches a widget.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path

from textual import work
from textual.app import App
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import get_current_worker

from icdsl.billing.errors import StoreError
from icdsl.lang.diagnostics import Diagnostic
from icdsl.plan.model import Span
from icdsl.tui.bindings import bindings, parse_keymap
from icdsl.tui.components.commands import IcdslCommands
from icdsl.tui.components.file_tree import FileTree
from icdsl.tui.components.help_screen import HelpScreen
from icdsl.tui.feeds import Feeds, store_feeds
from icdsl.tui.ledger import DEFAULT_MONTHS, open_ledger_store, read_ledger
from icdsl.tui.messages import AnalysisReady, OpenLocation
from icdsl.tui.project import Analysis, Problem, Project
from icdsl.tui.screens import SCREENS, spec

KEYMAP_ENV = "ICDSL_TUI_KEYS"


class IcdslApp(App):
    """Workspace (rules, live check), plan and explain screens over one project folder."""

    CSS_PATH = "app.tcss"
    TITLE = "icdsl"
    BINDINGS = bindings("app")
    COMMANDS = App.COMMANDS | {IcdslCommands}
    ENABLE_COMMAND_PALETTE = True

    analysis: reactive[Analysis | None] = reactive(None, always_update=True)
    checking: reactive[bool] = reactive(False)
    cursor: reactive[tuple[Path, int] | None] = reactive(None)
    simulation = reactive(None, always_update=True)  # the last icdsl.tui.simulate.Simulation
    ledger = reactive(None, always_update=True)  # the store's cycles (icdsl.tui.ledger.Ledger), with a store
    ledger_state: reactive[str] = reactive("")  # "reading…", or why the store could not be read

    def __init__(self, folder: Path | str, *, keymap: Mapping[str, str] | None = None,
                 check_delay: float = 0.3, open_first: bool = True, cursor_blink: bool = True,
                 store=None, feeds: Feeds | None = None, months: int | None = DEFAULT_MONTHS):
        """``store``: an open :class:`icdsl.billing.store.Store` whose cycles the dashboard shows
        (``icdsl tui --db URL``); ``feeds``: reconciliation, disputes and assurance
        (:mod:`icdsl.tui.feeds`); ``months``: how many months of cycles to read."""
        super().__init__()
        self.project = Project(folder)
        self.store = store
        self.feeds = feeds or Feeds()
        self.months = months
        self.good: Analysis | None = None  # the last analysis with a plan
        self.check_delay = check_delay
        self.open_first = open_first
        self.cursor_blink = cursor_blink  # False in snapshot tests
        self._user_keymap = dict(keymap or {})
        self._generation = 0
        self._timer: Timer | None = None
        self._check_running = False
        self._views: dict[str, Screen] = {}
        self._quit_asked = 0.0
        self._scratch: Path | None = None

    # ------------------------------------------------------------------ screens
    def view(self, screen_id: str) -> Screen:
        """The one instance of a screen (created the first time)."""
        if screen_id not in self._views:
            self._views[screen_id] = spec(screen_id).create()
        return self._views[screen_id]

    @property
    def workspace(self):
        return self.view("workspace")

    async def on_mount(self) -> None:
        if self._user_keymap:
            self.set_keymap(self._user_keymap)
        for s in SCREENS:
            self.add_mode(s.id, lambda sid=s.id: self.view(sid))
        await self.switch_mode("workspace")
        if self.store is not None:
            self.load_ledger()
        if self.open_first:
            rules = self.project.files().rules
            if rules:
                await self.workspace.open_file(rules[0])
        self.run_check()

    async def action_show_screen(self, screen_id: str) -> None:
        """Switch to a screen; on the screen already shown, focus its main widget."""
        if self.current_mode == screen_id:
            focus = getattr(self.screen, "focus_main", None)
            if focus is not None:
                focus()
            return
        await self.switch_mode(screen_id)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # ------------------------------------------------------------------ simulations
    @property
    def scratch(self) -> Path:
        """The session's temporary folder (simulation stores, generated traffic); removed at exit."""
        if self._scratch is None:
            _remove_stale_scratch()
            self._scratch = Path(tempfile.mkdtemp(prefix=f"icdsl-tui-{os.getpid()}-"))
            weakref.finalize(self, shutil.rmtree, str(self._scratch), True)
        return self._scratch

    def set_simulation(self, simulation) -> None:
        """Keep the new simulation (its store stays open for drill-down), close the previous one."""
        old = self.simulation
        self.simulation = simulation
        if old is not None and old is not simulation:
            old.close()

    async def drill(self, partner: str, document: dict, line: dict) -> None:
        """Show the records behind a line of the last simulation's invoices or statements."""
        await self.switch_mode("drill")
        self.view("drill").show_line(partner, document, line)

    async def show_reconciliation(self, reconciliation) -> None:
        """Walk a reconciliation (icdsl.recon.model.Reconciliation) in the reconciliation screen."""
        await self.switch_mode("recon")
        self.view("recon").show(reconciliation)

    def on_unmount(self) -> None:
        if self.simulation is not None:
            self.simulation.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    # ------------------------------------------------------------------ the store
    def load_ledger(self) -> None:
        """Read the store's cycles again, in a worker (the dashboard shows them when done)."""
        if self.store is None:
            return
        self.ledger_state = "reading the store…"
        self._read_ledger()

    @work(thread=True, exclusive=True, group="ledger", exit_on_error=False)
    def _read_ledger(self) -> None:
        try:
            ledger = read_ledger(self.store, months=self.months)
        except Exception as e:  # a store that cannot be read is said on the dashboard
            self.call_from_thread(self._ledger_read, None, f"cannot read the store: {type(e).__name__}: {e}")
            return
        self.call_from_thread(self._ledger_read, ledger, "")

    def _ledger_read(self, ledger, state: str) -> None:
        self.ledger_state = state
        if ledger is not None:
            self.ledger = ledger

    # ------------------------------------------------------------------ the live check
    def schedule_check(self) -> None:
        """Check again once typing pauses for ``check_delay`` seconds."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(self.check_delay, self.run_check)

    def run_check(self) -> None:
        """Check the project with the open buffers, in a worker thread.

        One check at a time: asked while one runs, it runs again once that one ends (a big
        project typed into quickly never piles up threads)."""
        self._generation += 1
        self.checking = True
        if self._check_running:
            return
        self._check_running = True
        self._check(self.workspace.overlay(), self._generation)

    @work(thread=True, group="check")
    def _check(self, overlay: dict[Path, str], generation: int) -> None:
        try:
            analysis = self.project.analyse(overlay, generation)
        except Exception as e:  # a bug in a phase must not take the terminal down
            diag = Diagnostic("E000", f"internal error while checking: {type(e).__name__}: {e}",
                              Span("<icdsl>", 0, 0, 0, 0), "please report it with the rule file")
            analysis = Analysis(generation, (Problem(diag, "<icdsl>", None),), None)
        if not get_current_worker().is_cancelled:
            self.post_message(AnalysisReady(analysis))

    def on_analysis_ready(self, message: AnalysisReady) -> None:
        analysis = message.analysis
        self._check_running = False
        if analysis.generation != self._generation:  # the buffers changed meanwhile: again
            self.run_check()
            return
        self.checking = False
        if analysis.plan is not None:
            self.good = analysis
        self.analysis = analysis

    def action_check_now(self) -> None:
        for tree in self.workspace.query(FileTree):
            tree.reload()
        self.run_check()

    # ------------------------------------------------------------------ navigation
    async def on_open_location(self, message: OpenLocation) -> None:
        loc = message.location
        if self.current_mode != "workspace":
            await self.switch_mode("workspace")
        await self.workspace.open_file(loc.path, loc.line, loc.col)

    async def open_in_editor(self, path: Path) -> None:
        if self.current_mode != "workspace":
            await self.switch_mode("workspace")
        await self.workspace.open_file(path)

    async def explain_traffic(self, path: Path) -> None:
        await self.switch_mode("explain")
        self.view("explain").show_file(path)

    async def action_next_problem(self, direction: int) -> None:
        loc = self.workspace.next_problem(direction)
        if loc is None:
            self.notify("No problems.", timeout=2)
            return
        await self.on_open_location(OpenLocation(loc))

    # ------------------------------------------------------------------ files
    def action_save(self) -> None:
        if self.workspace.save() is not None:
            self.run_check()

    async def action_quit(self) -> None:
        modified = self.workspace.modified()
        now = time.monotonic()
        if modified and now - self._quit_asked > 3:
            self._quit_asked = now
            names = ", ".join(self.project.shown(p) for p in modified)
            self.notify(f"Unsaved changes in {names}. Press ctrl+q again to quit without saving.",
                        severity="warning", timeout=3)
            return
        self.exit()


def run(folder: Path, keymap: Mapping[str, str] | None = None, *, db: str | None = None,
        data_dir: str | None = None, months: int | None = DEFAULT_MONTHS) -> None:
    """Run the terminal on a project folder (``icdsl tui [FOLDER] [--db URL]``).

    ``db``: a store (database URL or SQLite file) whose finalized and draft cycles the dashboard
    shows, with its reconciliations, disputes and assurance findings (:func:`store_feeds`).
    Keys are remapped with ``keymap`` (binding id -> keys) or the ``ICDSL_TUI_KEYS`` environment
    variable, e.g. ``ICDSL_TUI_KEYS="save=ctrl+w,help=f12"``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"error: not a folder: {folder}")
    keys = parse_keymap(os.environ.get(KEYMAP_ENV))
    keys.update(keymap or {})
    store = None
    if db is not None:
        try:
            store = open_ledger_store(db, data_dir)
        except StoreError as e:
            raise SystemExit(f"error: {e}") from None
    try:
        IcdslApp(folder, keymap=keys, store=store, feeds=store_feeds(store) if store is not None else None,
                 months=months).run()
    finally:
        if store is not None:
            store.close()


def _remove_stale_scratch() -> None:
    """Remove the temporary folders of earlier sessions whose process is gone (a terminal
    closed or killed rather than quit): ``icdsl-tui-PID-*`` in the temporary folder."""
    for d in Path(tempfile.gettempdir()).glob("icdsl-tui-*-*"):
        pid = d.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (PermissionError, OSError):
            continue
