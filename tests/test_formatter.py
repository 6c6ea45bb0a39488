"""The canonical formatter: golden files, token preservation, idempotence, same meaning.

Golden pairs live in tests/golden/fmt: NAME.icd (a messy input) and NAME.icd.formatted (the
expected output). To regenerate the expected outputs after a deliberate layout change::

    ICDSL_UPDATE_GOLDEN=1 /work/venv/bin/pytest tests/test_formatter.py -k golden

then review the diff of the .formatted files.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path

import pytest
from helpers import ROOT, compare_golden
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark, Token

from icdsl.lang.formatter import format_file, format_text
from icdsl.lang.parser import grammar_path, parse_text
from icdsl.lang.rates import read_rows
from icdsl.plan.model import Span

GOLDEN = Path(__file__).parent / "golden" / "fmt"
CASES = sorted(p.name[: -len(".icd")] for p in GOLDEN.glob("*.icd"))


# ---------------------------------------------------------------- helpers


_COMMENTS: list[Token] = []


@functools.cache
def _lexing_parser() -> Lark:
    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
                keep_all_tokens=True, propagate_positions=True, maybe_placeholders=False,
                lexer_callbacks={"COMMENT": _COMMENTS.append})


def token_stream(text: str) -> list[str]:
    """Every token of a file, comments included, in order: the real lexer's tokens (comments
    through a lexer callback) with each rate table opened into its rows' words and comments."""
    _COMMENTS.clear()
    tree = _lexing_parser().parse(text.replace("\r\n", "\n"))
    comments = list(_COMMENTS)
    tokens = list(tree.scan_values(lambda v: isinstance(v, Token))) + comments
    tokens.sort(key=lambda t: t.start_pos)
    out: list[str] = []
    for tok in tokens:
        if tok.type == "COMMENT":
            out.append(tok.value.rstrip())
        elif tok.type == "RATES_BLOCK":
            rows, row_comments, diags = read_rows(tok.value, "<t>", tok.line, tok.column)
            assert not diags
            items = [((r.span.line, r.span.col),
                      [f'"{r.prefix}"' if r.prefix_quoted else r.prefix, f'"{r.destination}"', *r.words])
                     for r in rows]
            items += [((s.line, s.col), [c.rstrip()]) for s, c in row_comments]
            items.sort(key=lambda item: item[0])
            out.append("{")
            for _, words in items:
                out.extend(words)
            out.append("}")
        else:
            out.append(tok.value)
    return out


_DUMMY = Span("<dummy>", 0, 0, 0, 0)


def strip_spans(node):
    """The AST with every Span replaced by one dummy span (recursively)."""
    if isinstance(node, Span):
        return _DUMMY
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.replace(node, **{f.name: strip_spans(getattr(node, f.name))
                                            for f in dataclasses.fields(node) if f.init})
    if isinstance(node, tuple):
        return tuple(strip_spans(x) for x in node)
    if isinstance(node, list):
        return [strip_spans(x) for x in node]
    if isinstance(node, dict):
        return {k: strip_spans(v) for k, v in node.items()}
    return node


def same_meaning(a: str, b: str) -> None:
    fa, da = parse_text(a, "f.icd")
    fb, db = parse_text(b, "f.icd")
    assert not da and not db, (da, db)
    assert strip_spans(fa) == strip_spans(fb)


# ---------------------------------------------------------------- golden files


@pytest.mark.parametrize("name", CASES)
def test_golden(name):
    src = (GOLDEN / f"{name}.icd").read_text(encoding="utf-8")
    expected_path = GOLDEN / f"{name}.icd.formatted"
    out, diags = format_text(src, f"{name}.icd")
    assert diags == []
    assert out is not None
    compare_golden(expected_path, out)
    again, _ = format_text(out)
    assert again == out


@pytest.mark.parametrize("name", CASES)
def test_golden_keeps_tokens_and_meaning(name):
    src = (GOLDEN / f"{name}.icd").read_text(encoding="utf-8")
    out, _ = format_text(src)
    assert out is not None
    assert token_stream(out) == token_stream(src)
    same_meaning(src, out)


