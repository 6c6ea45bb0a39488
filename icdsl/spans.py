"""Where a thing was written: a ``Span`` is a region of a source file (a rule, a deck row).

The bottom of the house: the language puts one on every AST node, the plan keeps them, and
rated records, charge lines and errors point back to the words that produced them. It imports
nothing of icdsl.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file: 1-based lines and columns, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NO_SPAN = Span("<builtin>", 0, 0, 0, 0)
