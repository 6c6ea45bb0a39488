"""Conditions (``when ...``): the plan's ``Expr`` trees, on one record or on whole columns.

Both executors evaluate conditions, so the semantics live here once and the column evaluator
falls back on the row functions wherever it can (for each *distinct* value of a text column,
for instance), so that the two cannot drift apart.

Values are: empty (None), booleans, numbers (int, Decimal, exact fractions), texts, and times
(aware datetimes). A comparison ``A op B``:

- is **false** when either side is empty ("a comparison with an empty value is false"), so
  ``not (quality < 3)`` holds for a record without ``quality``;
- compares numbers exactly when either side is a number: a text on the other side is read as
  a decimal number (``"3"``, ``"-1.50"``; surrounding spaces allowed); a text that is not one
  makes the comparison false. ``quality < 3`` is true for the text ``"2"``;
- compares booleans with booleans (or the texts ``true`` / ``false``, any case); false
  against anything else;
- compares two texts as texts (code point order): ``"10" < "9"``;
- compares two times as instants; a time against anything else is false (conditions have no
  date literals: use ``hour(start)``, ``weekday(start)``).

``X in [a, b]`` holds when ``X == a`` or ``X == b``. A bare operand used as a condition holds
when its value is the boolean true or the text ``true`` (any case). ``not`` binds tightest,
then ``and``, then ``or`` (the compiler already built the tree).

What a field reads (:class:`RecordEnv`): ``partner.X`` a partner attribute or built-in field;
``cycle.X`` a cycle total (:class:`~icdsl.charges.context.CycleTotals`; empty outside a
cycle); ``band``, ``destination``, ``prefix``, ``billed_s``, ``amount`` what rating found
(``billed_s`` is empty for a service not priced by time); anything else the record's field or
extra column (empty if absent).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from icdsl import functions as F
from icdsl.charges.lines import ChargeError
from icdsl.functions import CallContext
from icdsl.plan.model import Expr, Partner
from icdsl.plugins import active_plugin_manager, condition_functions

if TYPE_CHECKING:
    import pyarrow as pa

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
DERIVED = ("band", "destination", "prefix", "billed_s", "amount", "origin_operator", "origin_circle",
           "destination_operator", "destination_circle")
PARTNER_FIELDS = ("code", "name", "kind", "currency", "country", "timezone", "billing")
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*")
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


# --------------------------------------------------------------------------- one value


def number(v: Any) -> Fraction | None:
    """The exact number a value stands for (None: it is not a number)."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Fraction(v)
    if isinstance(v, Fraction):
        return v
    if isinstance(v, Decimal):
        return Fraction(v) if v.is_finite() else None
    if isinstance(v, float):
        return Fraction(Decimal(repr(v))) if v == v and v not in (float("inf"), float("-inf")) else None
    if isinstance(v, str):
        if not _NUMBER.fullmatch(v):
            return None
        try:
            return Fraction(Decimal(v.strip()))
        except InvalidOperation:
            return None
    return None


def boolean(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        low = v.strip().lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return None


def compare(op: str, a: Any, b: Any) -> bool:
    """``a op b`` with the conditions' semantics (see the module's documentation)."""
    if a is None or b is None:
        return False
    fn = OPS[op]
    if isinstance(a, datetime) or isinstance(b, datetime):
        return isinstance(a, datetime) and isinstance(b, datetime) and fn(a, b)
    if isinstance(a, bool) or isinstance(b, bool):
        x, y = boolean(a), boolean(b)
        return x is not None and y is not None and fn(x, y)
    if isinstance(a, str) and isinstance(b, str):
        return fn(a, b)
    x, y = number(a), number(b)
    return x is not None and y is not None and fn(x, y)


def truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() == "true")


# --------------------------------------------------------------------------- functions


def function(name: str, span=None) -> Any:
    """The condition function called ``name``: a built-in, or a plugin's (active manager)."""

    for cls in F.BUILTIN:
        if cls.name == name:
            return _builtin(cls)

    fn = condition_functions(active_plugin_manager()).get(name)
    if fn is None:
        raise ChargeError(f"unknown function '{name}' (is the plugin that provides it installed?)", span)
    return fn


