"""Inventory: the things a partner rents (ports, trunks, capacity reservations, hosting), as data.

A recurring fee ``per inventory KIND`` is charged for each item of that kind the partner has
during a charge period; one-time fees can follow an item's activation and termination. Items
come from a CSV file (``icdsl inventory import FILE``)::

    partner,item_id,kind,quantity,activated,terminated,description
    LUMFR,E1-PAR-001,e1_port,1,2026-03-10,,E1 port Paris Aubervilliers
    LUMFR,SIP-01,sip_channel,30,2026-01-01,2026-07-01,SIP trunk 1 channels

- ``partner`` (a partner code), ``item_id`` (unique per partner), ``kind`` (the word used after
  ``per inventory``: letters, digits, ``_``), ``quantity`` (a positive number: channels, Mbit/s;
  the fee is multiplied by it), ``activated`` (``YYYY-MM-DD``, the first day billed) are
  required; ``terminated`` (the first day **no longer** billed, after ``activated``) and
  ``description`` are optional columns and may be empty. Other columns are kept as the item's
  ``attributes``.
- Dates are local dates in the partner's time zone.
- The delimiter is guessed from the header line (comma, semicolon, tab or ``|``); a UTF-8 byte
  order mark is ignored; blank lines are skipped.

Bad rows are never dropped silently: :func:`parse_inventory` returns the good items **and** a
:class:`InventoryProblem` per bad row, with its line number, a reason code and a message saying
what to fix. Nothing here touches storage: :func:`store_rows` turns items into the column
values of the billing store's ``inventory_items`` table.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

REQUIRED = ("partner", "item_id", "kind", "quantity", "activated")
OPTIONAL = ("terminated", "description")
COLUMNS = REQUIRED + OPTIONAL
_KIND = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

#: reason code -> what it means
REASONS = {
    "missing_column": "the header lacks a required column",
    "malformed_row": "the row has more or fewer cells than the header",
    "missing_field": "a required cell is empty",
    "bad_date": "a date is not YYYY-MM-DD or does not exist",
    "bad_quantity": "the quantity is not a positive number",
    "bad_kind": "the kind is not a word of letters, digits and _",
    "ends_before_start": "the termination date is not after the activation date",
    "duplicate_item": "the same partner and item_id appear twice",
    "unknown_partner": "the partner is not declared",
}


@dataclass(frozen=True, slots=True)
class InventoryItem:
    """One item a partner has from ``activated`` (included) to ``terminated`` (excluded; None:
    still active). ``line`` is its line in the file it came from (0 if built by code)."""

    partner: str
    item_id: str
    kind: str
    quantity: Decimal
    activated: date
    terminated: date | None = None
    description: str = ""
    attributes: tuple[tuple[str, str], ...] = ()
    line: int = 0

    def __post_init__(self) -> None:
        if self.terminated is not None and self.terminated <= self.activated:
            raise ValueError(
                f"item {self.item_id}: terminated {self.terminated} is not after activated {self.activated}"
            )

    def active_on(self, day: date) -> bool:
        return self.activated <= day and (self.terminated is None or day < self.terminated)


@dataclass(frozen=True, slots=True)
class InventoryProblem:
    """A row that was not imported, and why."""

    line: int
    reason: str
    message: str
    raw: str = ""

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.message}"


@dataclass(slots=True)
class InventoryImport:
    """The outcome of reading a file: ``items`` that are good, ``problems`` (one per bad row, or
    one for a bad header), and the number of data ``rows`` read."""

    source: str
    items: list[InventoryItem] = field(default_factory=list)
    problems: list[InventoryProblem] = field(default_factory=list)
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        lines = [f"{self.source}: {self.rows} rows, {len(self.items)} items, {len(self.problems)} rejected"]
        lines += [f"{self.source}:{p.line}: {p.reason}: {p.message}" for p in self.problems]
        return "\n".join(lines)


def _date(text: str) -> date | None:
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _sniff(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_inventory(
    text: str | Iterable[str], source: str = "<inventory>", *, partners: Collection[str] | None = None
) -> InventoryImport:
    """Read inventory CSV text (or lines). ``partners``: the declared partner codes (rows of
    other partners are rejected ``unknown_partner``); None accepts any code."""
    if not isinstance(text, str):
        text = "".join(text)
    if text.startswith("\ufeff"):
        text = text[1:]
    out = InventoryImport(source)
    first = text.split("\n", 1)[0]
    delimiter = _sniff(first)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        out.problems.append(InventoryProblem(1, "missing_column", "the file is empty: it needs a header line with "
                                                                  f"the columns {', '.join(REQUIRED)}"))
        return out
    names = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        out.problems.append(InventoryProblem(
            1, "missing_column",
            f"the header lacks {', '.join(missing)}; it has {', '.join(n for n in names if n) or 'no column'} "
            f"(required: {', '.join(REQUIRED)}; optional: {', '.join(OPTIONAL)})", first))
        return out
    index = {n: i for i, n in enumerate(names) if n}
    extras = [n for n in names if n and n not in COLUMNS]
    seen: dict[tuple[str, str], int] = {}
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            out.rows += 1
            out.problems.append(InventoryProblem(line, "malformed_row", f"cannot read the row: {e}"))
            continue
        if not any(c.strip() for c in cells):
            continue
        out.rows += 1
        raw = delimiter.join(cells)
        problem = _row(cells, names, index, extras, line, raw, seen, partners)
        if isinstance(problem, InventoryProblem):
            out.problems.append(problem)
        else:
            out.items.append(problem)
            seen[(problem.partner, problem.item_id)] = line
    return out


def _row(cells, names, index, extras, line, raw, seen, partners) -> InventoryItem | InventoryProblem:
    if len(cells) != len(names):
        return InventoryProblem(line, "malformed_row",
                                f"{len(cells)} cells where the header has {len(names)} columns", raw)
    get = {n: cells[i].strip() for n, i in index.items()}
    for col in REQUIRED:
        if not get[col]:
            return InventoryProblem(line, "missing_field", f"'{col}' is empty", raw)
    partner, item_id, kind = get["partner"], get["item_id"], get["kind"]
    if partners is not None and partner not in partners:
        return InventoryProblem(line, "unknown_partner", f"partner '{partner}' is not declared in the rules", raw)
    if not _KIND.fullmatch(kind):
        return InventoryProblem(line, "bad_kind", f"kind '{kind}' is not a word (letters, digits, _), as used "
                                                  "after 'per inventory'", raw)
    try:
        qty = Decimal(get["quantity"].replace("_", ""))
        good = qty.is_finite() and qty > 0
    except InvalidOperation:
        good = False
    if not good:
        return InventoryProblem(line, "bad_quantity", f"quantity '{get['quantity']}' is not a positive number", raw)
    activated = _date(get["activated"])
    if activated is None:
        return InventoryProblem(line, "bad_date", f"activated '{get['activated']}' is not a date (YYYY-MM-DD)", raw)
    terminated = None
    if get.get("terminated"):
        terminated = _date(get["terminated"])
        if terminated is None:
            return InventoryProblem(line, "bad_date",
                                    f"terminated '{get['terminated']}' is not a date (YYYY-MM-DD)", raw)
        if terminated <= activated:
            return InventoryProblem(
                line, "ends_before_start",
                f"terminated {terminated} is not after activated {activated} (the termination date is the "
                "first day no longer billed)", raw)
    if (partner, item_id) in seen:
        return InventoryProblem(line, "duplicate_item",
                                f"item '{item_id}' of {partner} is already on line {seen[(partner, item_id)]}", raw)
    attrs = tuple((n, get[n]) for n in extras if get.get(n))
    return InventoryItem(partner, item_id, kind, qty, activated, terminated, get.get("description", ""), attrs, line)


def read_inventory(path: str | os.PathLike[str], *, partners: Collection[str] | None = None) -> InventoryImport:
    """Read an inventory CSV file (UTF-8). See :func:`parse_inventory`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        imp = InventoryImport(str(path))
        imp.problems.append(InventoryProblem(0, "malformed_row", f"the file is not UTF-8 text ({e.reason} at byte "
                                                                 f"{e.start})"))
        return imp
    return parse_inventory(text, str(path), partners=partners)


