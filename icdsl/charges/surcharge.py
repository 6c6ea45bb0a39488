"""Surcharges: an extra amount on every record of their scope for which a condition holds.

``surcharge "LABEL" PRICE when CONDITION`` or ``surcharge "LABEL" N% when CONDITION`` (plan
parameters ``amount``: a Price or a percentage as a Decimal; ``when``: an ``Expr``, absent =
every record of the scope).

- **A price per unit** counts the record's billed quantity: per ``second``/``minute``/``hour``
  the billed seconds / 1, 60, 3600 (records of a service priced by time; 0 for others); per
  ``B``/``KB``/``MB``/``GB``/``TB`` the billed bytes / the unit's bytes (binary; services
  priced by volume; 0 for others); per ``call``, ``event``, ``session`` or ``transaction``
  one per record; per any other unit (``message``...) the billed units of a service priced by
  count, one per record otherwise. A package price (``per 100 minutes``) divides by its size.
- **A percentage** is a share of the record's traffic amount *before* its rounding (connect
  fee + usage, exact).
- Each surcharge of each record is **rounded once**, at the service's precision and mode (like
  the record's amount), and is not part of the record's amount: it is a line of its own on the
  invoice (one per label), the exact sum of the records' rounded surcharges, rounded to the
  minor unit.
- A surcharge applies when its condition holds, even if its amount rounds to zero (it is
  listed, with 0).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np

from icdsl.charges.conditions import INT64_MAX
from icdsl.charges.contract import BatchAmounts, BatchView, RecordAmount, RecordView
from icdsl.charges.lines import ChargeError, exact_text
from icdsl.plan.model import Charge, Price

TIME_UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60,
              "h": 3600, "hour": 3600, "hours": 3600}
VOLUME_UNITS = {"B": 1, "byte": 1, "bytes": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
PER_RECORD_UNITS = ("call", "event", "session", "transaction")


def quantity_rule(unit: str, kind: str) -> tuple[str, int]:
    """How a price per ``unit`` counts a record of a service of ``kind``: (what, divisor) where
    what is ``billed`` (the billed seconds, bytes or units), ``one`` or ``zero``."""
    if unit in TIME_UNITS:
        return ("billed", TIME_UNITS[unit]) if kind == "time" else ("zero", 1)
    if unit in VOLUME_UNITS:
        return ("billed", VOLUME_UNITS[unit]) if kind == "volume" else ("zero", 1)
    if unit in PER_RECORD_UNITS:
        return ("one", 1)
    return ("billed", 1) if kind == "count" else ("one", 1)


def _amount(charge: Charge) -> Price | Decimal:
    a = charge.param("amount")
    if isinstance(a, Price | Decimal):
        return a
    raise ChargeError(f"surcharge '{charge.name}' needs a price per unit or a percentage", charge.span)


def row_amount(charge: Charge, rec: RecordView) -> RecordAmount | None:
    when = charge.param("when")
    if not rec.holds(when):
        return None
    a = _amount(charge)
    if isinstance(a, Price):
        what, div = quantity_rule(a.unit, rec.kind)
        q = {"billed": rec.billed, "one": 1, "zero": 0}[what]
        exact = Fraction(a.amount) * q / (div * a.per_count)
        unit = {"time": "s", "volume": "B"}.get(rec.kind, a.unit) if what == "billed" else a.unit
        text = f"{a.amount} x {q} {unit}"
        if div * a.per_count != 1:
            text += f" / {div * a.per_count}"
        return RecordAmount(exact, a.currency, f"{text} = {exact_text(exact)}")
    exact = rec.traffic * Fraction(a) / 100
    return RecordAmount(exact, rec.currency,
                        f"{format(a.normalize(), 'f')}% of {exact_text(rec.traffic)} = {exact_text(exact)}")


def mul(arr: np.ndarray, k: int) -> np.ndarray:
    """``arr * k`` exactly: int64 when it cannot overflow, else Python ints (object)."""
    if k == 0:
        return np.zeros(len(arr), dtype=np.int64)
    if arr.dtype == object:
        return arr * k
    top = int(np.abs(arr).max()) if len(arr) else 0
    if top <= INT64_MAX // abs(k):
        return arr * np.int64(k)
    return arr.astype(object) * k


def batch_amounts(charge: Charge, batch: BatchView) -> BatchAmounts:
    applies = batch.holds(charge.param("when"))
    a = _amount(charge)
    p = batch.precision
    if isinstance(a, Price):
        what, div = quantity_rule(a.unit, batch.kind)
        if what == "billed":
            q = batch.billed
        elif what == "one":
            q = np.ones(batch.n, dtype=np.int64)
        else:
            q = np.zeros(batch.n, dtype=np.int64)
        f = Fraction(a.amount) * 10**p if p >= 0 else Fraction(a.amount) / 10**-p
        num = mul(np.asarray(q, dtype=np.int64), f.numerator)
        return BatchAmounts(applies, num, f.denominator * div * a.per_count, a.currency)
    pct = Fraction(a) / 100
    num = mul(np.asarray(batch.traffic_num), pct.numerator)
    return BatchAmounts(applies, num, batch.traffic_den * pct.denominator, batch.currency)