def test_goldens_cover_the_grammar():
    """Every rule and keyword of the grammar appears in some golden input."""
    lark = Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
                keep_all_tokens=True, maybe_placeholders=False)
    seen_rules: set[str] = set()
    seen_tokens: set[str] = set()
    for name in CASES:
        tree = lark.parse((GOLDEN / f"{name}.icd").read_text(encoding="utf-8"))
        for sub in tree.iter_subtrees():
            seen_rules.add(str(sub.data))
        seen_tokens |= {t.type for t in tree.scan_values(lambda v: isinstance(v, Token))}
    # every rule alternative that builds a tree node of its own (an alias, a plain rule, or a
    # ?rule alternative with more than one symbol)
    rule_names = set()
    for r in lark.rules:
        if r.origin.name.startswith("_"):
            continue
        if r.alias:
            rule_names.add(str(r.alias))
        elif not r.options.expand1 or len(r.expansion) > 1:
            rule_names.add(str(r.origin.name))
    missing = sorted(rule_names - seen_rules)
    assert missing == []
    terminals = {t.name for t in lark.terminals if not t.name.startswith("__")} - {"WS"}
    assert sorted(terminals - seen_tokens - {"COMMENT"}) == []
    assert len(rule_names) > 100 and len(terminals) > 100


RULE_FILES = sorted((ROOT / "examples").rglob("*.icd")) + sorted((ROOT / "stdlib_rules").glob("*.icd"))


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_project_rule_files_format_safely(path):
    src = path.read_text(encoding="utf-8")
    if parse_text(src)[1]:
        pytest.skip("does not parse")
    out = fmt(src)
    assert format_text(out) == (out, [])
    assert token_stream(out) == token_stream(src)
    same_meaning(src, out)


# ---------------------------------------------------------------- unit cases


def fmt(text: str) -> str:
    out, diags = format_text(text)
    assert diags == [] and out is not None
    return out


def test_syntax_error_returns_the_diagnostic():
    out, diags = format_text('partner x "X" {\n  kind\n}\n', "bad.icd")
    assert out is None
    assert len(diags) == 1 and diags[0].code == "E012" and diags[0].span.file == "bad.icd"
    assert diags[0].span.line == 3


def test_unclosed_block_and_bad_characters():
    assert format_text('partner x "X" {')[1][0].code == "E010"
    assert format_text("partner x 'X' {}")[1][0].code == "E011"


def test_invalid_number_and_bad_rate_row_are_errors():
    out, diags = format_text('partner x "X" { due 1__0 days }')
    assert out is None and diags[0].code == "E004"
    bad_row = 'agreement "a" v1 with x effective 2026-01-01 .. { voice out { price by destination { 1 2 } } }'
    out, diags = format_text(bad_row)
    assert out is None and diags[0].code == "E012"


def test_empty_and_comment_only_files():
    assert fmt("") == ""
    assert fmt("  \n\n\t\n") == ""
    assert fmt("\n\n# a   \n\n\n\n# b\n\n") == "# a\n\n# b\n"


def test_crlf_becomes_lf():
    src = 'partner x "X" {\r\n  kind carrier  # c\r\n}\r\n'
    assert fmt(src) == 'partner x "X" {\n  kind carrier  # c\n}\n'


def test_spacing_rules():
    src = ('calendar c timezone UTC { peak mon - fri , sat 08:00 - 20:00 }\n'
           'fx r { EUR / USD 1.08 from 2026-01-01 }\n'
           'use a . b\n'
           'agreement "a" v1 with x effective 2026-01-01..2026-12-31 {\n'
           '  surcharge "s" 5 % when f ( a , b . c ) == 1 and not ( x in [ "a" , "b" ] )\n'
           '  tiered price on minutes per month { from 0 : 1 EUR per minute }\n'
           '  voice out { increments 60 / 6 }\n'
           '}\n')
    assert fmt(src) == (
        "calendar c timezone UTC {\n  peak mon-fri, sat 08:00-20:00\n}\n\n"
        "fx r {\n  EUR/USD 1.08 from 2026-01-01\n}\n\n"
        "use a.b\n\n"
        'agreement "a" v1 with x effective 2026-01-01 .. 2026-12-31 {\n'
        '  surcharge "s" 5% when f(a, b.c) == 1 and not (x in ["a", "b"])\n'
        "  tiered price on minutes per month {\n    from 0: 1 EUR per minute\n  }\n"
        "  voice out {\n    increments 60/6\n  }\n"
        "}\n")


