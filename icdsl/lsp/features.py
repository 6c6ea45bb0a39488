"""What the editor asks of an analysed project, answered as plain data (the server turns it
into LSP messages): what is at a position, hover text, definitions, references, completion
candidates, document symbols, and the edit that a "did you mean" hint proposes.

Positions here are the language's: 1-based lines and columns, in characters.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icdsl.lang import ast
from icdsl.lang.decks import FIELDS as DECK_FIELDS
from icdsl.lang.diagnostics import Diagnostic
from icdsl.lang.loader import stdlib_dir
from icdsl.lang.parser import grammar_path
from icdsl.lang.values import (
    COUNT_UNITS,
    KNOWN_SERVICES,
    PRICE_UNITS,
    TIME_UNITS,
    VOLUME_UNITS,
    currencies,
    timezones,
)
from icdsl.lsp.analysis import DECLARES, Analysis, Symbol
from icdsl.lsp.textmate import grammar_words
from icdsl.spans import Span


def contains(span: Span, line: int, col: int) -> bool:
    if not span.line:
        return False
    if (line, col) < (span.line, span.col):
        return False
    return (line, col) <= (span.end_line, span.end_col)  # the end too: the cursor just after a word


@dataclass(frozen=True)
class Target:
    """What the cursor is on: a name, a deck path, a `use`, an inline rate row or a charge type."""

    kind: str  # ident | deck | use | row | charge | unit
    span: Span
    node: Any


def target_at(a: Analysis, shown: str, line: int, col: int) -> Target | None:
    ix = a.index
    for deck, price in ix.decks.get(shown, []):
        if contains(deck.span, line, col):
            return Target("deck", deck.span, price)
    for use in ix.uses.get(shown, []):
        if contains(use.span, line, col):
            return Target("use", use.span, use)
    for unit in ix.units.get(shown, []):
        if contains(unit.span, line, col):
            return Target("unit", unit.span, unit)
    for charge in ix.charges.get(shown, []):
        if contains(charge.kind_span, line, col):
            return Target("charge", charge.kind_span, charge)
    best = None
    for ident in ix.idents.get(shown, []):
        if contains(ident.span, line, col) and (best is None or _size(ident.span) < _size(best.span)):
            best = ident
    if best is not None:
        return Target("ident", best.span, best)
    for row in ix.rows.get(shown, []):
        if contains(row.span, line, col):
            return Target("row", row.span, row)
    return None


def _size(span: Span) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_col - span.col)


# --------------------------------------------------------------------------- definitions, references


def definitions(a: Analysis, shown: str, line: int, col: int) -> list[tuple[Path, Span | None]]:
    """Where the thing at the position is defined: a declaration, an imported file, a deck."""
    t = target_at(a, shown, line, col)
    if t is None:
        return []
    if t.kind == "deck":
        path = _deck_path(a, shown, t.node)
        return [(path, None)] if path is not None and path.is_file() else []
    if t.kind == "use":
        use: ast.Use = t.node
        if use.is_path:
            path = (a.path_of(shown).parent / use.target).resolve()
        else:
            path = stdlib_dir() / f"{use.target.split('.')[-1]}.icd"
        return [(path, None)] if path.is_file() else []
    if t.kind == "ident":
        return [(a.path_of(s.file), s.span) for s in a.index.definitions.get(t.node.text, [])]
    return []


def references(a: Analysis, shown: str, line: int, col: int, include_declaration: bool = True
               ) -> list[tuple[Path, Span]]:
    t = target_at(a, shown, line, col)
    if t is None or t.kind != "ident":
        return []
    name = t.node.text
    out = [(a.path_of(f), s) for f, s in a.index.references(name)]
    if include_declaration:
        out = [(a.path_of(s.file), s.span) for s in a.index.definitions.get(name, [])] + out
    return out


def _deck_path(a: Analysis, shown: str, price: ast.DestinationPrice) -> Path | None:
    if price.deck is None:
        return None
    return (a.path_of(shown).parent / price.deck.value).resolve()


# --------------------------------------------------------------------------- hover


def _source(a: Analysis, sym: Symbol, limit: int = 12) -> str:
    lines = a.text_of(sym.file).splitlines()
    node_span = getattr(sym.node, "span", sym.span)
    first, last = node_span.line, min(node_span.end_line, node_span.line + limit - 1)
    shown = lines[first - 1:last]
    if node_span.end_line > last:
        shown.append("  ...")
    return "\n".join(shown)


def hover(a: Analysis, shown: str, line: int, col: int) -> tuple[str, Span] | None:
    """Markdown for the thing at the position, and the span it covers."""
    t = target_at(a, shown, line, col)
    if t is None:
        return None
    if t.kind == "ident":
        syms = a.index.definitions.get(t.node.text, [])
        if not syms:
            return None
        parts = []
        for s in syms:
            parts.append(f"**{s.kind}** `{s.name}`, defined at `{s.file}:{s.span.line}:{s.span.col}`\n\n"
                         f"```icdsl\n{_source(a, s)}\n```")
        return "\n\n---\n\n".join(parts), t.span
    if t.kind == "deck":
        return _deck_hover(a, shown, t.node), t.span
    if t.kind == "row":
        return _row_text(t.node), t.span
    if t.kind == "use":
        use: ast.Use = t.node
        return f"**import** `{use.target}`" + (" (the standard library)" if not use.is_path else ""), t.span
    if t.kind == "charge":
        return _charge_hover(a, t.node.kind), t.span
    if t.kind == "unit":
        return _unit_hover(t.node.text), t.span
    return None


def _row_text(row: Any) -> str:
    """A rate row as written (an inline row of the rule file) or as read from a deck."""
    out = [f"**rate** for prefix `{row.prefix}`" + (f" ({row.destination})" if row.destination else "")]
    if isinstance(row, ast.RateRowNode):
        prices = ([("every band", row.price)] if row.price is not None else []) + list(row.band_prices)
        connect, inc, start, until = row.connect, row.increments, row.start, row.until
    else:
        prices = [("every band" if b == "*" else b, p) for b, p in row.prices]
        connect, start, until = row.connect_fee, row.effective_from, row.effective_to
        inc = (row.increments.initial, row.increments.subsequent) if row.increments is not None else None
    for band, price in prices:
        out.append(f"- {band}: {price}")
    if connect is not None:
        out.append(f"- connect fee: {connect}")
    if inc:
        out.append(f"- increments: {inc[0]}/{inc[1]} s")
    if start or until:
        out.append(f"- in force: {start or '…'} .. {until or '…'}")
    for key, value in row.origin:
        out.append(f"- origin {key}: {value}")
    return "\n".join(out)


def _deck_hover(a: Analysis, shown: str, price: ast.DestinationPrice) -> str:
    path = _deck_path(a, shown, price)
    head = f"**rate deck** `{price.deck.value}`"
    service = _service_of(a, price)
    if service is None or service.deck is None:
        return head + ("" if path is None or path.is_file() else " (not found)")
    deck = service.deck
    rows = service.rows
    out = [head, f"- {len(rows):,} rows, columns: {', '.join(deck.header)}", f"- sha256 {deck.sha256[:16]}…"]
    if service.currency:
        out.append(f"- currency {service.currency}" + (f", per {service.unit}" if service.unit else ""))
    if len(rows):
        out.append("\nfirst row:\n\n" + _row_text(rows[0]))
    return "\n".join(out)


def _service_of(a: Analysis, price: ast.DestinationPrice) -> Any:
    if a.checked is None:
        return None
    for info in a.checked.agreements:
        for si in info.services.values():
            node = getattr(si, "node", None)
            if node is not None and node.destination_price is price:
                return si
    return None


def _charge_hover(a: Analysis, kind: str) -> str:
    types = a.checked.charge_types if a.checked is not None else {}
    ct = types.get(kind)
    if ct is None:
        return f"**charge type** `{kind}`"
    doc = (getattr(ct, "__doc__", None) or "").strip()
    owner = getattr(ct, "__module__", "")
    return f"**charge type** `{kind}` (from `{owner}`)" + (f"\n\n{doc}" if doc else "")


def _unit_hover(unit: str) -> str:
    if unit in TIME_UNITS:
        return f"**unit** `{unit}`: time, {TIME_UNITS[unit]} s"
    if unit in VOLUME_UNITS:
        return f"**unit** `{unit}`: volume, {VOLUME_UNITS[unit]:,} bytes"
    if unit in COUNT_UNITS:
        return f"**unit** `{unit}`: a count"
    return f"**unit** `{unit}`"


# --------------------------------------------------------------------------- completion


@functools.cache
def keywords() -> tuple[str, ...]:
    """The words of the grammar (the ones its TextMate grammar highlights too)."""
    declarations, others = grammar_words(grammar_path().read_text(encoding="utf-8"))
    return tuple(sorted(declarations + others))


def completions(a: Analysis | None, shown: str, text: str, line: int, col: int) -> list[tuple[str, str, str]]:
    """(label, kind, detail) candidates for the word at the position: time zones inside a
    string after ``timezone``, else keywords, declared names, units, currencies and services."""
    lines = text.splitlines()
    before = lines[line - 1][:col - 1] if 0 < line <= len(lines) else ""
    if re.search(r'timezone\s+"[^"]*$', before):
        return [(z, "value", "time zone") for z in sorted(timezones())]
    if re.search(r'"[^"]*$', before) and before.count('"') % 2 == 1:
        return []
    out: list[tuple[str, str, str]] = [(k, "keyword", "keyword") for k in keywords()]
    if a is not None:
        for name, syms in sorted(a.index.definitions.items()):
            out.append((name, "name", f"{syms[0].kind} ({syms[0].file}:{syms[0].span.line})"))
    units = dict.fromkeys([*PRICE_UNITS, *TIME_UNITS, *VOLUME_UNITS, *COUNT_UNITS])
    out += [(u, "unit", "unit") for u in units]
    out += [(c, "value", "currency") for c in sorted(currencies())]
    out += [(s, "value", "service") for s in KNOWN_SERVICES]
    out += [(f, "field", "deck field") for f in DECK_FIELDS if isinstance(f, str)]
    seen: set[str] = set()
    return [c for c in out if not (c[0] in seen or seen.add(c[0]))]


# --------------------------------------------------------------------------- symbols, fixes


@dataclass(frozen=True)
class DocSymbol:
    name: str
    kind: str
    span: Span
    selection: Span
    children: tuple[DocSymbol, ...] = ()


def document_symbols(a: Analysis, shown: str) -> list[DocSymbol]:
    f = next((x for x in a.program.files if x.path == shown), None)
    if f is None:
        return []
    out = []
    for item in f.items:
        if isinstance(item, ast.AgreementDecl):
            services = tuple(DocSymbol(f"{s.direction.text} {s.service.text}", "service", s.span, s.span)
                             for s in item.services)
            out.append(DocSymbol(f"{item.name.value} {item.version.text}", "agreement", item.span, item.name.span,
                                 services))
        elif isinstance(item, (ast.ExampleDecl, ast.CycleExampleDecl)):
            out.append(DocSymbol(item.name.value, "example", item.span, item.name.span))
        else:
            decl = DECLARES.get(type(item))
            if decl is not None:
                name = getattr(item, decl[0])
                if isinstance(name, ast.Ident):
                    out.append(DocSymbol(name.text, decl[1], item.span, name.span))
    return out


_DID_YOU_MEAN = re.compile(r"did you mean '([^']+)'\?")


def suggested_fix(d: Diagnostic, text: str) -> tuple[Span, str] | None:
    """The edit a "did you mean 'X'?" hint proposes: the word under the diagnostic replaced by
    X (None when the span is not a single word)."""
    m = _DID_YOU_MEAN.search(d.help or "") or _DID_YOU_MEAN.search(d.message)
    s = d.span
    if m is None or not s.line or s.end_line != s.line:
        return None
    lines = text.splitlines()
    if s.line > len(lines):
        return None
    word = lines[s.line - 1][s.col - 1:s.end_col - 1]
    if not word or re.search(r"\s", word):
        return None
    new = m.group(1)
    if len(word) >= 2 and word[0] == word[-1] == '"':
        new = f'"{new}"'
    return s, new
