"""``icdsl lsp`` driven by a real LSP client over stdio (pygls's): open, edit, hover, complete,
go to definition, find references, format, fix a "did you mean", outline; diagnostics the same
as ``icdsl check --format json`` for the same text. One server for the module (fast)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path
from typer.testing import CliRunner

from icdsl.cli.main import app
from icdsl.lang.formatter import format_text

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "interconnect"
TIMEOUT = 60


class Session:
    """A client connected to an ``icdsl lsp`` process, with the diagnostics it was sent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.client = LanguageClient("icdsl-tests", "1")
        self.diagnostics: dict[str, list[lsp.Diagnostic]] = {}
        self.versions = 0
        self._changed = asyncio.Event()

        @self.client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diags(ls, params: lsp.PublishDiagnosticsParams) -> None:
            self.diagnostics[params.uri] = list(params.diagnostics)
            self._changed.set()

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))

    def uri(self, name: str) -> str:
        return from_fs_path(str(self.root / name))

    def start(self) -> None:
        async def go():
            self._changed = asyncio.Event()
            await self.client.start_io(sys.executable, "-m", "icdsl.cli.main", "lsp", cwd="/")
            await self.client.initialize_async(lsp.InitializeParams(
                capabilities=lsp.ClientCapabilities(), root_uri=from_fs_path(str(self.root)),
                workspace_folders=[lsp.WorkspaceFolder(from_fs_path(str(self.root)), "project")]))
            self.client.initialized(lsp.InitializedParams())

        self.run(go())

    def stop(self) -> None:
        async def go():
            await self.client.shutdown_async(None)
            self.client.exit(None)
            await self.client.stop()

        self.run(go())
        self.loop.close()

    def wait_for(self, name: str, predicate=lambda ds: True) -> list[lsp.Diagnostic]:
        """The diagnostics of a file once they satisfy ``predicate``."""

        async def go():
            while True:
                ds = self.diagnostics.get(self.uri(name))
                if ds is not None and predicate(ds):
                    return ds
                self._changed.clear()
                await self._changed.wait()

        return self.run(go())

    def open(self, name: str, text: str | None = None) -> None:
        text = (self.root / name).read_text(encoding="utf-8") if text is None else text
        self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(self.uri(name), "icdsl", 1, text)))

    def replace(self, name: str, text: str) -> None:
        """The whole text changed (as an editor sends a paste)."""
        self.versions += 1
        self.diagnostics.pop(self.uri(name), None)
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=self.uri(name), version=1 + self.versions),
            [lsp.TextDocumentContentChangeWholeDocument(text)]))

    def doc(self, name: str) -> lsp.TextDocumentIdentifier:
        return lsp.TextDocumentIdentifier(self.uri(name))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("lsp") / "interconnect"
    shutil.copytree(EXAMPLE, root)
    s = Session(root)
    s.start()
    s.open("lumiere.icd")
    yield s
    s.stop()


def _at(text: str, needle: str, line_has: str, offset: int = 0) -> lsp.Position:
    for i, line in enumerate(text.splitlines()):
        if line_has in line and needle in line:
            return lsp.Position(i, line.index(needle) + offset)
    raise AssertionError(f"{needle!r} not found")


def _check_json(root: Path) -> list[dict]:
    import os

    here = os.getcwd()
    os.chdir(root)
    try:
        r = CliRunner().invoke(app, ["check", ".", "--format", "json"])
    finally:
        os.chdir(here)
    return json.loads(r.output)


def test_opening_a_clean_file_publishes_no_problems(session):
    assert session.wait_for("lumiere.icd") == []


def test_an_edit_is_diagnosed_as_icdsl_check_does_with_a_fix_for_did_you_mean(session):
    path = session.root / "lumiere.icd"
    good = path.read_text(encoding="utf-8")
    bad = good.replace("  calendar fr_business", "  calendar fr_busines", 1)
    session.replace("lumiere.icd", bad)
    got = session.wait_for("lumiere.icd", lambda ds: len(ds) > 0)
    # the same text on disk, checked by the command line
    path.write_text(bad, encoding="utf-8")
    try:
        expected = [d for d in _check_json(session.root) if d["file"] == "lumiere.icd"]
    finally:
        path.write_text(good, encoding="utf-8")
    assert expected
    mine = [{"severity": "error" if d.severity == lsp.DiagnosticSeverity.Error else "warning", "code": d.code,
             "message": d.message.split("\nhelp: ")[0], "help": d.data["help"],
             "line": d.range.start.line + 1, "column": d.range.start.character + 1,
             "end_line": d.range.end.line + 1, "end_column": d.range.end.character + 1, "file": "lumiere.icd"}
            for d in got]
    assert mine == expected
    first = got[0]
    assert "did you mean 'fr_business'?" in first.message

    actions = session.run(session.client.text_document_code_action_async(lsp.CodeActionParams(
        session.doc("lumiere.icd"), first.range, lsp.CodeActionContext([first]))))
    assert len(actions) == 1
    action = actions[0]
    edit = action.edit.changes[session.uri("lumiere.icd")][0]
    assert edit.new_text == "fr_business" and edit.range == first.range
    assert action.kind == lsp.CodeActionKind.QuickFix

    session.replace("lumiere.icd", good)
    assert session.wait_for("lumiere.icd", lambda ds: True) == []


