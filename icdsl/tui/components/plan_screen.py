"""The plan: what the project compiles to (``icdsl plan``), following the editor's cursor."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Static

from icdsl.tui.bindings import bindings
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.components.plan_view import PlanView


class PlanScreen(Screen):
    """The plan of the buffers as they are (the last one that compiled while there are errors)."""

    BINDINGS = bindings("plan")

    DEFAULT_CSS = """
    PlanScreen {
        layout: vertical;
        #plan-box { height: 1fr; }
        #plan-status { height: 1; padding: 0 1; color: $text-muted; }
        #plan-status.-stale { color: $warning; }
    }
    """

    only_current: reactive[bool] = reactive(False)

    def compose(self) -> ComposeResult:
        yield NavBar("plan")
        with Vertical(id="plan-box", classes="panel") as box:
            box.border_title = "Plan"
            yield PlanView(id="plan-view")
        yield Static("", id="plan-status")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "analysis", self.refresh_plan, init=False)
        self.watch(self.app, "cursor", self.refresh_plan, init=False)
        self.refresh_plan()

    def watch_only_current(self) -> None:
        self.refresh_plan()

    def focus_main(self) -> None:
        self.query_one(PlanView).focus()

    def action_toggle_follow(self) -> None:
        self.only_current = not self.only_current

    def refresh_plan(self, *_: object) -> None:
        app = self.app
        analysis, good = app.analysis, app.good
        status = self.query_one("#plan-status", Static)
        box = self.query_one("#plan-box")
        view = self.query_one(PlanView)
        if good is None:
            view.show((), None, False)
            if analysis is None:
                status.update("checking…")
            else:
                status.update(f"No plan: the rules have {analysis.errors} error(s); see the problems (F2).")
            status.set_class(analysis is not None, "-stale")
            return
        current = _current(good, app.cursor)
        view.show(good.blocks, current, self.only_current)
        stale = analysis is not None and analysis.plan is None
        status.set_class(stale, "-stale")
        if stale:
            status.update(f"Showing the last plan that compiled: the rules now have {analysis.errors} error(s).")
        elif current is not None:
            a = good.plan.agreements[current]
            status.update(f"Cursor in agreement \"{a.name}\" v{a.version}"
                          + (" (only this one shown)" if self.only_current else ""))
        else:
            status.update("enter: show the rule · an agreement under the editor's cursor is marked ▶")
        box.border_title = "Plan" + (" (stale)" if stale else "")


def _current(analysis, cursor: tuple[Path, int] | None) -> int | None:
    if cursor is None:
        return None
    return analysis.agreement_at(*cursor)
