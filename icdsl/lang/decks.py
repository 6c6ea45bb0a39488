"""A-Z rate decks: CSV files of destinations and prices, mapped by a ``columns { ... }`` block.

Without a mapping the header names are looked up by their usual spellings (``prefix``,
``destination``/``name``, ``rate``, ``rate_<band>`` or ``<band>_rate``, ``connect_fee``,
``increments`` or ``initial_increment``/``subsequent_increment``, ``effective``/``effective_from``,
``until``/``effective_to``). Problems in a deck are reported at their line in the CSV file.

The values a deck is read into live here too (:class:`Increments`, :class:`RateRow`, and
:class:`RateColumns`, a deck held as columns); the plan re-exports them for the executors.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from icdsl.lang import ast
from icdsl.lang.diagnostics import Diagnostic, did_you_mean, suggest
from icdsl.lang.values import number_problem, short_text
from icdsl.spans import NO_SPAN, Span

# --------------------------------------------------------------------------- a deck's rows as values


@dataclass(frozen=True, slots=True)
class Increments:
    """Billing increments ``initial/subsequent`` in seconds (60/6: first 60 s, then blocks of 6 s)."""

    initial: int = 60
    subsequent: int = 60

    def billed(self, seconds: int) -> int:
        if seconds <= 0:
            return 0
        if seconds <= self.initial:
            return self.initial
        s = self.subsequent
        return self.initial + -(-(seconds - self.initial) // s) * s

    def __str__(self) -> str:
        return f"{self.initial}/{self.subsequent}"


@dataclass(frozen=True, slots=True)
class RateRow:
    """One destination: the price per unit by band (key ``"*"`` for every band)."""

    prefix: str
    destination: str
    prices: tuple[tuple[str, Decimal], ...]
    connect_fee: Decimal | None = None
    increments: Increments | None = None
    effective_from: date | None = None
    effective_to: date | None = None  # exclusive
    span: Span = NO_SPAN
    # the row's origin (and destination operator/circle) key as written: (field, value) pairs,
    # fields from ORIGIN_FIELDS; empty for a row that prices every origin
    origin: tuple[tuple[str, str], ...] = ()
    # ``slots NAME`` (a deck's ``slots`` column): the service's slot set that prices this row
    slots: str | None = None

    def price_for(self, band: str) -> Decimal | None:
        star = None
        for b, p in self.prices:
            if b == band:
                return p
            if b == "*":
                star = p
        return star


class RateColumns(Sequence[RateRow]):
    """The rows of a rate deck held as columns.

    A 50,000-row A-Z deck is read, checked, compiled and turned into the batch executor's
    arrays without building 50,000 objects: the columns are plain tuples (one per field), and a
    :class:`RateRow` is built on demand (indexing, iterating) for the row executor, ``icdsl
    plan`` and explanations. It is a sequence of RateRow like any other ``RateTable.rows``.

    ``rate``: the price for every band (the ``*`` entry), or None per row; ``bands``: (band,
    prices) per band column; ``effective_from``/``effective_to``: ISO dates (checked by the
    checker); ``lines``: each row's line in the CSV file ``source``."""

    __slots__ = ("source", "prefixes", "destinations", "rate", "bands", "connect_fees", "increments",
                 "effective_from", "effective_to", "lines", "origins", "slot_sets", "_built")

    def __init__(self, source: str, prefixes: tuple[str, ...], destinations: tuple[str, ...],
                 rate: tuple[Decimal | None, ...] | None, bands: tuple[tuple[str, tuple[Decimal | None, ...]], ...],
                 connect_fees: tuple[Decimal | None, ...] | None, increments: tuple[Increments | None, ...] | None,
                 effective_from: tuple[str | None, ...] | None, effective_to: tuple[str | None, ...] | None,
                 lines: tuple[int, ...], origins: tuple[tuple[str, tuple[str | None, ...]], ...] = (),
                 slot_sets: tuple[str | None, ...] | None = None):
        self.source = source
        self.prefixes = prefixes
        self.destinations = destinations
        self.rate = rate
        self.bands = bands
        self.connect_fees = connect_fees
        self.increments = increments
        self.effective_from = effective_from
        self.effective_to = effective_to
        self.lines = lines
        self.origins = origins  # (field, values) per origin column of the deck (ORIGIN_FIELDS)
        self.slot_sets = slot_sets  # the ``slots`` column: each row's slot set (None: the default)
        self._built: list[RateRow | None] = [None] * len(prefixes)

    def _fields(self) -> tuple:
        return (self.source, self.prefixes, self.destinations, self.rate, self.bands, self.connect_fees,
                self.increments, self.effective_from, self.effective_to, self.lines, self.origins, self.slot_sets)

    def __getstate__(self) -> tuple:
        return self._fields()

    def __setstate__(self, state: tuple) -> None:
        self.__init__(*state)

    def __reduce__(self):
        return (RateColumns, self._fields())

    def __len__(self) -> int:
        return len(self.prefixes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RateColumns):
            return self._fields() == other._fields()
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.source, len(self.prefixes), self.prefixes[:1], self.lines[-1:]))

    def __repr__(self) -> str:
        return f"RateColumns({self.source!r}, {len(self)} rows)"

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        got = self._built[i]
        if got is None:
            got = self._built[i] = self._row(i if i >= 0 else i + len(self))
        return got

    def __iter__(self):
        for i in range(len(self.prefixes)):
            yield self[i]

    def prices_of(self, i: int) -> tuple[tuple[str, Decimal], ...]:
        prices = []
        if self.rate is not None and self.rate[i] is not None:
            prices.append(("*", self.rate[i]))
        for band, col in self.bands:
            if col[i] is not None:
                prices.append((band, col[i]))
        return tuple(prices)

    def origin_of(self, i: int) -> tuple[tuple[str, str], ...]:
        """Row ``i``'s origin key: the (field, value) pairs of its non-empty origin columns."""
        return tuple((f, col[i]) for f, col in self.origins if col[i] is not None)

    def span_at(self, i: int) -> Span:
        line = self.lines[i]
        return Span(self.source, line, 1, line, 2)

    def spans(self) -> list[str]:
        """``str(span)`` of every row (the rule of a rated record), without building the rows."""
        src = self.source
        return [f"{src}:{line}:1" for line in self.lines]

    def _row(self, i: int) -> RateRow:
        start = self.effective_from[i] if self.effective_from is not None else None
        until = self.effective_to[i] if self.effective_to is not None else None
        return RateRow(
            prefix=self.prefixes[i],
            destination=self.destinations[i],
            prices=self.prices_of(i),
            connect_fee=self.connect_fees[i] if self.connect_fees is not None else None,
            increments=self.increments[i] if self.increments is not None else None,
            effective_from=date.fromisoformat(start) if start else None,
            effective_to=date.fromisoformat(until) if until else None,
            span=self.span_at(i),
            origin=self.origin_of(i) if self.origins else (),
            slots=self.slot_sets[i] if self.slot_sets is not None else None,
        )


