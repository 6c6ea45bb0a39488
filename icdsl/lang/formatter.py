"""The canonical formatter of the agreement language (``icdsl fmt``), in the spirit of gofmt/black.

Formatting only changes whitespace: the tokens of the file (comments included) come out
identical and in the same order, numbers and texts exactly as written. The layout is fixed:

* every top-level item starts on its own line, one blank line between items (consecutive
  ``use`` lines stay together);
* blocks open with ``{`` at the end of the header line, hold one statement per line indented by
  two spaces per level, and close with ``}`` on its own line; an empty block prints ``{}``;
* inside blocks, one blank line is kept where the author left one or more between statements;
  a statement stays on one line, conditions and charge options (``, prorate daily``) included;
  the slots of ``slots { ... }`` get a line each, the comma at the end of the line;
* tokens are separated by one space, except: none before ``,`` ``%`` ``:`` ``)`` ``]``, none
  after ``(`` ``[``, none around ``/`` ``-`` ``.`` (a minus sign, ``-5.00 EUR``, has one before
  it) and none between a function and its ``(``;
* inline rate tables get one row per line, one level deeper than their statement: the prefix
  padded to the widest prefix, the destination to the widest destination, then the row's
  words; ``}`` on its own line. Comment lines and blank lines (one at most) between rows are
  kept. A row with a comment inside it keeps a line break after each such comment (its
  prefix and destination alone on the first line, the rest two levels deeper) and is left
  out of the column widths;
* full-line comments stay on their own line before what they preceded (at its indent),
  trailing comments stay at the end of their line, two spaces before the ``#``. A comment that
  ends a line in the middle of a statement keeps the line break; the statement continues on
  the next line, indented two levels deeper than the statement.

The formatter works from the concrete tree of :func:`icdsl.lang.parser.parse_tree` and reads
comments back from the source text between tokens (the grammar ignores them).
"""

from __future__ import annotations

import re
from pathlib import Path

from lark import Token, Tree
from lark.exceptions import UnexpectedInput

from icdsl.lang.diagnostics import Diagnostic
from icdsl.lang.parser import decode, parse_text, parse_tree
from icdsl.lang.rates import read_rows
from icdsl.spans import Span

INDENT = "  "
CONTINUATION = 2  # levels added to a statement's indent when a comment breaks it

__all__ = ["format_file", "format_text"]

_COMMENT = re.compile(r"#[^\n]*")
_NO_SPACE_BEFORE = frozenset(("COMMA", "PERCENT", "COLON", "RPAR", "RSQB"))
_NO_SPACE_AFTER = frozenset(("LPAR", "LSQB"))
_TIGHT = frozenset(("SLASH", "MINUS", "DOT"))  # no space on either side
_GLUED_PARENS = frozenset(("call", "template_params", "template_args"))  # `f(x)`, `template t(a)`, `apply t(1)`
_FLATTENED = frozenset(("share_parties", "share_tiers"))  # wrappers whose children are the statements
_STATEMENT_KEYWORDS = frozenset(("PRECISION", "MODE"))  # rounding presets: `precision 4` / `mode half_even`
# The pieces of a rate row, to lay out rows that a comment interrupts.
_ROW_PIECE = re.compile(r'(?P<s>"(?:[^"\\\n]|\\.)*")|(?P<c>#[^\n]*)|(?P<sl>/)|(?P<w>[^\s"#/]+)')


class _Invalid(Exception):
    """The tree parsed but the file is still not valid (a bad number, a bad rate row)."""


# ---------------------------------------------------------------- comments and blank lines


class _Gap:
    """What stands between two tokens in the source: comments and blank lines."""

    __slots__ = ("trailing", "comments", "blank")

    def __init__(self, trailing: str | None, comments: list[tuple[bool, str]], blank: bool):
        self.trailing = trailing  # a comment on the line of the previous token
        self.comments = comments  # full-line comments: (blank line before it, text)
        self.blank = blank  # a blank line right before the token


_NOTHING = _Gap(None, [], False)
_BLANK = _Gap(None, [], True)


def _gaps(text: str, tokens: list[Token]) -> list[_Gap]:
    """One gap before each token, and one more before the end of the file."""
    out: list[_Gap] = []
    prev_end = 0
    n = len(tokens)
    for i in range(n + 1):
        start = tokens[i].start_pos if i < n else len(text)
        if "#" not in text[prev_end:start]:
            out.append(_BLANK if text.count("\n", prev_end, start) >= 2 else _NOTHING)
        else:
            gap = text[prev_end:start]
            trailing = None
            comments: list[tuple[bool, str]] = []
            pos = 0
            for m in _COMMENT.finditer(gap):
                nl = gap.count("\n", pos, m.start())
                comment = m.group().rstrip()
                if nl == 0 and i > 0:
                    trailing = comment
                else:
                    comments.append((nl >= 2, comment))
                pos = m.end()
            out.append(_Gap(trailing, comments, gap.count("\n", pos) >= 2))
        if i < n:
            prev_end = tokens[i].end_pos
    return out


