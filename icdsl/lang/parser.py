"""Parse rule files into the typed AST, with located, friendly syntax errors.

The grammar (``grammar/icdsl.lark``) is LALR(1) with Lark's contextual lexer. It is loaded
from the source checkout or, in an installed wheel, from the package data ``icdsl/_grammar``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from icdsl.lang import ast
from icdsl.lang.diagnostics import Diagnostic
from icdsl.lang.rates import read_rows
from icdsl.lang.values import NUMBER_FIX, PRICE_UNITS, number_problem, short_text
from icdsl.spans import Span

# ---------------------------------------------------------------- grammar loading


def grammar_path() -> Path:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "grammar" / "icdsl.lark", here / "_grammar" / "icdsl.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("the icdsl grammar is missing from this installation (grammar/icdsl.lark)")


def _cache_file(text: str, keep_all_tokens: bool) -> str | bool:
    """Where Lark keeps the built LALR tables (building them costs ~0.5 s per process): a file
    in the user's own cache folder (``$XDG_CACHE_HOME/icdsl`` or ``~/.cache/icdsl``), named by
    the grammar's hash, Lark's and Python's versions. False (no cache) if the folder cannot be
    made; ``ICDSL_NO_CACHE=1`` turns it off."""

    if os.environ.get("ICDSL_NO_CACHE"):
        return False
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "icdsl"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return False
    key = hashlib.sha256(f"{text}|{keep_all_tokens}|{lark.__version__}|{sys.version_info[:2]}".encode()).hexdigest()
    return str(folder / f"grammar-{key[:24]}.lark-cache")


@functools.cache
def _lark(keep_all_tokens: bool = False) -> Lark:
    text = grammar_path().read_text(encoding="utf-8")
    return Lark(
        text,
        parser="lalr",
        lexer="contextual",
        strict=True,
        propagate_positions=True,
        maybe_placeholders=False,
        keep_all_tokens=keep_all_tokens,
        cache=_cache_file(text, keep_all_tokens),
    )


# Words shown to users instead of terminal names.
TERMINAL_TEXT = {
    "NAME": "a name",
    "STRING": 'a "quoted text"',
    "NUMBER": "a number",
    "DATE": "a date (YYYY-MM-DD)",
    "MONTH": "a month (YYYY-MM)",
    "TIME": "a time (HH:MM)",
    "TZNAME": "a time zone (e.g. Europe/Paris)",
    "KEY": "a 'name:'",
    "VERSION": "a version (v1, v2, ...)",
    "COMPARATOR": "a comparison (==, !=, <, <=, >, >=)",
    "_RANGE": "'..'",
    "_DATE_KW": "'date'",
    "$END": "the end of the file",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "COLON": "':'",
    "SLASH": "'/'",
    "MINUS": "'-'",
    "PERCENT": "'%'",
    "EQUAL": "'='",
    "DOT": "'.'",
    "RATES_BLOCK": "a rate table '{ ... }'",
    "UTC": "'UTC'",
}


def terminal_text(name: str) -> str:
    if name in TERMINAL_TEXT:
        return TERMINAL_TEXT[name]
    try:
        pattern = _lark().get_terminal(name).pattern
        if pattern.type == "str":
            return f"'{pattern.value}'"
    except KeyError:
        pass
    return name.lower()


def _describe_expected(expected) -> str:
    words = sorted({terminal_text(e) for e in expected if not e.startswith("__")})
    keywords = [w for w in words if w.startswith("'")]
    others = [w for w in words if not w.startswith("'")]
    shown = others + keywords
    if len(shown) > 10:
        shown = shown[:10] + ["..."]
    return ", ".join(shown)


# ---------------------------------------------------------------- spans


class _SpanMaker:
    def __init__(self, path: str):
        self.path = path

    def of_meta(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.path, 0, 0, 0, 0)
        return Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def of_token(self, tok: Token) -> Span:
        return Span(self.path, tok.line, tok.column, tok.end_line, tok.end_column)


def _join(a: Span, b: Span) -> Span:
    return Span(a.file, a.line, a.col, b.end_line, b.end_col)


# ---------------------------------------------------------------- the transformer


class _Error(Exception):
    def __init__(self, diag: Diagnostic):
        self.diag = diag


def _unquote(s: str) -> str:
    body = s[1:-1]
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


MAX_VERSION_DIGITS = 6


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, path: str):
        super().__init__()
        self.s = _SpanMaker(path)

    # -- tokens to leaves
    def _ident(self, tok: Token) -> ast.Ident:
        if tok.type == "VERSION" and len(tok) > MAX_VERSION_DIGITS + 1:
            raise _Error(Diagnostic("E227", f"the version '{short_text(str(tok))}' is too large", self.s.of_token(tok),
                                    f"versions are v1, v2, ... up to v{'9' * MAX_VERSION_DIGITS}"))
        return ast.Ident(str(tok), self.s.of_token(tok))

    def _str(self, tok: Token) -> ast.Str:
        return ast.Str(_unquote(str(tok)), self.s.of_token(tok))

    def _num(self, tok: Token) -> ast.Num:
        text = str(tok)
        span = self.s.of_token(tok)
        if "__" in text or text.endswith("_") or "_." in text or "._" in text:
            raise _Error(Diagnostic("E004", f"'{text}' is not a valid number", span,
                                    "write digits with single '_' between groups, e.g. 1_000_000 or 0.0070"))
        try:
            value = Decimal(text.replace("_", ""))
        except InvalidOperation:
            raise _Error(Diagnostic("E004", f"'{text}' is not a valid number", span)) from None
        problem = number_problem(value, text)
        if problem:
            raise _Error(Diagnostic("E227", problem, span, NUMBER_FIX))
        return ast.Num(value, text, span)

    def _leaf(self, tok):
        if isinstance(tok, Token):
            if tok.type == "STRING":
                return self._str(tok)
            if tok.type == "NUMBER":
                return self._num(tok)
            if tok.type == "DATE":
                return ast.DateLit(str(tok), self.s.of_token(tok))
            return self._ident(tok)
        return tok

    def _tz(self, node) -> ast.Str:
        # tz is a Tree('tz', [token]) already transformed by tz()
        return node

    @staticmethod
    def _tokens(children):
        return [c for c in children if isinstance(c, Token)]

    # -- structure
    def start(self, meta, children):
        f = ast.File(path=self.s.path)
        for c in children:
            if isinstance(c, ast.Use):
                f.uses.append(c)
            f.items.append(c)
        return f

    def use(self, meta, children):
        (target,) = children
        if isinstance(target, Token):
            return ast.Use(_unquote(str(target)), True, self.s.of_meta(meta))
        return ast.Use(target, False, self.s.of_meta(meta))

    def dotted_name(self, meta, children):
        return ".".join(str(c) for c in children)

    def money(self, meta, children):
        n, cur = children
        return ast.Money(self._num(n), self._ident(cur), self.s.of_meta(meta))

    def quantity(self, meta, children):
        n, unit = children
        return ast.Quantity(self._num(n), self._ident(unit), self.s.of_meta(meta))

    def percent(self, meta, children):
        return ast.Percent(self._num(children[0]), self.s.of_meta(meta))

    def period(self, meta, children):
        dates = [ast.DateLit(str(t), self.s.of_token(t)) for t in children if t.type == "DATE"]
        return (dates[0], dates[1] if len(dates) > 1 else None)

    def tz(self, meta, children):
        tok = children[0]
        text = _unquote(str(tok)) if tok.type == "STRING" else str(tok)
        return ast.Str(text, self.s.of_token(tok))

    def number_or_string(self, meta, children):
        return self._leaf(children[0])

    def rounding_spec(self, meta, children):
        mode, prec, unit = children
        return ast.RoundingNode(self._ident(mode), self._num(prec), None, self.s.of_meta(meta), self._ident(unit))

    def rounding_ref(self, meta, children):
        return ast.RoundingNode(None, None, self._ident(children[0]), self.s.of_meta(meta))

    # -- partners
    def _setting(self, key, meta, children):
        return ast.Setting(key, tuple(self._leaf(c) for c in children), self.s.of_meta(meta))

    def p_kind(self, meta, c):
        return self._setting("kind", meta, c)

    def p_currency(self, meta, c):
        return self._setting("currency", meta, c)

    def p_timezone(self, meta, c):
        return self._setting("timezone", meta, c)

    def p_country(self, meta, c):
        return self._setting("country", meta, c)

    def p_billing(self, meta, c):
        return self._setting("billing", meta, c)

    def p_due(self, meta, c):
        return self._setting("due", meta, c)

    def p_tax(self, meta, c):
        return self._setting("tax", meta, c)

    def p_attribute(self, meta, c):
        key, value = c
        return ast.Param(ast.Ident(str(key)[:-1], self.s.of_token(key)), value, self.s.of_meta(meta))

    def partner(self, meta, children):
        code, name, *items = children
        settings = tuple(i for i in items if isinstance(i, ast.Setting))
        rounding = next((i for i in items if isinstance(i, ast.RoundingNode)), None)
        attrs = tuple(i for i in items if isinstance(i, ast.Param))
        party = tuple(i for i in items if isinstance(i, ast.PartyField))
        return ast.PartnerDecl(self._ident(code), self._str(name), settings, rounding, attrs, self.s.of_meta(meta),
                               party)

    def company(self, meta, children):
        code, name, *items = children
        settings = tuple(i for i in items if isinstance(i, ast.Setting))
        party = tuple(i for i in items if isinstance(i, ast.PartyField))
        return ast.CompanyDecl(self._ident(code), self._str(name), settings, party, self.s.of_meta(meta))

    def _party(self, key, meta, children):
        return ast.PartyField(key, tuple(self._str(c) for c in children if isinstance(c, Token)),
                              self.s.of_meta(meta))

    def pa_address(self, meta, c):
        return self._party("address", meta, c)

    def pa_postcode(self, meta, c):
        return self._party("postcode", meta, c)

    def pa_city(self, meta, c):
        return self._party("city", meta, c)

    def pa_vat(self, meta, c):
        return self._party("vat", meta, c)

    def pa_registration(self, meta, c):
        return self._party("registration", meta, c)

    def pa_iban(self, meta, c):
        return self._party("iban", meta, c)

    def pa_bic(self, meta, c):
        return self._party("bic", meta, c)

    def pa_peppol(self, meta, c):
        return self._party("peppol", meta, c)

    def accounts(self, meta, children):
        return ast.AccountsDecl(tuple(children), self.s.of_meta(meta))

    def _acc(self, what, meta, c):
        key = self._ident(c[0]) if len(c) > 1 else None
        return (what, key, self._str(c[-1]), self.s.of_meta(meta))

    def acc_receivable(self, meta, c):
        return self._acc("receivable", meta, c)

    def acc_revenue(self, meta, c):
        return self._acc("revenue", meta, c)

    def acc_revenue_kind(self, meta, c):
        return self._acc("revenue_kind", meta, c)

    def acc_revenue_service(self, meta, c):
        return self._acc("revenue_service", meta, c)

    def acc_tax(self, meta, c):
        return self._acc("tax", meta, c)

    def contact_email(self, meta, c):
        return ("email", self._str(c[0]))

    def contact_phone(self, meta, c):
        return ("phone", self._str(c[0]))

    def pa_locale(self, meta, c):
        return self._party("locale", meta, c)

    def pa_template(self, meta, c):
        """``template "FILE" [stream NAME]``: values (the file, the stream or None)."""
        stream = ast.Str(str(c[1]), self.s.of_token(c[1])) if len(c) > 1 else None
        return ast.PartyField("template", (self._str(c[0]), stream), self.s.of_meta(meta))

    def pa_contact(self, meta, c):
        """``contact NAME [email E] [phone P]``: values (name, email or None, phone or None)."""
        extra = dict(x for x in c[1:] if isinstance(x, tuple))
        return ast.PartyField("contact", (self._str(c[0]), extra.get("email"), extra.get("phone")),
                              self.s.of_meta(meta))

    # -- definitions
    def rounding_preset(self, meta, children):
        name, prec, mode = children
        return ast.RoundingPreset(self._ident(name), self._num(prec), self._ident(mode), self.s.of_meta(meta))

    def day_range(self, meta, children):
        a = self._ident(children[0])
        b = self._ident(children[1]) if len(children) > 1 else None
        return (a, b)

    def days(self, meta, children):
        return tuple(children)

    def time_range(self, meta, children):
        a, b = children
        return (ast.TimeLit(str(a), self.s.of_token(a)), ast.TimeLit(str(b), self.s.of_token(b)))

    def band_rule(self, meta, children):
        band, days, *rest = children
        start, end = rest[0] if rest else (None, None)
        return ast.BandRuleNode(self._ident(band), days, start, end, self.s.of_meta(meta))

    def band_default(self, meta, children):
        return ("default", self._ident(children[0]))

    def band_holidays(self, meta, children):
        country, *rest = children
        sub = self._str(rest[0]) if len(rest) == 2 else None
        return ast.HolidayNode(self._ident(country), sub, self._ident(rest[-1]), self.s.of_meta(meta))

    def band_date(self, meta, children):
        d, band = children
        return ast.DateBandNode(ast.DateLit(str(d), self.s.of_token(d)), self._ident(band), self.s.of_meta(meta))

    def _calendar(self, name, tz, items, meta):
        rules = tuple(i for i in items if isinstance(i, ast.BandRuleNode))
        defaults = [i[1] for i in items if isinstance(i, tuple)]
        hols = tuple(i for i in items if isinstance(i, ast.HolidayNode))
        dates = tuple(i for i in items if isinstance(i, ast.DateBandNode))
        return ast.CalendarDecl(name, tz, rules, defaults[-1] if defaults else None, hols, dates,
                                self.s.of_meta(meta))

    def calendar(self, meta, children):
        name, tz, *items = children
        return self._calendar(self._ident(name), tz, items, meta)

    def fx_rate(self, meta, children):
        base, quote, rate, start = children
        return ast.FxRateNode(self._ident(base), self._ident(quote), self._num(rate),
                              ast.DateLit(str(start), self.s.of_token(start)), self.s.of_meta(meta))

    def fx(self, meta, children):
        name, *items = children
        rates = tuple(i for i in items if isinstance(i, ast.FxRateNode))
        rounding = next((i for i in items if isinstance(i, ast.RoundingNode)), None)
        return ast.FxDecl(self._ident(name), rates, rounding, self.s.of_meta(meta))

    def zone_country(self, meta, c):
        return ("country", self._ident(c[0]))

    def zone_prefix(self, meta, c):
        return ("prefix", self._str(c[0]))

    def zone_include(self, meta, c):
        return ("zone", self._ident(c[0]))

    def zone_members(self, meta, children):
        return list(children)

    def zone(self, meta, children):
        name, *rest = children
        members = rest[0] if rest else []
        pick = lambda kind: tuple(m[1] for m in members if m[0] == kind)  # noqa: E731
        return ast.ZoneDecl(self._ident(name), pick("country"), pick("prefix"), pick("zone"), self.s.of_meta(meta))

    def ported(self, meta, c):
        return self._str(c[0])

    def numbers(self, meta, children):
        name, path, *rest = children
        return ast.NumbersDecl(self._ident(name), self._str(path), rest[0] if rest else None, self.s.of_meta(meta))

    def template(self, meta, children):
        name, *charges = children
        params: tuple[ast.Ident, ...] = ()
        if charges and isinstance(charges[0], tuple) and charges[0][0] == "params":
            params = charges.pop(0)[1]
        return ast.TemplateDecl(self._ident(name), tuple(charges), self.s.of_meta(meta), params)

    def template_params(self, meta, c):
        return ("params", tuple(self._ident(n) for n in c))

    def template_args(self, meta, c):
        return ("args", tuple(a for a in c if a is not None))

    def arg_number(self, meta, c):
        return self._num(c[0])

    def arg_name(self, meta, c):
        return self._ident(c[0])

    def arg_string(self, meta, c):
        return self._str(c[0])

    def param_money(self, meta, c):
        return ast.ParamRef(self._ident(c[0]), "money", self.s.of_meta(meta))

    def param_percent(self, meta, c):
        return ast.ParamRef(self._ident(c[0]), "percent", self.s.of_meta(meta))

    def param_amount_per(self, meta, c):
        ref = ast.ParamRef(self._ident(c[0]), "money", self.s.of_token(c[0]))
        return ast.MoneyPer(ref, self._ident(c[1]), self.s.of_meta(meta))  # type: ignore[arg-type]

    def rec_column(self, meta, c):
        return ("column", self._ident(c[0]), self._str(c[1]))

    def rec_constant(self, meta, c):
        return ("constant", self._ident(c[0]), self._leaf(c[1]))

    def rec_timezone(self, meta, c):
        return self._setting("timezone", meta, c)

    def rec_country(self, meta, c):
        return self._setting("country", meta, c)

    def rec_format(self, meta, c):
        return self._setting("format", meta, c)

    def rec_numbers(self, meta, c):
        return self._setting("numbers", meta, c)

    def records(self, meta, children):
        name, *items = children
        cols = tuple((i[1], i[2]) for i in items if isinstance(i, tuple) and i[0] == "column")
        consts = tuple((i[1], i[2]) for i in items if isinstance(i, tuple) and i[0] == "constant")
        settings = tuple(i for i in items if isinstance(i, ast.Setting))
        return ast.RecordsDecl(self._ident(name), cols, consts, settings, self.s.of_meta(meta))


    # -- least-cost routing policies
    def l_description(self, meta, c):
        return self._setting("description", meta, c)

    def l_service(self, meta, c):
        return self._setting("service", meta, c)

    def l_currency(self, meta, c):
        return self._setting("currency", meta, c)

    def l_fx(self, meta, c):
        return self._setting("fx", meta, c)

    def l_sell(self, meta, c):
        return self._setting("sell", meta, c)

    def l_reference(self, meta, c):
        return self._setting("reference", meta, c)

    def l_routes(self, meta, c):
        return self._setting("routes", meta, c)

    def l_window(self, meta, c):
        return self._setting("quality", meta, c)

    def l_unmeasured(self, meta, c):
        return self._setting("unmeasured", meta, c)

    def lcr_measure(self, meta, c):
        per = self._ident(c[2]) if len(c) > 2 else None
        return ast.LcrMeasure(self._num(c[0]), self._ident(c[1]), per, self.s.of_meta(meta))

    def lcr_count(self, meta, c):
        return self._num(c[0])

    def lcr_scope(self, meta, c):
        return ("scope", tuple(self._leaf(x) for x in c))

    def lcr_share(self, meta, c):
        return (self._ident(c[0]), c[1])

    def _limit(self, bound, meta, c):
        measure, value, *rest = c
        scope = rest[0][1] if rest else ()
        return ast.LcrLimit(bound, self._ident(measure), self._leaf(value), scope, self.s.of_meta(meta))

    def l_minimum(self, meta, c):
        return self._limit("minimum", meta, c)

    def l_maximum(self, meta, c):
        return self._limit("maximum", meta, c)

    def _suppliers(self, kind, meta, c):
        names = tuple(self._ident(x) for x in c if isinstance(x, Token))
        scope = next((x[1] for x in c if isinstance(x, tuple)), ())
        return ast.LcrSuppliers(kind, names, scope, self.s.of_meta(meta))

    def l_block(self, meta, c):
        return self._suppliers("block", meta, c)

    def l_prefer(self, meta, c):
        return self._suppliers("prefer", meta, c)

    def l_suppliers(self, meta, c):
        return self._suppliers("suppliers", meta, c)

    def l_split(self, meta, c):
        prefix, *shares = c
        return ast.LcrSplit(self._leaf(prefix), tuple(shares), self.s.of_meta(meta))

    def lcr(self, meta, c):
        name, *items = c
        return ast.LcrDecl(self._ident(name), tuple(items), self.s.of_meta(meta))
    # -- invoice layouts (partners' CSV invoices)
    def invoice_field(self, meta, c):
        return self._ident(c[0])

    def il_column(self, meta, c):
        return ("column", c[0], self._str(c[1]))

    def il_constant(self, meta, c):
        return ("constant", c[0], self._leaf(c[1]))

    def il_service(self, meta, c):
        return ("service", self._str(c[0]), self._ident(c[1]))

    def il_date_format(self, meta, c):
        return self._setting("date_format", meta, c)

    def il_decimal(self, meta, c):
        return self._setting("decimal", meta, c)

    def il_delimiter(self, meta, c):
        return self._setting("delimiter", meta, c)

    def il_encoding(self, meta, c):
        return self._setting("encoding", meta, c)

    def invoice_layout(self, meta, children):
        name, *items = children
        pairs = [i for i in items if isinstance(i, tuple)]
        return ast.InvoiceLayoutDecl(
            self._ident(name),
            tuple((i[1], i[2]) for i in pairs if i[0] == "column"),
            tuple((i[1], i[2]) for i in pairs if i[0] == "constant"),
            tuple((i[1], i[2]) for i in pairs if i[0] == "service"),
            tuple(i for i in items if isinstance(i, ast.Setting)),
            self.s.of_meta(meta))

    # -- agreements
    def version(self, meta, children):
        return self._ident(children[0])

    def partner_named(self, meta, children):
        return self._ident(children[0])

    def partner_any(self, meta, children):
        return None

    def a_currency(self, meta, c):
        return self._setting("currency", meta, c)

    def a_timezone(self, meta, c):
        return self._setting("timezone", meta, c)

    def a_fx(self, meta, c):
        return self._setting("fx", meta, c)

    def a_description(self, meta, c):
        return self._setting("description", meta, c)

    def a_calendar(self, meta, c):
        return self._setting("calendar", meta, c)

    def apply_template(self, meta, c):
        args = c[1][1] if len(c) > 1 else ()
        return ("apply", self._ident(c[0]), ast.ApplyNode(self._ident(c[0]), args, self.s.of_meta(meta), len(c) > 1))

    def netting(self, meta, c):
        return ("netting", (self._ident(c[0]), self._ident(c[1])))

    def streams(self, meta, children):
        return ("streams", tuple(children))

    def stream(self, meta, children):
        key, *sels = children
        return ast.StreamNode(ast.Ident(str(key)[:-1], self.s.of_token(key)), tuple(sels), self.s.of_meta(meta))

    def select_words(self, meta, children):
        return ast.Selector(tuple(self._ident(c) for c in children), None, self.s.of_meta(meta))

    def select_charge(self, meta, children):
        return ast.Selector((), self._str(children[0]), self.s.of_meta(meta))

    def reconcile(self, meta, children):
        return ast.ReconcileNode(tuple(children), self.s.of_meta(meta))

    def rc_tolerance(self, meta, children):
        return ast.ReconcileItem("tolerance", tuple(children), self.s.of_meta(meta))

    def rc_start(self, meta, children):
        return ast.ReconcileItem("start", tuple(children), self.s.of_meta(meta))

    def rc_duration(self, meta, children):
        return ast.ReconcileItem("duration", tuple(children), self.s.of_meta(meta))

    def agreement(self, meta, children):
        name, version, partner, period, *items = children
        start, end = period
        settings, services, charges, streams, netting, applies, reconcile = [], [], [], [], [], [], []
        apply_nodes = []
        rounding = amends = None
        for i in items:
            if isinstance(i, tuple) and i[0] == "amends":
                amends = i[1]
            elif isinstance(i, ast.Setting):
                settings.append(i)
            elif isinstance(i, ast.RoundingNode):
                rounding = i
            elif isinstance(i, ast.ServiceDecl):
                services.append(i)
            elif isinstance(i, ast.ChargeNode):
                charges.append(i)
            elif isinstance(i, tuple) and i[0] == "streams":
                streams.extend(i[1])
            elif isinstance(i, tuple) and i[0] == "netting":
                netting.append(i[1])
            elif isinstance(i, tuple) and i[0] == "apply":
                applies.append(i[1])
                apply_nodes.append(i[2])
            elif isinstance(i, ast.ReconcileNode):
                reconcile.append(i)
        return ast.AgreementDecl(self._str(name), version, partner, start, end, tuple(settings), rounding,
                                 tuple(services), tuple(charges), tuple(streams), tuple(netting),
                                 tuple(applies), self.s.of_meta(meta), amends, tuple(reconcile), tuple(apply_nodes))

    def amends(self, meta, children):
        return ("amends", self._ident(children[0]))

    def agreement_end(self, meta, children):
        name, version, partner, ends, day = children
        return ast.AgreementEndDecl(self._str(name), version, partner, self._ident(ends),
                                    ast.DateLit(str(day), self.s.of_token(day)), self.s.of_meta(meta))

    # -- services
    def flat_price(self, meta, children):
        money, unit = children
        return ("flat_price", ast.MoneyPer(money, self._ident(unit), self.s.of_meta(meta)))

    def field_price(self, meta, c):
        """``price from field NAME in EUR [cents]``: each record brings its own price."""
        return ast.Setting("field_price", tuple(self._ident(t) for t in c), self.s.of_meta(meta))

    def price_currency(self, meta, c):
        return ("currency", self._ident(c[0]))

    def price_unit(self, meta, c):
        return ("unit", self._ident(c[0]))

    def deck(self, meta, children):
        path, *rest = children
        cols = rest[0] if rest else ()
        return ("deck", self._str(path), cols)

    def deck_columns(self, meta, children):
        return tuple(children)

    def deck_column(self, meta, children):
        if len(children) == 3:
            return ast.DeckColumn(self._ident(children[0]), self._ident(children[1]), self._str(children[2]),
                                  self.s.of_meta(meta))
        return ast.DeckColumn(self._ident(children[0]), None, self._str(children[1]), self.s.of_meta(meta))

    def deck_delimiter(self, meta, children):
        return ("delimiter", self._str(children[0]))

    def inline_rates(self, meta, children):
        tok = children[0]
        rows, _comments, diags = read_rows(str(tok), self.s.path, tok.line, tok.column)
        if diags:
            raise _Error(diags[0])
        return ("rows", tuple(rows))

    def destination_price(self, meta, children):
        currency = unit = deck = delimiter = None
        cols, rows = (), ()
        for c in children:
            if c[0] == "currency":
                currency = c[1]
            elif c[0] == "unit":
                unit = c[1]
            elif c[0] == "deck":
                deck = c[1]
                for col in c[2]:
                    if isinstance(col, tuple):
                        delimiter = col[1]
                cols = tuple(col for col in c[2] if isinstance(col, ast.DeckColumn))
            elif c[0] == "rows":
                rows = c[1]
        return ("destination_price", ast.DestinationPrice(currency, unit, deck, cols, delimiter, rows,
                                                          self.s.of_meta(meta)))

    def s_calendar(self, meta, c):
        return ("calendar", self._ident(c[0]))

    def s_bands(self, meta, children):
        tz, *items = children
        return ("bands", self._calendar(None, tz, items, meta))

    def s_increments(self, meta, c):
        return ast.Setting("increments", (self._num(c[0]), self._num(c[1])), self.s.of_meta(meta))

    def s_minimum(self, meta, c):
        return ast.Setting("minimum", (c[0],), self.s.of_meta(meta))

    def s_connect_fee(self, meta, c):
        return ast.Setting("connect_fee", (c[0],), self.s.of_meta(meta))

    def slot_first(self, meta, c):
        q, money, unit, *inc = c
        return ast.SlotNode(q, money, self._ident(unit), self.s.of_meta(meta), inc[0] if inc else None)

    def slot_then(self, meta, c):
        money, unit, *inc = c
        return ast.SlotNode(None, money, self._ident(unit), self.s.of_meta(meta), inc[0] if inc else None)

    def slot_increments(self, meta, c):
        return ast.Setting("increments", (self._num(c[0]), self._num(c[1])), self.s.of_meta(meta))

    def s_slots(self, meta, children):
        return ("slots", tuple(children))

    def s_slot_set(self, meta, children):
        name, *slots = children
        return ("slot_set", ast.SlotSetNode(self._ident(name), tuple(slots), self.s.of_meta(meta)))

    def s_split(self, meta, c):
        return ast.Setting("split", (), self.s.of_meta(meta))

    def s_zero_duration(self, meta, c):
        return ast.Setting("zero_duration", (self._ident(c[0]),), self.s.of_meta(meta))

    def s_volume_rounding(self, meta, c):
        return ast.Setting("volume_rounding", (c[0],), self.s.of_meta(meta))

    def s_numbers(self, meta, c):
        return ast.Setting("numbers", (self._ident(c[0]),), self.s.of_meta(meta))

    def s_refile(self, meta, c):
        return ast.Setting("refile", (self._ident(c[0]), c[1]), self.s.of_meta(meta))

    def s_refile_policy(self, meta, c):
        # refile origin ZONE reject|flag (the word is checked: E426)
        return ast.Setting("refile", (self._ident(c[0]), self._ident(c[1])), self.s.of_meta(meta))

    def s_volume_minimum(self, meta, c):
        return ast.Setting("volume_minimum", (c[0],), self.s.of_meta(meta))

    def s_fallback(self, meta, c):
        src = c[0]
        deck = cols = delimiter = None
        rows = ()
        if src[0] == "deck":
            deck = src[1]
            delimiter = next((col[1] for col in src[2] if isinstance(col, tuple)), None)
            cols = tuple(col for col in src[2] if isinstance(col, ast.DeckColumn))
        else:
            rows = src[1]
        return ("fallback", ast.DestinationPrice(None, None, deck, cols or (), delimiter, rows, self.s.of_meta(meta)))

    def s_band(self, meta, c):
        name, *parts = c
        return ("band_part", ast.BandPartNode(self._ident(name), tuple(parts), self.s.of_meta(meta)))

    def bp_price(self, meta, c):
        return ast.Setting("price", (ast.MoneyPer(c[0], self._ident(c[1]), self.s.of_meta(meta)),),
                           self.s.of_meta(meta))

    def bp_connect_fee(self, meta, c):
        return ast.Setting("connect_fee", (c[0],), self.s.of_meta(meta))

    def bp_volume_minimum(self, meta, c):
        return ast.Setting("volume_minimum", (c[0],), self.s.of_meta(meta))

    def bp_volume_rounding(self, meta, c):
        return ast.Setting("volume_rounding", (c[0],), self.s.of_meta(meta))

    def bp_increments(self, meta, c):
        return ast.Setting("increments", (self._num(c[0]), self._num(c[1])), self.s.of_meta(meta))

    def s_max_cost(self, meta, c):
        if str(c[1]) != "call":  # `at most 5000.00 EUR per month`: a cap on the period's usage charges
            return self.a_max_cost(meta, c)
        # options (`, prorate daily`) are a period cap's: the checker says so (the setting keeps them)
        return ast.Setting("max_cost", (c[0], self._ident(c[1]), *c[2:]), self.s.of_meta(meta))

    def a_max_cost(self, meta, c):
        """``at most MONEY per PERIOD [, prorate daily]``: a cap on the usage charges of a period
        (charge ``usage_cap``)."""
        params = [self._param("amount", c[0], c[0].span), self._param("period", self._ident(c[1]),
                                                                        self.s.of_token(c[1]))]
        kw = self._kw_span(meta, 2)  # its name: "Cap" (a service's: "Cap outbound voice", see service())
        return self._charge("usage_cap", kw, ast.Str("Cap", kw), params, list(c[2:]), meta)

    def a_progressive(self, meta, c):
        """``progressive billing at MONEY, MONEY...``: interim invoices as usage passes each amount."""
        return ast.Setting("progressive", tuple(c), self.s.of_meta(meta))

    def service(self, meta, children):
        direction, service, *items = children
        flat = dest = cal = bands = rounding = None
        settings, slots, charges = [], (), []
        fallback = None
        band_parts, slot_sets = [], []
        for i in items:
            if isinstance(i, ast.Setting):
                settings.append(i)
            elif isinstance(i, ast.RoundingNode):
                rounding = i
            elif isinstance(i, ast.ChargeNode):
                if i.kind == "usage_cap" and i.label is not None and i.label.value == "Cap":
                    i = replace(i, label=ast.Str(f"Cap {direction} {service}", i.label.span))
                charges.append(i)
            elif i[0] == "flat_price":
                flat = i[1]
            elif i[0] == "destination_price":
                dest = i[1]
            elif i[0] == "calendar":
                cal = i[1]
            elif i[0] == "bands":
                bands = i[1]
            elif i[0] == "slots":
                slots = i[1]
            elif i[0] == "fallback":
                fallback = i[1]
            elif i[0] == "band_part":
                band_parts.append(i[1])
            elif i[0] == "slot_set":
                slot_sets.append(i[1])
        return ast.ServiceDecl(self._ident(direction), self._ident(service), flat, dest, cal, bands,
                               tuple(settings), slots, rounding, tuple(charges), self.s.of_meta(meta), fallback,
                               tuple(band_parts), tuple(slot_sets))

    # -- charges
    def _charge(self, kind, kind_tok_span, label, params, options, meta, generic=False):
        return ast.ChargeNode(kind, kind_tok_span, label, tuple(params), tuple(options), self.s.of_meta(meta),
                              generic)

    def _param(self, key, value, span):
        return ast.Param(ast.Ident(key, span), value, span)

    def _kw_span(self, meta, length):
        sp = self.s.of_meta(meta)
        return Span(sp.file, sp.line, sp.col, sp.line, sp.col + length)

    def amount_per(self, meta, c):
        return ast.MoneyPer(c[0], self._ident(c[1]), self.s.of_meta(meta))

    def amount_percent(self, meta, c):
        return c[0]

    def _split_options(self, children):
        opts = [c for c in children if isinstance(c, ast.Setting)]
        rest = [c for c in children if not isinstance(c, ast.Setting)]
        return rest, opts

    def surcharge(self, meta, children):
        rest, opts = self._split_options(children)
        label, amount, *cond = rest
        params = [self._param("amount", amount, amount.span)]
        if cond:
            params.append(self._param("when", cond[0], cond[0].span))
        return self._charge("surcharge", self._kw_span(meta, 9), self._str(label), params, opts, meta)

    def per_inventory(self, meta, c):
        return ("inventory", self._ident(c[0]))

    def flat_basis(self, meta, c):
        return ("flat", None)

    def recurring(self, meta, children):
        rest, opts = self._split_options(children)
        label, money, period, *basis = rest
        params = [self._param("amount", money, money.span), self._param("period", self._ident(period),
                                                                          self.s.of_token(period))]
        if basis and basis[0][0] == "inventory":
            params.append(self._param("per_inventory", basis[0][1], basis[0][1].span))
        return self._charge("recurring", self._kw_span(meta, 9), self._str(label), params, opts, meta)

    def one_time(self, meta, children):
        rest, opts = self._split_options(children)
        label, money, trigger, *basis = rest
        params = [self._param("amount", money, money.span),
                  self._param("on", self._ident(trigger), self.s.of_token(trigger))]
        if basis:  # ", per inventory KIND": once per item, on its activation or termination
            params.append(self._param("per_inventory", basis[0][1], basis[0][1].span))
        return self._charge("one_time", self._kw_span(meta, 8), self._str(label), params, opts, meta)

    def event_charge(self, meta, children):
        rest, opts = self._split_options(children)
        label, money, event = rest
        params = [self._param("amount", money, money.span),
                  self._param("event", self._ident(event), self.s.of_token(event))]
        return self._charge("event", self._kw_span(meta, 5), self._str(label), params, opts, meta)

    def commitment(self, meta, children):
        rest, opts = self._split_options(children)
        label = self._str(rest.pop(0)) if rest[0].type == "STRING" else None
        n, unit, period = rest
        q = ast.Quantity(self._num(n), self._ident(unit), _join(self.s.of_token(n), self.s.of_token(unit)))
        params = [self._param("amount", q, q.span),
                  self._param("period", self._ident(period), self.s.of_token(period))]
        return self._charge("commitment", self._kw_span(meta, 6), label, params, opts, meta)

    def _tiers(self, kind, kwlen, meta, children):
        rest, opts = self._split_options(children)
        label = self._str(rest.pop(0)) if isinstance(rest[0], Token) and rest[0].type == "STRING" else None
        mode, measure, period, *tiers = rest
        params = [
            self._param("mode", self._ident(mode), self.s.of_token(mode)),
            self._param("on", self._ident(measure), self.s.of_token(measure)),
            self._param("period", self._ident(period), self.s.of_token(period)),
            self._param("tiers", tuple(tiers), self.s.of_meta(meta)),
        ]
        return self._charge(kind, self._kw_span(meta, kwlen), label, params, opts, meta)

    def tiered_price(self, meta, children):
        return self._tiers("tiered_price", 6, meta, children)

    def volume_discount(self, meta, children):
        return self._tiers("volume_discount", 15, meta, children)

    def tier(self, meta, children):
        start, value = children
        plus = None
        if len(value) == 3:  # a price per unit plus a flat fee
            value, flat, plus = value
        else:
            value, flat = value
        return ast.TierNode(self._num(start), value, flat, self.s.of_meta(meta), plus)

    def tier_up_to(self, meta, children):
        return replace(self.tier(meta, children), bound="up_to")

    def tier_above(self, meta, children):
        return replace(self.tier(meta, children), bound="above")

    def tier_price_flat(self, meta, c):
        (price, _flat) = self.tier_price(meta, c[:-1])
        return (price, False, c[-1])

    def tier_price(self, meta, c):
        if len(c) == 3:  # a package price: "10.00 EUR per 1_000 messages" reads in the plural
            money, count, unit = c
            ident = self._ident(unit)
            if ident.text.endswith("s") and ident.text[:-1] in PRICE_UNITS:
                ident = ast.Ident(ident.text[:-1], ident.span)
            return (ast.MoneyPer(money, ident, self.s.of_meta(meta), self._num(count)), False)
        money, unit = c
        return (ast.MoneyPer(money, self._ident(unit), self.s.of_meta(meta)), False)

    def tier_flat(self, meta, c):
        return (c[0], True)

    def tier_percent(self, meta, c):
        return (c[0], False)

    def tier_percent_flat(self, meta, c):
        return (c[0], False, c[1])

    def percentage_charge(self, meta, children):
        rest, opts = self._split_options(children)
        label, rate, event, *body = rest
        params = [self._param("rate", rate, rate.span),
                  self._param("event", self._ident(event), self.s.of_token(event))]
        for key, value, unit in body[0] if body else ():
            params.append(self._param(key, (value, unit) if unit is not None else value,
                                      getattr(value, "span", None) or self.s.of_meta(meta)))
        return self._charge("percentage", self._kw_span(meta, 10), self._str(label), params, opts, meta)

    def pct_body(self, meta, c):
        return list(c)

    def pct_fixed(self, meta, c):
        return ("fixed", c[0], self._ident(c[1]))

    def pct_minimum(self, meta, c):
        return ("minimum", c[0], self._ident(c[1]))

    def pct_maximum(self, meta, c):
        return ("maximum", c[0], self._ident(c[1]))

    def pct_free(self, meta, c):
        return ("free", tuple(c), None)

    def share_mode(self, meta, c):
        return ("mode", "tiered")

    def share_scope(self, meta, c):
        return ("scope", tuple(c))

    def share_parties(self, meta, c):
        return ("parties", tuple(c))

    def share_tiers(self, meta, c):
        return ("tiers", tuple(c))

    def share_party(self, meta, c):
        key, value = c
        return ast.SharePartyNode(ast.Ident(str(key)[:-1], self.s.of_token(key)), value, self.s.of_meta(meta))

    def share_percent(self, meta, c):
        return c[0]

    def share_fixed(self, meta, c):
        unit = self._ident(c[1]) if len(c) > 1 else None
        return ast.MoneyPer(c[0], unit, self.s.of_meta(meta))

    def share_remainder(self, meta, c):
        return "remainder"

    def share_tier(self, meta, c):
        start, *parties = c
        return ast.ShareTierNode(start, tuple(parties), self.s.of_meta(meta))

    def revenue_share(self, meta, children):
        rest, opts = self._split_options(children)
        label = None
        if isinstance(rest[0], Token) and rest[0].type == "STRING":
            label = self._str(rest.pop(0))
        mode = "split"
        scope = ()
        params = []
        for r in rest:
            if isinstance(r, Token):
                params.append(self._param("basis", self._ident(r), self.s.of_token(r)))
            elif r[0] == "mode":
                mode = "tiered"
            elif r[0] == "scope":
                scope = r[1]
            elif r[0] == "parties":
                params.append(self._param("parties", r[1], self.s.of_meta(meta)))
            elif r[0] == "tiers":
                params.append(self._param("tiers", r[1], self.s.of_meta(meta)))
        params.append(self._param("mode", mode, self.s.of_meta(meta)))
        params.append(self._param("scope", scope, self.s.of_meta(meta)))
        return self._charge("revenue_share", self._kw_span(meta, 13), label, params, opts, meta)

    def param(self, meta, c):
        key, value = c
        return ast.Param(ast.Ident(str(key)[:-1], self.s.of_token(key)), value, self.s.of_meta(meta))

    def generic_charge(self, meta, children):
        rest, opts = self._split_options(children)
        kind, label, *params = rest
        return ast.ChargeNode(str(kind), self.s.of_token(kind), self._str(label), tuple(params), tuple(opts),
                              self.s.of_meta(meta), True)

    def _opt(self, key, meta, c):
        return ast.Setting(key, tuple(self._leaf(x) for x in c), self.s.of_meta(meta))

    def opt_prorate(self, meta, c):
        return self._opt("prorate", meta, c)

    def opt_timing(self, meta, c):
        return self._opt("in", meta, c)

    def opt_shortfall(self, meta, c):
        return self._opt("shortfall", meta, c)

    def opt_counts(self, meta, c):
        return self._opt("counts", meta, c)

    def opt_stream(self, meta, c):
        return self._opt("stream", meta, c)

    def opt_capacity(self, meta, c):
        """``, capacity "NAME"``: volume tiers sharing NAME price the period at the highest tier reached."""
        return ast.Setting("capacity", (self._str(c[0]),), self.s.of_meta(meta))

    def opt_day_count(self, meta, c):
        return self._opt("day_count", meta, c)

    def opt_anchor(self, meta, c):
        return self._opt("anchor", meta, c)

    def opt_scope(self, meta, c):
        return self._opt("of", meta, c)

    def opt_tax(self, meta, c):
        return self._opt("tax", meta, c)

    def opt_when(self, meta, c):
        return ast.Setting("when", (c[0],), self.s.of_meta(meta))

    # -- values
    def v_number(self, meta, c):
        return self._num(c[0])

    def v_money(self, meta, c):
        unit = self._ident(c[1]) if len(c) > 1 else None
        return ast.MoneyPer(c[0], unit, self.s.of_meta(meta))

    def v_string(self, meta, c):
        return self._str(c[0])

    def v_name(self, meta, c):
        return self._ident(c[0])

    def v_date(self, meta, c):
        return ast.DateLit(str(c[0]), self.s.of_token(c[0]))

    def v_list(self, meta, c):
        return ast.ListValue(tuple(c), self.s.of_meta(meta))

    def v_map(self, meta, c):
        return ast.MapValue(tuple(c), self.s.of_meta(meta))

    # -- expressions
    def or_expr(self, meta, c):
        return ast.BoolOp("or", tuple(c), self.s.of_meta(meta))

    def and_expr(self, meta, c):
        return ast.BoolOp("and", tuple(c), self.s.of_meta(meta))

    def not_(self, meta, c):
        return ast.Not(c[0], self.s.of_meta(meta))

    def compare(self, meta, c):
        left, op, right = c
        return ast.Compare(str(op), left, right, self.s.of_meta(meta))

    def member(self, meta, c):
        left, *values = c
        return ast.Member(left, tuple(values), self.s.of_meta(meta))

    def between(self, meta, c):
        left, low, high = c
        return ast.Between(left, low, high, self.s.of_meta(meta))

    def call(self, meta, c):
        name, *args = c
        return ast.Call(self._ident(name), tuple(a for a in args if a is not None), self.s.of_meta(meta))

    def field(self, meta, c):
        return ast.FieldRef(tuple(str(t) for t in c), self.s.of_meta(meta))

    def lit_number(self, meta, c):
        return ast.Literal(self._num(c[0]).value, self.s.of_meta(meta))

    def lit_string(self, meta, c):
        return ast.Literal(_unquote(str(c[0])), self.s.of_meta(meta))

    def lit_true(self, meta, c):
        return ast.Literal(True, self.s.of_meta(meta))

    def lit_false(self, meta, c):
        return ast.Literal(False, self.s.of_meta(meta))

    # -- examples
    def ex_record(self, meta, c):
        direction, service, number, *opts = c
        return ("record", self._ident(direction), self._ident(service), number, tuple(opts))

    def ex_agreement(self, meta, c):
        return ast.Setting("agreement", (self._str(c[0]),), self.s.of_meta(meta))

    def ex_partner(self, meta, c):
        return ast.Setting("partner", (self._ident(c[0]),), self.s.of_meta(meta))

    def ex_field(self, meta, c):
        key, value = c
        return ast.Param(ast.Ident(str(key)[:-1], self.s.of_token(key)), value, self.s.of_meta(meta))

    def ex_expect(self, meta, c):
        return ("expect", tuple(c))

    def ex_at(self, meta, c):
        d, t, *tz = c
        vals = (ast.DateLit(str(d), self.s.of_token(d)), ast.TimeLit(str(t), self.s.of_token(t)))
        return ast.Setting("at", vals + tuple(tz), self.s.of_meta(meta))

    def ex_for(self, meta, c):
        return ast.Setting("for", (c[0],), self.s.of_meta(meta))

    def ex_from(self, meta, c):
        return ast.Setting("from", (c[0],), self.s.of_meta(meta))

    def ex_messages(self, meta, c):
        return ast.Setting("messages", (self._num(c[0]),), self.s.of_meta(meta))

    def ex_volume(self, meta, c):
        return ast.Setting("volume", (c[0],), self.s.of_meta(meta))

    def _expect(self, key, meta, c):
        return ast.Setting(key, tuple(self._leaf(x) for x in c), self.s.of_meta(meta))

    def expect_billed(self, meta, c):
        return self._expect("billed", meta, c)

    def expect_band(self, meta, c):
        return self._expect("band", meta, c)

    def expect_amount(self, meta, c):
        return self._expect("amount", meta, c)

    def expect_rate(self, meta, c):
        return self._expect("rate", meta, c)

    def expect_destination(self, meta, c):
        return self._expect("destination", meta, c)

    def expect_prefix(self, meta, c):
        return self._expect("prefix", meta, c)

    def expect_rejected(self, meta, c):
        return self._expect("rejected", meta, c)

    def expect_version(self, meta, c):
        return self._expect("version", meta, c)

    def example(self, meta, children):
        name, *items = children
        direction = service = number = None
        options, fields, expects = [], [], []
        for i in items:
            if isinstance(i, ast.Param):
                fields.append(i)
            elif isinstance(i, ast.Setting):
                options.append(i)
            elif i[0] == "record":
                _, direction, service, number, opts = i
                options.extend(opts)
            elif i[0] == "expect":
                expects.extend(i[1])
        return ast.ExampleDecl(self._str(name), direction, service, number, tuple(options), tuple(fields),
                               tuple(expects), self.s.of_meta(meta))

    # -- cycle examples
    def period_month(self, meta, c):
        return ast.Setting("period", (ast.DateLit(str(c[0]), self.s.of_token(c[0])),), self.s.of_meta(meta))

    def period_days(self, meta, c):
        return ast.Setting("period", tuple(ast.DateLit(str(t), self.s.of_token(t)) for t in c), self.s.of_meta(meta))

    def cx_period(self, meta, c):
        return ast.Setting("period", c[0].values, self.s.of_meta(meta))

    def tr_amount(self, meta, c):
        return ast.Setting("for", (c[0],), self.s.of_meta(meta))

    def tr_records(self, meta, c):
        return ast.Setting("in", (c[0],), self.s.of_meta(meta))

    def tr_surcharges(self, meta, c):
        return ast.Setting("surcharges", (c[0],), self.s.of_meta(meta))

    def tr_version(self, meta, c):
        return ast.Setting("version", (self._ident(c[0]),), self.s.of_meta(meta))

    def tr_day(self, meta, c):
        return ast.Setting("on", (ast.DateLit(str(c[0]), self.s.of_token(c[0])),), self.s.of_meta(meta))

    def cx_traffic(self, meta, c):
        direction, service, q, *opts = c
        return ast.CycleTrafficNode(self._ident(direction), self._ident(service), q, tuple(opts),
                                    self.s.of_meta(meta))

    def cx_item(self, meta, c):
        kind, item_id, (start, end), *rest = c
        qty = self._num(rest[0]) if rest else None
        return ast.CycleItemNode(self._ident(kind), self._str(item_id), start, end, qty, self.s.of_meta(meta))

    def cx_events(self, meta, c):
        event, n, *rest = c
        worth = rest.pop() if rest and isinstance(rest[-1], ast.Money) else None
        d = ast.DateLit(str(rest[0]), self.s.of_token(rest[0])) if rest else None
        return ast.CycleEventsNode(self._ident(event), self._num(n), d, self.s.of_meta(meta), worth)

    def cx_refund(self, meta, c):
        direction, service, money = c
        return ast.CycleRefundNode(self._ident(direction), self._ident(service), money, self.s.of_meta(meta))

    def signed_money(self, meta, c):
        *sign, n, cur = c
        num = self._num(n)
        if sign:
            num = ast.Num(-num.value, "-" + num.text, _join(self.s.of_token(sign[0]), num.span))
        return ast.Money(num, self._ident(cur), self.s.of_meta(meta))

    def line_subject(self, meta, c):
        return self._leaf(c[0])

    def expect_line(self, meta, c):
        label, *rest = c
        subject = rest[0] if len(rest) == 2 else None
        return ast.CycleExpectation("line", self._str(label), subject, rest[-1], self.s.of_meta(meta))

    def expect_no_line(self, meta, c):
        return ast.CycleExpectation("no_line", self._str(c[0]), None, None, self.s.of_meta(meta))

    def expect_total(self, meta, c):
        return ast.CycleExpectation("total", None, None, c[0], self.s.of_meta(meta))

    def expect_interim(self, meta, c):
        day = ast.DateLit(str(c[0]), self.s.of_token(c[0]))
        return ast.CycleExpectation("interim", None, None, c[1], self.s.of_meta(meta), day)

    def expect_no_interim(self, meta, c):
        day = ast.DateLit(str(c[0]), self.s.of_token(c[0]))
        return ast.CycleExpectation("no_interim", None, None, None, self.s.of_meta(meta), day)

    def expect_invoice(self, meta, c):
        return ast.CycleExpectation("invoice", None, None, c[0], self.s.of_meta(meta))

    def cx_expect(self, meta, c):
        return ("expect", tuple(c))

    def cycle_example(self, meta, children):
        name, *items = children
        settings, expects = [], []
        groups: dict[type, list] = {ast.CycleTrafficNode: [], ast.CycleItemNode: [], ast.CycleEventsNode: [],
                                    ast.CycleRefundNode: []}
        for i in items:
            if isinstance(i, ast.Setting):
                settings.append(i)
            elif isinstance(i, tuple):
                expects.extend(i[1])
            else:
                groups[type(i)].append(i)
        return ast.CycleExampleDecl(self._str(name), tuple(settings), tuple(groups[ast.CycleTrafficNode]),
                                    tuple(groups[ast.CycleItemNode]), tuple(groups[ast.CycleEventsNode]),
                                    tuple(groups[ast.CycleRefundNode]), tuple(expects), self.s.of_meta(meta))


# ---------------------------------------------------------------- entry points


def decode(data: bytes, path: str) -> tuple[str | None, list[Diagnostic]]:
    """Bytes to text, or a located diagnostic for binary or non-UTF-8 input."""
    if b"\x00" in data[:65536]:
        pos = data.index(b"\x00")
        line = data.count(b"\n", 0, pos) + 1
        col = pos - (data.rfind(b"\n", 0, pos) + 1) + 1
        return None, [Diagnostic("E001", "this is not a text file (it contains NUL bytes)",
                                 Span(path, line, col, line, col + 1),
                                 "rule files are UTF-8 text; check that the right file was given")]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        bad = data[e.start : e.start + 1].hex()
        return None, [Diagnostic("E002", f"the file is not valid UTF-8 (byte 0x{bad})",
                                 Span(path, line, col, line, col + 1),
                                 "save the file as UTF-8 (most editors have an 'encoding' option)")]


_TOP_LEVEL = frozenset(("agreement", "partner", "calendar", "fx", "template", "records", "invoice", "example",
                        "use", "lcr"))


def _syntax_diag(e: UnexpectedInput, text: str, path: str) -> Diagnostic:
    line, col = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        lines = text.splitlines() or [""]
        line = len(lines)
        col = len(lines[-1]) + 1
        expected = _describe_expected(e.expected)
        opened = text.count("{") - text.count("}")
        help_ = (f"{opened} '{{' not closed: add the missing '}}'" if opened > 0
                 else "the file ends in the middle of a statement")
        return Diagnostic("E010", f"unexpected end of file; expected {expected}", Span(path, line, col, line, col),
                          help_)
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        help_ = None
        if ch == "'":
            help_ = 'texts are written in double quotes: "like this"'
        elif ch in "+-" and e.pos_in_stream + 1 < len(text) and text[e.pos_in_stream + 1].isdigit():
            help_ = "numbers are written without a sign; write credits as their own charge"
        elif ch == ",":
            help_ = "use '.' for decimals and '_' to group digits (1_000.50)"
        elif ch == ";":
            help_ = "statements need no ';': remove it"
        elif ch == "€" or ch == "$" or ch == "£":
            help_ = "write currencies as ISO codes after the amount: 0.0100 EUR"
        return Diagnostic("E011", f"unexpected character {ch!r}", Span(path, line, col, line, col + 1),
                          help_ or f"expected {_describe_expected(e.allowed or [])}")
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    shown = str(tok)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    expected = _describe_expected(e.expected)
    end = tok.end_column if tok.end_line == tok.line and tok.end_column else col + max(1, len(str(tok)))
    help_ = f"expected {expected}"
    pos = tok.start_pos or 0
    if (tok.type == "COMMA" and 0 < pos < len(text) - 1 and text[pos - 1].isdigit()
            and text[pos + 1].isdigit()):
        help_ = "use '.' for decimals and '_' to group digits (1_000.50)"
    elif str(tok) in _TOP_LEVEL and "RBRACE" in e.expected:
        help_ = f"the block before this line is not closed: add '}}' before '{tok}'"
    elif tok.type == "LBRACE" and "RATES_BLOCK" in e.expected:
        return Diagnostic("E010", "this rate table is not closed", Span(path, line, col, line, col + 1),
                          "add the '}' that ends the table (after its last row)")
    elif tok.type == "NAME" and {"LBRACE"} & set(e.expected):
        help_ = f"expected {expected}; is a '{{' missing?"
    elif tok.type == "RBRACE":
        help_ = f"this block ends too early: expected {expected}"
    what = terminal_text(tok.type)
    if what == f"'{shown}'":
        what = f"'{shown}'"
    elif tok.type == "STRING":
        what = f"text {shown}"
    else:
        what = f"{'word' if tok.type == 'NAME' else what.removeprefix('a ').removeprefix('an ')} '{shown}'"
    return Diagnostic("E012", f"unexpected {what}",
                      Span(path, line, col, tok.end_line or line, end), help_)


def parse_text(text: str, path: str = "<text>") -> tuple[ast.File | None, list[Diagnostic]]:
    """Parse one file's text; returns (File, []) or (None, [the syntax error])."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        return None, [_syntax_diag(e, text, path)]
    except RecursionError:
        return None, [Diagnostic("E013", "the file is nested too deeply to read", Span(path, 1, 1, 1, 2))]
    too_deep = _too_deep(tree, path)
    if too_deep is not None:
        return None, [too_deep]
    try:
        return _ToAst(path).transform(tree), []
    except VisitError as e:
        if isinstance(e.orig_exc, _Error):
            return None, [e.orig_exc.diag]
        raise


