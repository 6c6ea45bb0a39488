"""Checking ``lcr NAME { ... }`` routing policies (called by the checker for each policy).

Every problem is reported at the word that is wrong, with "did you mean" where a name was
misspelled. The checker passes itself in (its ``error``/``warning``/``currency``/``seconds``
helpers and what it has collected), so this module imports no checker.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from icdsl.lang import ast
from icdsl.lang.diagnostics import did_you_mean
from icdsl.lang.values import KNOWN_SERVICES, TIME_UNITS

#: what a limit may measure, and the kind of value it takes
MEASURES = {
    "asr": "percent",  # answered calls / calls
    "acd": "seconds",  # average call duration of answered calls
    "pdd": "seconds",  # post-dial delay (mean)
    "calls": "count",  # the fewest calls that make a measurement
    "cost": "price",  # the supplier's effective cost per minute of the reference call
    "margin": "percent or price",  # (sell - cost) / sell, or sell - cost per minute
}
BOUNDS = {"minimum": ("asr", "acd", "calls", "margin"), "maximum": ("pdd", "cost")}
UNMEASURED = ("allow", "last", "block")
SETTINGS = ("description", "service", "currency", "fx", "sell", "reference", "routes", "quality", "unmeasured")
MAX_REFERENCE_S = 86_400
MAX_ROUTES = 255  # a Kamailio rule target's priority is a byte


def check_policy(ck: Any, decl: ast.LcrDecl) -> None:
    """Report every problem of one policy through the checker ``ck``."""
    seen: dict[str, ast.Setting] = {}
    currency = "EUR"
    for item in decl.items:
        if isinstance(item, ast.Setting):
            if item.key in seen:
                ck.error("E380", f"'{item.key}' is set twice in lcr policy '{decl.name.text}'", item.span,
                         f"the first is at {seen[item.key].span}; keep one")
                continue
            seen[item.key] = item
            if item.key == "currency" and ck.currency(item.values[0]):
                currency = item.values[0].text
    for item in decl.items:
        if isinstance(item, ast.Setting):
            _setting(ck, item)
        elif isinstance(item, ast.LcrLimit):
            _limit(ck, item, currency)
        elif isinstance(item, ast.LcrSuppliers):
            _suppliers(ck, item)
        elif isinstance(item, ast.LcrSplit):
            _split(ck, item)
    _conflicts(ck, decl)
    if "sell" not in seen:
        for item in decl.items:
            if isinstance(item, ast.LcrLimit) and item.measure.text == "margin":
                ck.warning("W381", "a minimum margin without a sell deck is never judged", item.span,
                           "name the partner we sell to: 'sell CODE' (our inbound service with it)")


def _partner(ck: Any, ident: ast.Ident) -> bool:
    if ident.text in ck.out.partners:
        return True
    ck.error("E104", f"unknown partner '{ident.text}'", ident.span,
             did_you_mean(ident.text, ck.out.partners, "declared partners")
             or "name a partner declared with 'partner CODE \"Name\" { ... }'")
    return False


def _prefix(ck: Any, v: Any) -> str | None:
    text = v.text if isinstance(v, ast.Num) else v.value
    if text.isascii() and text.isdigit() and len(text) <= 15:
        return text
    ck.error("E381", f"'{text}' is not a destination prefix", v.span,
             "write the digits of an E.164 prefix, country code first, e.g. 44 or 4477 (at most 15)")
    return None


def _setting(ck: Any, st: ast.Setting) -> None:
    v = st.values[0]
    if st.key == "service":
        if v.text not in KNOWN_SERVICES:
            ck.warning("W380", f"'{v.text}' is not a usual service name", v.span,
                       did_you_mean(v.text, KNOWN_SERVICES, "usual services"))
    elif st.key == "fx":
        if v.text not in ck.out.fx:
            ck.error("E109", f"unknown FX source '{v.text}'", v.span,
                     did_you_mean(v.text, ck.out.fx, "declared FX sources") or "declare it with 'fx NAME { ... }'")
    elif st.key == "sell":
        _partner(ck, v)
    elif st.key == "reference":
        secs = ck.seconds(v)
        if secs is not None and not 0 < secs <= MAX_REFERENCE_S:
            ck.error("E382", f"a reference call of {secs} s cannot be priced", v.span,
                     "give a duration from 1 s to 24 h, e.g. 'reference call 60 s' or the ACD of the route")
    elif st.key == "quality":
        if v.unit.text not in ("day", "days"):
            ck.error("E206", f"the quality window is counted in days, not '{v.unit.text}'", v.unit.span,
                     "e.g. 'quality over 30 days'")
        elif v.value.value != int(v.value.value) or not 1 <= v.value.value <= 366:
            ck.error("E382", "the quality window is a whole number of days from 1 to 366", v.span,
                     "e.g. 'quality over 30 days'")
    elif st.key == "routes":
        if v.value != int(v.value) or not 1 <= v.value <= MAX_ROUTES:
            ck.error("E382", f"'routes {v.text}' must be a whole number from 1 to {MAX_ROUTES}", v.span,
                     "the number of suppliers listed for each destination")
    elif st.key == "unmeasured" and v.text not in UNMEASURED:
        ck.error("E201", f"unknown unmeasured rule '{v.text}'", v.span, did_you_mean(v.text, UNMEASURED, "rules"))


def _limit(ck: Any, lim: ast.LcrLimit, currency: str) -> None:
    name = lim.measure.text
    allowed = BOUNDS[lim.bound]
    if name not in MEASURES:
        ck.error("E201", f"unknown routing measure '{name}'", lim.measure.span,
                 did_you_mean(name, allowed, f"a {lim.bound} can be set on"))
        return
    if name not in allowed:
        other = "maximum" if lim.bound == "minimum" else "minimum"
        ck.error("E383", f"a {lim.bound} {name} makes no sense here", lim.measure.span,
                 f"write '{other} {name} ...' (a {lim.bound} is set on {', '.join(allowed)})")
        return
    for p in lim.scope:
        _prefix(ck, p)
    kind = MEASURES[name]
    v = lim.value
    if isinstance(v, ast.Percent):
        if "percent" not in kind:
            _wrong_value(ck, lim, kind)
        elif name == "asr":
            ck.percent(v)
        elif not Decimal(-100) <= v.value.value < Decimal(100):
            ck.error("E214", f"{v.value.text}% is not a margin below 100%", v.span)
        return
    if isinstance(v, ast.Num):
        if kind != "count":
            _wrong_value(ck, lim, kind)
        elif v.value != int(v.value) or v.value < 1:
            ck.error("E382", f"'{v.text}' calls must be a whole number of at least 1", v.span)
        return
    # LcrMeasure: NUMBER UNIT [per UNIT]
    if v.per is None and kind == "seconds":
        ck.seconds(ast.Quantity(v.amount, v.unit, v.span))
        return
    if v.per is not None and "price" in kind:
        if ck.currency(v.unit) and v.unit.text != currency:
            ck.error("E384", f"the {name} limit is in {v.unit.text} but the policy compares in {currency}", v.unit.span,
                     f"write it in {currency}, or set 'currency {v.unit.text}' on the policy")
        if v.per.text not in ("minute", "min"):
            ck.error("E206", f"'{v.per.text}' is not how routes are compared", v.per.span,
                     "costs and margins are stated per minute: '... EUR per minute'")
        return
    _wrong_value(ck, lim, kind)


def _wrong_value(ck: Any, lim: ast.LcrLimit, kind: str) -> None:
    examples = {
        "percent": "a percentage, e.g. 'minimum asr 40%'",
        "seconds": f"a duration, e.g. '{lim.bound} {lim.measure.text} 60 s'",
        "count": "a number of calls, e.g. 'minimum calls 20'",
        "price": "a price per minute, e.g. 'maximum cost 0.0500 EUR per minute'",
        "percent or price": "a percentage or a price per minute, e.g. 'minimum margin 10%'",
    }
    ck.error("E383", f"{lim.measure.text} is measured in {kind.replace('price', 'money per minute')}",
             getattr(lim.value, "span", lim.span), f"write {examples[kind]}")


def _suppliers(ck: Any, rule: ast.LcrSuppliers) -> None:
    seen: set[str] = set()
    for p in rule.partners:
        if p.text in seen:
            ck.error("E385", f"'{p.text}' is named twice", p.span, "remove one")
        seen.add(p.text)
        _partner(ck, p)
    for p in rule.scope:
        _prefix(ck, p)


def _split(ck: Any, split: ast.LcrSplit) -> None:
    _prefix(ck, split.prefix)
    total = Decimal(0)
    seen: set[str] = set()
    for who, pct in split.shares:
        _partner(ck, who)
        if who.text in seen:
            ck.error("E385", f"'{who.text}' is named twice in this split", who.span, "give each supplier one share")
        seen.add(who.text)
        if pct.value.value <= 0 or pct.value.value > 100:
            ck.error("E214", f"{pct.value.text}% is not a share between 0 (excluded) and 100", pct.span)
        total += pct.value.value
    if len(split.shares) < 2:
        ck.error("E386", "a split needs two suppliers or more", split.span,
                 "to send all the traffic to one supplier, write 'prefer CODE for PREFIX'")
    elif total != 100:
        ck.error("E386", f"the shares of this split add up to {total}%, not 100%", split.span,
                 "make the percentages add up to 100")


def _conflicts(ck: Any, decl: ast.LcrDecl) -> None:
    """One supplier both blocked and preferred for the same scope; two splits of one prefix."""
    scoped: dict[tuple[str, str, tuple[str, ...]], ast.LcrSuppliers] = {}
    splits: dict[str, ast.LcrSplit] = {}
    for item in decl.items:
        if isinstance(item, ast.LcrSuppliers) and item.kind in ("block", "prefer"):
            scope = tuple(sorted(_text(p) for p in item.scope))
            for p in item.partners:
                other = "prefer" if item.kind == "block" else "block"
                if (other, p.text, scope) in scoped:
                    ck.error("E387", f"'{p.text}' is both blocked and preferred for the same destinations", p.span,
                             f"see {scoped[(other, p.text, scope)].span}; remove one of the two rules")
                scoped[(item.kind, p.text, scope)] = item
        elif isinstance(item, ast.LcrSplit):
            key = _text(item.prefix)
            if key in splits:
                ck.error("E387", f"prefix {key} is split twice", item.prefix.span,
                         f"the other split is at {splits[key].span}; keep one")
            splits[key] = item
        elif isinstance(item, ast.Setting) and item.key not in SETTINGS:  # pragma: no cover - grammar
            ck.error("E201", f"unknown setting '{item.key}'", item.span)


def _text(v: Any) -> str:
    return v.text if isinstance(v, ast.Num) else v.value


def seconds_of(q: ast.Quantity) -> int:
    return int(q.value.value * TIME_UNITS[q.unit.text])
