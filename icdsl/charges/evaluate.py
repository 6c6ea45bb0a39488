"""The cycle's dispatcher of charge types (:func:`evaluate_cycle`, :func:`record_charge_lines`).

The evaluation contract that charge types implement (:class:`CycleChargeType` for cycle-level
charges, :class:`RecordChargeType` for per-record surcharges, with their views and amounts) is
documented and defined in :mod:`icdsl.charges.contract`, and re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from icdsl.charges import builtin
from icdsl.charges.conditions import RecordEnv, fields_of, holds
from icdsl.charges.context import ChargeContext, CycleTotals
from icdsl.charges.contract import BatchAmounts as BatchAmounts
from icdsl.charges.contract import BatchView as BatchView

# the evaluation contract lives below the built-in types that implement it; re-exported
from icdsl.charges.contract import CycleChargeType as CycleChargeType
from icdsl.charges.contract import RecordAmount as RecordAmount
from icdsl.charges.contract import RecordChargeType as RecordChargeType
from icdsl.charges.contract import RecordView as RecordView
from icdsl.charges.keys import application_key
from icdsl.charges.lines import STAGES, ChargeError, ChargeLine, exact_text, round_money
from icdsl.charges.tiers import highest_tier
from icdsl.plan.model import Agreement, Charge, Expr, Plan, Span
from icdsl.plugins import active_plugin_manager, charge_types


def _types(pm: Any = None) -> dict[str, Any]:
    return charge_types(pm if pm is not None else active_plugin_manager())


def _builtin_instance(kind: str) -> Any:
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
        if c.param("option:capacity", None) is not None:
            got = highest_tier(lines, got)
        lines.extend(got)
    return lines


def record_charge_lines(plan: Plan, tables: Iterable[Any], cycle_label: str = "") -> list[ChargeLine]:
    """Invoice lines of the per-record charges (the side table of
    :func:`icdsl.rating.batch.rate_batch_with_charges`, in one table or in chunks): one line per
    (partner, agreement version, charge, currency): the exact sum of the records' (rounded)
    amounts, rounded once to the minor unit. Its key is the charge's for the cycle."""
    # lazy: pyarrow only when charges run on columns (the checker loads charge types without it)
    import pyarrow as pa
    import pyarrow.compute as pc

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
