"""Timestamps: the one parser of instants written as text (or numbers, or Arrow timestamps).

:func:`instants` is the rule, on a column; :func:`parse_instant` runs it on one value, for every
other place that reads an instant from text (record examples, the demo, plugins), so that they
all accept the same spellings and give the same errors as a traffic file.

Accepted: ISO 8601 ``YYYY-MM-DD[T| ]HH[:MM[:SS[.fraction]]]`` with ``Z`` or an offset
(``+01:00``, ``+0100``, ``+01``), converted to UTC; without an offset, a local time in the
clock's zone. A local time that does not exist (the hour skipped when DST starts) is refused
("... does not exist in Europe/Paris (DST gap)"); an ambiguous one (the hour repeated when DST
ends) is its **first** occurrence (Python's ``fold=0``). Fractions beyond microseconds are
truncated. A clock's format may be a ``strptime`` format (with ``%z`` the values carry their
offset, else they are local times) or ``epoch`` / ``epoch_s`` / ``epoch_ms`` / ``epoch_us``
(numbers since 1970-01-01 UTC). Arrow timestamps with a zone are converted to UTC; naive ones
are local times. A date alone is not a timestamp.

The column rule does the common spellings in Arrow kernels (a whole column at once) and decides
the values Arrow refuses one by one in Python (:func:`_parse_one`), so that the outcome of a
value never depends on its neighbours.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from icdsl.rating.intake.columns import (
    Problems,
    as_string,
    clean_text,
    fill,
    is_numeric,
    is_text,
    isolate,
    positions,
    put,
)
from icdsl.rating.intake.counts import TS_TYPE, short

EPOCH_UNITS = {"epoch": 1_000_000, "epoch_s": 1_000_000, "epoch_ms": 1_000, "epoch_us": 1}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)
# what Arrow's cast may take (anything else is decided by the Python parser)
_ARROW_AWARE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)$"
_ARROW_NAIVE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?$"
_ISO_EXPECTED = "is not a timestamp (expected ISO 8601 with offset, or the layout's format)"


class TimestampError(Exception):
    """A value that is not an instant; ``detail`` says why, naming the value."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Clock:
    """How a source writes its instants: the zone of its local times and its format."""

    tz_name: str
    tz: ZoneInfo | None  # None: UTC
    fmt: str | None  # None (ISO 8601), "epoch*", or a strptime format


@lru_cache(maxsize=64)
def clock(timezone: str | None = None, fmt: str | None = None) -> Clock:
    """A clock; ValueError (saying what is expected) for an unknown zone or format."""
    tz_name = (timezone or "UTC").strip()
    try:
        tz = None if tz_name.upper() in ("UTC", "Z", "ETC/UTC") else ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {tz_name!r} (expected a tz database name like Europe/Paris)"
        ) from None
    fmt = (fmt or "").strip() or None
    if fmt is not None and fmt.lower() in EPOCH_UNITS:
        fmt = fmt.lower()
    elif fmt is not None and "%" not in fmt:
        raise ValueError(
            f"timestamp_format {fmt!r} is neither a strptime format (like %d/%m/%Y %H:%M:%S) nor epoch"
        )
    return Clock(tz_name, tz, fmt)


def parse_instant(value: Any, timezone: str | None = "UTC", fmt: str | None = None, *,
                  label: str = "timestamp") -> int:
    """One instant as integer microseconds since 1970-01-01 UTC, by the same rule as a column
    of a traffic file (:func:`instants` on a one-value column). Raises :class:`TimestampError`
    (and ValueError for an unknown zone or format)."""
    c = clock(timezone, fmt)
    arr = one_value(value)
    if is_text(arr.type):
        arr = clean_text(arr)
    if arr.null_count:
        raise TimestampError(f"{label} is empty")
    problems = Problems(1)
    out = instants(arr, c, label, problems)
    found = problems.first()
    if found is not None:
        raise TimestampError(found[1])
    return out.cast(pa.int64())[0].as_py()