def test_top_level_blank_lines_and_use_grouping():
    src = 'use a\n\n\nuse b partner x "X" {} partner y "Y" {}\n\n\n\nuse c\n'
    assert fmt(src) == 'use a\nuse b\n\npartner x "X" {}\n\npartner y "Y" {}\n\nuse c\n'


def test_blank_lines_inside_blocks_are_kept_once():
    src = 'partner x "X" {\n\n\n  kind a\n\n\n\n  currency EUR\n  country FR\n\n\n}\n'
    assert fmt(src) == 'partner x "X" {\n  kind a\n\n  currency EUR\n  country FR\n}\n'


def test_numbers_and_strings_are_kept_as_written():
    src = 'partner x "X" { limit: 1_000_000 rate: 0.0070 EUR name: "a  \\"b\\"  c" }'
    out = fmt(src)
    assert "1_000_000" in out and "0.0070 EUR" in out and '"a  \\"b\\"  c"' in out


def test_comment_breaking_a_statement_keeps_the_break():
    src = 'agreement "a" v1 with x effective 2026-01-01 .. {\n  commit 1 EUR # why\n  per month\n}\n'
    assert fmt(src) == 'agreement "a" v1 with x effective 2026-01-01 .. {\n  commit 1 EUR  # why\n      per month\n}\n'


def test_rate_table_layout():
    src = ('agreement "a" v1 with x effective 2026-01-01 .. { voice out { price by destination in EUR {'
           ' 1 "A" 0.1 # one\n 4477 "Longer name" peak 0.2 offpeak 0.1 increments 60 / 6\n\n\n'
           ' "0033" "Q" 0.3 } } }')
    assert fmt(src) == (
        'agreement "a" v1 with x effective 2026-01-01 .. {\n'
        "  voice out {\n"
        "    price by destination in EUR {\n"
        '      1      "A"           0.1  # one\n'
        '      4477   "Longer name" peak 0.2 offpeak 0.1 increments 60/6\n'
        "\n"
        '      "0033" "Q"           0.3\n'
        "    }\n"
        "  }\n"
        "}\n")


def test_format_file(tmp_path):
    p = tmp_path / "a.icd"
    p.write_bytes(b'partner x "X" {}\n')
    assert format_file(p) == (False, 'partner x "X" {}\n', [])
    p.write_bytes(b'partner x "X" {}\r\n')
    assert format_file(p) == (True, 'partner x "X" {}\n', [])
    p.write_bytes(b'partner x "X" {')
    changed, text, diags = format_file(p)
    assert (changed, text) == (False, None) and diags[0].code == "E010"
    assert format_file(tmp_path / "missing.icd")[2][0].code == "E003"


def test_big_rate_table_formats_linearly():
    rows = "\n".join(f'{10000 + i} "Dest {i}" peak 0.0123 offpeak 0.0100' for i in range(2000))
    src = f'agreement "big" v1 with any partner effective 2026-01-01 .. {{ voice out {{ price by destination {{\n{rows}\n}} }} }}'
    out = fmt(src)
    assert out.count("\n") == 2000 + 6
    assert fmt(out) == out


# ---------------------------------------------------------------- property: random valid agreements

NAMES = ["alpha", "beta", "voice", "sms", "outbound", "inbound", "peak", "offpeak", "weekend", "carrier",
         "monthly", "daily", "minutes", "seconds", "EUR", "USD", "GBP", "vat", "FR", "orange_fr", "e1_ports",
         "route_class", "x_1", "mon", "fri"]
