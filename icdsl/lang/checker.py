"""The semantic checker: everything a contract author can get wrong that the grammar cannot see.

It reports all problems at once, in source order, each with a stable code, the span of the
offending words and a help line (often "did you mean ...?"). It also resolves names (partners,
calendars, FX sources, rounding presets, templates), reads rate decks and keeps what it found
for the compiler, which only runs on a program without errors.

Units are checked as units: money carries an ISO 4217 currency, durations are time units,
volumes are byte units, percentages lie between 0 and 100, counts are whole numbers.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from icdsl import plugins
from icdsl.lang import ast
from icdsl.lang.decks import Deck, RateColumns, read_deck
from icdsl.lang.diagnostics import Diagnostic, did_you_mean, suggest
from icdsl.lang.lcr import check_policy
from icdsl.lang.loader import Program, display_path, is_file, path_help, resolve_project_path
from icdsl.lang.origins import (
    REFILE_FLAG,
    NumbersInfo,
    ZoneInfo,
    check_number_fields,
    check_numbers,
    check_origin_keys,
    check_zones,
)
from icdsl.lang.origins import cell_text as _cell_text
from icdsl.lang.templates import check_template, instantiate, unbound
from icdsl.lang.values import (
    CYCLE_FIELDS,
    DATE_HELP,
    FIRST_DAY,
    FORMAT_HELP,
    INVOICE_FIELDS,
    LAST_DAY,
    MAX_COUNT,
    MAX_DUE_DAYS,
    NUMBER_FIX,
    PARTNER_FIELDS,
    PRICE_UNITS,
    RECORD_DERIVED,
    TIME_UNITS,
    VOCAB,
    VOLUME_UNITS,
    WEEKDAYS,
    currencies,
    date_problem,
    holiday_countries,
    parse_date,
    parse_time,
    short_text,
    timestamp_format_problem,
    timezones,
    valid_timezone,
)
from icdsl.layouts import MAX_BYTES as MAX_LAYOUT_BYTES
from icdsl.layouts import LayoutError, check_locale
from icdsl.layouts import parse as parse_layout
from icdsl.money import Rounding
from icdsl.parties import check_field, compact, vat_country
from icdsl.spans import Span

# the streams the cycle puts documents on without a declaration (icdsl.cycle.invoicing, a layer above)
_DEFAULT_STREAM = "main"  # an agreement that declares no stream
_NETTING = "netting"  # the settlement statement

DEFAULT_ROUNDING = Rounding(6, "half_up")
MAX_PRECISION = 12

#: the wording of each built-in cycle charge, as the contract says it (the generic
#: 'charge KIND "label" { ... }' form is for plugins' charge types)
CONTRACT_WORDING = {
    "recurring": 'recurring "Port rental" 150.00 EUR monthly flat',
    "one_time": 'one_time "Setup" 500.00 EUR on activation',
    "event": 'event "Number porting" 25.00 EUR per porting',
    "commitment": 'commit "Minimum spend" 1_000 EUR per month',
    "usage_cap": "at most 5000.00 EUR per month",
    "tiered_price": 'tiered "Voice tiers" graduated on minutes per cycle { ... }',
    "volume_discount": 'volume discount "Data discount" incremental on volume per cycle { ... }',
    "revenue_share": 'revenue share "Premium SMS" on net of outbound sms { ... }',
    "percentage": 'percentage "Card processing" 2.9% of payment { ... }',
}


@dataclass

class ServiceInfo:
    """What the checker learned about a service block, for the compiler."""

    node: ast.ServiceDecl
    rows: list[ast.RateRowNode] = field(default_factory=list)
    deck: Deck | None = None
    currency: str = ""
    unit: str = "minute"
    fallback: ServiceInfo | None = None  # ``fallback ...``: its node's destination price is the fallback table
    calendar: ast.CalendarDecl | None = None
    rounding: Rounding = DEFAULT_ROUNDING
    numbers: NumbersInfo | None = None  # the number-range table of ``numbers NAME``
    # ``refile origin ZONE reject``: (zone, its prefixes) of a route whose refiled records are rejected
    refile_reject: tuple[str, tuple[str, ...]] | None = None


@dataclass
class AgreementInfo:
    node: ast.AgreementDecl
    file: str
    partner: ast.PartnerDecl | None
    currency: str = ""
    timezone: str = "UTC"
    rounding: Rounding = DEFAULT_ROUNDING
    start: date | None = None
    end: date | None = None
    calendar: ast.CalendarDecl | None = None
    services: dict[tuple[str, str], ServiceInfo] = field(default_factory=dict)
    charges: list[tuple[ast.ChargeNode, tuple[tuple[str, str], ...]]] = field(default_factory=list)
    fx: ast.FxDecl | None = None
    # a later version that amends (ast.AgreementDecl) or ends (ast.AgreementEndDecl) this one,
    # and this version's last day in force then (whatever its written end)
    amended_by: Any = None
    last_day: date | None = None
    # `reconcile { ... }`: (line percent, line amount, start seconds, duration seconds), checked
    tolerances: tuple[Decimal, Decimal, int, int] | None = None

    @property
    def in_force_to(self) -> date | None:
        """The last day in force: the written end, or the day an amendment ends it."""
        return self.last_day if self.amended_by is not None else self.end


@dataclass
class EndingInfo:
    """An ``agreement "NAME" vN with P ends vM on DATE``: the version it ends, once resolved."""

    node: ast.AgreementEndDecl
    file: str
    target: AgreementInfo | None = None


@dataclass
class CycleExampleInfo:
    """What the checker resolved for an ``example cycle``, for the compiler: the partner, the
    agreement (by name), the cycle's local days ``[start, end)`` and its label, and the kind
    (time, count, volume) of each service its traffic names."""

    node: ast.CycleExampleDecl
    file: str
    partner: str = ""
    agreement: str = ""
    start: date | None = None
    end: date | None = None
    label: str = ""
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    currencies: dict[tuple[str, str], str] = field(default_factory=dict)


def _accounts_words(a: ast.AccountsDecl) -> tuple:
    return tuple((w, k.text if k else None, acc.value) for w, k, acc, _s in a.entries)


def _company_words(c: ast.CompanyDecl) -> tuple:
    return (c.code.text, c.name.value, tuple((s.key, tuple(getattr(v, "text", None) for v in s.values))
                                             for s in c.settings),
            tuple((f.key, tuple(v.value if v is not None else None for v in f.values)) for f in c.party))


_PARTY_HELP = {
    "iban": 'write the account as printed by the bank, e.g. iban "FR76 3000 6000 0112 3456 7890 189"',
    "vat": 'write the country prefix then the number, e.g. tax id "FR40303265045" (Greece: EL)',
    "bic": 'e.g. bic "AGRIFRPP" or "AGRIFRPP882"',
    "peppol": 'e.g. peppol "0009:30326504500017"',
    "email": 'e.g. contact "Accounts payable" email "ap@example.com"',
}


@dataclass
class Checked:
    program: Program
    partners: dict[str, ast.PartnerDecl] = field(default_factory=dict)
    calendars: dict[str, ast.CalendarDecl] = field(default_factory=dict)
    fx: dict[str, ast.FxDecl] = field(default_factory=dict)
    presets: dict[str, ast.RoundingPreset] = field(default_factory=dict)
    templates: dict[str, ast.TemplateDecl] = field(default_factory=dict)
    layouts: dict[str, ast.RecordsDecl] = field(default_factory=dict)
    invoice_layouts: dict[str, ast.InvoiceLayoutDecl] = field(default_factory=dict)
    agreements: list[AgreementInfo] = field(default_factory=list)
    endings: list[EndingInfo] = field(default_factory=list)
    examples: list[tuple[str, ast.ExampleDecl]] = field(default_factory=list)
    cycle_examples: list[CycleExampleInfo] = field(default_factory=list)
    charge_types: dict[str, Any] = field(default_factory=dict)
    company: ast.CompanyDecl | None = None
    # the document layouts the parties name (``template``), read by the checker: (file, line, col)
    # of the template's path -> (its name as written, the file's text)
    party_templates: dict[tuple[str, int, int], tuple[str, str]] = field(default_factory=dict)
    accounts: ast.AccountsDecl | None = None
    file_of: dict[int, str] = field(default_factory=dict)
    zones: dict[str, ZoneInfo] = field(default_factory=dict)
    numbers: dict[str, NumbersInfo] = field(default_factory=dict)
    lcr_policies: dict[str, ast.LcrDecl] = field(default_factory=dict)


class Checker:
    def __init__(self, program: Program, charge_types: dict[str, Any] | None = None, pm: Any = None):
        pm = pm if pm is not None else plugins.active_plugin_manager()
        if charge_types is None:
            charge_types = plugins.charge_types(pm)
        self.rounding_modes = tuple(plugins.rounding_modes(pm))
        self.functions = plugins.function_arities(pm)
        self.reject_reasons = plugins.reject_reasons(pm)
        self.program = program
        self.out = Checked(program, charge_types=charge_types)
        self.diags: list[Diagnostic] = []
        self._charge_streams: dict[int, set[str]] = {}  # agreement (id) -> the streams its charges name
        self.agreement: AgreementInfo | None = None  # the agreement being checked (for charge types)
        self._failed_amendments: set[int] = set()  # amending versions already reported as wrong

    # ------------------------------------------------------------------ reporting
    def error(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, help))

    def warning(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, help, "warning"))

    # ------------------------------------------------------------------ value checks (also used by charge types)
    def word(self, ident: ast.Ident | None, vocab: str) -> bool:
        if ident is None:
            return False
        allowed = VOCAB[vocab]
        if ident.text in allowed:
            return True
        self.error("E201", f"unknown {vocab} '{ident.text}'", ident.span, did_you_mean(ident.text, allowed, f"{vocab}s"))
        return False

    def rounding_mode(self, ident: ast.Ident) -> bool:
        """Built-in modes and those added by plugins (icdsl_rounding_modes)."""
        if ident.text in self.rounding_modes:
            return True
        self.error("E201", f"unknown rounding mode '{ident.text}'", ident.span,
                   did_you_mean(ident.text, self.rounding_modes, "rounding modes"))
        return False

    def currency(self, ident: ast.Ident) -> bool:
        if ident.text in currencies():
            return True
        best = suggest(ident.text.upper(), currencies())
        self.error("E202", f"'{ident.text}' is not a currency code", ident.span,
                   f"did you mean '{best}'?" if best else "write an ISO 4217 code such as EUR, USD or GBP")
        return False

    def money(self, m: ast.Money, *, allow_zero: bool = True) -> bool:
        ok = self.currency(m.currency)
        if m.amount.value < 0 or (not allow_zero and m.amount.value == 0):
            self.error("E213", f"the amount {m.amount.text} must be {'positive' if not allow_zero else 'zero or more'}",
                       m.amount.span, "write credits and discounts as their own charge")
            ok = False
        return ok

    def percent(self, p: ast.Percent, *, high: Decimal = Decimal(100)) -> bool:
        if not (Decimal(0) <= p.value.value <= high):
            self.error("E214", f"{p.value.text}% is not a percentage between 0 and {high}", p.span)
            return False
        return True

    def timezone(self, s: ast.Str) -> bool:
        if valid_timezone(s.value):
            return True

        self.error("E203", f"unknown time zone '{s.value}'", s.span,
                   did_you_mean(s.value, timezones()) or "write an IANA zone such as \"Europe/Paris\"")
        return False

    def date(self, d: ast.DateLit | None) -> date | None:
        if d is None:
            return None
        v = parse_date(d.text)
        if v is None:
            code, message, hint = date_problem(d.text)
            self.error(code, message, d.span, hint)
        return v

    def seconds(self, q: ast.Quantity) -> int | None:
        factor = TIME_UNITS.get(q.unit.text)
        if factor is None:
            self.error("E206", f"'{q.unit.text}' is not a unit of time", q.unit.span,
                       did_you_mean(q.unit.text, TIME_UNITS, "units of time"))
            return None
        secs = q.value.value * factor
        if secs != int(secs) or secs < 0:
            self.error("E215", f"{q.value.text} {q.unit.text} is not a whole number of seconds", q.span)
            return None
        return self._countable(int(secs), q, "seconds")

    def _countable(self, n: int, q: ast.Quantity, what: str) -> int | None:
        """``n`` if the engine can count it (its int64 columns, with room for sums), else E227."""
        if n > MAX_COUNT:
            self.error("E227", f"{short_text(q.value.text)} {q.unit.text} is too large: at most {MAX_COUNT:,} {what}",
                       q.span, NUMBER_FIX)
            return None
        return n

    def volume_bytes(self, q: ast.Quantity) -> int | None:
        factor = VOLUME_UNITS.get(q.unit.text)
        if factor is None:
            self.error("E206", f"'{q.unit.text}' is not a unit of data volume", q.unit.span,
                       did_you_mean(q.unit.text, VOLUME_UNITS, "volume units"))
            return None
        b = q.value.value * factor
        if b != int(b) or b < 0:
            self.error("E215", f"{q.value.text} {q.unit.text} is not a whole number of bytes", q.span)
            return None
        return self._countable(int(b), q, "bytes")

    def price_unit(self, ident: ast.Ident | None) -> bool:
        if ident is None:
            return True
        if ident.text in PRICE_UNITS:
            return True
        self.error("E206", f"unknown unit '{ident.text}'", ident.span, did_you_mean(ident.text, PRICE_UNITS, "units"))
        return False

    def currency_matches(self, cur: ast.Ident, target: str, what: str) -> None:
        """A price in another currency than the agreement's needs an FX source with that pair."""
        if not target or cur.text == target or cur.text not in currencies():
            return
        a = self.agreement
        fx = a.fx if a else None
        if fx is None:
            self.error("E211", f"{what} is in {cur.text} but the agreement bills in {target}, and it names no FX source",
                       cur.span, f"add 'fx NAME' to the agreement (an fx block with {target}/{cur.text}), "
                                 f"or price in {target}")
            return
        pairs = {(r.base.text, r.quote.text) for r in fx.rates}
        if (target, cur.text) not in pairs and (cur.text, target) not in pairs:
            self.error("E212", f"the FX source '{fx.name.text}' has no rate between {cur.text} and {target}",
                       cur.span, f"add a line '{target}/{cur.text} RATE from DATE' to fx {fx.name.text}")

    def rounding(self, node: ast.RoundingNode | None, fallback: Rounding) -> Rounding:
        if node is None:
            return fallback
        if node.preset is not None:
            preset = self.out.presets.get(node.preset.text)
            if preset is None:
                self.error("E107", f"unknown rounding preset '{node.preset.text}'", node.preset.span,
                           did_you_mean(node.preset.text, self.out.presets, "rounding presets")
                           or "write 'rounding half_up to 6 decimals' or define 'rounding NAME { ... }'")
                return fallback
            return Rounding(int(preset.precision.value), preset.mode.text, node.span)
        ok = self.rounding_mode(node.mode)
        if node.unit is not None and node.unit.text not in VOCAB["decimals"]:
            self.error("E201", f"expected 'decimals' after the precision, not '{node.unit.text}'", node.unit.span,
                       "write e.g. 'rounding half_up to 6 decimals'")
            ok = False
        prec = node.precision
        if prec.value != int(prec.value) or not (0 <= prec.value <= MAX_PRECISION):
            self.error("E216", f"precision {prec.text} must be a whole number of decimals from 0 to {MAX_PRECISION}",
                       prec.span)
            ok = False
        return Rounding(int(prec.value), node.mode.text, node.span) if ok else fallback

    # ------------------------------------------------------------------ expressions
    def expr(self, e: Any, partner: ast.PartnerDecl | None = None) -> None:
        if isinstance(e, ast.BoolOp):
            for o in e.operands:
                self.expr(o, partner)
        elif isinstance(e, ast.Not):
            self.expr(e.operand, partner)
        elif isinstance(e, ast.Compare):
            self.expr(e.left, partner)
            self.expr(e.right, partner)
            if isinstance(e.left, ast.Literal) and isinstance(e.right, ast.Literal):
                self.warning("W203", "this comparison does not depend on the record", e.span)
        elif isinstance(e, ast.Member):
            self.expr(e.left, partner)
        elif isinstance(e, ast.Between):
            self.expr(e.left, partner)
            if isinstance(e.low.value, Decimal) and isinstance(e.high.value, Decimal) and e.low.value > e.high.value:
                self.error("E317", "the lower bound is above the upper bound", e.span)
        elif isinstance(e, ast.Call):
            arity = self.functions.get(e.name.text)
            if arity is None:
                self.error("E108", f"unknown function '{e.name.text}'", e.name.span,
                           did_you_mean(e.name.text, self.functions, "functions"))
            elif len(e.args) != arity:
                self.error("E217", f"{e.name.text}() takes {arity} argument{'s' * (arity != 1)}, not {len(e.args)}",
                           e.span)
            for a in e.args:
                self.expr(a, partner)
        elif isinstance(e, ast.FieldRef):
            self.field(e, partner)

    def field(self, f: ast.FieldRef, partner: ast.PartnerDecl | None) -> None:
        head = f.path[0]
        if head == "partner" and len(f.path) == 2:
            attrs = set(PARTNER_FIELDS)
            partners = [partner] if partner else list(self.out.partners.values())
            for p in partners:
                attrs.update(a.key.text for a in p.attributes)
            if f.path[1] not in attrs:
                self.error("E106", f"partners have no attribute '{f.path[1]}'", f.span,
                           did_you_mean(f.path[1], attrs, "partner attributes"))
        elif head == "cycle" and len(f.path) == 2:
            if f.path[1] not in CYCLE_FIELDS:
                self.error("E106", f"unknown cycle quantity '{f.path[1]}'", f.span,
                           did_you_mean(f.path[1], CYCLE_FIELDS, "cycle quantities"))
        elif len(f.path) > 1:
            self.error("E106", f"unknown field '{f.dotted}'", f.span,
                       "fields are record columns (route_class), partner.ATTRIBUTE or cycle.QUANTITY")
        else:
            known = VOCAB["record field"] + RECORD_DERIVED
            if head not in known:
                best = suggest(head, known)
                # a typo is close to a field; a word a field only extends (`origin`, `origin_circle`)
                # is a column of its own
                if best and best != head and not best.startswith(head + "_"):
                    self.warning("W201", f"'{head}' is not a standard record field (a column of the traffic file?)",
                                 f.span, f"did you mean '{best}'?")

    # ------------------------------------------------------------------ the run
    def run(self) -> tuple[Checked, list[Diagnostic]]:
        self._collect()
        for p in self.out.partners.values():
            self._partner(p)
            self._party(f"partner {p.code.text}", p.party, p.setting("country"))
            self._party_needs(p)
        if self.out.company is not None:
            self._company(self.out.company)
        if self.out.accounts is not None:
            self._accounts(self.out.accounts)
        for c in self.out.calendars.values():
            self._calendar(c)
        for fx in self.out.fx.values():
            self._fx(fx)
        for preset in self.out.presets.values():
            self.rounding_mode(preset.mode)
            if preset.precision.value != int(preset.precision.value) or not (
                    0 <= preset.precision.value <= MAX_PRECISION):
                self.error("E216", f"precision {preset.precision.text} must be a whole number from 0 to {MAX_PRECISION}",
                           preset.precision.span)
        for layout in self.out.layouts.values():
            self._layout(layout)
        check_zones(self, self.out.zones)
        for numbers in self.out.numbers.values():
            check_numbers(self, numbers)
        for t in self.out.templates.values():
            if t.params:  # its charges are checked at each apply, with the arguments
                check_template(self, t)
                continue
            for c in t.charges:
                self._charge(c, (), None)
        for info in self.out.agreements:
            self._agreement(info)
        self._template_streams()
        self._amendments()
        self._overlaps()
        for il in self.out.invoice_layouts.values():
            self._invoice_layout(il)
        for _file, ex in self.out.examples:
            self._example(ex)
        for cx in self.out.cycle_examples:
            self._cycle_example(cx)
        for policy in self.out.lcr_policies.values():
            check_policy(self, policy)
        # a deck named by two versions is read twice: its problems are reported once
        return self.out, sorted(dict.fromkeys(self.diags), key=Diagnostic.sort_key)

    def _collect(self) -> None:
        seen: dict[tuple[str, str], Span] = {}

        def declare(kind: str, name: str, span: Span) -> bool:
            key = (kind, name)
            if key in seen:
                first = seen[key]
                self.error("E102", f"{kind} '{name}' is declared twice", span,
                           f"the first declaration is at {first}; remove or rename one")
                return False
            seen[key] = span
            return True

        for f in self.program.files:
            for item in f.items:
                if isinstance(item, ast.PartnerDecl):
                    if declare("partner", item.code.text, item.code.span):
                        self.out.partners[item.code.text] = item
                elif isinstance(item, ast.AccountsDecl):
                    if self.out.accounts is None:
                        self.out.accounts = item
                    elif _accounts_words(item) != _accounts_words(self.out.accounts):
                        self.error("E263", "the ledger accounts are declared twice, differently", item.span,
                                   f"the first declaration is at {self.out.accounts.span}: declare them once "
                                   "(or the same in every project)")
                elif isinstance(item, ast.CompanyDecl):
                    # projects billed together may each declare the company: the same words are one
                    # declaration; different ones are a conflict
                    if self.out.company is None:
                        self.out.company = item
                    elif _company_words(item) != _company_words(self.out.company):
                        self.error("E260", "our company is declared twice, differently", item.code.span,
                                   f"the first declaration is at {self.out.company.code.span}: declare it once "
                                   "(or the same in every project)")
                elif isinstance(item, ast.CalendarDecl):
                    if declare("calendar", item.name.text, item.name.span):
                        self.out.calendars[item.name.text] = item
                elif isinstance(item, ast.FxDecl):
                    if declare("fx source", item.name.text, item.name.span):
                        self.out.fx[item.name.text] = item
                elif isinstance(item, ast.RoundingPreset):
                    if declare("rounding preset", item.name.text, item.name.span):
                        self.out.presets[item.name.text] = item
                elif isinstance(item, ast.TemplateDecl):
                    if declare("template", item.name.text, item.name.span):
                        self.out.templates[item.name.text] = item
                elif isinstance(item, ast.RecordsDecl):
                    if declare("records layout", item.name.text, item.name.span):
                        self.out.layouts[item.name.text] = item
                elif isinstance(item, ast.ZoneDecl):
                    if declare("zone", item.name.text, item.name.span):
                        self.out.zones[item.name.text] = ZoneInfo(item)
                elif isinstance(item, ast.NumbersDecl):
                    if declare("number-range table", item.name.text, item.name.span):
                        self.out.numbers[item.name.text] = NumbersInfo(item, f.path)
                elif isinstance(item, ast.InvoiceLayoutDecl):
                    if declare("invoice layout", item.name.text, item.name.span):
                        self.out.invoice_layouts[item.name.text] = item
                elif isinstance(item, ast.AgreementDecl):
                    key = f"{item.name.value} {item.version.text}"
                    if declare("agreement", key, item.version.span):
                        self.out.agreements.append(AgreementInfo(item, f.path, None))
                elif isinstance(item, ast.AgreementEndDecl):
                    key = f"{item.name.value} {item.version.text}"
                    if declare("agreement", key, item.version.span):
                        self.out.endings.append(EndingInfo(item, f.path))
                elif isinstance(item, ast.ExampleDecl):
                    self.out.examples.append((f.path, item))
                elif isinstance(item, ast.CycleExampleDecl):
                    self.out.cycle_examples.append(CycleExampleInfo(item, f.path))
                elif isinstance(item, ast.LcrDecl) and declare("lcr policy", item.name.text, item.name.span):
                    self.out.lcr_policies[item.name.text] = item

    # ------------------------------------------------------------------ partners, calendars, fx, layouts
    def _partner(self, p: ast.PartnerDecl) -> None:
        if not p.code.text.replace("_", "").isalnum():
            self.error("E218", f"partner code '{p.code.text}' must be letters, digits and '_'", p.code.span)
        keys_seen: dict[str, Span] = {}
        for s in p.settings:
            if s.key in keys_seen:
                self.error("E103", f"'{s.key}' is set twice for partner {p.code.text}", s.span,
                           f"the first is at {keys_seen[s.key]}")
            keys_seen[s.key] = s.span
            v = s.values
            if s.key == "kind":
                self.word(v[0], "partner kind")
            elif s.key == "currency":
                self.currency(v[0])
            elif s.key == "timezone":
                self.timezone(v[0])
            elif s.key == "country":
                self._country(v[0])
            elif s.key == "billing":
                self.word(v[0], "billing cycle")
                if len(v) > 1:  # `billing monthly from day 15`: cycles from the 15th to the 14th
                    if v[0].text != "monthly":
                        self.error("E344", f"a {v[0].text} billing cycle has no day of the month to start from",
                                   v[1].span, "write 'billing monthly from day 15', or drop 'from day ...'")
                    elif v[1].value != int(v[1].value) or not 1 <= v[1].value <= 28:
                        self.error("E344", f"a billing cycle starts on a day from 1 to 28, not {v[1].text}",
                                   v[1].span, "every month has that day: a cycle from the 29th, 30th or 31st "
                                   "would not start in February")
            elif s.key == "due":
                n, unit = v
                if unit.text not in VOCAB["days"]:
                    self.error("E206", f"invoice due terms are in days, not '{unit.text}'", unit.span,
                               "write e.g. 'due 30 days'")
                if n.value != int(n.value):
                    self.error("E215", "due terms must be a whole number of days", n.span)
                elif n.value > MAX_DUE_DAYS:  # the due date must be a date: no due terms past year 9999
                    self.error("E227", f"due terms of {short_text(n.text)} days are too long: at most {MAX_DUE_DAYS} "
                                       "days (ten years)", n.span, "write the partner's payment terms, e.g. 'due 30 days'")
            elif s.key == "tax":
                kind = v[0]
                if self.word(kind, "tax treatment"):
                    rate = v[1] if len(v) > 1 else None
                    if kind.text == "vat" and rate is None:
                        self.error("E219", "VAT needs a rate", s.span, "write e.g. 'tax vat 20%'")
                    elif kind.text != "vat" and rate is not None:
                        self.error("E219", f"'{kind.text}' takes no rate", rate.span)
                    elif rate is not None:
                        self.percent(rate)
        if "currency" not in keys_seen:
            self.error("E220", f"partner {p.code.text} has no currency", p.code.span,
                       "add e.g. 'currency EUR': invoices to this partner are in that currency")
        self.rounding(p.rounding, DEFAULT_ROUNDING)

    def _accounts(self, a: ast.AccountsDecl) -> None:
        seen: dict[tuple[str, str], Span] = {}
        for what, key, account, span in a.entries:
            k = (what, key.text if key else "")
            if k in seen:
                self.error("E103", f"'{' '.join(x for x in k if x)}' is mapped twice", span, f"the first is at {seen[k]}")
            seen[k] = span
            if not account.value.strip():
                self.error("E264", "the account is empty", account.span, 'write the ledger account, e.g. "706000"')
            if what == "tax" and key is not None:
                self.word(key, "tax treatment")
        for need, example in (("receivable", 'receivable "411000"'), ("revenue", 'revenue "706000"')):
            if (need, "") not in seen:
                self.error("E264", f"the ledger accounts have no {need} account", a.span,
                           f"add e.g. {example}: every invoice's entry needs it")
        if ("tax", "vat") not in seen:
            self.error("E264", "the ledger accounts have no account for VAT collected", a.span,
                       'add e.g. tax vat "445710"')

    def _company(self, c: ast.CompanyDecl) -> None:
        seen: dict[str, Span] = {}
        for s in c.settings:
            if s.key in seen:
                self.error("E103", f"'{s.key}' is set twice for company {c.code.text}", s.span,
                           f"the first is at {seen[s.key]}")
            seen[s.key] = s.span
            if s.key == "country":
                self._country(s.values[0])
        if "country" not in seen:
            self.error("E262", f"company {c.code.text} has no country", c.code.span,
                       "add e.g. 'country FR': every invoice states the seller's country")
        self._party(f"company {c.code.text}", c.party, c.setting("country"))

    def _party(self, who: str, fields: tuple[ast.PartyField, ...], country: ast.Setting | None) -> None:
        """The legal details of a company or partner: each once (contacts may repeat), each valid
        offline (IBAN checksum, VAT identifier of its country, BIC, Peppol endpoint, email)."""
        cc = country.values[0].text if country is not None else None
        seen: dict[str, Span] = {}
        for f in fields:
            if f.key == "template":  # one per stream (and one for every stream)
                stream = f.values[1].value if f.values[1] is not None else None
                key = f"template stream {stream}" if stream else "template"
                if key in seen:
                    self.error("E103", f"'{key}' is set twice for {who}", f.span, f"the first is at {seen[key]}")
                seen[key] = f.span
            elif f.key != "contact":
                if f.key in seen:
                    self.error("E103", f"'{f.key}' is set twice for {who}", f.span, f"the first is at {seen[f.key]}")
                seen[f.key] = f.span
            if f.key == "template":
                self._template(who, f)
                continue
            if f.key == "locale":
                problem = check_locale(f.values[0].value)
                if problem:
                    self.error("E265", problem, f.values[0].span, 'e.g. locale "de_DE": numbers and dates on its '
                                                                   "documents are written for it")
                continue
            for i, v in enumerate(f.values):
                if v is None:
                    continue
                key = "email" if f.key == "contact" and i == 1 else f.key
                problem = check_field(key, v.value, cc) if key in ("iban", "vat", "bic", "peppol", "email") else (
                    f"the {f.key} is empty" if not v.value.strip() else None)
                if problem:
                    self.error("E261", problem, v.span, _PARTY_HELP.get(key))
                elif key == "vat" and cc and vat_country(compact("vat", v.value)) != cc:
                    self.warning("W260", f"the VAT identifier is of {vat_country(compact('vat', v.value))}, "
                                         f"{who} is in {cc}", v.span,
                                 "fine for a company registered for VAT abroad; otherwise check the identifier")

    def _template(self, who: str, f: ast.PartyField) -> None:
        """A document layout a party names: a file inside the project that reads as a layout
        (:mod:`icdsl.layouts`); its text is kept for the plan."""
        name = f.values[0]
        base = self.program.path_of(name.span.file).parent
        path, problem = resolve_project_path(name.value, base, self.program.root)
        if problem:
            self.error("E266", problem, name.span, path_help(name.value, "layouts live inside the project folder"))
            return
        if not is_file(path):
            self.error("E266", f"cannot find the document layout '{short_text(name.value)}' of {who}", name.span,
                       f"looked for {short_text(display_path(path), 80)} (relative to this rule file); "
                       "`icdsl invoice template --copy FILE` writes the default layout to start from")
            return
        try:
            if path.stat().st_size > MAX_LAYOUT_BYTES:
                raise LayoutError(f"the file is larger than {MAX_LAYOUT_BYTES // 1024} KiB: a layout is a short text")
            text = path.read_bytes().decode("utf-8")
            parse_layout(text, display_path(path))
        except UnicodeDecodeError:
            self.error("E267", f"the layout '{short_text(name.value)}' is not UTF-8 text", name.span,
                       "save the file as UTF-8")
            return
        except OSError as e:
            self.error("E266", f"cannot read the layout '{short_text(name.value)}': {e.strerror}", name.span)
            return
        except LayoutError as e:
            self.error("E267", f"the layout is wrong: {e}", name.span,
                       "compare with the default (`icdsl invoice template --copy FILE`), which documents every key")
            return
        self.out.party_templates[(name.span.file, name.span.line, name.span.col)] = (name.value, text)

    def _template_streams(self) -> None:
        """A ``template "FILE" stream NAME`` names a stream the party's documents are on: one its
        agreements declare (``main`` when one declares none, or the stream a charge names), or
        ``netting`` (the settlement statement). A party with no agreement is not judged."""
        parties: list[tuple[str, tuple[ast.PartyField, ...], str | None]] = [
            (f"partner {p.code.text}", p.party, p.code.text) for p in self.out.partners.values()]
        if self.out.company is not None:  # our company's layouts are for every partner's documents
            parties.append((f"company {self.out.company.code.text}", self.out.company.party, None))
        for who, fields, code in parties:
            infos = [i for i in self.out.agreements
                     if code is None or i.node.partner is None or i.node.partner.text == code]
            if not infos:
                continue
            names = {_NETTING}
            for i in infos:
                names |= {st.name.text for st in i.node.streams} or {_DEFAULT_STREAM}
                if not i.node.streams:
                    names |= self._charge_streams.get(id(i.node), set())
            for f in fields:
                stream = f.values[1] if f.key == "template" and len(f.values) > 1 else None
                if stream is None or stream.value in names:
                    continue
                self.error("E268", f"'{short_text(stream.value)}' is not an invoice stream of {who}", stream.span,
                           did_you_mean(stream.value, names, "its streams"))

    def _party_needs(self, p: ast.PartnerDecl) -> None:
        """Say before a document needs it what its invoices will lack."""
        keys = {f.key for f in p.party}
        tax = p.setting("tax")
        if tax is not None and tax.values[0].text == "reverse_charge" and "vat" not in keys:
            self.warning("W261", f"invoices to {p.code.text} are reverse-charged and must show its VAT identifier: "
                                 "finalizing them is refused until it is declared", p.code.span,
                         'add e.g. tax id "DE136695976" to the partner')
        if self.out.company is not None and not {"address", "city"} <= keys:
            lacking = ", ".join(k for k in ("address", "city") if k not in keys)
            self.warning("W262", f"partner {p.code.text} has no {lacking}: its invoices cannot be finalized "
                                 "without the buyer's postal address", p.code.span,
                         'add e.g. address "12 rue de la Paix" and city "Paris"')

    def _country(self, ident: ast.Ident) -> bool:
        # lazy: babel's locale data loads only when a rule names a country
        from babel import Locale

        territories = {k for k in Locale("en").territories if k.isalpha() and len(k) == 2}
        if ident.text in territories:
            return True
        self.error("E209", f"'{ident.text}' is not an ISO country code", ident.span,
                   did_you_mean(ident.text.upper(), territories) or "write a two-letter code such as FR or GB")
        return False

    def _calendar(self, c: ast.CalendarDecl) -> None:
        self.timezone(c.timezone)
        for r in c.rules:
            for a, b in r.days:
                for d in (a, b):
                    if d is not None and d.text not in WEEKDAYS:
                        self.error("E201", f"unknown weekday '{d.text}'", d.span,
                                   did_you_mean(d.text, WEEKDAYS, "weekdays"))
            if r.start is not None:
                t0, t1 = parse_time(r.start.text), parse_time(r.end.text)
                if t0 is None or r.start.text.startswith("24"):
                    self.error("E221", f"'{r.start.text}' is not a time of day", r.start.span, "times read HH:MM, 00:00-23:59")
                if t1 is None:
                    self.error("E221", f"'{r.end.text}' is not a time of day", r.end.span, "times read HH:MM; 24:00 ends a day")
                if t0 is not None and t1 is not None and t1.hour + t1.minute + t1.second and t1 <= t0:
                    self.error("E222", f"the band ends ({r.end.text}) before it starts ({r.start.text})", r.span,
                               "split a band that runs past midnight into two rules, e.g. 20:00-24:00 and 00:00-08:00")
        for h in c.holidays:
            countries = holiday_countries()
            if h.country.text not in countries:
                self.error("E209", f"no public holidays known for '{h.country.text}'", h.country.span,
                           did_you_mean(h.country.text.upper(), countries) or "use a two-letter country code")
            elif h.subdivision is not None and h.subdivision.value not in countries[h.country.text]:
                self.error("E209", f"'{h.subdivision.value}' is not a subdivision of {h.country.text}", h.subdivision.span,
                           did_you_mean(h.subdivision.value, countries[h.country.text], "subdivisions"))
        for d in c.dates:
            self.date(d.date)
        if c.default is None:
            self.error("E312", "the calendar has no default band", c.span,
                       "add a line such as 'offpeak otherwise' for the times no rule covers")

    def _fx(self, fx: ast.FxDecl) -> None:
        seen: dict[tuple[str, str, str], Span] = {}
        for r in fx.rates:
            self.currency(r.base)
            self.currency(r.quote)
            if r.base.text == r.quote.text:
                self.error("E223", "an FX rate needs two different currencies", r.span)
            if r.rate.value <= 0:
                self.error("E213", "an FX rate must be positive", r.rate.span)
            self.date(r.start)
            key = (r.base.text, r.quote.text, r.start.text)
            if key in seen:
                self.error("E306", f"{r.base.text}/{r.quote.text} has two rates from {r.start.text}", r.span,
                           f"the other is at {seen[key]}")
            seen[key] = r.span
        self.rounding(fx.rounding, Rounding(6, "half_even"))

    def _layout(self, layout: ast.RecordsDecl) -> None:
        fields = VOCAB["record field"]
        seen: set[str] = set()
        for name, _ in list(layout.columns) + list(layout.constants):
            if name.text in seen:
                self.error("E103", f"field '{name.text}' is mapped twice", name.span)
            seen.add(name.text)
        for name, _ in layout.constants:
            if name.text not in fields:
                self.warning("W202", f"'{name.text}' is not a standard record field; it will be an extra column",
                             name.span, did_you_mean(name.text, fields, "fields"))
        for name, val in layout.constants:
            if name.text == "direction" and isinstance(val, ast.Ident):
                self.word(val, "direction")
        for s in layout.settings:
            if s.key == "timezone":
                self.timezone(s.values[0])
            elif s.key == "country":
                self._country(s.values[0])
            elif s.key == "numbers":
                self.word(s.values[0], "number format")
            elif s.key == "format":
                problem = timestamp_format_problem(s.values[0].value)
                if problem:
                    self.error("E229", problem, s.values[0].span, FORMAT_HELP)

    def _invoice_layout(self, layout: ast.InvoiceLayoutDecl) -> None:
        """``invoice layout``: known fields, each mapped once, the fields an invoice line needs,
        constants that make sense, services that an agreement prices, settings that can apply."""
        seen: dict[str, Span] = {}
        for name, _ in list(layout.columns) + list(layout.constants):
            if name.text not in INVOICE_FIELDS:
                self.error("E501", f"'{name.text}' is not a field of an invoice line", name.span,
                           did_you_mean(name.text, INVOICE_FIELDS, "fields"))
            elif name.text in seen:
                self.error("E103", f"field '{name.text}' is mapped twice", name.span,
                           f"the first is at {seen[name.text]}")
            seen.setdefault(name.text, name.span)
        for name, val in layout.constants:
            if name.text in INVOICE_COLUMN_ONLY:
                self.error("E502", f"'{name.text}' differs from line to line: read it from a column", name.span,
                           f"write '{name.text} = column \"...\"' with the column's name in their file")
            elif name.text == "currency" and isinstance(val, ast.Ident):
                self.currency(val)
            elif name.text == "currency":
                self.error("E202", "write the currency as an ISO code without quotes", name.span,
                           "for example: currency = EUR")
            elif name.text == "kind" and isinstance(val, ast.Ident):
                self.word(val, "invoice kind")
        for needed, how in (("amount", 'amount = column "..."'), ("number", 'number = column "..."'),
                            ("service", 'service = column "..."'), ("currency", 'currency = EUR or a column')):
            if needed not in seen:
                self.error("E503", f"invoice layout {layout.name.text} does not say where the {needed} is",
                           layout.name.span, f"add '{how}' to the layout")
        ours = {svc.service.text for info in self.out.agreements for svc in info.node.services} | set(STANDARD_SERVICES)
        words: dict[str, Span] = {}
        for word, service in layout.services:
            if word.value in words:
                self.error("E103", f"'{word.value}' is mapped twice", word.span, f"the first is at {words[word.value]}")
            words.setdefault(word.value, word.span)
            if service.text not in ours:
                self.warning("W501", f"no agreement prices a service '{service.text}'", service.span,
                             did_you_mean(service.text, ours, "services"))
        settings: dict[str, Span] = {}
        for st in layout.settings:
            if st.key in settings:
                self.error("E103", f"'{st.key.replace('_', ' ')}' is set twice", st.span,
                           f"the first is at {settings[st.key]}")
            settings.setdefault(st.key, st.span)
            v = st.values[0]
            if st.key == "date_format":
                problem = date_format_problem(v.value)
                if problem:
                    self.error("E504", f"'{v.value}' is not a date format: {problem}", v.span,
                               'use strptime directives, e.g. "%d/%m/%Y" for 31/03/2026 or "%Y-%m-%d"')
            elif st.key == "decimal" and v.value not in (".", ","):
                self.error("E505", f"the decimal mark must be '.' or ',', not {v.value!r}", v.span)
            elif st.key == "delimiter" and (len(v.value) != 1 or v.value in "\"\r\n"):
                self.error("E505", f"the delimiter must be one character, not {v.value!r}", v.span,
                           'for example: delimiter ";" (or "\\t" for tabs)')
            elif st.key == "encoding":
                try:
                    codecs.lookup(v.value)
                except LookupError:
                    self.error("E505", f"unknown text encoding {v.value!r}", v.span,
                               did_you_mean(v.value, ENCODINGS, "encodings") or "for example: utf-8, latin-1, cp1252")
        dec = layout.setting("decimal")
        delim = layout.setting("delimiter")
        if dec is not None and delim is not None and dec.values[0].value == delim.values[0].value:
            self.error("E505", "the decimal mark and the delimiter are the same character", delim.span,
                       'a file with decimal commas is usually delimited by ";"')

    # ------------------------------------------------------------------ agreements
    def _agreement(self, info: AgreementInfo) -> None:
        a = info.node
        self.agreement = info
        if a.partner is not None:
            info.partner = self.out.partners.get(a.partner.text)
            if info.partner is None:
                self.error("E104", f"unknown partner '{a.partner.text}'", a.partner.span,
                           did_you_mean(a.partner.text, self.out.partners, "declared partners")
                           or "declare it with 'partner CODE \"Name\" { ... }' or import the file that does")
        if a.version_number <= 0:
            self.error("E224", "versions start at v1", a.version.span)
        info.start = self.date(a.start)
        info.end = self.date(a.end)
        if info.start and info.end and info.end < info.start:
            self.error("E302", f"the agreement ends ({a.end.text}) before it starts ({a.start.text})", a.end.span)
        p = info.partner
        partner_currency = p.setting("currency").values[0].text if p and p.setting("currency") else ""
        partner_tz = p.setting("timezone").values[0].value if p and p.setting("timezone") else "UTC"
        partner_rounding = self.rounding(p.rounding, DEFAULT_ROUNDING) if p and p.rounding else DEFAULT_ROUNDING
        cur = a.setting("currency")
        if cur is not None:
            if self.currency(cur.values[0]):
                info.currency = cur.values[0].text
        else:
            info.currency = partner_currency
            if a.partner is None:
                self.error("E220", "an agreement with any partner needs its own currency", a.name.span,
                           "add e.g. 'currency EUR' to the agreement")
        tz = a.setting("timezone")
        info.timezone = tz.values[0].value if tz and self.timezone(tz.values[0]) else partner_tz
        info.rounding = self.rounding(a.rounding, partner_rounding)
        fx = a.setting("fx")
        if fx is not None:
            info.fx = self.out.fx.get(fx.values[0].text)
            if info.fx is None:
                self.error("E109", f"unknown FX source '{fx.values[0].text}'", fx.values[0].span,
                           did_you_mean(fx.values[0].text, self.out.fx, "FX sources") or "define it with 'fx NAME { ... }'")
        self._progressive(info, partner_currency or info.currency)
        cal = a.setting("calendar")
        if cal is not None:
            info.calendar = self._calendar_ref(cal.values[0])
        for svc in a.services:
            self._service(info, svc)
        for c in a.charges:
            self._charge(c, (), info)
        applied: dict[int, Span] = {}  # a charge of a template -> the `apply` that brought it
        for t, at in zip(a.applies, a.apply_args or [ast.ApplyNode(t, (), t.span) for t in a.applies], strict=True):
            before = len(info.charges)
            self._apply(info, t, at)
            applied.update({id(c): at.span for c, _ in info.charges[before:]})
        for d, s in a.netting:
            if (d.text, s.text) not in info.services:
                self.error("E110", f"netting names '{d.text} {s.text}', which this agreement does not price", d.span,
                           did_you_mean(f"{d.text} {s.text}", [" ".join(k) for k in info.services], "priced services"))
        self._duplicate_labels(info, applied)
        self._streams(info)
        check_number_fields(self, info)
        self._reconcile(info)
        self.agreement = None

    def _progressive(self, info: AgreementInfo, invoice_currency: str) -> None:
        """``progressive billing at MONEY, ...``: once per agreement, positive amounts in rising
        order, in the currency of the partner's invoices (what the usage is measured in)."""
        stated = [st for st in info.node.settings if st.key == "progressive"]
        for extra in stated[1:]:
            self.error("E346", "progressive billing is stated twice in this agreement", extra.span,
                       f"list every threshold in one statement, e.g. 'progressive billing at 10_000.00 "
                       f"{invoice_currency or 'EUR'}, 25_000.00 {invoice_currency or 'EUR'}'")
        if not stated:
            return
        last: ast.Money | None = None
        for money in stated[0].values:
            if not self.money(money, allow_zero=False):
                continue
            if invoice_currency and money.currency.text != invoice_currency:
                self.error("E346", f"a progressive billing threshold is in {money.currency.text} but the "
                                   f"partner is invoiced in {invoice_currency}", money.currency.span,
                           f"usage is measured on the invoice: write the threshold in {invoice_currency}")
            elif last is not None and money.amount.value <= last.amount.value:
                self.error("E346", f"progressive billing thresholds rise: {money.amount.text} is not above "
                                   f"{last.amount.text}", money.amount.span,
                           "write the thresholds from the lowest to the highest, each once")
            last = money

    def _apply(self, info: AgreementInfo, t: ast.Ident, at: ast.ApplyNode) -> None:
        """``apply NAME`` or ``apply NAME(ARGS)``: the template's charges, as the agreement's."""
        tmpl = self.out.templates.get(t.text)
        if tmpl is None:
            self.error("E105", f"unknown template '{t.text}'", t.span,
                       did_you_mean(t.text, self.out.templates, "templates") or "define it with 'template NAME { ... }'")
        elif tmpl.params or at.args:
            for c in instantiate(self, tmpl, at) or ():
                self._charge(c, (), info)
        else:
            for c in tmpl.charges:
                info.charges.append((c, ()))
                self._charge_currency(c, info)

    def _duplicate_labels(self, info: AgreementInfo, applied: dict[int, Span]) -> None:
        """Two charges of one agreement with one name (their label, or their kind when they have
        none): their lines, application keys, streams and examples could not tell them apart."""
        seen: dict[str, Span] = {}
        for c, _ in info.charges:
            if c.kind == "usage_cap":
                continue  # named after their scope ("Cap outbound voice"); a month's and a quarter's may both be
            name = c.label.value if c.label is not None else c.kind
            where = applied.get(id(c)) or (c.label.span if c.label is not None else c.kind_span)
            first = seen.get(name)
            if first is None:
                seen[name] = where
                continue
            what = f'"{name}"' if c.label is not None else f"an unnamed {c.kind.replace('_', ' ')}"
            if c.label is None:
                hint = "give each one a label, e.g. 'commit \"Voice\" ...': lines and examples find a charge by it"
            elif id(c) in applied:
                hint = ("name a parameter in the template's label, e.g. \"Port rental {kind}\": each apply then "
                        "gives a charge of its own")
            else:
                hint = "give each charge a label of its own: invoice lines, streams and examples find a charge by it"
            self.error("E345", f"{what} is charged twice in this agreement (first on line {first.line})", where, hint)

    def _reconcile(self, info: AgreementInfo) -> None:
        """``reconcile { ... }``: the tolerances of `icdsl reconcile` for the partner's invoices."""
        a = info.node
        if not a.reconcile:
            return
        first = a.reconcile[0]
        for extra in a.reconcile[1:]:
            self.error("E330", "the agreement has two reconcile blocks", extra.span,
                       f"merge them into the first one, at {first.span}")
        percent, amount, start, duration = Decimal(0), Decimal(0), 0, 0
        seen: dict[str, ast.ReconcileItem] = {}
        for it in first.items:
            if it.key in seen:
                words = {"tolerance": "tolerance ... per line", "start": "start within", "duration": "duration within"}
                self.error("E330", f"'{words[it.key]}' is stated twice in the reconcile block", it.span,
                           f"keep one: the first is at {seen[it.key].span}")
                continue
            seen[it.key] = it
            if it.key == "tolerance":
                percents = [v for v in it.values if isinstance(v, ast.Percent)]
                amounts = [v for v in it.values if isinstance(v, ast.Money)]
                for extra in percents[1:] + amounts[1:]:
                    self.error("E331", "a line tolerance is at most one percentage and one amount", extra.span,
                               "write e.g. 'tolerance 0.5 % or 1.00 EUR per line': whichever is larger applies")
                if percents and self.percent(percents[0]):
                    percent = percents[0].value.value
                if amounts and self.money(amounts[0]):
                    m = amounts[0]
                    if info.currency and m.currency.text != info.currency:
                        self.error("E332", f"the tolerance is in {m.currency.text}, the agreement's currency is "
                                   f"{info.currency}", m.currency.span,
                                   f"write the amount in {info.currency}: partners invoice this agreement's traffic "
                                   "in its currency")
                    else:
                        amount = m.amount.value
            else:
                n = self.seconds(it.values[0])
                if n is not None:
                    if it.key == "start":
                        start = n
                    else:
                        duration = n
        if not any(d == "outbound" for d, _s in info.services) and not a.netting:
            self.warning("W330", "this agreement prices no traffic we send the partner, so no invoice of theirs is "
                         "reconciled with it", first.span,
                         "tolerances apply to the partner's invoices for our outbound services: move the block to "
                         "the agreement that prices them")
        info.tolerances = (percent, amount, start, duration)

    def _calendar_ref(self, ident: ast.Ident) -> ast.CalendarDecl | None:
        cal = self.out.calendars.get(ident.text)
        if cal is None:
            self.error("E111", f"unknown calendar '{ident.text}'", ident.span,
                       did_you_mean(ident.text, self.out.calendars, "calendars")
                       or "define it with 'calendar NAME timezone \"Area/City\" { ... }' or 'use stdlib.calendars'")
        return cal

    def _service(self, info: AgreementInfo, s: ast.ServiceDecl) -> None:
        self.word(s.direction, "direction")
        key = (s.direction.text, s.service.text)
        if key in info.services:
            self.error("E304", f"'{s.direction.text} {s.service.text}' is priced twice in this agreement", s.span,
                       f"the first block is at {info.services[key].node.span}; merge them")
            return
        si = ServiceInfo(s)
        info.services[key] = si
        si.rounding = self.rounding(s.rounding, info.rounding)
        if s.calendar is not None:
            si.calendar = self._calendar_ref(s.calendar)
        elif s.bands is not None:
            self._calendar(s.bands)
            si.calendar = s.bands
        else:
            si.calendar = info.calendar
        if s.flat_price is not None and s.destination_price is not None:
            self.error("E305", "a service has either one price or a price by destination, not both", s.flat_price.span)
        band_priced = any(bp.setting("price") is not None for bp in s.band_parts)
        field_price = s.setting("field_price")
        if field_price is not None and (s.flat_price or s.destination_price or s.slots or band_priced):
            self.error("E305", "a service priced by a field of each record has no other price", field_price.span,
                       "keep 'price from field ...' (each record's own price) or the agreement's prices, not both")
        if (s.flat_price is None and s.destination_price is None and not s.slots and not band_priced
                and field_price is None):
            self.error("E305", f"'{s.direction.text} {s.service.text}' has no price", s.span,
                       "add 'price 0.0100 EUR per minute' or 'price by destination from deck \"...\"'")
        si.currency = info.currency
        numbers = s.setting("numbers")
        if numbers is not None:
            ref = numbers.values[0]
            si.numbers = self.out.numbers.get(ref.text)
            if si.numbers is None:
                self.error("E424", f"unknown number-range table '{ref.text}'", ref.span,
                           did_you_mean(ref.text, self.out.numbers, "number-range tables")
                           or "declare it with 'numbers NAME from \"ranges.csv\"'")
        if s.flat_price is not None:
            fp = s.flat_price
            if self.money(fp.money):
                si.currency = fp.money.currency.text
                self.currency_matches(fp.money.currency, info.currency, "the price")
            self.price_unit(fp.unit)
            si.unit = fp.unit.text
        if s.band_parts:
            self._band_parts(si)
        if s.destination_price is not None:
            self._destination_price(info, si, s.destination_price)
        if s.fallback is not None:
            self._fallback(info, si, s.fallback)
        for st in s.settings:
            self._service_setting(si, st)
        if s.slots:
            self._slots(si, s.slots)
        self._slot_sets(si)
        for c in s.charges:
            self._charge(c, (key,), info)
        refiles = [st for st in s.settings if st.key == "refile"]
        for extra in refiles[1:]:
            self.error("E426", "a service declares its route's origin once", extra.span,
                       f"the first 'refile' is at {refiles[0].span}; keep one policy (surcharge, reject or flag)")
        if refiles:
            c = self._refile(refiles[0], si)
            if c is not None:
                self._charge(c, (key,), info)

    def _refile(self, st: ast.Setting, si: ServiceInfo) -> ast.ChargeNode | None:
        """``refile origin ZONE POLICY``: the route is declared for callers of ZONE; a record whose
        a_number is outside it (or empty) was refiled. ``surcharge AMOUNT``: it bears a surcharge
        labelled ``Refile (origin outside ZONE)`` whose condition is the zone's prefixes;
        ``flag``: it is rated as usual and marked by a zero surcharge ``Refile flag (origin
        outside ZONE)`` (listed with the record's charges, counted on its own invoice line);
        ``reject``: the executors reject it (reason ``refiled``, ``si.refile_reject``)."""
        zone, policy = st.values
        if isinstance(policy, ast.Ident) and policy.text not in ("reject", "flag"):
            self.error("E426", f"unknown refile policy '{policy.text}'", policy.span,
                       "a refiled record is priced ('surcharge 0.0500 EUR per minute'), rejected ('reject') "
                       "or rated and marked ('flag')")
            return None
        info = self.out.zones.get(zone.text)
        if info is None:
            self.error("E422", f"unknown zone '{zone.text}'", zone.span,
                       did_you_mean(zone.text, self.out.zones, "zones")
                       or "declare it with 'zone NAME { FR DE \"44\" }' or 'use stdlib.zones' for EEA and EU")
            return None
        if not info.prefixes:
            return None  # W421 (an empty zone) was reported: no condition to write
        sp = st.span
        if isinstance(policy, ast.Ident) and policy.text == "reject":
            si.refile_reject = (zone.text, info.prefixes)
            return None
        inside = tuple(ast.Call(ast.Ident("starts_with", sp), (ast.FieldRef(("a_number",), sp), ast.Literal(p, sp)), sp)
                       for p in info.prefixes)
        when = ast.Not(ast.BoolOp("or", inside, sp) if len(inside) > 1 else inside[0], sp)
        label = ast.Str(f"Refile (origin outside {zone.text})", sp)
        amount = policy
        if isinstance(policy, ast.Ident):  # flag: a zero surcharge marks the record
            amount = ast.Percent(ast.Num(Decimal(0), "0", sp), sp)
            label = ast.Str(f"{REFILE_FLAG} (origin outside {zone.text})", sp)
        params = (ast.Param(ast.Ident("amount", sp), amount, sp), ast.Param(ast.Ident("when", sp), when, sp))
        return ast.ChargeNode("surcharge", sp, label, params, (), sp, False)

    def _destination_price(self, info: AgreementInfo, si: ServiceInfo, dp: ast.DestinationPrice) -> None:
        if dp.currency is not None and self.currency(dp.currency):
            si.currency = dp.currency.text
            self.currency_matches(dp.currency, info.currency, "the rate table")
        if dp.unit is not None:
            self.price_unit(dp.unit)
            si.unit = dp.unit.text
        if dp.deck is not None:
            base = self.program.path_of(info.file).parent
            path, problem = resolve_project_path(dp.deck.value, base, self.program.root)
            if problem:
                self.error("E401", problem, dp.deck.span,
                           path_help(dp.deck.value, "rate decks live inside the project folder"))
                return
            if not is_file(path):
                self.error("E402", f"cannot find the rate deck '{short_text(dp.deck.value)}'", dp.deck.span,
                           f"looked for {short_text(display_path(path), 80)}; the path is relative to this rule file")
                return
            deck, diags = read_deck(path, display_path(path), dp.columns,
                                    dp.delimiter.value if dp.delimiter else None, dp.deck.span)
            self.diags.extend(diags)
            if deck is None:
                return
            si.deck = deck
            if deck.columns is not None:
                si.rows = deck.columns
                self._columns(si, deck.columns)
                return
            si.rows = deck.rows
        else:
            si.rows = list(dp.rows)
        self._rows(si)

    def _columns(self, si: ServiceInfo, deck: RateColumns) -> None:
        """The checks of :meth:`_rows` on a deck read as columns (each value is well formed:
        the columnar reader checked it)."""
        bands = self._bands(si)
        span = deck.span_at
        if deck.bands:
            if si.calendar is None:
                self.error("E308", "this rate has prices per band, but the service has no calendar", span(0),
                           "add 'calendar NAME' to the service or the agreement")
            else:
                for b, col in deck.bands:
                    first = next((i for i, v in enumerate(col) if v is not None), None)
                    if b not in bands and first is not None:
                        self.error("E207", f"band '{b}' is not a band of calendar "
                                           f"'{si.calendar.name.text if si.calendar.name else 'bands'}'",
                                   span(first), did_you_mean(b, bands, "its bands"))
                complete = bands <= {b for b, _ in deck.bands} and all(None not in col for _, col in deck.bands)
                if not complete:
                    missing = [i for i in range(len(deck))
                               if (deck.rate is None or deck.rate[i] is None)
                               and not bands <= {b for b, col in deck.bands if col[i] is not None}]
                    if missing:
                        i = missing[0]
                        bs = sorted(bands - {b for b, col in deck.bands if col[i] is not None})
                        more = f" (and {len(missing) - 1} more rows)" if len(missing) > 1 else ""
                        self.error("E309", f"prefix {deck.prefixes[i]} has no price for band{'s' * (len(bs) > 1)} "
                                           f"{', '.join(repr(b) for b in bs)}{more}", span(i),
                                   "give every band of the calendar a price, e.g. peak 0.0200 offpeak 0.0100")
        starts = deck.effective_from or (None,) * len(deck)
        until = deck.effective_to or (None,) * len(deck)
        for d in sorted({d for d in starts + until if d}):
            if parse_date(d) is None:
                i = starts.index(d) if d in starts else until.index(d)
                code, message, hint = date_problem(d)
                self.error(code, message, span(i), hint)
        if deck.effective_from is not None and deck.effective_to is not None:
            for i, (a, b) in enumerate(zip(starts, until, strict=True)):
                if a and b:
                    da, db = parse_date(a), parse_date(b)
                    if da and db and db <= da:
                        self.error("E302", f"prefix {deck.prefixes[i]} ends ({b}) before it starts ({a})",
                                   span(i))
        seen: dict[tuple, int] = {}
        setdefault = seen.setdefault
        keys = zip(deck.prefixes, starts, strict=True)
        if deck.origins:  # the same prefix once per origin cell
            keys = ((p, st, deck.origin_of(i)) for i, (p, st) in enumerate(zip(deck.prefixes, starts, strict=True)))
        for i, key in enumerate(keys):
            first = setdefault(key, i)
            if first != i:
                cell = _cell_text(key[2]) if len(key) > 2 else ""
                if self._same_rates(deck, first, i):
                    self.warning("W302", f"prefix {key[0]}{cell} is listed twice with the same rates", span(i),
                                 f"the first is at {span(first)}")
                else:
                    self.error("E306", f"prefix {key[0]}{cell} is listed twice with different rates", span(i),
                               f"the first is at {span(first)}; keep one, or give the new one a 'from' date")
        if deck.origins:
            check_origin_keys(self, si.numbers, si.node.span, [(deck.origin_of(i), span(i)) for i in range(len(deck))])

    @staticmethod
    def _same_rates(deck: RateColumns, a: int, b: int) -> bool:
        cols = [deck.rate, deck.connect_fees, deck.increments] + [c for _, c in deck.bands]
        return all(c is None or c[a] == c[b] for c in cols)

    def _bands(self, si: ServiceInfo) -> set[str]:
        bands = set(si.calendar.rules and [r.band.text for r in si.calendar.rules] or ()) if si.calendar else set()
        if si.calendar is not None:
            bands.update(h.band.text for h in si.calendar.holidays)
            bands.update(d.band.text for d in si.calendar.dates)
            if si.calendar.default is not None:
                bands.add(si.calendar.default.text)
        return bands

    def _rows(self, si: ServiceInfo) -> None:
        bands = self._bands(si)
        seen: dict[tuple[str, str | None], ast.RateRowNode] = {}
        unknown_band_reported: set[str] = set()
        missing = 0
        first_missing = None
        for r in si.rows:
            key = (r.prefix, r.start, r.origin)
            prev = seen.get(key)
            if prev is not None:
                same = (prev.price, prev.band_prices, prev.connect, prev.increments) == (
                    r.price, r.band_prices, r.connect, r.increments)
                if same:
                    self.warning("W302", f"prefix {r.prefix}{_cell_text(r.origin)} is listed twice with the same rates",
                                 r.span, f"the first is at {prev.span}")
                else:
                    self.error("E306", f"prefix {r.prefix}{_cell_text(r.origin)} is listed twice with different rates",
                               r.span,
                               f"the first is at {prev.span}; keep one, or give the new one a 'from' date")
            else:
                seen[key] = r
            if r.band_prices:
                if si.calendar is None:
                    if "no-calendar" not in unknown_band_reported:
                        unknown_band_reported.add("no-calendar")
                        self.error("E308", "this rate has prices per band, but the service has no calendar", r.span,
                                   "add 'calendar NAME' to the service or the agreement")
                else:
                    for b, _ in r.band_prices:
                        if b not in bands and b not in unknown_band_reported:
                            unknown_band_reported.add(b)
                            self.error("E207", f"band '{b}' is not a band of calendar "
                                               f"'{si.calendar.name.text if si.calendar.name else 'bands'}'", r.span,
                                       did_you_mean(b, bands, "its bands"))
                    if r.price is None:
                        priced = {b for b, _ in r.band_prices}
                        if not bands <= priced:
                            missing += 1
                            first_missing = first_missing or (r, sorted(bands - priced))
            if r.increments is not None and (r.increments[0] <= 0 or r.increments[1] <= 0):
                self.error("E208", "increments must be positive seconds", r.span)
            if r.start and r.until:
                ds, du = parse_date(r.start), parse_date(r.until)
                if ds and du and du <= ds:
                    self.error("E302", f"prefix {r.prefix} ends ({r.until}) before it starts ({r.start})", r.span)
            for d in (r.start, r.until):
                if d and parse_date(d) is None:
                    code, message, hint = date_problem(d)
                    self.error(code, message, r.span, hint)
        if any(r.origin for r in si.rows):
            check_origin_keys(self, si.numbers, si.node.span, [(r.origin, r.span) for r in si.rows])
        if missing:
            row, bs = first_missing
            more = f" (and {missing - 1} more rows)" if missing > 1 else ""
            self.error("E309", f"prefix {row.prefix} has no price for band{'s' * (len(bs) > 1)} "
                               f"{', '.join(repr(b) for b in bs)}{more}", row.span,
                       "give every band of the calendar a price, e.g. peak 0.0200 offpeak 0.0100")

    def _service_setting(self, si: ServiceInfo, st: ast.Setting) -> None:
        v = st.values
        if st.key == "increments":
            a, b = v
            for n in (a, b):
                if n.value != int(n.value) or n.value <= 0:
                    self.error("E208", f"increment '{n.text}' must be a positive whole number of seconds", n.span,
                               "e.g. 'increments 60/6'")
        elif st.key == "minimum":
            self.seconds(v[0])
        elif st.key == "connect_fee":
            if self.money(v[0]):
                self.currency_matches(v[0].currency, si.currency, "the connect fee")
        elif st.key == "zero_duration":
            self.word(v[0], "zero-duration policy")
        elif st.key in ("volume_rounding", "volume_minimum"):
            self.volume_bytes(v[0])
            if si.unit not in VOLUME_UNITS:
                self.warning("W303", "volume rounding only applies to services priced per KB, MB or GB", st.span)
        elif st.key == "field_price":
            name, currency, *scale = v
            if self.currency(currency):
                self.currency_matches(currency, si.currency, "the price")
                si.currency = currency.text
            if scale and scale[0].text != "cents":
                self.error("E206", f"a price field is in {currency.text} or in cents, not '{scale[0].text}'",
                           scale[0].span, did_you_mean(scale[0].text, ("cents",), "words") or "write 'cents'")
            if name.text in RESERVED_FIELDS:
                self.error("E206", f"'{name.text}' is a field icdsl measures, not a price", name.span,
                           "name the record's field that holds its price, e.g. 'price from field amount in EUR'")
            si.unit = "event"
        elif st.key == "split" and si.calendar is None:
            self.warning("W304", "'split at band boundary' has no effect without a calendar", st.span)
        elif st.key == "max_cost":
            money, per, *opts = v
            for o in opts:
                self.error("E206", "a maximum cost per call has no options: each record is capped whole", o.span,
                           "drop the option, or cap a period: 'at most 5000.00 EUR per month, prorate daily'")
            if self.money(money, allow_zero=False) and si.currency and money.currency.text != si.currency:
                self.error("E322", f"the maximum cost is in {money.currency.text} but the service prices in "
                                   f"{si.currency}", money.currency.span,
                           "a record's amount is capped in its own currency: write the cap in "
                           f"{si.currency}")
            if per.text != "call":
                self.error("E206", f"a maximum cost is per call, not per '{per.text}'", per.span,
                           "write e.g. 'at most 10.00 EUR per call'")

    def _slots(self, si: ServiceInfo, slots: tuple[ast.SlotNode, ...]) -> None:
        last = 0
        for i, sl in enumerate(slots):
            self.money(sl.price)
            self.currency_matches(sl.price.currency, si.currency or self.agreement.currency, "the slot price")
            if sl.unit.text not in ("minute", "second"):
                self.error("E206", "slot prices are per minute or per second", sl.unit.span)
            if sl.increments is not None:
                for n in sl.increments.values:
                    if n.value != int(n.value) or n.value <= 0:
                        self.error("E208", f"increment '{n.text}' must be a positive whole number of seconds",
                                   n.span, "e.g. 'first 30 s at 0.0200 EUR per minute increments 1/1'")
            if sl.first is not None:
                secs = self.seconds(sl.first)
                if secs is not None:
                    if secs <= last:
                        self.error("E307", "slots must grow: each 'first' must be longer than the one before", sl.span)
                    last = secs
                if i == len(slots) - 1:
                    self.error("E310", "the last slot must say what the rest of the call costs", sl.span,
                               "end with 'then PRICE per minute'")
            elif i != len(slots) - 1:
                self.error("E310", "'then' must be the last slot", sl.span)
        if si.unit not in ("minute", "second"):
            si.unit = slots[-1].unit.text if slots[-1].unit.text in ("minute", "second") else "minute"

    def _slot_sets(self, si: ServiceInfo) -> None:
        """``slots NAME { ... }`` and the rate rows that select one with ``slots NAME`` (inline, or
        a deck's ``slots`` column): each set is checked as the service's slots are; a row naming
        no set of the service is E324, a set no row names is W305."""
        s = si.node
        names: dict[str, ast.SlotSetNode] = {}
        for ss in s.slot_sets:
            if ss.name.text in names:
                self.error("E324", f"slot set '{ss.name.text}' is declared twice in this service", ss.name.span,
                           f"the first is at {names[ss.name.text].span}; give each set its own name")
                continue
            names[ss.name.text] = ss
            self._slots(si, ss.slots)
        dp = s.destination_price
        if s.slot_sets and dp is None:
            self.error("E324", "slot sets are chosen by rate rows, but this service has no price by destination",
                       s.slot_sets[0].span, "name the set in the rows of 'price by destination' with 'slots NAME', "
                       "or write the slots unnamed ('slots { ... }') to price every call")
            return
        if s.slot_sets and dp is not None and dp.unit is not None and TIME_UNITS.get(dp.unit.text) != 60:
            self.error("E206", f"rows that select slot sets are priced per minute, not per '{dp.unit.text}'",
                       dp.unit.span, "slot prices are per minute: drop the unit or write 'per minute'")
        used: set[str] = set()
        tables = [si.rows] + ([si.fallback.rows] if si.fallback is not None else [])
        for rows in tables:
            for name, where in _named_sets(rows):
                used.add(name)
                if name not in names:
                    self.error("E324", f"unknown slot set '{name}'", where,
                               did_you_mean(name, names, "slot sets of this service")
                               or "declare it in the service with 'slots NAME { first ... , then ... }'")
        for name, ss in names.items():
            if name not in used:
                self.warning("W305", f"slot set '{name}' is not chosen by any rate row", ss.name.span,
                             f"rows choose it with 'slots {name}' (a deck: a 'slots' column); else remove it")

    def _band_parts(self, si: ServiceInfo) -> None:
        """``band NAME { price ..., connect fee ..., increments I/S }``: the parts of the tariff
        taken from the band in force when the call starts."""
        s = si.node
        if si.calendar is None:
            self.error("E308", "the service prices by band, but it has no calendar", s.band_parts[0].span,
                       "add 'calendar NAME' or 'bands timezone \"...\" { ... }' to the service or the agreement")
            return
        bands = self._bands(si)
        cal = si.calendar.name.text if si.calendar.name else "bands"
        seen: dict[str, Span] = {}
        unit = si.unit if s.flat_price is not None else None
        volume_settings: list[ast.Setting] = []
        for bp in s.band_parts:
            name = bp.band.text
            if name not in bands:
                self.error("E207", f"band '{name}' is not a band of calendar '{cal}'", bp.band.span,
                           did_you_mean(name, bands, "its bands"))
            if name in seen:
                self.error("E103", f"band '{name}' is given twice", bp.band.span, f"the first is at {seen[name]}")
            seen.setdefault(name, bp.span)
            keys: dict[str, Span] = {}
            for st in bp.settings:
                if st.key in keys:
                    self.error("E103", f"'{st.key.replace('_', ' ')}' is set twice for band '{name}'", st.span,
                               f"the first is at {keys[st.key]}")
                keys[st.key] = st.span
                if st.key == "price":
                    fp = st.values[0]
                    if s.destination_price is not None:
                        self.error("E305", "a band price is for a service without a price by destination", st.span,
                                   "the rate rows give the prices by band: e.g. 336 \"France mobile\" peak 0.0200 "
                                   "offpeak 0.0150")
                        continue
                    if self.money(fp.money):
                        si.currency = fp.money.currency.text if s.flat_price is None else si.currency
                        self.currency_matches(fp.money.currency, si.currency, "the band price")
                    self.price_unit(fp.unit)
                    if unit is None:
                        unit = si.unit = fp.unit.text
                    elif fp.unit.text != unit:
                        self.error("E206", f"the band price is per {fp.unit.text}, the service's price per {unit}",
                                   fp.unit.span, f"price every band per {unit}")
                elif st.key == "connect_fee":
                    if self.money(st.values[0]):
                        self.currency_matches(st.values[0].currency, si.currency, "the connect fee")
                elif st.key == "increments":
                    for n in st.values:
                        if n.value != int(n.value) or n.value <= 0:
                            self.error("E208", f"increment '{n.text}' must be a positive whole number of seconds",
                                       n.span, "e.g. 'increments 60/6'")
                elif st.key in ("volume_rounding", "volume_minimum"):
                    self.volume_bytes(st.values[0])
                    volume_settings.append(st)
        if volume_settings and si.unit not in VOLUME_UNITS:
            self.warning("W303", "volume rounding only applies to services priced per KB, MB or GB",
                         volume_settings[0].span)
        if s.flat_price is None and s.destination_price is None and not s.slots:
            priced = {bp.band.text for bp in s.band_parts if bp.setting("price") is not None}
            missing = sorted(bands - priced)
            if missing:
                have = "have" if len(missing) > 1 else "has"
                self.error("E309", f"band{'s' * (len(missing) > 1)} {', '.join(repr(b) for b in missing)} "
                                   f"of the calendar {have} no price",
                           s.band_parts[0].span, "give every band a price, or give the service a price for the "
                                                 "others: 'price 0.0100 EUR per minute'")

    def _fallback(self, info: AgreementInfo, si: ServiceInfo, dp: ast.DestinationPrice) -> None:
        """``fallback from deck "..."``: a second table, same currency, unit and calendar, that
        prices the numbers no row of the price table holds."""
        s = si.node
        if s.destination_price is None:
            self.error("E323", "a fallback table needs a price by destination to fall back from", dp.span,
                       "write 'price by destination from deck \"...\"' before the fallback, or drop the fallback")
            return
        fsi = ServiceInfo(replace(s, destination_price=dp, fallback=None), calendar=si.calendar,
                          currency=si.currency, unit=si.unit, rounding=si.rounding, numbers=si.numbers)
        self._destination_price(info, fsi, dp)
        keyed = [any(r.origin for r in rows) if not isinstance(rows, RateColumns) else bool(rows.origins)
                 for rows in (si.rows, fsi.rows)]
        if any(keyed):
            self.error("E323", "a table keyed by origin cannot have a fallback table", dp.span,
                       "put the general rows in the same table, as rows for any origin")
            return
        si.fallback = fsi

    def _streams(self, info: AgreementInfo) -> None:
        a = info.node
        kinds = set(self.out.charge_types) | {"traffic", "fees"}
        labels = {c.label.value for c, _ in info.charges if c.label is not None}
        names_seen: dict[str, Span] = {}
        placed: dict[str, Span] = {}
        for st in a.streams:
            if st.name.text in names_seen:
                self.error("E102", f"invoice stream '{st.name.text}' is declared twice", st.name.span)
            names_seen[st.name.text] = st.span
            for sel in st.selectors:
                if sel.name is not None:
                    if sel.name.value not in labels:
                        self.error("E112", f"no charge named \"{sel.name.value}\" in this agreement", sel.name.span,
                                   did_you_mean(sel.name.value, labels, "charges"))
                elif len(sel.words) == 2:
                    if (sel.words[0].text, sel.words[1].text) not in info.services:
                        self.error("E110", f"'{sel.text}' is not priced by this agreement", sel.span,
                                   did_you_mean(sel.text, [" ".join(k) for k in info.services], "priced services"))
                elif sel.words[0].text not in kinds:
                    self.error("E113", f"unknown charge kind '{sel.text}'", sel.span,
                               did_you_mean(sel.text, kinds, "charge kinds"))
                if sel.text in placed:
                    self.error("E311", f"'{sel.text}' is on two invoice streams", sel.span,
                               f"it is already on the stream at {placed[sel.text]}")
                placed[sel.text] = st.span

    def _amendments(self) -> None:
        """Resolve ``amends vN`` and ``ends vN on DATE``: each cuts an earlier version of the same
        agreement short, whatever end date it was written with (see docs/language.md, Amending)."""
        by_key = {(i.node.name.value, i.node.version_number): i for i in self.out.agreements}
        amenders: list[tuple[Any, ast.Ident, AgreementInfo | None]] = [
            (i.node, i.node.amends, i) for i in self.out.agreements if i.node.amends is not None]
        amenders += [(e.node, e.node.ends, None) for e in self.out.endings]
        amenders.sort(key=lambda t: (t[0].name.value, t[0].version_number))
        for node, ref, info in amenders:
            self._failed_amendments.add(id(node))  # until it is resolved below
            name, own = node.name.value, node.version.text
            if node.version_number <= 0:
                self.error("E224", "versions start at v1", node.version.span)
                continue
            target = by_key.get((name, int(ref.text[1:])))
            others = sorted((v for n, v in by_key if n == name and v < node.version_number))
            if int(ref.text[1:]) >= node.version_number:
                self.error("E319", f"{own} can only amend or end an earlier version of \"{name}\", not {ref.text}",
                           ref.span, f"earlier versions: {', '.join(f'v{v}' for v in others)}" if others else
                           f"there is no earlier version of \"{name}\"")
                continue
            if target is None:
                self.error("E319", f"\"{name}\" has no version {ref.text}", ref.span,
                           f"its earlier versions: {', '.join(f'v{v}' for v in others)}" if others else
                           f"there is no earlier version of \"{name}\" in these files")
                continue
            partner = node.partner.text if node.partner else "any partner"
            theirs = target.node.partner.text if target.node.partner else "any partner"
            if partner != theirs:
                self.error("E319", f"{ref.text} of \"{name}\" is with {theirs}, not {partner}", ref.span,
                           f"write 'with {theirs}' as {ref.text} does ({target.node.span})")
                continue
            if target.start is None:
                continue
            if isinstance(node, ast.AgreementEndDecl):
                last = self.date(node.last_day)
                what, at = f"'ends {ref.text} on {node.last_day.text}'", node.last_day.span
            else:
                assert info is not None
                if info.start is None:
                    continue
                last = info.start - timedelta(days=1)
                what, at = f"'amends {ref.text}'", ref.span
            if last is None:
                continue
            if target.amended_by is not None:
                first = target.amended_by
                self.error("E321", f"{ref.text} of \"{name}\" is already "
                           f"{'amended' if isinstance(first, ast.AgreementDecl) else 'ended'} by {first.version.text}",
                           at, f"{first.version.text} is at {first.span}; a version is amended or ended once: "
                           + (f"to change the terms again, write 'amends {first.version.text}'"
                              if isinstance(first, ast.AgreementDecl) else
                              f"change {first.version.text} itself if it is not loaded into a store yet"))
                continue
            if last < target.start:
                self.error("E320", f"{what} leaves {ref.text} no day in force: {ref.text} starts on {target.start}",
                           at, f"{own} must start after {ref.text}'s first day ({target.start})"
                           if info is not None else f"the last day must be on or after {target.start}")
                continue
            if target.end is not None and last >= target.end:
                self._failed_amendments.discard(id(node))  # nothing to do: not a failure
                self.warning("W301", f"{what} changes nothing: {ref.text} already ends on {target.end}", at,
                             f"remove {what}" if info is not None else
                             f"{ref.text} ends on {target.end} as written: remove this version, or end it earlier")
                continue
            target.amended_by, target.last_day = node, last
            self._failed_amendments.discard(id(node))

    def _overlaps(self) -> None:
        by_name: dict[str, list[AgreementInfo]] = {}
        for info in self.out.agreements:
            by_name.setdefault(info.node.name.value, []).append(info)
        far = date.max
        for infos in by_name.values():
            infos.sort(key=lambda i: i.node.version_number)
            for i, a in enumerate(infos):
                for b in infos[i + 1 :]:
                    if None in (a.start, b.start):
                        continue
                    a_end, b_end = a.in_force_to, b.in_force_to
                    if id(b.node) in self._failed_amendments:
                        continue  # its `amends` was reported: one error, not two
                    if a.start <= (b_end or far) and b.start <= (a_end or far):
                        self.error("E303", f"versions {a.node.version.text} and {b.node.version.text} of "
                                           f"\"{a.node.name.value}\" are both in force on {max(a.start, b.start)}",
                                   b.node.version.span, _overlap_help(a, b))

    # ------------------------------------------------------------------ charges
    def _charge(self, c: ast.ChargeNode, scope: tuple[tuple[str, str], ...], info: AgreementInfo | None) -> None:
        ct = self.out.charge_types.get(c.kind)
        if ct is None:
            self.error("E114", f"unknown charge type '{c.kind}'", c.kind_span,
                       did_you_mean(c.kind, self.out.charge_types, "installed charge types")
                       or "is the plugin that provides it installed? ('icdsl plugins' lists them)")
            return
        if unbound(self, c):
            return
        if c.generic and c.kind in CONTRACT_WORDING and type(ct).__module__ == "icdsl.charges.builtin":
            # a built-in charge has its own wording; 'charge KIND "..." { key: value }' is the form of
            # plugins' charge types, whose parameters they check themselves
            self.error("E206", f"a built-in {c.kind.replace('_', ' ')} charge is written as the contract says "
                               f"it, not as 'charge {c.kind}'", c.kind_span,
                       f"write e.g. '{CONTRACT_WORDING[c.kind]}' (docs/charges.md)")
            return
        if info is not None:
            info.charges.append((c, scope))
        for o in c.options:
            self._option(o, info)
            if o.key == "counts" and c.kind != "commitment":
                self.error("E343", "only a commitment chooses which charges count", o.span,
                           "drop ', counts ...' here; write it on a 'commit ...'")
            if o.key == "capacity" and (c.kind != "tiered_price" or getattr(c.param("mode"), "text", "") != "volume"):
                self.error("E347", "a capacity is priced by the one tier reached: only a 'tiered ... volume' "
                                   "shares one", o.span,
                           "write each unit's tiers as 'tiered \"...\" volume on messages per cycle { ... }, "
                           "capacity \"NAME\"'")
        if c.kind == "usage_cap":
            self._usage_cap(c, scope, info)
        ct.check(c, self)

    def _usage_cap(self, c: ast.ChargeNode, scope: tuple[tuple[str, str], ...], info: AgreementInfo | None) -> None:
        """``at most MONEY per PERIOD`` (a service's, or the agreement's): positive, in the currency of
        what it caps (the service's price, or the agreement's), per a billing period."""
        money, per = c.param("amount"), c.param("period")
        si = info.services.get(scope[0]) if info is not None and scope else None
        currency = si.currency if si is not None else (info.currency if info is not None else "")
        ok = self.currency(money.currency)
        if money.amount.value <= 0:
            self.error("E213", f"a maximum cost must be positive, not {money.amount.text}", money.amount.span,
                       "write the most the period's usage may cost, e.g. 'at most 5000.00 EUR per month'")
        elif ok and currency and money.currency.text != currency:
            what = "the service prices" if si is not None else "the agreement bills"
            self.error("E322", f"the maximum cost is in {money.currency.text} but {what} in {currency}",
                       money.currency.span, f"usage is capped in its own currency: write the cap in {currency}")
        for o in c.options:
            if o.key not in ("prorate", "stream", "tax"):
                self.error("E206", f"a maximum cost per period takes ', prorate daily' (or none), not '{o.key}'",
                           o.span, "drop the option; write e.g. 'at most 5000.00 EUR per month, prorate daily'")
        if per.text == "call" and not scope:
            self.error("E206", "a maximum cost per call belongs in a service", per.span,
                       "move 'at most ... per call' into the service it caps, or cap a period: "
                       "'at most 5000.00 EUR per month'")
        elif per.text not in VOCAB["cap period"]:
            self.error("E206", f"a maximum cost is per call, {', '.join(VOCAB['cap period'][:-1])} or "
                               f"{VOCAB['cap period'][-1]}, not per '{per.text}'", per.span,
                       did_you_mean(per.text, ("call",) + VOCAB["cap period"], "periods")
                       or "write e.g. 'at most 5000.00 EUR per month'")

    def _charge_currency(self, c: ast.ChargeNode, info: AgreementInfo) -> None:
        amount = c.param("amount")
        money = amount.money if isinstance(amount, ast.MoneyPer) else amount
        if isinstance(money, ast.Money):
            self.currency_matches(money.currency, info.currency, "this charge")

    def _option(self, o: ast.Setting, info: AgreementInfo | None) -> None:
        v = o.values
        if o.key == "prorate":
            self.word(v[0], "proration")
        elif o.key == "in":
            self.word(v[0], "billing timing")
        elif o.key == "shortfall":
            self.word(v[0], "shortfall")
        elif o.key == "counts":
            self.word(v[0], "commitment count")
        elif o.key == "day_count":
            self.word(v[0], "day count")
        elif o.key == "anchor":
            self.word(v[0], "periods from")
        elif o.key == "tax":
            self.word(v[0], "tax treatment")
        elif o.key == "of" and info is not None:
            d, s = v
            if (d.text, s.text) not in info.services and (d.text, s.text) not in {
                    (x.direction.text, x.service.text) for x in info.node.services}:
                self.error("E110", f"'{d.text} {s.text}' is not priced by this agreement", o.span)
        elif o.key == "when":
            self.expr(v[0], info.partner if info else None)
        elif o.key == "stream" and info is not None:
            names = {st.name.text for st in info.node.streams}
            self._charge_streams.setdefault(id(info.node), set()).add(v[0].text)
            if names and v[0].text not in names:
                self.error("E115", f"unknown invoice stream '{v[0].text}'", v[0].span,
                           did_you_mean(v[0].text, names, "streams"))

    # ------------------------------------------------------------------ examples
    def _example(self, ex: ast.ExampleDecl) -> None:
        if ex.direction is not None:
            self.word(ex.direction, "direction")
        for o in ex.options:
            v = o.values
            if o.key == "partner" and v[0].text not in self.out.partners:
                self.error("E104", f"unknown partner '{v[0].text}'", v[0].span,
                           did_you_mean(v[0].text, self.out.partners, "declared partners"))
            elif o.key == "agreement":
                names = {i.node.name.value for i in self.out.agreements}
                if v[0].value not in names:
                    self.error("E116", f"no agreement named \"{v[0].value}\"", v[0].span,
                               did_you_mean(v[0].value, names, "agreements"))
            elif o.key == "at":
                self.date(v[0])
                if parse_time(v[1].text) is None or v[1].text.startswith("24"):
                    self.error("E221", f"'{v[1].text}' is not a time of day", v[1].span)
                if len(v) > 2:
                    self.timezone(v[2])
            elif o.key == "for":
                self.seconds(v[0])
            elif o.key == "volume":
                self.volume_bytes(v[0])
        if ex.number is None and not ex.fields:
            self.error("E117", "the example has no record", ex.span,
                       "describe one, e.g. 'outbound voice to 33612345678 at 2026-03-04 09:15 Europe/Paris for 61 s'")
        if not ex.expectations:
            self.error("E118", "the example expects nothing", ex.span,
                       "add e.g. 'expect billed 66 s, band peak, amount 0.022000 EUR'")
        REJECT_CODES = self.reject_reasons  # noqa: N806

        for e in ex.expectations:
            if e.key == "billed":
                q = e.values[0]
                if q.unit.text not in TIME_UNITS and q.unit.text not in VOLUME_UNITS and q.unit.text not in (
                        "message", "messages", "event", "events"):
                    self.error("E206", f"unknown unit '{q.unit.text}'", q.unit.span)
            elif e.key in ("amount", "rate"):
                self.currency(e.values[0].currency)
            elif e.key == "rejected" and e.values[0].text not in REJECT_CODES:
                self.error("E201", f"unknown reject reason '{e.values[0].text}'", e.values[0].span,
                           did_you_mean(e.values[0].text, REJECT_CODES, "reasons"))

    # ------------------------------------------------------------------ cycle examples
    def _cycle_example(self, cx: CycleExampleInfo) -> None:
        ex = cx.node
        seen: dict[str, Span] = {}
        for st in ex.settings:
            if st.key in seen:
                self.error("E103", f"'{st.key}' is set twice in this example", st.span, f"the first is at {seen[st.key]}")
            seen[st.key] = st.span
        period = ex.setting("period")
        if period is None:
            self.error("E117", "the cycle example has no period", ex.name.span,
                       "say which billing cycle it describes, e.g. 'period 2026-03' (a month) or "
                       "'period 2026-03-01 .. 2026-03-31'")
        elif not self._cycle_days(cx, period):
            period = None
        if not ex.expectations:
            self.error("E118", "the example expects nothing", ex.name.span,
                       "add e.g. 'expect line \"E1 port rental\" 150.00 EUR' or 'expect total 150.00 EUR'")
        for it in ex.items:
            start, end = self.date(it.start), self.date(it.end)
            if start and end and end < start:
                self.error("E302", f"the item's last day ({it.end.text}) is before its first ({it.start.text})",
                           it.end.span)
            if it.quantity is not None and it.quantity.value <= 0:
                self.error("E213", f"the quantity {it.quantity.text} must be positive", it.quantity.span)
        for ev in ex.events:
            self.date(ev.day)
            self._whole(ev.count, "events are counted in whole numbers")
        partner = self._cycle_partner(cx)
        if partner is None or period is None:
            return
        infos = self._cycle_agreements(cx)
        if not infos:
            return
        self._cycle_body(cx, infos)

    def _whole(self, n: ast.Num, message: str) -> bool:
        if n.value != int(n.value) or n.value < 0:
            self.error("E215", f"{n.text}: {message}", n.span)
            return False
        return True

    def _cycle_days(self, cx: CycleExampleInfo, period: ast.Setting) -> bool:
        v = period.values
        if len(v) == 1:
            text = v[0].text
            year, month = int(text[:4]), int(text[5:7])
            if not 1 <= month <= 12:
                self.error("E225", f"'{text}' is not a month", v[0].span, "months read YYYY-MM, e.g. 2026-03")
                return False
            if not FIRST_DAY.year <= year <= LAST_DAY.year:
                self.error("E228", f"the month {text} is out of range", v[0].span, DATE_HELP)
                return False
            cx.start = date(year, month, 1)
            cx.end = date(year + (month == 12), month % 12 + 1, 1)
            cx.label = text
            return True
        first, last = self.date(v[0]), self.date(v[1])
        if first is None or last is None:
            return False
        if last < first:
            self.error("E302", f"the period ends ({v[1].text}) before it starts ({v[0].text})", v[1].span)
            return False
        cx.start, cx.end = first, last + timedelta(days=1)
        cx.label = f"{first.isoformat()}..{last.isoformat()}"
        return True

    def _in_force(self, info: AgreementInfo, cx: CycleExampleInfo) -> bool:
        if info.start is None or cx.start is None or cx.end is None:
            return False
        return info.start < cx.end and (info.end is None or info.end + timedelta(days=1) > cx.start)

    def _cycle_partner(self, cx: CycleExampleInfo) -> str | None:
        ex = cx.node
        st = ex.setting("partner")
        if st is not None:
            code = st.values[0]
            if code.text not in self.out.partners:
                self.error("E104", f"unknown partner '{code.text}'", code.span,
                           did_you_mean(code.text, self.out.partners, "declared partners"))
                return None
            cx.partner = code.text
            return cx.partner
        named = ex.setting("agreement")
        infos = [i for i in self.out.agreements if named is None or i.node.name.value == named.values[0].value]
        codes = {i.node.partner.text for i in infos if i.node.partner is not None}
        if len(codes) == 1:
            cx.partner = codes.pop()
        elif len(self.out.partners) == 1:
            cx.partner = next(iter(self.out.partners))
        else:
            self.error("E125", "which partner's cycle is this?", ex.name.span,
                       "add 'partner CODE' to the example" + (f" (one of {', '.join(sorted(codes))})" if codes else ""))
            return None
        return cx.partner

    def _cycle_agreements(self, cx: CycleExampleInfo) -> list[AgreementInfo]:
        """The versions of the example's agreement in force in its period (none: an error)."""
        ex = cx.node
        named = ex.setting("agreement")
        mine = [i for i in self.out.agreements
                if i.node.partner is None or i.node.partner.text == cx.partner]
        if named is not None:
            name = named.values[0]
            names = {i.node.name.value for i in self.out.agreements}
            if name.value not in names:
                self.error("E116", f"no agreement named \"{name.value}\"", name.span,
                           did_you_mean(name.value, names, "agreements"))
                return []
            mine = [i for i in mine if i.node.name.value == name.value]
            if not mine:
                self.error("E125", f"\"{name.value}\" is not an agreement with {cx.partner}", name.span,
                           "name the partner the agreement is with")
                return []
        in_force = [i for i in mine if self._in_force(i, cx)]
        if named is None and any(i.node.partner is not None for i in in_force):
            # an agreement with this partner comes before the agreements with any partner
            in_force = [i for i in in_force if i.node.partner is not None]
        names = sorted({i.node.name.value for i in in_force})
        period = ex.setting("period")
        if not names:
            where = period.span if period is not None else ex.name.span
            known = "; ".join(f"\"{i.node.name.value}\" {i.node.version.text} {i.node.start.text} .. "
                              f"{i.node.end.text if i.node.end else ''}".rstrip() for i in mine)
            self.error("E125", f"no agreement with {cx.partner} is in force in {cx.label}", where,
                       f"agreements: {known}" if known else f"declare an agreement with {cx.partner}")
            return []
        if len(names) > 1:
            self.error("E125", f"{len(names)} agreements with {cx.partner} are in force in {cx.label}", ex.name.span,
                       "name one: " + ", ".join(f"'agreement \"{n}\"'" for n in names))
            return []
        cx.agreement = names[0]
        return sorted(in_force, key=lambda i: i.node.version_number)

    def _service_kind(self, si: ServiceInfo) -> str:
        if si.unit in VOLUME_UNITS or si.node.setting("volume_rounding") or si.node.setting("volume_minimum"):
            return "volume"
        if si.unit in TIME_UNITS:
            return "time"
        return "count"

    def _cycle_service(self, infos: list[AgreementInfo], d: ast.Ident, s: ast.Ident,
                       version: ast.Ident | None = None) -> ServiceInfo | None:
        key = (d.text, s.text)
        chosen = [i for i in infos if version is None or i.node.version.text == version.text]
        for info in reversed(chosen):
            if key in info.services:
                return info.services[key]
        priced = sorted({" ".join(k) for i in chosen for k in i.services})
        self.error("E110", f"'{d.text} {s.text}' is not priced by this agreement", _join_spans(d.span, s.span),
                   did_you_mean(f"{d.text} {s.text}", priced, "priced services"))
        return None

    @staticmethod
    def agreement_currency(infos: list[AgreementInfo]) -> str:
        return infos[-1].currency

    def _cycle_body(self, cx: CycleExampleInfo, infos: list[AgreementInfo]) -> None:
        ex = cx.node
        versions = {i.node.version.text: i for i in infos}
        for t in ex.traffic:
            opts: dict[str, Span] = {}
            for o in t.options:
                if o.key in opts:
                    self.error("E103", f"'{o.key}' is given twice for this traffic", o.span, f"the first is at {opts[o.key]}")
                opts[o.key] = o.span
            v = t.option("version")
            if v is not None and v.values[0].text not in versions:
                self.error("E125", f"{v.values[0].text} of \"{cx.agreement}\" is not in force in {cx.label}",
                           v.values[0].span, "versions in force: " + ", ".join(versions))
                continue
            si = self._cycle_service(infos, t.direction, t.service, v.values[0] if v is not None else None)
            if si is None:
                continue
            kind = cx.kinds[(t.direction.text, t.service.text)] = self._service_kind(si)
            cx.currencies[(t.direction.text, t.service.text)] = si.currency or self.agreement_currency(infos)
            q = t.quantity
            what = f"{t.direction.text} {t.service.text}"
            if kind == "time":
                if q.unit.text not in TIME_UNITS:
                    self.error("E206", f"{what} is priced by time: give its traffic in minutes or seconds, "
                                       f"not '{q.unit.text}'", q.unit.span, "e.g. 'traffic outbound voice 650_000 minutes'")
                else:
                    self.seconds(q)
            elif kind == "volume":
                if q.unit.text not in VOLUME_UNITS:
                    self.error("E206", f"{what} is priced by volume: give its traffic in KB, MB or GB, "
                                       f"not '{q.unit.text}'", q.unit.span, "e.g. 'traffic outbound data 2_500_000 MB'")
                else:
                    self.volume_bytes(q)
            elif q.unit.text not in COUNTED + (si.unit, f"{si.unit}s"):  # the price's own word too
                self.error("E206", f"{what} is priced per {si.unit}: give its traffic in {si.unit}s, "
                                   f"not '{q.unit.text}'", q.unit.span,
                           did_you_mean(q.unit.text, COUNTED + (si.unit, f"{si.unit}s"), "units"))
            else:
                self._whole(q.value, "a count of messages or events is a whole number")
            for o in t.options:
                if o.key in ("for", "surcharges"):
                    m = o.values[0]
                    if self.money(m) and si.currency and m.currency.text != si.currency:
                        self.error("E318", f"{what} is priced in {si.currency}: its {'amount' if o.key == 'for' else 'surcharges'} "
                                           f"must be in {si.currency} too", m.currency.span,
                                   f"write e.g. '{m.amount.text} {si.currency}'")
                elif o.key == "in":
                    n = o.values[0]
                    if n.unit.text not in RECORD_WORDS:
                        self.error("E206", f"'{n.unit.text}' does not count records", n.unit.span,
                                   did_you_mean(n.unit.text, RECORD_WORDS, "words"))
                    self._whole(n.value, "records are counted in whole numbers")
        for r in ex.refunds:
            si = self._cycle_service(infos, r.direction, r.service)
            if si is not None and self.money(r.amount) and si.currency and r.amount.currency.text != si.currency:
                self.error("E318", f"{r.direction.text} {r.service.text} is priced in {si.currency}: its refunds "
                                   f"must be in {si.currency} too", r.amount.currency.span)
        charges = [(c, info) for info in infos for c, _ in info.charges]
        self._cycle_inventory(ex, charges)
        self._cycle_expectations(ex, charges)
        self._cycle_progressive(cx, infos)

    def _cycle_progressive(self, cx: CycleExampleInfo, infos: list[AgreementInfo]) -> None:
        """Days of traffic (``on DAY``) and of progressive billing checks lie in the period; the
        checks need an agreement that bills progressively, and traffic in the invoice currency."""
        ex = cx.node
        days = [o.values[0] for t in ex.traffic for o in t.options if o.key == "on"]
        days += [e.day for e in ex.expectations if e.day is not None]
        for d in days:
            day = self.date(d)
            if day is not None and cx.start is not None and not cx.start <= day < cx.end:
                self.error("E128", f"{d.text} is not a day of {cx.label}", d.span,
                           f"the period runs from {cx.start} to {cx.end - timedelta(days=1)}")
        checks = [e for e in ex.expectations if e.key in ("interim", "no_interim", "invoice")]
        if not checks:
            return
        if not any(st.key == "progressive" for i in infos for st in i.node.settings):
            self.error("E128", f"\"{cx.agreement}\" does not bill progressively: no interim invoice to expect",
                       checks[0].span, "say so in the agreement, e.g. 'progressive billing at 200.00 EUR'")
            return
        currency = self.agreement_currency(infos)
        for t in ex.traffic:
            cur = cx.currencies.get((t.direction.text, t.service.text))
            if cur is not None and cur != currency:
                self.error("E128", f"{t.direction.text} {t.service.text} is priced in {cur}: an example's interim "
                                   f"invoices add traffic in the invoice currency ({currency})", t.span,
                           "check this agreement's progressive billing with 'icdsl cycle progressive'")

    def _cycle_inventory(self, ex: ast.CycleExampleDecl, charges) -> None:
        any_kind = any(c.generic for c, _ in charges)
        kinds = {c.param("per_inventory").text for c, _ in charges if isinstance(c.param("per_inventory"), ast.Ident)}
        for it in ex.items:
            if not any_kind and it.kind.text not in kinds:
                self.error("E123", f"no charge of this agreement counts items of kind '{it.kind.text}'", it.kind.span,
                           did_you_mean(it.kind.text, kinds, "kinds counted ('per inventory KIND')")
                           or "no charge of this agreement is 'per inventory'")
        any_event = any(c.generic or _measures_events(c) for c, _ in charges)
        events = {c.param("event").text for c, _ in charges
                  if c.kind in ("event", "percentage") and isinstance(c.param("event"), ast.Ident)}
        for ev in ex.events:
            if ev.worth is not None:
                self.money(ev.worth)
            if not any_event and ev.event.text not in events:
                self.error("E124", f"no charge of this agreement counts '{ev.event.text}' events", ev.event.span,
                           did_you_mean(ev.event.text, events, "events counted") or "no charge of this agreement counts events")

    def _cycle_expectations(self, ex: ast.CycleExampleDecl, charges) -> None:
        labels: dict[str, list[ast.ChargeNode]] = {}
        for c, _ in charges:
            labels.setdefault(c.label.value if c.label else c.kind, []).append(c)
        items = {it.item_id.value for it in ex.items}
        for e in ex.expectations:
            if e.amount is not None:
                self.currency(e.amount.currency)
            if e.label is None:
                continue
            found = labels.get(e.label.value)
            if found is None:
                self.error("E112", f"no charge named \"{e.label.value}\" in this agreement", e.label.span,
                           did_you_mean(e.label.value, labels, "charges"))
                continue
            ct = self.out.charge_types.get(found[0].kind)
            if getattr(ct, "per_record", False):
                self.error("E126", f"\"{e.label.value}\" is charged per record, not per cycle", e.label.span,
                           "check it with a record example ('example \"...\" { ... }'); a cycle's traffic can "
                           "give its total as 'surcharges AMOUNT'")
                continue
            if e.subject is not None:
                parties = {p.party.text for c in found for p in _parties(c)}
                subject = e.subject.value if isinstance(e.subject, ast.Str) else e.subject.text
                if subject not in parties | items:
                    self.error("E127", f"no line of \"{e.label.value}\" can be for '{subject}'", e.subject.span,
                               did_you_mean(subject, parties | items, "its parties and the example's items")
                               or "name a party of the revenue share or an item of the example")


