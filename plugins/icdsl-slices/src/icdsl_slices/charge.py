"""The ``network_slice`` charge type: 5G network slices sold by the slice-hour.

In a rule file (the generic ``charge`` form)::

    charge network_slice "5G slices" {
      embb:  { price: 0.50 EUR per hour  availability: 99.9%  credit: 10% }
      urllc: { price: 2.00 EUR per hour  availability: 99.99% credit: 25% }
      mmtc:  0.02 EUR per hour
    }, stream fees

- one parameter per **slice class** sold: ``embb`` (enhanced mobile broadband), ``urllc``
  (ultra-reliable low-latency), ``mmtc`` (massive machine-type); case does not matter
  (``eMBB:``). Its value is the price per hour, or a block with ``price``, ``availability``
  (the committed level, a percentage) and ``credit`` (the SLA credit, a percentage of that
  class's slice-hour charge; 10% when not given);
- ``availability`` and ``credit`` at the top level are the defaults of every class.

What it reads (event records of the cycle, see :func:`usage_event`): ``slice_<class>`` records
whose ``units`` are slice-hours (one slice active for 24 hours is 24), and
``slice_<class>_downtime`` records whose ``units`` are minutes of downtime.

What it bills, per class with slice-hours in the cycle: one line, hours x price; and, when the
class has a committed availability and the measured one is below it, a credit line:
``-credit% x`` that charge. Measured availability = 1 - downtime minutes / (slice-hours x 60)
(never below 0), compared exactly. Each line is rounded once, to the currency's minor unit.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from typing import Any

from icdsl.charges.evaluate import CycleChargeType
from icdsl.lang import ast
from icdsl.lang.diagnostics import did_you_mean

#: slice class (as written in rule files, lowercase) -> its 3GPP name
CLASSES: dict[str, str] = {"embb": "eMBB", "urllc": "URLLC", "mmtc": "mMTC"}
#: the parameters of one class's block
CLASS_PARAMS: dict[str, str] = {
    "price": "the price per slice-hour, e.g. 0.50 EUR per hour",
    "availability": "the committed availability of the class, e.g. 99.9%",
    "credit": "the SLA credit when the measured availability is below the committed one, "
              "as a percentage of the class's slice-hour charge (default 10%)",
}
DEFAULT_CREDIT = Decimal(10)
CLASS_LIST = ", ".join(f"{k} ({v})" for k, v in CLASSES.items())


def usage_event(cls: str) -> str:
    """The event type of a class's usage records (units: slice-hours)."""
    return f"slice_{cls}"


def downtime_event(cls: str) -> str:
    """The event type of a class's downtime records (units: minutes)."""
    return f"slice_{cls}_downtime"


