"""Phone numbers to E.164 digits (no ``+``), one value at a time or a whole Arrow column at once.

The rules (the same in both paths; the column path is only faster)
------------------------------------------------------------------
1. Syntax is removed first: surrounding spaces, a ``Name <...>`` wrapper, ``tel:`` URIs (the part
   before any ``;parameter``), ``sip:``/``sips:`` URIs (the user part before ``@``, without
   ``;parameters``), then the visual separators space, ``-``, ``.``, ``(``, ``)`` and ``/``.
   What is left must be digits, optionally after one leading ``+``.
2. ``+D...``: already international, the digits are kept.
3. The international prefix: ``00`` (ITU), or the layout country's own prefix when it is a plain
   digit string (``011`` in North America, ``010`` in Japan; countries with a pattern-shaped
   prefix, like Australia's ``0011``, go through ``phonenumbers``). The prefix is removed; it
   must be followed by a country code, which never starts with 0: ``0034...`` gives ``34...``
   but ``00034...`` (an international prefix followed by 0) is **rejected**: we do not guess
   whether the extra 0 is an outside-line digit or a typo. Without a layout country ``00`` is
   the international prefix.
4. Without a layout country, a digit string is taken as E.164 already (the usual interconnect
   spelling). One starting with a single ``0`` is a national number that cannot be converted:
   it is kept as it is (not rejected: it is a well-formed digit string) and rating will find no
   rate for it (``no_rate``); set the layout's ``country`` to convert such numbers.
5. With a layout country (say FR, code 33):
   - digits starting with the country code are taken as E.164 already (``33612345678``);
   - digits starting with the country's trunk prefix (``0612345678``) are national: the trunk
     prefix is replaced by the country code (``33612345678``);
   - other digits not starting with 0 are national when their length is a possible national
     length of the country (``612345678`` -> ``33612345678``; ``2125551234`` with US ->
     ``12125551234``), else taken as E.164 (``447700900123`` stays). In countries whose
     national numbers have no trunk prefix (ES, IT, ...) an international number of a national
     length is therefore misread: write international numbers with ``+`` or ``00`` there;
   - any other number starting with 0 is parsed by ``phonenumbers`` for that country (Italian
     ``06...`` keeps its 0: ``39 06...``).
6. The result must be 3 to 15 digits and (but for rule 4) must not start with 0, else it is rejected
   (``invalid_number``). Whether the range is *allocated* is not checked: traffic to an
   unallocated range still reaches rating (and fails there with ``no_rate`` if nothing matches).

``numbers="e164"`` (a RecordReader option) turns rules 2 to 5 off for files whose numbers are
E.164 digits already, like the rating benchmark's: ``0034...`` then stays ``0034...`` (and finds
no rate) instead of becoming ``34...``; only ``+``, URI syntax and separators are removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MIN_DIGITS = 3
MAX_DIGITS = 15  # E.164

_SEPARATORS = re.compile(r"[\s\-.()/]+")
_DIGITS = re.compile(r"[0-9]+")
E164_PATTERN = f"^[1-9][0-9]{{{MIN_DIGITS - 1},{MAX_DIGITS - 1}}}$"
DIGITS_PATTERN = f"^[0-9]{{{MIN_DIGITS},{MAX_DIGITS}}}$"


class NumberError(ValueError):
    """A value that is not a dialable number; ``str()`` is the end of a sentence that starts
    with the value, e.g. ``has 16 digits, more than the 15 of E.164``."""


@dataclass(frozen=True, slots=True)
class NumberPlan:
    """The compiled numbering rules of a layout: ``country`` (ISO code) or None.
    ``as_given``: the numbers are E.164 digits already (only ``+``, URI syntax and separators
    are removed; no prefix is interpreted, a leading 0 is kept)."""

    country: str | None = None
    cc: str | None = None  # country calling code, e.g. "33"
    idd: str = "00"  # international prefix when a plain digit string, else "" (phonenumbers)
    trunk: str | None = None  # national (trunk) prefix when a plain digit string, e.g. "0"
    national_lengths: frozenset[int] = frozenset()
    as_given: bool = False


NO_COUNTRY = NumberPlan()
AS_GIVEN = NumberPlan(idd="", as_given=True)


@lru_cache(maxsize=64)
def number_plan(country: str | None, *, as_given: bool = False) -> NumberPlan:
    """The rules for ``country`` (ISO 3166 alpha-2, any case); ValueError if unknown.
    ``as_given``: numbers are E.164 already (see NumberPlan), the country is not used."""
    if as_given:
        return AS_GIVEN
    if not country:
        return NO_COUNTRY
    # lazy: phonenumbers' metadata loads on the first number normalized
    import phonenumbers
    from phonenumbers import PhoneMetadata

    region = country.strip().upper()
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None:
        raise ValueError(f"unknown country {country!r} (expected an ISO 3166 code like FR)")
    cc = str(phonenumbers.country_code_for_region(region))
    idd = meta.international_prefix or ""
    idd = idd if _DIGITS.fullmatch(idd) else ""
    trunk = meta.national_prefix or None
    npp = meta.national_prefix_for_parsing
    if trunk is not None and not (
        _DIGITS.fullmatch(trunk) and (npp is None or npp == trunk or trunk in npp.split("|"))
    ):
        trunk = None
    if trunk is not None and trunk.startswith(cc):
        trunk = None  # NANP: "1..." is handled as "starts with the country code"
    lengths = frozenset(int(n) for n in meta.general_desc.possible_length if n > 0)
    return NumberPlan(region, cc, idd, trunk, lengths)


# --------------------------------------------------------------------------- one value


def strip_syntax(value: str) -> str:
    """Remove URI syntax and visual separators (rule 1); the result may still be invalid."""
    s = value.strip()
    if "<" in s:
        i = s.index("<")
        j = s.find(">", i)
        if j > i:
            s = s[i + 1 : j].strip()
    low = s[:5].lower()
    if low.startswith("tel:"):
        s = s[4:].split(";", 1)[0]
    elif low.startswith(("sip:", "sips:")):
        rest = s.split(":", 1)[1]
        if "@" not in rest:
            raise NumberError("is a SIP URI without a user part")
        s = rest.split("@", 1)[0].split(";", 1)[0]
    return _SEPARATORS.sub("", s)


def to_e164(value: str, plan: NumberPlan = NO_COUNTRY) -> str:
    """E.164 digits of ``value`` under ``plan``; raises NumberError (see the module rules)."""
    s = strip_syntax(value)
    if not s:
        raise NumberError("has no digits")
    plus = s.startswith("+")
    digits = s[1:] if plus else s
    if not digits.isascii() or not digits.isdigit():
        raise NumberError("is not a phone number (characters other than digits)")
    if plan.as_given:
        return _check(digits, shown="", allow_zero=True)
    if plus:
        e = digits
    elif plan.idd and digits.startswith(plan.idd):
        e = digits[len(plan.idd) :]
        if e.startswith("0"):
            raise NumberError(
                f"has the international prefix {plan.idd} followed by 0 (no country code starts with 0)"
            )
    elif plan.cc is None:
        # a national number (single leading 0) cannot be converted: it is kept as it is and
        # will find no rate, unless the layout gives the country
        return _check(digits, shown="", allow_zero=True)
    elif digits.startswith(plan.cc):
        e = digits
    elif plan.trunk is not None and re.match(rf"{plan.trunk}[1-9]", digits):
        e = plan.cc + digits[len(plan.trunk) :]
    elif not digits.startswith("0"):
        e = plan.cc + digits if len(digits) in plan.national_lengths else digits
    else:
        e = _phonenumbers_e164(digits, plan)
    return _check(e, shown=f" ({e} in E.164)" if e != digits else "")


def _phonenumbers_e164(digits: str, plan: NumberPlan) -> str:
    # lazy: phonenumbers' metadata loads on the first number normalized
    import phonenumbers

    try:
        num = phonenumbers.parse(digits, plan.country)
    except phonenumbers.NumberParseException as exc:
        msg = str(exc).split(") ", 1)[-1].rstrip(".")
        raise NumberError(f"cannot be read as a number of {plan.country} ({msg})") from None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def _check(e: str, *, shown: str, allow_zero: bool = False) -> str:
    if len(e) > MAX_DIGITS:
        raise NumberError(f"has {len(e)} digits{shown}, more than the {MAX_DIGITS} of E.164")
    if len(e) < MIN_DIGITS:
        raise NumberError(f"has {len(e)} digit{'s' if len(e) != 1 else ''}{shown}, fewer than {MIN_DIGITS}")
    if e.startswith("0") and not allow_zero:
        raise NumberError(f"does not start with a country code{shown}")
    return e


# --------------------------------------------------------------------------- a column


def _string_buffers(arr: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a non-large string array as numpy views (no copy)."""
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return off, data


