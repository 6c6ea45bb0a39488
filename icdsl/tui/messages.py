"""Messages shared by several components (a component's own messages live in its module)."""

from __future__ import annotations

from textual.message import Message
from textual.worker import Worker, WorkerState

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


def unheard_end(current: Worker | None, event: Worker.StateChanged) -> tuple[bool, str | None]:
    """Whether ``current`` (a screen's long job) ended without its finishing message, and the
    error if it failed. A job's worker posts its finishing message before it ends, so the state
    change comes after it: a worker still current then ended unheard (cancelled before it
    started, or failed)."""
    if event.worker is not current or event.state not in (
            WorkerState.SUCCESS, WorkerState.CANCELLED, WorkerState.ERROR):
        return False, None
    if event.state == WorkerState.ERROR:
        return True, f"{type(event.worker.error).__name__}: {event.worker.error}"
    return True, None