# Deeper than this, the tree is refused before it is read: every later stage (the transformer,
# the checker, the compiler, the condition evaluator) walks it recursively. Real conditions nest
# a few levels; the file's own structure takes about ten.
MAX_NESTING = 100


def _too_deep(tree: Tree, path: str) -> Diagnostic | None:
    """E013 at the first place where ``tree`` nests deeper than MAX_NESTING, or None."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            span = _SpanMaker(path).of_meta(node.meta)
            if span.line < 1:
                span = Span(path, 1, 1, 1, 2)
            return Diagnostic("E013", f"this is nested more than {MAX_NESTING} levels deep", span,
                              "split the condition into simpler ones, or remove the extra parentheses and 'not's")
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
    return None


def parse_tree(text: str) -> Tree:
    """The concrete tree with every token kept (for the formatter). Raises UnexpectedInput."""
    return _lark(keep_all_tokens=True).parse(text)


def parse_file(path: Path | str, display: str | None = None) -> tuple[ast.File | None, str | None, list[Diagnostic]]:
    """Read and parse a file: (File or None, text or None, diagnostics)."""
    p = Path(path)
    name = display or str(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        return None, None, [Diagnostic("E003", f"cannot read the file: {e.strerror or e}", Span(name, 0, 0, 0, 0))]
    text, diags = decode(data, name)
    if text is None:
        return None, None, diags
    f, diags = parse_text(text, name)
    return f, text, diags