class NetworkSlice(CycleChargeType):
    name = "network_slice"
    description = ("5G network slices: a price per slice-hour by slice class (eMBB, URLLC, mMTC), "
                   "with SLA credits below the committed availability")
    required = ()
    optional = (*CLASSES, "availability", "credit")
    params = {
        "embb": "eMBB slices: a price per hour, or { price: ..., availability: ..., credit: ... }",
        "urllc": "URLLC slices: a price per hour, or { price: ..., availability: ..., credit: ... }",
        "mmtc": "mMTC slices: a price per hour, or { price: ..., availability: ..., credit: ... }",
        "availability": "the committed availability of every class that does not give its own",
        "credit": "the SLA credit of every class that does not give its own (default 10%)",
    }
    stage = "charge"

    # ------------------------------------------------------------------ check

    def check(self, node: ast.ChargeNode, checker: Any) -> None:
        seen: dict[str, ast.Param] = {}
        classes = []
        unknown = False
        for p in node.params:
            key = p.key.text.lower()
            if key in seen:
                checker.error("E103", f"'{p.key.text}' is given twice in this charge", p.key.span,
                              f"the first is at line {seen[key].span.line}")
                continue
            seen[key] = p
            if key in CLASSES:
                classes.append(p)
                self._check_class(p, checker)
            elif key in ("availability", "credit"):
                self._check_percent(p, checker)
            else:
                unknown = True
                hint = did_you_mean(key, (*CLASSES, "availability", "credit"))
                checker.error("E120", f"'{p.key.text}' is not a slice class of charge '{self.name}'", p.key.span,
                              (hint + "; " if hint else "") + f"slice classes: {CLASS_LIST}")
        if not classes and not unknown:
            checker.error("E119", f"charge '{self.name}' sells no slice class", node.span,
                          f"give at least one of {CLASS_LIST}, e.g. 'embb: 0.50 EUR per hour'")
        default_availability = "availability" in seen
        for p in classes:
            block = p.value.params if isinstance(p.value, ast.MapValue) else ()
            keys = {q.key.text for q in block}
            credit = next((q for q in block if q.key.text == "credit"), seen.get("credit"))
            if (credit is not None and isinstance(credit.value, ast.Percent) and "availability" not in keys
                    and not default_availability):
                checker.error("E119", f"slice class '{p.key.text}' has an SLA credit but no committed availability",
                              credit.span,
                              f"add 'availability: 99.9%' to '{p.key.text}' (or to the charge), or remove the credit")

    def _check_class(self, p: ast.Param, checker: Any) -> None:
        label = p.key.text
        value = p.value
        if isinstance(value, ast.MoneyPer):
            self._check_price(label, value, checker)
            return
        if not isinstance(value, ast.MapValue):
            checker.error("E206", f"slice class '{label}' takes a price per hour or a block", _span(value, p),
                          f"write e.g. '{label}: 0.50 EUR per hour' or "
                          f"'{label}: {{ price: 0.50 EUR per hour  availability: 99.9% }}'")
            return
        keys = {}
        for q in value.params:
            k = q.key.text
            if k in keys:
                checker.error("E103", f"'{k}' is given twice for slice class '{label}'", q.key.span)
                continue
            keys[k] = q
            if k == "price":
                self._check_price(label, q.value, checker, _span(q.value, q))
            elif k in ("availability", "credit"):
                self._check_percent(q, checker)
            else:
                checker.error("E120", f"slice class '{label}' has no parameter '{k}'", q.key.span,
                              did_you_mean(k, CLASS_PARAMS, "its parameters")
                              or f"its parameters: {', '.join(CLASS_PARAMS)}")
        if "price" not in keys:
            checker.error("E119", f"slice class '{label}' needs 'price:' ({CLASS_PARAMS['price']})", value.span,
                          f"write e.g. '{label}: {{ price: 0.50 EUR per hour }}'")

    def _check_price(self, label: str, value: Any, checker: Any, span: Any = None) -> None:
        if not isinstance(value, ast.MoneyPer) or value.unit is None:
            checker.error("E206", f"the price of slice class '{label}' must be a price per hour",
                          span or _span(value, None), f"write e.g. '{label}: 0.50 EUR per hour'")
            return
        if value.unit.text not in ("hour", "hours"):
            checker.error("E206", f"the price of slice class '{label}' is per {value.unit.text}; slices are "
                                  f"billed per hour", value.unit.span,
                          f"convert it to a price per hour, e.g. '{label}: 0.50 EUR per hour'")
            return
        checker.money(value.money)
        info = checker.agreement
        if info is not None and info.currency:
            checker.currency_matches(value.money.currency, info.currency, f"the price of slice class '{label}'")

    def _check_percent(self, p: ast.Param, checker: Any) -> None:
        key = p.key.text
        if not isinstance(p.value, ast.Percent):
            example = "99.9%" if key == "availability" else "10%"
            checker.error("E214", f"'{key}' is a percentage", _span(p.value, p), f"write e.g. '{key}: {example}'")
            return
        if checker.percent(p.value) and key == "availability" and p.value.value.value == 0:
            checker.error("E214", "a committed availability of 0% commits to nothing", p.value.span,
                          "write the level the partner commits to, e.g. 'availability: 99.9%'")

    # ------------------------------------------------------------------ compile

    def compile(self, node: ast.ChargeNode, compiler: Any) -> tuple[tuple[str, Any], ...]:
        """``((class, (("price", Price), ("availability", Decimal | None), ("credit", Decimal))), ...)``
        in the order of :data:`CLASSES`, with the defaults resolved."""
        given = {p.key.text.lower(): p.value for p in node.params}
        availability = compiler.value(given["availability"]) if "availability" in given else None
        credit = compiler.value(given["credit"]) if "credit" in given else DEFAULT_CREDIT
        out = []
        for cls in CLASSES:
            value = given.get(cls)
            if value is None:
                continue
            block = {q.key.text: q.value for q in value.params} if isinstance(value, ast.MapValue) else {"price": value}
            out.append((cls, (
                ("price", compiler.value(block["price"])),
                ("availability", compiler.value(block["availability"]) if "availability" in block else availability),
                ("credit", compiler.value(block["credit"]) if "credit" in block else credit),
            )))
        return tuple(out)

    # ------------------------------------------------------------------ evaluate

    def event_types(self, charge: Any) -> tuple[str, ...]:
        """The event records this charge reads (billing extracts them from the cycle's records)."""
        out = []
        for cls, _ in charge.params:
            if cls in CLASSES:
                out += [usage_event(cls), downtime_event(cls)]
        return tuple(out)

    def evaluate(self, charge: Any, ctx: Any) -> list[Any]:
        lines = []
        for cls, label in CLASSES.items():
            spec = charge.param(cls)
            if spec is None:
                continue
            spec = dict(spec)
            price = spec["price"]
            hours = ctx.event_units(usage_event(cls))
            if hours <= 0:
                continue
            exact = Fraction(price.amount) * hours / price.per_count
            per = f" per {price.per_count}" if price.per_count != 1 else ""
            lines.append(ctx.line(
                charge, description=f"{charge.name}: {hours} {label} slice-hours at {price.amount} "
                                    f"{price.currency}{per} per hour",
                exact=exact, currency=price.currency, quantity=hours, unit="slice-hour",
                unit_price=price.amount if price.per_count == 1 else None,
                application=ctx.key(charge, f"slice:{cls}", ctx.cycle_label),
                dimensions={"slice_class": label}, details={"slice_hours": hours, "price": str(price)}))
            target = spec["availability"]
            if target is None:
                continue
            down = ctx.event_units(downtime_event(cls))
            minutes = hours * 60
            measured = max(Fraction(0), 1 - Fraction(down, minutes)) * 100
            if measured >= Fraction(target):
                continue
            pct = spec["credit"]
            shown = _percent_text(measured)
            lines.append(ctx.line(
                charge, description=f"{charge.name}: SLA credit {pct}% of {label}, availability {shown}% "
                                    f"below the committed {target}%",
                exact=-exact * Fraction(pct) / 100, currency=price.currency, quantity=1, unit="credit",
                application=ctx.key(charge, f"sla_credit:{cls}", ctx.cycle_label),
                dimensions={"slice_class": label},
                details={"downtime_minutes": down, "slice_minutes": minutes, "measured": f"{shown}%",
                         "measured_exact": f"{measured.numerator}/{measured.denominator}",
                         "committed": f"{target}%", "credit": f"{pct}%"}))
        return lines


def _percent_text(value: Fraction) -> str:
    """A measured availability for people: 3 decimals, cut (never shown above what was measured)."""
    d = Decimal(value.numerator) / Decimal(value.denominator)
    return str(d.quantize(Decimal("0.001"), rounding=ROUND_DOWN))


def _span(value: Any, param: Any) -> Any:
    span = getattr(value, "span", None)
    return span if span is not None else param.span
