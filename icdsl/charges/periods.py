"""Dates of charges: charge periods, days active, day counts and proration. Pure and exact.

Conventions (``docs/charges.md`` states them for every charge):

- **Ranges of days** are half-open ``[start, end)`` of *local dates* in the partner's time zone:
  the start day is included, the end day excluded. An inventory item activated on 10 March and
  terminated on 1 April is active 10..31 March; its termination date is the first day it is
  not billed. An agreement's ``effective_to`` is its last day (included), so its range ends the
  day after.
- **Charge periods** are calendar periods (``monthly``; ``quarterly``: January, April, July,
  October; ``yearly``: 1 January), or, with an anchor date, periods of 1, 3 or 12 months counted
  from that date (an anchor on the 31st gives the last day of shorter months, computed from the
  anchor each time, so it never drifts).
- **Day counts**. ``actual``: a period has its calendar days (28 to 31 a month, 90 to 92 a
  quarter, 365 or 366 a year) and an item its calendar days active. ``thirty``: every month
  counts 30 days: in a 31-day month the 31st does not count, in February each day counts
  30/28 (30/29 in a leap year), so every full month is exactly 30, a quarter 90, a year 360.
  10 March to 1 April is 21 days of 30 (``actual``: 22 of 31); 10 February to 1 March 2026 is
  19 x 30/28 = 20 5/14 days of 30.
- **Proration**: ``daily``: fee x days active / days in the period, exact (a fraction), rounded
  once on the line; ``none``: an item active on any day of a period pays the whole period.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

PERIOD_MONTHS = {
    "monthly": 1,
    "quarterly": 3,
    "yearly": 12,
    "month": 1,
    "quarter": 3,
    "year": 12,
    "contract_year": 12,
}
DAY_COUNTS = ("actual", "thirty")
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, order=True)
class Days:
    """Local days ``[start, end)``; ``end`` None for open-ended."""

    start: date
    end: date | None

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"a range of days cannot end ({self.end}) before it starts ({self.start})")

    @property
    def empty(self) -> bool:
        return self.end is not None and self.end <= self.start

    @property
    def last(self) -> date | None:
        """The last day included."""
        return None if self.end is None else self.end - ONE_DAY

    def __contains__(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day < self.end)

    def intersect(self, other: Days) -> Days | None:
        start = max(self.start, other.start)
        ends = [e for e in (self.end, other.end) if e is not None]
        end = min(ends) if ends else None
        if end is not None and end <= start:
            return None
        return Days(start, end)

    def overlaps(self, other: Days) -> bool:
        return self.intersect(other) is not None

    def covers(self, other: Days) -> bool:
        return self.start <= other.start and (
            self.end is None or (other.end is not None and other.end <= self.end)
        )

    @property
    def label(self) -> str:
        last = self.last
        return f"{self.start.isoformat()}..{last.isoformat() if last else ''}"

    def __str__(self) -> str:
        return self.label


def add_months(d: date, months: int) -> date:
    """``d`` plus ``months`` calendar months, the day clamped to the month's last day."""
    m = d.month - 1 + months
    y, m = d.year + m // 12, m % 12 + 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def months_of(period: str) -> int:
    try:
        return PERIOD_MONTHS[period]
    except KeyError:
        raise ValueError(f"unknown charge period '{period}' (known: {', '.join(PERIOD_MONTHS)})") from None


def period_containing(day: date, months: int, anchor: date | None = None) -> Days:
    """The charge period of ``months`` months holding ``day``: a calendar period (anchor None:
    months from January, quarters from January/April/July/October, years from 1 January) or
    the k-th period counted from ``anchor``."""
    if anchor is None:
        m0 = ((day.month - 1) // months) * months + 1
        start = date(day.year, m0, 1)
        return Days(start, add_months(start, months))
    # k = how many whole periods from the anchor to day (may be negative)
    k = ((day.year - anchor.year) * 12 + (day.month - anchor.month)) // months
    start = add_months(anchor, k * months)
    while start > day:
        k -= 1
        start = add_months(anchor, k * months)
    end = add_months(anchor, (k + 1) * months)
    while end <= day:
        k += 1
        start, end = end, add_months(anchor, (k + 1) * months)
    return Days(start, end)


def periods_overlapping(days: Days, months: int, anchor: date | None = None) -> list[Days]:
    """Every charge period that shares at least one day with ``days`` (which must end)."""
    if days.end is None:
        raise ValueError("an open-ended range has infinitely many periods")
    out = []
    p = period_containing(days.start, months, anchor)
    while p.start < days.end:
        out.append(p)
        p = period_containing(p.end, months, anchor)
    return out


def _thirty_in_month(start: date, end: date) -> Fraction:
    """Days of ``[start, end)`` (within one month) counted 30 per month."""
    y, m = start.year, start.month
    n = calendar.monthrange(y, m)[1]
    if n == 31:
        # the 31st does not count
        hi = min((end - ONE_DAY).day, 30)
        lo = start.day
        return Fraction(max(0, hi - lo + 1))
    days = (end - start).days
    if n == 30:
        return Fraction(days)
    return Fraction(days * 30, n)  # February: each day counts 30/28 or 30/29


def count_days(days: Days, day_count: str = "actual") -> Fraction:
    """The days of a (bounded) range under a day count: calendar days, or 30 per month."""
    if days.end is None:
        raise ValueError("cannot count the days of an open-ended range")
    if day_count == "actual":
        return Fraction((days.end - days.start).days)
    if day_count != "thirty":
        raise ValueError(f"unknown day count '{day_count}' (known: {', '.join(DAY_COUNTS)})")
    total = Fraction(0)
    cur = days.start
    while cur < days.end:
        month_end = add_months(date(cur.year, cur.month, 1), 1)
        stop = min(month_end, days.end)
        total += _thirty_in_month(cur, stop)
        cur = stop
    return total


def days_in_period(period: Days, months: int, day_count: str = "actual") -> Fraction:
    """The denominator of proration: calendar days of the period, or 30 per month."""
    if day_count == "thirty":
        return Fraction(30 * months)
    return count_days(period, "actual")


@dataclass(frozen=True, slots=True)
class Proration:
    """How much of a period is due: ``factor`` (1 = the whole period) and why."""

    factor: Fraction
    days_active: Fraction
    days_in_period: Fraction
    prorate: str
    day_count: str

    @property
    def text(self) -> str:
        if self.prorate == "none" or self.factor == 1 and self.days_active == self.days_in_period:
            return "whole period" if self.factor == 1 else "not active"
        return f"{_num(self.days_active)}/{_num(self.days_in_period)} days ({self.day_count})"


def _num(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def prorate(active: Days, period: Days, months: int, prorate: str = "none", day_count: str = "actual") -> Proration:
    """The share of ``period`` due for something active on ``active`` (already cut to what may
    be billed, e.g. to the agreement's days). ``none``: 1 if it is active on any day of the
    period, else 0. ``daily``: days active / days in the period under ``day_count`` (1 when it is
    active the whole period, whatever the day count)."""
    if prorate not in ("none", "daily"):
        raise ValueError(f"unknown proration '{prorate}' (known: daily, none)")
    denom = days_in_period(period, months, day_count)
    inside = active.intersect(period)
    if inside is None:
        return Proration(Fraction(0), Fraction(0), denom, prorate, day_count)
    if prorate == "none":
        return Proration(Fraction(1), denom, denom, prorate, day_count)
    if inside.start == period.start and inside.end == period.end:
        return Proration(Fraction(1), denom, denom, prorate, day_count)
    n = count_days(inside, day_count)
    return Proration(min(Fraction(1), n / denom), n, denom, prorate, day_count)
