"""The compiled plan, one option per paragraph (partner, agreement, calendar, ...); selecting
one shows its rule in the editor."""

from __future__ import annotations

import re

from rich.console import Group
from rich.padding import Padding
from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from icdsl.tui.messages import OpenLocation
from icdsl.tui.project import PlanBlock

_TAG = re.compile(r"\[[^\[\]]+:\d+:\d+\]")


def block_text(block: PlanBlock, current: bool) -> Group:
    """A paragraph of the plan; a wrapped line stays indented under its start."""
    lines = block.text.split("\n")
    parts = []
    for i, line in enumerate(lines):
        body = line.lstrip(" ")
        indent = len(line) - len(body) + 2
        text = Text(body)
        if i == 0:
            text.stylize("bold reverse" if current else "bold")
        text.highlight_regex(_TAG, "dim")
        if i == 0:
            text = Text.assemble(("▶ " if current else "  ", "bold green"), text)
            indent = 0
        parts.append(Padding(text, (0, 0, 0, indent)))
    return Group(*parts)


class PlanView(OptionList):
    """The plan's paragraphs; the agreement under the editor's cursor is marked."""

    DEFAULT_CSS = """
    PlanView {
        height: 1fr;
        border: none;
        padding: 0;
        background: $surface;
        &:focus { border: none; background-tint: $foreground 3%; }
        & > .option-list--option { padding: 0 1 1 0; }
    }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.blocks: tuple[PlanBlock, ...] = ()
        self.shown: list[PlanBlock] = []
        self._key: tuple = ()

    def show(self, blocks: tuple[PlanBlock, ...], current: int | None, only_current: bool) -> None:
        """Show the plan; ``current`` is the index of the agreement under the cursor."""
        key = (blocks, current, only_current)
        if key == self._key:
            return
        self._key = key
        self.blocks = blocks
        shown = [b for b in blocks if not only_current or current is None or b.agreement == current]
        self.shown = shown
        self.clear_options()
        self.add_options(Option(block_text(b, current is not None and b.agreement == current)) for b in shown)
        for i, b in enumerate(shown):
            if current is not None and b.agreement == current:
                self.highlighted = i
                self.call_after_refresh(self.scroll_to_highlight, top=True)
                break

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_index < len(self.shown):
            loc = self.shown[event.option_index].location
            if loc is not None:
                self.post_message(OpenLocation(loc))
