"""The evaluation contract of charge types, and the cycle's dispatcher.

Every charge type, built-in or a plugin's, is registered through ``icdsl_charge_types`` (see
:mod:`icdsl.charges.base` for ``check`` and ``compile``) and evaluates its charges in one of
two ways, by subclassing one of the classes below instead of ``ChargeType`` directly:

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

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from icdsl.charges.base import ChargeType
from icdsl.charges.conditions import RecordEnv, fields_of, holds
from icdsl.charges.context import ChargeContext, CycleTotals
from icdsl.charges.lines import STAGES, ChargeError, ChargeLine
from icdsl.plan.model import Agreement, Charge, Expr, Plan

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
        from icdsl.charges.conditions import holds_columns

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


def _types(pm: Any = None) -> dict[str, Any]:
    from icdsl.plugins import active_plugin_manager, charge_types

    return charge_types(pm if pm is not None else active_plugin_manager())


def _builtin_instance(kind: str) -> Any:
    from icdsl.charges import builtin

    cache = _builtin_instance.__dict__.setdefault("cache", {})
    got = cache.get(kind)
    if got is None:
        for cls in builtin.BUILTIN:
            if cls.name == kind:
                got = cache[kind] = cls()
    return got


def charge_type(kind: str, pm: Any = None, span=None) -> Any:
    """The registered charge type of ``kind`` (built-ins without consulting the plugins)."""
    got = _builtin_instance(kind)
    if got is not None:
        return got
    got = _types(pm).get(kind)
    if got is None:
        raise ChargeError(f"charge type '{kind}' is not available: is the plugin that provides it installed? "
                          "('icdsl plugins' lists them)", span)
    return got


def record_charges(agreement: Agreement, direction: str, service: str, pm: Any = None) -> list[tuple[Charge, Any]]:
    """The per-record charges of an agreement that apply to (direction, service), with their
    types, in the agreement's order. Charges of types not installed are left to the cycle's
    dispatcher, which reports them."""
    out = []
    for c in agreement.charges:
        if c.applies_to and (direction, service) not in c.applies_to:
            continue
        t = _builtin_instance(c.kind)
        if t is None:
            t = _types(pm).get(c.kind)
        if t is not None and getattr(t, "per_record", False):
            out.append((c, t))
    return out


def needs_cycle_totals(plan: Plan, pm: Any = None) -> bool:
    """True when a per-record charge's condition reads ``cycle.*``: its amounts are final only
    once the cycle's totals are known (rate the cycle, compute :class:`CycleTotals`, then
    evaluate the per-record charges again with them)."""
    for ag in plan.agreements:
        for c in ag.charges:
            when = c.param("when")
            if not (isinstance(when, Expr) and any(f.startswith("cycle.") for f in fields_of(when))):
                continue
            t = _builtin_instance(c.kind) or _types(pm).get(c.kind)
            if t is not None and getattr(t, "per_record", False):
                return True
    return False


# --------------------------------------------------------------------------- the cycle


def _stage_of(t: Any) -> int:
    stage = getattr(t, "stage", "charge")
    return STAGES.index(stage) if stage in STAGES else 0


def _when_holds(charge: Charge, ctx: ChargeContext) -> bool:
    when = charge.param("when")
    if not isinstance(when, Expr):
        return True
    ag = ctx.agreement
    totals = CycleTotals.from_usage(
        [u for u in ctx.usage if u.partner == ctx.partner.code and u.agreement == ag.name],
        {ctx.partner.code: ctx.event_units()}, {ctx.partner.code: [ag.name]})
    env = RecordEnv({}, {}, ctx.partner, ctx.partner.code, totals, ag.name, ag.timezone)
    return holds(when, env)


def evaluate_cycle(ctx: ChargeContext, pm: Any = None) -> list[ChargeLine]:
    """Every cycle-level charge of ``ctx.agreement``, in the order of deductions: fees and
    tiers, then discounts, then commitments (measured after the discounts), then revenue shares.
    Per-record charges are left out: the executors evaluate them
    (:func:`record_charge_lines` makes their lines). A charge with ``, when`` is evaluated only
    when its condition holds for the partner and the cycle's totals."""
    typed = []
    for i, c in enumerate(ctx.agreement.charges):
        t = charge_type(c.kind, pm, c.span)
        if getattr(t, "per_record", False):
            continue
        if not callable(getattr(t, "evaluate", None)):
            raise ChargeError(f"charge type '{c.kind}' cannot be evaluated: its plugin implements no evaluate()",
                              c.span)
        typed.append((_stage_of(t), i, c, t))
    typed.sort(key=lambda x: (x[0], x[1]))
    lines: list[ChargeLine] = []
    for _, _, c, t in typed:
        if not _when_holds(c, ctx):
            continue
        got = t.evaluate(c, replace(ctx, lines=tuple(lines)))
        lines.extend(got)
    return lines


def record_charge_lines(plan: Plan, tables: Iterable[Any], cycle_label: str = "") -> list[ChargeLine]:
    """Invoice lines of the per-record charges (the side table of
    :func:`icdsl.rating.batch.rate_batch_with_charges`, in one table or in chunks): one line per
    (partner, agreement version, charge, currency): the exact sum of the records' (rounded)
    amounts, rounded once to the minor unit. Its key is the charge's for the cycle."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from icdsl.charges.keys import application_key
    from icdsl.charges.lines import exact_text, round_money
    from icdsl.plan.model import Span

    keys = ("partner", "agreement", "agreement_version", "agreement_hash", "kind", "charge", "rule", "currency")
    acc: dict[tuple, list] = {}
    for t in tables:
        if t.num_rows == 0:
            continue
        cols = {k: pc.cast(t.column(k), pa.string()) if k != "agreement_version" else t.column(k) for k in keys}
        g = pa.table({**cols, "amount": t.column("amount")}).group_by(list(keys), use_threads=False).aggregate(
            [("amount", "sum"), ("amount", "count")])
        for row in g.to_pylist():
            k = tuple(row[x] for x in keys)
            a = acc.setdefault(k, [0, Fraction(0)])
            a[0] += row["amount_count"]
            a[1] += Fraction(row["amount_sum"])
    versions = {(a.name, a.version): a for a in plan.agreements}
    out = []
    for (partner, name, version, sha, kind, charge, rule, cur), (count, total) in sorted(acc.items()):
        ag = versions.get((name, version))
        mode = ag.rounding.mode if ag is not None else "half_up"
        charge_obj = next((c for c in ag.charges if c.name == charge and c.kind == kind), None) if ag else None
        span = charge_obj.span if charge_obj is not None else Span(*(_split_rule(rule)))
        app = application_key(name, version, charge, f"records:{partner}", cycle_label or "-")
        out.append(ChargeLine(
            kind=kind, charge_name=charge, description=f"{charge}: {count} records", quantity=Decimal(count),
            unit="record", unit_price=None,
            amount=round_money(total, cur, mode), currency=cur, dimensions={"partner": partner},
            rule_span=span, details={"records": count, "exact": exact_text(total),
                                     "rounding": f"{mode} to the minor unit, once on the line"},
            key=app, applications=(app,), stage="charge", agreement=name, agreement_version=version,
            agreement_hash=sha, scope=charge_obj.applies_to if charge_obj is not None else (),
            exact=exact_text(total)))
    return out


def _split_rule(rule: str) -> tuple[str, int, int, int, int]:
    file, _, rest = rule.rpartition(":")
    file2, _, line = file.rpartition(":")
    try:
        return (file2, int(line), int(rest), int(line), int(rest))
    except ValueError:
        return (rule, 0, 0, 0, 0)