KEYS = ["note:", "ref:", "a:", "operator:", "provider:", "embb:", "x_2:"]
NUMBERS = ["0", "1", "60", "0.0070", "1_000_000", "12.50", "2.5", "007"]
INTS = ["1", "6", "30", "60"]
STRINGS = ['"x"', '"Hello world"', '""', '"with \\"escape\\""', '"Côte d\'Ivoire"', '"a # not a comment"',
           '"{braces}"', '"  spaced  "']
DATES = ["2026-01-01", "2026-12-31"]
TIMES = ["08:00", "20:00", "23:59:59"]
TZS = ["Europe/Paris", '"Europe/London"', "UTC", "America/Argentina/Buenos_Aires"]
SEPS = [" ", " ", " ", " ", "  ", "\n", "\n", "\n\n", "\n\n\n", "\t", "\n    ", " # note\n", "  #\n",
        "\n# own line\n", '\n\n  # spaced { } " #\n\n', ' #trailing, with "quotes"   \n   ']
INLINE_SEPS = [" ", "  ", "\t"]
ROW_SEPS = [" ", " ", " ", "  ", "\t", "\n", "\n  ", " # in row\n", "\n\n"]
BETWEEN_ROWS = ["\n", "\n", "\n", " ", "\n\n", "\n\n\n", "  # row comment { \" }\n", "\n# own\n", "\n  # a\n\n  # b\n"]


@st.composite
def pick(draw, options):
    return draw(st.sampled_from(options))


def opt(draw, tokens: list[str]) -> list[str]:
    return tokens if draw(st.booleans()) else []


def many(draw, gen, lo=0, hi=3) -> list[str]:
    out: list[str] = []
    for _ in range(draw(st.integers(lo, hi))):
        out += gen(draw)
    return out


def name(draw):
    return draw(pick(NAMES))


def num(draw):
    return draw(pick(NUMBERS))


def string(draw):
    return draw(pick(STRINGS))


def money(draw):
    return [num(draw), name(draw)]


def percent(draw):
    return [num(draw), "%"]


def tz(draw):
    return [draw(pick(TZS))]


def value(draw, depth=0):
    kinds = ["num", "percent", "money", "string", "name", "date"] + (["list", "map"] if depth < 2 else [])
    k = draw(st.sampled_from(kinds))
    if k == "num":
        return [num(draw)]
    if k == "percent":
        return percent(draw)
    if k == "money":
        return money(draw) + opt(draw, ["per", name(draw)])
    if k == "string":
        return [string(draw)]
    if k == "name":
        return [name(draw)]
    if k == "date":
        return [draw(pick(DATES))]
    if k == "list":
        items = [value(draw, depth + 1) for _ in range(draw(st.integers(1, 3)))]
        return ["[", *sum(([",", *v] if i else v for i, v in enumerate(items)), []), "]"]
    return ["{", *many(draw, lambda d: param(d, depth + 1)), "}"]


def param(draw, depth=0):
    return [draw(pick(KEYS)), *value(draw, depth)]


def rounding(draw):
    if draw(st.booleans()):
        return ["rounding", name(draw), "to", num(draw), name(draw)]
    return ["rounding", name(draw)]


def literal(draw):
    return draw(st.sampled_from([[num(draw)], [string(draw)], percent(draw), ["true"], ["false"]]))


def operand(draw, depth):
    k = draw(st.sampled_from(["field", "literal", "call"] if depth < 2 else ["field", "literal"]))
    if k == "field":
        return sum(([".", name(draw)] if i else [name(draw)] for i in range(draw(st.integers(1, 3)))), [])
    if k == "literal":
        return literal(draw)
    args = [operand(draw, depth + 1) for _ in range(draw(st.integers(0, 2)))]
    return [name(draw), "(", *sum(([",", *a] if i else a for i, a in enumerate(args)), []), ")"]


def comparison(draw, depth):
    k = draw(st.sampled_from(["cmp", "in", "between", "paren", "operand"] if depth < 2 else ["cmp", "operand"]))
    left = operand(draw, depth)
    if k == "cmp":
        return [*left, draw(pick(["==", "!=", "<", "<=", ">", ">="])), *operand(draw, depth)]
    if k == "in":
        lits = [literal(draw) for _ in range(draw(st.integers(1, 3)))]
        return [*left, "in", "[", *sum(([",", *x] if i else x for i, x in enumerate(lits)), []), "]"]
    if k == "between":
        return [*left, "between", *literal(draw), "and", *literal(draw)]
    if k == "paren":
        return ["(", *expr(draw, depth + 1), ")"]
    return left


