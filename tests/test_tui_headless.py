"""The terminal's headless half: highlighting from the lexer, checking unsaved buffers, plan
paragraphs, traffic rows and explanations. No Textual app runs here."""

import ast as pyast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from icdsl.tui import highlight as hl
from icdsl.tui.bindings import ACTIONS, bindings, parse_keymap
from icdsl.tui.project import Project
from icdsl.tui.traffic import explain, read_traffic


@pytest.fixture
def tutorial(tmp_path):
    shutil.copytree(ROOT / "examples" / "tutorial", tmp_path / "tutorial")
    return tmp_path / "tutorial"


def spans_of(text: str, line: int = 0) -> list[tuple[str, str]]:
    lines = text.split("\n")
    return [(lines[line][a:b], name) for a, b, name in hl.highlight(text).get(line, [])]


# ---------------------------------------------------------------- highlighting


def test_keywords_names_numbers_strings_dates():
    text = 'agreement "Acme voice" v1 with ACME effective 2026-01-01 .. {\n}\n'
    assert spans_of(text) == [
        ("agreement", hl.KEYWORD), ('"Acme voice"', hl.STRING), ("v1", hl.CONSTANT), ("with", hl.KEYWORD),
        ("ACME", hl.DECLARED), ("effective", hl.KEYWORD), ("2026-01-01", hl.CONSTANT), ("..", hl.OPERATOR),
        ("{", hl.BRACKET),
    ]


def test_a_keyword_used_as_a_name_stays_a_name():
    # 'volume' is a keyword of the grammar ('volume discount') but a band name here: the
    # contextual lexer says NAME, so it is coloured as a name.
    text = 'calendar c timezone UTC {\n  volume mon-fri 08:00-20:00\n  other otherwise\n}\n'
    assert spans_of(text, 1)[0] == ("volume", hl.NAME)
    assert ("08:00", hl.CONSTANT) in spans_of(text, 1)


def test_comments_units_and_inline_rates():
    text = ('# partners\npartner X "x" { due 30 days }  # trailing\n'
            'agreement "a" v1 with X effective 2026-01-01 .. {\n'
            '  outbound voice {\n    price by destination in EUR {\n'
            '      33 "France" 0.0070 # fixed\n    }\n  }\n}\n')
    assert spans_of(text, 0) == [("# partners", hl.COMMENT)]
    line1 = spans_of(text, 1)
    assert ("days", hl.UNIT) in line1 and ("# trailing", hl.COMMENT) in line1
    assert spans_of(text, 5) == [("33", hl.NUMBER), ('"France"', hl.STRING), ("0.0070", hl.NUMBER),
                                 ("# fixed", hl.COMMENT)]


def test_highlighting_goes_on_after_a_syntax_error():
    text = 'partner X "x" {\n  kind € interconnect\n  currency EUR\n}\n'
    assert ("€", hl.ERROR) in spans_of(text, 1)
    assert spans_of(text, 2) == [("currency", hl.KEYWORD), ("EUR", hl.NAME)]


def test_every_example_file_highlights_without_gaps():
    for path in sorted((ROOT / "examples").rglob("*.icd")) + sorted((ROOT / "stdlib_rules").glob("*.icd")):
        text = path.read_text(encoding="utf-8")
        spans = hl.highlight(text)
        for row, line in enumerate(text.split("\n")):
            covered = set()
            for a, b, _ in spans.get(row, []):
                covered.update(range(a, b))
            missing = [c for c, ch in enumerate(line) if not ch.isspace() and c not in covered]
            assert not missing, f"{path}:{row + 1}: not highlighted: {line!r}"
            assert not any(name == hl.ERROR for _, _, name in spans.get(row, [])), f"{path}:{row + 1}"


def test_csv_highlighting():
    spans = hl.csv_highlight("prefix,rate,effective\n33,0.0070,2026-01-01\n")
    assert [name for _, _, name in spans[1]] == [hl.NUMBER, hl.DELIMITER, hl.NUMBER, hl.DELIMITER, hl.CONSTANT]


# ---------------------------------------------------------------- the project


