"""Column types shared by the models and the migrations: exact money, rates and UTC timestamps.

SQLite has no decimal type: a column declared NUMERIC has numeric *affinity*, which silently
turns ``'0.01100000'`` into the float 0.011. Money and rates are therefore stored as canonical
decimal text on SQLite (exact, fixed scale) and as ``NUMERIC(p, s)`` on PostgreSQL. Python code
always sees :class:`~decimal.Decimal`; a value that does not fit the column exactly (too many
decimals or digits) raises instead of being rounded. Sums of money are done in Python (Decimal)
or by PostgreSQL, never by SQLite (whose ``SUM`` would go through floats).

Timestamps are stored in UTC (``timestamptz`` on PostgreSQL, ISO text on SQLite) and always come
back time-zone aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

MONEY_PRECISION, MONEY_SCALE = 24, 8
RATE_PRECISION, RATE_SCALE = 24, 12


def money_ddl() -> sa.types.TypeEngine[Any]:
    """The column type written by the migrations for money (stable, no import of this module's
    decorators needed)."""
    return sa.Numeric(MONEY_PRECISION, MONEY_SCALE).with_variant(sa.String(40), "sqlite")


def rate_ddl() -> sa.types.TypeEngine[Any]:
    return sa.Numeric(RATE_PRECISION, RATE_SCALE).with_variant(sa.String(40), "sqlite")


_QUANTUM = {scale: Decimal(1).scaleb(-scale) for scale in (MONEY_SCALE, RATE_SCALE)}


class _ExactDecimal(TypeDecorator[Decimal]):
    impl = sa.Numeric
    cache_ok = True
    precision = MONEY_PRECISION
    scale = MONEY_SCALE

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(40))
        return dialect.type_descriptor(sa.Numeric(self.precision, self.scale, asdecimal=True))

    def _exact(self, value: Any) -> Decimal:
        if isinstance(value, float):
            raise TypeError(f"money must be a Decimal or an int, not a float ({value!r})")
        d = value if isinstance(value, Decimal) else Decimal(value)
        try:
            q = d.quantize(_QUANTUM[self.scale])
        except InvalidOperation as e:
            raise ValueError(f"{value} does not fit NUMERIC({self.precision}, {self.scale})") from e
        if q != d:
            raise ValueError(f"{value} has more than {self.scale} decimals: it would be rounded")
        # digits of q (exponent -scale): adjusted() + 1 + scale (1 for zero)
        if q.adjusted() + 1 + self.scale > self.precision:
            raise ValueError(f"{value} has more than {self.precision} digits")
        return q

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        q = self._exact(value)
        return format(q, "f") if dialect.name == "sqlite" else q

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, float):  # a value written by hand into SQLite as a REAL
            value = repr(value)
        return Decimal(value)


class Money(_ExactDecimal):
    """``NUMERIC(24, 8)`` money, exact (text on SQLite)."""

    cache_ok = True


class Rate(_ExactDecimal):
    """``NUMERIC(24, 12)`` prices per unit, FX and tax rates, exact (text on SQLite)."""

    cache_ok = True
    precision = RATE_PRECISION
    scale = RATE_SCALE


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time: aware datetimes in, aware UTC datetimes out."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"a time-zone aware datetime is required, got {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
