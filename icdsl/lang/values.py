"""The vocabulary of the language: units, currencies, time zones, countries and the allowed words.

Shared by the checker (which reports what is wrong) and the compiler (which converts). Each
``VOCAB`` entry lists the words allowed in one place of the language, so that a misspelling gets
a "did you mean" from the same list that the docs show.
"""

from __future__ import annotations

import functools
from datetime import date, time
from decimal import Decimal
from zoneinfo import ZoneInfo, available_timezones

#: the fields of a partner's invoice line that an ``invoice layout`` can map (what they mean:
#: :class:`icdsl.recon.model.PartnerInvoiceLine` and docs/language.md)
INVOICE_FIELDS = ("number", "kind", "issue_date", "period_start", "period_end", "currency", "total", "tax_total",
                  "line", "service", "destination", "prefix", "band", "calls", "quantity", "unit", "rate", "amount",
                  "description")

VOCAB: dict[str, tuple[str, ...]] = {
    "partner kind": ("interconnect", "mvno", "roaming", "content", "iot", "wholesale", "enterprise"),
    "billing cycle": ("monthly", "weekly", "quarterly", "adhoc"),
    "tax treatment": ("vat", "reverse_charge", "exempt", "none"),
    "rounding mode": ("half_up", "half_even", "up", "down"),
    "direction": ("inbound", "outbound", "transit"),
    "zero-duration policy": ("connect_fee", "free", "reject"),
    "recurring period": ("monthly", "quarterly", "yearly"),
    "proration": ("daily", "none"),
    "billing timing": ("advance", "arrears"),
    "day count": ("actual", "thirty"),
    "periods from": ("calendar", "start"),
    "one-time trigger": ("activation", "completion", "termination", "invoice"),
    "commitment period": ("month", "cycle", "quarter", "year", "contract_year"),
    "cap period": ("month", "cycle", "quarter", "year"),
    "shortfall": ("charged", "waived"),
    "commitment count": ("usage", "fees", "all"),
    "tier mode": ("graduated", "volume"),
    "discount mode": ("retroactive", "incremental"),
    "measure": ("minutes", "messages", "volume", "revenue", "calls", "events"),
    "tier period": ("cycle", "month", "quarter", "year", "contract_year"),
    "revenue basis": ("gross", "net"),
    "weekday": ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
    "record field": ("id", "partner", "direction", "service", "a_number", "b_number", "start", "duration_s",
                     "volume", "units"),
    "decimals": ("decimals", "decimal", "places"),
    "days": ("days", "day"),
    "number format": ("normalize", "e164"),
    "invoice kind": ("invoice", "credit_note"),
}

KNOWN_SERVICES = ("voice", "sms", "mms", "data")

WEEKDAYS = {name: i for i, name in enumerate(VOCAB["weekday"])}

TIME_UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60,
              "h": 3600, "hour": 3600, "hours": 3600}
