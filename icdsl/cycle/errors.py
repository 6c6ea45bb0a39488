"""Errors of the cycle engine. Each message says what happened and what to do.

The billing store's :class:`icdsl.billing.errors.CycleError` is a subclass of
:class:`CycleError`: the store turns an engine error into its own on the way out, so the
command line reports both the same way."""

from __future__ import annotations


class CycleError(Exception):
    """A billing cycle cannot be computed as asked (missing FX rate, unknown line dimension,
    a charge that cannot be evaluated...)."""


class ReconciliationError(CycleError):
    """Counts or amounts of a cycle that do not add up: a bug, never the user's data."""