def expr(draw, depth=0):
    def not_expr():
        return ["not"] * draw(st.integers(0, 2)) + comparison(draw, depth)

    def and_expr():
        return sum((["and", *not_expr()] if i else not_expr() for i in range(draw(st.integers(1, 2)))), [])

    return sum((["or", *and_expr()] if i else and_expr() for i in range(draw(st.integers(1, 2)))), [])


def options(draw):
    def one(d):
        k = d(st.sampled_from(["prorate", "in", "shortfall", "stream", "day", "of", "tax", "when"]))
        if k == "day":
            return [",", "day", "count", name(d)]
        if k == "of":
            return [",", "of", name(d), name(d)]
        if k == "when":
            return [",", "when", *expr(d)]
        return [",", k, name(d)]

    return many(draw, one, 0, 2)


def selector(draw):
    return [string(draw)] if draw(st.booleans()) else [name(draw), *opt(draw, [name(draw)])]


def selectors(draw):
    return sum(([",", *selector(draw)] if i else selector(draw) for i in range(draw(st.integers(1, 3)))), [])


def share_party(draw):
    k = draw(st.sampled_from(["percent", "money", "remainder"]))
    v = percent(draw) if k == "percent" else ["remainder"] if k == "remainder" else money(draw) + opt(
        draw, ["per", name(draw)])
    return [draw(pick(KEYS)), *v]


def tier(draw):
    k = draw(st.sampled_from(["price", "flat", "percent"]))
    if k == "price":
        v = [*money(draw), "per", *opt(draw, [num(draw)]), name(draw)]
    elif k == "flat":
        v = [*money(draw), "flat"]
    else:
        v = percent(draw)
    return ["from", num(draw), ":", *v]


def charge(draw):
    k = draw(st.sampled_from(["surcharge", "recurring", "one_time", "event", "commit", "tiered", "volume",
                              "share", "generic"]))
    label = opt(draw, [string(draw)])
    if k == "surcharge":
        amount = [*money(draw), "per", name(draw)] if draw(st.booleans()) else percent(draw)
        head = ["surcharge", string(draw), *amount, "when", *expr(draw)]
    elif k == "recurring":
        basis = draw(st.sampled_from([[], ["flat"], ["per", "inventory", name(draw)]]))
        head = ["recurring", string(draw), *money(draw), name(draw), *basis]
    elif k == "one_time":
        head = ["one_time", string(draw), *money(draw), "on", name(draw)]
    elif k == "event":
        head = ["event", string(draw), *money(draw), "per", name(draw)]
    elif k == "commit":
        head = ["commit", *label, num(draw), name(draw), "per", name(draw)]
    elif k in ("tiered", "volume"):
        kw = ["tiered"] if k == "tiered" else ["volume", "discount"]
        head = [*kw, *label, name(draw), "on", name(draw), "per", name(draw), "{", *many(draw, tier, 1, 3), "}"]
    elif k == "share":
        if draw(st.booleans()):
            body = many(draw, share_party, 1, 3)
        else:
            body = many(draw, lambda d: ["from", *money(d), "{", *many(d, share_party, 1, 2), "}"], 1, 2)
        scope = opt(draw, ["of", *selectors(draw)])
        head = ["revenue", "share", *label, *opt(draw, ["tiered"]), "on", name(draw), *scope, "{", *body, "}"]
    else:
        head = ["charge", name(draw), string(draw), "{", *many(draw, param), "}"]
    return head + options(draw)


def calendar_item(draw):
    k = draw(st.sampled_from(["rule", "default", "holidays", "date"]))
    if k == "rule":
        def day_range():
            return [name(draw), *opt(draw, ["-", name(draw)])]

        days = sum(([",", *day_range()] if i else day_range() for i in range(draw(st.integers(1, 2)))), [])
        return [name(draw), *days, *opt(draw, [draw(pick(TIMES)), "-", draw(pick(TIMES))])]
    if k == "default":
        return [name(draw), "otherwise"]
    if k == "holidays":
        return ["holidays", name(draw), *opt(draw, ["by", string(draw)]), "as", name(draw)]
    return ["date", draw(pick(DATES)), "as", name(draw)]


