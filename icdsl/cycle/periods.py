"""Billing periods: calendar boundaries in the partner's time zone, as UTC instants.

A monthly cycle of a partner in Europe/Paris runs from local midnight on the 1st to local
midnight on the 1st of the next month: March 2026 is ``2026-02-28T23:00Z .. 2026-03-31T22:00Z``
(one hour short of 31 days, since summer time starts on 29 March). The end is exclusive.

Period specifications (:func:`parse_period`):

===============================  ===========================================================
``2026-03``                       the month (monthly)
``2026-W10``                      the ISO week, Monday to Monday (weekly)
``2026-Q1``                       the quarter (quarterly)
``2026-03-01..2026-03-15``        ad hoc, both days included (the end is the 16th, 00:00)
a ``date`` or ``2026-03-17``      the period of the partner's billing frequency holding that day
===============================  ===========================================================

**Local days.** :func:`day_index` is the one function that decides the local day of an
instant: instants stay int64 microseconds (UTC) and are placed among the period's local
midnights (:func:`day_edges`) by a sorted search; :func:`local_day` does the same for one
instant of any day.

A local midnight that does not exist (a zone whose clocks jump at midnight) is the first
instant of the day, i.e. the end of the gap; an ambiguous one is its first occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FREQUENCIES = ("monthly", "weekly", "quarterly", "adhoc")
# A partner's billing may add the day its monthly cycles start on: ``monthly@15``
# (:func:`split_billing`); its cycles are monthly periods from the 15th to the 14th.


class PeriodError(ValueError):
    """A period specification that cannot be read."""


@dataclass(frozen=True, slots=True)
class Period:
    """A billing period: local days ``local_start`` (inclusive) to ``local_end`` (exclusive) in
    ``timezone``, and the same as UTC instants ``start`` (inclusive) .. ``end`` (exclusive)."""

    frequency: str
    label: str
    timezone: str
    local_start: date
    local_end: date
    start: datetime
    end: datetime

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    def __str__(self) -> str:
        return (
            f"{self.label} ({self.local_start} .. {self.local_end - timedelta(days=1)} {self.timezone}; "
            f"UTC {self.start:%Y-%m-%dT%H:%M}Z .. {self.end:%Y-%m-%dT%H:%M}Z)"
        )


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise PeriodError(f"unknown time zone '{name}'") from e


def local_midnight(day: date, tz: str) -> datetime:
    """The UTC instant at which ``day`` starts in ``tz``."""
    # fold=0: an ambiguous midnight is its first occurrence; a midnight inside a gap takes the
    # offset from before the transition, which lands exactly on the transition instant.
    return datetime.combine(day, time(0), zone(tz)).astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def instant_us(instant: datetime) -> int:
    """An aware instant as integer microseconds since the epoch (UTC)."""
    return (instant - _EPOCH) // _US


def to_us(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Instants (a timestamp column) as int64 microseconds since the epoch (UTC)."""
    if not pa.types.is_timestamp(col.type) or col.type.unit != "us":
        col = pc.cast(col, pa.timestamp("us", tz="UTC"))
    return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False)


def day_edges(period: Period) -> np.ndarray:
    """The UTC instants (int64 µs) at which the period's local days start, plus its end:
    ``edges[i] <= t < edges[i + 1]`` is local day ``i`` (``period.local_start + i``)."""
    return _day_edges(period.local_start, period.local_end, period.timezone).copy()


@lru_cache(maxsize=256)
def _day_edges(first: date, end: date, tz: str) -> np.ndarray:
    days = [first + timedelta(days=i) for i in range((end - first).days + 1)]
    return np.array([instant_us(local_midnight(d, tz)) for d in days], dtype=np.int64)


