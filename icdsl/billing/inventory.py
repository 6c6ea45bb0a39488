"""Inventory in the store: import a CSV file (``icdsl inventory import FILE``), versioned.

An item is identified by its partner and ``item_id`` (the row's ``reference``). Importing:

- an item the store does not have is added (version 1);
- an item whose content (kind, quantity, activation, termination, description, attributes) is
  the same as its current version adds nothing: importing the same file twice is a no-op;
- an item whose content changed gets a new version; the old row stays, pointing at its
  successor (``superseded_by_id``): the history is kept, cycles read the current versions;
- an item the file does not mention is left as it is (a file may hold part of the inventory:
  terminate an item by importing it with its ``terminated`` date).

Bad rows are reported with their line and reason (:mod:`icdsl.inventory`) and not imported;
the good rows of the same file are (``strict=True`` imports nothing when a row is bad).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.billing.base import now
from icdsl.inventory import InventoryImport, InventoryItem, items_from_rows, read_inventory, store_rows

if TYPE_CHECKING:
    from icdsl.billing.store import Store


@dataclass
class InventoryReport:
    source: str
    read: InventoryImport
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    imported: bool = True

    def __str__(self) -> str:
        r = self.read
        head = (f"{self.source}: {r.rows} row(s): {len(self.added)} added, {len(self.changed)} changed "
                f"(new version), {self.unchanged} unchanged, {len(r.problems)} rejected")
        if not self.imported:
            head += " (nothing imported: --strict and some rows are bad)"
        lines = [head]
        lines += [f"  added {x}" for x in self.added]
        lines += [f"  changed {x}" for x in self.changed]
        lines += [f"{self.source}:{p.line}: error[{p.reason}]: {p.message}" for p in r.problems]
        return "\n".join(lines)


def _content(row: dict[str, Any]) -> tuple:
    return (row["kind"], Decimal(row["quantity"]).normalize(), row["activation_date"], row["termination_date"],
            sorted((k, str(v)) for k, v in (row["attributes"] or {}).items()))


def import_inventory(store: Store, path: str | Path, *, strict: bool = False) -> InventoryReport:
    """Read an inventory CSV and store its good rows (see the module's documentation)."""

    with store.session() as s:
        partners = {p.code: p.id for p in s.scalars(select(M.Partner))}
        read = read_inventory(path, partners=partners)
        report = InventoryReport(str(path), read)
        if strict and read.problems:
            report.imported = False
            return report
        current = {(r.partner_id, r.reference): r for r in s.scalars(
            select(M.InventoryItem).where(M.InventoryItem.superseded_by_id.is_(None)))}
        t = now()
        for item, row in zip(read.items, store_rows(read.items, partners), strict=True):
            old = current.get((row["partner_id"], row["reference"]))
            label = f"{item.partner} {item.item_id} ({item.kind})"
            if old is None:
                s.add(M.InventoryItem(**row, version=1, created_at=t))
                report.added.append(label)
                continue
            before = {"kind": old.kind, "quantity": old.quantity, "activation_date": old.activation_date,
                      "termination_date": old.termination_date, "attributes": old.attributes}
            if _content(before) == _content(row):
                report.unchanged += 1
                continue
            version = max(s.scalars(select(M.InventoryItem.version).where(
                M.InventoryItem.partner_id == old.partner_id, M.InventoryItem.reference == old.reference)))
            new = M.InventoryItem(**row, version=version + 1, created_at=t)
            s.add(new)
            s.flush()
            old.superseded_by_id = new.id
            report.changed.append(f"{label}: v{old.version} -> v{new.version}")
        if report.added or report.changed:
            store.audit(s, "inventory_import", "inventory_items", None,
                        f"{path}: {len(report.added)} added, {len(report.changed)} changed",
                        {"added": report.added, "changed": report.changed, "rejected": len(read.problems)})
        return report


def inventory_rows(s: Session, partner: str | None = None, *, history: bool = False) -> list[M.InventoryItem]:
    q = select(M.InventoryItem).order_by(M.InventoryItem.partner_id, M.InventoryItem.reference,
                                         M.InventoryItem.version)
    if not history:
        q = q.where(M.InventoryItem.superseded_by_id.is_(None))
    if partner is not None:
        pid = s.scalar(select(M.Partner.id).where(M.Partner.code == partner))
        q = q.where(M.InventoryItem.partner_id == (pid if pid is not None else -1))
    return list(s.scalars(q))


# built once: every cycle asks it
_CURRENT_ITEMS = (select(M.InventoryItem).where(M.InventoryItem.partner_id == bindparam("partner_id"),
                                                M.InventoryItem.superseded_by_id.is_(None))
                  .order_by(M.InventoryItem.reference))


def partner_items(s: Session, partner_id: int, code: str) -> list[InventoryItem]:
    """The partner's current items, as :class:`icdsl.inventory.InventoryItem` (for charges)."""
    rows = [{"partner_id": r.partner_id, "reference": r.reference, "kind": r.kind, "quantity": _plain(r.quantity),
             "activation_date": r.activation_date, "termination_date": r.termination_date,
             "attributes": r.attributes}
            for r in s.scalars(_CURRENT_ITEMS, {"partner_id": partner_id})]
    return items_from_rows(rows, {partner_id: code})


def _plain(q: Decimal) -> Decimal:
    """A stored quantity without the store's trailing zeros (30.00000000 -> 30)."""
    q = Decimal(q)
    return q.quantize(Decimal(1)) if q == q.to_integral_value() else q.normalize()


def known_partners(s: Session) -> Collection[str]:
    return set(s.scalars(select(M.Partner.code)))
