"""Number-range tables: which operator, circle (or region) and country a number belongs to.

A ``numbers NAME from "ranges.csv" ported "ported.csv"`` declaration names two CSV files inside
the project, read as hostile input (every problem reported at its CSV line, like decks):

``ranges.csv``
    one range per line: ``prefix`` (E.164 digits), or ``start`` and ``end`` (two numbers of the
    same length, or one ``range`` column written ``START-END``), then ``operator`` (required),
    ``circle`` (or ``region``) and ``country`` (optional). A range ``START-END`` covers the
    numbers whose first L digits (L = the length of START) lie between START and END included;
    it is held as the few prefixes that cover exactly that interval. Two lines may not give the
    same prefix (the table would be ambiguous); a longer prefix refines a shorter one.

``ported.csv`` (optional)
    ``number`` (the whole E.164 number) and ``operator``, optionally ``circle``: a ported number
    belongs to that operator whatever its range says (its circle stays the range's unless the
    line gives one).

The values read here (:class:`NumberRanges`) are plain data; the plan re-exports them and the
executors look numbers up in them (``icdsl.rating.origins``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from icdsl.lang.diagnostics import Diagnostic
from icdsl.lang.values import short_text
from icdsl.spans import Span

MAX_ROW_ERRORS = 20
MAX_PREFIX = 16  # E.164 numbers have at most 15 digits
_DIGITS = re.compile(r"[0-9]{1,16}\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.&'()/-]{0,63}\Z")
_RANGE = re.compile(r"\s*\+?([0-9]{1,16})\s*-\s*\+?([0-9]{1,16})\s*\Z")
RANGE_NAMES = {
    "prefix": ("prefix", "code", "number_prefix"),
    "start": ("start", "from", "range_start", "first"),
    "end": ("end", "to", "range_end", "last"),
    "range": ("range", "number_range"),
    "operator": ("operator", "carrier", "network"),
    "circle": ("circle", "region", "area", "lsa"),
    "country": ("country", "country_code"),
}
PORTED_NAMES = {
    "number": ("number", "msisdn", "e164"),
    "operator": ("operator", "carrier", "network", "recipient"),
    "circle": ("circle", "region", "area", "lsa"),
}


@dataclass(frozen=True, slots=True)
class NumberRanges:
    """A number-range table as read: one entry per prefix (ranges already cut into prefixes),
    each with its operator, circle (None: not given), country (None) and CSV line; the ported
    numbers with theirs. ``source``/``sha256``: the ranges file; ``ported_source`` and
    ``ported_sha256`` the ported numbers' (None without one)."""

    source: str
    sha256: str
    prefixes: tuple[str, ...]
    operators: tuple[str, ...]
    circles: tuple[str | None, ...]
    countries: tuple[str | None, ...]
    lines: tuple[int, ...]
    ported: tuple[tuple[str, str, str | None, int], ...] = ()  # (number, operator, circle, line)
    ported_source: str | None = None
    ported_sha256: str | None = None

    def __len__(self) -> int:
        return len(self.prefixes)


def range_prefixes(start: str, end: str) -> list[str]:
    """The fewest prefixes covering exactly the L-digit numbers from ``start`` to ``end``
    (both L digits, start <= end): ``9198100-9198299`` -> ``91981``, ``91982``. Greedy: from
    the low end, the largest aligned block of 10**j numbers that stays inside the range."""
    width = len(start)
    lo, hi = int(start), int(end)
    out: list[str] = []
    while lo <= hi:
        j = 0
        while j < width and lo % 10 ** (j + 1) == 0 and lo + 10 ** (j + 1) - 1 <= hi:
            j += 1
        out.append(str(lo).zfill(width)[: width - j])
        lo += 10**j
    return out


def _read_text(path: Path, shown: str, ref_span: Span, what: str) -> tuple[str | None, str, list[Diagnostic]]:
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, "", [Diagnostic("E412", f"cannot read the {what} '{shown}': {e.strerror or e}", ref_span,
                                     "check the path: it is relative to this rule file")]
    sha = hashlib.sha256(data).hexdigest()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return None, sha, [Diagnostic("E002", f"the {what} is not valid UTF-8", Span(shown, line, 1, line, 2),
                                      "save it as UTF-8 CSV")]
    if "\x00" in text:
        return None, sha, [Diagnostic("E001", f"the {what} is not a text file", Span(shown, 1, 1, 1, 2))]
    return text, sha, []


