"""The workspace: the project's files, the editor and the problems of the live check."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Static, TextArea

from icdsl.tui.bindings import bindings
from icdsl.tui.components.file_tree import FileTree
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.components.problems import ProblemsList
from icdsl.tui.components.rule_editor import RuleEditor
from icdsl.tui.project import Analysis, Location, read_text

WIDE = 100  # columns from which the file tree stays beside the editor
EMPTY_HINT = "Open a file from the tree (enter), or with the command palette (ctrl+p)."


class WorkspaceScreen(Screen):
    """Files on the left; the editor over the problems on the right.

    Narrower than 100 columns (an 80x24 terminal) the file tree is hidden so that the editor has
    the width (about 72 columns of text at 80): ctrl+t shows it, opening a file hides it again."""

    BINDINGS = bindings("workspace")
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE, "-wide")]

    DEFAULT_CSS = """
    WorkspaceScreen {
        layout: vertical;
        #ws-body { height: 1fr; }
        #ws-files { width: 22; }
        #ws-main { width: 1fr; }
        #ws-editors { height: 1fr; }
        #ws-problems-box { height: auto; min-height: 3; max-height: 40%; }
        #ws-problems-box.-none { max-height: 3; }
        #ws-problems { height: auto; max-height: 100%; }
        &.-narrow #ws-files { display: none; }
        &.-narrow.-files-shown #ws-files { display: block; }
        #ws-empty { padding: 1 2; color: $text-muted; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.editors: dict[Path, RuleEditor] = {}
        self.current: Path | None = None
        self._counter = 0

    def compose(self) -> ComposeResult:
        app = self.app
        yield NavBar("workspace")
        with Horizontal(id="ws-body"):
            with Vertical(id="ws-files", classes="panel") as files:
                files.border_title = "Files"
                yield FileTree(app.project, id="ws-tree")
            with Vertical(id="ws-main"):
                with ContentSwitcher(id="ws-editors", initial="ws-empty", classes="panel") as box:
                    box.border_title = "Editor"
                    yield Static(EMPTY_HINT, id="ws-empty")
                with Vertical(id="ws-problems-box", classes="panel") as problems:
                    problems.border_title = "Problems"
                    yield ProblemsList(id="ws-problems")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "analysis", self.show_analysis)
        self.watch(self.app, "checking", self._show_checking)

    # ------------------------------------------------------------------ files
    @property
    def editor(self) -> RuleEditor | None:
        return self.editors.get(self.current) if self.current else None

    async def open_file(self, path: Path, line: int | None = None, col: int = 1, *, focus: bool = True) -> bool:
        """Show ``path`` in the editor (reading it the first time), at ``line`` if given."""
        path = path.resolve()
        editor = self.editors.get(path)
        if editor is None:
            text, problem = read_text(path)
            if text is None:
                self.notify(problem or f"cannot open {path.name}", severity="error")
                return False
            self._counter += 1
            project = self.app.project
            inside = path.is_relative_to(project.folder)
            editor = RuleEditor(path, text, read_only=not inside, id=f"ws-editor-{self._counter}")
            editor.cursor_blink = getattr(self.app, "cursor_blink", True)
            self.editors[path] = editor
            await self.query_one("#ws-editors", ContentSwitcher).mount(editor)
            analysis = self.app.analysis
            if analysis is not None:
                editor.show_problems(analysis.problems_in(path))
        self.current = path
        self.query_one("#ws-editors", ContentSwitcher).current = editor.id
        self._update_title()
        if line is not None:
            editor.go_to(line, col)
        if focus:
            # Screen.set_focus at once (Widget.focus is deferred); a widget just mounted may not
            # take it before its first refresh: then try again after it, unless the user moved
            # the focus meanwhile (ctrl+t right after opening, on a busy machine). Opened from
            # another screen, the workspace restores this focus when it is shown.
            self.set_focus(editor)
            if self.focused is not editor:
                self.call_after_refresh(self._refocus, editor, self.focused)
        self.app.cursor = (path, editor.cursor_location[0] + 1)
        return True

    def _refocus(self, editor: RuleEditor, before: object) -> None:
        if self.focused is before:
            self.set_focus(editor)

    def overlay(self) -> dict[Path, str]:
        """The open rule files' texts (the live check reads them instead of the files)."""
        return {p: e.text for p, e in self.editors.items() if e.kind == "rules"}

    def modified(self) -> list[Path]:
        return [p for p, e in self.editors.items() if e.modified]

    def save(self) -> Path | None:
        editor = self.editor
        if editor is None:
            self.notify("No file is open.", severity="warning")
            return None
        if editor.read_only:
            self.notify(f"{self.app.project.shown(editor.path)} is read-only here.", severity="warning")
            return None
        try:
            editor.path.write_text(editor.text, encoding="utf-8")
        except OSError as e:
            self.notify(f"Cannot save {editor.path.name}: {e.strerror or e}", severity="error")
            return None
        editor.mark_saved()
        self._update_title()
        self.notify(f"Saved {self.app.project.shown(editor.path)}", timeout=2)
        return editor.path

    def _update_title(self) -> None:
        box = self.query_one("#ws-editors", ContentSwitcher)
        editor = self.editor
        if editor is None:
            box.border_title = "Editor"
            return
        title = self.app.project.shown(editor.path)
        if editor.read_only:
            title += " (read-only)"
        elif editor.modified:
            title += " ●"
        box.border_title = title

    # ------------------------------------------------------------------ events
    @on(FileTree.FileSelected)
    async def _file_selected(self, event: FileTree.FileSelected) -> None:
        self.remove_class("-files-shown")
        if event.group == "traffic":
            self.app.explain_traffic(event.path)
        else:
            await self.open_file(event.path)

    @on(TextArea.Changed)
    def _edited(self, event: TextArea.Changed) -> None:
        if isinstance(event.text_area, RuleEditor) and event.text_area is self.editor:
            self._update_title()
            if event.text_area.kind == "rules":
                self.app.schedule_check()

    @on(TextArea.SelectionChanged)
    def _cursor_moved(self, event: TextArea.SelectionChanged) -> None:
        editor = event.text_area
        if isinstance(editor, RuleEditor) and editor is self.editor:
            line = editor.cursor_location[0] + 1
            if self.app.cursor != (editor.path, line):
                self.app.cursor = (editor.path, line)

    def show_analysis(self, analysis: Analysis | None) -> None:
        if analysis is None:
            return
        self.query_one(ProblemsList).show(analysis)
        for path, editor in self.editors.items():
            editor.show_problems(analysis.problems_in(path))
        box = self.query_one("#ws-problems-box")
        box.set_class(not analysis.problems, "-none")
        if analysis.problems:
            parts = []
            if analysis.errors:
                parts.append(f"{analysis.errors} error{'s' if analysis.errors != 1 else ''}")
            if analysis.warnings:
                parts.append(f"{analysis.warnings} warning{'s' if analysis.warnings != 1 else ''}")
            box.border_title = "Problems: " + ", ".join(parts)
        else:
            box.border_title = "Problems"

    def _show_checking(self, checking: bool) -> None:
        box = self.query_one("#ws-problems-box")
        box.border_subtitle = "checking…" if checking else ""

    # ------------------------------------------------------------------ actions
    def focus_main(self) -> None:
        if self.editor is not None:
            self.editor.focus()
        else:
            self.query_one(FileTree).focus()

    def action_focus_files(self) -> None:
        """Focus the file tree (shown first on a narrow screen; again: hide it)."""
        if self.has_class("-narrow"):
            if self.has_class("-files-shown") and self.focused is self.query_one(FileTree):
                self.remove_class("-files-shown")
                self.focus_main()
                return
            self.add_class("-files-shown")
            self.call_after_refresh(self.query_one(FileTree).focus)  # focusable once displayed
            return
        self.query_one(FileTree).focus()

    def action_focus_problems(self) -> None:
        self.query_one(ProblemsList).focus()

    def next_problem(self, direction: int) -> Location | None:
        """The location of the next (1) or previous (-1) problem after the cursor."""
        analysis = self.app.analysis
        if analysis is None:
            return None
        located = [p.location for p in analysis.problems if p.location is not None]
        if not located:
            return None
        here = (str(self.current or ""), self.editor.cursor_location[0] + 1 if self.editor else 0)
        keys = [(str(loc.path), loc.line) for loc in located]
        if direction > 0:
            after = [i for i, k in enumerate(keys) if k > here]
            index = after[0] if after else 0
        else:
            before = [i for i, k in enumerate(keys) if k < here]
            index = before[-1] if before else len(keys) - 1
        return located[index]
