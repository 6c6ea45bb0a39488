"""Pre-invoice validation (moved to :mod:`icdsl.cycle.validation`, with its registry of
validators; kept for the store's callers and plugins)."""

from icdsl.cycle.validation import (
    ACCEPT_ALL,
    BUILTIN,
    SEVERITIES,
    Currencies,
    Finding,
    LineGroup,
    Policy,
    RatingRejects,
    RatingValues,
    TrafficProfile,
    ValidationContext,
    Validator,
    register,
    run_validators,
    unregister,
    validators,
)

__all__ = ["ACCEPT_ALL", "BUILTIN", "SEVERITIES", "Currencies", "Finding", "LineGroup", "Policy", "RatingRejects",
           "RatingValues", "TrafficProfile", "ValidationContext", "Validator", "register", "run_validators",
           "unregister", "validators"]
