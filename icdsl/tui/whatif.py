"""What-if, headless: two versions of the rules over the same traffic, difference by partner,
service, destination and charge.

The two versions are overlays of the folder (see ``icdsl.lang.loader.load(overlay=)``):

- *saved vs edited*: A is the folder as saved, B the folder with the editor's unsaved buffers;
- *two files*: B reads file ``new``'s text in place of file ``old`` (a new version of an
  agreement written next to the current one); in both A and B ``new`` itself is left out
  (an empty text), so its agreements are not loaded twice.

How it rates: **the batch executor** (``icdsl.rating.batch.rate_batch_with_charges``: traffic
prices and per-record surcharges) on the records intake would pass (``traffic_source.read_records``),
both versions on each batch, summed exactly per (partner, side, direction, service,
destination, charge, currency) with Arrow's group-by. No store and no cycle: it is several
times faster than two simulated cycles, and the invoice lines are these sums rounded. Not
included: cycle-level charges (recurring fees, tiers, commitments, revenue share), which need
a cycle. *Side*: what a partner owes us is revenue; a service the agreement nets
(``netting with ...``, on the settlement statement: what we owe) is cost.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from icdsl.tui.project import Project
from icdsl.tui.simulate import build_plan
from icdsl.tui.traffic_source import Cancelled, read_records

DIMENSIONS = ("partner", "side", "service", "destination", "charge")
KEY = ("partner", "side", "direction", "service", "destination", "charge", "currency")


@dataclass(frozen=True)
class Versions:
    """What to compare: ``mode`` "edited" (saved files vs the editor's buffers) or "files"
    (``new``'s text in place of ``old``)."""

    mode: str = "edited"
    old: Path | None = None
    new: Path | None = None

    def overlays(self, buffers: Mapping[Path, str]) -> tuple[dict[Path, str], dict[Path, str]]:
        if self.mode == "files":
            if self.old is None or self.new is None or self.old == self.new:
                raise ValueError("choose two different rule files to compare")
            new_text = Path(self.new).read_text(encoding="utf-8")
            return {Path(self.new): ""}, {Path(self.old): new_text, Path(self.new): ""}
        return {}, dict(buffers)

    def labels(self, project: Project) -> tuple[str, str]:
        if self.mode == "files" and self.old is not None and self.new is not None:
            return project.shown(Path(self.old)), f"{project.shown(Path(self.new))} in its place"
        return "saved files", "editor buffers"


@dataclass
class Cell:
    count: int = 0
    amount: Decimal = Decimal(0)


@dataclass
class Row:
    key: tuple[str, ...]  # values of KEY
    a: Cell = field(default_factory=Cell)
    b: Cell = field(default_factory=Cell)

    @property
    def diff(self) -> Decimal:
        return self.b.amount - self.a.amount

    def value(self, dim: str) -> str:
        return self.key[KEY.index(dim)]


@dataclass
class WhatIf:
    labels: tuple[str, str]
    rows: list[Row]
    records: int = 0
    intake_rejected: int = 0
    rejects: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # (partner, reason) -> (a, b)
    seconds: float = 0.0
    method: str = "batch executor (traffic and per-record surcharges), exact sums; no cycle-level charges"

    def by(self, dims: tuple[str, ...]) -> list[Row]:
        """Rows summed over every dimension but ``dims`` (and the currency), largest change first."""
        keep = set(dims) | {"currency"} | ({"direction"} if "service" in dims else set())
        out: dict[tuple[str, ...], Row] = {}
        for r in self.rows:
            key = tuple(v if k in keep else "" for k, v in zip(KEY, r.key, strict=True))
            acc = out.get(key)
            if acc is None:
                acc = out[key] = Row(key)
            acc.a.count += r.a.count
            acc.a.amount += r.a.amount
            acc.b.count += r.b.count
            acc.b.amount += r.b.amount
        return sorted(out.values(), key=lambda r: (-abs(r.diff), r.key))

    def totals(self) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
        """(side, currency) -> (A, B)."""
        out: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for r in self.rows:
            t = out[(r.value("side"), r.value("currency"))]
            t[0] += r.a.amount
            t[1] += r.b.amount
        return {k: (v[0], v[1]) for k, v in sorted(out.items())}

    @property
    def changed(self) -> bool:
        return any(r.diff != 0 or r.a.count != r.b.count for r in self.rows) or any(
            a != b for a, b in self.rejects.values())


def _sides(plan: Any) -> dict[tuple[str, str, str], str]:
    """(agreement hash, direction, service) -> "revenue" | "cost"."""
    from icdsl.billing.invoicing import route

    out = {}
    for ag in plan.agreements:
        for sp in ag.services:
            netted = route(ag, sp.direction, sp.service)[1]
            out[(ag.source_hash, sp.direction, sp.service)] = "cost" if netted else "revenue"
    return out


def _accumulate(acc: dict[tuple[str, ...], Row], which: str, plan: Any, sides: dict, rated: pa.Table,
                charges: pa.Table) -> None:
    def add(table: pa.Table, charge_col: str | None) -> None:
        if not table.num_rows:
            return
        cols = {
            "partner": table.column("partner"), "direction": table.column("direction"),
            "service": table.column("service"), "currency": table.column("currency"),
            "agreement_hash": table.column("agreement_hash"), "amount": table.column("amount"),
        }
        cols = {k: (pc.cast(v, pa.string()) if k != "amount" else v) for k, v in cols.items()}
        cols["destination"] = (pc.fill_null(pc.cast(table.column("destination"), pa.string()), "")
                               if charge_col is None else pa.nulls(table.num_rows, pa.string()).fill_null(""))
        cols["charge"] = (pc.cast(table.column(charge_col), pa.string()) if charge_col is not None
                          else pa.array(["traffic"] * table.num_rows, pa.string()))
        t = pa.table(cols)
        keys = ["partner", "direction", "service", "destination", "charge", "currency", "agreement_hash"]
        g = t.group_by(keys, use_threads=False).aggregate([("amount", "sum"), ("amount", "count")])
        for row in g.to_pylist():
            side = sides.get((row["agreement_hash"], row["direction"], row["service"]), "revenue")
            key = (row["partner"], side, row["direction"], row["service"], row["destination"], row["charge"],
                   row["currency"])
            r = acc.get(key)
            if r is None:
                r = acc[key] = Row(key)
            cell = r.a if which == "a" else r.b
            cell.count += row["amount_count"]
            cell.amount += row["amount_sum"] or Decimal(0)

    add(rated, None)
    if charges is not None and charges.num_rows:
        add(charges, "charge")


def compare(project: Project, versions: Versions, buffers: Mapping[Path, str], traffic: list[Path],
            partners: list[str] | None = None, *, progress: Callable[[str, int, int], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> WhatIf:
    """Rate ``traffic`` with both versions (see the module) and line the sums up."""
    from icdsl.rating.batch import rate_batch_with_charges

    progress = progress or (lambda *_: None)
    cancelled = cancelled or (lambda: False)
    t0 = time.perf_counter()
    over_a, over_b = versions.overlays(buffers)
    progress("compiling both versions", 0, 2)
    plan_a, _, why_a = build_plan(project, over_a)
    if plan_a is None:
        raise ValueError(f"version A ({versions.labels(project)[0]}): {why_a}")
    plan_b, _, why_b = build_plan(project, over_b)
    if plan_b is None:
        raise ValueError(f"version B ({versions.labels(project)[1]}): {why_b}")
    sides_a, sides_b = _sides(plan_a), _sides(plan_b)
    acc: dict[tuple[str, ...], Row] = {}
    rejects: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    out = WhatIf(versions.labels(project), [])
    done = 0
    for records, rejected in read_records(traffic, plan_a, partners):
        if cancelled():
            raise Cancelled()
        out.intake_rejected += rejected
        out.records += records.num_rows
        for which, plan, sides in (("a", plan_a, sides_a), ("b", plan_b, sides_b)):
            rated, rej, charges = rate_batch_with_charges(plan, records)
            _accumulate(acc, which, plan, sides, rated, charges)
            if rej.num_rows:
                g = pa.table({"partner": pc.cast(rej.column("partner"), pa.string()),
                              "reason": pc.cast(rej.column("reason"), pa.string())}).group_by(
                    ["partner", "reason"]).aggregate([("reason", "count")])
                for row in g.to_pylist():
                    rejects[(row["partner"] or "", row["reason"])][0 if which == "a" else 1] += row["reason_count"]
            if cancelled():
                raise Cancelled()
        done += records.num_rows
        progress("rating both versions", done, 0)
    out.rows = sorted(acc.values(), key=lambda r: (-abs(r.diff), r.key))
    out.rejects = {k: (v[0], v[1]) for k, v in sorted(rejects.items())}
    out.seconds = time.perf_counter() - t0
    return out