def rate_table(draw) -> str:
    def row():
        prefix = draw(st.sampled_from(["1", "33", "336", "44207", '"0033"', '"1"']))
        dest = draw(st.sampled_from(['"France"', '"Côte d\'Ivoire"', '"with # hash"', '"{b}"', '"esc \\" q"',
                                     '"A very long destination name"']))
        if draw(st.booleans()):
            price = [draw(pick(["0.0100", "1", "1_000.5", "0.02"]))]
        else:
            price = sum(([draw(pick(["peak", "offpeak", "weekend"])), draw(pick(["0.01", "2"]))]
                         for _ in range(draw(st.integers(1, 3)))), [])
        extra = opt(draw, ["connect", "0.0100"]) + draw(st.sampled_from(
            [[], ["increments", "60/6"], ["increments", "60", "/", "6"]]))
        extra += opt(draw, ["from", "2026-01-01"]) + opt(draw, ["until", "2026-12-31"])
        tokens = [prefix, dest, *price, *extra]
        text = tokens[0]
        for t in tokens[1:]:
            text += draw(pick(ROW_SEPS)) + t
        return text

    rows = [row() for _ in range(draw(st.integers(0, 5)))]
    body = draw(pick(BETWEEN_ROWS + [" "]))
    for r in rows:
        body += r + draw(pick(BETWEEN_ROWS))
    return "{" + body + "}"


def service_item(draw):
    k = draw(st.sampled_from(["flat", "table", "deck", "calendar", "bands", "increments", "minimum",
                              "connect", "slots", "split", "zero", "round", "volume_min", "rounding", "charge"]))
    if k == "flat":
        return ["price", *money(draw), "per", name(draw)]
    if k in ("table", "deck"):
        head = ["price", "by", "destination", *opt(draw, ["in", name(draw)]), *opt(draw, ["per", name(draw)])]
        if k == "table":
            return [*head, rate_table(draw)]

        def column(d):
            if d(st.booleans()):
                return ["delimiter", string(d)]
            return [name(d), *opt(d, [name(d)]), string(d)]

        return [*head, "from", "deck", string(draw), *opt(draw, ["columns", "{", *many(draw, column), "}"])]
    if k == "calendar":
        return ["calendar", name(draw)]
    if k == "bands":
        return ["bands", "timezone", *tz(draw), "{", *many(draw, calendar_item), "}"]
    if k == "increments":
        return ["increments", draw(pick(INTS)), "/", draw(pick(INTS))]
    if k == "minimum":
        return ["minimum", num(draw), name(draw)]
    if k == "connect":
        return ["connect", "fee", *money(draw)]
    if k == "slots":
        def slot(d):
            if d(st.booleans()):
                return ["first", num(d), name(d), "at", *money(d), "per", name(d)]
            return ["then", *money(d), "per", name(d)]

        slots = [slot(draw) for _ in range(draw(st.integers(1, 3)))]
        return ["slots", "{", *sum(([",", *s] if i else s for i, s in enumerate(slots)), []), "}"]
    if k == "split":
        return ["split", "at", "band", "boundary"]
    if k == "zero":
        return ["zero", "duration", name(draw)]
    if k == "round":
        return ["round", "volume", "up", "to", num(draw), name(draw)]
    if k == "volume_min":
        return ["minimum", "volume", num(draw), name(draw)]
    if k == "rounding":
        return rounding(draw)
    return charge(draw)


