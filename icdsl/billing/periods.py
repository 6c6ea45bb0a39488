"""Billing periods (moved to :mod:`icdsl.cycle.periods`; kept for the store's many callers)."""

from icdsl.cycle.periods import (
    FREQUENCIES,
    Period,
    PeriodError,
    iso_week,
    local_midnight,
    make_period,
    month,
    parse_period,
    period_containing,
    quarter,
    zone,
)

__all__ = ["FREQUENCIES", "Period", "PeriodError", "iso_week", "local_midnight", "make_period", "month",
           "parse_period", "period_containing", "quarter", "zone"]
