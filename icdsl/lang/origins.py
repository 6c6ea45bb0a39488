"""Checking origins: zones, number-range tables and the origin keys of rate decks.

The checker (:mod:`icdsl.lang.checker`) calls these with itself, the way charge types check
their statements: every problem is a located diagnostic, all reported at once.

- ``zone NAME { ... }``: countries are ISO 3166 codes with a calling code of their own (a
  country that shares one, such as Canada's +1, is written as its prefixes); prefixes are
  digits; ``zone OTHER`` includes another zone (no circles). A zone resolves to a sorted tuple of
  prefixes.
- ``numbers NAME from "..." ported "..."``: both files inside the project, read by
  :mod:`icdsl.lang.numbers` with problems at their CSV line.
- a deck's origin columns: zones must be declared; countries valid; operators and circles must
  occur in the service's number-range table (``numbers NAME`` in the service).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from icdsl.lang import ast
from icdsl.lang.diagnostics import did_you_mean
from icdsl.lang.loader import display_path, is_file, path_help, resolve_project_path
from icdsl.lang.numbers import NumberRanges, read_ported, read_ranges
from icdsl.lang.values import short_text
from icdsl.spans import Span

#: the origin fields that need the service's number-range table
NEEDS_NUMBERS = ("origin_operator", "origin_circle", "destination_operator", "destination_circle")


#: the label of the zero surcharge that marks a refiled record (``refile origin ZONE flag``):
#: ``Refile flag (origin outside ZONE)``; the cycle reports the records it marks
REFILE_FLAG = "Refile flag"


@dataclass
class ZoneInfo:
    node: ast.ZoneDecl
    prefixes: tuple[str, ...] = ()


@dataclass
class NumbersInfo:
    node: ast.NumbersDecl
    file: str
    table: NumberRanges | None = None
    operators: set[str] = field(default_factory=set)
    circles: set[str] = field(default_factory=set)


def calling_code(country: str) -> tuple[str | None, str | None]:
    """The calling code of an ISO 3166 country (``FR`` -> ``33``), or (None, what is wrong)."""
    # lazy: phonenumbers' metadata is loaded only by rules that name origin countries
    import phonenumbers

    region = country.upper()
    code = phonenumbers.country_code_for_region(region)
    if not code:
        return None, f"'{country}' is not a country code with a telephone calling code"
    main = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if main and main[0] != region:
        return None, (f"{region} shares calling code +{code} with {main[0]}; write its prefixes as strings "
                      f"(e.g. \"{code}...\") instead")
    return str(code), None


def check_zones(ch: Any, zones: dict[str, ZoneInfo]) -> None:
    """Resolve every zone to its prefixes; report bad countries, prefixes, includes, circles
    (a problem met again through an include is the same diagnostic, reported once)."""

    def resolve(name: str, stack: tuple[str, ...]) -> tuple[str, ...]:
        z = zones[name].node
        out: set[str] = set()
        for c in z.countries:
            code, problem = calling_code(c.text)
            if code is None:
                ch.error("E421", f"zone {name}: {problem}", c.span, "countries are ISO 3166 codes such as FR, DE, IN")
                continue
            out.add(code)
        for p in z.prefixes:
            digits = p.value.lstrip("+")
            if not digits.isascii() or not digits.isdigit() or len(digits) > 16:
                ch.error("E421", f"zone {name}: prefix '{short_text(p.value)}' is not a string of digits", p.span,
                         "write E.164 digits, e.g. \"3519\"")
                continue
            out.add(digits)
        for inc in z.includes:
            if inc.text not in zones:
                ch.error("E422", f"unknown zone '{inc.text}'", inc.span,
                         did_you_mean(inc.text, zones, "zones") or "declare it with 'zone NAME { ... }'")
                continue
            if inc.text in stack + (name,):
                how = "itself" if inc.text == name else f"itself through zone {inc.text}"
                ch.error("E423", f"zone {name} includes {how}", inc.span, "remove the include that closes the circle")
                continue
            out.update(resolve(inc.text, stack + (name,)))
        return tuple(sorted(out))

    for name, info in zones.items():
        info.prefixes = resolve(name, ())
        if not info.prefixes and not _reported_in(ch, info.node.span):
            ch.warning("W421", f"zone {name} holds no country or prefix", info.node.name.span)


def _reported_in(ch: Any, span: Span) -> bool:
    return any(d.span.file == span.file and span.line <= d.span.line <= span.end_line for d in ch.diags)


def check_numbers(ch: Any, info: NumbersInfo) -> None:
    """Read the ranges (and ported numbers) of one ``numbers`` declaration."""
    n = info.node
    base = ch.program.path_of(info.file).parent
    paths = []
    for ref in (n.ranges, n.ported):
        if ref is None:
            paths.append(None)
            continue
        path, problem = resolve_project_path(ref.value, base, ch.program.root)
        if problem:
            ch.error("E411", problem, ref.span, path_help(ref.value, "number-range tables live inside the project"))
            return
        if not is_file(path):
            ch.error("E412", f"cannot find the number-range table '{short_text(ref.value)}'", ref.span,
                     f"looked for {short_text(display_path(path), 80)}; the path is relative to this rule file")
            return
        paths.append(path)
    table, diags = read_ranges(paths[0], display_path(paths[0]), n.ranges.span)
    ch.diags.extend(diags)
    ported, ported_sha = None, None
    if paths[1] is not None:
        ported, ported_sha, pdiags = read_ported(paths[1], display_path(paths[1]), n.ported.span)
        ch.diags.extend(pdiags)
        if ported is None:
            return
    if table is None:
        return
    if ported is not None:
        table = NumberRanges(table.source, table.sha256, table.prefixes, table.operators, table.circles,
                             table.countries, table.lines, ported, display_path(paths[1]), ported_sha)
    info.table = table
    info.operators = set(table.operators) | {p[1] for p in table.ported}
    info.circles = {c for c in table.circles if c} | {p[2] for p in table.ported if p[2]}


def check_origin_keys(ch: Any, numbers: NumbersInfo | None, service_span: Span,
                      keys: list[tuple[tuple[tuple[str, str], ...], Span]]) -> None:
    """The origin keys of a deck's rows: each distinct (field, value) checked once, at its first row."""
    zones = ch.out.zones
    first: dict[tuple[str, str], Span] = {}
    for key, span in keys:
        for fv in key:
            first.setdefault(fv, span)
    fields = {f for f, _ in first}
    needs = sorted(fields & set(NEEDS_NUMBERS))
    if needs and numbers is None:
        f = needs[0]
        ch.error("E431", f"the rate table keys rows by {f.replace('_', ' ')}, but the service names no "
                         "number-range table", first[next(fv for fv in first if fv[0] == f)],
                 "add 'numbers NAME' to the service (and 'numbers NAME from \"ranges.csv\"' to the rules)")
    for (f, value), span in first.items():
        if f == "origin_zone" and value not in zones:
            ch.error("E422", f"unknown zone '{value}'", span,
                     did_you_mean(value, zones, "zones") or "declare it with 'zone NAME { ... }'")
        elif f == "origin_country":
            code, problem = calling_code(value)
            if code is None:
                ch.error("E421", f"origin country: {problem}", span, "countries are ISO 3166 codes such as FR")
        elif f in ("origin_operator", "destination_operator") and numbers is not None and numbers.table is not None:
            if value not in numbers.operators:
                ch.error("E432", f"operator '{value}' is not in the number-range table '{numbers.node.name.text}'",
                         span, did_you_mean(value, sorted(numbers.operators), "its operators")
                         or "operators are those of the ranges and ported numbers")
        elif (f in ("origin_circle", "destination_circle") and numbers is not None and numbers.table is not None
              and value not in numbers.circles):
            ch.error("E432", f"circle '{value}' is not in the number-range table '{numbers.node.name.text}'",
                     span, did_you_mean(value, sorted(numbers.circles), "its circles")
                     or "circles are those of the ranges and ported numbers")