# Data volumes are binary: 1 KB = 1024 bytes, 1 MB = 1024 KB, 1 GB = 1024 MB (as operators bill them).
VOLUME_UNITS = {"B": 1, "byte": 1, "bytes": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
COUNT_UNITS = ("message", "messages", "event", "events", "call", "calls", "item", "items", "port", "ports")
PRICE_UNITS = ("minute", "second", "message", "event", "call", "KB", "MB", "GB", "hour", "day", "month",
               "item", "session", "transaction", "B")
# Conditions may read these cycle quantities and partner fields besides the partner's own attributes.
CYCLE_FIELDS = ("minutes", "messages", "volume", "revenue", "calls", "events")
PARTNER_FIELDS = ("code", "name", "kind", "currency", "country", "timezone", "billing")
RECORD_DERIVED = ("band", "destination", "prefix", "billed_s", "amount", "origin_operator", "origin_circle",
                  "destination_operator", "destination_circle")
FUNCTIONS = {"starts_with": 2, "length": 1, "hour": 1, "weekday": 1}


@functools.cache
def currencies() -> frozenset[str]:
    """ISO 4217 codes known to Babel (the source of minor units too)."""
    # lazy: babel's currency data loads on the first currency looked up
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


def currency_digits(code: str) -> int:
    # lazy: babel's currency data loads on the first currency looked up
    from babel.numbers import get_currency_precision

    return get_currency_precision(code)


@functools.cache
def timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def valid_timezone(name: str) -> bool:
    if name in timezones():
        return True
    try:
        ZoneInfo(name)
        return True
    except Exception:
        return False


@functools.cache
def holiday_countries() -> dict[str, tuple[str, ...]]:
    # lazy: holidays loads its country list on first use
    import holidays

    return {code: tuple(subs) for code, subs in holidays.list_supported_countries().items()}


# The numbers and dates icdsl computes with exactly. Amounts are stored as NUMERIC(24, 8) and
# rates as NUMERIC(24, 12): a number in a rule file or deck has at most 15 digits before the
# decimal point and 12 after it, so that every product and sum of the engine stays exact.
MAX_WHOLE_DIGITS = 15
MAX_DECIMAL_PLACES = 12
NUMBER_HELP = (f"numbers have at most {MAX_WHOLE_DIGITS} digits before the decimal point and "
               f"{MAX_DECIMAL_PLACES} after it")
# seconds and bytes written in rule files (2^53, about 8 PB or 285 million years): the engine's
# int64 columns hold them and their sums over billions of records
MAX_COUNT = 2**53
MAX_DUE_DAYS = 3650
NUMBER_FIX = "correct the number: one this large or this precise is a typing mistake (round it if it is a rate)"
# Dates: a period's end is exclusive (the day after the last day) and cycles reach a year past
# their start, so the last day must leave room after it.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9998, 12, 31)
DATE_HELP = (f"dates lie between {FIRST_DAY} and {LAST_DAY}; for an open end write the period "
             "without an end date, e.g. 2026-01-01 ..")


def short_text(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters for a message, with what was cut said."""
    return text if len(text) <= limit else f"{text[:limit - 10]}...{text[-6:]} ({len(text)} characters)"


def number_problem(value: Decimal, text: str | None = None) -> str | None:
    """Why a number written in a rule file or deck is outside what icdsl computes exactly, or None."""
    shown = short_text(text if text is not None else str(value))
    if not value.is_finite():
        return f"'{shown}' is not a finite number"
    _, digits, exp = value.as_tuple()
    if len(digits) > MAX_WHOLE_DIGITS + MAX_DECIMAL_PLACES + 40:
        return f"'{shown}' has {len(digits)} digits; {NUMBER_HELP}"
    if value.is_zero():
        return None
    if value.adjusted() >= MAX_WHOLE_DIGITS:
        return f"'{shown}' is too large: {NUMBER_HELP}"
    if exp < 0:
        zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        places = -exp - min(zeros, -exp)
        if places > MAX_DECIMAL_PLACES:
            return f"'{shown}' has {places} decimal places: {NUMBER_HELP}"
    return None


def parse_date(text: str) -> date | None:
    """A date written YYYY-MM-DD that exists and lies in [FIRST_DAY, LAST_DAY], or None."""
    try:
        d = date.fromisoformat(text)
    except ValueError:
        return None
    return d if FIRST_DAY <= d <= LAST_DAY else None


def date_problem(text: str) -> tuple[str, str, str]:
    """The code, message and help for a date that :func:`parse_date` refused: E204 not a date,
    E228 a date out of range."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return "E204", f"'{short_text(text)}' is not a date", "dates read YYYY-MM-DD and must exist"
    return "E228", f"the date {text} is out of range", DATE_HELP


EPOCH_FORMATS = ("epoch", "epoch_s", "epoch_ms", "epoch_us")
# the strptime directives a traffic file's timestamps may be written with
STRPTIME_DIRECTIVES = frozenset("aAbBdfHIjmMpSyYzZ%")
FORMAT_HELP = ("write a strptime format such as \"%d/%m/%Y %H:%M:%S\" (%Y year, %m month, %d day, %H hour, "
               "%M minute, %S second, %f fraction, %z offset, %% a percent sign), or epoch, epoch_ms, epoch_us")


def timestamp_format_problem(text: str) -> str | None:
    """Why a records layout's ``format`` cannot read timestamps, or None: a directive strptime
    does not know (``%Q``), a ``%`` at the end, no ``%`` at all, or no year, month and day."""
    if text.strip().lower() in EPOCH_FORMATS:
        return None
    shown = short_text(text)
    if "%" not in text:
        return f"the timestamp format '{shown}' has no % directive, so no part of a timestamp is read"
    seen = set()
    i = 0
    while i < len(text):
        if text[i] == "%":
            if i + 1 >= len(text):
                return f"the timestamp format '{shown}' ends with a lone %"
            d = text[i + 1]
            if d not in STRPTIME_DIRECTIVES:
                return f"the timestamp format '{shown}' has an unknown directive %{d}"
            seen.add(d)
            i += 2
        else:
            i += 1
    parts = (("year", "Yy"),) if "j" in seen else (("year", "Yy"), ("month", "mbB"), ("day", "d"))
    missing = [n for n, ds in parts if not seen & set(ds)]
    if missing:
        return f"the timestamp format '{shown}' reads no {' and no '.join(missing)}"
    return None


def parse_time(text: str) -> time | None:
    """'08:00' -> time(8); '24:00' -> time(0) (midnight at the end of the day)."""
    if text in ("24:00", "24:00:00"):
        return time(0)
    try:
        return time.fromisoformat(text)
    except ValueError:
        return None


def seconds_of(value: Decimal, unit: str) -> Decimal | None:
    factor = TIME_UNITS.get(unit)
    return None if factor is None else value * factor


def bytes_of(value: Decimal, unit: str) -> Decimal | None:
    factor = VOLUME_UNITS.get(unit)
    return None if factor is None else value * factor
