"""The analyst's project, headless: its files, and checking it with unsaved buffers.

``Project.analyse(overlay)`` is what the editor runs ~300 ms after each keystroke, in a worker
thread: load every rule file of the folder, the open buffers' texts replacing the files' texts
on disk (``overlay``, by real path), check, and compile if there is no error. The result, an
:class:`Analysis`, is plain data the widgets render.

Paths: the language reports spans with display paths (relative to the working folder, see
``icdsl.lang.loader.display_path``). Here every span is resolved to a real path (to open the
file) and to a *shown* path relative to the project folder (``acme.icd``, ``decks/x.csv``), or
``stdlib/calendars.icd`` for the standard library.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from icdsl.lang import loader
from icdsl.lang.checker import check
from icdsl.lang.diagnostics import Diagnostic
from icdsl.lang.parser import decode
from icdsl.plan.compiler import compile_checked
from icdsl.plan.model import Plan, Span
from icdsl.plan.render import render_plan

RULE_SUFFIX = loader.RULE_SUFFIX
TRAFFIC_SUFFIXES = (".csv", ".parquet", ".pq")
# Folders never listed: tools' and outputs' folders.
SKIP_DIRS = frozenset(("__pycache__", "node_modules", ".git", ".venv", "venv"))


@dataclass(frozen=True, slots=True)
class Location:
    """A place to show in the editor: a real path and a 1-based line and column."""

    path: Path
    line: int
    col: int = 1
    end_line: int = 0
    end_col: int = 0


@dataclass(frozen=True, slots=True)
class Problem:
    """A diagnostic with its file resolved."""

    diag: Diagnostic
    shown: str  # the file as shown to the analyst
    location: Location | None  # None for a diagnostic without a position

    @property
    def where(self) -> str:
        s = self.diag.span
        return f"{self.shown}:{s.line}:{s.col}" if s.line else self.shown


@dataclass(frozen=True, slots=True)
class PlanBlock:
    """One paragraph of the rendered plan (a partner, an agreement, a calendar, ...)."""

    text: str
    location: Location | None  # the rule it comes from ([file:line:col] on its first line)
    agreement: int | None = None  # index in plan.agreements when the block is an agreement


@dataclass(frozen=True)
class Analysis:
    """The result of checking (and, without errors, compiling) the project."""

    generation: int
    problems: tuple[Problem, ...]
    plan: Plan | None
    blocks: tuple[PlanBlock, ...] = ()
    seconds: float = 0.0
    agreement_spans: tuple[tuple[Path, int, int], ...] = ()  # (path, first line, last line) per agreement

    @property
    def errors(self) -> int:
        return sum(p.diag.is_error for p in self.problems)

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors

    def problems_in(self, path: Path) -> list[Problem]:
        return [p for p in self.problems if p.location is not None and p.location.path == path]

    def agreement_at(self, path: Path, line: int) -> int | None:
        """The index of the agreement whose text contains ``line`` of ``path``."""
        for i, (p, first, last) in enumerate(self.agreement_spans):
            if p == path and first <= line <= last:
                return i
        return None


@dataclass
class ProjectFiles:
    rules: list[Path] = field(default_factory=list)
    decks: list[Path] = field(default_factory=list)
    traffic: list[Path] = field(default_factory=list)
    inventory: list[Path] = field(default_factory=list)  # inventory*.csv: the partners' ports, trunks, SIMs

    def all(self) -> list[Path]:
        return self.rules + self.decks + self.traffic + self.inventory


class Project:
    """A folder of rule files, decks and traffic files."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder).resolve()

    @property
    def name(self) -> str:
        return self.folder.name or str(self.folder)

    # ------------------------------------------------------------------ files
    def files(self) -> ProjectFiles:
        """Rule files, decks (CSV files under a ``decks`` folder), inventory files
        (``inventory*.csv``, see ``icdsl inventory import``) and traffic files, sorted."""
        out = ProjectFiles()
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
            here = Path(dirpath)
            in_decks = "decks" in here.relative_to(self.folder).parts
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                p = here / name
                suffix = p.suffix.lower()
                if suffix == RULE_SUFFIX:
                    out.rules.append(p)
                elif suffix == ".csv" and in_decks:
                    out.decks.append(p)
                elif suffix == ".csv" and name.lower().startswith("inventory"):
                    out.inventory.append(p)
                elif suffix in TRAFFIC_SUFFIXES:
                    out.traffic.append(p)
        return out

    def shown(self, path: Path) -> str:
        """A path as the analyst reads it: relative to the project, or ``stdlib/...``."""
        path = path.resolve()
        for base, prefix in ((self.folder, ""), (loader.stdlib_dir().resolve(), "stdlib/")):
            try:
                return prefix + path.relative_to(base).as_posix()
            except ValueError:
                continue
        return str(path)

    @staticmethod
    def resolve(display: str) -> Path:
        """The real path of a display path found in a span."""
        return (Path.cwd() / display).resolve()

    def location(self, span: Span, real_paths: Mapping[str, Path] | None = None) -> Location | None:
        if not span.line or span.file.startswith("<"):
            return None
        path = (real_paths or {}).get(span.file) or self.resolve(span.file)
        return Location(path, span.line, max(1, span.col), span.end_line, span.end_col)

    # ------------------------------------------------------------------ analysis
    def analyse(self, overlay: Mapping[Path, str] | None = None, generation: int = 0) -> Analysis:
        """Load, check and compile the folder, open buffers replacing their files."""
        started = time.perf_counter()
        program, diags = load_with_overlay(self.folder, overlay or {})
        plan = None
        if not any(d.is_error for d in diags):
            checked, more = check(program)
            diags = diags + more
            if not any(d.is_error for d in diags):
                plan = compile_checked(checked)
        real = dict(program.real_paths)
        problems = tuple(
            Problem(d, self.shown(real.get(d.span.file) or self.resolve(d.span.file)), self.location(d.span, real))
            for d in sorted(diags, key=root_cause_key)
        )
        blocks: tuple[PlanBlock, ...] = ()
        spans: tuple[tuple[Path, int, int], ...] = ()
        if plan is not None:
            spans = tuple(
                (real.get(a.span.file) or self.resolve(a.span.file), a.span.line, a.span.end_line)
                for a in plan.agreements
            )
            blocks = self.plan_blocks(plan, real)
        return Analysis(generation, problems, plan, blocks, time.perf_counter() - started, spans)

    def plan_blocks(self, plan: Plan, real_paths: Mapping[str, Path]) -> tuple[PlanBlock, ...]:
        """``render_plan`` cut into paragraphs, paths shown relative to the project."""
        text = self._short_paths(render_plan(plan))
        agreement_at = {(a.span.line, self.shown(real_paths.get(a.span.file) or self.resolve(a.span.file))): i
                        for i, a in enumerate(plan.agreements)}
        out = []
        for para in text.strip("\n").split("\n\n"):
            first = para.split("\n", 1)[0]
            loc = None
            index = None
            m = _TAG.search(first)
            if m:
                shown, line, col = m.group(1), int(m.group(2)), int(m.group(3))
                loc = Location(self._unshow(shown), line, col)
                if first.startswith("Agreement "):
                    index = agreement_at.get((line, shown))
            out.append(PlanBlock(para, loc, index))
        return tuple(out)

    def _short_paths(self, text: str) -> str:
        prefixes = []
        for base, short in ((loader.stdlib_dir(), "stdlib/"), (self.folder, "")):
            shown = loader.display_path(base)
            if shown != ".":
                prefixes.append((shown.rstrip("/") + "/", short))
        for prefix, short in sorted(prefixes, key=lambda x: -len(x[0])):
            text = text.replace(prefix, short)
        return text

    def _unshow(self, shown: str) -> Path:
        if shown.startswith("stdlib/"):
            return loader.stdlib_dir().resolve() / shown.removeprefix("stdlib/")
        p = Path(shown)
        return p if p.is_absolute() else self.folder / p