# --------------------------------------------------------------------------- reading a deck

#: the columns that key a row by origin (A-number prefix, country, zone, operator, circle) or by
#: the destination's operator and circle (from the service's number-range table)
ORIGIN_FIELDS = ("origin", "origin_country", "origin_zone", "origin_operator", "origin_circle",
                 "destination_operator", "destination_circle")
FIELDS = ("prefix", "destination", "rate", "connect_fee", "increments", "initial", "subsequent", "effective",
          "until", "slots") + ORIGIN_FIELDS
DEFAULT_NAMES = {
    "prefix": ("prefix", "code", "dial_code", "dialcode"),
    "destination": ("destination", "name", "description"),
    "rate": ("rate", "price"),
    "connect_fee": ("connect_fee", "connection_fee", "setup_fee"),
    "increments": ("increments", "increment", "billing_increment"),
    "initial": ("initial_increment", "initial"),
    "subsequent": ("subsequent_increment", "subsequent"),
    "effective": ("effective", "effective_from", "effective_date", "valid_from"),
    "until": ("until", "effective_to", "valid_to"),
    "slots": ("slots", "slot_set"),
    "origin": ("origin", "origin_prefix", "a_prefix", "a_number_prefix"),
    "origin_country": ("origin_country", "from_country"),
    "origin_zone": ("origin_zone", "from_zone"),
    "origin_operator": ("origin_operator", "from_operator"),
    "origin_circle": ("origin_circle", "from_circle", "origin_region"),
    "destination_operator": ("destination_operator", "to_operator", "b_operator"),
    "destination_circle": ("destination_circle", "to_circle", "destination_region"),
}
MAX_ROW_ERRORS = 20
#: read decks as columns when they allow it (tests turn it off to compare with the row reader)
COLUMNAR = True
_BAND_COL = re.compile(r"(?:rate_(\w+)|(\w+)_rate)\Z", re.I)
# ASCII digits only (str.isdigit and \d accept "²" and "٣"), at most 9 for seconds: a longer
# number is a mistake reported on its row, never an int() of a million digits
_INCR = re.compile(r"\s*([0-9]{1,9})\s*/\s*([0-9]{1,9})\s*\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
CATCH_ALL = "*"  # a deck's catch-all row: the empty prefix, which every number starts with
_SECONDS = re.compile(r"[0-9]{1,9}\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_SET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ORIGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.&'()/-]{0,63}\Z")


def origin_problem(fname: str, text: str) -> str | None:
    """What is wrong with a value of origin column ``fname`` (None: nothing)."""
    if fname == "origin":
        return None if _DIGITS.match(text) and len(text) <= 16 else (
            f"origin prefix '{short_text(text)}' is not a string of at most 16 digits")
    if fname == "origin_country":
        return None if re.fullmatch(r"[A-Za-z]{2}", text) else (
            f"origin country '{short_text(text)}' is not an ISO 3166 code (two letters)")
    if fname == "origin_zone":
        return None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) else (
            f"origin zone '{short_text(text)}' is not a zone name")
    return None if _ORIGIN_NAME.match(text) else f"{fname.replace('_', ' ')} '{short_text(text)}' is not a name"


