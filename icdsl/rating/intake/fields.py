"""The field rules, each written once, on columns: ids, text fields, phone numbers, instants
(:mod:`.times`), whole numbers (durations, volumes, units), and which fields a row must have.

:func:`normalize` applies them to a table of source rows (a file's batch, or the one row of
:func:`icdsl.rating.intake.normalize_record`, which is why a file and ``icdsl explain`` cannot
disagree): the normalized columns, and the problems of the rows that cannot be used.

- *Text*: leading/trailing spaces are removed; an empty value is a missing one; direction and
  service are lower-cased; an integer partner column is written in decimal.
- *Numbers*: :mod:`icdsl.rating.intake.numbers`; a b_number that is not a phone number is
  ``invalid_number`` for a call or a message (voice, sms), and kept as given for the services
  that need no number (a data session's APN, an event's service name); an a_number that is not
  one is kept as given (``anonymous``).
- *Whole numbers*: ``61``, ``61.0`` and ``61.`` are 61; a fractional value (``61.5``) is refused
  (``bad_duration``) rather than rounded, since rounding would change the billed quantity
  silently; a negative duration is ``negative_duration``. Volume and units follow the same rule
  (``bad_volume``, ``bad_units``).
- *Required*: id, partner, direction, service and start; b_number for voice and sms; duration_s
  for voice (``missing_field``). The first problem of a row, in the order of :data:`FIELDS`,
  is its reject.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from icdsl.rating.intake.columns import (
    Problems,
    all_digits,
    as_string,
    clean_text,
    combine,
    is_text,
    isolate,
    map_small,
    null_mask,
    null_positions,
    positions,
    put,
)
from icdsl.rating.intake.counts import CALL_SERVICES, TS_TYPE, short
from icdsl.rating.intake.numbers import to_e164_array
from icdsl.rating.intake.times import instants

if TYPE_CHECKING:
    from icdsl.rating.intake.binding import Binding
    from icdsl.rating.intake.layout import Rules

Const = Callable[[str, pa.DataType], pa.Array]


def normalize(
    table: pa.Table, binding: Binding, rules: Rules, const: Const
) -> tuple[dict[str, pa.Array], Problems]:
    """Source rows -> the normalized field columns (nulls where a row has a problem; extra
    columns not included) and the rows' problems. ``const(field, type)`` gives the column of a
    field the binding takes from a constant."""
    b = binding
    n = table.num_rows
    problems = Problems(n)

    def col(f: str) -> pa.Array | None:
        return combine(table.column(b.source[f])) if f in b.source else None

    def missing(f: str, at: np.ndarray) -> None:
        if b.check_missing:
            problems.add(at, "missing_field", [f"{b.label_of.get(f, f)} is empty"] * len(at))

    out: dict[str, pa.Array] = {}
    ids = col("id")
    if ids is None:
        ids = const("id", pa.int64() if b.id_int else pa.string())
    else:
        ids = ids.cast(pa.int64()) if b.id_int else clean_text(ids)
    if b.id_required:
        missing("id", null_positions(ids))
    out["id"] = ids
    for f in ("partner", "direction", "service"):
        out[f] = a = _text(col(f), f) if f in b.source else const(f, pa.string())
        missing(f, null_positions(a))
    _partner_is_from_partner(table, b, out["partner"], problems)
    _transit_needs_to_partner(table, b, out["direction"], problems)
    calls, voice = _needs(out["service"], b, n)
    out["a_number"] = _a_number(col("a_number"), rules) if "a_number" in b.source else const("a_number", pa.string())
    if "b_number" in b.source:
        raw = as_string(col("b_number"))
        bn, bad, messages = to_e164_array(raw, rules.numbers)
    else:
        raw, bn, bad, messages = None, const("b_number", pa.string()), np.zeros(0, np.int64), []
    absent = null_mask(bn)
    if absent is not None:
        absent[bad] = False
        missing("b_number", np.flatnonzero(absent & calls))
    if len(bad) and not calls.all():
        # a service that needs no number (data, events...): what the traffic carries instead (an
        # APN, a service name) is kept as given, as a flat price does not read it and a rate
        # table finds no row for it (no_rate), the same as the record's example would say
        spare = bad[~calls[bad]]
        if len(spare):
            keep = np.zeros(n, bool)
            keep[spare] = True
            if isinstance(bn, pa.ChunkedArray):
                bn = bn.combine_chunks()
            bn = pc.replace_with_mask(bn, pa.array(keep), pc.utf8_trim_whitespace(raw.take(pa.array(spare))))
            messages = [m for m, c in zip(messages, calls[bad], strict=True) if c]
            bad = bad[calls[bad]]
    if len(bad):
        label = b.label_of.get("b_number", "b_number")
        values = raw.take(pa.array(bad)).to_pylist()
        problems.add(bad, "invalid_number", [f"{label} '{short(v)}' {m}" for v, m in zip(values, messages, strict=True)])
    out["b_number"] = bn
    s = col("start")
    if s is None:
        out["start"] = s = const("start", TS_TYPE)
        missing("start", null_positions(s))
    else:
        if is_text(s.type):
            s = clean_text(s)
        missing("start", null_positions(s))
        out["start"] = instants(s, rules.clock, b.label_of.get("start", "start"), problems)
    for f in ("duration_s", "volume", "units"):
        a = col(f)
        if a is None:
            a = const(f, pa.int64())
        elif is_text(a.type):
            a = clean_text(a)
        if f == "duration_s":
            absent = null_mask(a)
            if absent is not None:
                missing(f, np.flatnonzero(absent & voice))
        if f in b.source:
            a = wholes(a, f, b.label_of.get(f, f), problems)
        if f == "duration_s" and a.null_count:
            a = a.fill_null(0)  # rows still null here are bad ones (dropped) or non-voice ones
        out[f] = a
    return out, problems


def to_partner_column(b: Binding) -> str | None:
    """The source column read as ``to_partner`` (a transit record's terminating partner), if any."""
    if "to_partner" in b.source:
        return b.source["to_partner"]
    return next((col for col, out in b.extras if out == "to_partner"), None)


def _partner_is_from_partner(table: pa.Table, b: Binding, partner: pa.Array, problems: Problems) -> None:
    """A file with both a ``partner`` and a ``from_partner`` column: a record whose two values
    differ (both given) is ``partner_mismatch``: billing either partner could bill the wrong one."""
    col = b.source.get("from_partner") or next((c for c, out in b.extras if out == "from_partner"), None)
    if col is None or col == b.source.get("partner") or not len(partner):
        return
    came = clean_text(as_string(combine(table.column(col))))
    differ = pc.and_(pc.not_equal(partner, came), pc.is_valid(came)).fill_null(False)
    at = positions(differ)
    if len(at):
        ours, theirs = partner.take(pa.array(at)).to_pylist(), came.take(pa.array(at)).to_pylist()
        problems.add(at, "partner_mismatch", [
            f"partner '{short(p)}' but from_partner '{short(f)}': the record came from one partner"
            for p, f in zip(ours, theirs, strict=True)])


def _transit_needs_to_partner(table: pa.Table, b: Binding, direction: pa.Array, problems: Problems) -> None:
    """A file that names the partners a record went to (``to_partner``): a transit record must
    name one, other than the partner it came from (``missing_field``): it is billed on both sides."""
    col = to_partner_column(b)
    if col is None or not len(direction):
        return
    to = clean_text(as_string(combine(table.column(col))))
    transit = pc.equal(direction, "transit").fill_null(False)
    empty = pc.and_(transit, to.is_null())
    at = positions(empty)
    if len(at):
        problems.add(at, "missing_field", ["to_partner is empty: a transit record names the partner it went to"] * len(at))
    if "partner" in b.source:
        partner = clean_text(as_string(combine(table.column(b.source["partner"]))))
        same = pc.and_(transit, pc.equal(partner, to).fill_null(False))
        at = positions(same)
        if len(at):
            problems.add(at, "missing_field", [
                f"to_partner '{short(v)}' is the partner the record came from: a transit record goes to another partner"
                for v in to.take(pa.array(at)).to_pylist()])


def _text(a: pa.Array, f: str) -> pa.Array:
    if f == "partner" and pa.types.is_integer(a.type):
        return map_small(a, lambda x: x.cast(pa.string()))
    a = clean_text(a)
    if f != "partner" and len(a):
        a = map_small(a, pc.utf8_lower)
    return a


def _needs(service: pa.Array, b: Binding, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Which rows need a b_number (calls) and a duration (voice)."""
    if "service" in b.const:
        return np.full(n, b.const["service"] in CALL_SERVICES), np.full(n, b.const["service"] == "voice")
    calls = pc.is_in(service, pa.array(CALL_SERVICES)).fill_null(False).to_numpy(zero_copy_only=False)
    voice = pc.equal(service, "voice").fill_null(False).to_numpy(zero_copy_only=False)
    return calls, voice


def _a_number(a: pa.Array, rules: Rules) -> pa.Array:
    """Normalized when it is a phone number, else kept as given (trimmed)."""
    a = as_string(a)
    norm, bad, _ = to_e164_array(a, rules.numbers)
    if len(bad):
        mask = np.zeros(len(a), bool)
        mask[bad] = True
        norm = pc.replace_with_mask(norm, pa.array(mask), pc.utf8_trim_whitespace(a.take(pa.array(bad))))
    return norm


# --------------------------------------------------------------------------- whole numbers

_CLEAN_INT = r"^[0-9]{1,18}$"
_INT_TEXT = re.compile(r"([+-]?)(\d+)(?:\.(\d*))?")
_WHOLE = {
    "duration_s": ("bad_duration", "negative_duration", "seconds"),
    "volume": ("bad_volume", "bad_volume", "bytes"),
    "units": ("bad_units", "bad_units", ""),
}


def wholes(arr: pa.Array, f: str, label: str, problems: Problems) -> pa.Array:
    """duration_s / volume / units -> int64 with nulls where missing or refused (text is
    expected cleaned)."""
    t = arr.type
    if pa.types.is_integer(t):
        out, retry = isolate(arr, lambda a: a.cast(pa.int64()), pa.int64())
        neg = pc.less(out, 0).fill_null(False)
        if pc.any(neg).as_py():
            retry = np.union1d(retry, positions(neg))
            out = pc.if_else(neg, pa.scalar(None, pa.int64()), out)
        return _one_by_one(arr, out, retry, f, label, problems)
    if pa.types.is_floating(t):
        x = arr.cast(pa.float64())
        ok = pc.and_(pc.is_finite(x), pc.equal(pc.floor(x), x)).fill_null(True)
        ok = pc.and_(ok, pc.greater_equal(x, 0).fill_null(True))
        ok = pc.and_(ok, pc.less(x, 2.0**62).fill_null(True))
        out = pc.if_else(ok, x, pa.scalar(None, pa.float64())).cast(pa.int64())
        return _one_by_one(arr, out, positions(pc.invert(ok)), f, label, problems)
    s = as_string(arr)
    valid = s.drop_null() if s.null_count else s
    if len(valid) and all_digits(valid, 18):
        return s.cast(pa.int64())
    clean = pc.match_substring_regex(s, _CLEAN_INT).fill_null(False)
    out = pc.if_else(clean, s, pa.scalar(None, pa.string())).cast(pa.int64())
    return _one_by_one(s, out, positions(pc.and_(pc.invert(clean), s.is_valid())), f, label, problems)


def _one_by_one(
    src: pa.Array, out: pa.Array, retry: np.ndarray, f: str, label: str, problems: Problems
) -> pa.Array:
    """Decide the values at ``retry`` (those the kernels refused) one by one."""
    if len(retry) == 0:
        return out
    fixed: list[int | None] = []
    bad: list[tuple[int, str, str]] = []
    for pos, v in zip(retry, src.take(pa.array(retry)).to_pylist(), strict=True):
        got = _whole(v, f, label)
        if isinstance(got, tuple):
            fixed.append(None)
            bad.append((int(pos), *got))
        else:
            fixed.append(got)
    problems.add_each(bad)
    return put(out, retry, fixed, pa.int64())


def _whole(value: Any, f: str, label: str) -> int | tuple[str, str]:
    """A value the kernels refused: its whole number, or (reason, detail)."""
    bad, negative, unit = _WHOLE[f]
    of = f" of {unit}" if unit else ""
    shown = short(value)
    if isinstance(value, bool):
        return bad, f"{label} '{shown}' is not a number{of}"
    if isinstance(value, int):
        v = value
    elif isinstance(value, float | Decimal):
        if not (math.isfinite(value) and value == int(value)):
            return bad, f"{label} '{shown}' is not a whole number{of}"
        v = int(value)
    else:
        m = _INT_TEXT.fullmatch(str(value).strip())
        if m is None:
            return bad, f"{label} '{shown}' is not a number{of}"
        sign, digits, frac = m.groups()
        if frac and frac.strip("0"):
            return bad, f"{label} '{shown}' is not a whole number{of}"
        if len(digits.lstrip("0")) > 19:  # beyond int64 (and beyond what int() reads: hostile input)
            return (negative, f"{label} '{shown}' is negative") if sign == "-" else (bad, f"{label} '{shown}' is too large")
        v = int(sign + digits)
    if v < 0:
        return negative, f"{label} '{shown}' is negative"
    if v > 2**63 - 1:
        return bad, f"{label} '{shown}' is too large"
    return v
