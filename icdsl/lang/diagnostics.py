"""Diagnostics are data: a code, a span, a message and a help line.

Rendered like a modern compiler::

    agreements/orfr.icd:12:21: error[E203]: unknown calendar 'fr_bussiness'
       |
    12 |     calendar fr_bussiness
       |              ^^^^^^^^^^^^
       = help: did you mean 'fr_business'?

Every phase returns its diagnostics instead of raising, so that all problems of a file are
reported at once and in source order. Codes are stable (documented in docs/errors.md):
E0xx input and syntax, E1xx names and references, E2xx values and units, E3xx consistency
of a contract (periods, tiers, splits), E4xx files and decks, W... warnings.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from icdsl.spans import Span


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    help: str | None = None
    severity: str = "error"  # error | warning

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self):
        return (self.span.file, self.span.line, self.span.col, self.code)

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.col,
            "end_line": self.span.end_line,
            "end_column": self.span.end_col,
            "help": self.help,
        }


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelled name, or None."""
    cands = list(dict.fromkeys(candidates))
    lowered = {c.lower(): c for c in cands}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name, cands, n=1, cutoff=0.6)
    if not match:
        match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        match = [lowered[m] for m in match]
    return match[0] if match else None


def did_you_mean(name: str, candidates: Iterable[str], what: str = "") -> str | None:
    cands = sorted(set(candidates))
    best = suggest(name, cands)
    if best:
        return f"did you mean '{best}'?"
    if cands and len(cands) <= 12:
        return f"{what or 'known names'}: " + ", ".join(cands)
    return None


class SourceCache:
    """File texts by path, for rendering the source line under a diagnostic."""

    def __init__(self) -> None:
        self._texts: dict[str, list[str]] = {}

    def add(self, path: str, text: str) -> None:
        self._texts[path] = text.splitlines()

    def line(self, path: str, lineno: int) -> str | None:
        lines = self._texts.get(path)
        if lines is None or not (1 <= lineno <= len(lines)):
            return None
        return lines[lineno - 1]


def render(diag: Diagnostic, sources: SourceCache | None = None) -> str:
    s = diag.span
    loc = f"{s.file}:{s.line}:{s.col}" if s.line else s.file
    out = [f"{loc}: {diag.severity}[{diag.code}]: {diag.message}"]
    text = sources.line(s.file, s.line) if sources and s.line else None
    if text is not None:
        text = text.replace("\t", " ")
        if len(text) > 200:  # a huge line: show the part around the span
            start = max(0, s.col - 80)
            shown = text[start : start + 160]
            col = s.col - start
        else:
            shown, col = text, s.col
        width = len(str(s.line))
        end = s.end_col if s.end_line == s.line and s.end_col > s.col else s.col + 1
        carets = "^" * max(1, min(end - s.col, len(shown) - col + 2))
        pad = " " * width
        out.append(f"{pad} |")
        out.append(f"{s.line} | {shown}")
        out.append(f"{pad} | {' ' * (col - 1)}{carets}")
        if diag.help:
            out.append(f"{pad} = help: {diag.help}")
    elif diag.help:
        out.append(f"  = help: {diag.help}")
    return "\n".join(out)


def render_all(diags: Iterable[Diagnostic], sources: SourceCache | None = None) -> str:
    return "\n\n".join(render(d, sources) for d in sorted(diags, key=Diagnostic.sort_key))


def to_json(diags: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in sorted(diags, key=Diagnostic.sort_key)], indent=2)


def summary(diags: list[Diagnostic]) -> str:
    errors = sum(d.is_error for d in diags)
    warnings = len(diags) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts) or "no problems"
