"""Document layouts: how a document looks as a PDF, from a file a user copies and changes.

A layout is a TOML file (the default: ``icdsl/layouts/default.toml``, which documents every key):
the page (size, margins, the font, the body size, the table header's colour), how dates are
written, the titles of each kind of document, the labels, the columns of the lines table (which
fields, titles, widths, alignment) and a few texts (payment instructions, the reference to the
corrected invoices, the statements' introductions, a closing text, the footer) written as Jinja2
templates, run in Jinja2's sandbox: they read the document's values, they cannot call into
Python. A layout names only what it changes; the rest is the default's.

The rules choose a layout per partner, per invoice stream or for every document
(``template "layouts/x.toml"`` [``stream NAME``] in a ``partner`` or ``company`` block), and the
locale numbers and dates are written for (``locale "de_DE"``, :class:`Local`, babel). The
checker reads the file (:func:`parse`): any problem is an error located in the rule (the
``template`` line) and in the layout file (its line). The layout's text is kept with the party
(:mod:`icdsl.parties`) and so sealed into a finalized document with its parties: an issued
document keeps its look whatever the file becomes.

Hostile input: the file is at most :data:`MAX_BYTES`, a text at most :data:`MAX_TEXT` characters,
every key is checked against the known ones, and a text that fails when rendered is reported,
never a traceback.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).with_name("default.toml")
MAX_BYTES = 64 * 1024
MAX_TEXT = 4000
FIELDS = ("line_no", "description", "quantity", "rate", "amount", "lines", "records", "service", "destination",
          "band")
SIZES = ("A4", "A5", "letter", "legal")
DATE_STYLES = ("auto", "iso", "short", "medium", "long")
CORE_FONTS = ("Helvetica", "Times", "Courier")
EMBEDDED_FONT = "DejaVu Sans Condensed"
_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")


class LayoutError(ValueError):
    """A layout that cannot be used: ``line`` is the line of the layout file (None: unknown)."""

    def __init__(self, message: str, line: int | None = None, name: str = "layout"):
        super().__init__(f"{name}:{line}: {message}" if line else f"{name}: {message}")
        self.message, self.line, self.name = message, line, name


@dataclass(frozen=True)
class Column:
    field: str
    title: str
    width: Decimal  # percent of the page's width
    align: str


@dataclass(frozen=True)
class Layout:
    name: str
    page: dict[str, Any]
    format: dict[str, Any]
    titles: dict[str, str]
    labels: dict[str, str]
    columns: dict[str, tuple[Column, ...]]
    texts: dict[str, str]
    names: dict[str, str] = field(default_factory=dict)  # a name of the rules (unit, service...) -> as printed

    def word(self, name: str | None) -> str:
        """How ``name`` (a unit, service, band or direction as the rules name it) is printed: as
        the layout's ``[names]`` says, else as named."""
        return "" if not name else self.names.get(name, name)

    @property
    def core_font(self) -> bool:
        return self.page["font"] in CORE_FONTS

    def text(self, name: str, values: Mapping[str, Any]) -> str:
        """The text ``name`` rendered with ``values`` (empty when the layout's text is empty)."""
        source = self.texts.get(name) or ""
        if not source.strip():
            return ""
        try:
            return _env().from_string(source).render(**values).strip()
        except Exception as e:  # noqa: BLE001 - a template's failure is the user's, said plainly
            raise LayoutError(f"the text '{name}' cannot be written: {type(e).__name__}: {e}",
                              name=self.name) from None


def _env():
    # lazy: Jinja2 loads only when a layout's texts are read (not at every `icdsl check`)
    from jinja2 import ChainableUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    global _ENV
    if _ENV is None:
        _ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=ChainableUndefined, keep_trailing_newline=False)
    return _ENV


_ENV: Any = None


