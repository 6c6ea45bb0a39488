"""Every key of the terminal in one table: ids, default keys, where they apply, what they do.

Widgets and screens build their ``BINDINGS`` from this table (``bindings(scope)``), the help
screen and the command palette list it, and the ids make every key remappable:
``IcdslApp(keymap={"icdsl.save": "ctrl+w"})`` or, for ``icdsl tui``, the environment variable
``ICDSL_TUI_KEYS="icdsl.save=ctrl+w,icdsl.help=f12"`` (Textual's keymap, keyed by binding id).

A later screen adds its row to ``ACTIONS`` (scope = its screen id) and to ``icdsl.tui.screens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class Action:
    id: str  # the binding id (prefixed with "icdsl."), stable: users remap keys with it
    keys: str  # default keys, comma separated
    action: str  # the Textual action run
    description: str  # short, shown in the footer
    help: str  # one line, shown in the help screen and the command palette
    scope: str = "app"  # app | workspace | plan | explain | simulate | whatif | drill | dashboard | recon | routing
    show: bool = True  # shown in the footer
    palette: bool = True  # offered in the command palette (actions of the scope's screen)
    priority: bool = False


ACTIONS: tuple[Action, ...] = (
    # -- everywhere
    Action("help", "f1,question_mark", "app.help", "Keys", "Show every key binding"),
    Action("screen.workspace", "f2", "app.show_screen('workspace')", "Rules",
           "Workspace: files, editor and problems (again: focus the editor)", show=False),
    Action("screen.plan", "f3", "app.show_screen('plan')", "Plan", "The compiled plan of the project", show=False),
    Action("screen.explain", "f4", "app.show_screen('explain')", "Explain",
           "Pick a traffic record and see its rating step by step", show=False),
    Action("screen.simulate", "f5", "app.show_screen('simulate')", "Simulate",
           "Simulated billing cycle: partners, period, traffic; invoices and statements", show=False, priority=True),
    Action("screen.whatif", "f6", "app.show_screen('whatif')", "What-if",
           "What-if: saved rules vs the editor's edits (or two files) over the same traffic", show=False, priority=True),
    Action("screen.drill", "f7", "app.show_screen('drill')", "Drill",
           "Drill-down: the records behind an invoice line and their rating", show=False, priority=True),
    Action("screen.dashboard", "f9", "app.show_screen('dashboard')", "Dashboard",
           "Dashboard: revenue and cost of the store's cycles or the last simulation, findings, "
           "reconciliations, disputes", show=False, priority=True),
    Action("screen.recon", "f10", "app.show_screen('recon')", "Reconcile",
           "Reconciliation: a partner's invoice against our view of the traffic, down to the records",
           show=False, priority=True),
    Action("screen.routing", "f11", "app.show_screen('routing')", "Routing",
           "Routing: the least-cost routing table of a day and the margins of a period, down to the records",
           show=False, priority=True),
    Action("save", "ctrl+s", "app.save", "Save", "Save the file in the editor", show=True),
    Action("check", "ctrl+r", "app.check_now", "Check", "Re-read the folder and check it now", show=False),
    Action("next_problem", "f8", "app.next_problem(1)", "Next problem", "Go to the next problem"),
    Action("previous_problem", "shift+f8", "app.next_problem(-1)", "Previous problem",
           "Go to the previous problem", show=False),
    Action("quit", "ctrl+q", "app.quit", "Quit", "Quit (asks again if files are unsaved)", show=False),
    # -- workspace screen
    Action("focus.files", "ctrl+t", "focus_files", "Files", "Focus the file tree", scope="workspace"),
    Action("focus.problems", "ctrl+l", "focus_problems", "Problems", "Focus the problems list",
           scope="workspace"),
    # -- plan screen
    Action("plan.follow", "f", "toggle_follow", "Only this agreement",
           "Show only the agreement under the editor's cursor, or the whole plan", scope="plan"),
    # -- explain screen
    Action("explain.next_file", "t", "next_traffic", "Next traffic file",
           "Show the next traffic file of the folder", scope="explain"),
    Action("explain.source_row", "o", "open_row", "Open row",
           "Open the selected record's line in the traffic file", scope="explain"),
    # -- simulate screen
    Action("simulate.run", "ctrl+g", "run", "Run", "Run the simulated billing cycle", scope="simulate",
           priority=True),
    Action("simulate.cancel", "escape", "cancel", "Cancel", "Cancel the running simulation", scope="simulate"),
    Action("simulate.drill", "ctrl+d", "drill", "Drill", "Drill into the selected invoice line (or press enter on it)",
           scope="simulate", priority=True),
    # -- what-if screen
    Action("whatif.run", "ctrl+g", "run", "Compare", "Rate the traffic with both versions and compare",
           scope="whatif", priority=True),
    Action("whatif.cancel", "escape", "cancel", "Cancel", "Cancel the running comparison", scope="whatif"),
    Action("whatif.group", "ctrl+o", "group", "Group by", "Group the difference by partner, service, "
           "destination, charge or all of them", scope="whatif", priority=True),
    # -- drill-down screen
    Action("drill.rule", "o", "open_rule", "Open rule", "Open the rule of the selected record (or the line) "
           "in the editor", scope="drill"),
    Action("drill.explain", "x", "explain", "In Explain", "Show the line's records in the Explain screen",
           scope="drill"),
    Action("drill.back", "escape", "back", "Back", "Back to the simulation's invoices", scope="drill"),
    # -- dashboard screen
    Action("dashboard.group", "g", "group", "Group by", "Chart by partner, charge type, service, agreement or month",
           scope="dashboard"),
    Action("dashboard.currency", "c", "currency", "Currency", "Chart the next currency (one chart per currency: "
           "amounts are never converted)", scope="dashboard"),
    Action("dashboard.state", "s", "state", "Final/draft", "Count every document, only finalized ones or only drafts",
           scope="dashboard"),
    Action("dashboard.source", "o", "source", "Store/sim", "Show the store's cycles or the last simulation",
           scope="dashboard"),
    Action("dashboard.panel", "n", "next_panel", "Next panel", "Next panel: numbers, months, findings, "
           "reconciliations, disputes, assurance", scope="dashboard"),
    Action("dashboard.reload", "r", "reload", "Reload", "Read the store again (cycles, reconciliations, disputes, "
           "findings)", scope="dashboard"),
    # -- reconciliation screen
    Action("recon.run", "ctrl+g", "run", "Reconcile", "Reconcile the partner's invoice of the period",
           scope="recon", priority=True),
    Action("recon.filter", "ctrl+o", "filter", "Differences", "Show every line, or only the lines that differ "
           "(records: every class or only the differing ones)", scope="recon", priority=True),
    Action("recon.all", "a", "all_records", "All records", "Every record of the invoice (theirs and ours, "
           "classed), not only one line's", scope="recon"),
    Action("recon.back", "escape", "back", "Back", "From the records back to the lines", scope="recon"),
    # -- routing screen
    Action("routing.run", "ctrl+g", "run", "Build", "Build the LCR table of the day and the margins of the period",
           scope="routing", priority=True),
    Action("routing.toggle", "n", "toggle", "LCR/margins", "Show the LCR table or the margins", scope="routing"),
    Action("routing.group", "g", "group", "Group by", "Margins by destination, partner, supplier or day",
           scope="routing"),
    Action("routing.back", "escape", "back", "Back", "From the records back to the margins", scope="routing"),
)

# Keys of the editor itself (Textual's TextArea): listed in the help screen, not remappable here.
EDITOR_KEYS: tuple[tuple[str, str], ...] = (
    ("ctrl+z / ctrl+y", "undo / redo"),
    ("ctrl+x / ctrl+c / ctrl+v", "cut / copy / paste"),
    ("shift+arrows", "select"),
    ("ctrl+left / ctrl+right", "move by word"),
    ("home / end, ctrl+a / ctrl+e", "line start / end"),
    ("ctrl+k / ctrl+shift+k", "delete to line end / delete line"),
    ("tab / shift+tab", "next / previous panel"),
)

# F6 and F7 are the editor's "select line" and "select all" (TextArea): the screen keys are
# priority bindings so that they switch screens from the editor too (shift+arrows still select).

PREFIX = "icdsl."


def binding_id(action: Action) -> str:
    return PREFIX + action.id


def bindings(scope: str) -> list[Binding]:
    """The Textual bindings of one scope."""
    return [
        Binding(a.keys, a.action, a.description, show=a.show, id=binding_id(a), priority=a.priority,
                tooltip=a.help)
        for a in ACTIONS
        if a.scope == scope
    ]


def actions(scope: str | None = None) -> list[Action]:
    return [a for a in ACTIONS if scope is None or a.scope == scope]


def keys_of(action: Action, keymap: Mapping[str, str] | None = None) -> str:
    """The keys bound to an action, after the user's keymap."""
    keys = (keymap or {}).get(binding_id(action), action.keys)
    return ", ".join(_pretty(k) for k in keys.split(","))


def _pretty(key: str) -> str:
    key = key.strip()
    return {"question_mark": "?"}.get(key, key)


def parse_keymap(text: str | None) -> dict[str, str]:
    """``"icdsl.save=ctrl+w,icdsl.help=f12"`` (or ``save=ctrl+w``) to a Textual keymap.

    Several keys for one action are joined with '+'-free separators: ``icdsl.help=f1|f12``.
    """
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if "=" not in item:
            continue
        name, keys = (s.strip() for s in item.split("=", 1))
        if not name or not keys:
            continue
        out[name if name.startswith(PREFIX) else PREFIX + name] = keys.replace("|", ",")
    return out
