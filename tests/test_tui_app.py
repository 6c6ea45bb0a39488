"""The analyst's terminal, driven by Textual's Pilot on a copy of examples/tutorial.

pytest-asyncio is not a dependency: each test runs its scenario with ``asyncio.run``.
"""

import asyncio
import io
import shutil

import pytest
from helpers import ROOT, wait_for
from rich.console import Console
from textual.command import CommandList
from textual.widgets import OptionList

from icdsl.tui.app import IcdslApp
from icdsl.tui.components.explanation import ExplanationView
from icdsl.tui.components.file_tree import FileTree
from icdsl.tui.components.help_screen import HelpScreen
from icdsl.tui.components.plan_view import PlanView
from icdsl.tui.components.problems import ProblemsList
from icdsl.tui.components.rule_editor import PROBLEM_ERROR, RuleEditor

SIZE = (80, 24)


@pytest.fixture
def tutorial(tmp_path):
    shutil.copytree(ROOT / "examples" / "tutorial", tmp_path / "tutorial")
    return tmp_path / "tutorial"


def run(app: IcdslApp, scenario, size=SIZE) -> None:
    async def main():
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: app.analysis is not None)
            await scenario(pilot)

    asyncio.run(main())


def plain(renderable, width: int = 400) -> str:
    """The text of a Rich renderable (an option's prompt), lines without trailing spaces."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().rstrip("\n").split("\n"))


def option_texts(widget: OptionList) -> list[str]:
    return [plain(widget.get_option_at_index(i).prompt) for i in range(widget.option_count)]


def editor_of(app: IcdslApp) -> RuleEditor:
    editor = app.workspace.editor
    assert editor is not None
    return editor


async def type_at(pilot, editor: RuleEditor, line: int, col: int, text: str) -> None:
    editor.focus()  # deferred: the keys must not reach the widget focused before
    await wait_for(pilot, lambda: pilot.app.focused is editor)
    editor.move_cursor((line - 1, col - 1))
    await pilot.press(*["enter" if c == "\n" else c for c in text])


# ---------------------------------------------------------------- workspace
# Each test is one scenario of related steps: a Textual app costs ~1 s to start here.


def test_the_tree_lists_the_files_and_opening_one_shows_it_highlighted(tutorial):
    app = IcdslApp(tutorial)

    async def scenario(pilot):
        tree = app.workspace.query_one(FileTree)
        leaves = [str(n.label) for group in tree.root.children for n in group.children]
        assert leaves == ["acme.icd", "decks/acme-a-z.csv", "traffic.csv"]
        # the first rule file is open, highlighted by the lexer, and checks clean
        editor = editor_of(app)
        assert editor.path == tutorial / "acme.icd"
        assert editor.text == (tutorial / "acme.icd").read_text()
        assert (0, 3, "keyword") in editor._highlights[0]  # use
        assert (8, 12, "type") in editor._highlights[2]  # partner ACME
        assert app.analysis.problems == ()
        assert option_texts(app.workspace.query_one(ProblemsList)) == ["No problems: the rules check."]

        # the editor took the focus when the file opened (at once, or after its first refresh)
        await wait_for(pilot, lambda: app.focused is editor)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: app.focused is tree)
        deck = next(n for g in tree.root.children for n in g.children if str(n.label) == "decks/acme-a-z.csv")
        tree.move_cursor(deck)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.workspace.current == tutorial / "decks" / "acme-a-z.csv")
        assert editor_of(app).text.startswith("prefix,destination,")
        await wait_for(pilot, lambda: app.focused is editor_of(app))

        assert editor_of(app).theme == "icdsl-dark"
        app.theme = "textual-light"  # the editor's colours follow the app's theme
        await wait_for(pilot, lambda: editor_of(app).theme == "icdsl-light")

    run(app, scenario)


def test_typing_an_error_shows_the_problem_live_and_selecting_it_moves_the_cursor(tutorial):
    app = IcdslApp(tutorial)
    saved = (tutorial / "acme.icd").read_text()

    async def scenario(pilot):
        editor = editor_of(app)
        await type_at(pilot, editor, 5, 15, "O")  # currency EUR -> EURO
        assert "currency EURO" in editor.text
        await wait_for(pilot, lambda: app.analysis.errors > 0)  # debounce + check
        problems = app.workspace.query_one(ProblemsList)
        texts = option_texts(problems)
        assert texts[0].startswith("E202 acme.icd:5:12 'EURO' is not a currency code")
        assert "= help: did you mean 'EUR'?" in texts[0]
        assert editor._problem_lines[4] == "error"  # gutter mark
        assert any(name == PROBLEM_ERROR for _, _, name in editor._highlights[4])  # the span
        assert (tutorial / "acme.icd").read_text() == saved  # checked from the buffer, not saved

        editor.move_cursor((0, 0))
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: app.focused is problems)
        problems.highlighted = 0
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.focused is editor and editor.cursor_location == (4, 11))

        editor.move_cursor((0, 0))
        await pilot.press("f8")  # next problem
        await wait_for(pilot, lambda: editor.cursor_location == (4, 11))

        await pilot.press("ctrl+z")  # undo: the problem goes away
        await wait_for(pilot, lambda: app.analysis.errors == 0)
        assert editor._problem_lines == {}

    run(app, scenario)


def test_saving_writes_the_file_and_quitting_unsaved_asks_again(tutorial):
    app = IcdslApp(tutorial)

    async def scenario(pilot):
        editor = editor_of(app)
        box = app.workspace.query_one("#ws-editors")
        await type_at(pilot, editor, 1, 1, "# hello\n")
        assert editor.modified and "●" in str(box.border_title)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not editor.modified and str(box.border_title) == "acme.icd")
        assert (tutorial / "acme.icd").read_text().startswith("# hello\nuse stdlib.calendars")

        await pilot.press("x")
        await wait_for(pilot, lambda: editor.modified)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.is_running  # unsaved: asks again
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running)

    run(app, scenario)


# ---------------------------------------------------------------- plan and explain


def test_the_plan_marks_the_agreement_under_the_cursor_and_goes_stale_on_errors(tutorial):
    app = IcdslApp(tutorial)

    async def scenario(pilot):
        editor_of(app).move_cursor((17, 4))  # inside the agreement
        await pilot.press("f3")
        await wait_for(pilot, lambda: app.current_mode == "plan")
        view = app.screen.query_one(PlanView)
        texts = option_texts(view)
        assert texts[0].startswith("  Plan: 1 partner, 1 agreement, 1 example, from 2 files")
        assert texts[view.highlighted].startswith('▶ Agreement "Acme voice" v1 with ACME')
        await pilot.press("f")  # only this agreement
        await wait_for(pilot, lambda: view.option_count == 1)
        assert [t.split("\n")[0] for t in option_texts(view)] == [
            '▶ Agreement "Acme voice" v1 with ACME, 2026-01-01 .. open [acme.icd:13:1]']
        view.focus()
        view.highlighted = 0
        await pilot.press("enter")  # show its rule
        await wait_for(pilot, lambda: app.current_mode == "workspace" and editor_of(app).cursor_location == (12, 0))

        await type_at(pilot, editor_of(app), 5, 15, "O")
        await wait_for(pilot, lambda: app.analysis.errors > 0)
        await pilot.press("f3")
        await wait_for(pilot, lambda: app.current_mode == "plan" and "Showing the last plan that compiled"
                       in str(app.screen.query_one("#plan-status").render()))
        assert view.option_count > 0

    run(app, scenario)


def test_picking_a_record_explains_its_rating_and_steps_open_their_rules(tutorial):
    app = IcdslApp(tutorial)

    async def scenario(pilot):
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.current_mode == "explain")
        view = app.screen.query_one(ExplanationView)
        await wait_for(pilot, lambda: view.explanation is not None)
        texts = option_texts(view)
        assert texts[-1] == "=> 0.012100 EUR"
        assert any("longest prefix 336 (France mobile)" in t for t in texts)
        assert str(app.screen.query_one("#ex-steps").border_subtitle) == "=> 0.012100 EUR"

        await pilot.press("down")  # the second record
        await wait_for(pilot, lambda: view.explanation is not None and view.explanation.row == 3)
        assert option_texts(view)[-1] == "=> 0.097000 EUR"

        # a step decided by a deck row: its line in the deck
        step = next(i for i, s in enumerate(view.explanation.steps) if s.where.startswith("decks/"))
        view.focus()
        view.highlighted = step
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "workspace"
                       and app.workspace.current == tutorial / "decks" / "acme-a-z.csv")
        await wait_for(pilot, lambda: editor_of(app).cursor_location[0] == 9)  # line 10 of the deck

        # back to the records: "o" opens the record's own line in the traffic file
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.current_mode == "explain")
        await pilot.press("f4", "down")  # f4 again: the records; the third one
        await wait_for(pilot, lambda: view.explanation is not None and view.explanation.row == 4)
        await pilot.press("o")
        await wait_for(pilot, lambda: app.current_mode == "workspace" and app.workspace.current == tutorial / "traffic.csv")
        await wait_for(pilot, lambda: editor_of(app).cursor_location[0] == 3)

    run(app, scenario)


# ---------------------------------------------------------------- keys, help, palette


def test_keys_are_remappable_help_lists_them_and_the_palette_opens_files(tutorial):
    app = IcdslApp(tutorial, keymap={"icdsl.help": "f12", "icdsl.screen.plan": "f11"})

    async def scenario(pilot):
        await pilot.press("f1")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f12")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "f12" in plain(app.screen.table)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("f11")
        await wait_for(pilot, lambda: app.current_mode == "plan")

        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: bool(app.screen.query(CommandList)))
        await pilot.press(*"open traffic")
        commands = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: commands.option_count > 0)
        assert plain(commands.get_option_at_index(0).prompt).startswith("Open traffic.csv")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.workspace.current == tutorial / "traffic.csv")
        assert app.current_mode == "workspace"

    run(app, scenario)