def to_datetime(us: int) -> datetime:
    """Integer microseconds since 1970 -> an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def one_value(value: Any) -> pa.Array:
    """A Python value as a one-value column of the type a file would give it: int64, float64,
    decimal, timestamp (with its zone, or naive), else text (``str(value)``)."""
    if value is None:
        return pa.nulls(1, pa.string())
    if isinstance(value, bool):
        return pa.array([str(value)], pa.string())
    if isinstance(value, int | float | Decimal | datetime):
        try:
            return pa.array([value])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return pa.array([value if isinstance(value, str) else str(value)], pa.string())


# --------------------------------------------------------------------------- the column rule


def instants(arr: pa.Array, clock: Clock, label: str, problems: Problems) -> pa.Array:
    """A start column -> timestamp[us, UTC]; nulls where missing or refused (each refused value
    reported in ``problems`` as ``bad_timestamp``). Text is expected cleaned (trimmed, empty as
    null)."""
    n = len(arr)
    t = arr.type
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            return arr.cast(TS_TYPE, safe=False)
        return _localize(arr.cast(pa.timestamp("us"), safe=False), clock, label, problems, arr)
    if is_numeric(t):
        if clock.fmt not in EPOCH_UNITS:
            return _one_by_one(arr, pa.nulls(n, TS_TYPE), positions(arr.is_valid()), clock, label, problems)
        unit = EPOCH_UNITS[clock.fmt]
        if pa.types.is_integer(t):
            out, failed = isolate(
                arr, lambda a: pc.multiply_checked(a.cast(pa.int64()), unit).cast(TS_TYPE), TS_TYPE
            )
        else:
            f = arr.cast(pa.float64())
            ok = pc.is_finite(f)
            f = pc.if_else(ok, f, pa.scalar(None, pa.float64()))
            out, failed = isolate(
                f, lambda a: pc.floor(pc.multiply(a, float(unit))).cast(pa.int64()).cast(TS_TYPE), TS_TYPE
            )
            failed = np.union1d(failed, positions(pc.and_(pc.invert(ok), arr.is_valid())))
        return _one_by_one(arr, out, failed, clock, label, problems)
    s = as_string(arr)
    if clock.fmt in EPOCH_UNITS:
        unit = EPOCH_UNITS[clock.fmt]
        ints, failed = isolate(s, lambda a: pc.multiply_checked(a.cast(pa.int64()), unit).cast(TS_TYPE), TS_TYPE)
        if len(failed):
            failed = failed[s.take(pa.array(failed)).is_valid().to_numpy(zero_copy_only=False)]
        return _one_by_one(s, ints, failed, clock, label, problems)
    if clock.fmt is not None:
        return _formatted(s, clock, label, problems)
    # ISO 8601: the whole column at once when every value has an offset (the usual case)
    try:
        return s.cast(TS_TYPE)
    except pa.ArrowInvalid:
        pass
    m_aware = pc.match_substring_regex(s, _ARROW_AWARE).fill_null(False)
    m_naive = pc.match_substring_regex(s, _ARROW_NAIVE).fill_null(False)
    aware = positions(m_aware)
    naive = positions(m_naive)
    parts = []
    retry = [positions(pc.and_(s.is_valid(), pc.invert(pc.or_(m_aware, m_naive))))]
    if len(aware):
        vals, failed = isolate(s.take(pa.array(aware)), lambda a: a.cast(TS_TYPE), TS_TYPE)
        parts.append((aware, vals))
        retry.append(aware[failed])
    if len(naive):
        sub = s.take(pa.array(naive))
        vals, failed = isolate(sub, lambda a: a.cast(pa.timestamp("us")), pa.timestamp("us"))
        sub_problems = Problems(len(naive))
        vals = _localize(vals, clock, label, sub_problems, sub)
        for pos, reason, details in sub_problems.parts:
            problems.add(naive[pos], reason, details)
        parts.append((naive, vals))
        retry.append(naive[failed])
    out = fill(n, TS_TYPE, parts)
    return _one_by_one(s, out, np.sort(np.concatenate(retry)), clock, label, problems)


def _formatted(s: pa.Array, clock: Clock, label: str, problems: Problems) -> pa.Array:
    """Text in a strptime format."""
    n = len(s)
    fmt = clock.fmt
    try:
        parsed = pc.strptime(s, format=fmt, unit="us", error_is_null=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pa.nulls(n, pa.timestamp("us"))
    if "%z" in fmt or pa.types.is_timestamp(parsed.type) and parsed.type.tz is not None:
        # an offset cannot be checked by formatting back: every value goes through Python
        return _one_by_one(s, pa.nulls(n, TS_TYPE), positions(s.is_valid()), clock, label, problems)
    # glibc's strptime accepts 31/02: keep only values that format back to themselves
    try:
        same = pc.equal(pc.strftime(parsed, format=fmt), s).fill_null(False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        same = pa.array(np.zeros(n, bool))
    parsed = pc.if_else(same, parsed, pa.scalar(None, pa.timestamp("us")))
    retry = positions(pc.and_(pc.invert(same), s.is_valid()))
    local = _localize(parsed, clock, label, problems, s)
    return _one_by_one(s, local, retry, clock, label, problems)


def _localize(naive: pa.Array, clock: Clock, label: str, problems: Problems, shown: pa.Array) -> pa.Array:
    """Naive local times in the clock's zone -> UTC; DST gaps refused, ambiguous times first."""
    if clock.tz is None:
        return naive.cast(TS_TYPE)
    try:
        return pc.assume_timezone(naive, clock.tz_name, ambiguous="earliest", nonexistent="raise").cast(TS_TYPE)
    except pa.ArrowInvalid:
        early = pc.assume_timezone(naive, clock.tz_name, ambiguous="earliest", nonexistent="earliest")
        late = pc.assume_timezone(naive, clock.tz_name, ambiguous="earliest", nonexistent="latest")
        gap = pc.not_equal(early, late).fill_null(False)
        pos = positions(gap)
        values = shown.take(pa.array(pos)).to_pylist()
        problems.add(pos, "bad_timestamp", [_gap(v, clock, label) for v in values])
        return pc.if_else(gap, pa.scalar(None, early.type), early).cast(TS_TYPE)


