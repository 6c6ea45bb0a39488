"""The evaluation contract of charge types: what a charge type subclasses to evaluate its charges.

Every charge type, built-in or a plugin's, is registered through ``icdsl_charge_types`` (see
:mod:`icdsl.charges.base` for ``check`` and ``compile``) and evaluates its charges in one of
two ways, by subclassing one of the classes below instead of ``ChargeType`` directly (the
dispatcher that calls them is :mod:`icdsl.charges.evaluate`, which re-exports them):

**Cycle-level** (:class:`CycleChargeType`): recurring and one-time fees, events, tiers,
discounts, commitments, revenue shares, a plugin's slice-hours::

    class SliceHours(CycleChargeType):
        name = "slice_hours"
        stage = "charge"            # charge | discount | commitment | share
        def evaluate(self, charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
            hours = ctx.event_units("slice_embb")
            price = charge.param("embb")
            return [ctx.line(charge, description=f"{hours} eMBB slice-hours", exact=price.amount * hours,
                             currency=price.currency, quantity=hours, unit="hour",
                             unit_price=price.amount, application=ctx.key(charge, "embb", ctx.cycle_label))]

``evaluate`` is pure: the same context gives the same lines (same keys, same amounts). Use
``ctx.line`` (one rounding to the minor unit, the rule's span, the key), ``ctx.measure`` and
``ctx.usage_of`` (traffic in scope), ``ctx.event_units``, ``ctx.inventory``, ``ctx.billed``.
Raise :class:`~icdsl.charges.lines.ChargeError` (with ``charge.span``) when a charge cannot be
evaluated. Stages run in the order of deductions (``charge``, ``discount``, ``commitment``,
``share``): a type sees the lines of the earlier stages in ``ctx.lines``.

**Per record** (:class:`RecordChargeType`, ``per_record = True``): surcharges. Both executors
evaluate them on the rated records, so the type implements the same amount twice:

- ``evaluate_record(charge, rec: RecordView) -> RecordAmount | None``: the row executor's
  (exact ``Fraction`` amount in the charge's currency, and a sentence for the trace);
- ``evaluate_batch(charge, batch: BatchView) -> BatchAmounts``: the batch executor's, for the
  records of one agreement service at once: which records it applies to and the exact amount
  of each as ``num / den`` in units of 10**-precision (int64 NumPy arrays; ``object`` arrays of
  Python ints where int64 could overflow).

The executor rounds each amount once, at the service's precision and mode (like the record's
amount); the two must agree to the last digit (``tests/test_charges_surcharge.py`` checks the
built-in surcharge on random plans and records).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from icdsl.charges.base import ChargeType
from icdsl.charges.conditions import RecordEnv, holds, holds_columns
from icdsl.charges.context import ChargeContext
from icdsl.charges.lines import ChargeLine
from icdsl.plan.model import Charge, Expr

if TYPE_CHECKING:
    from icdsl.charges.conditions import Col, ColumnEnv


class CycleChargeType(ChargeType):
    """A charge evaluated once per cycle into invoice lines."""

    per_record: ClassVar[bool] = False
    #: where its lines go in the order of deductions: charge | discount | commitment | share
    stage: ClassVar[str] = "charge"

    def evaluate(self, charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
        raise NotImplementedError(f"charge type '{self.name}' does not implement evaluate()")


@dataclass(frozen=True, slots=True)
class RecordAmount:
    """A per-record charge's exact amount for one record (the executor rounds it)."""

    exact: Fraction
    currency: str
    explanation: str


@dataclass(slots=True)
class RecordView:
    """One rated record, for :meth:`RecordChargeType.evaluate_record`.

    ``kind``: time | count | volume; ``billed``: billed seconds, units or bytes; ``per``: the
    divisor of the service's unit (60 for a price per minute); ``traffic``: the record's exact
    amount before its rounding; ``amount``: the rounded one; ``precision`` and ``mode``: the
    service's rounding."""

    env: RecordEnv
    kind: str
    billed: int
    per: int
    traffic: Fraction
    amount: Any
    currency: str
    precision: int
    mode: str

    def holds(self, expr: Expr | None) -> bool:
        return True if expr is None else holds(expr, self.env)

    def value(self, name: str) -> Any:
        return self.env.field(name)


@dataclass(slots=True)
class BatchView:
    """The rated records of one agreement service in a batch, for
    :meth:`RecordChargeType.evaluate_batch`: ``n`` records; ``kind``, ``per``, ``precision``,
    ``mode``, ``currency`` as in :class:`RecordView`; ``billed`` (int64); ``traffic_num`` /
    ``traffic_den``: each record's exact amount in units of 10**-precision; ``env`` reads
    fields as columns."""

    n: int
    env: ColumnEnv
    kind: str
    billed: np.ndarray
    per: int
    traffic_num: np.ndarray
    traffic_den: int
    currency: str
    precision: int
    mode: str

    def holds(self, expr: Expr | None) -> np.ndarray:

        return np.ones(self.n, dtype=bool) if expr is None else holds_columns(expr, self.env)

    def column(self, name: str) -> Col:
        return self.env.field(name)


@dataclass(slots=True)
class BatchAmounts:
    """Which records a per-record charge applies to, and the exact amount of each:
    ``num / den`` in units of 10**-precision (``num``: int64, or object for big values)."""

    applies: np.ndarray
    num: np.ndarray
    den: int
    currency: str


class RecordChargeType(ChargeType):
    """A charge evaluated on every rated record by both executors (see the module's documentation)."""

    per_record: ClassVar[bool] = True
    stage: ClassVar[str] = "charge"

    def evaluate_record(self, charge: Charge, rec: RecordView) -> RecordAmount | None:
        raise NotImplementedError(f"charge type '{self.name}' does not implement evaluate_record()")

    def evaluate_batch(self, charge: Charge, batch: BatchView) -> BatchAmounts:
        raise NotImplementedError(f"charge type '{self.name}' does not implement evaluate_batch()")


# --------------------------------------------------------------------------- registry