def _line_of(text: str, section: str, key: str | None = None) -> int | None:
    """The line of ``[section]`` (or of ``key`` in it) in the file: where to point a user."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip().startswith(f"[{section}]")), None)
    if start is None:
        return None
    if key is None:
        return start + 1
    for i in range(start + 1, len(lines)):
        s = lines[i].strip()
        if s.startswith("[") and not s.startswith("[["):
            break
        if re.match(rf"^{re.escape(key)}\s*=", s):
            return i + 1
    return start + 1


_DEFAULT: Layout | None = None


def default() -> Layout:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = parse(DEFAULT_PATH.read_text(encoding="utf-8"), "default.toml", base=None)
    return _DEFAULT


def parse(text: str, name: str = "layout", *, base: Layout | None | bool = True) -> Layout:
    """A layout from the text of its file, over ``base`` (the default's values; None: the text
    must give every key, as the default does). A :class:`LayoutError` says what and where."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise LayoutError(f"the file is larger than {MAX_BYTES // 1024} KiB: a layout is a short text", name=name)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise LayoutError(f"not TOML: {msg}" + (f" (column {m.group(2)})" if m else ""),
                          int(m.group(1)) if m else None, name) from None
    under = default() if base is True else (base or None)
    sections = ("page", "format", "titles", "labels", "columns", "texts", "names")
    for key in raw:
        if key not in sections:
            raise LayoutError(f"unknown section [{key}]: a layout has {', '.join(f'[{s}]' for s in sections)}",
                              _line_of(text, key), name)
    out: dict[str, dict[str, Any]] = {}
    for section in sections:
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise LayoutError(f"'{section}' must be a section ([{section}])", _line_of(text, section), name)
        known: dict[str, Any] = dict(getattr(under, section)) if under is not None else {}
        if under is not None and section != "names":  # names: the rules' own, any
            for key in given:
                if key not in known:
                    raise LayoutError(f"unknown key '{key}' in [{section}]" + _suggest(key, known),
                                      _line_of(text, section, key), name)
        known.update(given)
        out[section] = known
    _check(out, text, name)
    cols = {view: tuple(_column(c, view, text, name) for c in out["columns"][view]) if not isinstance(
        out["columns"][view], tuple) else out["columns"][view] for view in out["columns"]}
    for view, cs in cols.items():
        total = sum((c.width for c in cs), Decimal(0))
        if not cs or total != 100:
            raise LayoutError(f"the widths of the {view} columns add up to {total}, not 100",
                              _line_of(text, "columns", view), name)
    return Layout(name, out["page"], out["format"], out["titles"], out["labels"], cols, out["texts"], out["names"])


def _suggest(key: str, known: Mapping[str, Any]) -> str:
    near = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{near[0]}'?)" if near else f"; known: {', '.join(sorted(known))}"


def _check(out: dict[str, dict[str, Any]], text: str, name: str) -> None:
    def bad(section: str, key: str, why: str) -> LayoutError:
        return LayoutError(f"[{section}] {key}: {why}", _line_of(text, section, key), name)

    page, fmt = out["page"], out["format"]
    if page.get("size") not in SIZES:
        raise bad("page", "size", f"'{page.get('size')}' is not one of {', '.join(SIZES)}")
    for key, lo, hi in (("margin", 0, 60), ("font_size", 5, 20)):
        v = page.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise bad("page", key, f"must be a number from {lo} to {hi}")
    if page.get("font") not in (*CORE_FONTS, EMBEDDED_FONT):
        raise bad("page", "font", f"'{page.get('font')}' is not a font icdsl has: \"{EMBEDDED_FONT}\" (embedded) "
                                  f"or {', '.join(CORE_FONTS)} (PDF core fonts, Latin-1 only, not PDF/A)")
    if not isinstance(page.get("header_fill"), str) or not _COLOUR.match(page["header_fill"]):
        raise bad("page", "header_fill", "write a colour as #RRGGBB")
    style = fmt.get("date")
    if not isinstance(style, str) or not style.strip() or len(style) > 40:
        raise bad("format", "date", f"write one of {', '.join(DATE_STYLES)} or a date pattern such as dd/MM/yyyy")
    if style not in DATE_STYLES:
        try:
            from babel.dates import format_date  # lazy: locale data, only for a date pattern

            format_date(date(2026, 1, 31), style, locale="en")
        except Exception as e:  # noqa: BLE001 - any malformed pattern
            raise bad("format", "date", f"'{style}' is not a date pattern ({e})") from None
    loc = fmt.get("locale")
    if not isinstance(loc, str) or (loc and check_locale(loc)):
        raise bad("format", "locale", check_locale(loc) if isinstance(loc, str) else "write a locale such as de_DE")
    for section in ("titles", "labels", "texts", "names"):
        for key, v in out[section].items():
            if not isinstance(v, str):
                raise bad(section, key, "must be text (in quotes)")
            if len(v) > MAX_TEXT:
                raise bad(section, key, f"is longer than {MAX_TEXT} characters")
    from jinja2 import TemplateSyntaxError  # lazy: Jinja2 only when a layout is read

    for key, v in out["texts"].items():
        try:
            _env().parse(v)
        except TemplateSyntaxError as e:
            at = _line_of(text, "texts", key)
            raise LayoutError(f"[texts] {key}: {e.message}", (at + (e.lineno or 1) - 1) if at else None,
                              name) from None
    for view in ("itemized", "summary"):
        if view not in out["columns"]:
            raise bad("columns", view, "missing: the columns of the view")
    for view in out["columns"]:
        if view not in ("itemized", "summary"):
            raise bad("columns", view, "unknown view: itemized or summary")
        if not isinstance(out["columns"][view], list | tuple):
            raise bad("columns", view, "must be a list of columns: [{ field = \"amount\", ... }, ...]")


