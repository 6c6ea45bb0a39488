"""Functions callable in conditions: the contract of ``icdsl_condition_functions`` and the built-ins.

A condition such as ``when starts_with(b_number, "33") and hour(start) >= 20`` is evaluated by
two executors, so a function has two implementations that must agree:

- :meth:`ConditionFunction.call`: one record's argument values (``str``, ``int``, ``Decimal``,
  an aware ``datetime`` in UTC, or ``None`` for an empty field) -> one value (row executor);
- :meth:`ConditionFunction.call_column`: the arguments of a whole batch, each a ``pyarrow``
  array (a record field) or a ``pyarrow`` scalar (a constant in the rule) -> a ``pyarrow``
  array of the batch's length (batch executor). Use ``pyarrow.compute``; no Python loop per row.

An empty argument gives an empty result (``None`` / null), and a comparison with an empty value
is false, as for fields. ``ctx`` is a :class:`CallContext`: the agreement's time zone, for the
functions that read local time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from icdsl.hookspecs import hookimpl

if TYPE_CHECKING:  # pyarrow is imported by the batch path only, not when plugins load
    import pyarrow as pa

ICDSL_HOOK_API = 1

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a function may know besides its arguments: the agreement's time zone."""

    timezone: str = "UTC"

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ConditionFunction:
    """One function of the condition language. Subclass it and register the class with
    ``icdsl_condition_functions``. ``params`` names the arguments (for messages and docs);
    ``returns`` is ``text``, ``number``, ``bool`` or ``time``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    arity: ClassVar[int] = 0
    params: ClassVar[tuple[str, ...]] = ()
    returns: ClassVar[str] = "bool"

    def call(self, args: tuple[Any, ...], ctx: CallContext) -> Any:
        raise NotImplementedError

    def call_column(self, args: tuple[pa.Array | pa.Scalar, ...], ctx: CallContext) -> pa.Array:
        raise NotImplementedError

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(self.params)})"


def _text(arr: pa.Array | pa.Scalar) -> pa.Array | pa.Scalar:
    # lazy: pyarrow only when a condition runs on columns (registering the built-ins must not load it)
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type) if isinstance(arr, pa.Scalar) else pc.cast(arr, t.value_type)
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr
    return arr.cast(pa.string()) if isinstance(arr, pa.Scalar) else pc.cast(arr, pa.string())


def _local(arr: pa.Array, ctx: CallContext) -> pa.Array:
    # lazy: pyarrow only when a condition runs on columns (registering the built-ins must not load it)
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if not pa.types.is_timestamp(t):
        raise TypeError(f"expected a timestamp column, got {t}")
    if t.tz is None:  # naive values are UTC in icdsl's record schema
        arr = pc.assume_timezone(arr, "UTC")
    return arr.cast(pa.timestamp(t.unit, tz=ctx.timezone))


class StartsWith(ConditionFunction):
    name = "starts_with"
    description = "true when the text begins with the prefix: starts_with(b_number, \"33\")"
    arity = 2
    params = ("text", "prefix")

    def call(self, args, ctx):
        text, prefix = args
        if text is None or prefix is None:
            return None
        return str(text).startswith(str(prefix))

    def call_column(self, args, ctx):
        # lazy: pyarrow only when a condition runs on columns (registering the built-ins must not load it)
        import pyarrow as pa
        import pyarrow.compute as pc

        text, prefix = _text(args[0]), _text(args[1])
        if isinstance(prefix, pa.Scalar):
            if not prefix.is_valid:
                return pa.nulls(len(text), pa.bool_())
            return pc.starts_with(text, pattern=prefix.as_py())
        # a prefix per record (a field as the prefix: rare, and pyarrow has no kernel for it)
        out = [None if t is None or p is None else t.startswith(p)
               for t, p in zip(text.to_pylist(), prefix.to_pylist(), strict=True)]
        return pa.array(out, pa.bool_())


class Length(ConditionFunction):
    name = "length"
    description = "the number of characters of a text: length(b_number) > 11"
    arity = 1
    params = ("text",)
    returns = "number"

    def call(self, args, ctx):
        (text,) = args
        return None if text is None else len(str(text))

    def call_column(self, args, ctx):
        # lazy: pyarrow only when a condition runs on columns (registering the built-ins must not load it)
        import pyarrow as pa
        import pyarrow.compute as pc

        return pc.cast(pc.utf8_length(_text(args[0])), pa.int64())


class Hour(ConditionFunction):
    name = "hour"
    description = "the hour (0-23) of a time in the agreement's time zone: hour(start) >= 20"
    arity = 1
    params = ("time",)
    returns = "number"

    def call(self, args, ctx):
        (t,) = args
        if t is None:
            return None
        if not isinstance(t, datetime):
            raise TypeError(f"hour() needs a time, got {t!r}")
        return t.astimezone(ctx.tzinfo).hour

    def call_column(self, args, ctx):
        # lazy: pyarrow only when a condition runs on columns (registering the built-ins must not load it)
        import pyarrow as pa
        import pyarrow.compute as pc

        return pc.cast(pc.hour(_local(args[0], ctx)), pa.int64())


class Weekday(ConditionFunction):
    name = "weekday"
    description = "the day of the week (mon ... sun) of a time in the agreement's time zone"
    arity = 1
    params = ("time",)
    returns = "text"

    def call(self, args, ctx):
        (t,) = args
        if t is None:
            return None
        if not isinstance(t, datetime):
            raise TypeError(f"weekday() needs a time, got {t!r}")
        return WEEKDAY_NAMES[t.astimezone(ctx.tzinfo).weekday()]

    def call_column(self, args, ctx):
        # lazy: pyarrow only when a condition runs on columns (registering the built-ins must not load it)
        import pyarrow as pa
        import pyarrow.compute as pc

        dow = pc.day_of_week(_local(args[0], ctx))  # Monday = 0
        return pa.array(WEEKDAY_NAMES, pa.string()).take(dow)


BUILTIN = (StartsWith, Length, Hour, Weekday)


@hookimpl
def icdsl_condition_functions():
    return list(BUILTIN)
