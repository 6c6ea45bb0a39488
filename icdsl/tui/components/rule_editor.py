"""The editor: a Textual ``TextArea`` that highlights icdsl with the language's own lexer and
marks the checker's problems.

TextArea highlights through ``_highlights`` (per line, ``(start_byte, end_byte, name)``), which
it normally fills from a tree-sitter query in ``_build_highlight_map`` after every edit. No
tree-sitter grammar exists for icdsl, so this subclass overrides ``_build_highlight_map`` to
fill the same map from ``icdsl.tui.highlight`` (the Lark lexer), adds the problems' spans under
the names ``icdsl.problem.error`` / ``icdsl.problem.warning`` (styled by the ``icdsl-*``
themes), and overrides ``_render_line`` to put a marker in the gutter of a line with a problem.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widgets import TextArea
from textual.widgets.text_area import TextAreaTheme

from icdsl.tui import highlight as hl
from icdsl.tui.project import Problem

PROBLEM_ERROR = "icdsl.problem.error"
PROBLEM_WARNING = "icdsl.problem.warning"
ERROR_COLOR = "#f0616d"
WARNING_COLOR = "#e5c07b"
_EXTRA_STYLES = {
    hl.ERROR: Style(color=ERROR_COLOR, bold=True),
    PROBLEM_ERROR: Style(underline=True, color=ERROR_COLOR, bold=True),
    PROBLEM_WARNING: Style(underline=True, color=WARNING_COLOR),
}


def _themes() -> tuple[TextAreaTheme, TextAreaTheme]:
    """icdsl-dark and icdsl-light: the CSS theme's colours, syntax colours of VS Code dark or
    GitHub light, and the problem styles."""
    dark = TextAreaTheme.get_builtin_theme("vscode_dark")
    light = TextAreaTheme.get_builtin_theme("github_light")
    assert dark is not None and light is not None
    return (
        TextAreaTheme("icdsl-dark", syntax_styles={**dark.syntax_styles, **_EXTRA_STYLES}),
        TextAreaTheme("icdsl-light", syntax_styles={**light.syntax_styles, **_EXTRA_STYLES}),
    )


class _LazyLines(dict):
    """Highlights of a very large file, computed line by line when a line is drawn."""

    def __init__(self, editor: RuleEditor):
        super().__init__()
        self.editor = editor

    def __bool__(self) -> bool:
        return True

    def __missing__(self, line: int) -> list:
        doc = self.editor.document
        text = doc.get_line(line) if 0 <= line < doc.line_count else ""
        spans = _to_bytes(text, hl.line_highlights(text)) + self.editor._problem_spans.get(line, [])
        self[line] = spans
        return spans


def _to_bytes(line: str, spans: list[hl.Span]) -> list[tuple[int, int | None, str]]:
    if line.isascii():
        return list(spans)

    def b(col: int) -> int:
        return len(line[:col].encode("utf-8"))

    return [(b(a), b(e), name) for a, e, name in spans]


class RuleEditor(TextArea):
    """One open file: a rule file (highlighted and checked), a deck or a traffic file."""

    DEFAULT_CSS = """
    RuleEditor {
        border: none;
        padding: 0;
        height: 1fr;
        &:focus { border: none; }
    }
    """

    def __init__(self, path: Path, text: str, *, read_only: bool = False, id: str | None = None):
        # _build_highlight_map runs inside TextArea.__init__: set what it reads first.
        self.path = path
        self.kind = "rules" if path.suffix == ".icd" else ("csv" if path.suffix.lower() == ".csv" else "text")
        self._problem_lines: dict[int, str] = {}  # 0-based line -> "error" | "warning"
        self._problem_spans: dict[int, list[tuple[int, int | None, str]]] = {}
        self.saved_text = text
        super().__init__(
            text,
            soft_wrap=False,
            show_line_numbers=True,
            tab_behavior="focus",
            read_only=read_only,
            id=id,
        )
        self.indent_width = 2
        for theme in _themes():
            self.register_theme(theme)

    def on_mount(self) -> None:
        self._follow_app_theme()
        self.watch(self.app, "theme", self._follow_app_theme, init=False)

    def _follow_app_theme(self, *_: object) -> None:
        self.theme = "icdsl-dark" if self.app.current_theme.dark else "icdsl-light"

    # ------------------------------------------------------------------ state
    @property
    def modified(self) -> bool:
        return self.text != self.saved_text

    def mark_saved(self) -> None:
        self.saved_text = self.text

    def show_problems(self, problems: list[Problem]) -> None:
        """Mark these problems (all in this file) in the gutter and under their spans."""
        lines: dict[int, str] = {}
        spans: dict[int, list[tuple[int, int | None, str]]] = defaultdict(list)
        doc = self.document
        for p in problems:
            loc = p.location
            if loc is None or not (1 <= loc.line <= doc.line_count):
                continue
            row = loc.line - 1
            severity = "error" if p.diag.is_error else "warning"
            if lines.get(row) != "error":
                lines[row] = severity
            name = PROBLEM_ERROR if severity == "error" else PROBLEM_WARNING
            text = doc.get_line(row)
            start = min(max(loc.col - 1, 0), len(text))
            end = loc.end_col - 1 if loc.end_line == loc.line and loc.end_col > loc.col else start + 1
            end = min(max(end, start + 1), len(text) + 1)
            spans[row].extend(_to_bytes(text, [(start, end, name)]))
        if lines == self._problem_lines and dict(spans) == self._problem_spans:
            return
        self._problem_lines = lines
        self._problem_spans = dict(spans)
        self._build_highlight_map()
        self.refresh()

    def go_to(self, line: int, col: int = 1) -> None:
        """Move the cursor to a 1-based line and column, centred in view."""
        row = min(max(line - 1, 0), self.document.line_count - 1)
        col = min(max(col - 1, 0), len(self.document.get_line(row)))
        self.move_cursor((row, col), center=True)
        self._pending_centre = (row, col)
        self.call_after_refresh(self._centre)

    def _centre(self) -> None:
        """Centre the cursor's line once the editor has its size (a file opened from another
        screen has none until the workspace is shown: then ``on_resize`` calls this again).
        Centring scrolls sideways too: keep the start of the line in view when the column fits."""
        pending = getattr(self, "_pending_centre", None)
        width = self.scrollable_content_region.width - self.gutter_width
        if pending is None or width <= 2 or self.scrollable_content_region.height <= 0:
            return
        self._pending_centre = None
        if self.cursor_location != pending:
            return
        self.scroll_cursor_visible(center=True, animate=False)
        if pending[1] < width - 2:
            self.scroll_to(x=0, animate=False)

    def on_resize(self) -> None:
        self._centre()

    # ------------------------------------------------------------------ highlighting
    def _build_highlight_map(self) -> None:
        self._line_cache.clear()
        text = self.text
        if self.kind == "rules" and len(text) > hl.CONTEXTUAL_LIMIT:
            self._highlights = _LazyLines(self)
            return
        highlights: defaultdict[int, list] = defaultdict(list)
        if self.kind == "rules":
            spans = hl.highlight(text)
        elif self.kind == "csv" and len(text) <= hl.CONTEXTUAL_LIMIT:
            spans = hl.csv_highlight(text)
        else:
            spans = {}
        doc = self.document
        for row, line_spans in spans.items():
            if row < doc.line_count:
                highlights[row] = _to_bytes(doc.get_line(row), line_spans)
        for row, extra in getattr(self, "_problem_spans", {}).items():
            highlights[row] = highlights[row] + extra
        self._highlights = highlights

    def _render_line(self, y: int) -> Strip:
        strip = super()._render_line(y)
        if not self._problem_lines or not self.show_line_numbers:
            return strip
        info = self.wrapped_document._offset_to_line_info
        offset = y + self.scroll_offset[1]
        if not (0 <= offset < len(info)) or info[offset] is None:
            return strip
        row, section = info[offset]
        severity = self._problem_lines.get(row)
        if severity is None or section != 0:
            return strip
        width = self.gutter_width
        gutter = list(strip.crop(0, width))
        style = gutter[0].style if gutter and gutter[0].style else Style()
        mark = Style(color=ERROR_COLOR if severity == "error" else WARNING_COLOR, bold=True)
        number = f"{row + self.line_number_start:>{width - 2}}"
        new_gutter = [Segment(number, style + mark), Segment("●" if severity == "error" else "▲", style + mark),
                      Segment(" ", style)]
        return Strip.join([Strip(new_gutter, width), strip.crop(width, strip.cell_length)])