def clean_mask(arr: pa.StringArray, plan: NumberPlan = NO_COUNTRY) -> np.ndarray | None:
    """Which values are already final E.164 under ``plan`` (3..15 ASCII digits, not starting
    with 0; with a country, starting with its code): None if all of them (the usual case: a
    few numpy reductions over the buffers), else a boolean mask (nulls count as clean). Each
    condition is checked value by value only if the whole column fails it."""
    n = len(arr)
    if n == 0:
        return None
    off, data = _string_buffers(arr)
    lens = np.diff(off)
    base = int(off[0])
    body = data[base : off[-1]]
    clean = None

    def narrow(ok: np.ndarray) -> None:
        nonlocal clean
        clean = ok if clean is None else clean & ok

    if lens.min() < MIN_DIGITS or lens.max() > MAX_DIGITS:
        narrow((lens >= MIN_DIGITS) & (lens <= MAX_DIGITS))
    if len(body) and (body.min() < 48 or body.max() > 57):
        ok = np.ones(n, bool)
        nondigit = np.flatnonzero((body - np.uint8(48)) > 9) + base
        ok[np.searchsorted(off, nondigit, side="right") - 1] = False
        narrow(ok)
    if not plan.as_given and len(data):
        first = data[np.minimum(off[:-1], len(data) - 1)]
        if (first == 48).any():
            narrow(first != 48)
    if plan.cc is not None and len(data):
        ok = _starts_with(data, off, lens, plan.cc)
        if not ok.all():
            narrow(ok)
    if clean is None:
        return None
    if arr.null_count:
        clean |= ~arr.is_valid().to_numpy(zero_copy_only=False)
    return None if clean.all() else clean


