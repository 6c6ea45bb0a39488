"""The errors of reconciliation: each says what is wrong, where, and what to do."""

from __future__ import annotations


class ReconcileError(Exception):
    """A reconciliation that cannot be made as asked (an invoice in a currency our lines cannot be
    converted to, their detail without the columns it needs...). ``help``: what to do."""

    def __init__(self, message: str, *, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help

    def __str__(self) -> str:
        return self.message + (f" ({self.help})" if self.help else "")
