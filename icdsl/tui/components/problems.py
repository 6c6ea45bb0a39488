"""The checker's problems: code, location, message and help; selecting one shows it."""

from __future__ import annotations

from rich.console import Group
from rich.padding import Padding
from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from icdsl.tui.messages import OpenLocation
from icdsl.tui.project import Analysis, Problem


def problem_text(p: Problem, full: bool = False) -> Group:
    """``E111 acme.icd:14:12 message`` (the code says it: E an error in red, W a warning in
    yellow) and, indented under it, ``= help: ...``: in full for the highlighted problem
    (``full``), on one line cut with an ellipsis for the others, so that several fit."""
    d = p.diag
    color = "red" if d.is_error else "yellow"
    head = Text.assemble((d.code, f"bold {color}"), " ", (p.where, "bold"), " ", d.message)
    if not d.help:
        return Group(head)
    help_ = Text.assemble(("= help: ", "dim"), (d.help, "italic"))
    if not full:
        help_.no_wrap, help_.overflow = True, "ellipsis"
    return Group(head, Padding(help_, (0, 0, 0, 2)))


class ProblemsList(OptionList):
    """The problems of the last check, root causes first (``project.root_cause_key``)."""

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
        self._full: int | None = None  # the problem shown with its help in full

    def show(self, analysis: Analysis) -> None:
        if analysis.problems == self.problems:
            return
        self.problems = analysis.problems
        keep = self.highlighted
        self.clear_options()
        if not self.problems:
            self.add_option(Option(Text("No problems: the rules check.", style="green"), disabled=True))
            return
        self._full = None
        self.add_options(Option(problem_text(p)) for p in self.problems)
        self.highlighted = keep if keep is not None and keep < len(self.problems) else 0

    def watch_highlighted(self, highlighted: int | None) -> None:
        problems = self.problems or ()
        if highlighted != self._full and highlighted is not None and highlighted < len(problems):
            if self._full is not None and self._full < len(problems):
                self.replace_option_prompt_at_index(self._full, problem_text(problems[self._full]))
            self._full = highlighted
            self.replace_option_prompt_at_index(highlighted, problem_text(problems[highlighted], full=True))
        super().watch_highlighted(highlighted)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if self.problems and event.option_index < len(self.problems):
            loc = self.problems[event.option_index].location
            if loc is not None:
                self.post_message(OpenLocation(loc))
