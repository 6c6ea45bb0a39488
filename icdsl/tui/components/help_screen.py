"""Every key, from the bindings table (with the user's keymap applied)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from icdsl.tui.bindings import EDITOR_KEYS, actions, keys_of
from icdsl.tui.screens import SCREENS

SCOPE_TITLES = {"app": "Everywhere", "workspace": "Rules (workspace)", "plan": "Plan", "explain": "Explain",
                "simulate": "Simulate (billing cycle)", "whatif": "What-if", "drill": "Drill-down (records of a line)",
                "dashboard": "Dashboard"}


def help_table(keymap: dict[str, str] | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    scopes = ["app"] + [s.id for s in SCREENS]
    for scope in scopes:
        rows = actions(scope)
        if not rows:
            continue
        table.add_row(Text(SCOPE_TITLES.get(scope, scope.title()), style="bold underline"), "")
        for a in rows:
            table.add_row(keys_of(a, keymap), a.help)
        if scope == "workspace":
            for keys, what in EDITOR_KEYS:
                table.add_row(keys, Text(f"editor: {what}"))
        table.add_row("", "")
    table.add_row(Text("Lists", style="bold underline"), "")
    table.add_row("up / down, enter", "move, and show the selected problem, plan rule or step in the editor")
    table.add_row("ctrl+p", "command palette: every action, open a file, explain a traffic file")
    return table


class HelpScreen(ModalScreen[None]):
    """The keys of the terminal; escape, q or F1 closes it."""

    BINDINGS = [
        Binding("escape,q,f1,question_mark", "app.pop_screen", "Close", id="icdsl.help.close"),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        #help-box {
            width: 90%;
            max-width: 100;
            height: 90%;
            border: round $accent;
            border-title-color: $accent;
            background: $surface;
            padding: 0 1;
        }
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Keys"
            box.border_subtitle = "escape to close"
            self.table = help_table(getattr(self.app, "_keymap", None))
            yield Static(self.table)
