"""Messages shared by several components (a component's own messages live in its module)."""

from __future__ import annotations

from textual.message import Message

from icdsl.tui.project import Analysis, Location


class OpenLocation(Message):
    """Show a place in the editor: open its file if needed, move the cursor there.

    Posted by the problems list, the plan and the explanation; handled by the app."""

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location


class AnalysisReady(Message):
    """A check of the project finished (posted from the checking worker thread)."""

    def __init__(self, analysis: Analysis) -> None:
        super().__init__()
        self.analysis = analysis