def _header(text: str, shown: str, names: dict[str, tuple[str, ...]], what: str):
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    delim = max(counts, key=counts.get) if any(counts.values()) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return None, None, [Diagnostic("E413", f"the {what} {shown} is empty (no header row)", Span(shown, 1, 1, 1, 1),
                                       "the first line must name the columns, e.g. prefix,operator,circle,country")]
    except csv.Error as e:
        return None, None, [Diagnostic("E413", f"the header cannot be read: {e}", Span(shown, 1, 1, 1, 1))]
    lower = {h.lower().replace(" ", "_"): i for i, h in enumerate(header)}
    cols = {}
    for f, options in names.items():
        for n in options:
            if n in lower:
                cols[f] = lower[n]
                break
    return reader, (header, cols), []


def read_ranges(path: Path, shown: str, ref_span: Span) -> tuple[NumberRanges | None, list[Diagnostic]]:
    """Read a number-range CSV (see the module's documentation)."""
    text, sha, diags = _read_text(path, shown, ref_span, "number-range table")
    if text is None:
        return None, diags
    reader, got, diags = _header(text, shown, RANGE_NAMES, "number-range table")
    if reader is None:
        return None, diags
    header, cols = got
    has_range = "range" in cols or ("start" in cols and "end" in cols)
    if "prefix" not in cols and not has_range:
        return None, [Diagnostic("E413", f"the number-range table {shown} has no prefix or range column", ref_span,
                                 f"its columns are: {', '.join(header)}; name one prefix, range (START-END), "
                                 "or start and end")]
    if "operator" not in cols:
        return None, [Diagnostic("E413", f"the number-range table {shown} has no operator column", ref_span,
                                 f"its columns are: {', '.join(header)}; add a column named operator")]
    width = len(header)
    prefixes: list[str] = []
    operators: list[str] = []
    circles: list[str | None] = []
    countries: list[str | None] = []
    lines: list[int] = []
    first_line: dict[str, int] = {}
    problems: list[tuple[int, str, str | None]] = []
    errors = 0
    lineno = 1

    def problem(line: int, msg: str, help_: str | None = None) -> None:
        nonlocal errors
        errors += 1
        if errors <= MAX_ROW_ERRORS:
            problems.append((line, msg, help_))

    while True:
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problem(reader.line_num, f"this row cannot be read: {e}; the rows after it were not read")
            break
        lineno = reader.line_num
        if not rec or (len(rec) == 1 and not rec[0].strip()):
            continue
        if len(rec) != width:
            problem(lineno, f"this row has {len(rec)} fields but the header has {width}",
                    "check for an unquoted delimiter inside an operator name")
            continue
        cell = {f: rec[i].strip() for f, i in cols.items()}
        operator = cell["operator"]
        if not _NAME.match(operator):
            problem(lineno, f"operator '{short_text(operator)}' is not a name",
                    "an operator is a short name of letters, digits and spaces, e.g. AIRTEL")
            continue
        circle = cell.get("circle") or None
        if circle is not None and not _NAME.match(circle):
            problem(lineno, f"circle '{short_text(circle)}' is not a name", "e.g. MH, DL, KA")
            continue
        country = cell.get("country") or None
        if country is not None and not re.fullmatch(r"[A-Za-z]{2}", country):
            problem(lineno, f"country '{short_text(country)}' is not an ISO 3166 code", "write two letters, e.g. IN")
            continue
        pieces: list[str]
        if cell.get("prefix"):
            p = cell["prefix"].lstrip("+")
            if not _DIGITS.match(p):
                problem(lineno, f"prefix '{short_text(cell['prefix'])}' is not a string of at most {MAX_PREFIX} digits",
                        "prefixes are E.164 digits, e.g. 919820")
                continue
            pieces = [p]
        else:
            if "range" in cols and cell.get("range"):
                m = _RANGE.match(cell["range"])
                if not m:
                    problem(lineno, f"range '{short_text(cell['range'])}' must read START-END",
                            "e.g. 919810000-919819999: two numbers of the same length")
                    continue
                lo, hi = m.group(1), m.group(2)
            else:
                lo, hi = cell.get("start", "").lstrip("+"), cell.get("end", "").lstrip("+")
                if not lo and not hi:
                    problem(lineno, "this row has neither a prefix nor a range", "give a prefix, or start and end")
                    continue
                if not (_DIGITS.match(lo) and _DIGITS.match(hi)):
                    problem(lineno, f"range start '{short_text(lo)}' and end '{short_text(hi)}' must be digits",
                            "e.g. start 919810000, end 919819999")
                    continue
            if len(lo) != len(hi):
                problem(lineno, f"range {short_text(lo)}-{short_text(hi)}: start and end have different lengths",
                        "write both ends with the same number of digits")
                continue
            if lo > hi:
                problem(lineno, f"range {lo}-{hi} ends before it starts", "swap the two numbers")
                continue
            pieces = range_prefixes(lo, hi)
        clash = next((p for p in pieces if p in first_line), None)
        if clash is not None:
            problem(lineno, f"prefix {clash} is already given at line {first_line[clash]}",
                    "each number belongs to one range: remove or split one of the two lines")
            continue
        for p in pieces:
            first_line[p] = lineno
            prefixes.append(p)
            operators.append(operator)
            circles.append(circle)
            countries.append(country.upper() if country else None)
            lines.append(lineno)
    for line, msg, help_ in problems:
        diags.append(Diagnostic("E414", msg, Span(shown, line, 1, line, 2), help_))
    if errors > MAX_ROW_ERRORS:
        diags.append(Diagnostic("E414", f"{errors - MAX_ROW_ERRORS} more rows of this table have problems",
                                Span(shown, lineno, 1, lineno, 2)))
    if diags:
        return None, diags
    if not prefixes:
        diags.append(Diagnostic("W411", f"the number-range table {shown} has no rows", ref_span, severity="warning"))
    return NumberRanges(shown, sha, tuple(prefixes), tuple(operators), tuple(circles), tuple(countries),
                        tuple(lines)), diags