def agreement_item(draw):
    k = draw(st.sampled_from(["currency", "timezone", "fx", "description", "calendar", "rounding", "service",
                              "service", "charge", "charge", "streams", "netting", "apply"]))
    if k in ("currency", "fx", "calendar"):
        return [k, name(draw)]
    if k == "timezone":
        return ["timezone", *tz(draw)]
    if k == "description":
        return ["description", string(draw)]
    if k == "rounding":
        return rounding(draw)
    if k == "service":
        return [name(draw), name(draw), "{", *many(draw, service_item, 0, 4), "}"]
    if k == "charge":
        return charge(draw)
    if k == "streams":
        return ["invoice", "streams", "{", *many(draw, lambda d: [d(pick(KEYS)), *selectors(d)]), "}"]
    if k == "netting":
        return ["netting", "with", name(draw), name(draw)]
    return ["apply", name(draw)]


def example_item(draw):
    k = draw(st.sampled_from(["record", "agreement", "partner", "field", "expect"]))
    if k == "record":
        def call_option(d):
            c = d(st.sampled_from(["at", "for", "from", "messages", "volume"]))
            if c == "at":
                return ["at", d(pick(DATES)), d(pick(TIMES)), *opt(d, tz(d))]
            if c in ("for", "volume"):
                return [c, num(d), name(d)]
            if c == "from":
                return ["from", d(st.sampled_from([num(d), string(d)]))]
            return ["messages", num(d)]

        target = draw(st.sampled_from([num(draw), string(draw)]))
        return [name(draw), name(draw), "to", target, *many(draw, call_option)]
    if k == "agreement":
        return ["agreement", string(draw)]
    if k == "partner":
        return ["partner", name(draw)]
    if k == "field":
        v = draw(st.sampled_from([[num(draw)], [string(draw)], [name(draw)], [draw(pick(DATES))],
                                  percent(draw)]))
        return [draw(pick(KEYS)), *v]

    def expectation(d):
        e = d(st.sampled_from(["billed", "band", "amount", "rate", "destination", "prefix", "rejected",
                               "version"]))
        if e == "billed":
            return ["billed", num(d), name(d)]
        if e in ("amount", "rate"):
            return [e, *money(d)]
        if e == "destination":
            return ["destination", string(d)]
        if e == "prefix":
            return ["prefix", d(st.sampled_from([num(d), string(d)]))]
        if e == "version":
            return ["version", "v3"]
        return [e, name(d)]

    exps = [expectation(draw) for _ in range(draw(st.integers(1, 3)))]
    return ["expect", *sum(([",", *x] if i else x for i, x in enumerate(exps)), [])]


def item(draw):
    k = draw(st.sampled_from(["use", "partner", "calendar", "fx", "preset", "template", "records", "agreement",
                              "agreement", "example"]))
    if k == "use":
        return ["use", string(draw)] if draw(st.booleans()) else [
            "use", *sum(([".", name(draw)] if i else [name(draw)] for i in range(draw(st.integers(1, 3)))), [])]
    if k == "partner":
        def partner_item(d):
            p = d(st.sampled_from(["kind", "currency", "country", "billing", "timezone", "due", "tax", "rounding",
                                   "attr"]))
            if p == "timezone":
                return ["timezone", *tz(d)]
            if p == "due":
                return ["due", num(d), name(d)]
            if p == "tax":
                return ["tax", name(d), *opt(d, percent(d))]
            if p == "rounding":
                return rounding(d)
            if p == "attr":
                return param(d)
            return [p, name(d)]

        return ["partner", name(draw), string(draw), "{", *many(draw, partner_item, 0, 4), "}"]
    if k == "calendar":
        return ["calendar", name(draw), "timezone", *tz(draw), "{", *many(draw, calendar_item), "}"]
    if k == "fx":
        def fx_item(d):
            if d(st.booleans()):
                return rounding(d)
            return [name(d), "/", name(d), num(d), "from", d(pick(DATES))]

        return ["fx", name(draw), "{", *many(draw, fx_item), "}"]
    if k == "preset":
        return ["rounding", name(draw), "{", "precision", num(draw), "mode", name(draw), "}"]
    if k == "template":
        return ["template", name(draw), "{", *many(draw, charge), "}"]
    if k == "records":
        def records_item(d):
            r = d(st.sampled_from(["column", "constant", "timezone", "country", "format"]))
            if r == "column":
                return [name(d), "=", "column", string(d)]
            if r == "constant":
                return [name(d), "=", d(st.sampled_from([name(d), string(d)]))]
            if r == "timezone":
                return ["timezone", *tz(d)]
            if r == "country":
                return ["country", name(d)]
            return ["format", string(d)]

        return ["records", name(draw), "{", *many(draw, records_item), "}"]
    if k == "agreement":
        partner = ["any", "partner"] if draw(st.booleans()) else [name(draw)]
        return ["agreement", string(draw), "v1", "with", *partner, "effective", draw(pick(DATES)), "..",
                *opt(draw, [draw(pick(DATES))]), "{", *many(draw, agreement_item, 0, 5), "}"]
    return ["example", string(draw), "{", *many(draw, example_item, 0, 4), "}"]