#: record fields that are not prices (``price from field NAME``)
RESERVED_FIELDS = ("id", "partner", "direction", "service", "start", "duration_s", "units", "volume",
                   "b_number", "a_number")

#: what a count service's traffic is given in, and the words that count records
COUNTED = ("message", "messages", "event", "events", "unit", "units")
RECORD_WORDS = ("call", "calls", "record", "records", "session", "sessions")


def _join_spans(a: Span, b: Span) -> Span:
    return Span(a.file, a.line, a.col, b.end_line, b.end_col)


def _measures_events(c: ast.ChargeNode) -> bool:
    on, amount = c.param("on"), c.param("amount")
    return (isinstance(on, ast.Ident) and on.text == "events") or (
        isinstance(amount, ast.Quantity) and amount.unit.text in ("event", "events"))


def _parties(c: ast.ChargeNode) -> list[ast.SharePartyNode]:
    out = list(c.param("parties") or ())
    for t in c.param("tiers") or ():
        if isinstance(t, ast.ShareTierNode):
            out.extend(t.parties)
    return out


def _overlap_help(a: AgreementInfo, b: AgreementInfo) -> str:
    """How to write it: the later version amends the earlier one from its own first day (the
    earlier version's text, loaded or not, stays as it is)."""
    va, vb = a.node.version.text, b.node.version.text
    assert a.start is not None and b.start is not None
    if b.start > a.start and b.node.amends is None:
        period = f"{b.node.start.text} .. {b.node.end.text if b.node.end else ''}".rstrip()
        return (f"{va} is at {a.node.span}; to replace {va} from {b.start} whatever its end date, write "
                f"'effective {period} amends {va}' on {vb} ({va} stays as written, in force until "
                f"{_day_before(b.start)})")
    if b.start > a.start:
        assert b.node.amends is not None
        return (f"{va} is at {a.node.span}; {vb} amends {b.node.amends.text}, not {va}: a version amends the one "
                f"in force on its first day ({va} here); end {va} before {b.start} with another version")
    return (f"{va} is at {a.node.span}; a later version starts after the one it follows: "
            f"give {vb} a first day after {a.start} (and 'amends {va}'), or end {vb} before {a.start}")