def origin_value(fname: str, text: str) -> str:
    """A cell of origin column ``fname`` as the plan keeps it: trimmed, ``+`` dropped from a
    prefix, a country in capitals (empty: no key)."""
    t = text.strip()
    if fname == "origin":
        return t.lstrip("+")
    if fname == "origin_country":
        return t.upper()
    return t


@dataclass
class Deck:
    """A deck as read: its rows as AST nodes (the row-by-row reader), or as columns (the
    columnar reader, the usual case: ``columns`` set and ``rows`` empty)."""

    path: str
    sha256: str
    header: list[str]
    rows: list[ast.RateRowNode] = field(default_factory=list)
    bands: tuple[str, ...] = ()
    columns: RateColumns | None = None


_DECIMALS: dict[str, Decimal | None] = {}


def _decimal(text: str) -> Decimal | None:
    """A finite Decimal, or None; deck prices repeat a lot, so conversions are cached."""
    d = _DECIMALS.get(text, _MISSING)
    if d is not _MISSING:
        return d
    t = text.strip()
    try:
        d = Decimal(t) if t else None
    except InvalidOperation:
        d = None
    if d is not None and number_problem(d) is not None:
        d = None  # infinite, NaN, too large or too precise: the row reader says which
    if len(_DECIMALS) < 1_000_000:
        _DECIMALS[text] = d
    return d


_MISSING = object()