def test_files_are_grouped(tutorial):
    files = Project(tutorial).files()
    assert [p.name for p in files.rules] == ["acme.icd"]
    assert [p.name for p in files.decks] == ["acme-a-z.csv"]
    assert [p.name for p in files.traffic] == ["traffic.csv"]


def test_partners_invoices_are_not_traffic():
    files = Project(ROOT / "examples" / "interconnect").files()
    assert [p.name for p in files.traffic] == ["traffic.csv"]
    assert sorted(p.name for p in files.partner_invoices) == [
        "lumiere-2026-02.csv", "lumiere-2026-03-detail.csv", "lumiere-2026-03.xml"]


def test_an_unsaved_buffer_is_checked_instead_of_the_file(tutorial):
    project = Project(tutorial)
    acme = tutorial / "acme.icd"
    saved = acme.read_text()
    clean = project.analyse()
    assert clean.problems == () and clean.plan is not None

    analysis = project.analyse({acme: saved.replace("currency EUR", "currency EURO")})
    assert [(p.diag.code, p.where) for p in analysis.problems if p.diag.is_error][:1] == [("E202", "acme.icd:5:12")]
    assert analysis.plan is None
    assert acme.read_text() == saved  # nothing written


def test_plan_paragraphs_and_the_agreement_under_the_cursor(tutorial):
    project = Project(tutorial)
    analysis = project.analyse()
    firsts = [b.text.split("\n")[0] for b in analysis.blocks]
    assert firsts[1] == 'Partner ACME "Acme Telecom" [acme.icd:3:1]'
    assert firsts[2] == 'Agreement "Acme voice" v1 with ACME, 2026-01-01 .. open [acme.icd:13:1]'
    assert analysis.blocks[2].agreement == 0
    assert analysis.blocks[2].location.path == tutorial / "acme.icd"
    assert any(f.endswith("[stdlib/calendars.icd:29:1]") for f in firsts)
    assert analysis.agreement_at(tutorial / "acme.icd", 18) == 0
    assert analysis.agreement_at(tutorial / "acme.icd", 3) is None


def test_traffic_rows_and_an_explanation(tutorial):
    project = Project(tutorial)
    plan = project.analyse().plan
    table = read_traffic(tutorial / "traffic.csv", plan)
    assert [r.row for r in table.rows] == [2, 3, 4]
    assert table.columns[:4] == ["id", "partner", "direction", "service"]
    exp = explain(project, plan, table.rows[0])
    assert exp.ok and exp.outcome == "=> 0.012100 EUR"
    deck_steps = [s for s in exp.steps if s.where == "decks/acme-a-z.csv:4"]
    assert deck_steps and deck_steps[0].location.path == tutorial / "decks" / "acme-a-z.csv"
    rejected = explain(project, plan, table.rows[2])
    assert not rejected.ok and rejected.outcome.startswith("=> rejected: no_rate")


def test_rows_rejected_at_intake_keep_their_place():
    table = read_traffic(ROOT / "tests" / "data" / "records" / "mixed.csv", None)
    rows = {r.row: r for r in table.rows}
    assert rows[2].record is not None and rows[4].reject[0] == "invalid_number"
    assert [r.row for r in table.rows] == sorted(r.row for r in table.rows)


# ---------------------------------------------------------------- keys and boundaries


def test_binding_ids_are_unique_and_keymaps_parse():
    ids = [a.id for a in ACTIONS]
    assert len(ids) == len(set(ids))
    assert all(b.id.startswith("icdsl.") for b in bindings("app"))
    assert parse_keymap("save=ctrl+w, icdsl.help=f1|f12") == {"icdsl.save": "ctrl+w", "icdsl.help": "f1,f12"}


def test_textual_is_imported_only_by_the_tui_package():
    offenders = []
    for path in (ROOT / "icdsl").rglob("*.py"):
        if "tui" in path.relative_to(ROOT / "icdsl").parts:
            continue
        for node in pyast.walk(pyast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, pyast.Import)
                     else [node.module or ""] if isinstance(node, pyast.ImportFrom) else [])
            if any(n == "textual" or n.startswith("textual.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_headless_modules_do_not_import_textual():
    code = ("import sys, icdsl.tui.highlight, icdsl.tui.project, icdsl.tui.traffic; "
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(ROOT))
    assert out.stdout.strip() == "False", out.stderr