def store_rows(items: Iterable[InventoryItem], partner_ids: Mapping[str, int]) -> list[dict[str, Any]]:
    """The items as column values of the billing store's ``inventory_items`` table
    (``partner_id``, ``kind``, ``reference``, ``quantity``, ``activation_date``,
    ``termination_date``, ``attributes``). The store adds ``version``/``superseded_by_id``
    when an item it already has changes."""
    out = []
    for it in items:
        attrs = dict(it.attributes)
        if it.description:
            attrs["description"] = it.description
        out.append({
            "partner_id": partner_ids[it.partner],
            "kind": it.kind,
            "reference": it.item_id,
            "quantity": it.quantity,
            "activation_date": it.activated,
            "termination_date": it.terminated,
            "attributes": attrs,
        })
    return out


def items_from_rows(rows: Iterable[Mapping[str, Any]], partner_codes: Mapping[int, str]) -> list[InventoryItem]:
    """The reverse of :func:`store_rows`: rows of ``inventory_items`` (current versions) as
    items, for :class:`icdsl.charges.context.ChargeContext`."""
    out = []
    for r in rows:
        attrs = dict(r.get("attributes") or {})
        desc = str(attrs.pop("description", ""))
        out.append(InventoryItem(partner_codes[r["partner_id"]], r["reference"], r["kind"], Decimal(r["quantity"]),
                                 r["activation_date"], r.get("termination_date"), desc,
                                 tuple(sorted((k, str(v)) for k, v in attrs.items()))))
    return out