_BUILTINS: dict[type, Any] = {}


def _builtin(cls: type) -> Any:
    got = _BUILTINS.get(cls)
    if got is None:
        got = _BUILTINS[cls] = cls()
    return got


# --------------------------------------------------------------------------- one record


class RecordEnv:
    """What a condition reads for one record (row executor)."""

    __slots__ = ("record", "derived", "partner", "partner_code", "cycle", "agreement", "call_ctx")

    def __init__(self, record: dict[str, Any], derived: dict[str, Any], partner: Partner | None,
                 partner_code: Any, cycle: Any, agreement: str, timezone: str):

        self.record = record
        self.derived = derived
        self.partner = partner
        self.partner_code = partner_code
        self.cycle = cycle
        self.agreement = agreement
        self.call_ctx = CallContext(timezone)

    def field(self, name: str) -> Any:
        head, _, rest = name.partition(".")
        if rest and head == "partner":
            return partner_value(self.partner, self.partner_code, rest)
        if rest and head == "cycle":
            if not self.cycle:
                return None
            return self.cycle.get(self.partner_code, self.agreement, rest)
        if name in self.derived:  # what rating found, and the start as an aware UTC instant
            return self.derived[name]
        if name in DERIVED:
            return None
        return self.record.get(name)


def partner_value(partner: Partner | None, code: Any, name: str) -> Any:
    if partner is None:
        return str(code) if name == "code" and code is not None else None
    if name in PARTNER_FIELDS:
        return getattr(partner, name)
    for k, v in partner.attributes:
        if k == name:
            return v
    return None


def evaluate(expr: Expr, env: RecordEnv) -> Any:
    """The value of ``expr`` for one record."""
    op = expr.op
    if op == "field":
        return env.field(expr.args[0])
    if op == "const":
        return expr.args[0]
    if op == "call":
        name, args = expr.args
        return function(name, expr.span).call(tuple(evaluate(a, env) for a in args), env.call_ctx)
    return holds(expr, env)


def holds(expr: Expr, env: RecordEnv) -> bool:
    """Whether the condition holds for one record."""
    op = expr.op
    if op == "cmp":
        o, left, right = expr.args
        return compare(o, evaluate(left, env), evaluate(right, env))
    if op == "in":
        left, values = expr.args
        v = evaluate(left, env)
        return any(compare("==", v, x) for x in values)
    if op == "and":
        return all(holds(e, env) for e in expr.args)
    if op == "or":
        return any(holds(e, env) for e in expr.args)
    if op == "not":
        return not holds(expr.args[0], env)
    if op in ("field", "const", "call"):
        return truthy(evaluate(expr, env))
    raise ChargeError(f"unknown condition operator '{op}'", expr.span)


def fields_of(expr: Expr) -> set[str]:
    """Every field a condition reads (``route_class``, ``cycle.minutes``...)."""
    if expr.op == "field":
        return {expr.args[0]}
    out: set[str] = set()
    for a in expr.args:
        if isinstance(a, Expr):
            out |= fields_of(a)
        elif isinstance(a, tuple):
            for x in a:
                if isinstance(x, Expr):
                    out |= fields_of(x)
    return out


# --------------------------------------------------------------------------- columns


