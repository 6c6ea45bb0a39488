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
destination, charge, currency) with Arrow's group-by. No store: it is several times faster than
two simulated cycles, and the invoice lines are these sums rounded.

With a ``period`` (``2026-03``), each version is a billing cycle of that period, without a
database, the way ``icdsl.billing.charging`` builds one:

- only each partner's records of the period (its time zone; records outside it are counted in
  ``WhatIf.outside`` and left out); refund records (``split_refunds``/``refunds_of``) and event
  records (``split_events`` with the version's ``event_names``) are not rated as traffic;
- the rated tables give the cycle's :class:`~icdsl.charges.context.Usage`
  (``usage_from_rated``, ``merge_usage``);
- per partner and agreement version in force (``versions_in_force``), a
  :class:`~icdsl.charges.context.ChargeContext` with that usage, the events, the refunds, the
  folder's inventory (``inventory*.csv`` read with ``icdsl.inventory.read_inventory``; later
  files win for the same partner and item) and the version's fx sources (``rates_of``), is
  evaluated by ``evaluate_cycle``: recurring and one-time fees, events, tiers, discounts,
  commitments, revenue shares. Like the simulation's fresh store, it is a first cycle: no
  earlier cycles (``history``) and nothing billed before (``billed``). A charge held for review
  (``ChargeHold``) is left out, as ``--accept charge_hold`` does, and said in ``notes``; a
  charge that cannot be evaluated (``ChargeError``) leaves that agreement version's cycle
  charges out, also said in ``notes``.

Each charge line is a row: charge = ``label (kind)``, its single (direction, service) if it has
one, no destination, 0 records, its amount in its own currency (lines are rounded: sums are
exact). Without a period, only traffic and per-record surcharges are compared.

*Side*: what a partner owes us is revenue; a service the agreement nets (``netting with ...``,
on the settlement statement: what we owe) is cost. Charge lines follow
``icdsl.billing.charging.placement``: invoice lines are revenue, payable statement lines and
revenue shares due to a party other than us are cost; our own share (party ``us``) is part of
the revenue already and left out, as the dashboard does.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from icdsl.billing.charging import (
    event_names,
    needs_totals,
    placement,
    rates_of,
    refunds_of,
    split_events,
    split_refunds,
    versions_in_force,
)
from icdsl.billing.fx import FxTable
from icdsl.billing.invoicing import route
from icdsl.billing.periods import parse_period
from icdsl.charges.context import ChargeContext, merge_usage, usage_from_rated
from icdsl.charges.evaluate import evaluate_cycle
from icdsl.charges.lines import ChargeError, ChargeHold
from icdsl.charges.periods import Days
from icdsl.inventory import read_inventory
from icdsl.rating.batch import rate_batch_with_charges
from icdsl.tui.project import Project
from icdsl.tui.simulate import billable_partners, build_plan
from icdsl.tui.traffic_source import Cancelled, read_records

DIMENSIONS = ("partner", "side", "service", "destination", "charge")
KEY = ("partner", "side", "direction", "service", "destination", "charge", "currency")
METHOD_TRAFFIC = "batch executor (traffic and per-record surcharges), exact sums; no cycle-level charges"
METHOD_CYCLE = ("batch executor (traffic and per-record surcharges) and evaluate_cycle (fees, events, tiers, "
                "discounts, commitments, shares) as a first cycle of the period, exact sums")


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
    count: int = 0  # rated records (traffic) or records charged (per-record charges)
    amount: Decimal = Decimal(0)
    lines: int = 0  # cycle-level charge lines


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
    method: str = METHOD_TRAFFIC
    period: str = ""  # the cycle evaluated ("" : traffic only)
    outside: int = 0  # records of the partners compared outside the period (left out)
    notes: list[str] = field(default_factory=list)  # held charges, charges not evaluated, bad inventory rows

    @property
    def charge_rows(self) -> list[Row]:
        """The rows of cycle-level charge lines."""
        return [r for r in self.rows if r.a.lines or r.b.lines]

    def by(self, dims: tuple[str, ...]) -> list[Row]:
        """Rows summed over every dimension but ``dims`` (and the currency), largest change first."""
        keep = set(dims) | {"currency"} | ({"direction"} if "service" in dims else set())
        out: dict[tuple[str, ...], Row] = {}
        for r in self.rows:
            key = tuple(v if k in keep else "" for k, v in zip(KEY, r.key, strict=True))
            acc = out.get(key)
            if acc is None:
                acc = out[key] = Row(key)
            for mine, theirs in ((acc.a, r.a), (acc.b, r.b)):
                mine.count += theirs.count
                mine.amount += theirs.amount
                mine.lines += theirs.lines
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
        return any(r.diff != 0 or r.a.count != r.b.count or r.a.lines != r.b.lines for r in self.rows) or any(
            a != b for a, b in self.rejects.values())


