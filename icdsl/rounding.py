"""Rounding modes: the contract of the ``icdsl_rounding_modes`` hook and the built-in modes.

A rounding mode rounds ``n / d`` (integers, ``d > 0``, ``n`` of any sign) to an integer. Both
executors express every rounding that way (amounts are exact fractions of scaled integers), so
a mode implements it twice, identically: ``round_int`` on Python ints (row executor) and
``round_array`` on NumPy int64 arrays (batch executor). ``round_decimal`` (a Decimal to N
decimals) follows from ``round_int``.

The built-in modes wrap :mod:`icdsl.money` (``half_up``, ``half_even``, ``up``, ``down``) and
are registered through the hook like a plugin's. :func:`div_round_int` and
:func:`div_round_array` take any mode name: the built-ins go straight to :mod:`icdsl.money`,
other names are looked up in the active plugin manager (:func:`icdsl.plugins.active_plugin_manager`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from icdsl import money
from icdsl.hookspecs import hookimpl
from icdsl.plugins import active_plugin_manager, rounding_modes

ICDSL_HOOK_API = 1


class RoundingMode:
    """One named rounding mode. Subclass it and register the class with ``icdsl_rounding_modes``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def round_int(self, n: int, d: int) -> int:
        """round(n / d) for Python ints; ``d > 0``; the sign of ``n`` is the caller's."""
        raise NotImplementedError

    def round_array(self, n: Any, d: int) -> Any:
        """round(n / d) over a NumPy int64 array ``n`` (any sign), scalar ``d > 0``: an int64 array.
        Must equal ``round_int`` element by element (``icdsl.testing.check_rounding_mode``)."""
        raise NotImplementedError

    def round_decimal(self, value: Decimal, precision: int) -> Decimal:
        """``value`` rounded to ``precision`` decimals with this mode, exactly."""
        if not value.is_finite():
            raise ValueError(f"cannot round {value}")
        sign, digits, exp = value.as_tuple()
        coeff = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        shift = int(exp) + precision
        if shift >= 0:
            units = coeff * 10**shift
        else:
            units = self.round_int(coeff, 10**-shift)
        return Decimal(units).scaleb(-precision)


class _Builtin(RoundingMode):
    def round_int(self, n: int, d: int) -> int:
        return money.div_round_int(n, d, self.name)

    def round_array(self, n: Any, d: int) -> Any:
        return money.div_round_array(n, d, self.name)

    def round_decimal(self, value: Decimal, precision: int) -> Decimal:
        return money.round_decimal(value, precision, self.name)


class HalfUp(_Builtin):
    name = "half_up"
    description = "to the nearest; ties away from zero (0.0000005 -> 0.000001)"


class HalfEven(_Builtin):
    name = "half_even"
    description = "to the nearest; ties to the even neighbour (banker's rounding)"


class Up(_Builtin):
    name = "up"
    description = "away from zero (the ceiling of a positive amount)"


class Down(_Builtin):
    name = "down"
    description = "towards zero (truncation)"


BUILTIN = (HalfUp, HalfEven, Up, Down)
BUILTIN_NAMES = tuple(m.name for m in BUILTIN)


@hookimpl
def icdsl_rounding_modes():
    return list(BUILTIN)


def mode(name: str, pm: Any = None) -> RoundingMode:
    """The mode called ``name`` in ``pm`` (default: the active plugin manager); KeyError if none."""

    modes = rounding_modes(pm if pm is not None else active_plugin_manager())
    try:
        return modes[name]
    except KeyError:
        raise KeyError(f"unknown rounding mode {name!r} (known: {', '.join(sorted(modes))})") from None


def div_round_int(n: int, d: int, name: str, pm: Any = None) -> int:
    """``money.div_round_int`` for any registered mode."""
    if name in BUILTIN_NAMES:
        return money.div_round_int(n, d, name)
    if d <= 0:
        raise ValueError("divisor must be positive")
    return mode(name, pm).round_int(n, d)


def div_round_array(n: Any, d: int, name: str, pm: Any = None) -> Any:
    """``money.div_round_array`` for any registered mode."""
    # lazy: numpy only for arrays (registering the built-in modes must not load it)
    import numpy as np

    if name in BUILTIN_NAMES:
        return money.div_round_array(n, d, name)
    if d <= 0:
        raise ValueError("divisor must be positive")
    return np.asarray(mode(name, pm).round_array(np.asarray(n, dtype=np.int64), d), dtype=np.int64)


def round_decimal(value: Decimal, precision: int, name: str, pm: Any = None) -> Decimal:
    """``money.round_decimal`` for any registered mode."""
    if name in BUILTIN_NAMES:
        return money.round_decimal(value, precision, name)
    return mode(name, pm).round_decimal(value, precision)