@dataclass(slots=True)
class Col:
    """A column of values for the batch evaluator.

    ``dict``: ``idx`` int32 positions in ``values`` (-1: empty); ``int``: int64 ``ints`` and a
    null mask; ``units``: int64 ``ints`` of 10**-``scale`` and a null mask; ``time``: an Arrow
    timestamp array; ``py``: a list of Python values; ``const``: one ``value`` for every row.
    ``arrow`` keeps the Arrow array a column came from (function arguments)."""

    kind: str
    n: int
    idx: np.ndarray | None = None
    values: list | None = None
    ints: np.ndarray | None = None
    nulls: np.ndarray | None = None
    scale: int = 0
    value: Any = None
    arrow: Any = None

    @classmethod
    def const(cls, value: Any, n: int) -> Col:
        return cls("const", n, value=value)

    @classmethod
    def keyed(cls, idx: np.ndarray, values: list) -> Col:
        return cls("dict", len(idx), idx=np.asarray(idx, dtype=np.int32), values=list(values))

    @classmethod
    def integers(cls, ints: np.ndarray, nulls: np.ndarray | None = None) -> Col:
        return cls("int", len(ints), ints=np.asarray(ints, dtype=np.int64), nulls=nulls)

    @classmethod
    def units(cls, ints: np.ndarray, scale: int, nulls: np.ndarray | None = None) -> Col:
        return cls("units", len(ints), ints=np.asarray(ints, dtype=np.int64), nulls=nulls, scale=scale)

    @classmethod
    def from_arrow(cls, arr: pa.Array) -> Col:
        # lazy: pyarrow only when charges run on columns (the checker loads charge types without it)
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        t = arr.type
        n = len(arr)
        if pa.types.is_dictionary(t):
            idx = np.asarray(pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False)).astype(np.int32)
            return cls("dict", n, idx=idx, values=arr.dictionary.to_pylist(), arrow=arr)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            d = arr.dictionary_encode()
            idx = np.asarray(pc.fill_null(d.indices, -1).to_numpy(zero_copy_only=False)).astype(np.int32)
            return cls("dict", n, idx=idx, values=d.dictionary.to_pylist(), arrow=arr)
        if pa.types.is_boolean(t):
            idx = np.asarray(pc.fill_null(pc.cast(arr, pa.int8()), -1).to_numpy(zero_copy_only=False)).astype(np.int32)
            return cls("dict", n, idx=idx, values=[False, True], arrow=arr)
        if pa.types.is_integer(t):
            nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False)) if arr.null_count else None
            ints = np.asarray(pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy(zero_copy_only=False))
            return cls("int", n, ints=ints.astype(np.int64), nulls=nulls, arrow=arr)
        if pa.types.is_timestamp(t):
            return cls("time", n, arrow=arr)
        return cls("py", n, values=arr.to_pylist(), arrow=arr)

    def python(self) -> list:
        """The values as Python values, row by row (the slow, exact fallback)."""
        if self.kind == "const":
            return [self.value] * self.n
        if self.kind == "dict":
            vals = self.values + [None]  # type: ignore[operator]
            return [vals[i] for i in self.idx.tolist()]  # type: ignore[union-attr]
        if self.kind in ("int", "units"):
            out: list[Any] = self.ints.tolist() if self.kind == "int" else [  # type: ignore[union-attr]
                Decimal(x).scaleb(-self.scale) for x in self.ints.tolist()]  # type: ignore[union-attr]
            if self.nulls is not None:
                for i in np.flatnonzero(self.nulls).tolist():
                    out[i] = None
            return out
        if self.kind == "time":
            return self.arrow.to_pylist()
        return list(self.values)  # type: ignore[arg-type]

    def to_arrow(self) -> Any:
        """An Arrow array (or a scalar for a constant): for function arguments."""
        # lazy: pyarrow only when charges run on columns (the checker loads charge types without it)
        import pyarrow as pa

        if self.arrow is not None:
            return self.arrow
        if self.kind == "const":
            return pa.scalar(self.value)
        if self.kind == "int":
            return pa.array(self.ints, pa.int64(), mask=self.nulls)
        values = self.python()
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([None if v is None else str(v) for v in values], pa.string())


class ColumnEnv:
    """What a condition reads for a batch: ``field(name) -> Col`` (the executor provides it)."""

    n: int
    timezone: str

    def field(self, name: str) -> Col:  # pragma: no cover - interface
        raise NotImplementedError