def _bad_value(text: str, what: str, message: str) -> tuple[str, str | None]:
    """The message and help for a deck value that :func:`_decimal` refused: a number out of
    range says so (``what: why``), anything else gets ``message``."""
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        return message, None
    problem = number_problem(d, text.strip())
    return (f"{what}: {problem}", "correct it in the deck: a rate this large or this precise is a typing mistake"
            ) if problem else (message, None)


_KEPT: dict[tuple, Deck] = {}
_KEEP = [0]


def keep_decks(limit: int) -> None:
    """Keep the last ``limit`` decks read without problems, by their content, path and column
    mapping: a long-running process (the language server) re-checks rule files on every edit
    without reading an unchanged deck again. Off (0) by default: a command reads a deck once."""
    _KEEP[0] = limit
    _KEPT.clear()


def read_deck(path: Path, shown: str, mapping: tuple[ast.DeckColumn, ...], delimiter: str | None,
              ref_span: Span) -> tuple[Deck | None, list[Diagnostic]]:
    if not _KEEP[0]:
        return _read_deck(path, shown, mapping, delimiter, ref_span)
    try:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return _read_deck(path, shown, mapping, delimiter, ref_span)  # it says why
    key = (sha, shown, delimiter, tuple((m.field.text, m.band.text if m.band else None, m.column.value)
                                        for m in mapping))
    deck = _KEPT.pop(key, None)
    diags: list[Diagnostic] = []
    if deck is None:
        deck, diags = _read_deck(path, shown, mapping, delimiter, ref_span)
    if deck is not None and not diags and deck.sha256 == sha:  # only a deck without problems is kept
        _KEPT[key] = deck
        while len(_KEPT) > _KEEP[0]:
            _KEPT.pop(next(iter(_KEPT)))
    return deck, diags