def _valid_number(text: str) -> bool:
    return not ("__" in text or text.endswith("_") or "_." in text or "._" in text)


# ---------------------------------------------------------------- the printer


class _Printer:
    """Writes tokens in source order; the walker says where lines start."""

    def __init__(self, tokens: list[Token], gaps: list[_Gap], path: str):
        self.tokens = tokens
        self.gaps = gaps
        self.path = path
        self.lines: list[str] = []
        self.cur: list[str] | None = None
        self.fresh = True  # the current line holds only its indentation
        self.prev_type: str | None = None
        self.stmt_indent = 0
        self.broken = False  # a trailing comment ended the current line
        self.k = 0  # index of the next token
        self.pending: tuple[int, int | None] | None = None

    # -- lines
    def _newline(self, indent: int, blank: bool) -> None:
        if self.cur is not None:
            self.lines.append("".join(self.cur))
        if blank and self.lines:
            self.lines.append("")
        self.cur = [INDENT * indent]
        self.fresh = True

    def _trailing(self, comment: str) -> None:
        assert self.cur is not None
        self.cur.append(comment if self.fresh else "  " + comment)
        self.fresh = False
        self.broken = True

    def _start_line(self, gap: _Gap, comment_indent: int, indent: int, first_blank: int | None,
                    token_blank: int | None = None) -> None:
        """Start a line at `indent`, after the full-line comments of `gap` (at `comment_indent`).

        `first_blank` decides the blank line before the first line written (None: as in the
        source); `token_blank` overrides the one right before the token.
        """
        blank = first_blank
        for had_blank, comment in gap.comments:
            self._newline(comment_indent, had_blank if blank is None else bool(blank))
            self.cur.append(comment)  # type: ignore[union-attr]
            blank = None
        tb = gap.blank if blank is None else bool(blank)
        if token_blank is not None:
            tb = bool(token_blank)
        self._newline(indent, tb)
        self.stmt_indent = indent
        self.broken = False

    def _next(self, tok: Token) -> _Gap:
        i = self.k
        assert self.tokens[i] is tok, "the formatter lost its place in the token stream"
        self.k += 1
        gap = self.gaps[i]
        if gap.trailing is not None:
            self._trailing(gap.trailing)
        return gap

    # -- what the walker calls
    def line(self, indent: int, first_blank: int | None) -> None:
        """The next token starts a statement on its own line."""
        self.pending = (indent, first_blank)

    def token(self, tok: Token, glue: bool = False, text: str | None = None, spaced: bool = False) -> None:
        gap = self._next(tok)
        if self.pending is not None:
            indent, first_blank = self.pending
            self.pending = None
            self._start_line(gap, indent, indent, first_blank)
        elif gap.comments or self.broken:
            indent = self.stmt_indent + CONTINUATION
            for _, comment in gap.comments:
                self._newline(indent, False)
                self.cur.append(comment)  # type: ignore[union-attr]
            self._newline(indent, False)
            self.broken = False
        elif not self.fresh and not glue and (spaced or self._spaced(self.prev_type, tok.type)):
            self.cur.append(" ")  # type: ignore[union-attr]
        self.cur.append(tok.value if text is None else text)  # type: ignore[union-attr]
        self.fresh = False
        self.prev_type = tok.type

    @staticmethod
    def _spaced(prev: str | None, cur: str) -> bool:
        return not (cur in _NO_SPACE_BEFORE or prev in _NO_SPACE_AFTER or cur in _TIGHT or prev in _TIGHT)

    def close(self, tok: Token, indent: int, empty: bool) -> None:
        """The `}` of a block whose statements were written at indent + 1."""
        gap = self._next(tok)
        if empty and not gap.comments and not self.broken:
            self.cur.append("}")  # type: ignore[union-attr]
        else:
            self._start_line(gap, indent + 1, indent, 0 if empty else None, 0)
            self.cur.append("}")  # type: ignore[union-attr]
        self.fresh = False
        self.prev_type = "RBRACE"

    def table(self, tok: Token, indent: int) -> None:
        """An inline rate table (one RATES_BLOCK token) for a statement at `indent`."""
        block = tok.value
        rows, comments, diags = read_rows(block, self.path, tok.line, tok.column)
        if diags:
            raise _Invalid
        self.token(tok, text="{")
        opening, body = _table_body(block, tok.line, tok.column, rows, comments, indent)
        if opening is not None:
            self._trailing(opening)
        if not body and opening is None:
            self.cur.append("}")  # type: ignore[union-attr]
        else:
            self.lines.append("".join(self.cur))  # type: ignore[arg-type]
            self.lines.extend(body)
            self.cur = [INDENT * indent, "}"]
            self.broken = False
        self.fresh = False
        self.prev_type = "RBRACE"

    def finish(self) -> str:
        gap = self.gaps[self.k]
        assert self.k == len(self.tokens), "the formatter skipped tokens"
        if gap.trailing is not None:
            self._trailing(gap.trailing)
        blank: bool | None = None if self.cur is not None else False
        for had_blank, comment in gap.comments:
            self._newline(0, had_blank if blank is None else blank)
            self.cur.append(comment)  # type: ignore[union-attr]
            blank = None
        if self.cur is not None:
            self.lines.append("".join(self.cur))
        if not self.lines:
            return ""
        return "\n".join(line.rstrip() for line in self.lines) + "\n"


