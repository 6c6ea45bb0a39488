"""A project as the editor sees it: the rule files on disk with the editor's unsaved texts over
them, loaded, checked and compiled by the same functions as ``icdsl check`` (the loader, the
checker, the compiler), and an index of the names it declares and where each is used.

One :class:`Analysis` per edit: it is plain data that the server's features read (hover,
completion, definitions, references, symbols). Decks are kept between edits by content
(:func:`icdsl.lang.decks.keep_decks`): an edit re-parses and re-checks the rule files, never
re-reads an unchanged 50,000-row deck.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdsl.errors import ChargeError
from icdsl.lang import ast
from icdsl.lang.checker import Checked, check
from icdsl.lang.diagnostics import Diagnostic
from icdsl.lang.loader import Program, load
from icdsl.plan.compiler import compile_checked
from icdsl.spans import NO_SPAN, Span

# the declarations that give a name, and what to call what they name
DECLARES: dict[type, tuple[str, str]] = {
    ast.PartnerDecl: ("code", "partner"),
    ast.CompanyDecl: ("code", "company"),
    ast.CalendarDecl: ("name", "calendar"),
    ast.FxDecl: ("name", "fx rates"),
    ast.ZoneDecl: ("name", "zone"),
    ast.NumbersDecl: ("name", "number-range table"),
    ast.TemplateDecl: ("name", "template"),
    ast.RecordsDecl: ("name", "records layout"),
    ast.InvoiceLayoutDecl: ("name", "invoice layout"),
    ast.RoundingPreset: ("name", "rounding preset"),
    ast.LcrDecl: ("name", "lcr policy"),
}


@dataclass(frozen=True)
class Symbol:
    name: str
    kind: str
    file: str  # display path
    span: Span  # the name's span
    node: Any  # the declaration


@dataclass
class Index:
    """Names declared (by name) and every identifier written (by file), with spans."""

    definitions: dict[str, list[Symbol]] = field(default_factory=dict)
    idents: dict[str, list[ast.Ident]] = field(default_factory=dict)  # file -> identifiers in it
    decks: dict[str, list[tuple[ast.Str, Any]]] = field(default_factory=dict)  # file -> (deck path, price node)
    uses: dict[str, list[ast.Use]] = field(default_factory=dict)
    rows: dict[str, list[ast.RateRowNode]] = field(default_factory=dict)
    charges: dict[str, list[ast.ChargeNode]] = field(default_factory=dict)
    units: dict[str, list[ast.Ident]] = field(default_factory=dict)

    def references(self, name: str) -> list[tuple[str, Span]]:
        defined = {(s.file, s.span) for s in self.definitions.get(name, [])}
        return [(f, i.span) for f, ids in self.idents.items() for i in ids
                if i.text == name and (f, i.span) not in defined]


def _children(node: Any):
    if isinstance(node, (list, tuple)):
        for x in node:
            yield from _children(x)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        yield node


def _walk(node: Any, file: str, index: Index) -> None:
    kind = DECLARES.get(type(node))
    if kind is not None:
        name = getattr(node, kind[0])
        if isinstance(name, ast.Ident):
            index.definitions.setdefault(name.text, []).append(Symbol(name.text, kind[1], file, name.span, node))
    if isinstance(node, ast.Ident):
        index.idents.setdefault(file, []).append(node)
        return
    if isinstance(node, ast.DestinationPrice) and node.deck is not None:
        index.decks.setdefault(file, []).append((node.deck, node))
    elif isinstance(node, ast.Use):
        index.uses.setdefault(file, []).append(node)
    elif isinstance(node, ast.RateRowNode):
        index.rows.setdefault(file, []).append(node)
        return
    elif isinstance(node, ast.ChargeNode):
        index.charges.setdefault(file, []).append(node)
    elif isinstance(node, (ast.Quantity, ast.MoneyPer, ast.SlotNode, ast.LcrMeasure)) and getattr(node, "unit", None):
        index.units.setdefault(file, []).append(node.unit)
    for f in dataclasses.fields(node):
        for child in _children(getattr(node, f.name)):
            _walk(child, file, index)


def build_index(program: Program) -> Index:
    index = Index()
    for f in program.files:
        for item in [*f.uses, *f.items]:
            _walk(item, f.path, index)
    return index


@dataclass
class Analysis:
    """One check of the project: its program, what the checker found, the diagnostics (the same
    as ``icdsl check --format json`` gives for these texts) and the index."""

    root: Path
    program: Program
    diagnostics: list[Diagnostic]
    checked: Checked | None
    plan: Any
    index: Index

    def path_of(self, shown: str) -> Path:
        real = self.program.real_paths.get(shown)
        return real if real is not None else (self.root / shown).resolve()

    def shown_of(self, path: Path) -> str | None:
        real = path.resolve()
        return next((s for s, p in self.program.real_paths.items() if p == real), None)

    def text_of(self, shown: str) -> str:
        return self.program.texts.get(shown, "")


def analyse(root: Path, overlay: dict[Path, str] | None = None, pm: Any = None) -> Analysis:
    """Load (with the editor's texts over the files), check and compile, as ``icdsl check``
    does, stopping where it stops: a phase with errors ends the build."""
    program, diags = load([root], root, overlay=overlay)
    checked = plan = None
    if not any(d.is_error for d in diags):
        checked, more = check(program, pm=pm)
        diags = diags + more
        if not any(d.is_error for d in diags):
            try:
                plan = compile_checked(checked)
            except ChargeError as exc:  # as icdsl.plan.compiler.build reports it
                diags = diags + [Diagnostic(
                    "E122", str(exc), exc.span if exc.span is not None else NO_SPAN,
                    "the rule passed the checks but its charge type could not compile it")]
    return Analysis(root, program, diags, checked, plan, build_index(program))


_LOCATION = re.compile(r"((?:[\w.\-]+[/\\])*[\w.\-]+\.(?:icd|csv)):(\d+):(\d+)")


def related_locations(diag: Diagnostic) -> list[tuple[str, int, int]]:
    """The places a diagnostic's message or help names ("the first is at partners.icd:31:1")."""
    text = f"{diag.message} {diag.help or ''}"
    return [(m.group(1), int(m.group(2)), int(m.group(3))) for m in _LOCATION.finditer(text)]


def project_root(path: Path, workspace: Path | None) -> Path:
    """The folder to check: the workspace folder when the file is inside it, else the file's."""
    if workspace is not None:
        try:
            path.resolve().relative_to(workspace.resolve())
            return workspace.resolve()
        except ValueError:
            pass
    return path.resolve().parent


def relative_to_cwd(shown: str) -> Path:
    return Path(os.path.abspath(shown))
