"""Exact money: Decimal for the row executor, scaled integers for the batch executor.

Rounding modes are named as in the agreement language:

- ``half_up``: ties away from zero (0.0000005 -> 0.000001)
- ``half_even``: ties to the even neighbour (banker's rounding)
- ``up``: away from zero (ceiling for positive amounts)
- ``down``: towards zero (truncation)

The integer helpers below compute ``round(n / d)`` with the same modes on Python ints or NumPy
int64 arrays, so that both executors round identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal

from icdsl.spans import NO_SPAN, Span

ROUNDING_MODES = {
    "half_up": ROUND_HALF_UP,
    "half_even": ROUND_HALF_EVEN,
    "up": ROUND_UP,
    "down": ROUND_DOWN,
}


@dataclass(frozen=True, slots=True)
class Rounding:
    """How an amount is rounded: ``mode`` one of half_up, half_even, up, down."""

    precision: int = 6
    mode: str = "half_up"
    span: Span = NO_SPAN


def quantum(precision: int) -> Decimal:
    """Decimal('0.000001') for precision 6."""
    return Decimal(1).scaleb(-precision)


def round_decimal(value: Decimal, precision: int, mode: str) -> Decimal:
    return value.quantize(quantum(precision), rounding=ROUNDING_MODES[mode])


def to_scaled(value: Decimal, scale: int) -> int:
    """Exact Decimal -> integer of 10**-scale units; raises if it is not exact at that scale."""
    scaled = value.scaleb(scale)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {scale} decimals")
    return int(scaled)


def from_scaled(units: int, scale: int) -> Decimal:
    return Decimal(units).scaleb(-scale)


def div_round_int(n: int, d: int, mode: str) -> int:
    """round(n / d) for Python ints, d > 0, in the given mode (sign-aware)."""
    if d <= 0:
        raise ValueError("divisor must be positive")
    sign = -1 if n < 0 else 1
    q, r = divmod(abs(n), d)
    if r:
        if mode == "up":
            q += 1
        elif mode == "half_up":
            if 2 * r >= d:
                q += 1
        elif mode == "half_even":
            if 2 * r > d or (2 * r == d and q % 2 == 1):
                q += 1
        elif mode != "down":
            raise ValueError(f"unknown rounding mode {mode!r}")
    return sign * q


def div_round_array(n, d: int, mode: str):
    """Vectorized div_round_int over a NumPy int64 array ``n`` (any sign), scalar d > 0."""
    # lazy: numpy only for arrays (the language imports this module and never needs it)
    import numpy as np

    n = np.asarray(n, dtype=np.int64)
    a = np.abs(n)
    q, r = np.divmod(a, d)
    if mode == "up":
        q = q + (r > 0)
    elif mode == "half_up":
        q = q + (2 * r >= d)
    elif mode == "half_even":
        q = q + ((2 * r > d) | ((2 * r == d) & (q % 2 == 1)))
    elif mode != "down":
        raise ValueError(f"unknown rounding mode {mode!r}")
    return np.where(n < 0, -q, q)
