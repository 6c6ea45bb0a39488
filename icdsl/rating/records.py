"""Record intake: traffic files (CSV or Parquet) to normalized record batches and rejects.

:class:`RecordReader` streams a file in batches of at most ``batch_rows`` source rows (memory
stays bounded whatever the file size), normalizes every row to the record schema below and
sets aside the rows it cannot use, each with a reason code and its original content. A bad row
never stops the run and no row is dropped silently::

    counts.read == counts.passed + counts.rejected + counts.duplicates

Problems with the *file* (unreadable, neither CSV nor Parquet, a required column missing, a
layout that cannot apply) raise :class:`IntakeError` before any record is produced.

Normalized schema (pyarrow)
---------------------------
===========  ==========================================================================
id           int64 if the source id column is integer-typed (Parquet), else string
             (CSV columns carry no type: a CSV id is always a string)
partner      string (an integer partner column is written in decimal)
direction    string, trimmed and lower-cased (inbound, outbound, transit)
service      string, trimmed and lower-cased (voice, sms, data, ...)
a_number     string or null: E.164 digits when the value is a number, else the value as
             given (``anonymous``); never a reason to reject
b_number     string, E.164 digits without ``+`` (see :mod:`icdsl.rating.numbers`; a
             national number without the layout's country is kept as written, 0...);
             null only for services other than voice and sms
start        timestamp[us, tz=UTC]
duration_s   int64 seconds (0 when a non-voice record has none)
volume       int64 bytes or null
units        int64 or null
...          every other column of the source, unchanged (CSV: strings), under its own
             name (or ``<name>_source`` if that name is one of the fields above)
===========  ==========================================================================

Columns: a field is read from the column the layout maps it to (``columns``; it must exist),
else from the column of the field's own name (exact, else the only case-insensitive match),
else from the layout's ``constants``; a required field found nowhere is a file-level error.
Required: id, partner, direction, service, start, plus b_number unless ``service`` is a
constant other than voice/sms and duration_s unless it is a constant other than voice.
Layout columns/constants naming other fields (``route_class``) rename/add extra columns.
The source columns mapped to fields are not passed through.

Rules
-----
*Timestamps* (``start``). Strings: ISO 8601 ``YYYY-MM-DD[T| ]HH[:MM[:SS[.fraction]]]`` with
``Z`` or an offset (``+01:00``, ``+0100``, ``+01``) are converted to UTC; without an offset
they are local times in ``layout.timezone``. A local time that does not exist (the hour
skipped when DST starts) is rejected (``bad_timestamp``, detail "... does not exist in
Europe/Paris (DST gap)"); an ambiguous one (the hour repeated when DST ends) is taken as its
**first** occurrence (the DST one, Python's ``fold=0``). Fractions beyond microseconds are
truncated. ``layout.timestamp_format`` may be a ``strptime`` format (with ``%z`` the values
carry their offset, else they are local times) or ``epoch`` / ``epoch_ms`` / ``epoch_us``
(integers since 1970-01-01 UTC). Parquet timestamp columns: with a time zone, converted to
UTC; naive, local times in ``layout.timezone``. A date alone is not a timestamp.

*Numbers*: see :mod:`icdsl.rating.numbers`: ``+`` / ``00`` / the layout country's prefixes,
``tel:``/``sip:`` URIs and separators are handled; ``00034...`` is rejected; 3 to 15 digits.
Only malformed numbers are rejected, never unallocated ones. ``numbers="e164"`` takes digit
strings as they are (files that are E.164 already, such as the benchmark's).

*Durations*: whole seconds. ``61``, ``61.0`` and ``61.`` are 61; a fractional value
(``61.5``) is rejected with ``bad_duration`` rather than rounded, since rounding would change
the billed quantity silently; negative values are ``negative_duration``. Volume and units
follow the same rule (``bad_volume``, ``bad_units``) and may be empty.

*Text*: leading/trailing spaces are removed from the fields; an empty value is a missing
one. Extra columns are passed through untouched.

*Duplicates*: by id over the whole run (all batches); among the rows that are otherwise
valid, the first occurrence wins; the later ones go to the rejects table with reason
``duplicate_id`` and are counted in ``duplicates``, not in ``rejected``. A row rejected for
another reason does not claim its id. Integer ids cost 8 bytes each (sorted numpy runs);
string ids that are canonical integers too, other string ids two 64-bit hashes.

Rejects table: ``row`` (CSV: the 1-based physical line number, the header being line 1;
Parquet: the 1-based row number), ``id`` (as a string, null if missing), ``reason``, ``detail``,
``raw`` (CSV: the original line(s); Parquet: the row as JSON). Each rejected row appears once,
with its first problem in the order id, partner, direction, service, b_number, start,
duration_s, volume, units.

CSV specifics: UTF-8 (a BOM is skipped), a header line, ``,`` (or ``;``, tab, ``|`` if the
header has no comma) with ``"`` quoting; gzip/bz2/zstd files are read transparently. Blank
lines are not records (not counted). A line with the wrong number of fields or bytes that are
not UTF-8 is a ``malformed_row`` (raw: the line with bad bytes shown as ``\\xff``; id: its id
field if it has one). A quoted value may span lines (the row number is its first line). The
file is read in blocks of 4 MB cut at line ends, each parsed by pyarrow with every column typed
as string, in a second thread while the previous block is normalized; a block with a
malformed line is parsed again (single-threaded, so that pyarrow reports the line numbers),
and only a block pyarrow cannot parse at all (bytes that are not UTF-8, odd quoting) is read
line by line with Python's csv module.

Parquet specifics: read one row group at a time, in batches of ``batch_rows`` (pyarrow decodes
the columns in parallel); the memory used does not grow with the file, only the set of seen
ids does (8 bytes an id). Timestamp columns may carry a zone (converted) or not (local times).

Batches: a batch holds at most ``batch_rows`` source rows, in file order; ``first_row`` is the
number of its first source row. Its ``records`` table may have several chunks (one per CSV
block; a few rejected rows are cut out by slicing rather than copying).
"""

from __future__ import annotations

import csv
import json
import math
import os
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from icdsl.plan.model import RecordLayout
from icdsl.rating.numbers import NumberError, NumberPlan, number_plan, to_e164, to_e164_array
from icdsl.rating.rejects import INTAKE_REASONS, REJECT_REASONS, REJECTS_SCHEMA, Reject

__all__ = [
    "FIELDS",
    "REJECT_REASONS",
    "IntakeBatch",
    "IntakeCounts",
    "IntakeError",
    "REJECTS_SCHEMA",
    "RecordReader",
    "Reject",
    "normalize_record",
    "read_records",
    "record_schema",
    "records_table",
]

FIELDS = (
    "id",
    "partner",
    "direction",
    "service",
    "a_number",
    "b_number",
    "start",
    "duration_s",
    "volume",
    "units",
)
TS_TYPE = pa.timestamp("us", tz="UTC")
_CALL_SERVICES = ("voice", "sms")  # services that need a b_number
BLOCK_BYTES = 4 << 20  # CSV bytes handed to pyarrow at a time
MAX_LINE_BYTES = 256 << 20  # a longer CSV line is a malformed row
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_EPOCH_UNITS = {"epoch": 1_000_000, "epoch_s": 1_000_000, "epoch_ms": 1_000, "epoch_us": 1}


class IntakeError(Exception):
    """The file as a whole cannot be read (no row-level reject applies)."""


@dataclass
class IntakeCounts:
    """Row counts of a run: ``read`` source rows (blank lines excluded), ``passed`` records
    handed on, ``rejected`` rows set aside (duplicates excluded), ``duplicates`` rows whose id
    was seen before; ``by_reason`` counts the rejects table by reason (duplicate_id included)."""

    read: int = 0
    passed: int = 0
    rejected: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def reconciles(self) -> bool:
        dups = self.by_reason.get("duplicate_id", 0)
        others = sum(v for k, v in self.by_reason.items() if k != "duplicate_id")
        return (
            self.read == self.passed + self.rejected + self.duplicates
            and dups == self.duplicates
            and others == self.rejected
        )

    def add(self, other: IntakeCounts) -> None:
        self.read += other.read
        self.passed += other.passed
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        for k, v in other.by_reason.items():
            self.by_reason[k] = self.by_reason.get(k, 0) + v

    def __str__(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.by_reason.items()))
        return (
            f"read {self.read}, passed {self.passed}, rejected {self.rejected}, "
            f"duplicates {self.duplicates}" + (f" ({reasons})" if reasons else "")
        )


@dataclass
class IntakeBatch:
    """Normalized ``records``, the ``rejects`` of the same source rows, the row number of
    the first source row (same numbering as ``rejects.row``) and the batch's counts."""

    records: pa.Table
    rejects: pa.Table
    first_row: int
    counts: IntakeCounts = field(default_factory=IntakeCounts)


class _Bad(Exception):  # noqa: N818 - internal signal carrying a Reject
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- layout rules


@dataclass(frozen=True)
class _Rules:
    """A layout compiled for intake (independent of any file)."""

    name: str
    mapping: dict[str, str]
    constants: dict[str, Any]  # normalized values
    tz_name: str
    tz: ZoneInfo | None  # None: UTC
    fmt: str | None  # None (ISO 8601), "epoch*", or a strptime format
    numbers: NumberPlan

    def source_of(self, f: str) -> str:
        return self.mapping.get(f, f)