def test_a_deck_changed_on_disk_is_checked_again_when_the_editor_says_so(session):
    deck = session.root / "decks" / "brookline-europe.csv"
    good = deck.read_text(encoding="utf-8")
    deck.write_text(good + good.splitlines()[1].replace(";", ";x", 1) + "\n", encoding="utf-8")
    changed = [lsp.FileEvent(session.uri("decks/brookline-europe.csv"), lsp.FileChangeType.Changed)]
    try:
        session.diagnostics.pop(session.uri("decks/brookline-europe.csv"), None)
        session.client.workspace_did_change_watched_files(lsp.DidChangeWatchedFilesParams(changed))
        got = session.wait_for("decks/brookline-europe.csv", lambda ds: len(ds) > 0)
        (dup,) = got  # the first row again: a warning, with where the first one is
        assert dup.code == "W302" and dup.severity == lsp.DiagnosticSeverity.Warning
        assert dup.range.start.line == len(good.splitlines())
        (first,) = dup.related_information
        assert first.location.uri == session.uri("decks/brookline-europe.csv")
        assert first.location.range.start == lsp.Position(1, 0)
    finally:
        deck.write_text(good, encoding="utf-8")
    session.client.workspace_did_change_watched_files(lsp.DidChangeWatchedFilesParams(changed))
    assert session.wait_for("decks/brookline-europe.csv", lambda ds: ds == []) == []


def test_hover_says_what_a_name_is_and_where_it_is_defined(session):
    text = (session.root / "lumiere.icd").read_text(encoding="utf-8")
    h = session.run(session.client.text_document_hover_async(lsp.HoverParams(
        session.doc("lumiere.icd"), _at(text, "LUMFR", "agreement", 2))))
    assert "**partner** `LUMFR`, defined at `partners.icd:31:9`" in h.contents.value
    assert 'partner LUMFR "Lumière Télécom SA"' in h.contents.value
    deck = session.run(session.client.text_document_hover_async(lsp.HoverParams(
        session.doc("lumiere.icd"), _at(text, "lumiere-a-z", "from deck"))))
    assert "3,318 rows" in deck.contents.value and "currency EUR" in deck.contents.value


def test_definition_and_references_across_files_and_imports(session):
    text = (session.root / "lumiere.icd").read_text(encoding="utf-8")
    (loc,) = session.run(session.client.text_document_definition_async(lsp.DefinitionParams(
        session.doc("lumiere.icd"), _at(text, "LUMFR", "agreement", 1))))
    assert loc.uri == session.uri("partners.icd") and loc.range.start == lsp.Position(30, 8)
    (cal,) = session.run(session.client.text_document_definition_async(lsp.DefinitionParams(
        session.doc("lumiere.icd"), _at(text, "fr_business", "  calendar", 3))))
    assert cal.uri.endswith("stdlib_rules/calendars.icd")
    (used,) = session.run(session.client.text_document_definition_async(lsp.DefinitionParams(
        session.doc("lumiere.icd"), _at(text, "calendars", "use stdlib"))))
    assert used.uri == cal.uri
    refs = session.run(session.client.text_document_references_async(lsp.ReferenceParams(
        text_document=session.doc("lumiere.icd"), position=_at(text, "LUMFR", "agreement", 1),
        context=lsp.ReferenceContext(include_declaration=True))))
    files = {r.uri.rsplit("/", 1)[1] for r in refs}
    assert {"partners.icd", "lumiere.icd", "routing.icd"} <= files