def root_cause_key(d: Diagnostic) -> tuple:
    """Problems in the order to fix them, root causes first.

    An error in a rule file (an unknown calendar) makes the decks and files that depend on it
    fail too (a deck's banded prices then have "no calendar"): those follow-on errors sort
    after it, whatever the file names. Order: errors before warnings; syntax and input errors
    (E0xx, anywhere: nothing after them is reliable); then errors in rule files before errors
    reported in other files (decks, inventory); then by phase (names E1xx, values E2xx,
    consistency E3xx, files E4xx); then in source order."""
    code = d.code or ""
    syntax = code.startswith("E0")
    in_rules = d.span.file.endswith(RULE_SUFFIX) or d.span.file.startswith("<")
    return (not d.is_error, not syntax, not in_rules, code[:2], *d.sort_key())


_TAG = re.compile(r"\[([^\[\]]+):(\d+):(\d+)\]\s*$")


def load_with_overlay(folder: Path, overlay: Mapping[Path, str]) -> tuple[loader.Program, list[Diagnostic]]:
    """``icdsl.lang.loader.load([folder], root=folder)`` with unsaved buffers in place of their
    files, so that diagnostics and display paths are the ones ``icdsl check`` gives once saved."""
    return loader.load([folder], root=folder, overlay=dict(overlay))


MAX_EDIT_BYTES = 20_000_000


def read_text(path: Path) -> tuple[str | None, str | None]:
    """A file's text for the editor, or (None, why not)."""
    try:
        size = path.stat().st_size
        if size > MAX_EDIT_BYTES:
            return None, f"{path.name} is too large to edit here ({size / 1e6:.0f} MB)"
        data = path.read_bytes()
    except OSError as e:
        return None, f"cannot read {path.name}: {e.strerror or e}"
    text, diags = decode(data, path.name)
    if text is None:
        return None, diags[0].message
    return text, None
