"""Band lookup: which band of a Calendar (peak, offpeak, ...) an instant falls in.

Rules (the same for both executors):

- The instant is converted to the calendar's local wall time with ``zoneinfo`` (so the result is
  right on both sides of a DST change; an instant in the repeated hour of autumn gets the wall time
  after the change, as ``datetime.astimezone`` gives it).
- If the local date is a public holiday for any ``HolidayRule`` (``holidays`` package, country and
  optional subdivision, observed days included), the first such rule's band applies all day;
- else if the local date is one of ``extra_dates``, that band applies all day;
- else the first ``BandRule`` whose weekdays contain the local weekday and with
  ``start <= local time < end`` applies (``end == 00:00`` means 24:00; a rule with
  ``start >= end`` otherwise matches nothing: the compiler splits rules that wrap past midnight);
- else ``default_band``.

So a local day is a short list of *pieces* ``(start time, band, why)``; the row executor finds the
piece of one wall time by bisection. The batch executor never converts records one by one: it turns
the pieces of the days a batch covers into a step function of UTC microseconds (``Steps``), built
from the zone's offset changes (found with zoneinfo, hour by hour, to the second), and looks every
record up at once.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from icdsl.plan.cache import keep, kept_key, read_kept
from icdsl.plan.model import BandRule, Calendar, HolidayRule, Span

US = 1_000_000
DAY_S = 86_400
DAY_US = DAY_S * US
EPOCH = date(1970, 1, 1)
EPOCH_ORDINAL = EPOCH.toordinal()
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def time_us(t: time) -> int:
    """Microseconds since midnight."""
    return ((t.hour * 60 + t.minute) * 60 + t.second) * US + t.microsecond


def rule_end_us(rule: BandRule) -> int:
    end = time_us(rule.end)
    return DAY_US if end == 0 else end


def day_number(d: date) -> int:
    """Days since 1970-01-01 (the unit the batch executor uses for local dates)."""
    return d.toordinal() - EPOCH_ORDINAL


def day_date(n: int) -> date:
    return date.fromordinal(n + EPOCH_ORDINAL)


def hhmm(us: int) -> str:
    if us >= DAY_US:
        return "24:00"
    s = us // US
    text = f"{s // 3600:02d}:{s // 60 % 60:02d}"
    return text + (f":{s % 60:02d}" if s % 60 or us % US else "")


def calendar_bands(calendar: Calendar) -> tuple[str, ...]:
    """Every band a calendar can give: ``Calendar.bands`` plus those of its extra dates."""
    seen = dict.fromkeys(calendar.bands)
    for _, band in calendar.extra_dates:
        seen[band] = None
    return tuple(seen)


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# --------------------------------------------------------------------------- holidays

_holiday_lock = threading.Lock()


@cache
def _holiday_calendar(country: str, subdivision: str | None) -> Any:
    # lazy: holidays loads its country tables only when a calendar asks for a holiday
    import holidays

    try:
        return holidays.country_holidays(country, subdiv=subdivision, language="en_US")
    except (NotImplementedError, ValueError, TypeError):
        # the country has no English names (or no such language option): use its own
        return holidays.country_holidays(country, subdiv=subdivision)


@cache
def _holiday_years(country: str, subdivision: str | None) -> dict[int, dict[date, str]]:
    """The years of a country's holidays looked up so far in this process."""
    return {}