def _day_before(d: date) -> str:
    return (d - timedelta(days=1)).isoformat()


def check(program: Program, charge_types: dict[str, Any] | None = None, pm: Any = None
          ) -> tuple[Checked, list[Diagnostic]]:
    return Checker(program, charge_types, pm).run()


#: invoice fields that differ from line to line: never a layout's constant
INVOICE_COLUMN_ONLY = ("amount", "quantity", "calls", "rate", "line", "destination", "prefix")
#: the services every project knows, whether or not an agreement prices them
STANDARD_SERVICES = ("voice", "sms", "mms", "data")
ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "cp1252", "iso-8859-15", "utf-16")


def date_format_problem(fmt: str) -> str | None:
    """Why ``fmt`` cannot read a day (None when it can): it must name the year, month and day
    and read back what it writes."""
    if not any(d in fmt for d in ("%d", "%j")) or not any(y in fmt for y in ("%Y", "%y")) \
            or not any(m in fmt for m in ("%m", "%b", "%B", "%j")):
        return "it must give the year (%Y), the month (%m) and the day (%d)"
    sample = datetime(2026, 3, 31)
    try:
        text = sample.strftime(fmt)
        back = datetime.strptime(text, fmt)
    except (ValueError, TypeError) as e:
        return str(e)
    if back.date() != sample.date():
        return "it does not read back the day it writes"
    return None


def _named_sets(rows) -> list[tuple[str, Span]]:
    """The slot sets the rows of a table name, with where: every inline row that names one; a deck
    read as columns, each distinct name once, at its first row's line."""
    if isinstance(rows, RateColumns):
        if rows.slot_sets is None:
            return []
        first: dict[str, int] = {}
        for i, name in enumerate(rows.slot_sets):
            if name is not None and name not in first:
                first[name] = i
        return [(name, rows.span_at(i)) for name, i in first.items()]
    return [(r.slot_set, r.slot_set_span or r.span) for r in rows if r.slot_set is not None]
