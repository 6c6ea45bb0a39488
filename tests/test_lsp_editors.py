"""The editors' files (docs/editors.md): the TextMate grammar is the one generated from the Lark
grammar, it highlights rule files as intended, and the VS Code extension names it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from icdsl.lang.parser import grammar_path
from icdsl.lsp.textmate import SCOPE, grammar_words, render

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
TM = VSCODE / "syntaxes" / "icdsl.tmLanguage.json"


def test_the_textmate_grammar_is_generated_from_the_current_lark_grammar():
    assert TM.read_text(encoding="utf-8") == render(), \
        "run: python -m icdsl.lsp.textmate > editors/vscode/syntaxes/icdsl.tmLanguage.json"


def _scopes(line: str) -> list[tuple[str, str]]:
    """(text, scope) of a line, first matching pattern wins at each position (as TextMate does
    for a flat grammar); strings as begin/end."""
    grammar = json.loads(TM.read_text(encoding="utf-8"))
    rules = [grammar["repository"][p["include"][1:]] for p in grammar["patterns"]]
    out, i = [], 0
    while i < len(line):
        for rule in rules:
            if "begin" in rule:
                m = re.compile(rule["begin"]).match(line, i)
                if m:
                    end = re.compile(rule["end"]).search(line, m.end())
                    stop = end.end() if end else len(line)
                    out.append((line[i:stop], rule["name"]))
                    i = stop
                    break
            else:
                m = re.compile(rule["match"]).match(line, i)
                if m and m.end() > i and (i == 0 or not (line[i - 1].isalnum() and line[i].isalnum())):
                    out.append((m.group(0), rule["name"]))
                    i = m.end()
                    break
        else:
            i += 1
    return out


def test_it_highlights_a_rule_file_as_intended():
    got = dict(_scopes('agreement "Lumière bilateral" v1 with LUMFR effective 2026-01-01 .. {  # from July'))
    assert got["agreement"] == "storage.type.icdsl"
    assert got['"Lumière bilateral"'] == "string.quoted.double.icdsl"
    assert got["v1"] == "constant.other.version.icdsl"
    assert got["with"] == got["effective"] == "keyword.other.icdsl"
    assert got["2026-01-01"] == "constant.numeric.date.icdsl"
    assert got[".."] == "keyword.operator.icdsl"
    assert got["# from July"] == "comment.line.number-sign.icdsl"
    assert "LUMFR" not in got  # a name: plain text
    more = dict(_scopes("  peak mon-fri 08:00-20:00 tax vat 20% price 0.0125 EUR per minute"))
    assert more["08:00"] == more["20:00"] == "constant.numeric.time.icdsl"
    assert more["20%"] == more["0.0125"] == "constant.numeric.icdsl"


def test_every_grammar_word_is_a_keyword_of_one_kind():
    declarations, others = grammar_words(grammar_path().read_text(encoding="utf-8"))
    assert {"partner", "agreement", "calendar", "template", "records"} <= set(declarations)
    assert {"effective", "with", "deck"} <= set(others)
    assert not set(declarations) & set(others)


def test_the_vscode_extension_names_the_language_the_grammar_and_the_server():
    package = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    (lang,) = package["contributes"]["languages"]
    (grammar,) = package["contributes"]["grammars"]
    assert lang["extensions"] == [".icd"] and grammar["language"] == lang["id"] == "icdsl"
    assert grammar["scopeName"] == SCOPE and (VSCODE / grammar["path"]).resolve() == TM
    assert json.loads((VSCODE / lang["configuration"]).read_text(encoding="utf-8"))["comments"]["lineComment"] == "#"
    assert package["contributes"]["configuration"]["properties"]["icdsl.command"]["default"] == ["icdsl", "lsp"]
    assert '"icdsl.command"' not in (VSCODE / "extension.js").read_text() and \
        'getConfiguration("icdsl").get("command"' in (VSCODE / "extension.js").read_text()
