"""Compiling ``lcr NAME { ... }`` policies (checked) into :class:`icdsl.plan.model.LcrPolicy`."""

from __future__ import annotations

from decimal import Decimal

from icdsl.lang import ast
from icdsl.lang.lcr import seconds_of
from icdsl.plan import model as m


def _text(v) -> str:
    return v.text if isinstance(v, ast.Num) else v.value


def _limit(lim: ast.LcrLimit) -> m.LcrLimit:
    v = lim.value
    if isinstance(v, ast.Percent):
        value, unit = v.value.value, "%"
    elif isinstance(v, ast.Num):
        value, unit = v.value, "calls"
    elif v.per is None:  # a duration
        value, unit = Decimal(seconds_of(ast.Quantity(v.amount, v.unit, v.span))), "s"
    else:
        value, unit = v.amount.value, f"{v.unit.text}/minute"
    return m.LcrLimit(lim.measure.text, lim.bound, value, unit, tuple(_text(p) for p in lim.scope), lim.span)


def compile_policy(decl: ast.LcrDecl) -> m.LcrPolicy:
    kw: dict = {}
    limits, rules, splits = [], [], []
    for item in decl.items:
        if isinstance(item, ast.Setting):
            v = item.values[0]
            if item.key in ("service", "currency", "fx", "sell", "unmeasured"):
                kw[item.key] = v.text
            elif item.key == "description":
                kw["description"] = v.value
            elif item.key == "reference":
                kw["reference_s"] = seconds_of(v)
            elif item.key == "quality":
                kw["window_days"] = int(v.value.value)
            elif item.key == "routes":
                kw["routes"] = int(v.value)
        elif isinstance(item, ast.LcrLimit):
            limits.append(_limit(item))
        elif isinstance(item, ast.LcrSuppliers):
            names = tuple(p.text for p in item.partners)
            if item.kind == "suppliers":
                kw["suppliers"] = kw.get("suppliers", ()) + names
            else:
                rules.append(m.LcrRule(item.kind, names, tuple(_text(p) for p in item.scope), item.span))
        elif isinstance(item, ast.LcrSplit):
            splits.append(m.LcrSplit(_text(item.prefix), tuple((w.text, p.value.value) for w, p in item.shares),
                                     item.span))
    return m.LcrPolicy(decl.name.text, limits=tuple(limits), rules=tuple(rules), splits=tuple(splits),
                       span=decl.span, **kw)
