"""The command palette's provider: the actions of the bindings table, "Open FILE" for every file
of the project and "Explain TRAFFIC" for every traffic file."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from icdsl.tui.bindings import ACTIONS, keys_of
from icdsl.tui.screens import SCREENS


class IcdslCommands(Provider):
    def _commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        keymap = getattr(app, "_keymap", None)
        screen_ids = {s.id for s in SCREENS}
        current = app.current_mode
        out: list[tuple[str, object, str]] = []
        for a in ACTIONS:
            if not a.palette or (a.scope != "app" and a.scope != current):
                continue
            if a.scope in screen_ids:
                action = a.action if a.action.startswith("app.") else f"screen.{a.action}"
            else:
                action = a.action
            out.append((a.help, partial(app.run_action, action), f"{keys_of(a, keymap)}"))
        project = app.project
        files = project.files()
        for p in files.rules + files.decks + files.traffic + files.inventory:
            out.append((f"Open {project.shown(p)}", partial(app.open_in_editor, p), "in the editor"))
        for p in files.traffic:
            out.append((f"Explain {project.shown(p)}", partial(app.explain_traffic, p), "records and their rating"))
        return out

    async def discover(self) -> Hits:
        for text, callback, help_ in self._commands():
            yield DiscoveryHit(text, callback, help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_ in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_)