@st.composite
def rule_files(draw):
    tokens = many(draw, item, 0, 4)
    text = draw(pick(SEPS + ["", ""]))
    for t in tokens:
        text += t + draw(pick(SEPS))
    if draw(st.integers(0, 9)) == 0:
        text = text.replace("\n", "\r\n")
    return text


@settings(max_examples=int(os.environ.get("ICDSL_FMT_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_files())
def test_property_format_is_stable_and_keeps_meaning(src):
    parsed, diags = parse_text(src, "f.icd")
    assert diags == [], f"generator made an invalid file: {diags}\n{src}"
    out, diags = format_text(src, "f.icd")
    assert diags == [] and out is not None
    assert format_text(out, "f.icd") == (out, [])
    same_meaning(src, out)
    assert token_stream(out) == token_stream(src)
    assert out == "" or (out.endswith("\n") and not out.endswith("\n\n"))
    assert all(line == line.rstrip() for line in out.split("\n"))
    assert "\r" not in out


@st.composite
def table_files(draw):
    head = draw(pick(['agreement "t" v1 with any partner effective 2026-01-01 .. { voice out { price by destination ',
                      'agreement "t" v1 with x effective 2026-01-01 ..\n{\n  outbound sms {\n    price by destination in EUR\n']))
    return head + rate_table(draw) + draw(pick(SEPS)) + "}" + draw(pick(SEPS)) + "}" + draw(pick(SEPS + [""]))


@settings(max_examples=int(os.environ.get("ICDSL_FMT_EXAMPLES", "150")), deadline=None)
@given(table_files())
def test_property_rate_tables(src):
    assert parse_text(src, "f.icd")[1] == [], src
    out, diags = format_text(src, "f.icd")
    assert diags == [] and out is not None
    assert format_text(out, "f.icd") == (out, [])
    same_meaning(src, out)
    assert token_stream(out) == token_stream(src)


def test_reader_reads_a_row_continued_on_the_next_line():
    src = ('agreement "a" v1 with x effective 2026-01-01 .. { voice out { price by destination {\n'
           '  1 "A" 0.01\n    increments 60/6\n} } }\n')
    assert parse_text(src)[1] == []


def test_token_stream_sees_every_comment():
    src = 'partner x "X" { # a\n kind y # b\n}\n# c\n'
    assert token_stream(src) == ["partner", "x", '"X"', "{", "# a", "kind", "y", "# b", "}", "# c"]


def test_strip_spans_removes_every_span():
    f, _ = parse_text('partner x "X" { kind y }', "a.icd")
    g, _ = parse_text('\n\npartner   x "X" {\n kind y\n}', "a.icd")
    assert f != g and strip_spans(f) == strip_spans(g)


def test_comments_inside_rate_rows_stay_in_their_row():
    src = ('agreement "a" v1 with x effective 2026-01-01 .. { voice out { price by destination {\n'
           '  49 # inside\n  "Germany" 0.01 # after\n  1 "A" 0.1\n} } }\n')
    out = fmt(src)
    assert '      49  # inside\n          "Germany" 0.01  # after\n      1 "A" 0.1\n' in out
    assert token_stream(out) == token_stream(src)


def test_no_trailing_whitespace_in_comments():
    assert fmt("# a   \t\n") == "# a\n"
    assert re.search(r"[ \t]\n", fmt('partner x "X" { kind y   # c   \n}')) is None
