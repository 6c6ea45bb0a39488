"""A record's rating, step by step; selecting a step shows its rule in the editor."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from icdsl.tui.messages import OpenLocation
from icdsl.tui.traffic import Explanation


def step_prompt(number: int, text: str, where: str) -> Table:
    """``12. text [file:line]`` with wrapped lines indented under the text."""
    grid = Table.grid()
    grid.add_column(width=4, style="dim")
    grid.add_column(ratio=1)
    body = Text(text)
    if where:
        body.append(f"  [{where}]", style="dim")
    grid.add_row(f"{number:>2}.", body)
    return grid


class ExplanationView(OptionList):
    """The trace of ``rate_record``: what was decided and by which rule, then ``=> amount``."""

    DEFAULT_CSS = """
    ExplanationView {
        height: 1fr;
        border: none;
        padding: 0;
        background: $surface;
        &:focus { border: none; background-tint: $foreground 3%; }
        & > .option-list--option { padding: 0 1; }
    }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.explanation: Explanation | None = None

    def show(self, explanation: Explanation | None, note: str = "") -> None:
        self.explanation = explanation
        keep = self.highlighted
        self.clear_options()
        if explanation is None:
            if note:
                self.add_option(Option(Text(note, style="dim"), disabled=True))
            return
        for i, step in enumerate(explanation.steps, 1):
            self.add_option(Option(step_prompt(i, step.text, step.where)))
        style = "bold green" if explanation.ok else "bold red"
        self.add_option(Option(Text(explanation.outcome, style=style)))
        if note:
            self.add_option(Option(Text(note, style="yellow"), disabled=True))
        if keep is not None and keep < len(explanation.steps):
            self.highlighted = keep

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        exp = self.explanation
        if exp is not None and event.option_index < len(exp.steps):
            loc = exp.steps[event.option_index].location
            if loc is not None:
                self.post_message(OpenLocation(loc))
