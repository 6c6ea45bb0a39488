"""What-if, headless: two versions of the rules over the same traffic, difference by partner,
service, destination and charge, and the invoices each version would issue.

The two versions are overlays of the folder (see ``icdsl.lang.loader.load(overlay=)``):

- *saved vs edited*: A is the folder as saved, B the folder with the editor's unsaved buffers;
- *two files*: B reads file ``new``'s text in place of file ``old`` (a new version of an
  agreement written next to the current one); in both A and B ``new`` itself is left out
  (an empty text), so its agreements are not loaded twice.

With a ``period`` (``2026-03``), each version bills that period with **the cycle engine**
(:func:`icdsl.cycle.run`, the function ``icdsl cycle run`` calls), without a database: per
version and per partner chosen (with an agreement), a :class:`~icdsl.cycle.CycleInputs` with

- the partner's records of the period (its time zone; records outside it are counted in
  ``WhatIf.outside`` and left out), read as intake would pass them
  (``traffic_source.read_records``);
- the folder's inventory (``inventory*.csv`` read with ``icdsl.inventory.read_inventory``;
  later files win for the same partner and item), the plan's fx sources
  (:func:`icdsl.cycle.offline.plan_fx`), and the history ``history(partner, period)`` gives
  (default: none, a first cycle, like the simulation's fresh store);
- ``accept`` ``charge_hold`` and ``bad_refund``: a charge held for review is left out of the
  cycle and said in ``notes``, as are refund records that cannot be used; no other validator
  runs (the simulation shows the findings).

The engine sets events and refunds apart, rates the rest, sums the lines, evaluates every
charge (fees, events, tiers, discounts, commitments, shares, ``cycle.*`` conditions) and drafts
the invoices. What is compared: each invoice line's exact sum (traffic, by destination), the
per-record charges (by charge, with the records they apply to), every cycle-level charge line
(a row per charge: charge = ``label (kind)``, its single (direction, service) if it has one,
no destination, 0 records, its amount in its own currency), and each draft invoice's total in
the invoice currency (``WhatIf.documents``: after conversion, rounding and tax). A cycle the
engine refuses (a charge that cannot be evaluated) is said in ``notes``; its partner has no
rows in that version.

Without a period, there is no cycle: the traffic is rated with **the batch executor**
(``icdsl.rating.batch.rate_batch_with_charges``: traffic prices and per-record surcharges),
both versions on each batch, summed exactly with Arrow's group-by.

*Side*: what a partner owes us is revenue; a service the agreement nets (``netting with ...``,
on the settlement statement: what we owe) is cost. Charge lines follow
``icdsl.cycle.charges.placement``: invoice lines are revenue, payable statement lines and
revenue shares due to a party other than us are cost; our own share (party ``us``) is part of
the revenue already and left out, as the dashboard does.
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

from icdsl.cycle import CycleError, CycleInputs, CycleResult, History, Period, run
from icdsl.cycle.charges import BAD_REFUND, HOLD, placement
from icdsl.cycle.invoicing import route
from icdsl.cycle.offline import SummarySinks, period_of, period_records, plan_fx
from icdsl.inventory import read_inventory
from icdsl.rating.batch import rate_batch_with_charges
from icdsl.tui.project import Project
from icdsl.tui.simulate import billable_partners, build_plan
from icdsl.tui.traffic_source import Cancelled, read_records

DIMENSIONS = ("partner", "side", "service", "destination", "charge")
KEY = ("partner", "side", "direction", "service", "destination", "charge", "currency")
METHOD_TRAFFIC = "batch executor (traffic and per-record surcharges), exact sums; no cycle-level charges"
METHOD_CYCLE = ("cycle engine (icdsl.cycle.run: traffic, per-record and cycle-level charges, draft invoices) "
                "for each partner's cycle of the period, exact sums")
#: what a partner's cycle is billed against: its earlier cycles (default: none, a first cycle)
HistoryOf = Callable[[str, Period], History]


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
    # (partner, document, currency) -> (A, B): each draft invoice's total in the invoice currency
    # (document "invoice STREAM"), the settlement statement's payable ("statement"); None: not issued
    documents: dict[tuple[str, str, str], tuple[Decimal | None, Decimal | None]] = field(default_factory=dict)

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

    def document_totals(self) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
        """(document kind, currency) -> (A, B) over the partners: ``invoices`` (their totals in
        the invoice currency, tax included) and ``statements`` (payable)."""
        out: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for (_partner, doc, cur), (a, b) in self.documents.items():
            t = out[("invoices" if doc.startswith("invoice") else "statements", cur)]
            t[0] += a or 0
            t[1] += b or 0
        return {k: (v[0], v[1]) for k, v in sorted(out.items())}

    @property
    def changed(self) -> bool:
        return any(r.diff != 0 or r.a.count != r.b.count or r.a.lines != r.b.lines for r in self.rows) or any(
            a != b for a, b in self.rejects.values()) or any(a != b for a, b in self.documents.values())


def _sides(plan: Any) -> dict[tuple[str, str, str], str]:
    """(agreement hash, direction, service) -> "revenue" | "cost"."""
    out = {}
    for ag in plan.agreements:
        for sp in ag.services:
            netted = route(ag, sp.direction, sp.service)[1]
            out[(ag.source_hash, sp.direction, sp.service)] = "cost" if netted else "revenue"
    return out


def _row(acc: dict[tuple[str, ...], Row], which: str, key: tuple[str, ...]) -> Cell:
    r = acc.get(key)
    if r is None:
        r = acc[key] = Row(key)
    return r.a if which == "a" else r.b


def _accumulate(acc: dict[tuple[str, ...], Row], which: str, sides: dict, rated: pa.Table | None,
                charges: pa.Table | None) -> None:
    """Rated records (traffic, by destination) and per-record charges (by charge), summed exactly."""
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
            cell = _row(acc, which, (row["partner"], side, row["direction"], row["service"], row["destination"],
                                     row["charge"], row["currency"]))
            cell.count += row["amount_count"]
            cell.amount += row["amount_sum"] or Decimal(0)

    if rated is not None:
        add(rated, None)
    if charges is not None and charges.num_rows:
        add(charges, "charge")


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


def _line_side(line: Any, agreement: Any, partner: str) -> str | None:
    """"revenue", "cost", or None (our own revenue share: in the revenue already)."""
    where, _stream, payable = placement(line, agreement, partner)
    if where == "share":
        return None if line.dimensions.get("party") == "us" else "cost"
    return "cost" if payable else "revenue"


def charge_label(name: str, kind: str) -> str:
    return f"{name} ({kind})"


def _add_cycle(acc: dict[tuple[str, ...], Row], which: str, plan: Any, sides: dict, code: str,
               result: CycleResult) -> None:
    """The engine's result as rows: the invoice lines' exact sums (traffic), the per-record
    charges (from the records they apply to) and the cycle-level charge lines."""
    for g in result.lines:
        side = sides.get((g.agreement_hash, g.direction, g.service), "revenue")
        cell = _row(acc, which, (code, side, g.direction, g.service, g.dims.get("destination") or "", "traffic",
                                 g.currency))
        cell.count += g.count
        cell.amount += g.amount
    record_charges = result.sinks.read_record_charges()
    _accumulate(acc, which, sides, None, record_charges)
    per_record = set()
    if record_charges is not None and record_charges.num_rows:
        per_record = {(r["agreement_hash"], r["kind"], r["charge"]) for r in record_charges.select(
            ["agreement_hash", "kind", "charge"]).group_by(["agreement_hash", "kind", "charge"]).aggregate([]).to_pylist()}
    by_hash = {a.source_hash: a for a in plan.agreements}
    for ln in result.charge_lines:
        if (ln.agreement_hash, ln.kind, ln.charge_name) in per_record:
            continue  # a per-record charge's line: its records are compared above
        side = _line_side(ln, by_hash.get(ln.agreement_hash), code)
        if side is None:
            continue
        direction, service = ln.scope[0] if len(ln.scope) == 1 else ("", "")
        cell = _row(acc, which, (code, side, direction, service, "", charge_label(ln.charge_name, ln.kind),
                                 ln.currency))
        cell.amount += ln.amount
        cell.lines += 1


def _documents(result: CycleResult) -> dict[tuple[str, str, str], Decimal]:
    code = result.partner.code
    out: dict[tuple[str, str, str], Decimal] = {}
    if result.drafts is None:
        return out
    for inv in result.drafts.invoices:
        out[(code, f"invoice {inv.stream}", inv.currency)] = inv.total
    st = result.drafts.statement
    if st is not None and st.payable:
        out[(code, "statement", st.currency)] = st.payable
    return out


def _rejected(rejects: dict[tuple[str, str], list[int]], which: str, table: pa.Table) -> None:
    if not table.num_rows:
        return
    g = pa.table({"partner": pc.cast(table.column("partner"), pa.string()),
                  "reason": pc.cast(table.column("reason"), pa.string())}).group_by(
        ["partner", "reason"]).aggregate([("reason", "count")])
    for row in g.to_pylist():
        rejects[(row["partner"] or "", row["reason"])][0 if which == "a" else 1] += row["reason_count"]


@dataclass
class _Version:
    """One version's plan and, with a period, each partner's period and records of it."""

    which: str
    plan: Any
    sides: dict
    periods: dict[str, Period] = field(default_factory=dict)  # partner -> its period
    records: dict[str, list[tuple[int, pa.Table]]] = field(default_factory=lambda: defaultdict(list))


def compare(project: Project, versions: Versions, buffers: Mapping[Path, str], traffic: list[Path],
            partners: list[str] | None = None, *, period: str | None = None,
            progress: Callable[[str, int, int], None] | None = None,
            cancelled: Callable[[], bool] | None = None, history: HistoryOf | None = None) -> WhatIf:
    """Bill ``traffic`` with both versions: with a ``period``, each partner's cycle through the
    cycle engine; without, the traffic rated (see the module); line the sums up."""
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
            v.periods = {code: period_of(v.plan.partner(code), period) for code in billable_partners(v.plan)
                         if partners is None or code in partners}
    acc: dict[tuple[str, ...], Row] = {}
    rejects: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    done = 0

    def rate(v: _Version, table: pa.Table) -> None:
        """Records that belong to no cycle compared (no period, or a partner not billed): rated."""
        if table.num_rows:
            rated, rej, charges = rate_batch_with_charges(v.plan, table)
            _accumulate(acc, v.which, v.sides, rated, charges)
            _rejected(rejects, v.which, rej)

    for batch, (records, rejected) in enumerate(read_records(traffic, plan_a, partners)):
        if cancelled():
            raise Cancelled()
        out.intake_rejected += rejected
        out.records += records.num_rows
        if not period:
            for v in both:
                rate(v, records)
        else:
            pcol = pc.cast(records.column("partner"), pa.string())
            split: dict[Any, tuple[pa.Table, int]] = {}  # the same partner and period in both versions: split once
            for v in both:
                known = tuple(v.periods)
                if known not in split:
                    split[known] = (records.filter(pc.invert(pc.fill_null(
                        pc.is_in(pcol, value_set=pa.array(list(known), pa.string())), False))), 0)
                rate(v, split[known][0])
                for code, per in v.periods.items():
                    key = (code, per.start, per.end)
                    if key not in split:
                        split[key] = period_records(records, code, per)
                        if v.which == "a":  # counted once, in A's periods
                            out.outside += split[key][1]
                    if split[key][0].num_rows:
                        v.records[code].append((batch, split[key][0]))
        if cancelled():
            raise Cancelled()
        done += records.num_rows
        progress("reading the traffic" if period else "rating both versions", done, 0)
    if period:
        items, problems = inventory_items(project)
        out.notes += [f"inventory: {p}" for p in problems[:5]]
        if len(problems) > 5:
            out.notes.append(f"inventory: {len(problems) - 5} more bad row(s)")
        documents: dict[tuple[str, str, str], list[Decimal | None]] = defaultdict(lambda: [None, None])
        for v in both:
            fx = plan_fx(v.plan)
            label = f"{v.which.upper()} ({out.labels[0 if v.which == 'a' else 1]})"
            for code, per in v.periods.items():
                def tick(stage: str, n: int, total: int, code: str = code, which: str = v.which) -> None:
                    if cancelled():
                        raise Cancelled()
                    progress(f"{which.upper()}: {code} {stage}", n, total)

                inputs = CycleInputs(
                    plan=v.plan, partner=v.plan.partner(code), period=per, records=v.records.pop(code, []),
                    inventory=tuple(it for it in items if it.partner == code),
                    history=history(code, per) if history is not None else History(), fx=fx,
                    accept=(HOLD, BAD_REFUND), validators=(), sinks=SummarySinks(), progress=tick)
                try:
                    result = run(inputs)
                except CycleError as e:
                    out.notes.append(f"{label}: {code}: the cycle cannot be billed, its rows are left out: {e}")
                    continue
                _add_cycle(acc, v.which, v.plan, v.sides, code, result)
                _rejected(rejects, v.which, result.sinks.read_rejects())
                for k, amount in _documents(result).items():
                    documents[k][0 if v.which == "a" else 1] = amount
                for f in result.findings:
                    if f.code == HOLD:
                        out.notes.append(f"{label}: {code}: held for review, left out: {f.message}")
                    elif f.code == BAD_REFUND:
                        out.notes.append(f"{label}: {code}: {f.count} refund record(s) cannot be used (left out)")
        out.documents = {k: (a, b) for k, (a, b) in sorted(documents.items())}
    out.rows = sorted(acc.values(), key=lambda r: (-abs(r.diff), r.key))
    out.rejects = {k: (v[0], v[1]) for k, v in sorted(rejects.items())}
    out.seconds = time.perf_counter() - t0
    return out
