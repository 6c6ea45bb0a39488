"""The top line of every screen: the project, the screens (the current one marked) and the
state of the last check."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from icdsl.tui.bindings import ACTIONS, keys_of
from icdsl.tui.screens import SCREENS


class NavBar(Widget):
    """``icdsl · tutorial   F2 Rules  F3 Plan  F4 Explain          ✔ no problems``"""

    DEFAULT_CSS = """
    NavBar {
        height: 1;
        width: 100%;
        background: $panel;
        color: $foreground;
    }
    """

    current: reactive[str] = reactive("")
    status: reactive[tuple[str, str]] = reactive(("", ""))  # (text, style)

    def __init__(self, current: str, *, id: str | None = None):
        super().__init__(id=id)
        self.set_reactive(NavBar.current, current)

    def on_mount(self) -> None:
        self.watch(self.app, "analysis", self._show_status)
        self.watch(self.app, "checking", self._show_status)

    def _show_status(self, *_: object) -> None:
        app = self.app
        a = getattr(app, "analysis", None)
        if getattr(app, "checking", False) and a is None:
            self.status = ("checking…", "dim")
        elif a is None:
            self.status = ("", "")
        elif a.errors:
            self.status = (f"✖ {a.errors} error{'s' if a.errors != 1 else ''}"
                           + (f" ▲ {a.warnings}" if a.warnings else ""), "bold red")
        elif a.warnings:
            self.status = (f"▲ {a.warnings} warning{'s' if a.warnings != 1 else ''}", "yellow")
        else:
            self.status = ("✔ no problems", "green")

    def render(self) -> Content:
        app = self.app
        name = getattr(getattr(app, "project", None), "name", "")
        text, style = self.status
        keymap = getattr(app, "_keymap", {})
        width = self.size.width
        # narrower terminals: leave the project out, then use short titles, then a short status,
        # then leave "icdsl" out, then only the keys of the screens not shown
        for with_name, short, status in ((True, False, text), (False, False, text), (False, True, text),
                                         (False, True, text[:1]), (None, True, text[:1]), (None, None, text[:1])):
            left = Content.styled(" icdsl", "bold") if with_name is not None else Content("")
            if with_name:
                left += Content.styled(f" · {name} ", "dim")
            elif with_name is not None:
                left += " "
            for s in SCREENS:
                action = next((a for a in ACTIONS if a.id == f"screen.{s.id}"), None)
                key = keys_of(action, keymap).split(",")[0].upper() if action else ""
                label = f" {key} {s.short_title if short else s.title} "
                if short is None and s.id != self.current:
                    label = f" {key} "
                if s.id == self.current:
                    left += Content.styled(label, "bold reverse")
                else:
                    left += Content.from_markup(f"[@click=app.show_screen('{s.id}')]$label[/]", label=label)
            right = Content.styled(f"{status} ", style)
            if left.cell_length + right.cell_length + 1 <= width:
                break
        pad = max(1, width - left.cell_length - right.cell_length)
        return Content.assemble(left, " " * pad, right)