def _cmp_int_const(op: str, x: np.ndarray, nulls: np.ndarray | None, c: Fraction) -> np.ndarray:
    """``x op c`` for int64 ``x`` and an exact number ``c``, exactly (no float, no overflow)."""
    fl = c.numerator // c.denominator
    ce = -((-c.numerator) // c.denominator)
    integral = c.denominator == 1

    def against(bound: int, fn) -> np.ndarray:
        if bound > INT64_MAX:
            return np.full(len(x), fn(0, 1), dtype=bool)  # every x is below the bound
        if bound < INT64_MIN:
            return np.full(len(x), fn(1, 0), dtype=bool)  # every x is above it
        return fn(x, np.int64(bound))

    if op == "<":
        out = against(ce, operator.lt)
    elif op == "<=":
        out = against(fl, operator.le)
    elif op == ">":
        out = against(fl, operator.gt)
    elif op == ">=":
        out = against(ce, operator.ge)
    elif op == "==":
        out = against(fl, operator.eq) if integral else np.zeros(len(x), dtype=bool)
    else:
        out = against(fl, operator.ne) if integral else np.ones(len(x), dtype=bool)
    out = np.asarray(out, dtype=bool)
    if nulls is not None:
        out = out & ~nulls
    return out


def compare_cols(op: str, a: Col, b: Col) -> np.ndarray:
    n = a.n
    if a.kind == "const" and b.kind != "const":
        return compare_cols(FLIP[op], b, a)
    if a.kind == "const":
        return np.full(n, compare(op, a.value, b.value), dtype=bool)
    if b.kind == "const":
        c = b.value
        if a.kind == "dict":
            table = np.array([compare(op, v, c) for v in a.values] + [False], dtype=bool)  # type: ignore[operator]
            return table[a.idx]
        if a.kind in ("int", "units"):
            if c is None or isinstance(c, bool | datetime):
                return np.zeros(n, dtype=bool)
            nc = number(c)
            if nc is None:
                return np.zeros(n, dtype=bool)
            return _cmp_int_const(op, a.ints, a.nulls, nc * 10**a.scale)  # type: ignore[arg-type]
        if a.kind == "time":
            if isinstance(c, datetime):
                return np.array([compare(op, v, c) for v in a.python()], dtype=bool)
            return np.zeros(n, dtype=bool)
        return np.array([compare(op, v, c) for v in a.values], dtype=bool)  # type: ignore[union-attr]
    return np.array([compare(op, x, y) for x, y in zip(a.python(), b.python(), strict=True)], dtype=bool)


def truthy_col(c: Col) -> np.ndarray:
    if c.kind == "const":
        return np.full(c.n, truthy(c.value), dtype=bool)
    if c.kind == "dict":
        table = np.array([truthy(v) for v in c.values] + [False], dtype=bool)  # type: ignore[operator]
        return table[c.idx]
    if c.kind in ("int", "units", "time"):
        return np.zeros(c.n, dtype=bool)
    return np.array([truthy(v) for v in c.values], dtype=bool)  # type: ignore[union-attr]


def evaluate_columns(expr: Expr, env: ColumnEnv) -> Col:
    op = expr.op
    if op == "field":
        return env.field(expr.args[0])
    if op == "const":
        return Col.const(expr.args[0], env.n)
    if op == "call":
        name, args = expr.args
        fn = function(name, expr.span)
        cols = [evaluate_columns(a, env) for a in args]
        if all(c.kind == "const" for c in cols):
            return Col.const(fn.call(tuple(c.value for c in cols), CallContext(env.timezone)), env.n)
        got = fn.call_column(tuple(c.to_arrow() for c in cols), CallContext(env.timezone))
        return Col.from_arrow(got)
    return Col.keyed(holds_columns(expr, env).astype(np.int32), [False, True])


def holds_columns(expr: Expr, env: ColumnEnv) -> np.ndarray:
    """A bool array: whether the condition holds, record by record."""
    op = expr.op
    if op == "cmp":
        o, left, right = expr.args
        return compare_cols(o, evaluate_columns(left, env), evaluate_columns(right, env))
    if op == "in":
        left, values = expr.args
        col = evaluate_columns(left, env)
        out = np.zeros(env.n, dtype=bool)
        for v in values:
            out |= compare_cols("==", col, Col.const(v, env.n))
        return out
    if op == "and":
        out = np.ones(env.n, dtype=bool)
        for e in expr.args:
            out &= holds_columns(e, env)
        return out
    if op == "or":
        out = np.zeros(env.n, dtype=bool)
        for e in expr.args:
            out |= holds_columns(e, env)
        return out
    if op == "not":
        return ~holds_columns(expr.args[0], env)
    if op in ("field", "const", "call"):
        return truthy_col(evaluate_columns(expr, env))
    raise ChargeError(f"unknown condition operator '{op}'", expr.span)
