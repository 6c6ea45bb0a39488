"""A fast reader for the rows of an inline rate table.

Rate tables can hold tens of thousands of rows; a general LALR parser spends most of its time
building trees for them. The grammar therefore reads the whole ``{ ... }`` body of an inline
table as one token and this module reads its rows. A row reads::

    PREFIX "Destination" PRICE | (BAND PRICE)+  [connect FEE] [increments I/S] [from DATE] [until DATE]
                                                 [slots NAME] [ORIGIN_FIELD VALUE]...

(``slots NAME``: the service's slot set ``slots NAME { ... }`` that prices the row)

where ORIGIN_FIELD is one of the origin columns of a deck (``origin 4420``, ``origin_zone EEA``,
``origin_country FR``, ``origin_operator AIRTEL``, ``origin_circle MH``,
``destination_operator JIO``, ``destination_circle MH``; a value with spaces in double quotes).

The common layout, one row per line, is read with one regular expression per line. Anything
else (rows spread over lines, several rows on a line, mistakes) goes through a token-by-token
reader that gives exact positions in its error messages.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from icdsl.lang import ast
from icdsl.lang.decks import ORIGIN_FIELDS, origin_problem, origin_value
from icdsl.lang.diagnostics import Diagnostic
from icdsl.lang.values import NUMBER_FIX, number_problem, short_text
from icdsl.spans import Span

# re.ASCII throughout: digits are 0-9 (\d would take "٣" and "߃" for digits of a prefix)
_LINE = re.compile(r'[ \t]*(\d+|"[0-9]*")[ \t]+"([^"\\\n]*)"[ \t]+([^"#\n]*)(#[^\n]*)?\Z', re.ASCII)
_BLANK = re.compile(r"[ \t]*(#[^\n]*)?\Z")
# at most 15 digits before the point and 12 after (values.number_problem): a longer number goes
# to the exact reader, which says what is wrong with it
_NUMBER = re.compile(r"\d{1,15}(?:\.\d{1,12})?\Z", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z", re.ASCII)
_INCR = re.compile(r"(\d{1,9})/(\d{1,9})\Z", re.ASCII)
_TOKEN = re.compile(
    r'(?P<ws>\s+)|(?P<comment>#[^\n]*)|(?P<date>\d{4}-\d{2}-\d{2})(?![\d_.])'
    r'|(?P<num>\d[\d_]*(?:\.\d[\d_]*)?)|(?P<str>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<name>[A-Za-z_]\w*)|(?P<slash>/)|(?P<other>.)",
    re.S | re.ASCII,
)
_OPTION_WORDS = frozenset(("connect", "increments", "from", "until", "slots") + ORIGIN_FIELDS)
_SET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)
_SET_WORD = re.compile(r"(?<!\S)slots[ \t]+(\S+)", re.ASCII)
ROW_HELP = ('a row reads: PREFIX "Destination" PRICE (or BAND PRICE ...), then optional connect, increments, from, '
            'until, slots NAME, and origin keys (origin_zone EEA, origin_operator AIRTEL ...)')


class _RowError(Exception):
    def __init__(self, diag: Diagnostic):
        self.diag = diag


def _fast_words(words: list[str]):
    """Interpret the words after the destination, or None if they are not plainly well formed."""
    n = len(words)
    i = 0
    price = None
    bands = []
    if n == 0:
        return None
    if _NUMBER.match(words[0]):
        price = Decimal(words[0])
        i = 1
    else:
        while i + 1 < n and words[i] not in _OPTION_WORDS and _NUMBER.match(words[i + 1]):
            w = words[i]
            if not (w[0].isalpha() or w[0] == "_") or not w.replace("_", "a").isalnum():
                return None
            bands.append((w, Decimal(words[i + 1])))
            i += 2
        if not bands:
            return None
    connect = incr = start = until = slot_set = None
    origin: list[tuple[str, str]] = []
    while i < n:
        w = words[i]
        if i + 1 >= n:
            return None
        v = words[i + 1]
        if w in ORIGIN_FIELDS:
            value = origin_value(w, v)
            if origin_problem(w, value) is not None or any(f == w for f, _ in origin):
                return None
            origin.append((w, value))
        elif w == "connect" and _NUMBER.match(v):
            connect = Decimal(v)
        elif w == "increments" and (m := _INCR.match(v)):
            incr = (int(m.group(1)), int(m.group(2)))
        elif w == "from" and _DATE.match(v):
            start = v
        elif w == "until" and _DATE.match(v):
            until = v
        elif w == "slots" and slot_set is None and _SET_NAME.match(v):
            slot_set = v
        else:
            return None
        i += 2
    return price, tuple(bands), connect, incr, start, until, tuple(origin), slot_set


def read_rows(block: str, path: str, line: int, col: int):
    """Read ``{ rows }`` (the whole token, braces included) that starts at (line, col).

    Returns (rows, comments, diagnostics); comments are (span, text), kept for the formatter.
    """
    body = block[1:-1]
    lines = body.split("\n")
    rows: list[ast.RateRowNode] = []
    comments: list[tuple[Span, str]] = []
    for k, text in enumerate(lines):
        lineno = line + k
        base = col + 1 if k == 0 else 1  # column of the line's first character
        m = _LINE.match(text)
        if m is None:
            b = _BLANK.match(text)
            if b is None:
                return _rest_slowly(rows, comments, lines, k, path, line, col)
            if b.group(1):
                c = base + b.start(1)
                comments.append((Span(path, lineno, c, lineno, c + len(b.group(1))), b.group(1)))
            continue
        prefix, dest, rest, comment = m.groups()
        words = rest.split()
        parsed = _fast_words(words)
        if parsed is None:
            return _rest_slowly(rows, comments, lines, k, path, line, col)
        quoted = prefix.startswith('"')
        c0 = base + m.start(1)
        set_span = None
        if parsed[7] is not None:
            w = _SET_WORD.search(rest)
            c = base + m.start(3) + w.start(1)
            set_span = Span(path, lineno, c, lineno, c + len(parsed[7]))
        rows.append(ast.RateRowNode(prefix[1:-1] if quoted else prefix, dest, *parsed[:6],
                                    Span(path, lineno, c0, lineno, base + m.start(3) + len(rest.rstrip())), quoted,
                                    tuple(words), parsed[6], parsed[7], set_span))
        if comment:
            c = base + m.start(4)
            comments.append((Span(path, lineno, c, lineno, c + len(comment)), comment))
    return rows, comments, []


def _rest_slowly(rows, comments, lines, k, path, line, col):
    """Read lines k.. with the exact reader. The last row read line by line may go on on line k
    (a row spread over lines), so it is read again from its own line."""
    if rows:
        last = rows.pop()
        k = last.span.line - line
        comments = [c for c in comments if c[0].line < last.span.line]
    more_rows, more_comments, diags = _slow("\n".join(lines[k:]), path, line + k, col + 1 if k == 0 else 1)
    return rows + more_rows, comments + more_comments, diags


# ---------------------------------------------------------------- the exact, slower reader


def _tokens(body: str, path: str, line: int, col: int):
    line_start = -col + 1
    for m in _TOKEN.finditer(body):
        kind = m.lastgroup
        text = m.group()
        start = m.start()
        if kind == "ws":
            nl = text.count("\n")
            if nl:
                line += nl
                line_start = start + text.rfind("\n") + 1
            continue
        c = start - line_start + 1
        yield kind, text, Span(path, line, c, line, c + len(text))


def _number(text: str, span: Span) -> Decimal:
    if "__" in text or text.endswith("_") or "_." in text or "._" in text:
        raise _RowError(Diagnostic("E004", f"'{text}' is not a valid number", span,
                                   "write digits with single '_' between groups, e.g. 1_000_000 or 0.0070"))
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation:
        raise _RowError(Diagnostic("E004", f"'{text}' is not a valid number", span)) from None
    problem = number_problem(value, text)
    if problem:
        raise _RowError(Diagnostic("E227", problem, span, NUMBER_FIX))
    return value


def _slow(body: str, path: str, line: int, col: int):
    rows: list[ast.RateRowNode] = []
    comments: list[tuple[Span, str]] = []
    toks = []
    for t in _tokens(body, path, line, col):
        if t[0] == "comment":
            comments.append((t[2], t[1]))
        else:
            toks.append(t)
    i, n = 0, len(toks)
    try:
        while i < n:
            kind, text, span = toks[i]
            if kind == "num":
                if not text.isdigit():
                    raise _RowError(Diagnostic("E020", f"prefix '{text}' must be digits only", span,
                                               "prefixes are E.164 digits without '+', e.g. 336"))
                prefix, quoted = text, False
            elif kind == "str":
                prefix, quoted = text[1:-1], True
                if prefix and not (prefix.isascii() and prefix.isdigit()):
                    raise _RowError(Diagnostic("E020", f"prefix {short_text(text)} must be digits only", span,
                                               "prefixes are E.164 digits without '+', e.g. \"336\""))
            else:
                raise _RowError(Diagnostic("E012", f"unexpected '{text}' where a rate row should start", span,
                                           ROW_HELP))
            row_start = span
            i += 1
            if i >= n or toks[i][0] != "str":
                where = toks[i][2] if i < n else span
                raise _RowError(Diagnostic("E012", "expected the destination name in double quotes", where,
                                           ROW_HELP))
            dest = toks[i][1][1:-1]
            dest_span = toks[i][2]
            i += 1
            first_word = i
            price = None
            bands: list[tuple[str, Decimal]] = []
            if i < n and toks[i][0] == "num":
                price = _number(toks[i][1], toks[i][2])
                i += 1
            else:
                while i < n and toks[i][0] == "name" and toks[i][1] not in _OPTION_WORDS:
                    band, bspan = toks[i][1], toks[i][2]
                    i += 1
                    if i >= n or toks[i][0] != "num":
                        where = toks[i][2] if i < n else bspan
                        raise _RowError(Diagnostic("E012", f"expected the price for band '{band}'", where, ROW_HELP))
                    bands.append((band, _number(toks[i][1], toks[i][2])))
                    i += 1
                if not bands:
                    where = toks[i][2] if i < n else dest_span
                    raise _RowError(Diagnostic("E012", f"expected the price of '{dest}'", where, ROW_HELP))
            connect = increments = start = until = slot_set = set_span = None
            origin: list[tuple[str, str]] = []
            while i < n and toks[i][0] == "name" and toks[i][1] in _OPTION_WORDS:
                word, wspan = toks[i][1], toks[i][2]
                i += 1
                if word in ORIGIN_FIELDS:
                    if i >= n or toks[i][0] not in ("name", "num", "str"):
                        raise _RowError(Diagnostic("E012", f"expected a value after '{word}'", wspan,
                                                   "e.g. origin_zone EEA, origin_operator AIRTEL, origin 4420"))
                    raw = toks[i][1][1:-1] if toks[i][0] == "str" else toks[i][1]
                    value = origin_value(word, raw)
                    problem = origin_problem(word, value)
                    if problem is not None:
                        raise _RowError(Diagnostic("E012", problem, toks[i][2],
                                                   "leave it out for a row that prices every origin"))
                    if any(f == word for f, _ in origin):
                        raise _RowError(Diagnostic("E012", f"'{word}' is given twice in this row", wspan))
                    origin.append((word, value))
                    i += 1
                elif word == "slots":
                    if i >= n or toks[i][0] != "name" or toks[i][1] in _OPTION_WORDS:
                        raise _RowError(Diagnostic("E012", "expected the name of a slot set after 'slots'", wspan,
                                                   "e.g. slots peak_groups (a 'slots NAME { ... }' of the service)"))
                    if slot_set is not None:
                        raise _RowError(Diagnostic("E012", "'slots' is given twice in this row", wspan))
                    slot_set, set_span = toks[i][1], toks[i][2]
                    i += 1
                elif word == "connect":
                    if i >= n or toks[i][0] != "num":
                        raise _RowError(Diagnostic("E012", "expected the connect fee after 'connect'", wspan,
                                                   "e.g. connect 0.0100"))
                    connect = _number(toks[i][1], toks[i][2])
                    i += 1
                elif word == "increments":
                    if i + 2 >= n or toks[i][0] != "num" or toks[i + 1][0] != "slash" or toks[i + 2][0] != "num":
                        raise _RowError(Diagnostic("E012", "expected increments as INITIAL/SUBSEQUENT", wspan,
                                                   "e.g. increments 60/6"))
                    increments = (int(_number(toks[i][1], toks[i][2])), int(_number(toks[i + 2][1], toks[i + 2][2])))
                    i += 3
                else:
                    if i >= n or toks[i][0] != "date":
                        raise _RowError(Diagnostic("E012", f"expected a date (YYYY-MM-DD) after '{word}'", wspan))
                    if word == "from":
                        start = toks[i][1]
                    else:
                        until = toks[i][1]
                    i += 1
            if i < n and toks[i][0] not in ("num", "str"):
                raise _RowError(Diagnostic("E012", f"unexpected '{toks[i][1]}' in a rate row", toks[i][2], ROW_HELP))
            last = toks[i - 1][2]
            words = []
            for t in toks[first_word:i]:
                if t[0] == "slash" and words:
                    words[-1] += "/"
                elif words and words[-1].endswith("/"):
                    words[-1] += t[1]
                else:
                    words.append(t[1])
            rows.append(ast.RateRowNode(prefix, dest, price, tuple(bands), connect, increments, start, until,
                                        Span(path, row_start.line, row_start.col, last.end_line, last.end_col),
                                        quoted, tuple(words), tuple(origin), slot_set, set_span))
    except _RowError as e:
        return rows, comments, [e.diag]
    return rows, comments, []
