"""Errors that cross layers: raised by a charge type (a built-in or a plugin's) and reported by
whoever evaluates it (the compiler, the executors, a cycle).

They sit at the bottom so that the plugin manager can turn a plugin's failure into one of them
without importing the charges package; :mod:`icdsl.charges.lines` re-exports them.
"""

from __future__ import annotations

from icdsl.spans import NO_SPAN, Span


class ChargeError(Exception):
    """A charge cannot be evaluated as written (bad data, a missing plugin): the message says
    what and what to do; ``span`` is the rule's place in the source."""

    def __init__(self, message: str, span: Span = NO_SPAN):
        super().__init__(message)
        self.message = message
        self.span = span

    def __str__(self) -> str:
        return f"{self.span}: {self.message}" if self.span != NO_SPAN else self.message


class ChargeHold(ChargeError):
    """The cycle cannot be invoiced without a person looking at it (a quantity shortfall with no
    traffic to value it): billing holds the cycle for review."""