NUMBER_MODES = ("normalize", "e164")


@lru_cache(maxsize=32)
def _rules(layout: RecordLayout | None, numbers: str | None = None) -> _Rules:
    if numbers is None:  # the layout says how its numbers are written (default: normalize)
        numbers = getattr(layout, "numbers", None) or "normalize"
    if numbers not in NUMBER_MODES:
        raise ValueError(f"numbers must be one of {', '.join(NUMBER_MODES)}, not {numbers!r}")
    lay = layout or RecordLayout(name="default")
    where = f"layout '{lay.name}'"
    tz_name = (lay.timezone or "UTC").strip()
    try:
        tz = None if tz_name.upper() in ("UTC", "Z", "ETC/UTC") else ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise IntakeError(
            f"{where}: unknown time zone {tz_name!r} (expected a tz database name like Europe/Paris)"
        ) from None
    try:
        plan = number_plan(lay.country, as_given=numbers == "e164")
    except ValueError as exc:
        raise IntakeError(f"{where}: {exc}") from None
    fmt = (lay.timestamp_format or "").strip() or None
    if fmt is not None and fmt.lower() in _EPOCH_UNITS:
        fmt = fmt.lower()
    elif fmt is not None and "%" not in fmt:
        raise IntakeError(
            f"{where}: timestamp_format {fmt!r} is neither a strptime format (like %d/%m/%Y %H:%M:%S) nor epoch"
        )
    rules = _Rules(lay.name, dict(lay.columns), {}, tz_name, tz, fmt, plan)
    for f, value in lay.constants:
        if f not in FIELDS:
            rules.constants[f] = value
            continue
        try:
            rules.constants[f] = _normalize_value(f, value, rules, f, required=True)
        except _Bad as bad:
            raise IntakeError(f"{where}: constant {f} = {value!r}: {bad.detail}") from None
    return rules


# --------------------------------------------------------------------------- one value


def _short(value: Any, limit: int = 80) -> str:
    s = value if isinstance(value, str) else str(value)
    s = s.replace("\n", "\\n").replace("\r", "\\r")
    return s if len(s) <= limit else s[: limit - 1] + "…"


_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)
# what the Arrow fast path may cast (anything else goes through the Python parser above)
_ARROW_AWARE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)$"
_ARROW_NAIVE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?$"
_ISO_EXPECTED = "is not a timestamp (expected ISO 8601 with offset, or the layout's format)"


def _localize(local: datetime, rules: _Rules, label: str, value: Any) -> datetime:
    """A naive local time in the layout's zone -> aware UTC; DST gaps are rejected and
    ambiguous times take their first occurrence (fold=0)."""
    if rules.tz is None:
        return local.replace(tzinfo=UTC)
    aware = local.replace(tzinfo=rules.tz, fold=0)
    utc = aware.astimezone(UTC)
    if utc.astimezone(rules.tz).replace(tzinfo=None) != local:
        raise _Bad("bad_timestamp", f"{label} '{_short(value)}' does not exist in {rules.tz_name} (DST gap)")
    return utc


def _parse_timestamp(value: Any, rules: _Rules, label: str) -> datetime:
    """``value`` (str, datetime, date-less int epoch) -> aware UTC datetime; raises _Bad."""
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return value.astimezone(UTC)
        return _localize(value, rules, label, value)
    fmt = rules.fmt
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if fmt not in _EPOCH_UNITS:
            raise _Bad(
                "bad_timestamp", f"{label} '{value}' is a number; set the layout's timestamp_format to epoch"
            )
        return _from_epoch(value, fmt, label)
    if not isinstance(value, str):
        raise _Bad("bad_timestamp", f"{label} '{_short(value)}' {_ISO_EXPECTED}")
    s = value.strip()
    if fmt in _EPOCH_UNITS:
        if not re.fullmatch(r"[+-]?\d+(\.\d*)?", s):
            raise _Bad("bad_timestamp", f"{label} '{_short(value)}' is not a number of {_epoch_name(fmt)}")
        return _from_epoch(Decimal(s), fmt, label)
    if fmt is not None:
        try:
            dt = datetime.strptime(s, fmt)
        except ValueError:
            raise _Bad(
                "bad_timestamp",
                f"{label} '{_short(value)}' does not match the layout's timestamp_format '{fmt}'",
            ) from None
        if dt.tzinfo is not None:
            return dt.astimezone(UTC)
        return _localize(dt, rules, label, value)
    m = _ISO.fullmatch(s)
    if m is None:
        raise _Bad("bad_timestamp", f"{label} '{_short(value)}' {_ISO_EXPECTED}")
    y, mo, d, h, mi, sec, frac, z, sign, oh, om = m.groups()
    try:
        us = int((frac or "0")[:6].ljust(6, "0"))
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi or 0), int(sec or 0), us)
        if z is None and sign is None:
            return _localize(dt, rules, label, value)
        offset = timedelta(0)
        if sign is not None:
            if int(oh) > 23 or int(om or 0) > 59:
                raise ValueError("offset")
            offset = timedelta(hours=int(oh), minutes=int(om or 0))
            offset = -offset if sign == "-" else offset
        return (dt - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise _Bad("bad_timestamp", f"{label} '{_short(value)}' {_ISO_EXPECTED}") from None


def _epoch_name(fmt: str) -> str:
    return {"epoch_ms": "milliseconds", "epoch_us": "microseconds"}.get(fmt, "seconds") + " since 1970"


def _from_epoch(value: int | float | Decimal, fmt: str, label: str) -> datetime:
    try:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError
        us = int(Decimal(value) * _EPOCH_UNITS[fmt])
        return _EPOCH + timedelta(microseconds=us)
    except (ValueError, OverflowError, ArithmeticError):
        raise _Bad("bad_timestamp", f"{label} '{value}' is out of range for {_epoch_name(fmt)}") from None


_INT_TEXT = re.compile(r"([+-]?)(\d+)(?:\.(\d*))?")
_WHOLE = {
    "duration_s": ("bad_duration", "negative_duration", "seconds"),
    "volume": ("bad_volume", "bad_volume", "bytes"),
    "units": ("bad_units", "bad_units", ""),
}


def _parse_whole(value: Any, f: str, label: str) -> int:
    """A whole non-negative number (duration_s, volume, units); raises _Bad."""
    bad, negative, unit = _WHOLE[f]
    of = f" of {unit}" if unit else ""
    shown = _short(value)
    if isinstance(value, bool):
        raise _Bad(bad, f"{label} '{shown}' is not a number{of}")
    if isinstance(value, int):
        v = value
    elif isinstance(value, float | Decimal):
        if not (math.isfinite(value) and value == int(value)):
            raise _Bad(bad, f"{label} '{shown}' is not a whole number{of}")
        v = int(value)
    else:
        m = _INT_TEXT.fullmatch(str(value).strip())
        if m is None:
            raise _Bad(bad, f"{label} '{shown}' is not a number{of}")
        sign, digits, frac = m.groups()
        if frac and frac.strip("0"):
            raise _Bad(bad, f"{label} '{shown}' is not a whole number{of}")
        v = int(sign + digits)
    if v < 0:
        raise _Bad(negative, f"{label} '{shown}' is negative")
    if v > 2**63 - 1:
        raise _Bad(bad, f"{label} '{shown}' is too large")
    return v


def _number(value: Any, rules: _Rules, label: str) -> str:
    try:
        return to_e164(str(value), rules.numbers)
    except NumberError as exc:
        raise _Bad("invalid_number", f"{label} '{_short(value)}' {exc}") from None


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _normalize_value(f: str, value: Any, rules: _Rules, label: str, *, required: bool) -> Any:
    """One field's value -> its normalized Python value (None if empty and not required)."""
    if _is_empty(value):
        if required:
            raise _Bad("missing_field", f"{label} is empty")
        return None
    if f == "id":
        return value if isinstance(value, int) and not isinstance(value, bool) else str(value).strip()
    if f == "partner":
        return str(value).strip()
    if f in ("direction", "service"):
        return str(value).strip().lower()
    if f == "a_number":
        try:
            return to_e164(str(value), rules.numbers)
        except NumberError:
            return str(value).strip()
    if f == "b_number":
        return _number(value, rules, label)
    if f == "start":
        return _parse_timestamp(value, rules, label)
    return _parse_whole(value, f, label)


def normalize_record(
    raw: Mapping[str, Any], layout: RecordLayout | None = None, *, numbers: str | None = None
) -> dict[str, Any] | Reject:
    """Normalize one record given as a mapping (e.g. from ``icdsl explain``).

    Keys are the layout's source column names or the field names; the layout's constants fill
    the fields the mapping lacks. Values may be strings (as in a file) or Python values (int,
    datetime). Returns the normalized fields (``start`` an aware UTC datetime, ints for
    durations) followed by the other keys unchanged, or the :class:`Reject` a file row with
    the same values would get. Unlike in a file, ``id`` may be absent (None).
    """
    rules = _rules(layout, numbers)
    used: set[str] = set()
    values: dict[str, Any] = {}
    for f in FIELDS:
        src = rules.source_of(f)
        if src in raw:
            values[f] = raw[src]
            used.add(src)
        elif f in raw:
            values[f] = raw[f]
            used.add(f)
        else:
            values[f] = rules.constants.get(f)
    service = values["service"]
    service = service.strip().lower() if isinstance(service, str) else service
    out: dict[str, Any] = {}
    try:
        for f in FIELDS:
            required = f in ("partner", "direction", "service", "start") or (
                (f == "b_number" and service in _CALL_SERVICES) or (f == "duration_s" and service == "voice")
            )
            label = rules.source_of(f) if rules.source_of(f) in raw else f
            out[f] = _normalize_value(f, values[f], rules, label, required=required)
    except _Bad as bad:
        return Reject(bad.reason, bad.detail)
    if out["duration_s"] is None:
        out["duration_s"] = 0
    for k, v in rules.constants.items():
        if k not in FIELDS and k not in raw:
            out[k] = v
    for k, v in raw.items():
        if k not in used:
            out[k if k not in FIELDS else f"{k}_source"] = v
    return out


# --------------------------------------------------------------------------- column helpers


def _combine(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


_WS = np.zeros(256, bool)
_WS[[9, 10, 11, 12, 13, 32]] = True


def _as_string(arr: pa.Array) -> pa.StringArray:
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    return arr.cast(pa.string())


def _clean_text(arr: pa.Array) -> pa.StringArray:
    """Strings with surrounding whitespace removed and empty values as null (a cheap numpy
    look at the buffers first: most columns need nothing)."""
    arr = _as_string(arr)
    if len(arr) == 0:
        return arr
    valid = arr.drop_null() if arr.null_count else arr
    if len(valid):
        bufs = valid.buffers()
        off = np.frombuffer(bufs[1], np.int32, count=len(valid) + 1, offset=valid.offset * 4)
        data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
        lens = np.diff(off)
        if lens.min() > 0 and not _WS[data[off[:-1]]].any() and not _WS[data[off[1:] - 1]].any():
            return arr
    arr = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(pc.binary_length(arr), 0), pa.scalar(None, pa.string()), arr)


def _map_small(arr: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """Apply ``fn`` to the distinct values of a low-cardinality column only."""
    d = pc.dictionary_encode(arr)
    if len(d.dictionary) * 4 > len(arr):
        return fn(arr)
    return pc.take(fn(d.dictionary), d.indices)


def _null_positions(arr: pa.Array) -> np.ndarray:
    if not arr.null_count:
        return np.zeros(0, np.int64)
    return np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))


