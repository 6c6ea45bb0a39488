"""Invoice arithmetic (moved to :mod:`icdsl.cycle.amounts`; kept for the store's callers)."""

from icdsl.cycle.amounts import (
    EXACT,
    EXEMPT_NOTE,
    REVERSE_CHARGE_NOTE,
    TAX_KINDS,
    TAX_ROUNDING,
    Tax,
    compute_tax,
    convert,
    exact_sum,
    is_currency,
    minor_units,
    plain_number,
    present,
    round_line,
    rounding_text,
)

__all__ = ["EXACT", "EXEMPT_NOTE", "REVERSE_CHARGE_NOTE", "TAX_KINDS", "TAX_ROUNDING", "Tax", "compute_tax", "convert",
           "exact_sum", "is_currency", "minor_units", "plain_number", "present", "round_line", "rounding_text"]