def _sides(plan: Any) -> dict[tuple[str, str, str], str]:
    """(agreement hash, direction, service) -> "revenue" | "cost"."""

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
        if charge_col is None:
            cols["charge"] = pa.array(["traffic"] * table.num_rows, pa.string())
        else:  # "label (kind)", as charge_label
            cols["charge"] = pc.binary_join_element_wise(
                pc.cast(table.column(charge_col), pa.string()), " (",
                pc.cast(table.column("kind"), pa.string()), ")", "")
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


@dataclass
class _Version:
    """One version's plan and, with a period, its cycle per partner (usage, events, refunds)."""

    which: str
    plan: Any
    sides: dict
    periods: dict[str, Any] = field(default_factory=dict)  # partner -> Period
    events: dict[str, list] = field(default_factory=dict)  # partner -> event types counted
    usage: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    event_records: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    refunds: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    refund_problems: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _cycle_of(plan: Any, period: str, partners: list[str] | None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """partner -> its period (its time zone and billing), and the event types its charges count."""

    periods, events = {}, {}
    for code in billable_partners(plan):
        if partners is not None and code not in partners:
            continue
        p = plan.partner(code)
        periods[code] = parse_period(period, p.timezone, p.billing)
        events[code] = event_names(plan, code)
    return periods, events


def _in_period(table: pa.Table, per: Any) -> pa.Array:
    start = table.column("start")
    lo = pa.scalar(per.start, start.type)
    hi = pa.scalar(per.end, start.type)
    # a record without a start is left to the rater (it rejects it), as before
    return pc.fill_null(pc.and_(pc.greater_equal(start, lo), pc.less(start, hi)), True)


def inventory_items(project: Project) -> tuple[list[Any], list[str]]:
    """The items of the folder's ``inventory*.csv`` files (a later file wins for the same
    partner and item, as importing them in turn does) and a problem text per bad row."""

    items: dict[tuple[str, str], Any] = {}
    problems: list[str] = []
    for f in project.files().inventory:
        imp = read_inventory(f)
        for it in imp.items:
            items[(it.partner, it.item_id)] = it
        problems += [f"{project.shown(f)}:{p.line}: {p.reason}: {p.message}" for p in imp.problems]
    return list(items.values()), problems


def fx_table(plan: Any) -> Any:
    """The plan's fx sources as ``icdsl.billing.fx.FxTable`` (what a store loads, without one)."""

    rows = [SimpleNamespace(source=src.name, base=r.base, quote=r.quote, rate=r.rate, effective_from=r.effective_from,
                            id=n)
            for src in plan.fx_sources for n, r in enumerate(src.rates, 1)]
    return FxTable(rows, {src.name: src.rounding for src in plan.fx_sources})  # type: ignore[arg-type]


def cycle_lines(plan: Any, partner: str, per: Any, usage: list, events: list, refunds: list, items: list,
                fx: Any) -> tuple[list[Any], list[str]]:
    """The cycle-level charge lines of ``partner``'s cycle ``per`` (every agreement version in
    force), as ``icdsl.billing.charging.evaluate`` evaluates them but without a store: a first
    cycle (no history, nothing billed before). Held charges are left out (and said); a version
    whose charges cannot be evaluated gives no lines (and says why)."""

    p = plan.partner(partner)
    days = Days(per.local_start, per.local_end)
    mine = tuple(it for it in items if it.partner == partner)
    lines: list[Any] = []
    notes: list[str] = []
    for ag in versions_in_force(plan, partner, days):
        versions = tuple(a for a in plan.agreements_for(partner) if a.name == ag.name)
        current = ag
        while True:
            ctx = ChargeContext(agreement=current, partner=p, cycle=days, cycle_label=per.label, usage=tuple(usage),
                                inventory=mine, events=tuple(events), adjustments=tuple(refunds),
                                versions=tuple(current if v is ag else v for v in versions), fx=rates_of(fx, current))
            try:
                lines += evaluate_cycle(ctx)
                break
            except ChargeHold as h:
                notes.append(f"{partner} {ag.key}: held for review, left out: {h}")
                left = tuple(c for c in current.charges if c.span != h.span)
                if len(left) == len(current.charges):
                    break
                current = replace(current, charges=left)
            except ChargeError as e:
                notes.append(f"{partner} {ag.key}: cycle charges not evaluated: {e}")
                break
    return lines, notes


def _line_side(line: Any, agreement: Any, partner: str) -> str | None:
    """"revenue", "cost", or None (our own revenue share: in the revenue already)."""

    where, _stream, payable = placement(line, agreement, partner)
    if where == "share":
        return None if line.dimensions.get("party") == "us" else "cost"
    return "cost" if payable else "revenue"


def charge_label(name: str, kind: str) -> str:
    return f"{name} ({kind})"


def _add_lines(acc: dict[tuple[str, ...], Row], which: str, plan: Any, partner: str, lines: list[Any]) -> None:
    by_hash = {a.source_hash: a for a in plan.agreements}
    for ln in lines:
        side = _line_side(ln, by_hash.get(ln.agreement_hash), partner)
        if side is None:
            continue
        direction, service = ln.scope[0] if len(ln.scope) == 1 else ("", "")
        key = (partner, side, direction, service, "", charge_label(ln.charge_name, ln.kind), ln.currency)
        r = acc.get(key)
        if r is None:
            r = acc[key] = Row(key)
        cell = r.a if which == "a" else r.b
        cell.amount += ln.amount
        cell.lines += 1


def compare(project: Project, versions: Versions, buffers: Mapping[Path, str], traffic: list[Path],
            partners: list[str] | None = None, *, period: str | None = None,
            progress: Callable[[str, int, int], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> WhatIf:
    """Rate ``traffic`` with both versions and, with a ``period``, evaluate both versions' cycle
    charges (see the module); line the sums up."""

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
    both = [_Version("a", plan_a, _sides(plan_a)), _Version("b", plan_b, _sides(plan_b))]
    out = WhatIf(versions.labels(project), [], period=period or "")
    if period:
        out.method = METHOD_CYCLE
        for v in both:
            v.periods, v.events = _cycle_of(v.plan, period, partners)
    acc: dict[tuple[str, ...], Row] = {}
    rejects: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    done = 0

    def rate(v: _Version, table: pa.Table, partner: str | None) -> None:
        if partner is not None and v.periods:
            tz = v.plan.partner(partner).timezone
            table, refund_rows = split_refunds(table)
            if refund_rows is not None:
                got, bad = refunds_of(v.plan, refund_rows, tz, partner)
                v.refunds[partner] += got
                v.refund_problems[partner] += len(bad)
            table, events = split_events(table, v.events[partner], tz, partner)
            v.event_records[partner] += events
        if not table.num_rows:
            return
        rated, rej, charges = rate_batch_with_charges(v.plan, table)
        _accumulate(acc, v.which, v.plan, v.sides, rated, charges)
        if partner is not None and v.periods:
            v.usage[partner] = merge_usage(v.usage[partner], usage_from_rated(v.plan, rated, charges))
        if rej.num_rows:
            g = pa.table({"partner": pc.cast(rej.column("partner"), pa.string()),
                          "reason": pc.cast(rej.column("reason"), pa.string())}).group_by(
                ["partner", "reason"]).aggregate([("reason", "count")])
            for row in g.to_pylist():
                rejects[(row["partner"] or "", row["reason"])][0 if v.which == "a" else 1] += row["reason_count"]

    for records, rejected in read_records(traffic, plan_a, partners):
        if cancelled():
            raise Cancelled()
        out.intake_rejected += rejected
        out.records += records.num_rows
        pcol = pc.cast(records.column("partner"), pa.string()) if period else None
        split: dict[Any, pa.Table] = {}  # the same partner and period in both versions: split once
        for v in both:
            if not v.periods:
                rate(v, records, None)
            else:  # each partner's records of its period (its time zone); the rest as they are
                known = tuple(v.periods)
                if known not in split:
                    split[known] = records.filter(pc.invert(pc.fill_null(
                        pc.is_in(pcol, value_set=pa.array(list(known), pa.string())), False)))
                rate(v, split[known], None)
                for code, per in v.periods.items():
                    key = (code, per.start, per.end)
                    if key not in split:
                        sub = records.filter(pc.fill_null(pc.equal(pcol, code), False))
                        inside = _in_period(sub, per) if sub.num_rows else None
                        if inside is not None and v.which == "a":
                            out.outside += sub.num_rows - pc.sum(pc.cast(inside, pa.int64())).as_py()
                        split[key] = sub.filter(inside) if inside is not None else sub
                    if split[key].num_rows:
                        rate(v, split[key], code)
            if cancelled():
                raise Cancelled()
        done += records.num_rows
        progress("rating both versions", done, 0)
    if period:
        progress("evaluating the cycle charges", 0, 0)
        items, problems = inventory_items(project)
        out.notes += [f"inventory: {p}" for p in problems[:5]]
        if len(problems) > 5:
            out.notes.append(f"inventory: {len(problems) - 5} more bad row(s)")
        for v in both:
            fx = fx_table(v.plan)
            label = out.labels[0 if v.which == "a" else 1]
            for code, per in v.periods.items():
                lines, notes = cycle_lines(v.plan, code, per, v.usage[code], v.event_records[code], v.refunds[code],
                                           items, fx)
                _add_lines(acc, v.which, v.plan, code, lines)
                out.notes += [f"{v.which.upper()} ({label}): {n}" for n in notes]
                if v.refund_problems[code]:
                    out.notes.append(f"{v.which.upper()}: {code}: {v.refund_problems[code]} refund record(s) "
                                     "cannot be used (left out)")
                if needs_totals(v.plan, code):
                    out.notes.append(f"{v.which.upper()}: {code}: per-record charges that read cycle.* are rated "
                                     "without the cycle's totals")
            if cancelled():
                raise Cancelled()
    out.rows = sorted(acc.values(), key=lambda r: (-abs(r.diff), r.key))
    out.rejects = {k: (v[0], v[1]) for k, v in sorted(rejects.items())}
    out.seconds = time.perf_counter() - t0
    return out
