"""The charge type contract. Built-in charge types and plugin charge types implement the same class.

A charge type is registered through the ``icdsl_charge_types`` hook (a list of subclasses of
:class:`ChargeType`; icdsl makes one instance of each). The language gives each charge
statement to the charge type named by its ``kind``; a plugin's type is written in the generic
form::

    charge slice_hours "5G slices" {
      embb: 0.50 EUR per hour
      availability: 99.9%
    }, stream fees, when partner.kind == "mvno"

The generic form's values are AST values (:mod:`icdsl.lang.ast`): ``Money`` (``150.00 EUR``),
``MoneyPer`` (``0.50 EUR per hour``), ``Percent``, ``Quantity`` (``500 GB``), ``Num``,
``Str``, ``Ident`` (a bare word), ``ListValue`` (``[a, b]``), ``MapValue`` (a nested
``{ key: value }``) and conditions. The options after the block (``, prorate``, ``, stream``,
``, of``, ``, when``...) are checked and compiled by the core, the same for every type.

Phases, and what a charge type does in each:

- **check** ``check(node, checker)``: report mistakes with ``checker.error(code, message, span,
  help)`` (or ``checker.warning``), never raise; use the checker's value checks (``money``,
  ``percent``, ``word``, ``seconds``, ``currency_matches``, ``expr``...). The default checks
  the generic form's parameters against ``required`` / ``optional`` (E119 missing, E120
  unknown, with "did you mean"). Call ``super().check(node, checker)`` first in an override.
- **compile** ``compile(node, compiler)``: return the plan parameters, a tuple of (key, value)
  pairs of plain immutable values (``compiler.value(x)`` converts any AST value: ``Money``,
  ``Price``, ``Decimal``, text, tuples, condition ``Expr`` trees). The result becomes
  :class:`icdsl.plan.model.Charge` (``kind``, ``name`` = the label, ``params``,
  ``applies_to``, ``span``), which the executors and billing read.
- **evaluate** (same hook API, :mod:`icdsl.charges.evaluate`): subclass
  ``CycleChargeType`` (``evaluate(charge, ctx) -> list[ChargeLine]``, once per cycle) or
  ``RecordChargeType`` (``per_record = True``: ``evaluate_record`` for the row executor and
  ``evaluate_batch`` on a batch's columns for the batch executor) instead of this class. A type
  that implements neither is checked, compiled and shown by ``icdsl plan``, and billing reports
  it as not evaluable (never a silent zero). Conventions: ``docs/charges.md``.
- **events** ``event_types(charge)``: the event record types the charge reads (optional).

An exception escaping a *plugin's* charge type is reported naming the plugin and the rule
(``icdsl.plugins``): E121 from ``check``, a ``ChargeError`` from the other methods.
"""

from __future__ import annotations

from typing import Any, ClassVar

from icdsl.lang import ast
from icdsl.lang.diagnostics import did_you_mean


class ChargeType:
    """One kind of charge. Class attributes: ``name`` (the word after ``charge``), a one-line
    ``description``, the generic form's parameters (``required``, ``optional``; ``params``
    gives each a sentence for ``icdsl plugins`` and error help) and ``per_record``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: parameters a generic ``charge NAME "label" { key: value }`` must / may give
    required: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    #: parameter -> what it means, e.g. {"embb": "price per hour of an eMBB slice"}
    params: ClassVar[dict[str, str]] = {}
    #: True when the executors evaluate it per record (surcharges); False for cycle-level charges
    per_record: ClassVar[bool] = False

    def check(self, node: ast.ChargeNode, checker: Any) -> None:
        if node.generic:
            given = {p.key.text: p for p in node.params}
            for key in self.required:
                if key not in given:
                    what = f" ({self.params[key]})" if key in self.params else ""
                    checker.error("E119", f"charge '{self.name}' needs '{key}:'{what}", node.span,
                                  f"it takes: {', '.join(self.required + self.optional)}")
            for key, p in given.items():
                if key not in self.required + self.optional:
                    checker.error("E120", f"charge '{self.name}' has no parameter '{key}'", p.key.span,
                                  did_you_mean(key, self.required + self.optional, "its parameters"))

    def compile(self, node: ast.ChargeNode, compiler: Any) -> tuple[tuple[str, Any], ...]:
        return tuple((p.key.text, compiler.value(p.value)) for p in node.params)

    def event_types(self, charge: Any) -> tuple[str, ...]:
        """The event record types the compiled ``charge`` reads with ``ctx.event_units(NAME)``
        (e.g. ``slice_embb``): billing counts the cycle's records of these types as events
        instead of rating them. Optional (default: none); added in icdsl 0.1 without changing
        the hook API version."""
        return ()