def _read_deck(path: Path, shown: str, mapping: tuple[ast.DeckColumn, ...], delimiter: str | None,
               ref_span: Span) -> tuple[Deck | None, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, [Diagnostic("E402", f"cannot read the rate deck '{shown}': {e.strerror or e}", ref_span,
                                 "check the path: it is relative to this rule file")]
    sha = hashlib.sha256(data).hexdigest()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return None, [Diagnostic("E002", "the rate deck is not valid UTF-8", Span(shown, line, 1, line, 2),
                                 "save the deck as UTF-8 CSV")]
    if "\x00" in text:
        return None, [Diagnostic("E001", "the rate deck is not a text file", Span(shown, 1, 1, 1, 2))]
    delim = delimiter or _sniff(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = next(reader)
    except StopIteration:
        return None, [Diagnostic("E405", "the rate deck is empty (no header row)", Span(shown, 1, 1, 1, 1),
                                 "the first line must name the columns, e.g. prefix,destination,rate")]
    except csv.Error as e:
        return None, [Diagnostic("E404", f"the header cannot be read: {e}", Span(shown, 1, 1, 1, 1))]
    header = [h.strip() for h in header]
    index = {h: i for i, h in enumerate(header)}
    lower = {h.lower(): i for i, h in enumerate(header)}
    cols: dict[str, int] = {}
    band_cols: dict[str, int] = {}
    if mapping:
        for m in mapping:
            if m.field.text not in FIELDS:
                diags.append(Diagnostic("E205", f"unknown deck field '{m.field.text}'", m.field.span,
                                        did_you_mean(m.field.text, FIELDS, "deck fields")))
                continue
            if m.column.value not in index:
                diags.append(Diagnostic(
                    "E403", f"column '{m.column.value}' does not exist in {shown}", m.column.span,
                    f"the columns in {shown} are: {', '.join(header)}"
                    + (f" (did you mean '{b}'?)" if (b := _best(m.column.value, header)) else "")))
                continue
            if m.field.text == "rate" and m.band is not None:
                band_cols[m.band.text] = index[m.column.value]
            else:
                cols[m.field.text] = index[m.column.value]
    else:
        for fname, names in DEFAULT_NAMES.items():
            for n in names:
                if n in lower:
                    cols[fname] = lower[n]
                    break
        for h, i in index.items():
            mm = _BAND_COL.match(h)
            if mm and h.lower() not in ("rate",):
                band_cols[(mm.group(1) or mm.group(2)).lower()] = i
    if diags:
        return None, diags
    if "prefix" not in cols:
        return None, [Diagnostic("E403", f"the rate deck {shown} has no prefix column", ref_span,
                                 f"its columns are: {', '.join(header)}; map one with columns {{ prefix \"...\" }}")]
    if "rate" not in cols and not band_cols:
        return None, [Diagnostic("E403", f"the rate deck {shown} has no rate column", ref_span,
                                 f"its columns are: {', '.join(header)}; map one with columns {{ rate \"...\" }}")]
    deck = Deck(shown, sha, header, bands=tuple(band_cols))
    deck.columns = _columns(text, delim, header, cols, band_cols, shown) if COLUMNAR else None
    if deck.columns is not None:
        if not len(deck.columns):
            diags.append(Diagnostic("W401", f"the rate deck {shown} has no rows", ref_span, severity="warning"))
        return deck, diags
    rows = deck.rows
    width = len(header)
    errors = 0
    p_i = cols["prefix"]
    d_i = cols.get("destination")
    r_i = cols.get("rate")
    c_i = cols.get("connect_fee")
    inc_i = cols.get("increments")
    ini_i, sub_i = cols.get("initial"), cols.get("subsequent")
    e_i, u_i = cols.get("effective"), cols.get("until")
    band_items = list(band_cols.items())
    origin_items = [(f, cols[f]) for f in ORIGIN_FIELDS if f in cols]
    if "slots" in cols:  # read like an origin column; _row takes it out
        origin_items.append(("slots", cols["slots"]))
    lineno = 1
    problems: list[tuple[int, str, str | None]] = []
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # a field past csv's size limit (128 KB), a NUL: the rest cannot be read
            errors += 1
            problems.append((reader.line_num, f"this row cannot be read: {e}; the rows after it were not read",
                             "a deck row is a short line of text: prefix, destination, rates"))
            break
        lineno = reader.line_num
        problem = _row(rec, lineno, width, header, p_i, d_i, r_i, c_i, inc_i, ini_i, sub_i, e_i, u_i, band_items,
                       shown, rows, origin_items)
        if problem is not None:
            errors += 1
            if errors <= MAX_ROW_ERRORS:
                problems.append((lineno, *problem))
    for line, msg, help_ in problems:
        diags.append(Diagnostic("E404", msg, Span(shown, line, 1, line, 2), help_))
    if errors > MAX_ROW_ERRORS:
        diags.append(Diagnostic("E404", f"{errors - MAX_ROW_ERRORS} more rows of this deck have problems",
                                Span(shown, lineno, 1, lineno, 2)))
    if not rows and not diags:
        diags.append(Diagnostic("W401", f"the rate deck {shown} has no rows", ref_span, severity="warning"))
    return deck, diags


def _columns(text: str, delim: str, header: list[str], cols: dict[str, int], band_cols: dict[str, int],
             shown: str) -> RateColumns | None:
    """The whole deck read by Arrow into columns, each distinct value checked once with the
    same rules as :func:`_row`. None when any row needs the row-by-row reader: a row with a
    problem (which that reader reports at its line), blank lines or line breaks inside quotes
    (row numbers would no longer be line numbers), or a file Arrow reads differently."""
    # lazy: pyarrow only when a deck is read (rules without decks never need it)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    body = text.replace("\r\n", "\n")
    if not body.endswith("\n"):
        body += "\n"
    width = len(header)
    names = [f"c{i}" for i in range(width)]
    try:
        table = pacsv.read_csv(
            io.BytesIO(body.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, ValueError):
        return None
    n = table.num_rows
    if body.count("\n") != n + 1:
        return None

    def column(i: int | None, convert) -> tuple | None:
        """The column's values converted (distinct values once); raises _Slow on a bad one."""
        if i is None:
            return None
        enc = table.column(i).combine_chunks().dictionary_encode()
        conv = [convert(v) for v in enc.dictionary.to_pylist()]
        return tuple(conv[k] for k in enc.indices.to_numpy(zero_copy_only=False).tolist())

    def prefix(v: str):
        p = v.strip().lstrip("+")
        if p == CATCH_ALL:  # the catch-all row: every number (the empty prefix)
            return ""
        if not _DIGITS.match(p):
            raise _Slow
        return p

    def money(v: str):
        if not v.strip():
            return None
        d = _decimal(v)
        if d is None or d < 0:
            raise _Slow
        return d

    def date_text(v: str):
        t = v.strip()
        if not t:
            return None
        if not _DATE.match(t):
            raise _Slow
        return t

    def seconds(v: str):
        t = v.strip()
        if t and (not _SECONDS.match(t) or int(t) <= 0):
            raise _Slow
        return int(t) if t else None

    def increments(v: str):
        if not v.strip():
            return None
        m = _INCR.match(v)
        if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
            raise _Slow
        return _increment_obj(int(m.group(1)), int(m.group(2)))

    try:
        prefixes = column(cols["prefix"], prefix)
        destinations = column(cols.get("destination"), str.strip) or ("",) * n
        rate = column(cols.get("rate"), money)
        bands = tuple((b, column(i, money)) for b, i in band_cols.items())
        connect = column(cols.get("connect_fee"), money)
        incs = None
        if cols.get("increments") is not None:
            incs = column(cols["increments"], increments)
        elif cols.get("initial") is not None and cols.get("subsequent") is not None:
            a, b = column(cols["initial"], seconds), column(cols["subsequent"], seconds)
            if any((x is None) != (y is None) for x, y in zip(a, b, strict=True)):
                raise _Slow
            incs = tuple(_increment_obj(x, y) if x is not None else None for x, y in zip(a, b, strict=True))
        sets = column(cols.get("slots"), _slot_set)
        start = column(cols.get("effective"), date_text)
        until = column(cols.get("until"), date_text)
        origins = []
        for fname in ORIGIN_FIELDS:
            if cols.get(fname) is not None:
                origins.append((fname, column(cols[fname], lambda v, f=fname: _origin(f, v))))
    except _Slow:
        return None
    priced = ([rate] if rate is not None else []) + [c for _, c in bands]
    if not priced or any(all(c[i] is None for c in priced) for i in range(n)):
        return None  # a row without any rate: the row-by-row reader reports it
    return RateColumns(shown, prefixes, destinations, rate, bands, connect, incs, start, until,
                       tuple(range(2, n + 2)), tuple(origins), sets)


def _slot_set(v: str) -> str | None:
    t = v.strip()
    if t and not _SET_NAME.match(t):
        raise _Slow
    return t or None


def _origin(fname: str, v: str) -> str | None:
    t = origin_value(fname, v)
    if not t:
        return None
    if origin_problem(fname, t) is not None:
        raise _Slow
    return t


class _Slow(Exception):
    """A value the columnar reader leaves to the row-by-row reader."""


_INCREMENT_OBJS: dict[tuple[int, int], Increments] = {}


def _increment_obj(a: int, s: int) -> Increments:
    got = _INCREMENT_OBJS.get((a, s))
    if got is None:
        got = _INCREMENT_OBJS[(a, s)] = Increments(a, s)
    return got


def _row(rec, lineno, width, header, p_i, d_i, r_i, c_i, inc_i, ini_i, sub_i, e_i, u_i, band_items, shown, rows,
         origin_items=()):
    """Read one deck row into ``rows``; return (message, help) when it is wrong, else None."""
    if not rec or (len(rec) == 1 and not rec[0].strip()):
        return None
    if len(rec) != width:
        return (f"this row has {len(rec)} fields but the header has {width}",
                "check for an unquoted delimiter inside a destination name")
    prefix = rec[p_i].strip().lstrip("+")
    if prefix == CATCH_ALL:
        prefix = ""
    elif not _DIGITS.match(prefix):
        return (f"prefix '{short_text(rec[p_i])}' is not a string of digits",
                "prefixes are E.164 digits, e.g. 336; '*' is the catch-all row (every other number)")
    price = None
    bands = []
    if r_i is not None and rec[r_i].strip():
        price = _decimal(rec[r_i])
        if price is None or price < 0:
            return _bad_value(rec[r_i], f"the rate in column '{header[r_i]}'",
                              f"rate '{short_text(rec[r_i])}' in column '{header[r_i]}' is not a non-negative number")
    for b, i in band_items:
        text = rec[i]
        if not text.strip():
            continue
        v = _decimal(text)
        if v is None or v < 0:
            return _bad_value(text, f"the rate in column '{header[i]}'",
                              f"rate '{short_text(text)}' in column '{header[i]}' is not a non-negative number")
        bands.append((b, v))
    if price is None and not bands:
        return f"no rate for prefix {short_text(prefix)}", "every row needs a rate (or a rate per band)"
    connect = None
    if c_i is not None and rec[c_i].strip():
        connect = _decimal(rec[c_i])
        if connect is None or connect < 0:
            return _bad_value(rec[c_i], "the connect fee",
                              f"connect fee '{short_text(rec[c_i])}' is not a non-negative number")
    incr = None
    if inc_i is not None and rec[inc_i].strip():
        m = _INCR.match(rec[inc_i])
        if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
            return f"increments '{short_text(rec[inc_i])}' must read INITIAL/SUBSEQUENT, e.g. 60/6", None
        incr = _increments(int(m.group(1)), int(m.group(2)))
    elif ini_i is not None and sub_i is not None:
        a, s = rec[ini_i].strip(), rec[sub_i].strip()
        if a or s:
            if not (_SECONDS.match(a) and _SECONDS.match(s)) or int(a) <= 0 or int(s) <= 0:
                return f"increments '{short_text(a)}'/'{short_text(s)}' must be positive whole seconds", None
            incr = _increments(int(a), int(s))
    start = until = None
    if e_i is not None and rec[e_i].strip():
        start = rec[e_i].strip()
        if not _DATE.match(start):
            return f"effective date '{short_text(start)}' is not a date (YYYY-MM-DD)", None
    if u_i is not None and rec[u_i].strip():
        until = rec[u_i].strip()
        if not _DATE.match(until):
            return f"end date '{short_text(until)}' is not a date (YYYY-MM-DD)", None
    origin = []
    slot_set = None
    for fname, i in origin_items:
        if fname == "slots":
            slot_set = rec[i].strip() or None
            if slot_set is not None and not _SET_NAME.match(slot_set):
                return (f"slot set '{short_text(slot_set)}' is not a name",
                        "name one of the service's 'slots NAME { ... }', or leave the cell empty for its default")
            continue
        value = origin_value(fname, rec[i])
        if value:
            problem = origin_problem(fname, value)
            if problem is not None:
                return problem, "leave the cell empty for a row that prices every origin"
            origin.append((fname, value))
    dest = rec[d_i].strip() if d_i is not None else ""
    span = Span(shown, lineno, 1, lineno, 2)
    rows.append(ast.RateRowNode(prefix, dest, price, tuple(bands), connect, incr, start, until, span,
                                origin=tuple(origin), slot_set=slot_set,
                                slot_set_span=span if slot_set is not None else None))
    return None


_INCREMENT_CACHE: dict[tuple[int, int], tuple[int, int]] = {}


def _increments(a: int, s: int) -> tuple[int, int]:
    key = (a, s)
    return _INCREMENT_CACHE.setdefault(key, key)


def _best(name: str, header: list[str]) -> str | None:
    return suggest(name, header)


def _sniff(text: str) -> str:
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","
