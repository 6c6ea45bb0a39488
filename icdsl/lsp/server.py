"""``icdsl lsp``: the Language Server Protocol face (pygls), over stdio.

Every edit re-analyses the project (:mod:`icdsl.lsp.analysis`: the CLI's loader, checker and
compiler, with the editor's unsaved texts) after a short pause in typing, and publishes each
file's diagnostics; the other requests read the latest analysis (:mod:`icdsl.lsp.features`).
The server works in the project folder, so that the paths in its messages are those that
``icdsl check`` prints when run there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from icdsl import __version__
from icdsl.lang.decks import keep_decks
from icdsl.lang.diagnostics import Diagnostic
from icdsl.lang.formatter import format_text
from icdsl.lsp import features
from icdsl.lsp.analysis import Analysis, analyse, project_root, related_locations
from icdsl.spans import Span

log = logging.getLogger("icdsl.lsp")
DEBOUNCE_S = 0.05  # a pause in typing before the project is checked again
KEPT_DECKS = 16

SYMBOL_KINDS = {
    "partner": lsp.SymbolKind.Object, "company": lsp.SymbolKind.Object, "agreement": lsp.SymbolKind.Class,
    "service": lsp.SymbolKind.Method, "calendar": lsp.SymbolKind.Enum, "template": lsp.SymbolKind.Interface,
    "example": lsp.SymbolKind.Event, "zone": lsp.SymbolKind.Namespace, "records layout": lsp.SymbolKind.Struct,
    "invoice layout": lsp.SymbolKind.Struct,
}
COMPLETION_KINDS = {"keyword": lsp.CompletionItemKind.Keyword, "name": lsp.CompletionItemKind.Reference,
                    "unit": lsp.CompletionItemKind.Unit, "value": lsp.CompletionItemKind.Value,
                    "field": lsp.CompletionItemKind.Field}


def _utf16(line_text: str, col: int) -> int:
    """The UTF-16 offset of a 1-based character column (LSP counts UTF-16 units)."""
    prefix = line_text[:max(col - 1, 0)]
    return len(prefix) + sum(1 for c in prefix if ord(c) > 0xFFFF)


def _from_utf16(line_text: str, units: int) -> int:
    """The 1-based character column of a UTF-16 offset."""
    n = 0
    for i, c in enumerate(line_text):
        if n >= units:
            return i + 1
        n += 2 if ord(c) > 0xFFFF else 1
    return len(line_text) + 1


class IcdslServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("icdsl", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.root: Path | None = None
        self.analysis: Analysis | None = None
        self.published: set[str] = set()
        self._pending: asyncio.Task | None = None
        self.timings: list[tuple[float, float]] = []  # (wall, CPU) seconds per analysis, for `icdsl.stats`

    # ---------------------------------------------------------------- the project

    def set_root(self, root: Path) -> None:
        self.root = root.resolve()
        os.chdir(self.root)  # messages show paths relative to the project, as `icdsl check` run there

    def overlay(self) -> dict[Path, str]:
        out = {}
        for uri, doc in self.workspace.text_documents.items():
            path = to_fs_path(uri)
            if path and path.endswith(".icd"):
                out[Path(path)] = doc.source
        return out

    def analyse_now(self) -> Analysis:
        assert self.root is not None
        started, cpu = time.perf_counter(), time.process_time()
        try:
            self.analysis = analyse(self.root, self.overlay())
        finally:
            self.timings.append((time.perf_counter() - started, time.process_time() - cpu))
        self.publish()
        return self.analysis

    def schedule(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        self._pending = asyncio.ensure_future(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(DEBOUNCE_S)
        try:
            self.analyse_now()
        except Exception:  # noqa: BLE001 - a bug must not end the editor's session: log it
            log.exception("icdsl: the analysis failed")

    # ---------------------------------------------------------------- positions

    def lines_of(self, shown: str) -> list[str]:
        a = self.analysis
        if a is not None and shown in a.program.texts:
            return a.program.texts[shown].splitlines()
        try:
            return Path(shown).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def position(self, shown: str, line: int, col: int) -> lsp.Position:
        if line <= 0:
            return lsp.Position(0, 0)
        lines = self.lines_of(shown)
        text = lines[line - 1] if line <= len(lines) else ""
        return lsp.Position(line - 1, _utf16(text, col))

    def range(self, shown: str, span: Span) -> lsp.Range:
        start = self.position(shown, span.line, span.col)
        end = self.position(shown, span.end_line, span.end_col) if span.end_line else start
        return lsp.Range(start, end if (end.line, end.character) >= (start.line, start.character) else start)

    def shown_of_uri(self, uri: str) -> str | None:
        path = to_fs_path(uri)
        if path is None:
            return None
        return os.path.relpath(path)

    def at(self, uri: str, pos: lsp.Position) -> tuple[str, int, int] | None:
        shown = self.shown_of_uri(uri)
        if shown is None:
            return None
        lines = self.workspace.get_text_document(uri).lines
        text = lines[pos.line] if pos.line < len(lines) else ""
        return shown, pos.line + 1, _from_utf16(text.rstrip("\r\n"), pos.character)

    def uri(self, path: Path | str) -> str:
        return from_fs_path(str(Path(path).resolve()))

    # ---------------------------------------------------------------- diagnostics

    def to_lsp(self, d: Diagnostic) -> lsp.Diagnostic:
        related = [lsp.DiagnosticRelatedInformation(
            lsp.Location(self.uri(f), self.range(f, Span(f, line, col, line, col + 1))), "see here")
            for f, line, col in related_locations(d) if Path(f).exists()]
        message = d.message + (f"\nhelp: {d.help}" if d.help else "")
        return lsp.Diagnostic(
            range=self.range(d.span.file, d.span), message=message, code=d.code, source="icdsl",
            severity=lsp.DiagnosticSeverity.Error if d.is_error else lsp.DiagnosticSeverity.Warning,
            related_information=related or None, data={"help": d.help})

    def publish(self) -> None:
        a = self.analysis
        if a is None:
            return
        by_file: dict[str, list[lsp.Diagnostic]] = {}
        for d in sorted(a.diagnostics, key=Diagnostic.sort_key):
            if d.span.file.startswith("<"):
                continue
            by_file.setdefault(self.uri(d.span.file), []).append(self.to_lsp(d))
        for shown in a.program.real_paths:
            by_file.setdefault(self.uri(a.path_of(shown)), [])
        for uri in self.published - set(by_file):
            by_file[uri] = []
        for uri, diags in by_file.items():
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diags))
        self.published = {u for u, ds in by_file.items() if ds}


server = IcdslServer()


@server.feature(lsp.INITIALIZE)
def _initialize(ls: IcdslServer, params: lsp.InitializeParams) -> None:
    folder = None
    if params.workspace_folders:
        folder = to_fs_path(params.workspace_folders[0].uri)
    elif params.root_uri:
        folder = to_fs_path(params.root_uri)
    elif params.root_path:
        folder = params.root_path
    if folder:
        ls.set_root(Path(folder))
    keep_decks(KEPT_DECKS)


@server.feature(lsp.INITIALIZED)
async def _initialized(ls: IcdslServer, params: lsp.InitializedParams) -> None:
    """Ask the editor to say when rule files or decks change on disk (a deck edited elsewhere, a
    file added), when it can: diagnostics then follow without an edit of a rule file."""
    workspace = ls.client_capabilities.workspace
    watched = workspace.did_change_watched_files if workspace is not None else None
    if watched is None or not watched.dynamic_registration:
        return
    options = lsp.DidChangeWatchedFilesRegistrationOptions(
        watchers=[lsp.FileSystemWatcher(glob_pattern=g) for g in ("**/*.icd", "**/*.csv", "**/*.tsv")])
    await ls.client_register_capability_async(lsp.RegistrationParams(
        [lsp.Registration("icdsl-files", lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES, options)]))


@server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def _watched(ls: IcdslServer, params: lsp.DidChangeWatchedFilesParams) -> None:
    if ls.root is not None:
        ls.schedule()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def _did_open(ls: IcdslServer, params: lsp.DidOpenTextDocumentParams) -> None:
    path = Path(to_fs_path(params.text_document.uri) or ".")
    if ls.root is None:
        ls.set_root(project_root(path, None))
    if ls.analysis is None:
        ls.analyse_now()  # the first answer at once
    else:
        ls.schedule()


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def _did_change(ls: IcdslServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.schedule()


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def _did_save(ls: IcdslServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.schedule()


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def _did_close(ls: IcdslServer, params: lsp.DidCloseTextDocumentParams) -> None:
    ls.schedule()  # the file's text on disk counts again


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def _hover(ls: IcdslServer, params: lsp.HoverParams) -> lsp.Hover | None:
    where = ls.at(params.text_document.uri, params.position)
    if where is None or ls.analysis is None:
        return None
    found = features.hover(ls.analysis, *where)
    if found is None:
        return None
    text, span = found
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text), ls.range(where[0], span))


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def _definition(ls: IcdslServer, params: lsp.DefinitionParams) -> list[lsp.Location]:
    where = ls.at(params.text_document.uri, params.position)
    if where is None or ls.analysis is None:
        return []
    out = []
    for path, span in features.definitions(ls.analysis, *where):
        shown = os.path.relpath(path)
        rng = ls.range(shown, span) if span is not None else lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
        out.append(lsp.Location(ls.uri(path), rng))
    return out


@server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
def _references(ls: IcdslServer, params: lsp.ReferenceParams) -> list[lsp.Location]:
    where = ls.at(params.text_document.uri, params.position)
    if where is None or ls.analysis is None:
        return []
    return [lsp.Location(ls.uri(path), ls.range(os.path.relpath(path), span))
            for path, span in features.references(ls.analysis, *where, params.context.include_declaration)]


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                lsp.CompletionOptions(trigger_characters=['"', " "]))
def _completion(ls: IcdslServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    where = ls.at(params.text_document.uri, params.position)
    if where is None:
        return lsp.CompletionList(is_incomplete=False, items=[])
    text = ls.workspace.get_text_document(params.text_document.uri).source
    items = [lsp.CompletionItem(label, kind=COMPLETION_KINDS.get(kind), detail=detail)
             for label, kind, detail in features.completions(ls.analysis, where[0], text, where[1], where[2])]
    return lsp.CompletionList(is_incomplete=False, items=items)


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def _symbols(ls: IcdslServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    shown = ls.shown_of_uri(params.text_document.uri)
    if shown is None or ls.analysis is None:
        return []

    def convert(s: features.DocSymbol) -> lsp.DocumentSymbol:
        return lsp.DocumentSymbol(name=s.name, kind=SYMBOL_KINDS.get(s.kind, lsp.SymbolKind.Variable),
                                  range=ls.range(shown, s.span), selection_range=ls.range(shown, s.selection),
                                  detail=s.kind, children=[convert(c) for c in s.children] or None)

    return [convert(s) for s in features.document_symbols(ls.analysis, shown)]


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def _formatting(ls: IcdslServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    shown = ls.shown_of_uri(params.text_document.uri) or "<text>"
    new, diags = format_text(doc.source, shown)
    if new is None or diags or new == doc.source:
        return []  # text with syntax errors is left alone: the diagnostics say why
    lines = doc.source.split("\n")
    end = lsp.Position(len(lines) - 1, _utf16(lines[-1], len(lines[-1]) + 1))
    return [lsp.TextEdit(lsp.Range(lsp.Position(0, 0), end), new)]


@server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
def _code_actions(ls: IcdslServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    shown = ls.shown_of_uri(params.text_document.uri)
    if shown is None or ls.analysis is None:
        return []
    text = ls.workspace.get_text_document(params.text_document.uri).source
    out = []
    for d in ls.analysis.diagnostics:
        if d.span.file != shown:
            continue
        fix = features.suggested_fix(d, text)
        if fix is None:
            continue
        rng = ls.range(shown, fix[0])
        want = params.range
        if (rng.end.line, rng.end.character) < (want.start.line, want.start.character) or \
                (rng.start.line, rng.start.character) > (want.end.line, want.end.character):
            continue
        out.append(lsp.CodeAction(
            title=f"Change to '{fix[1].strip(chr(34))}'", kind=lsp.CodeActionKind.QuickFix,
            diagnostics=[ls.to_lsp(d)], is_preferred=True,
            edit=lsp.WorkspaceEdit(changes={params.text_document.uri: [lsp.TextEdit(rng, fix[1])]})))
    return out


@server.command("icdsl.stats")
def _stats(ls: IcdslServer, *args) -> dict:
    """How long the analyses took, (wall, CPU) seconds each, the latest last: what the benchmark
    (tests/benchmarks/startup.py) reports."""
    return {"analyses": [list(t) for t in ls.timings]}


def run() -> None:
    server.start_io()