# ---------------------------------------------------------------- rate tables


def _table_body(block: str, line0: int, col0: int, rows, comments: list[tuple[Span, str]], indent: int):
    """Lay out the rows and comments of a rate table: (comment after `{`, body lines)."""
    opening: str | None = None
    # events: [row, trailing comment, comments inside the row] or (span, comment) for a comment line
    events: list = []
    ci, nc = 0, len(comments)

    def place(span: Span, text: str) -> None:
        nonlocal opening
        if not events:
            if span.line == line0 and opening is None:
                opening = text.rstrip()
                return
        else:
            last = events[-1]
            if isinstance(last, list) and last[1] is None and last[0].span.end_line == span.line:
                last[1] = text.rstrip()
                return
        events.append((span, text.rstrip()))

    for row in rows:
        s = row.span
        while ci < nc and (comments[ci][0].line, comments[ci][0].col) < (s.line, s.col):
            place(*comments[ci])
            ci += 1
        inside = []
        while ci < nc and (comments[ci][0].line, comments[ci][0].col) < (s.end_line, s.end_col):
            inside.append(comments[ci])
            ci += 1
        events.append([row, None, inside])
    while ci < nc:
        place(*comments[ci])
        ci += 1

    plain = [e[0] for e in events if isinstance(e, list) and not e[2]]
    pw = max((len(r.prefix) + 2 * r.prefix_quoted for r in plain), default=0)
    dw = max((len(r.destination) + 2 for r in plain), default=0)
    pad = INDENT * (indent + 1)
    out: list[str] = []
    prev_end = line0
    starts: list[int] | None = None
    for e in events:
        if isinstance(e, tuple):
            span, text = e
            if out and span.line - prev_end >= 2:
                out.append("")
            out.append(pad + text)
            prev_end = span.line
            continue
        row, trailing, inside = e
        s = row.span
        if out and s.line - prev_end >= 2:
            out.append("")
        prev_end = s.end_line
        if inside:
            if starts is None:
                starts = [0] + [m.end() for m in re.finditer("\n", block)]
            lines = _broken_row(block, starts, line0, col0, s, indent)
            out.extend(lines[:-1])
            last = lines[-1]
        else:
            prefix = f'"{row.prefix}"' if row.prefix_quoted else row.prefix
            dest = f'"{row.destination}"'
            last = f"{pad}{prefix.ljust(pw)} {dest.ljust(dw)} {' '.join(row.words)}"
        out.append(last if trailing is None else f"{last}  {trailing}")
    return opening, out


def _broken_row(block: str, starts: list[int], line0: int, col0: int, s: Span, indent: int) -> list[str]:
    """A row with comments inside it: its words on one line until each comment, then on.

    The first line never holds more than the prefix and the destination: a first line that
    reads as a whole row would let the reader's one-line fast path end the row there.
    """

    def offset(line: int, col: int) -> int:
        k = line - line0
        return col - col0 if k == 0 else starts[k] + col - 1

    text = block[offset(s.line, s.col) : offset(s.end_line, s.end_col)]
    lines: list[str] = []
    cur: list[str] = []
    glue = False
    for m in _ROW_PIECE.finditer(text):
        kind, piece = m.lastgroup, m.group()
        if not lines and len(cur) == 2 and kind != "c":
            lines.append(" ".join(cur))  # the prefix and the destination alone on the first line
            cur = []
        if kind == "c":
            lines.append(" ".join(cur) + "  " + piece.rstrip() if cur else piece.rstrip())
            cur, glue = [], False
        elif kind == "sl" and cur:
            cur[-1] += "/"
            glue = True
        elif glue and cur:
            cur[-1] += piece
            glue = False
        else:
            cur.append(piece)
            glue = kind == "sl"
    lines.append(" ".join(cur))
    first = INDENT * (indent + 1)
    cont = INDENT * (indent + 1 + CONTINUATION)
    return [(first if i == 0 else cont) + line for i, line in enumerate(lines)]