def _column(c: Any, view: str, text: str, name: str) -> Column:
    where = _line_of(text, "columns", view)
    if not isinstance(c, dict):
        raise LayoutError(f"[columns] {view}: a column is {{ field = ..., title = ..., width = ..., align = ... }}",
                          where, name)
    unknown = set(c) - {"field", "title", "width", "align"}
    if unknown:
        raise LayoutError(f"[columns] {view}: unknown key '{sorted(unknown)[0]}' of a column", where, name)
    field = c.get("field")
    if field not in FIELDS:
        raise LayoutError(f"[columns] {view}: unknown field '{field}': use one of {', '.join(FIELDS)}", where, name)
    width = c.get("width")
    if isinstance(width, bool) or not isinstance(width, int | float) or not 0 < width <= 100:
        raise LayoutError(f"[columns] {view}: the width of '{field}' must be a percent from 1 to 100", where, name)
    align = c.get("align", "L")
    if align not in ("L", "R", "C"):
        raise LayoutError(f"[columns] {view}: align '{align}' of '{field}': L, R or C", where, name)
    title = c.get("title", field)
    if not isinstance(title, str) or len(title) > 60:
        raise LayoutError(f"[columns] {view}: the title of '{field}' must be a short text", where, name)
    return Column(field, title, Decimal(str(width)), align)


def check_locale(text: str) -> str | None:
    """What is wrong with a locale identifier (``de_DE``, ``fr``), or None."""
    from babel import Locale, UnknownLocaleError  # lazy: locale data, only when a locale is named

    try:
        Locale.parse(text.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return f"'{text}' is not a locale: write a language and country such as de_DE, fr_FR or en_GB"
    return None


# --------------------------------------------------------------------------- which, and how written


def choose(doc: Mapping[str, Any]) -> Layout:
    """The layout of a document: its buyer's for its stream, else its buyer's, else our company's
    (the templates as the document was finalized with them), else the default."""
    stream = doc.get("stream")
    for who in (doc.get("recipient") or doc.get("buyer"), doc.get("seller")):
        templates = (who or {}).get("templates") or ()
        chosen = next((t for t in templates if t.get("stream") == stream and stream), None) or next(
            (t for t in templates if not t.get("stream")), None)
        if chosen is not None:
            return parse(chosen["text"], chosen.get("name") or "layout")
    return default()


def locale_of(doc: Mapping[str, Any], layout: Layout) -> str | None:
    for who in (doc.get("recipient") or doc.get("buyer"), doc.get("seller")):
        if (who or {}).get("locale"):
            return who["locale"]
    return layout.format.get("locale") or None


class Local:
    """Numbers, amounts and dates written for a locale (babel); without one, as icdsl always
    wrote them (1,234.56 and ISO dates)."""

    def __init__(self, locale: str | None, date_style: str = "auto"):
        self.locale = locale.replace("-", "_") if locale else None
        self.date_style = date_style

    def number(self, v: Decimal | int | None, places: int | None = None) -> str:
        if v is None:
            return ""
        d = Decimal(v)
        if places is None:
            exp = d.as_tuple().exponent
            places = max(-exp, 0) if isinstance(exp, int) else 0
        if self.locale is None:
            return f"{d:,.{places}f}"
        from babel.numbers import format_decimal  # lazy: locale data, only for a localized document

        return format_decimal(d, format="#,##0" + ("." + "0" * places if places else ""), locale=self.locale,
                              decimal_quantization=False)

    def date(self, d: date | None) -> str:
        if d is None:
            return "-"
        style = self.date_style
        if style == "iso" or (style == "auto" and self.locale is None):
            return d.isoformat()
        from babel.dates import format_date  # lazy: locale data, only for a localized document

        return format_date(d, "medium" if style == "auto" else style, locale=self.locale or "en")


def default_text() -> str:
    """The default layout's file, to copy."""
    return DEFAULT_PATH.read_text(encoding="utf-8")


__all__ = ["DEFAULT_PATH", "Column", "Layout", "LayoutError", "Local", "check_locale", "choose", "default",
           "default_text", "locale_of", "parse"]
