"""The TextMate grammar of rule files (editors' syntax highlighting), derived from the Lark
grammar: its keywords are the grammar's quoted words, its numbers, dates, times, versions and
time zones the grammar's terminal patterns. VS Code, Sublime, TextMate, JetBrains (TextMate
bundles), and GitHub's linguist read it; the terminal's editor highlights with the Lark lexer
itself (icdsl.tui.highlight), from the same grammar file.

Regenerate after a change to grammar/icdsl.lark (tests/test_lsp_editors.py checks it is current)::

    python -m icdsl.lsp.textmate > editors/vscode/syntaxes/icdsl.tmLanguage.json
"""

from __future__ import annotations

import json
import re
import sys

from icdsl.lang.parser import grammar_path

SCOPE = "source.icdsl"


def grammar_words(text: str) -> tuple[list[str], list[str]]:
    """(leading keywords, other keywords): the words quoted in the grammar; a leading keyword is
    the first word of a rule, what starts a declaration or a statement (``partner``,
    ``agreement``, ``calendar``, ``price``, ...), highlighted apart."""
    words = set(re.findall(r'"([a-z_][a-z0-9_]*)"i?', text))
    leading = set(re.findall(r'^\??[a-z_][a-z0-9_]*(?:\.\d+)?\s*:\s*"([a-z_][a-z0-9_]*)"', text, re.M))
    return sorted(leading), sorted(words - leading)


def _terminal(text: str, name: str) -> str:
    m = re.search(rf"^{name}(?:\.\d+)?\s*:\s*/(.*)/\s*$", text, re.M)
    if m is None:
        raise ValueError(f"the grammar has no terminal {name}")
    return m.group(1).replace("(?>", "(?:")


def _alternation(words: list[str]) -> str:
    return r"\b(?:" + "|".join(sorted(words, key=lambda w: (-len(w), w))) + r")\b"


def textmate(text: str) -> dict:
    declarations, others = grammar_words(text)
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "icdsl",
        "scopeName": SCOPE,
        "fileTypes": ["icd"],
        "comment": "Generated from grammar/icdsl.lark by `python -m icdsl.lsp.textmate`: do not edit.",
        "patterns": [{"include": f"#{n}"} for n in
                     ("comment", "string", "date", "time", "version", "timezone", "key", "number",
                      "declaration", "keyword", "operator")],
        "repository": {
            "comment": {"name": "comment.line.number-sign.icdsl", "match": _terminal(text, "COMMENT")},
            "string": {"name": "string.quoted.double.icdsl", "begin": '"', "end": r'"|$',
                       "patterns": [{"name": "constant.character.escape.icdsl", "match": r"\\."}]},
            "date": {"name": "constant.numeric.date.icdsl", "match": r"\b" + _terminal(text, "DATE") + r"\b"},
            "time": {"name": "constant.numeric.time.icdsl", "match": r"\b" + _terminal(text, "TIME") + r"\b"},
            "version": {"name": "constant.other.version.icdsl", "match": r"\b" + _terminal(text, "VERSION")},
            "timezone": {"name": "constant.other.timezone.icdsl", "match": r"\b" + _terminal(text, "TZNAME")},
            "key": {"name": "variable.other.key.icdsl", "match": r"\b" + _terminal(text, "KEY")},
            "number": {"name": "constant.numeric.icdsl", "match": r"\b" + _terminal(text, "NUMBER") + r"%?"},
            "declaration": {"name": "storage.type.icdsl", "match": _alternation(declarations)},
            "keyword": {"name": "keyword.other.icdsl", "match": _alternation(others)},
            "operator": {"name": "keyword.operator.icdsl", "match": r"==|!=|<=|>=|<|>|\.\.|%"},
        },
    }


def render() -> str:
    return json.dumps(textmate(grammar_path().read_text(encoding="utf-8")), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
