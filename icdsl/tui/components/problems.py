"""The checker's problems: code, location, message and help; selecting one shows it."""

from __future__ import annotations

from rich.console import Group
from rich.padding import Padding
from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from icdsl.tui.messages import OpenLocation
from icdsl.tui.project import Analysis, Problem


def problem_text(p: Problem) -> Group:
    """``error[E111] acme.icd:14:12 message`` and, indented under it, ``= help: ...``."""
    d = p.diag
    color = "red" if d.is_error else "yellow"
    head = Text.assemble(
        (f"{d.severity}[{d.code}]", f"bold {color}"), " ", (p.where, "bold"), " ", d.message,
    )
    if not d.help:
        return Group(head)
    help_ = Text.assemble(("= help: ", "dim"), (d.help, "italic"))
    return Group(head, Padding(help_, (0, 0, 0, 2)))


class ProblemsList(OptionList):
    """The problems of the last check, in source order."""

    DEFAULT_CSS = """
    ProblemsList {
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
        self.problems: tuple[Problem, ...] | None = None

    def show(self, analysis: Analysis) -> None:
        if analysis.problems == self.problems:
            return
        self.problems = analysis.problems
        keep = self.highlighted
        self.clear_options()
        if not self.problems:
            self.add_option(Option(Text("No problems: the rules check.", style="green"), disabled=True))
            return
        self.add_options(Option(problem_text(p)) for p in self.problems)
        if keep is not None and keep < len(self.problems):
            self.highlighted = keep

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if self.problems and event.option_index < len(self.problems):
            loc = self.problems[event.option_index].location
            if loc is not None:
                self.post_message(OpenLocation(loc))