def _starts_with(data: np.ndarray, off: np.ndarray, lens: np.ndarray, prefix: str) -> np.ndarray:
    ok = lens >= len(prefix)
    for j, ch in enumerate(prefix.encode()):
        idx = np.minimum(off[:-1] + j, len(data) - 1)
        ok &= data[idx] == ch
    return ok


def to_e164_array(arr: pa.Array, plan: NumberPlan = NO_COUNTRY) -> tuple[pa.Array, np.ndarray, list[str]]:
    """Normalize a string column. Returns (values, bad positions, messages): ``values`` holds
    the E.164 digits, null where the input is null or blank (values at bad positions are
    unspecified: their rows are rejected); ``messages[i]`` (a NumberError text)
    goes with ``bad[i]``. Clean values cost a numpy pass; the others go through Arrow regexes
    for the regular spellings (``+``, ``00``, national) and :func:`to_e164` for the rest."""
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    empty = np.zeros(0, np.int64)
    clean = clean_mask(arr, plan)
    if clean is None:
        return arr, empty, []
    todo = np.flatnonzero(~clean)
    sub = arr.take(pa.array(todo))
    got, bad, messages = _regular(sub, plan)
    # only the values that change are replaced (bad ones are left: their rows are rejected)
    changed = pc.fill_null(pc.not_equal(got, sub), True).to_numpy(zero_copy_only=False).copy()
    changed[bad] = False
    if sub.null_count:
        changed &= sub.is_valid().to_numpy(zero_copy_only=False)
    if not changed.any():
        return arr, todo[bad], messages
    return splice(arr, todo[changed], got.filter(pa.array(changed))), todo[bad], messages