def day_index(us: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The local day (index into the days of ``edges``, :func:`day_edges`) of each instant
    (int64 µs): -1 before the first day, ``len(edges) - 1`` from the end on."""
    return np.searchsorted(edges, np.asarray(us, dtype=np.int64), side="right") - 1


def local_days(us: np.ndarray, tz: str) -> list[date]:
    """The local date of each instant (int64 µs) in zone ``tz``: :func:`day_index` over the
    midnights of the days the instants span."""
    us = np.asarray(us, dtype=np.int64)
    if not len(us):
        return []
    first = _EPOCH.date() + timedelta(days=int(us.min() // 86_400_000_000) - 1)
    end = _EPOCH.date() + timedelta(days=int(us.max() // 86_400_000_000) + 2)
    idx = day_index(us, _day_edges(first, end, tz))
    return [first + timedelta(days=int(i)) for i in idx.tolist()]


def local_day(instant: datetime, tz: str) -> date:
    """The local date of one instant in zone ``tz`` (:func:`day_index` over the midnights of
    the days around it)."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    guess = instant.astimezone(UTC).date()
    first = guess - timedelta(days=2)
    edges = _day_edges(first, guess + timedelta(days=2), tz)
    return first + timedelta(days=int(day_index(np.array([instant_us(instant)]), edges)[0]))


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


def make_period(frequency: str, local_start: date, local_end: date, tz: str, label: str | None = None) -> Period:
    if frequency not in FREQUENCIES:
        raise PeriodError(f"unknown billing frequency '{frequency}': use one of {', '.join(FREQUENCIES)}")
    if local_end <= local_start:
        raise PeriodError(f"the period ends ({local_end}) before it starts ({local_start})")
    if label is None:
        label = f"{local_start}..{local_end - timedelta(days=1)}"
    return Period(frequency, label, tz, local_start, local_end, local_midnight(local_start, tz),
                  local_midnight(local_end, tz))


def month(year: int, mon: int, tz: str) -> Period:
    start = date(year, mon, 1)
    return make_period("monthly", start, _add_months(start, 1), tz, f"{year:04d}-{mon:02d}")


def quarter(year: int, q: int, tz: str) -> Period:
    if not 1 <= q <= 4:
        raise PeriodError(f"quarter {q} does not exist: use Q1 to Q4")
    start = date(year, 3 * (q - 1) + 1, 1)
    return make_period("quarterly", start, _add_months(start, 3), tz, f"{year:04d}-Q{q}")


def iso_week(year: int, week: int, tz: str) -> Period:
    try:
        start = date.fromisocalendar(year, week, 1)
    except ValueError as e:
        raise PeriodError(f"week {week} of {year} does not exist") from e
    return make_period("weekly", start, start + timedelta(days=7), tz, f"{year:04d}-W{week:02d}")


def split_billing(frequency: str) -> tuple[str, int]:
    """A partner's billing frequency and the day of the month its cycles start on:
    ``monthly@15`` (`billing monthly from day 15`) -> (``monthly``, 15); others start on the 1st."""
    base, _, day = frequency.partition("@")
    return base, int(day) if day else 1


def anchored_month(day: date, anchor: int, tz: str) -> Period:
    """The monthly cycle starting on day ``anchor`` (1-28) of a month that holds the local
    ``day``: from the 15th to the 14th of the next month, both included (the end excluded:
    the next 15th). Its label is its days, ``2026-03-15..2026-04-14``."""
    start = date(day.year, day.month, anchor)
    if day < start:
        start = date(*_prev_month(day.year, day.month), anchor)
    end = _add_months(start, 1).replace(day=anchor)
    return make_period("monthly", start, end, tz, f"{start}..{end - timedelta(days=1)}")


def _prev_month(year: int, mon: int) -> tuple[int, int]:
    return (year - 1, 12) if mon == 1 else (year, mon - 1)


def period_containing(day: date, frequency: str, tz: str) -> Period:
    """The period of ``frequency`` (monthly, weekly, quarterly; ``monthly@15``: monthly from the
    15th) holding the local ``day``."""
    frequency, anchor = split_billing(frequency)
    if frequency == "monthly" and anchor != 1:
        return anchored_month(day, anchor, tz)
    if frequency == "monthly":
        return month(day.year, day.month, tz)
    if frequency == "quarterly":
        return quarter(day.year, (day.month - 1) // 3 + 1, tz)
    if frequency == "weekly":
        y, w, _ = day.isocalendar()
        return iso_week(y, w, tz)
    raise PeriodError(f"an ad hoc partner has no period 'containing' {day}: give FROM..TO")


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$", re.I)
_QUARTER = re.compile(r"^(\d{4})-Q(\d)$", re.I)
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\s*\.\.\s*(\d{4}-\d{2}-\d{2})$")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise PeriodError(f"'{text}' is not a date (YYYY-MM-DD)") from e


def parse_period(spec: str | date | Period, tz: str, frequency: str = "monthly") -> Period:
    """Read a period specification (see the module's documentation) for a partner in ``tz``
    whose billing ``frequency`` is used when ``spec`` is a single day."""
    if isinstance(spec, Period):
        if spec.timezone != tz:
            return make_period(spec.frequency, spec.local_start, spec.local_end, tz, spec.label)
        return spec
    if isinstance(spec, datetime):
        raise PeriodError("give a period as a day or a label, not a datetime")
    if isinstance(spec, date):
        return period_containing(spec, frequency, tz)
    text = spec.strip()
    base, anchor = split_billing(frequency)
    if m := _MONTH.match(text):
        y, mo = int(m.group(1)), int(m.group(2))
        if not 1 <= mo <= 12:
            raise PeriodError(f"month {mo} does not exist in '{text}'")
        if base == "monthly" and anchor != 1:  # the cycle that starts in that month
            return anchored_month(date(y, mo, anchor), anchor, tz)
        return month(y, mo, tz)
    if base == "monthly" and anchor != 1 and (m := _RANGE.match(text)):
        a, b = _day(m.group(1)), _day(m.group(2))
        cyc = anchored_month(a, anchor, tz)
        if (cyc.local_start, cyc.local_end) == (a, b + timedelta(days=1)):
            return cyc  # the days of one of the partner's cycles: that cycle
    if m := _WEEK.match(text):
        return iso_week(int(m.group(1)), int(m.group(2)), tz)
    if m := _QUARTER.match(text):
        return quarter(int(m.group(1)), int(m.group(2)), tz)
    if m := _RANGE.match(text):
        a, b = _day(m.group(1)), _day(m.group(2))
        if b < a:
            raise PeriodError(f"the period ends ({b}) before it starts ({a})")
        return make_period("adhoc", a, b + timedelta(days=1), tz, f"{a}..{b}")
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        return period_containing(_day(text), frequency, tz)
    raise PeriodError(
        f"'{text}' is not a period: write 2026-03 (month), 2026-W10 (ISO week), 2026-Q1 (quarter), "
        "2026-03-01..2026-03-15 (ad hoc, both days included) or a day"
    )