# ---------------------------------------------------------------- the walk over the tree


def _statements(children: list) -> list[list]:
    """Group the children between `{` and `}` into statements (one line each)."""
    stmts: list[list] = []
    for c in children:
        if isinstance(c, Tree):
            if c.data in _FLATTENED:
                stmts.extend([x] for x in c.children)
            else:
                stmts.append([c])
        elif stmts and (c.type == "COMMA" or c.type not in _STATEMENT_KEYWORDS):
            stmts[-1].append(c)  # the comma between two slots stays at the end of the line
        else:
            stmts.append([c])
    return stmts


class _Walker:
    def __init__(self, printer: _Printer):
        self.p = printer

    def file(self, tree: Tree) -> None:
        prev_use = False
        for n, item in enumerate(tree.children):
            is_use = isinstance(item, Tree) and item.data == "use"
            self.p.line(0, 0 if n == 0 or (is_use and prev_use) else 1)
            self.node(item, 0)
            prev_use = is_use

    def node(self, node, indent: int) -> None:
        if isinstance(node, Tree):
            self.tree(node, indent)
        elif node.type == "RATES_BLOCK":
            self.p.table(node, indent)
        else:
            self.p.token(node)

    def tree(self, tree: Tree, indent: int) -> None:
        ch = tree.children
        n = len(ch)
        j = 0
        while j < n:
            c = ch[j]
            if isinstance(c, Tree):
                self.tree(c, indent)
            elif c.type == "LBRACE":
                end = j + 1
                while not (isinstance(ch[end], Token) and ch[end].type == "RBRACE"):
                    end += 1
                self.p.token(c)
                stmts = _statements(ch[j + 1 : end])
                for k, stmt in enumerate(stmts):
                    self.p.line(indent + 1, 0 if k == 0 else None)
                    for part in stmt:
                        self.node(part, indent + 1)
                self.p.close(ch[end], indent, not stmts)
                j = end
            elif c.type == "RATES_BLOCK":
                self.p.table(c, indent)
            else:
                # a minus sign (`-5.00 EUR`) is spaced from the word before it, tight to its number
                self.p.token(c, glue=tree.data in _GLUED_PARENS and c.type == "LPAR",
                             spaced=tree.data == "signed_money" and c.type == "MINUS")
            j += 1


# ---------------------------------------------------------------- entry points


def _syntax_diags(text: str, path: str) -> list[Diagnostic]:
    _, diags = parse_text(text, path)
    return diags or [Diagnostic("E012", "the file could not be read", Span(path, 1, 1, 1, 2))]


def _tokens(tree: Tree) -> list[Token]:
    out: list[Token] = []
    stack: list = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Tree):
            stack.extend(reversed(node.children))
        else:
            out.append(node)
    return out


def format_text(text: str, path: str = "<text>") -> tuple[str | None, list[Diagnostic]]:
    """The canonical layout of a rule file, or (None, [the syntax error]) if it does not parse.

    Only whitespace changes; the result ends with one newline (an empty file stays empty).
    """
    text = text.replace("\r\n", "\n")
    try:
        tree = parse_tree(text)
    except UnexpectedInput:
        return None, _syntax_diags(text, path)
    except RecursionError:
        return None, [Diagnostic("E013", "the file is nested too deeply to read", Span(path, 1, 1, 1, 2))]
    tokens = _tokens(tree)
    for tok in tokens:
        if tok.type == "NUMBER" and not _valid_number(tok.value):
            return None, _syntax_diags(text, path)
    printer = _Printer(tokens, _gaps(text, tokens), path)
    try:
        _Walker(printer).file(tree)
    except _Invalid:
        return None, _syntax_diags(text, path)
    except RecursionError:
        return None, [Diagnostic("E013", "the file is nested too deeply to format", Span(path, 1, 1, 1, 2))]
    return printer.finish(), []


def format_file(path: Path | str, display: str | None = None) -> tuple[bool, str | None, list[Diagnostic]]:
    """Format one file without writing it: (changed, formatted text or None, diagnostics).

    `changed` compares the formatted text with the file's bytes (a CRLF file or one with a
    byte-order mark is changed even when its layout is canonical).
    """
    name = display or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return False, None, [Diagnostic("E003", f"cannot read the file: {e.strerror or e}", Span(name, 0, 0, 0, 0))]
    text, diags = decode(data, name)
    if text is None:
        return False, None, diags
    new, diags = format_text(text, name)
    if new is None:
        return False, None, diags
    return new.encode("utf-8") != data, new, []