def splice(arr: pa.Array, positions: np.ndarray, values: pa.Array) -> pa.Array | pa.ChunkedArray:
    """``arr`` with ``values`` at the (sorted) ``positions``. A few replacements cost no copy
    of the column: the result is then a chunked array of slices of ``arr`` and ``values``."""
    if len(positions) > 64:
        mask = np.zeros(len(arr), bool)
        mask[positions] = True
        return pc.replace_with_mask(arr, pa.array(mask), values)
    chunks, start = [], 0
    for k, p in enumerate(positions.tolist()):
        if p > start:
            chunks.append(arr.slice(start, p - start))
        chunks.append(values.slice(k, 1))
        start = p + 1
    if start < len(arr):
        chunks.append(arr.slice(start))
    return pa.chunked_array(chunks, type=arr.type)


def _regular(arr: pa.StringArray, plan: NumberPlan) -> tuple[pa.Array, np.ndarray, list[str]]:
    """The not-clean values (no nulls): regex classes, then one by one."""
    n = len(arr)
    out = pa.nulls(n, pa.string())
    done = np.zeros(n, bool)

    def take(mask: pa.Array, values: pa.Array) -> None:
        nonlocal out
        m = mask.fill_null(False).to_numpy(zero_copy_only=False) & ~done
        if m.any():
            out = pc.if_else(pa.array(m), values, out)
            done[m] = True

    take(pc.match_substring_regex(arr, r"^\+[0-9]+$"), pc.utf8_slice_codeunits(arr, 1))
    if plan.idd:
        take(
            pc.match_substring_regex(arr, rf"^{plan.idd}[1-9][0-9]*$"),
            pc.utf8_slice_codeunits(arr, len(plan.idd)),
        )
    bare = pc.match_substring_regex(arr, r"^[0-9]+$" if plan.as_given else r"^[1-9][0-9]*$")
    if plan.cc is None:
        take(bare, arr)
    else:
        take(pc.and_(bare, pc.starts_with(arr, plan.cc)), arr)
        if plan.trunk is not None:
            take(
                pc.match_substring_regex(arr, rf"^{plan.trunk}[1-9][0-9]*$"),
                pc.binary_join_element_wise(plan.cc, pc.utf8_slice_codeunits(arr, len(plan.trunk)), ""),
            )
        national = pc.is_in(pc.utf8_length(arr), pa.array(sorted(plan.national_lengths), pa.int32()))
        take(pc.and_(bare, national), pc.binary_join_element_wise(plan.cc, arr, ""))
        take(bare, arr)
    # the final check, and every value the regular spellings did not cover, one by one
    final = DIGITS_PATTERN if plan.as_given else E164_PATTERN
    ok = pc.match_substring_regex(out, final).fill_null(False).to_numpy(zero_copy_only=False)
    slow = np.flatnonzero(~ok)
    if len(slow) == 0:
        return out, np.zeros(0, np.int64), []
    fixed: list[str | None] = []
    bad: list[int] = []
    messages: list[str] = []
    for pos, v in zip(slow, arr.take(pa.array(slow)).to_pylist(), strict=True):
        if not v.strip():
            fixed.append(None)  # blank: a missing value, not a bad one
            continue
        try:
            fixed.append(to_e164(v, plan))
        except NumberError as exc:
            fixed.append(None)
            bad.append(int(pos))
            messages.append(str(exc))
    mask = np.zeros(n, bool)
    mask[slow] = True
    out = pc.replace_with_mask(out, pa.array(mask), pa.array(fixed, pa.string()))
    return out, np.asarray(bad, np.int64), messages