NUMBER_FIELDS = NEEDS_NUMBERS  # the condition fields a number-range table answers


def _field_refs(node: Any):
    """Every FieldRef in a charge's conditions (params and options)."""
    if isinstance(node, ast.FieldRef):
        yield node
    elif isinstance(node, (list, tuple)):
        for x in node:
            yield from _field_refs(x)
    elif hasattr(node, "__dataclass_fields__") and not isinstance(node, (ast.Ident, ast.Str, ast.Num)):
        for name in node.__dataclass_fields__:
            if name != "span":
                yield from _field_refs(getattr(node, name))


def check_number_fields(ch: Any, info: Any) -> None:
    """W431: a condition reads ``origin_operator`` (or the like) for records of a service that
    names no number-range table: the field is always empty there, the condition never true."""
    for c, scope in info.charges:
        refs = [f for f in _field_refs((c.params, c.options)) if len(f.path) == 1 and f.path[0] in NUMBER_FIELDS]
        if not refs:
            continue
        keys = [k for k in info.services if not scope or k in scope]
        without = [" ".join(k) for k in keys if info.services[k].numbers is None]
        if without:
            ch.warning("W431", f"'{refs[0].path[0]}' is always empty for {', '.join(without)}: the service names no "
                               "number-range table", refs[0].span,
                       "add 'numbers NAME' to the service (and 'numbers NAME from \"ranges.csv\"' to the rules)")


def cell_text(key: tuple[tuple[str, str], ...]) -> str:
    """A row's origin key for messages: `` (origin zone EEA)``; empty for no key."""
    if not key:
        return ""
    return " (" + ", ".join(f"{f.replace('_', ' ')} {v}" for f, v in key) + ")"
