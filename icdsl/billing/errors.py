"""Errors of the billing store. Each message says what happened and what to do."""

from __future__ import annotations

from icdsl.cycle import errors as engine


class StoreError(Exception):
    """A problem with the store or with what was asked of it (the CLI exits with 1)."""


class AgreementVersionConflict(StoreError):
    """An agreement version already loaded with a different text."""


class RetroactiveChange(AgreementVersionConflict):
    """A new version that would change what a finalized cycle billed (`icdsl rerate` does it)."""


class FxRateConflict(StoreError):
    """An FX rate already loaded with a different value."""


class IngestError(StoreError):
    """A traffic file that cannot be ingested as a whole."""


class CycleError(StoreError, engine.CycleError):
    """A billing cycle cannot be run or changed as asked (an error of the cycle engine,
    :class:`icdsl.cycle.errors.CycleError`, leaves the store as this one)."""


class ReconciliationError(StoreError, engine.ReconciliationError):
    """Counts or amounts that do not add up: a bug, never the user's data."""


class CycleBusy(CycleError):
    """Another session is running a cycle of the same partner right now."""


class CycleStateError(CycleError):
    """The cycle is not in a state that allows the operation."""


class ValidationError(CycleError):
    """A rated cycle failed its checks; nothing was committed."""