def _null_mask(arr: pa.Array) -> np.ndarray | None:
    """Writable mask of the nulls, None if there are none."""
    if not arr.null_count:
        return None
    return np.array(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _positions(mask: pa.Array | np.ndarray) -> np.ndarray:
    if isinstance(mask, pa.Array | pa.ChunkedArray):
        mask = mask.fill_null(False).to_numpy(zero_copy_only=False)
    return np.flatnonzero(mask)


def _isolate(
    arr: pa.Array, fn: Callable[[pa.Array], pa.Array], out_type: pa.DataType
) -> tuple[pa.Array, np.ndarray]:
    """``fn(arr)``; if Arrow refuses some values, narrow them down by bisection to slices of
    at most 64 values. Returns the result (nulls in the refused slices) and the positions of
    the refused slices, which the caller hands to the Python parser (which decides each one)."""
    try:
        return fn(arr), np.zeros(0, np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        n = len(arr)
        if n <= 64:
            return pa.nulls(n, out_type), np.arange(n, dtype=np.int64)
        h = n // 2
        a, bad_a = _isolate(arr.slice(0, h), fn, out_type)
        b, bad_b = _isolate(arr.slice(h), fn, out_type)
        return pa.concat_arrays([a, b]), np.concatenate([bad_a, bad_b + h])


class _Errors:
    """Row problems of one batch; the first problem found for a row is the one kept."""

    def __init__(self, n: int):
        self.bad = np.zeros(n, bool)
        self.parts: list[tuple[np.ndarray, str, list[str]]] = []

    def add(
        self, positions: np.ndarray, reason: str, details: list[str] | Callable[[np.ndarray], list[str]]
    ) -> None:
        positions = np.asarray(positions, np.int64)
        if len(positions) == 0:
            return
        keep = ~self.bad[positions]
        if not keep.all():
            if not callable(details):
                details = [d for d, k in zip(details, keep, strict=True) if k]
            positions = positions[keep]
            if len(positions) == 0:
                return
        if callable(details):
            details = details(positions)
        self.bad[positions] = True
        self.parts.append((positions, reason, list(details)))

    def add_bad(self, bad: list[tuple[int, _Bad]]) -> None:
        by_reason: dict[str, tuple[list[int], list[str]]] = {}
        for pos, b in bad:
            ps, ds = by_reason.setdefault(b.reason, ([], []))
            ps.append(pos)
            ds.append(b.detail)
        for reason, (ps, ds) in by_reason.items():
            self.add(np.asarray(ps, np.int64), reason, ds)


def _fill(n: int, typ: pa.DataType, parts: list[tuple[np.ndarray, pa.Array]]) -> pa.Array:
    """An array of ``n`` nulls of type ``typ`` with ``parts`` (positions, values) filled in."""
    if len(parts) == 1 and len(parts[0][0]) == n:
        return parts[0][1]
    vals = np.zeros(n, np.int64)
    valid = np.zeros(n, bool)
    for pos, arr in parts:
        if len(pos):
            a = arr.cast(pa.int64()) if not pa.types.is_int64(arr.type) else arr
            vals[pos] = a.fill_null(0).to_numpy(zero_copy_only=False)
            valid[pos] = a.is_valid().to_numpy(zero_copy_only=False)
    return pa.array(vals, pa.int64(), mask=~valid).cast(typ) if n else pa.array([], typ)


# --------------------------------------------------------------------------- columns


def _v_timestamps(arr: pa.Array, rules: _Rules, label: str, errors: _Errors) -> pa.Array:
    """start column -> timestamp[us, UTC]; nulls where missing or bad (bad ones reported)."""
    n = len(arr)
    t = arr.type
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            return arr.cast(TS_TYPE, safe=False)
        return _v_localize(arr.cast(pa.timestamp("us"), safe=False), rules, label, errors, arr)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        unit = _EPOCH_UNITS[rules.fmt]  # checked when binding
        if pa.types.is_integer(t):
            out, failed = _isolate(
                arr, lambda a: pc.multiply_checked(a.cast(pa.int64()), unit).cast(TS_TYPE), TS_TYPE
            )
        else:
            f = arr.cast(pa.float64())
            ok = pc.is_finite(f)
            f = pc.if_else(ok, f, pa.scalar(None, pa.float64()))
            out, failed = _isolate(
                f, lambda a: pc.floor(pc.multiply(a, float(unit))).cast(pa.int64()).cast(TS_TYPE), TS_TYPE
            )
            failed = np.union1d(failed, _positions(pc.and_(pc.invert(ok), arr.is_valid())))
        return _v_python_ts(arr, out, failed, rules, label, errors)
    s = _as_string(arr)  # cleaned by the caller
    if rules.fmt in _EPOCH_UNITS:
        unit = _EPOCH_UNITS[rules.fmt]
        ints, failed = _isolate(
            s, lambda a: pc.multiply_checked(a.cast(pa.int64()), unit).cast(TS_TYPE), TS_TYPE
        )
        failed = (
            failed[s.take(pa.array(failed)).is_valid().to_numpy(zero_copy_only=False)]
            if len(failed)
            else failed
        )
        return _v_python_ts(s, ints, failed, rules, label, errors)
    if rules.fmt is not None:
        try:
            parsed = pc.strptime(s, format=rules.fmt, unit="us", error_is_null=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed = pa.nulls(n, pa.timestamp("us"))
        if "%z" in rules.fmt or pa.types.is_timestamp(parsed.type) and parsed.type.tz is not None:
            # an offset cannot be checked by formatting back: every value goes through Python
            return _v_python_ts(s, pa.nulls(n, TS_TYPE), _positions(s.is_valid()), rules, label, errors)
        # glibc's strptime accepts 31/02: keep only values that format back to themselves
        try:
            same = pc.equal(pc.strftime(parsed, format=rules.fmt), s).fill_null(False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            same = pa.array(np.zeros(n, bool))
        parsed = pc.if_else(same, parsed, pa.scalar(None, pa.timestamp("us")))
        retry = _positions(pc.and_(pc.invert(same), s.is_valid()))
        local = _v_localize(parsed, rules, label, errors, s)
        return _v_python_ts(s, local, retry, rules, label, errors)
    # ISO 8601: the whole column at once when every value has an offset (the usual case)
    try:
        return s.cast(TS_TYPE)
    except pa.ArrowInvalid:
        pass
    m_aware = pc.match_substring_regex(s, _ARROW_AWARE).fill_null(False)
    m_naive = pc.match_substring_regex(s, _ARROW_NAIVE).fill_null(False)
    aware = _positions(m_aware)
    naive = _positions(m_naive)
    parts = []
    retry = [_positions(pc.and_(s.is_valid(), pc.invert(pc.or_(m_aware, m_naive))))]
    if len(aware):
        vals, failed = _isolate(s.take(pa.array(aware)), lambda a: a.cast(TS_TYPE), TS_TYPE)
        parts.append((aware, vals))
        retry.append(aware[failed])
    if len(naive):
        sub = s.take(pa.array(naive))
        vals, failed = _isolate(sub, lambda a: a.cast(pa.timestamp("us")), pa.timestamp("us"))
        sub_err = _Errors(len(naive))
        vals = _v_localize(vals, rules, label, sub_err, sub)
        for pos, reason, details in sub_err.parts:
            errors.add(naive[pos], reason, details)
        parts.append((naive, vals))
        retry.append(naive[failed])
    out = _fill(n, TS_TYPE, parts)
    return _v_python_ts(s, out, np.sort(np.concatenate(retry)), rules, label, errors)


def _v_localize(naive: pa.Array, rules: _Rules, label: str, errors: _Errors, shown: pa.Array) -> pa.Array:
    if rules.tz is None:
        return naive.cast(TS_TYPE)
    try:
        return pc.assume_timezone(naive, rules.tz_name, ambiguous="earliest", nonexistent="raise").cast(
            TS_TYPE
        )
    except pa.ArrowInvalid:
        early = pc.assume_timezone(naive, rules.tz_name, ambiguous="earliest", nonexistent="earliest")
        late = pc.assume_timezone(naive, rules.tz_name, ambiguous="earliest", nonexistent="latest")
        gap = pc.not_equal(early, late).fill_null(False)
        pos = _positions(gap)
        values = shown.take(pa.array(pos)).to_pylist()
        errors.add(
            pos,
            "bad_timestamp",
            [f"{label} '{_short(v)}' does not exist in {rules.tz_name} (DST gap)" for v in values],
        )
        return pc.if_else(gap, pa.scalar(None, early.type), early).cast(TS_TYPE)


def _v_python_ts(
    s: pa.Array, out: pa.Array, retry: np.ndarray, rules: _Rules, label: str, errors: _Errors
) -> pa.Array:
    """Parse the values at ``retry`` with the Python parser and put them into ``out``."""
    if len(retry) == 0:
        return out
    fixed: list[int | None] = []
    bad: list[tuple[int, _Bad]] = []
    for pos, v in zip(retry, s.take(pa.array(retry)).to_pylist(), strict=True):
        try:
            fixed.append((_parse_timestamp(v, rules, label) - _EPOCH) // _US)
        except _Bad as b:
            fixed.append(None)
            bad.append((int(pos), b))
    errors.add_bad(bad)
    mask = np.zeros(len(s), bool)
    mask[retry] = True
    return pc.replace_with_mask(out, pa.array(mask), pa.array(fixed, pa.int64()).cast(TS_TYPE))


_CLEAN_INT = r"^[0-9]{1,18}$"


def _v_whole(arr: pa.Array, f: str, label: str, errors: _Errors) -> pa.Array:
    """duration_s / volume / units -> int64 with nulls where missing or bad."""
    t = arr.type
    if pa.types.is_integer(t):
        out, failed = _isolate(arr, lambda a: a.cast(pa.int64()), pa.int64())
        retry = failed
        neg = pc.less(out, 0).fill_null(False)
        if pc.any(neg).as_py():
            retry = np.union1d(retry, _positions(neg))
            out = pc.if_else(neg, pa.scalar(None, pa.int64()), out)
        return _v_python_whole(arr, out, retry, f, label, errors)
    if pa.types.is_floating(t):
        x = arr.cast(pa.float64())
        ok = pc.and_(pc.is_finite(x), pc.equal(pc.floor(x), x)).fill_null(True)
        ok = pc.and_(ok, pc.greater_equal(x, 0).fill_null(True))
        ok = pc.and_(ok, pc.less(x, 2.0**62).fill_null(True))
        out = pc.if_else(ok, x, pa.scalar(None, pa.float64())).cast(pa.int64())
        return _v_python_whole(arr, out, _positions(pc.invert(ok)), f, label, errors)
    s = _as_string(arr)  # cleaned by the caller
    valid = s.drop_null() if s.null_count else s
    if len(valid) and _all_digits(valid, 18):
        return s.cast(pa.int64())
    clean = pc.match_substring_regex(s, _CLEAN_INT).fill_null(False)
    out = pc.if_else(clean, s, pa.scalar(None, pa.string())).cast(pa.int64())
    retry = _positions(pc.and_(pc.invert(clean), s.is_valid()))
    return _v_python_whole(s, out, retry, f, label, errors)


def _all_digits(arr: pa.StringArray, max_len: int) -> bool:
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    lens = np.diff(off)
    if lens.min() < 1 or lens.max() > max_len:
        return False
    body = np.frombuffer(bufs[2], np.uint8)[off[0] : off[-1]]
    return bool(body.min() >= 48 and body.max() <= 57)


def _v_python_whole(
    src: pa.Array, out: pa.Array, retry: np.ndarray, f: str, label: str, errors: _Errors
) -> pa.Array:
    if len(retry) == 0:
        return out
    fixed: list[int | None] = []
    bad: list[tuple[int, _Bad]] = []
    for pos, v in zip(retry, src.take(pa.array(retry)).to_pylist(), strict=True):
        try:
            fixed.append(_parse_whole(v, f, label))
        except _Bad as b:
            fixed.append(None)
            bad.append((int(pos), b))
    errors.add_bad(bad)
    mask = np.zeros(len(out), bool)
    mask[retry] = True
    return pc.replace_with_mask(out, pa.array(mask), pa.array(fixed, pa.int64()))


# --------------------------------------------------------------------------- duplicates


class _SeenKeys:
    """A growing set of int64 keys kept as sorted numpy runs (8 bytes a key).

    Keys that arrive above everything seen (ids growing through a file, the usual case) are
    appended as a run of their own and never copied again; a membership test for such keys
    is a comparison with the maximum. Other runs are merged log-structured (a run is merged
    into the previous one while that one is not at least twice as long), so that tests stay
    a few binary searches.
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []
        self.min: int | None = None
        self.max: int | None = None

    def contains(self, keys: np.ndarray) -> np.ndarray:
        hit = np.zeros(len(keys), bool)
        if self.max is None or len(keys) == 0 or keys.min() > self.max or keys.max() < self.min:
            return hit
        if len(self.runs) > 16:
            self._compact()
        for run in self.runs:
            idx = np.searchsorted(run, keys)
            np.minimum(idx, len(run) - 1, out=idx)
            hit |= run[idx] == keys
        return hit

    def add(self, keys: np.ndarray, *, ascending: bool = False) -> None:
        """Add keys that are distinct and not yet in the set (``ascending``: already sorted)."""
        if len(keys) == 0:
            return
        run = keys if ascending else np.sort(keys)
        above = self.max is not None and run[0] > self.max
        self.min = int(run[0]) if self.min is None else min(self.min, int(run[0]))
        self.max = int(run[-1]) if self.max is None else max(self.max, int(run[-1]))
        self.runs.append(run)
        if above:
            return
        while len(self.runs) >= 2 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            b = self.runs.pop()
            a = self.runs.pop()
            self.runs.append(_merge_sorted(a, b))

    def _compact(self) -> None:
        runs = self.runs
        while len(runs) > 1:
            runs = [
                _merge_sorted(runs[i], runs[i + 1]) if i + 1 < len(runs) else runs[i]
                for i in range(0, len(runs), 2)
            ]
        self.runs = runs

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.runs)


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    merged = np.concatenate([a, b])
    if a[-1] >= b[0]:
        merged.sort(kind="stable")  # timsort: a linear merge of the two runs
    return merged


def _ascending(keys: np.ndarray) -> bool:
    return len(keys) < 2 or bool((keys[1:] > keys[:-1]).all())


def _first_occurrences(*keys: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group equal entries (equal on every key array): the position of each group's first
    entry, and the groups' keys in sorted order."""
    n = len(keys[0])
    order = np.argsort(keys[0]) if len(keys) == 1 else np.lexsort(keys[::-1])
    ordered = [k[order] for k in keys]
    change = np.zeros(n, bool)
    change[0] = True
    for k in ordered:
        change[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(change)
    first = np.minimum.reduceat(order, starts)  # the sort need not be stable
    return first, [k[starts] for k in ordered]


_CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,17})$"


def _canonical_ints(arr: pa.StringArray) -> np.ndarray:
    """Which strings are integers written canonically (so that int64 keys are exact)."""
    if len(arr) and not arr.null_count:
        bufs = arr.buffers()
        off = np.frombuffer(bufs[1], np.int32, count=len(arr) + 1, offset=arr.offset * 4)
        data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
        lens = np.diff(off)
        body = data[off[0] : off[-1]]
        if lens.min() >= 1 and lens.max() <= 18 and body.min() >= 48 and body.max() <= 57:
            lead0 = (data[off[:-1]] == 48) & (lens > 1)
            if not lead0.any():
                return np.ones(len(arr), bool)
    return pc.match_substring_regex(arr, _CANONICAL_INT).fill_null(False).to_numpy(zero_copy_only=False)


class _Deduper:
    """Ids seen in a run. Integer ids (and strings that are canonical integers) are kept as
    int64; other strings as two independent 64-bit hashes (a false duplicate needs both to
    collide: about 1e-25 per row at 10 million ids)."""

    def __init__(self) -> None:
        self.ints = _SeenKeys()
        self.h1 = _SeenKeys()
        self.h2 = _SeenKeys()

    def duplicates(self, ids: pa.Array, candidates: np.ndarray) -> np.ndarray:
        """Positions among ``candidates`` (valid rows, in order) whose id was seen before;
        the other candidates' ids are recorded."""
        if len(candidates) == 0:
            return candidates
        if pa.types.is_integer(ids.type):
            keys = ids.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            if len(candidates) != len(ids):
                keys = keys[candidates]
            return candidates[self._check(self.ints, keys)]
        sub = ids if len(candidates) == len(ids) else ids.take(pa.array(candidates))
        canon = _canonical_ints(sub)
        dup = np.zeros(len(sub), bool)
        if canon.any():
            pos = np.flatnonzero(canon)
            keys = sub.take(pa.array(pos)).cast(pa.int64()).to_numpy()
            dup[pos] = self._check(self.ints, keys)
        if not canon.all():
            import polars as pl

            pos = np.flatnonzero(~canon)
            series = pl.from_arrow(sub.take(pa.array(pos)))
            k1 = series.hash(seed=0x1CD5).to_numpy().view(np.int64)
            # the second hash reads the strings backwards: a collision of one says nothing
            # about the other, whatever the hash function's structure
            k2 = series.str.reverse().hash(seed=0x5EED).to_numpy().view(np.int64)
            dup[pos] = self._check_pair(k1, k2)
        return candidates[dup]

    @staticmethod
    def _check(seen: _SeenKeys, keys: np.ndarray) -> np.ndarray:
        if _ascending(keys):  # the usual case: ids grow through the file
            dup = seen.contains(keys)
            seen.add(keys[~dup] if dup.any() else keys, ascending=True)
            return dup
        first, (distinct,) = _first_occurrences(keys)
        known = seen.contains(distinct)
        dup = np.ones(len(keys), bool)
        dup[first[~known]] = False
        seen.add(distinct[~known], ascending=True)
        return dup

    def _check_pair(self, k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
        first, (d1, d2) = _first_occurrences(k1, k2)
        known = self.h1.contains(d1) & self.h2.contains(d2)
        dup = np.ones(len(k1), bool)
        dup[first[~known]] = False
        self.h1.add(np.unique(d1[~known]))
        self.h2.add(np.unique(d2[~known]))
        return dup

    @property
    def nbytes(self) -> int:
        return self.ints.nbytes + self.h1.nbytes + self.h2.nbytes


# --------------------------------------------------------------------------- sources


@dataclass
class _Piece:
    """Source rows read but not yet normalized: the ``table`` (source columns), each row's
    number, a way to get the original text of rows, and rejects found while reading."""

    table: pa.Table
    rows: np.ndarray
    raw: Callable[[np.ndarray], list[str]]
    pre: list[tuple[int, str | None, str, str, str]]

    @property
    def n(self) -> int:
        return self.table.num_rows

    def slice(self, a: int, b: int) -> _Piece:
        lo = self.rows[a] if a > 0 else -1
        hi = self.rows[b] if b < self.n else 2**62
        raw = self.raw
        return _Piece(
            self.table.slice(a, b - a),
            self.rows[a:b],
            lambda pos: raw(pos + a),
            [p for p in self.pre if lo <= p[0] < hi],
        )


def _keep(table: pa.Table, good: np.ndarray) -> pa.Table:
    """``table`` without the rows where ``good`` is False. A few dropped rows cost no copy:
    the result is made of slices (chunks) of the original columns."""
    bad = np.flatnonzero(~good)
    if len(bad) > 64:
        return table.filter(pa.array(good))
    parts, start = [], 0
    for i in bad.tolist():
        if i > start:
            parts.append(table.slice(start, i - start))
        start = i + 1
    if start < table.num_rows:
        parts.append(table.slice(start))
    return pa.concat_tables(parts) if parts else table.slice(0, 0)


def _merge(parts: list[IntakeBatch]) -> IntakeBatch:
    """One batch from the normalized pieces of consecutive source rows."""
    if len(parts) == 1:
        return parts[0]
    counts = IntakeCounts()
    for p in parts:
        counts.add(p.counts)
    return IntakeBatch(
        pa.concat_tables([p.records for p in parts]),
        pa.concat_tables([p.rejects for p in parts]),
        min(p.first_row for p in parts),
        counts,
    )


PREFETCH = True  # parse the next CSV block in a thread while normalizing (False: for profiling)
PARQUET_PREFETCH = False  # the same for Parquet (else pyarrow decodes each batch multi-threaded)


def _prefetch(pieces: Iterator[_Piece], depth: int = 2) -> Iterator[_Piece]:
    """Read (parse, decode) the next pieces in a thread while the current one is normalized:
    at most ``depth`` pieces wait in memory. Errors of the reader are raised here."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for piece in pieces:
                if not put(piece):
                    return
            put(end)
        except BaseException as exc:  # handed to the consumer
            put(exc)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="icdsl-intake-reader", daemon=True)
    worker.start()
    try:
        while True:
            x = q.get()
            if x is end:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        worker.join()


class _CsvSource:
    def __init__(self, path: str, label: str, compression: str | None):
        self.path = path
        self.label = label
        self.compression = compression
        self.names: list[str] = []
        self.delimiter = ","
        self.types: dict[str, pa.DataType] = {}
        with self._open() as f:
            head, self._header_bytes = self._read_header(f)
        if head is None:
            return
        text = head.decode("utf-8") if isinstance(head, bytes) else head
        self.delimiter = _sniff_delimiter(text)
        try:
            fields = next(csv.reader([text], delimiter=self.delimiter), [])
        except csv.Error as exc:
            raise IntakeError(f"{self.label}: the header line cannot be read as CSV ({exc})") from None
        seen: dict[str, int] = {}
        for i, name in enumerate(fields):
            name = name.strip() or f"column_{i + 1}"
            if name in seen:
                seen[name] += 1
                name = f"{name}_{seen[name]}"
            seen.setdefault(name, 1)
            self.names.append(name)
        self.types = {n: pa.string() for n in self.names}

    def _open(self) -> Any:
        try:
            return pa.input_stream(self.path, compression=self.compression)
        except (OSError, pa.ArrowException) as exc:
            raise IntakeError(f"cannot read {self.label}: {exc}") from None

    def _read_header(self, f: Any) -> tuple[str | None, int]:
        buf = b""
        while b"\n" not in buf:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            buf += chunk
            if len(buf) > 16 << 20:
                raise IntakeError(f"{self.label} is not a CSV file (no line end in its first 16 MB)")
        if not buf:
            return None, 0
        line = buf.split(b"\n", 1)[0]
        size = len(line) + (1 if len(line) < len(buf) else 0)
        if line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        line = line.rstrip(b"\r")
        if b"\r" in line:
            raise IntakeError(
                f"{self.label} ends its lines with a carriage return alone (old Mac style); "
                "convert the line ends to \\n or \\r\\n"
            )
        if b"\x00" in line:
            raise IntakeError(
                f"{self.label} is neither a Parquet file nor a CSV file (binary data in its first line)"
            )
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise IntakeError(f"{self.label}: the header line is not UTF-8 text; is it a CSV file?") from None
        if not text.strip():
            raise IntakeError(f"{self.label}: the first line is empty; a CSV file starts with a header line")
        return text, size

    def _open_raw(self) -> Any:
        """The file as a Python binary stream (``readinto`` avoids copying blocks around)."""
        try:
            if self.compression is None:
                return open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
            if self.compression == "gzip":
                import gzip

                return gzip.open(self.path, "rb")
            if self.compression == "bz2":
                import bz2

                return bz2.open(self.path, "rb")
        except OSError as exc:
            raise IntakeError(f"cannot read {self.label}: {exc.strerror or exc}") from None
        return self._open()

    def pieces(self) -> Iterator[_Piece]:
        if not self.names:
            return
        with self._open_raw() as f:
            _read_exactly(f, self._header_bytes)
            pending = b""
            line = 2
            want = BLOCK_BYTES
            while True:
                buf = bytearray(len(pending) + want)
                buf[: len(pending)] = pending
                got = _read_into(f, memoryview(buf)[len(pending) :])
                size = len(pending) + got
                eof = got == 0
                if eof:
                    end = size
                else:
                    end = buf.rfind(b"\n", 0, size) + 1
                    if end == 0:  # no line end yet: a long line, read more (twice as much)
                        pending = bytes(buf[:size])
                        if len(pending) > MAX_LINE_BYTES:
                            piece, pending, used = self._too_long(f, pending, line)
                            yield piece
                            line += used
                        want = max(BLOCK_BYTES, len(pending))
                        continue
                want = BLOCK_BYTES
                pending = bytes(buf[end:size])
                if end:
                    piece, nlines = self._parse_block(buf, end, line)
                    line += nlines
                    yield piece
                if eof:
                    return

    def _too_long(self, f: Any, pending: bytes, line: int) -> tuple[_Piece, bytes, int]:
        size = len(pending)
        while True:
            chunk = f.read(BLOCK_BYTES)
            if not chunk:
                rest = b""
                break
            cut = chunk.find(b"\n")
            if cut >= 0:
                size += cut
                rest = chunk[cut + 1 :]
                break
            size += len(chunk)
        raw = pending[:1000].decode("utf-8", "backslashreplace") + f"… ({size} bytes)"
        detail = f"line has {size} bytes, more than the {MAX_LINE_BYTES} allowed"
        empty = pa.table({n: pa.array([], pa.string()) for n in self.names})
        return (
            _Piece(
                empty, np.zeros(0, np.int64), lambda pos: [], [(line, None, "malformed_row", detail, raw)]
            ),
            rest,
            1,
        )

    def _read(self, block: pa.Buffer, threads: bool, handler: Callable[[Any], str]) -> pa.Table:
        return pacsv.read_csv(
            pa.BufferReader(block),
            # single-threaded: the block in one chunk (no copy to combine chunks afterwards)
            read_options=pacsv.ReadOptions(
                column_names=self.names,
                use_threads=threads,
                block_size=(1 << 20) if threads else max(1 << 20, block.size + 1),
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.delimiter,
                newlines_in_values=False,
                ignore_empty_lines=False,
                invalid_row_handler=handler,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=self.types,
                check_utf8=True,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    def _parse_block(self, buf: bytearray, end: int, first: int) -> tuple[_Piece, int]:
        """Parse ``buf[:end]`` (whole lines, the first being line ``first``): the piece and the
        number of lines."""
        # Without quotes or carriage returns, every line is one row or one invalid row for
        # pyarrow: no need to count the lines (a quoted value may span lines, a lone \r ends one).
        simple = buf.find(b'"', 0, end) < 0 and buf.find(b"\r", 0, end) < 0
        nlines = -1 if simple else buf.count(b"\n", 0, end) + (0 if buf[end - 1] == 10 else 1)
        block = pa.py_buffer(buf)[:end]
        lines = _BlockLines(buf, end)
        invalid: list[Any] = []
        try:
            table = self._read(block, not PREFETCH, lambda r: invalid.append(r) or "skip")
            if simple:
                nlines = table.num_rows + len(invalid)
            if not invalid and table.num_rows == nlines:
                rows = first + np.arange(nlines, dtype=np.int64)
                return self._drop_blank(_Piece(table, rows, lines.raw_of(rows, first), []), lines, first), nlines
            if invalid:
                invalid.clear()
                table = self._read(block, False, lambda r: invalid.append(r) or "skip")
                numbers = [r.number for r in invalid]
                if table.num_rows + len(invalid) == nlines and None not in numbers:
                    bad_idx = np.asarray(sorted(numbers), np.int64) - 1
                    w = bad_idx - np.arange(len(bad_idx))
                    k = np.arange(table.num_rows, dtype=np.int64)
                    idx = k + np.searchsorted(w, k, side="right")
                    pre = []
                    for r in invalid:
                        text = lines.text(r.number - 1)
                        if text.strip():  # a line of spaces is a blank line, not a record
                            detail = self._count_detail(r.actual_columns)
                            pre.append((first + r.number - 1, None, "malformed_row", detail, text))
                    rows = first + idx
                    piece = _Piece(table, rows, lines.raw_of(rows, first), pre)
                    return self._drop_blank(piece, lines, first), nlines
        except pa.ArrowInvalid:
            pass
        if nlines < 0:
            nlines = buf.count(b"\n", 0, end) + (0 if buf[end - 1] == 10 else 1)
        return self._python_block(bytes(buf[:end]), first), nlines

    def _count_detail(self, got: int) -> str:
        return f"line has {got} field{'s' if got != 1 else ''}, the header has {len(self.names)}"

    def _drop_blank(self, piece: _Piece, lines: _BlockLines, first: int) -> _Piece:
        """Blank lines parse as rows of empty strings: they are not records (a line of empty
        fields, ``,,,``, is one: it is rejected later for its missing fields)."""
        t = piece.table
        if t.num_rows == 0 or t.num_columns == 0:
            return piece
        empty = pc.equal(pc.binary_length(t.column(0)), 0)
        if not pc.any(empty).as_py():
            return piece
        cand = _positions(empty)
        blank = [p for p in cand.tolist() if not lines.text(int(piece.rows[p]) - first).strip()]
        if not blank:
            return piece
        keep = np.setdiff1d(np.arange(t.num_rows), blank)
        raw = piece.raw
        return _Piece(t.take(pa.array(keep)), piece.rows[keep], lambda pos: raw(keep[pos]), piece.pre)

    def _python_block(self, block: bytes, first: int) -> _Piece:
        """The slow path: line by line with Python's csv module (bad bytes, odd quoting)."""
        parts = block.split(b"\n")
        if block.endswith(b"\n"):
            parts.pop()
        texts: list[str] = []
        undecodable: dict[int, str] = {}
        for i, b in enumerate(parts):
            b = b[:-1] if b.endswith(b"\r") else b
            try:
                texts.append(b.decode("utf-8"))
            except UnicodeDecodeError as exc:
                texts.append(b.decode("utf-8", "backslashreplace"))
                undecodable[i] = f"line is not UTF-8 (byte 0x{b[exc.start]:02x} at position {exc.start + 1})"
        ncols = len(self.names)
        cols: list[list[str]] = [[] for _ in range(ncols)]
        rows: list[int] = []
        raws: list[str] = []
        pre: list[tuple[int, str | None, str, str, str]] = []
        base = start = 0
        reader = csv.reader((t + "\n" for t in texts), delimiter=self.delimiter, strict=False)
        while start < len(texts):
            try:
                rec = next(reader)
            except StopIteration:
                break
            except csv.Error:
                rec = None
            end = max(base + reader.line_num, start + 1)
            if rec is None:  # start again after the line the csv module refused
                base = end
                reader = csv.reader((t + "\n" for t in texts[end:]), delimiter=self.delimiter, strict=False)
            raw = "\n".join(texts[start:end])
            bad = next((undecodable[j] for j in range(start, end) if j in undecodable), None)
            if bad is not None:
                pre.append((first + start, None, "malformed_row", bad, raw))
            elif rec is None:
                pre.append((first + start, None, "malformed_row", "line cannot be parsed as CSV", raw))
            elif not rec or (len(rec) == 1 and not rec[0].strip() and ncols > 1):
                pass  # a blank line: not a record
            elif len(rec) != ncols:
                pre.append((first + start, None, "malformed_row", self._count_detail(len(rec)), raw))
            else:
                for c, v in zip(cols, rec, strict=True):
                    c.append(v)
                rows.append(first + start)
                raws.append(raw)
            start = end
        table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(self.names, cols, strict=True)})
        return _Piece(table, np.asarray(rows, np.int64), lambda pos: [raws[p] for p in pos], pre)


class _BlockLines:
    """Line offsets of a CSV block (``buf[:end]``), computed only when a line's text is asked."""

    def __init__(self, buf: bytearray, end: int):
        self.buf = buf
        self.end = end
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) byte offsets of every line, the end excluding the newline."""
        if self._bounds is None:
            ends = np.flatnonzero(np.frombuffer(self.buf, np.uint8, count=self.end) == 10)
            if self.buf[self.end - 1] != 10:
                ends = np.append(ends, self.end)
            starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
            self._bounds = (starts, ends)
        return self._bounds

    def text(self, k: int) -> str:
        starts, ends = self.bounds()
        b = bytes(self.buf[starts[k] : ends[k]])
        return (b[:-1] if b.endswith(b"\r") else b).decode("utf-8", "backslashreplace")

    def raw_of(self, rows: np.ndarray, first: int) -> Callable[[np.ndarray], list[str]]:
        """Original text of table positions, given each table row's line number."""
        return lambda pos: [self.text(int(r) - first) for r in rows[pos]]


def _read_into(f: Any, view: memoryview) -> int:
    """Fill ``view`` from ``f`` as far as the file goes; the number of bytes read."""
    total = 0
    readinto = getattr(f, "readinto", None)
    while total < len(view):
        if readinto is not None:
            got = readinto(view[total:])
        else:
            chunk = f.read(len(view) - total)
            got = len(chunk)
            view[total : total + got] = chunk
        if not got:
            break
        total += got
    return total


def _read_exactly(f: Any, n: int) -> None:
    while n > 0:
        chunk = f.read(min(n, 1 << 20))
        if not chunk:
            return
        n -= len(chunk)


def _sniff_delimiter(header: str) -> str:
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in (";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class _ParquetSource:
    def __init__(self, path: str, label: str):
        self.path = path
        self.label = label
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise IntakeError(f"cannot read {label} as Parquet: {exc}") from None
        schema = self.file.schema_arrow
        self.names = list(schema.names)
        self.types = {f.name: f.type for f in schema}
        self.batch_rows = 1_000_000

    def pieces(self) -> Iterator[_Piece]:
        # One row group at a time: iterating the whole file at once keeps the pre-buffered
        # bytes of every row group read so far (memory grows with the file). A huge row group
        # is read without pre-buffering.
        meta = self.file.metadata
        done = 0
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            size = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
            source = self.file if size <= (512 << 20) else pq.ParquetFile(self.path, pre_buffer=False)
            it = source.iter_batches(
                batch_size=self.batch_rows, row_groups=[g], use_threads=not PARQUET_PREFETCH
            )
            while True:
                try:
                    rb = next(it)
                except StopIteration:
                    break
                except (OSError, pa.ArrowException) as exc:
                    raise IntakeError(f"{self.label}: cannot read the rows after row {done}: {exc}") from None
                table = pa.Table.from_batches([rb])
                rows = np.arange(done + 1, done + 1 + rb.num_rows, dtype=np.int64)
                done += rb.num_rows
                yield _Piece(table, rows, _json_rows(table), [])


def _json_rows(table: pa.Table) -> Callable[[np.ndarray], list[str]]:
    def raw(pos: np.ndarray) -> list[str]:
        rows = table.take(pa.array(np.asarray(pos, np.int64))).to_pylist()
        return [json.dumps(r, default=str, ensure_ascii=False) for r in rows]

    return raw


def _open_source(path: str) -> _CsvSource | _ParquetSource:
    label = os.path.basename(path) or path
    if not os.path.exists(path):
        raise IntakeError(f"cannot read {path}: no such file")
    if os.path.isdir(path):
        raise IntakeError(f"cannot read {path}: it is a directory")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise IntakeError(f"cannot read {path}: {exc.strerror or exc}") from None
    lower = path.lower()
    if magic == b"PAR1":
        return _ParquetSource(path, label)
    if lower.endswith((".parquet", ".pq")) and magic:
        raise IntakeError(f"{label} is not a Parquet file (it does not start with PAR1)")
    if magic.startswith(b"PK\x03\x04"):
        raise IntakeError(
            f"{label} is a ZIP archive (a spreadsheet?), neither CSV nor Parquet; export it as CSV"
        )
    compression = None
    if magic.startswith(b"\x1f\x8b"):
        compression = "gzip"
    elif magic.startswith(b"BZh"):
        compression = "bz2"
    elif magic == b"\x28\xb5\x2f\xfd":
        compression = "zstd"
    return _CsvSource(path, label, compression)


# --------------------------------------------------------------------------- binding a file


@dataclass
class _Binding:
    source: dict[str, str]  # field -> column of the file
    const: dict[str, Any]  # field -> normalized constant
    extras: list[tuple[str, str]]  # (column of the file, output name)
    extra_constants: list[tuple[str, str]]  # (output name, value)
    id_int: bool
    types: dict[str, pa.DataType]
    label_of: dict[str, str]


def _find(names: list[str], wanted: str) -> str | None:
    if wanted in names:
        return wanted
    folded = [n for n in names if n.casefold() == wanted.casefold()]
    return folded[0] if len(folded) == 1 else None


def _bind(
    names: list[str], types: dict[str, pa.DataType], rules: _Rules, label: str, is_csv: bool
) -> _Binding:
    listed = ", ".join(names) if names else "(none)"
    source: dict[str, str] = {}
    const: dict[str, Any] = {}
    service = rules.constants.get("service")
    for f in (*FIELDS, *(k for k in rules.mapping if k not in FIELDS)):
        if f in rules.mapping:
            col = _find(names, rules.mapping[f])
            if col is None:
                raise IntakeError(
                    f"column '{rules.mapping[f]}' (mapped to {f} by layout '{rules.name}') not found in {label}; "
                    f"the columns are: {listed}"
                )
            source[f] = col
            continue
        col = _find(names, f)
        if col is not None:
            source[f] = col
        elif f in rules.constants and f in FIELDS:
            const[f] = rules.constants[f]
        elif f in ("id", "partner", "direction", "service", "start") or (
            (f == "b_number" and (service is None or service in _CALL_SERVICES))
            or (f == "duration_s" and (service is None or service == "voice"))
        ):
            raise IntakeError(
                f"column '{f}' not found in {label}; the columns are: {listed}; "
                f"map it in a `records` layout"
                + (" (or give it a constant)" if f in ("direction", "service", "partner") else "")
            )
    used = set(source.values())
    taken = set(FIELDS) | set(source)
    extras = []
    for n in names:
        if n not in used:
            out = n if n not in taken else f"{n}_source"
            extras.append((n, out))
    extra_constants = [(k, v) for k, v in rules.constants.items() if k not in FIELDS and k not in source]
    if "start" in source:
        t = types.get(source["start"], pa.string())
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        if numeric and rules.fmt not in _EPOCH_UNITS:
            raise IntakeError(
                f"column '{source['start']}' of {label} holds numbers ({t}); set the layout's timestamp_format "
                "to epoch (or epoch_ms) if they are times since 1970"
            )
        if not (numeric or pa.types.is_timestamp(t) or _is_text(t)):
            raise IntakeError(f"column '{source['start']}' of {label} has type {t}, which is not a timestamp")
    id_type = types.get(source.get("id", ""), pa.string())
    id_int = not is_csv and pa.types.is_integer(id_type) and id_type != pa.uint64()
    label_of = {f: (c if c == f else f"{c} ({f})") for f, c in source.items()}
    return _Binding(source, const, extras, extra_constants, id_int, types, label_of)


def _is_text(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or (pa.types.is_dictionary(t) and _is_text(t.value_type))
    )


def record_schema(*, int_ids: bool = False) -> pa.Schema:
    """The schema of normalized records, without the extra columns a file may add."""
    return _schema(None, int_ids)


def _schema(binding: _Binding | None, int_ids: bool = False) -> pa.Schema:
    id_type = pa.int64() if (binding.id_int if binding is not None else int_ids) else pa.string()
    base = [
        pa.field("id", id_type),
        pa.field("partner", pa.string()),
        pa.field("direction", pa.string()),
        pa.field("service", pa.string()),
        pa.field("a_number", pa.string()),
        pa.field("b_number", pa.string()),
        pa.field("start", TS_TYPE),
        pa.field("duration_s", pa.int64()),
        pa.field("volume", pa.int64()),
        pa.field("units", pa.int64()),
    ]
    if binding is None:
        return pa.schema(base)
    extra = [
        pa.field(f, binding.types.get(c, pa.string())) for f, c in binding.source.items() if f not in FIELDS
    ]
    extra += [pa.field(out, binding.types.get(col, pa.string())) for col, out in binding.extras]
    extra += [pa.field(k, pa.string()) for k, _ in binding.extra_constants]
    return pa.schema(base + extra)


# --------------------------------------------------------------------------- the reader


class RecordReader:
    """Stream a CSV or Parquet traffic file as normalized :class:`IntakeBatch` es.

    ``batch_rows``: at most that many source rows per batch; ``dedupe``: reject repeated ids;
    ``numbers``: ``normalize`` (the rules of :mod:`icdsl.rating.numbers`) or ``e164`` (the
    numbers are E.164 digits already: no prefix is interpreted, e.g. for the benchmark files);
    by default the layout's ``numbers`` setting (``numbers e164`` in a ``records`` block).

    ``counts`` holds the totals of the rows read so far (complete once :meth:`batches` is
    exhausted). File-level problems raise :class:`IntakeError` from the constructor.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        layout: RecordLayout | None = None,
        *,
        batch_rows: int = 1_000_000,
        dedupe: bool = True,
        numbers: str | None = None,
    ):
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.path = os.fspath(path)
        self.layout = layout
        self.batch_rows = batch_rows
        self.dedupe = dedupe
        self.counts = IntakeCounts()
        self._rules = _rules(layout, numbers)
        self._source = _open_source(self.path)
        if isinstance(self._source, _ParquetSource):
            self._source.batch_rows = batch_rows
        self._empty = not self._source.names
        self._binding = (
            _bind(
                self._source.names,
                self._source.types,
                self._rules,
                self._source.label,
                isinstance(self._source, _CsvSource),
            )
            if not self._empty
            else None
        )
        self.schema = _schema(self._binding)
        self._deduper = _Deduper()
        self._consts: dict[tuple[Any, str], pa.Array] = {}

    @property
    def format(self) -> str:
        return "parquet" if isinstance(self._source, _ParquetSource) else "csv"

    def batches(self) -> Iterator[IntakeBatch]:
        self.counts = IntakeCounts()
        self._deduper = _Deduper()
        if self._empty:
            return
        acc: list[IntakeBatch] = []
        size = 0
        # CSV: one thread parses the next block while this one normalizes the current block.
        # Parquet: pyarrow decodes the columns of a batch in parallel already.
        pieces = self._source.pieces()
        if PREFETCH if isinstance(self._source, _CsvSource) else PARQUET_PREFETCH:
            pieces = _prefetch(pieces)
        for piece in pieces:
            while piece.n > self.batch_rows - size:
                room = self.batch_rows - size
                acc.append(self._batch(piece.slice(0, room)))
                yield _merge(acc)
                acc, size = [], 0
                piece = piece.slice(room, piece.n)
            if piece.n or piece.pre:
                acc.append(self._batch(piece))
                size += piece.n
            if size >= self.batch_rows:
                yield _merge(acc)
                acc, size = [], 0
        if acc:
            yield _merge(acc)

    # ------------------------------------------------------------------ one batch

    def _const(self, value: Any, typ: pa.DataType, n: int) -> pa.Array:
        """A constant column of length ``n`` (slices of one cached array: no copy per batch)."""
        key = (value, str(typ))
        arr = self._consts.get(key)
        if arr is None or len(arr) < n:
            arr = pa.repeat(pa.scalar(value, typ), max(n, self.batch_rows if n else 0, 1))
            self._consts[key] = arr
        return arr.slice(0, n)

    def _batch(self, piece: _Piece) -> IntakeBatch:
        b = self._binding
        rules = self._rules
        t = piece.table
        n = t.num_rows
        errors = _Errors(n)

        def col(f: str) -> pa.Array | None:
            return _combine(t.column(b.source[f])) if f in b.source else None

        def const(f: str, typ: pa.DataType) -> pa.Array:
            return self._const(b.const.get(f), typ, n)

        def missing(f: str, positions: np.ndarray) -> None:
            errors.add(positions, "missing_field", [f"{b.label_of.get(f, f)} is empty"] * len(positions))

        out: dict[str, pa.Array] = {}
        # id
        ids = col("id")
        ids = ids.cast(pa.int64()) if b.id_int else _clean_text(ids)
        missing("id", _null_positions(ids))
        out["id"] = ids
        # partner, direction, service
        for f in ("partner", "direction", "service"):
            a = col(f)
            if a is None:
                a = const(f, pa.string())
            elif f == "partner" and pa.types.is_integer(a.type):
                a = _map_small(a, lambda x: x.cast(pa.string()))
            else:
                a = _clean_text(a)
                if f != "partner" and len(a):
                    a = _map_small(a, pc.utf8_lower)
            missing(f, _null_positions(a))
            out[f] = a
        if "service" in b.const:
            calls = np.full(n, b.const["service"] in _CALL_SERVICES)
            voice = np.full(n, b.const["service"] == "voice")
        else:
            service = out["service"]
            calls = (
                pc.is_in(service, pa.array(_CALL_SERVICES)).fill_null(False).to_numpy(zero_copy_only=False)
            )
            voice = pc.equal(service, "voice").fill_null(False).to_numpy(zero_copy_only=False)
        # a_number: normalized when possible, else kept as given
        a = col("a_number")
        if a is None:
            a = const("a_number", pa.string())
        else:
            a = _as_string(a)
            norm, bad, _ = to_e164_array(a, rules.numbers)
            if len(bad):
                mask = np.zeros(n, bool)
                mask[bad] = True
                norm = pc.replace_with_mask(
                    norm, pa.array(mask), pc.utf8_trim_whitespace(a.take(pa.array(bad)))
                )
            a = norm
        out["a_number"] = a
        # b_number
        bn = col("b_number")
        if bn is None:
            bn = const("b_number", pa.string())
            bad = np.zeros(0, np.int64)
        else:
            raw_bn = _as_string(bn)
            bn, bad, messages = to_e164_array(raw_bn, rules.numbers)
        absent = _null_mask(bn)
        if absent is not None:
            absent[bad] = False
            missing("b_number", np.flatnonzero(absent & calls))
        if len(bad):
            label = b.label_of.get("b_number", "b_number")
            values = raw_bn.take(pa.array(bad)).to_pylist()
            errors.add(
                bad,
                "invalid_number",
                [f"{label} '{_short(v)}' {m}" for v, m in zip(values, messages, strict=True)],
            )
        out["b_number"] = bn
        # start
        s = col("start")
        if s is None:
            ts = const("start", TS_TYPE)
        else:
            if _is_text(s.type):
                s = _clean_text(s)
            missing("start", _null_positions(s))
            ts = _v_timestamps(s, rules, b.label_of.get("start", "start"), errors)
        out["start"] = ts
        # duration_s, volume, units
        for f in ("duration_s", "volume", "units"):
            a = col(f)
            if a is None:
                a = const(f, pa.int64())
            else:
                if _is_text(a.type):
                    a = _clean_text(a)
                if f == "duration_s":
                    absent = _null_mask(a)
                    if absent is not None:
                        missing(f, np.flatnonzero(absent & voice))
                a = _v_whole(a, f, b.label_of.get(f, f), errors)
            if f == "duration_s" and a.null_count:
                a = a.fill_null(0)  # rows still null here are bad ones (dropped) or non-voice ones
            out[f] = a
        # extra columns
        for f, col_name in b.source.items():
            if f not in FIELDS:
                out[f] = t.column(col_name)
        for col_name, name in b.extras:
            out[name] = t.column(col_name)
        for name, value in b.extra_constants:
            out[name] = self._const(value, pa.string(), n)

        # duplicates among the rows that are otherwise valid
        dup_pos = np.zeros(0, np.int64)
        if self.dedupe and n:
            cand = np.flatnonzero(~errors.bad) if errors.parts else np.arange(n)
            dup_pos = self._deduper.duplicates(ids, cand)
        table = pa.table(out, schema=self.schema) if n else self.schema.empty_table()
        if errors.parts or len(dup_pos):
            good = ~errors.bad
            good[dup_pos] = False
            table = _keep(table, good)
        rejects, counts = self._rejects(piece, ids, errors, dup_pos)
        counts.passed = table.num_rows
        self.counts.add(counts)
        starts = [int(piece.rows[0])] if len(piece.rows) else []
        first = min(starts + [p[0] for p in piece.pre]) if starts or piece.pre else 0
        return IntakeBatch(table, rejects, first, counts)

    def _id_of_line(self, text: str) -> str | None:
        """The id field of a malformed CSV line, if the line has one."""
        if not isinstance(self._source, _CsvSource) or "id" not in self._binding.source:
            return None
        try:
            fields = next(csv.reader([text], delimiter=self._source.delimiter), [])
        except csv.Error:
            return None
        k = self._source.names.index(self._binding.source["id"])
        value = fields[k].strip() if k < len(fields) else ""
        return value or None

    def _rejects(
        self, piece: _Piece, ids: pa.Array, errors: _Errors, dup_pos: np.ndarray
    ) -> tuple[pa.Table, IntakeCounts]:
        counts = IntakeCounts(read=piece.n + len(piece.pre))
        pos_parts: list[np.ndarray] = []
        reasons: list[str] = []
        details: list[str] = []
        for pos, reason, ds in errors.parts:
            pos_parts.append(pos)
            reasons += [reason] * len(pos)
            details += ds
        if len(dup_pos):
            pos_parts.append(dup_pos)
            reasons += ["duplicate_id"] * len(dup_pos)
            id_label = self._binding.label_of.get("id", "id")
            dup_ids = ids.take(pa.array(dup_pos)).to_pylist()
            details += [f"{id_label} '{_short(v)}' was already seen earlier in the file" for v in dup_ids]
        pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int64)
        id_text = ids.take(pa.array(pos)).cast(pa.string()) if len(pos) else pa.array([], pa.string())
        raw = piece.raw(pos) if len(pos) else []
        table = pa.table(
            {
                "row": pa.array(piece.rows[pos] if len(pos) else [], pa.int64()),
                "id": id_text,
                "reason": pa.array(reasons, pa.string()),
                "detail": pa.array(details, pa.string()),
                "raw": pa.array(raw, pa.string()),
            },
            schema=REJECTS_SCHEMA,
        )
        if piece.pre:
            pre = pa.table(
                {
                    "row": pa.array([p[0] for p in piece.pre], pa.int64()),
                    "id": pa.array(
                        [p[1] if p[1] is not None else self._id_of_line(p[4]) for p in piece.pre], pa.string()
                    ),
                    "reason": pa.array([p[2] for p in piece.pre], pa.string()),
                    "detail": pa.array([p[3] for p in piece.pre], pa.string()),
                    "raw": pa.array([p[4] for p in piece.pre], pa.string()),
                },
                schema=REJECTS_SCHEMA,
            )
            table = pa.concat_tables([table, pre])
        if table.num_rows > 1:
            table = table.sort_by("row")
        for r in reasons + [p[2] for p in piece.pre]:
            counts.by_reason[r] = counts.by_reason.get(r, 0) + 1
        counts.duplicates = len(dup_pos)
        counts.rejected = table.num_rows - counts.duplicates
        return table, counts


def records_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Normalized records (dicts like those :func:`normalize_record` returns) -> a table with
    the record schema; ``id`` is int64 if every id is an int, else string; other keys become
    extra columns (types inferred by Arrow, strings if the values are mixed)."""
    rows = list(records)
    ids = [r.get("id") for r in rows]
    id_int = all(isinstance(v, int) and not isinstance(v, bool) for v in ids if v is not None) and any(
        v is not None for v in ids
    )
    schema = record_schema()
    cols: dict[str, pa.Array] = {}
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if f.name == "id":
            cols["id"] = pa.array(
                values if id_int else [None if v is None else str(v) for v in values],
                pa.int64() if id_int else pa.string(),
            )
        elif pa.types.is_string(f.type):
            cols[f.name] = pa.array([None if v is None else str(v) for v in values], pa.string())
        elif f.name == "start":
            cols[f.name] = pa.array(
                [v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo else v for v in values], TS_TYPE
            )
        else:
            cols[f.name] = pa.array(values, f.type)
    for r in rows:
        for k in r:
            if k not in cols:
                values = [x.get(k) for x in rows]
                try:
                    cols[k] = pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    cols[k] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(cols)


def read_records(
    path: str | os.PathLike[str], layout: RecordLayout | None = None, **kw: Any
) -> tuple[pa.Table, pa.Table, IntakeCounts]:
    """Read a whole file into memory: (records, rejects, counts). Keyword arguments go to
    :class:`RecordReader` (``batch_rows``, ``dedupe``, ``numbers``)."""
    reader = RecordReader(path, layout, **kw)
    records: list[pa.Table] = []
    rejects: list[pa.Table] = []
    for batch in reader.batches():
        records.append(batch.records)
        rejects.append(batch.rejects)
    rec = pa.concat_tables(records) if records else reader.schema.empty_table()
    rej = pa.concat_tables(rejects) if rejects else REJECTS_SCHEMA.empty_table()
    return rec, rej, reader.counts


assert set(INTAKE_REASONS) <= set(REJECT_REASONS)
