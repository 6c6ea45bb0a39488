"""The charge type contract. Built-in charge types and plugin charge types implement the same class.

A charge type is registered through the ``icdsl_charge_types`` hook. The language gives each
charge statement to the charge type named by its ``kind``:

- ``check(node, checker)`` reports mistakes with ``checker.error(code, message, span, help)``;
  the checker also offers value checks (``money``, ``percent``, ``word``, ``seconds``, ``expr``...).
- ``compile(node, compiler)`` returns the plan parameters, a tuple of (key, value) pairs of plain,
  immutable values (``compiler.value(x)`` converts AST values: money, prices, percentages,
  conditions).
"""

from __future__ import annotations

from typing import Any, ClassVar

from icdsl.lang import ast


class ChargeType:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: parameters a generic ``charge NAME "label" { key: value }`` must / may give
    required: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    #: True when the executors evaluate it per record (surcharges); False for cycle-level charges
    per_record: ClassVar[bool] = False

    def check(self, node: ast.ChargeNode, checker: Any) -> None:
        if node.generic:
            given = {p.key.text: p for p in node.params}
            for key in self.required:
                if key not in given:
                    checker.error("E119", f"charge '{self.name}' needs '{key}:'", node.span,
                                  f"it takes: {', '.join(self.required + self.optional)}")
            for key, p in given.items():
                if key not in self.required + self.optional:
                    from icdsl.lang.diagnostics import did_you_mean

                    checker.error("E120", f"charge '{self.name}' has no parameter '{key}'", p.key.span,
                                  did_you_mean(key, self.required + self.optional, "its parameters"))

    def compile(self, node: ast.ChargeNode, compiler: Any) -> tuple[tuple[str, Any], ...]:
        return tuple((p.key.text, compiler.value(p.value)) for p in node.params)