def test_completion_offers_keywords_names_units_currencies_and_time_zones(session):
    text = (session.root / "lumiere.icd").read_text(encoding="utf-8")
    got = session.run(session.client.text_document_completion_async(lsp.CompletionParams(
        session.doc("lumiere.icd"), _at(text, "calendar", "  calendar fr_business"))))
    labels = {i.label: i.kind for i in got.items}
    assert labels["agreement"] == lsp.CompletionItemKind.Keyword
    assert labels["fr_business"] == lsp.CompletionItemKind.Reference and "BRKGB" in labels
    assert labels["minute"] == lsp.CompletionItemKind.Unit and "EUR" in labels and "GBP" in labels
    partners = (session.root / "partners.icd").read_text(encoding="utf-8")
    session.open("partners.icd", partners)
    zones = session.run(session.client.text_document_completion_async(lsp.CompletionParams(
        session.doc("partners.icd"), _at(partners, "Europe/Paris", "timezone", 3))))
    assert "Europe/Paris" in {i.label for i in zones.items}


def test_formatting_gives_what_icdsl_fmt_writes(session):
    text = (session.root / "fx.icd").read_text(encoding="utf-8")
    messy = text.replace("\n", "\n\n\n", 1).replace("  ", "      ", 1)
    session.open("fx.icd", messy)
    edits = session.run(session.client.text_document_formatting_async(lsp.DocumentFormattingParams(
        session.doc("fx.icd"), lsp.FormattingOptions(2, True))))
    (edit,) = edits
    assert edit.new_text == format_text(messy, "fx.icd")[0]
    assert edit.range.start == lsp.Position(0, 0)


def test_document_symbols_outline_agreements_and_their_services(session):
    syms = session.run(session.client.text_document_document_symbol_async(lsp.DocumentSymbolParams(
        session.doc("lumiere.icd"))))
    names = [s.name for s in syms]
    assert "Lumière bilateral v1" in names and "Lumière bilateral v2" in names
    v1 = syms[names.index("Lumière bilateral v1")]
    assert [c.name for c in v1.children] == ["outbound voice", "inbound voice", "outbound sms", "inbound sms"]


def test_decks_are_kept_by_content_between_checks_and_read_again_when_changed(tmp_path):
    """What keeps an edit fast on a 50,000-row deck (lang.decks.keep_decks), without ever
    answering with an old deck."""
    from icdsl.lang import decks
    from icdsl.lsp.analysis import analyse

    root = tmp_path / "p"
    shutil.copytree(EXAMPLE.parent / "tutorial", root)
    deck_file = root / "decks" / "acme-a-z.csv"

    def deck_of(a):
        (si,) = [s for info in a.checked.agreements for s in info.services.values() if s.deck is not None]
        return si.deck

    decks.keep_decks(4)
    try:
        first = deck_of(analyse(root))
        again = deck_of(analyse(root, {root / "acme.icd": (root / "acme.icd").read_text() + "\n# edited\n"}))
        assert again is first  # not read again
        deck_file.write_text(deck_file.read_text().replace("0.0070", "0.0071", 1))
        changed = deck_of(analyse(root))
        assert changed is not first and changed.sha256 != first.sha256
        deck_file.write_text(deck_file.read_text() + "not,a,valid,row,x,y,z,w\n")
        broken = analyse(root)
        assert any(d.code.startswith("E") for d in broken.diagnostics)
        assert analyse(root).diagnostics == broken.diagnostics  # a deck with problems is never kept
    finally:
        decks.keep_decks(0)


def test_related_locations_and_fixes_are_read_from_the_diagnostic_itself():
    from icdsl.lang.diagnostics import Diagnostic
    from icdsl.lsp.analysis import related_locations
    from icdsl.lsp.features import suggested_fix
    from icdsl.spans import Span

    twice = Diagnostic("E104", "partner 'LUMFR' is declared twice", Span("b.icd", 3, 9, 3, 14),
                       "the first declaration is at partners.icd:31:9; keep one")
    assert related_locations(twice) == [("partners.icd", 31, 9)]
    text = 'use stdlib.calendarz\ncalendar x timezone "Europe/Pariss" {\n'
    word = Diagnostic("E101", "x", Span("a.icd", 1, 5, 1, 21), "did you mean 'stdlib.calendars'?")
    assert suggested_fix(word, text) == (word.span, "stdlib.calendars")
    quoted = Diagnostic("E204", "x", Span("a.icd", 2, 21, 2, 36), "did you mean 'Europe/Paris'?")
    assert suggested_fix(quoted, text) == (quoted.span, '"Europe/Paris"')
    whole_line = Diagnostic("E101", "x", Span("a.icd", 1, 1, 1, 21), "did you mean 'stdlib.calendars'?")
    assert suggested_fix(whole_line, text) is None  # more than a word: no blind replacement