def _year_of_holidays(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    """The holidays of one year (observed days included, as ``holidays`` gives them), from the
    cache of icdsl.plan.cache when it has them (a warm command does not import ``holidays``),
    else from ``holidays`` and kept there. The key holds the installed distributions (so
    ``holidays``' version): an upgrade reads its own tables again."""
    key = kept_key("holidays", country, subdivision, year)
    got = read_kept(key)
    if isinstance(got, dict):
        try:
            return {date.fromisoformat(d): str(name) for d, name in got.items()}
        except (TypeError, ValueError):
            pass
    cal = _holiday_calendar(country, subdivision)
    cal.get(date(year, 1, 1))  # fills the year (its observed days too, even those of next year's holidays)
    days = {d: name for d, name in cal.items() if d.year == year}
    keep(key, {d.isoformat(): name for d, name in days.items()})
    return days


def holiday_name(country: str, subdivision: str | None, day: date) -> str | None:
    """The holiday's name if ``day`` is a public holiday there, else None."""
    with _holiday_lock:  # the holidays object fills years lazily: not thread-safe
        years = _holiday_years(country, subdivision)
        days = years.get(day.year)
        if days is None:
            days = years[day.year] = _year_of_holidays(country, subdivision, day.year)
        return days.get(day)


# --------------------------------------------------------------------------- pieces of a day


@dataclass(frozen=True, slots=True)
class Piece:
    """From ``start_us`` (since local midnight) to the next piece, ``band`` applies because of
    ``why`` (holiday | extra_date | rule | default), decided by the rule at ``span``."""

    start_us: int
    end_us: int
    band: str
    why: str
    span: Span
    note: str = ""  # holiday name, or the rule's window "08:00-20:00"


class BandBook:
    """A calendar's pieces, day by day (cached), and their explanation."""

    def __init__(self, calendar: Calendar):
        self.calendar = calendar
        self.zone = zone(calendar.timezone)
        self.bands: tuple[str, ...] = calendar_bands(calendar)
        self._days: dict[int, tuple[Piece, ...]] = {}
        self._extra = {d: b for d, b in reversed(calendar.extra_dates)}  # first listed wins
        self._lock = threading.Lock()
        self._steps: dict[tuple[int, int], Steps] = {}
        self._utc_days: dict[int, tuple[list[int], list[str]]] = {}
        self._starts: dict[int, tuple[tuple[Piece, ...], list[int]]] = {}

    def pieces(self, day: int) -> tuple[Piece, ...]:
        """The pieces of local day ``day`` (days since 1970-01-01), covering 00:00 to 24:00."""
        got = self._days.get(day)
        if got is None:
            got = self._compute(day_date(day))
            self._days[day] = got
        return got

    def _compute(self, d: date) -> tuple[Piece, ...]:
        cal = self.calendar
        for h in cal.holidays:
            name = holiday_name(h.country, h.subdivision, d)
            if name is not None:
                return (Piece(0, DAY_US, h.band, "holiday", h.span, f"{name}|{_where(h)}"),)
        if d in self._extra:
            return (Piece(0, DAY_US, self._extra[d], "extra_date", cal.span),)
        wd = d.weekday()
        rules = [r for r in cal.rules if wd in r.weekdays]
        cuts = {0}
        for r in rules:
            cuts.add(time_us(r.start))
            cuts.add(rule_end_us(r))
        cuts.discard(DAY_US)
        points = sorted(cuts)
        out: list[Piece] = []
        for i, at in enumerate(points):
            end = points[i + 1] if i + 1 < len(points) else DAY_US
            piece = None
            for r in rules:
                if time_us(r.start) <= at < rule_end_us(r):
                    window = f"{hhmm(time_us(r.start))}-{hhmm(rule_end_us(r))}"
                    piece = Piece(at, end, r.band, "rule", r.span, window)
                    break
            if piece is None:
                piece = Piece(at, end, cal.default_band, "default", cal.span)
            prev = out[-1] if out else None
            if prev is not None and (prev.band, prev.why, prev.span, prev.note) == (
                piece.band,
                piece.why,
                piece.span,
                piece.note,
            ):
                out[-1] = Piece(prev.start_us, end, prev.band, prev.why, prev.span, prev.note)
            else:
                out.append(piece)
        return tuple(out)

    # ---------------------------------------------------------------- row executor

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone)

    def piece_at(self, local: datetime) -> Piece:
        """The piece covering a local wall time (a datetime already in the calendar's zone)."""
        day = local.toordinal() - EPOCH_ORDINAL
        got = self._starts.get(day)
        if got is None:
            pieces = self.pieces(day)
            got = self._starts[day] = (pieces, [p.start_us for p in pieces])
        pieces, starts = got
        if len(pieces) == 1:
            return pieces[0]
        tod = ((local.hour * 60 + local.minute) * 60 + local.second) * US + local.microsecond
        return pieces[bisect.bisect_right(starts, tod) - 1]

    def explain(self, local: datetime, piece: Piece) -> str:
        cal = self.calendar
        day = local.date().isoformat()
        if piece.why == "holiday":
            name, where = piece.note.split("|", 1)
            return f"{day} is a public holiday in {where} ({name}) -> {piece.band}"
        if piece.why == "extra_date":
            return f"{day} is a listed date of calendar {cal.name} -> {piece.band}"
        clock = f"{WEEKDAYS[local.weekday()]} {local:%H:%M:%S} {cal.timezone}"
        if piece.why == "rule":
            return f"{clock} within {piece.band} {piece.note} (rule at {piece.span})"
        return f"{clock}: no band rule matches -> default {piece.band} (calendar {cal.name})"

    def _day_steps(self, day: int) -> tuple[list[int], list[str]]:
        """Band changes within UTC day ``day``: (instants in UTC microseconds, bands)."""
        got = self._utc_days.get(day)
        if got is None:
            st = wall_steps(
                clock(self.calendar.timezone),
                day,
                day,
                lambda ld: [(p.start_us, p.band) for p in self.pieces(ld)],
            )
            got = (st.instants.tolist(), [str(v) for v in st.values.tolist()])
            self._utc_days[day] = got
        return got

    def band_at_us(self, t: int) -> str:
        """The band at UTC microsecond ``t`` (same answer as ``piece_at(local(t)).band``)."""
        instants, bands = self._day_steps(t // DAY_US)
        return bands[bisect.bisect_right(instants, t) - 1]

    def day_changes(self, day: int) -> list[int]:
        """Instants (UTC microseconds) within UTC day ``day`` where a band may start."""
        return self._day_steps(day)[0]

    # ---------------------------------------------------------------- batch executor

    def steps(self, first_day: int, last_day: int) -> Steps:
        """Band codes (indexes into ``self.bands``) as a step function of UTC microseconds over
        the UTC days ``first_day..last_day``."""
        key = (first_day, last_day)
        with self._lock:
            got = self._steps.get(key)
            if got is None:
                code = {b: i for i, b in enumerate(self.bands)}

                def pieces_of(day: int) -> list[tuple[int, int]]:
                    return [(p.start_us, code[p.band]) for p in self.pieces(day)]

                got = wall_steps(clock(self.calendar.timezone), first_day, last_day, pieces_of)
                if len(self._steps) > 16:
                    self._steps.clear()
                self._steps[key] = got
            return got


def _where(h: HolidayRule) -> str:
    return f"{h.country}-{h.subdivision}" if h.subdivision else h.country


_books: dict[int, tuple[Calendar, BandBook]] = {}
_books_lock = threading.Lock()


def book(calendar: Calendar) -> BandBook:
    """The (cached) BandBook of a calendar. Keyed by identity; the calendar is kept alive."""
    got = _books.get(id(calendar))
    if got is not None and got[0] is calendar:
        return got[1]
    with _books_lock:
        if len(_books) > 256:
            _books.clear()
        b = BandBook(calendar)
        _books[id(calendar)] = (calendar, b)
        return b


# --------------------------------------------------------------------------- UTC step functions


class ZoneClock:
    """A zone's UTC offset as constant intervals, found day by day with zoneinfo (cached).

    Offsets are sampled every hour of a UTC day; where two samples differ, the change is found
    to the second by bisection (tz database changes fall on whole seconds; no zone changes its
    offset twice within an hour).
    """

    def __init__(self, name: str):
        self.zone = zone(name)
        self._days: dict[int, tuple[tuple[int, int], ...]] = {}
        self._lock = threading.Lock()

    def _offset(self, s: int) -> int:
        return int(datetime.fromtimestamp(s, self.zone).utcoffset().total_seconds())

    def intervals(self, day: int) -> tuple[tuple[int, int], ...]:
        """``(utc second, offset seconds)`` pairs: the offset from that second to the next pair
        (or the end of UTC day ``day``)."""
        got = self._days.get(day)
        if got is not None:
            return got
        base = day * DAY_S
        samples = [base + h * 3600 for h in range(25)]
        offs = [self._offset(s) for s in samples]
        out = [(base, offs[0])]
        for h in range(24):
            if offs[h + 1] != offs[h]:
                lo, hi = samples[h], samples[h + 1]
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self._offset(mid) == offs[h]:
                        lo = mid
                    else:
                        hi = mid
                if hi < base + DAY_S:
                    out.append((hi, offs[h + 1]))
        got = tuple(out)
        with self._lock:
            self._days[day] = got
        return got


@cache
def clock(name: str) -> ZoneClock:
    return ZoneClock(name)


class Steps:
    """A step function of UTC microseconds: ``values[i]`` from ``instants[i]`` to the next one.

    Lookups use a direct bucket table when every change falls on a multiple of a common step
    (an hour for most calendars: 744 buckets a month), else a binary search.
    """

    __slots__ = ("instants", "values", "start", "end", "_table", "_grain")

    def __init__(self, instants: np.ndarray, values: np.ndarray, end: int):
        self.instants = instants
        self.values = values
        self.start = int(instants[0])
        self.end = end
        self._table = None
        self._grain = 0
        rel = np.append(instants[1:], end) - self.start
        grain = int(np.gcd.reduce(rel)) if len(rel) else DAY_US
        if grain >= US and (end - self.start) // grain <= 4_000_000:
            cells = self.start + np.arange((end - self.start) // grain, dtype=np.int64) * grain
            self._table = values[np.searchsorted(instants, cells, side="right") - 1]
            self._grain = grain

    def index(self, t: np.ndarray) -> np.ndarray:
        """Index of the step of each instant (for counting the changes crossed by a call)."""
        return np.searchsorted(self.instants, t, side="right") - 1

    def __call__(self, t: np.ndarray) -> np.ndarray:
        if self._table is not None:
            return self._table[(t - self.start) // self._grain]
        return self.values[np.searchsorted(self.instants, t, side="right") - 1]


def wall_steps(
    zc: ZoneClock,
    first_day: int,
    last_day: int,
    pieces_of: Callable[[int], Sequence[tuple[int, Any]]],
) -> Steps:
    """Turn per-local-day pieces ``[(start_us since local midnight, value), ...]`` into a step
    function of UTC microseconds over UTC days ``first_day..last_day`` (equal neighbours merged)."""
    instants: list[int] = []
    values: list[Any] = []
    for d in range(first_day, last_day + 1):
        ivs = zc.intervals(d)
        for j, (s, off) in enumerate(ivs):
            e = ivs[j + 1][0] if j + 1 < len(ivs) else (d + 1) * DAY_S
            off_us = off * US
            wa, wb = s * US + off_us, e * US + off_us  # the wall-clock range of this interval
            ld = wa // DAY_US
            while ld * DAY_US < wb:
                pieces = pieces_of(ld)
                for k, (tod, value) in enumerate(pieces):
                    w = ld * DAY_US + tod
                    w_end = ld * DAY_US + (pieces[k + 1][0] if k + 1 < len(pieces) else DAY_US)
                    a, b = max(w, wa), min(w_end, wb)
                    if a < b and not (values and values[-1] == value):
                        instants.append(a - off_us)
                        values.append(value)
                ld += 1
    return Steps(np.array(instants, dtype=np.int64), np.array(values), (last_day + 1) * DAY_US)


def local_day_steps(tz: str, first_day: int, last_day: int) -> Steps:
    """Local date (days since 1970-01-01) in zone ``tz`` as a step function of UTC microseconds."""
    return _local_day_steps(tz, first_day, last_day)


@lru_cache(maxsize=64)
def _local_day_steps(tz: str, first_day: int, last_day: int) -> Steps:
    return wall_steps(clock(tz), first_day, last_day, lambda ld: ((0, ld),))


__all__ = [
    "BandBook",
    "Piece",
    "Steps",
    "ZoneClock",
    "book",
    "clock",
    "day_date",
    "day_number",
    "local_day_steps",
    "wall_steps",
]