def _gap(value: Any, clock: Clock, label: str) -> str:
    return f"{label} '{short(value)}' does not exist in {clock.tz_name} (DST gap)"


def _one_by_one(
    s: pa.Array, out: pa.Array, retry: np.ndarray, clock: Clock, label: str, problems: Problems
) -> pa.Array:
    """Decide the values at ``retry`` with the Python parser and put them into ``out``."""
    if len(retry) == 0:
        return out
    fixed: list[int | None] = []
    bad: list[tuple[int, str, str]] = []
    for pos, v in zip(retry, s.take(pa.array(retry)).to_pylist(), strict=True):
        try:
            fixed.append(_parse_one(v, clock, label))
        except TimestampError as e:
            fixed.append(None)
            bad.append((int(pos), "bad_timestamp", e.detail))
    problems.add_each(bad)
    return put(out, retry, fixed, TS_TYPE)


# --------------------------------------------------------------------------- values Arrow refuses


def _parse_one(value: Any, clock: Clock, label: str) -> int:
    """One value the column kernels refused -> microseconds since 1970; TimestampError."""
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return _us(value)
        return _us(_localize_one(value, clock, label, value))
    fmt = clock.fmt
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if fmt not in EPOCH_UNITS:
            raise TimestampError(f"{label} '{value}' is a number; set the layout's timestamp_format to epoch")
        return _from_epoch(value, fmt, label)
    if not isinstance(value, str):
        raise TimestampError(f"{label} '{short(value)}' {_ISO_EXPECTED}")
    s = value.strip()
    if fmt in EPOCH_UNITS:
        if not re.fullmatch(r"[+-]?\d+(\.\d*)?", s):
            raise TimestampError(f"{label} '{short(value)}' is not a number of {_epoch_name(fmt)}")
        return _from_epoch(Decimal(s), fmt, label)
    if fmt is not None:
        try:
            dt = datetime.strptime(s, fmt)
        except ValueError:
            raise TimestampError(
                f"{label} '{short(value)}' does not match the layout's timestamp_format '{fmt}'"
            ) from None
        if dt.tzinfo is not None:
            return _us(dt)
        return _us(_localize_one(dt, clock, label, value))
    m = _ISO.fullmatch(s)
    if m is None:
        raise TimestampError(f"{label} '{short(value)}' {_ISO_EXPECTED}")
    y, mo, d, h, mi, sec, frac, z, sign, oh, om = m.groups()
    try:
        us = int((frac or "0")[:6].ljust(6, "0"))
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi or 0), int(sec or 0), us)
        if z is None and sign is None:
            return _us(_localize_one(dt, clock, label, value))
        offset = timedelta(0)
        if sign is not None:
            if int(oh) > 23 or int(om or 0) > 59:
                raise ValueError("offset")
            offset = timedelta(hours=int(oh), minutes=int(om or 0))
            offset = -offset if sign == "-" else offset
        return _us((dt - offset).replace(tzinfo=UTC))
    except (ValueError, OverflowError):
        raise TimestampError(f"{label} '{short(value)}' {_ISO_EXPECTED}") from None


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // _US


def _localize_one(local: datetime, clock: Clock, label: str, value: Any) -> datetime:
    if clock.tz is None:
        return local.replace(tzinfo=UTC)
    utc = local.replace(tzinfo=clock.tz, fold=0).astimezone(UTC)
    if utc.astimezone(clock.tz).replace(tzinfo=None) != local:
        raise TimestampError(_gap(value, clock, label))
    return utc


def _epoch_name(fmt: str) -> str:
    return {"epoch_ms": "milliseconds", "epoch_us": "microseconds"}.get(fmt, "seconds") + " since 1970"


def _from_epoch(value: int | float | Decimal, fmt: str, label: str) -> int:
    try:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError
        us = int(Decimal(value) * EPOCH_UNITS[fmt])
        _EPOCH + timedelta(microseconds=us)  # in range for a datetime
        return us
    except (ValueError, OverflowError, ArithmeticError):
        raise TimestampError(f"{label} '{value}' is out of range for {_epoch_name(fmt)}") from None