def read_ported(path: Path, shown: str, ref_span: Span
                ) -> tuple[tuple[tuple[str, str, str | None, int], ...] | None, str, list[Diagnostic]]:
    """Read a ported-numbers CSV: ``((number, operator, circle, line), ...)``, its SHA-256."""
    text, sha, diags = _read_text(path, shown, ref_span, "ported-numbers table")
    if text is None:
        return None, sha, diags
    reader, got, diags = _header(text, shown, PORTED_NAMES, "ported-numbers table")
    if reader is None:
        return None, sha, diags
    header, cols = got
    missing = [f for f in ("number", "operator") if f not in cols]
    if missing:
        return None, sha, [Diagnostic("E413", f"the ported-numbers table {shown} has no {missing[0]} column", ref_span,
                                      f"its columns are: {', '.join(header)}; it needs number and operator "
                                      "(circle optional)")]
    width = len(header)
    out: list[tuple[str, str, str | None, int]] = []
    seen: dict[str, int] = {}
    errors = 0
    lineno = 1
    for rec in reader:
        lineno = reader.line_num
        if not rec or (len(rec) == 1 and not rec[0].strip()):
            continue
        msg = help_ = None
        if len(rec) != width:
            msg = f"this row has {len(rec)} fields but the header has {width}"
        else:
            number = rec[cols["number"]].strip().lstrip("+")
            operator = rec[cols["operator"]].strip()
            circle = rec[cols["circle"]].strip() if "circle" in cols else ""
            if not _DIGITS.match(number):
                msg, help_ = f"number '{short_text(number)}' is not an E.164 number", "write the digits, e.g. 919820012345"
            elif not _NAME.match(operator):
                msg, help_ = f"operator '{short_text(operator)}' is not a name", "e.g. JIO"
            elif circle and not _NAME.match(circle):
                msg = f"circle '{short_text(circle)}' is not a name"
            elif number in seen:
                msg, help_ = (f"number {number} is already ported at line {seen[number]}",
                              "keep one line per number: the latest port")
            else:
                seen[number] = lineno
                out.append((number, operator, circle or None, lineno))
        if msg is not None:
            errors += 1
            if errors <= MAX_ROW_ERRORS:
                diags.append(Diagnostic("E415", msg, Span(shown, lineno, 1, lineno, 2), help_))
    if errors > MAX_ROW_ERRORS:
        diags.append(Diagnostic("E415", f"{errors - MAX_ROW_ERRORS} more rows of this table have problems",
                                Span(shown, lineno, 1, lineno, 2)))
    if diags:
        return None, sha, diags
    return tuple(out), sha, []
