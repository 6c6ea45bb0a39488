"""Syntax highlighting for rule files, computed from the language's own Lark lexer.

No tree-sitter grammar exists for icdsl, so the editor asks this module for highlight spans
instead of running a tree-sitter query. The spans use tree-sitter's capture names (``keyword``,
``string``, ``comment``, ...) so that every Textual ``TextAreaTheme`` colours them.

Two passes:

1. **Contextual**: the file is fed to the LALR parser with the contextual lexer (the one that
   parses real files), token by token. A word is a keyword only where the grammar expects one,
   exactly as in ``icdsl check``: ``peak`` or ``volume`` used as names stay names.
2. **Fallback**: from the first syntax error on (a file being typed is rarely valid), and inside
   inline rate tables (one ``RATES_BLOCK`` token for the parser), a line-local tokenizer with
   the grammar's terminal patterns takes over; there a word is a keyword if the grammar has that
   keyword anywhere.

Very large files skip the first pass and are highlighted line by line on demand, so typing
stays instant in a 50,000-row inline rate table.

Spans are ``(start_col, end_col, name)`` in characters (0-based, end exclusive) per 0-based line;
the editor converts them to the UTF-8 byte offsets Textual wants.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from icdsl.lang.parser import _lark

Span = tuple[int, int, str]
Highlights = dict[int, list[Span]]

# Above this size the contextual pass is skipped (see the module docstring).
CONTEXTUAL_LIMIT = 200_000

# Capture names: tree-sitter's, so any TextAreaTheme styles them.
KEYWORD = "keyword"
NAME = "variable"
DECLARED = "type"  # a partner, calendar, fx, template or layout name where it is declared or used
UNIT = "type.builtin"  # the currency or unit after a number: 0.0020 EUR, 30 days
NUMBER = "number"
STRING = "string"
COMMENT = "comment"
CONSTANT = "constant.builtin"  # dates, times, versions, time zones
BOOLEAN = "boolean"
KEY = "tag"  # 'name:' keys
OPERATOR = "operator"
BRACKET = "punctuation.bracket"
DELIMITER = "punctuation.delimiter"
ERROR = "icdsl.error"  # a character no token starts with

_TOKEN_NAMES = {
    "NUMBER": NUMBER,
    "STRING": STRING,
    "COMMENT": COMMENT,
    "DATE": CONSTANT,
    "MONTH": CONSTANT,
    "TIME": CONSTANT,
    "VERSION": CONSTANT,
    "TZNAME": CONSTANT,
    "UTC": CONSTANT,
    "KEY": KEY,
    "COMPARATOR": OPERATOR,
    "_RANGE": OPERATOR,
    "MINUS": OPERATOR,
    "SLASH": OPERATOR,
    "PERCENT": OPERATOR,
    "EQUAL": OPERATOR,
    "LBRACE": BRACKET,
    "RBRACE": BRACKET,
    "LSQB": BRACKET,
    "RSQB": BRACKET,
    "LPAR": BRACKET,
    "RPAR": BRACKET,
    "COMMA": DELIMITER,
    "COLON": DELIMITER,
    "DOT": DELIMITER,
    "TRUE": BOOLEAN,
    "FALSE": BOOLEAN,
}

# Keywords after which a name is a declared (or referenced) thing.
_DECLARING = frozenset(("partner", "calendar", "fx", "template", "records", "with", "apply"))
# Keywords after which a name is a currency or unit.
_UNIT_AFTER = frozenset(("currency", "in", "per"))
# Words of the inline rate table rows (read by lang/rates.py, not by the grammar).
_RATE_WORDS = frozenset(("connect", "increments", "from", "until"))


@functools.cache
def keywords() -> frozenset[str]:
    """Every word the grammar uses as a keyword somewhere."""
    words = set()
    for t in _lark().terminals:
        if t.pattern.type == "str" and re.fullmatch(r"[a-z_]+", t.pattern.value):
            words.add(t.pattern.value)
    return frozenset(words)


@functools.cache
def _keyword_types() -> frozenset[str]:
    return frozenset(
        t.name for t in _lark().terminals if t.pattern.type == "str" and re.fullmatch(r"[a-z_]+", t.pattern.value)
    )


# The grammar's terminals in the lexer's priority order (dates and times before numbers, keys
# before names), one line at a time.
_FALLBACK = re.compile(
    r"""
    (?P<COMMENT>\#.*)
  | (?P<STRING>"(?:[^"\\]|\\.)*"?)
  | (?P<DATE>[0-9]{4}-[0-9]{2}-[0-9]{2})
  | (?P<TIME>[0-9]{2}:[0-9]{2}(?::[0-9]{2})?)
  | (?P<VERSION>v[0-9]+\b)
  | (?P<TZNAME>[A-Z][A-Za-z_]+(?:/[A-Za-z_+\-]+)+)
  | (?P<KEY>[A-Za-z_][A-Za-z0-9_]*:(?!:))
  | (?P<NUMBER>[0-9][0-9_]*(?:\.[0-9][0-9_]*)?)
  | (?P<WORD>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<COMPARATOR>==|!=|<=|>=|<|>)
  | (?P<_RANGE>\.\.)
  | (?P<OP>[-/%=])
  | (?P<BRACKET>[{}\[\]()])
  | (?P<DELIM>[,:.])
  | (?P<SPACE>\s+)
  | (?P<OTHER>.)
    """,
    re.VERBOSE,
)


def _fallback_line(line: str, start: int = 0, rates: bool = False) -> Iterator[Span]:
    """Highlight one line (from column ``start``) without the parser."""
    kws = keywords()
    prev_number = False
    for m in _FALLBACK.finditer(line, start):
        kind = m.lastgroup
        a, b = m.span()
        if kind == "SPACE":
            continue
        name: str | None
        if kind == "WORD":
            word = m.group()
            if word in ("true", "false"):
                name = BOOLEAN
            elif word in kws or (rates and word in _RATE_WORDS):
                name = KEYWORD
            elif prev_number and not rates:
                name = UNIT
            else:
                name = NAME
        elif kind == "OP":
            name = OPERATOR
        elif kind == "BRACKET":
            name = BRACKET
        elif kind == "DELIM":
            name = DELIMITER
        elif kind == "OTHER":
            name = ERROR
        else:
            name = _TOKEN_NAMES.get(kind or "")
        prev_number = kind == "NUMBER"
        if name:
            yield (a, b, name)


def line_highlights(line: str) -> list[Span]:
    """The fallback highlighting of one line on its own (for very large files)."""
    return list(_fallback_line(line))


def _add(out: Highlights, line: int, span: Span) -> None:
    out.setdefault(line, []).append(span)


def _fallback_from(out: Highlights, lines: list[str], row: int, col: int) -> None:
    for r in range(row, len(lines)):
        for span in _fallback_line(lines[r], col if r == row else 0):
            _add(out, r, span)


def _comments(out: Highlights, lines: list[str], row: int, col: int, end_row: int, end_col: int) -> None:
    """Comments in the gap between two tokens (the parser skips them)."""
    for r in range(row, end_row + 1):
        line = lines[r] if r < len(lines) else ""
        a = col if r == row else 0
        b = end_col if r == end_row else len(line)
        hash_at = line.find("#", a, b)
        if hash_at >= 0:
            _add(out, r, (hash_at, len(line), COMMENT))


def highlight(text: str) -> Highlights:
    """Highlight spans of a whole rule file, by 0-based line."""
    lines = text.split("\n")
    out: Highlights = {}
    if len(text) > CONTEXTUAL_LIMIT:
        for r, line in enumerate(lines):
            spans = line_highlights(line)
            if spans:
                out[r] = spans
        return out
    kw_types = _keyword_types()
    parser = _lark().parse_interactive(text)
    row, col = 0, 0  # where the previous token ended (0-based)
    prev_type = ""
    prev_value = ""
    try:
        for tok in parser.iter_parse():
            t_row, t_col = tok.line - 1, tok.column - 1
            _comments(out, lines, row, col, t_row, t_col)
            if tok.type == "RATES_BLOCK":
                _rates(out, lines, tok)
            else:
                name = _token_name(tok.type, kw_types, prev_type, prev_value)
                if name:
                    _add(out, t_row, (t_col, t_col + len(tok.value), name))
            row, col = tok.end_line - 1, tok.end_column - 1
            prev_type, prev_value = tok.type, str(tok.value)
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END" or tok.line is None:
            _comments(out, lines, row, col, len(lines) - 1, len(lines[-1]))
        else:
            _comments(out, lines, row, col, tok.line - 1, tok.column - 1)
            _fallback_from(out, lines, tok.line - 1, tok.column - 1)
    except UnexpectedCharacters as e:
        _comments(out, lines, row, col, e.line - 1, e.column - 1)
        _fallback_from(out, lines, e.line - 1, e.column - 1)
    except UnexpectedInput:  # end of input inside a statement: nothing left to colour
        _comments(out, lines, row, col, len(lines) - 1, len(lines[-1]))
    except RecursionError:
        _fallback_from(out, lines, row, col)
    else:
        _comments(out, lines, row, col, len(lines) - 1, len(lines[-1]))
    return out


def _token_name(kind: str, kw_types: frozenset[str], prev_type: str, prev_value: str) -> str | None:
    if kind in _TOKEN_NAMES:
        return _TOKEN_NAMES[kind]
    if kind in kw_types or kind == "_DATE_KW":
        return KEYWORD
    if kind == "NAME":
        if prev_value in _DECLARING and prev_type in kw_types:
            return DECLARED
        if prev_type == "NUMBER" or (prev_value in _UNIT_AFTER and prev_type in kw_types):
            return UNIT
        return NAME
    return None


def _rates(out: Highlights, lines: list[str], tok) -> None:
    """An inline rate table: one token for the parser, highlighted row by row."""
    first, last = tok.line - 1, tok.end_line - 1
    for r in range(first, last + 1):
        line = lines[r]
        a = tok.column - 1 if r == first else 0
        b = tok.end_column - 1 if r == last else len(line)
        for span in _fallback_line(line[:b], a, rates=True):
            _add(out, r, span)


_CSV_CELL = re.compile(r'"(?:[^"]|"")*"|[^,;\t|]+|[,;\t|]')
_CSV_NUMBER = re.compile(r"\s*[+-]?[0-9][0-9_]*(?:\.[0-9]+)?\s*\Z")
_CSV_DATE = re.compile(r"\s*[0-9]{4}-[0-9]{2}-[0-9]{2}")


def csv_highlight(text: str) -> Highlights:
    """Light highlighting of a CSV file (a deck or traffic): the header, numbers and dates."""
    out: Highlights = {}
    for r, line in enumerate(text.split("\n")):
        spans = []
        for m in _CSV_CELL.finditer(line):
            cell = m.group()
            a, b = m.span()
            if cell in ",;\t|":
                spans.append((a, b, DELIMITER))
            elif r == 0:
                spans.append((a, b, KEY))
            elif _CSV_DATE.match(cell):
                spans.append((a, b, CONSTANT))
            elif _CSV_NUMBER.match(cell) or "/" in cell and cell.replace("/", "").strip().isdigit():
                spans.append((a, b, NUMBER))
            elif cell.startswith('"'):
                spans.append((a, b, STRING))
        if spans:
            out[r] = spans
    return out
