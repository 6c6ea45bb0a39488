"""Revenue assurance on the store's side: what the checks of :mod:`icdsl.assure` need, read
from the database and the data folder; the daily traffic aggregate written with each cycle.

- :func:`write_traffic`: a cycle's rated traffic by local day and destination
  (:class:`icdsl.cycle.daily.DailyRow`, computed by the engine while it rated) as rows of
  ``traffic_daily``, replacing an earlier run's (called from the cycle's write);
- :func:`read_inputs`: the period's :class:`icdsl.assure.Inputs` for every partner (or one):
  current inventory, recurring fees billed per item (net of corrections), the cycles run,
  rating rejects for want of an agreement (the cycles' rejects files, read only for cycles that
  have some), ingested records by day (intake statistics, undeclared partners included), and
  the daily series of the history and the period (``traffic_daily``: one indexed query);
- :func:`assure`: the checks over them (``icdsl assure``); :func:`cycle_findings`: the same
  checks of one cycle, as validation findings before it is invoiced (warnings; a fee billed
  after an item's termination is an error, a billing error).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl import assure as A
from icdsl.billing import models as M
from icdsl.billing import rows as bulk
from icdsl.billing.errors import StoreError
from icdsl.billing.inventory import _plain
from icdsl.charges.keys import parse_key
from icdsl.charges.lines import minor_units
from icdsl.cycle.daily import Daily, DailyRow
from icdsl.cycle.periods import local_days, parse_period, to_us
from icdsl.cycle.rater import decimal_of_int64
from icdsl.cycle.validation import ACCEPT_ALL
from icdsl.cycle.validation import Finding as ValidationFinding
from icdsl.inventory import items_from_rows
from icdsl.plan.model import Plan

if TYPE_CHECKING:
    from icdsl.billing.store import Store

NO_AGREEMENT = ("no_agreement", "outside_agreement_period")
#: checks run as validation findings of a cycle (the others are about the rules or intake:
#: ``rating_rejects`` already reports records outside any agreement)
CYCLE_CHECKS = ("inventory", "termination", "expiry", "traffic")
#: the codes that stay errors before invoicing (billing errors); the others warn
CYCLE_ERRORS = ("billed_after_termination",)

_TD = M.TrafficDaily.__table__
Policy = A.Policy  # the checks' thresholds, for the store's callers (the command line)


# --------------------------------------------------------------------------- writing


def pack(partner: str, first_day: date, days: int, rows: Iterable[DailyRow]) -> list[dict[str, Any]]:
    """Daily rows as ``traffic_daily`` rows: one per direction, service, destination and
    currency, the days as comma-separated vectors from ``first_day`` and their exact totals
    (rows given one by one, each amount written with its own decimals; a cycle's traffic is
    packed on columns by :func:`pack_daily`)."""
    series: dict[tuple[str, str, str, str], tuple[list[int], list[int], list[Decimal]]] = {}
    for r in rows:
        j = (r.day - first_day).days
        if not 0 <= j < days:
            raise StoreError(f"daily traffic of {r.day} is outside the cycle's days ({first_day}, {days} days)")
        v = series.get((r.direction, r.service, r.destination, r.currency))
        if v is None:
            v = series[(r.direction, r.service, r.destination, r.currency)] = (
                [0] * days, [0] * days, [Decimal(0)] * days)
        v[0][j] += r.records
        v[1][j] += r.units
        v[2][j] += r.amount
    return [{"partner_code": partner, "direction": d, "service": sv, "destination": dest, "currency": cur,
             "first_day": first_day, "days": days, "records": sum(rec), "units": sum(units),
             "amount": sum(amounts, Decimal(0)), "daily_records": ",".join(map(str, rec)),
             "daily_units": ",".join(map(str, units)),
             "daily_amounts": ",".join(format(a, "f") if a else "0" for a in amounts)}
            for (d, sv, dest, cur), (rec, units, amounts) in sorted(series.items())]


def pack_daily(partner: str, daily: Daily) -> list[dict[str, Any]]:
    """A cycle's daily traffic (:class:`icdsl.cycle.daily.Daily`) as ``traffic_daily`` rows, as
    :func:`pack` makes them from its rows, on columns: each matrix made text cell by cell by
    one Arrow cast and joined series by series by one ``binary_join`` (Python per series only:
    the row's dictionary and its totals)."""
    n = len(daily)
    if not n:
        return []
    records, units, amounts = (_joined(m, 0 if m is not daily.amounts else daily.scale)
                               for m in (daily.records, daily.units, daily.amounts))
    rec_sums, unit_sums, amount_sums = (m.sum(axis=1).tolist() for m in (daily.records, daily.units, daily.amounts))
    return [{"partner_code": partner, "direction": d, "service": sv, "destination": dest, "currency": cur,
             "first_day": daily.first, "days": daily.days, "records": int(rec_sums[i]), "units": int(unit_sums[i]),
             "amount": daily.amount(amount_sums[i]), "daily_records": records[i], "daily_units": units[i],
             "daily_amounts": amounts[i]}
            for i, (d, sv, dest, cur) in enumerate(daily.keys)]


def _joined(matrix: np.ndarray, scale: int) -> list[str]:
    """Each row of a matrix of (unscaled) integers as comma-separated text: a value as
    ``format(Decimal, "f")`` writes it at ``scale`` decimals, a zero as ``0``."""
    rows, days = matrix.shape
    flat = matrix.reshape(-1)
    if flat.dtype == object:  # sums beyond int64 (rare): Python integers, made text one by one
        cells = pa.array([format(Decimal(int(v)).scaleb(-scale), "f") if v else "0" for v in flat.tolist()],
                         pa.string())
    else:
        values = pa.array(flat, pa.int64())
        cells = pc.cast(decimal_of_int64(flat, scale) if scale else values, pa.string())
        if scale:
            cells = pc.if_else(pc.equal(values, 0), pa.scalar("0"), cells)
    lists = pa.ListArray.from_arrays(pa.array(np.arange(0, rows * days + 1, days, dtype=np.int32)), cells)
    return pc.binary_join(lists, ",").to_pylist()


_DELETE_TRAFFIC = _TD.delete().where(_TD.c.cycle_id == sa.bindparam("cycle_id"))


def write_traffic(s: Session, cycle: M.BillingCycle, packed: list[dict[str, Any]]) -> None:
    """The cycle's daily traffic (``packed``: :func:`pack_daily` or :func:`pack` of it),
    replacing that of its earlier runs (two statements: a delete, the rows in bulk)."""
    conn = s.connection()
    conn.execute(_DELETE_TRAFFIC, {"cycle_id": cycle.id})
    if packed:
        bulk.insert(conn, _TD, [dict(r, cycle_id=cycle.id) for r in packed])


# --------------------------------------------------------------------------- reading


@dataclass
class Report:
    """What ``icdsl assure`` found, and over what."""

    period: str
    start: date
    end: date
    partners: list[str]
    findings: list[A.Finding]
    history_from: date
    series: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        by_sev = {sev: sum(1 for f in self.findings if f.severity == sev) for sev in A.SEVERITIES}
        return {"period": self.period, "start": self.start.isoformat(),
                "end": (self.end - timedelta(days=1)).isoformat(), "partners": self.partners,
                "history_from": self.history_from.isoformat(), "series": self.series, "counts": by_sev,
                "findings": [f.as_dict() for f in self.findings]}


def _period_days(period: str) -> tuple[str, date, date]:
    per = parse_period(period, "UTC")
    return per.label, per.local_start, per.local_end


def _partners(s: Session, plan: Plan, partner: str | None) -> list[str]:
    declared = set(s.scalars(select(M.Partner.code)))
    billed = [p.code for p in plan.partners if plan.agreements_for(p.code)]
    if partner is not None:
        if partner not in declared and plan.partner(partner) is None:
            known = ", ".join(sorted(declared)) or "none"
            raise StoreError(f"unknown partner '{partner}' (partners in the store: {known})")
        return [partner]
    return [p for p in billed if p in declared] or billed


#: current inventory items as rows (no ORM objects: read at every cycle's validation)
_ITEMS = select(M.InventoryItem.partner_id, M.InventoryItem.reference, M.InventoryItem.kind,
                M.InventoryItem.quantity, M.InventoryItem.activation_date, M.InventoryItem.termination_date,
                M.InventoryItem.attributes).where(M.InventoryItem.superseded_by_id.is_(None))


# the statements read at every cycle's validation, built once (building a statement and its cache
# key costs more than SQLite takes to run it): lists of partners as expanding parameters
_B = sa.bindparam
_PARTNER_IDS = select(M.Partner.id, M.Partner.code).where(M.Partner.code.in_(_B("codes", expanding=True)))
_ITEMS_OF = _ITEMS.where(M.InventoryItem.partner_id.in_(_B("ids", expanding=True)))


def _items(s: Session, partners: Iterable[str]) -> list[Any]:
    """The partners' current inventory items."""
    codes = {pid: code for pid, code in s.execute(_PARTNER_IDS, {"codes": list(partners)})}
    rows = [{"partner_id": r.partner_id, "reference": r.reference, "kind": r.kind, "quantity": _plain(r.quantity),
             "activation_date": r.activation_date, "termination_date": r.termination_date, "attributes": r.attributes}
            for r in s.execute(_ITEMS_OF, {"ids": list(codes)})]
    return items_from_rows(rows, codes)


def _fees(lines: Iterable[tuple[str, str, dict[str, Any], Decimal]]) -> list[A.BilledFee]:
    """Recurring fees per item application, net of corrections, from charge lines given as
    (partner, cycle label, data, amount)."""
    net: dict[str, Decimal] = defaultdict(Decimal)
    info: dict[str, tuple[str, dict[str, Any]]] = {}
    cycles: dict[str, list[str]] = defaultdict(list)
    for partner, label, data, amount in lines:
        if data.get("kind") != "recurring":
            continue
        if data.get("corrects"):
            net[data["corrects"]] += Decimal(amount)
            cycles[data["corrects"]].append(label)
            continue
        apps = data.get("applications") or []
        per = (data.get("details") or {}).get("per_application", {})
        for app in apps:
            net[app] += Decimal(amount) if len(apps) == 1 else Decimal(per.get(app, "0"))
            cycles[app].append(label)
            info.setdefault(app, (partner, data))
    out = []
    for app, (partner, data) in info.items():
        dims = data.get("dimensions") or {}
        det = data.get("details") or {}
        if "item" not in dims or "period_start" not in dims:
            continue
        parts = parse_key(app)
        price, qty = data.get("unit_price"), data.get("quantity")
        full = Decimal(price) * Decimal(qty) if price is not None and qty is not None else None
        prorate = det.get("prorate", "none") if det.get("day_count", "actual") == "actual" else "other"
        days = det.get("days_in_period")
        out.append(A.BilledFee(
            partner, data.get("charge_name", ""), f"{data.get('agreement')} v{data.get('agreement_version')}",
            str(dims["item"]), str(dims.get("item_kind", "")), date.fromisoformat(dims["period_start"]),
            date.fromisoformat(dims["period_end"]), _at_minor_units(net[app], data.get("currency", "")), data.get("currency", ""), full, prorate,
            int(days) if days not in (None, "") and str(days).isdigit() else None, app,
            tuple(cycles[app]) if parts is not None else ()))
    return out


def _at_minor_units(amount: Decimal, currency: str) -> Decimal:
    """``amount`` written with the currency's decimals when that is exact (the store keeps 8:
    a finding said 70.97000000 EUR where 70.97 was meant); left as it is otherwise."""
    shown = amount.quantize(Decimal(1).scaleb(-minor_units(currency))) if currency else amount
    return shown if shown == amount else amount


_LINES = (select(M.BillingCycle.partner_code, M.BillingCycle.label, M.ChargeLine.data, M.ChargeLine.amount)
          .join(M.BillingCycle, M.BillingCycle.id == M.ChargeLine.cycle_id)
          .where(M.ChargeLine.kind == "recurring"))


# a partner's recurring charge lines on its other cycles (a cycle's validation)
_OTHER_LINES = _LINES.where(M.BillingCycle.partner_code == _B("code"), M.ChargeLine.cycle_id != _B("cycle_id"))
_CYCLES_OF = select(M.BillingCycle.partner_code, M.BillingCycle.label, M.BillingCycle.local_start,
                    M.BillingCycle.local_end).where(M.BillingCycle.partner_code.in_(_B("codes", expanding=True)))
_LAST_DAY_OF = select(sa.func.max(M.IntakeDailyCount.day)).where(M.IntakeDailyCount.partner == _B("code"))


def _cycles(s: Session, partners: Sequence[str]) -> dict[str, dict[str, tuple[date, date]]]:
    out: dict[str, dict[str, tuple[date, date]]] = defaultdict(dict)
    for code, label, start, end in s.execute(_CYCLES_OF, {"codes": list(partners)}):
        out[code][label] = (start, end)
    return out


def _unplaced(store: Store, s: Session, partners: Sequence[str], start: date, end: date) -> list[A.Unplaced]:
    """Rating rejects for want of an agreement of the cycles overlapping the period (read from
    their latest rejects file, only for cycles whose counts show some)."""
    out: list[A.Unplaced] = []
    q = (select(M.BillingCycle.id, M.BillingCycle.partner_code, M.BillingCycle.timezone, M.BillingCycle.totals)
         .where(M.BillingCycle.partner_code.in_(partners), M.BillingCycle.local_start < end,
                M.BillingCycle.local_end > start))
    for cid, code, tz, totals in s.execute(q):
        by_reason = (totals or {}).get("_rejects_by_reason") or {}
        if not any(by_reason.get(r) for r in NO_AGREEMENT):
            continue
        path = s.scalar(select(M.DataFile.path).where(M.DataFile.cycle_id == cid, M.DataFile.kind == "rating_rejects")
                        .order_by(M.DataFile.id.desc()).limit(1))
        if path is None:
            continue
        t = pq.read_table(store.data.abs(path), columns=["id", "reason", "direction", "service", "start"])
        t = t.filter(pc.is_in(t.column("reason"), value_set=pa.array(NO_AGREEMENT)))
        if not t.num_rows:
            continue
        days = local_days(to_us(t.column("start")), tz)
        groups: dict[tuple[str, str, str, date], list[str]] = defaultdict(list)
        for rid, reason, direction, service, day in zip(t.column("id").to_pylist(), t.column("reason").to_pylist(),
                                                        t.column("direction").to_pylist(),
                                                        t.column("service").to_pylist(), days, strict=True):
            if start <= day < end:
                groups[(str(direction), str(service), str(reason), day)].append(str(rid))
        for (direction, service, reason, day), ids in sorted(groups.items()):
            out.append(A.Unplaced(code, direction, service, reason, day, len(ids), tuple(ids[:5])))
    return out


def _ingested(s: Session, start: date, end: date) -> tuple[dict[str, dict[date, int]], date | None]:
    out: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    q = (select(M.IntakeDailyCount.partner, M.IntakeDailyCount.day, sa.func.sum(M.IntakeDailyCount.records))
         .where(M.IntakeDailyCount.day >= start, M.IntakeDailyCount.day < end)
         .group_by(M.IntakeDailyCount.partner, M.IntakeDailyCount.day))
    for partner, day, n in s.execute(q):
        out[partner][day] += int(n)
    last = s.scalar(select(sa.func.max(M.IntakeDailyCount.day)))
    return {k: dict(v) for k, v in out.items()}, last


#: the longest cycle (a quarter): a row starting this long before a window may reach into it
LONGEST_CYCLE = 93


def series_of(rows: Iterable[tuple[str, str, str, str, Any, str]], first: date, days: int,
              extra: tuple[str, Daily] | None = None) -> A.Series:
    """Daily records per (partner, direction, service, destination) as a matrix from ``first``
    (rows: partner, direction, service, destination, first day (a date or ISO text), the
    comma-separated records from that day; days outside are dropped). On columns: the keys
    numbered by one dict pass, every vector parsed by one NumPy call, summed by ``np.add.at``.
    ``extra``: a partner's daily traffic (a cycle's, not yet written), after the rows."""
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows and (extra is None or not len(extra[1])):
        return A.Series([], first, np.zeros((0, days), np.int64))
    index: dict[tuple[str, str, str, str], int] = {}
    counts = _series_rows(rows, index, first, days)
    if extra is not None and len(extra[1]):
        code, daily = extra
        ks = np.fromiter((index.setdefault((code, *k[:3]), len(index)) for k in daily.keys), np.int64, len(daily))
        lo = (daily.first - first).days  # the days of the matrix that fall from ``first`` to ``days``
        a, b = max(0, -lo), min(daily.days, days - lo)
        grown = np.zeros((len(index), days), np.int64)
        grown[:len(counts)] = counts
        if a < b:
            np.add.at(grown[:, lo + a:lo + b], ks, daily.records[:, a:b])
        counts = grown
    return A.Series(list(index), first, counts)


def _series_rows(rows: list[tuple[str, str, str, str, Any, str]], index: dict[tuple[str, str, str, str], int],
                 first: date, days: int) -> np.ndarray:
    """:func:`series_of`'s matrix of ``rows``, their keys numbered in ``index``."""
    if not rows:
        return np.zeros((0, days), np.int64)
    partner, direction, service, destination, first_days, texts = zip(*rows, strict=True)
    ks = np.fromiter((index.setdefault(k, len(index)) for k in zip(partner, direction, service, destination,
                                                                    strict=True)), np.int64, len(partner))
    starts = np.array(first_days, dtype="datetime64[D]").astype(np.int64) - (first - date(1970, 1, 1)).days
    lengths = np.fromiter((t.count(",") + 1 for t in texts), np.int64, len(texts))
    values = np.array(",".join(texts).split(","), dtype=np.int64)
    row_of = np.repeat(np.arange(len(texts)), lengths)
    offset = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    day = starts[row_of] + offset
    keep = (day >= 0) & (day < days) & (values != 0)
    counts = np.zeros((len(index), days), np.int64)
    np.add.at(counts, (ks[row_of][keep], day[keep]), values[keep])
    return counts


_HISTORY_ROWS = (select(_TD.c.partner_code, _TD.c.direction, _TD.c.service, _TD.c.destination,
                         sa.type_coerce(_TD.c.first_day, sa.String), _TD.c.daily_records)
                  .where(_TD.c.first_day >= _B("lo"), _TD.c.first_day < _B("end")))
#: (few partners: an IN list, excluding a cycle) -> the statement of :func:`_history_rows`
_HISTORY = {(few, exclude): _HISTORY_ROWS.where(*([_TD.c.partner_code.in_(_B("codes", expanding=True))] if few else []),
                                               *([_TD.c.cycle_id != _B("cycle_id")] if exclude else []))
            for few in (False, True) for exclude in (False, True)}


def _history_rows(s: Session, partners: Sequence[str], first: date, end: date,
                  exclude_cycle: int | None = None) -> list[tuple]:
    """(partner, direction, service, destination, first day, daily records) of the partners'
    rows that may hold days from ``first`` to ``end`` (the first day as the driver gives it: no
    per-row date conversion, NumPy reads ISO text and dates alike)."""
    few = len(partners) < 500
    params: dict[str, Any] = {"lo": first - timedelta(days=LONGEST_CYCLE), "end": end}
    if few:
        params["codes"] = list(partners)
    if exclude_cycle is not None:
        params["cycle_id"] = exclude_cycle
    rows = s.execute(_HISTORY[few, exclude_cycle is not None], params).all()
    if len(partners) >= 500:
        wanted = set(partners)
        rows = [r for r in rows if r[0] in wanted]
    return rows


_PERIOD_ROWS = select(_TD.c.partner_code, _TD.c.direction, _TD.c.service, _TD.c.destination, _TD.c.currency,
                      _TD.c.first_day, _TD.c.daily_records, _TD.c.daily_units, _TD.c.daily_amounts, _TD.c.units,
                      _TD.c.amount)


def unpack(row: Any, start: date, end: date) -> Iterator[DailyRow]:
    """The days from ``start`` to ``end`` (exclusive) with traffic of a ``traffic_daily`` row
    (direction, service, destination, currency, first day, the three vectors)."""
    direction, service, destination, currency, first_day, records, units, amounts = row
    rec, uni, amo = records.split(","), units.split(","), amounts.split(",")
    for j in range(max(0, (start - first_day).days), min(len(rec), (end - first_day).days)):
        if rec[j] != "0":
            yield DailyRow(first_day + timedelta(days=j), direction, service, destination, currency, int(rec[j]),
                           int(uni[j]), Decimal(amo[j]))


def _period_traffic(rows: Iterable[tuple[str, DailyRow]], inputs: A.Inputs,
                    whole: Iterable[Any] = ()) -> None:
    """The period's amounts, billed units and rated records per series and service, from daily
    rows, and from ``whole``: ``traffic_daily`` rows lying wholly inside the period (partner,
    direction, service, destination, currency, first day, daily records, units, amount), whose
    totals are used as they are (only their records are read day by day, by NumPy)."""
    amounts: dict[tuple[str, str, str, str], list] = defaultdict(lambda: [Decimal(0), 0, ""])
    volumes: dict[tuple[str, str, str, str], int] = defaultdict(int)
    n = (inputs.end - inputs.start).days
    rated: dict[tuple[str, str, str], np.ndarray] = defaultdict(lambda: np.zeros(n, np.int64))
    for partner, r in rows:
        key = (partner, r.direction, r.service, r.destination)
        acc = amounts[key]
        acc[0] += r.amount
        acc[1] += r.records
        acc[2] = r.currency
        volumes[key] += r.units
        rated[key[:3]][(r.day - inputs.start).days] += r.records
    for partner, direction, service, destination, currency, first_day, daily, units, amount in whole:
        key = (partner, direction, service, destination)
        vec = np.array(daily.split(","), np.int64)
        acc = amounts[key]
        acc[0] += Decimal(amount)
        acc[1] += int(vec.sum())
        acc[2] = currency
        volumes[key] += int(units)
        j = (first_day - inputs.start).days
        rated[key[:3]][j:j + len(vec)] += vec
    if inputs.series is not None:
        inputs.series.amounts = {k: (v[0], v[1], v[2]) for k, v in amounts.items()}
    inputs.volumes = dict(volumes)
    inputs.rated = {k: {inputs.start + timedelta(days=j): int(v[j]) for j in np.flatnonzero(v).tolist()}
                    for k, v in rated.items()}


def read_inputs(store: Store, s: Session, plan: Plan, period: str, *, partner: str | None = None,
                policy: A.Policy | None = None) -> A.Inputs:
    """The checks' inputs over ``period`` (a month, week, quarter or range of local days)."""
    policy = policy or A.Policy()
    label, start, end = _period_days(period)
    partners = _partners(s, plan, partner)
    first = start - timedelta(days=policy.history_days)
    ingested, last = _ingested(s, start, end)
    declared = set(s.scalars(select(M.Partner.code)))
    unknown = {p: days for p, days in ingested.items() if p not in declared and plan.partner(p) is None}
    if partner is not None:
        unknown = {}
    inputs = A.Inputs(
        plan=plan, period=label, start=start, end=end, partners=partners, as_of=end, items=_items(s, partners),
        fees=_fees(r for r in s.execute(_LINES.where(M.BillingCycle.partner_code.in_(partners)))),
        cycles=_cycles(s, partners), unplaced=_unplaced(store, s, partners, start, end), unknown=unknown,
        ingested=ingested, last_data_day=last)
    rows = _history_rows(s, partners, first, end)
    inputs.series = series_of(rows, first, (end - first).days)
    q = _PERIOD_ROWS.where(_TD.c.first_day >= start - timedelta(days=LONGEST_CYCLE), _TD.c.first_day < end,
                           _TD.c.partner_code.in_(list(partners)))
    whole, parts = [], []
    for r in s.execute(q):
        # (partner, direction, service, destination, currency, first day, records, units, amounts, totals)
        if r[5] >= start and r[5] + timedelta(days=r[6].count(",") + 1) <= end:
            whole.append((*r[:7], r[9], r[10]))  # wholly in the period: its exact totals as stored
        else:
            parts.append(r)
    _period_traffic(((r[0], d) for r in parts for d in unpack(r[1:9], start, end)), inputs, whole)
    return inputs


def assure(store: Store, plan: Plan, period: str, *, partner: str | None = None,
           policy: A.Policy | None = None) -> Report:
    """``icdsl assure``: every check over the period (see the module's documentation)."""
    policy = policy or A.Policy()
    t0 = time.perf_counter()
    with store.session() as s:
        inputs = read_inputs(store, s, plan, period, partner=partner, policy=policy)
    t1 = time.perf_counter()
    found = A.check(inputs, policy)
    t2 = time.perf_counter()
    return Report(inputs.period, inputs.start, inputs.end, list(inputs.partners), found,
                  inputs.start - timedelta(days=policy.history_days),
                  len(inputs.series.keys) if inputs.series is not None else 0, {"read": t1 - t0, "check": t2 - t1})


# --------------------------------------------------------------------------- validation of a cycle


def cycle_findings(store: Store, s: Session, cycle: M.BillingCycle, plan: Plan, result: Any,
                   policy: A.Policy | None = None) -> list[ValidationFinding]:
    """The assurance checks of one cycle before it is invoiced, as validation findings: its
    partner's inventory and fees (this run's charge lines in place of the cycle's earlier
    ones), agreements and commitments, and its traffic (``result.traffic``, a
    :class:`~icdsl.cycle.daily.Daily`, read on its matrices) against the partner's baseline.
    All warnings, but a fee billed after an item's termination (a billing error: an error,
    which ``--accept billed_after_termination`` lets through)."""
    policy = policy or A.Policy()
    code = cycle.partner_code
    start, end = cycle.local_start, cycle.local_end
    first = start - timedelta(days=policy.history_days)
    lines = list(s.execute(_OTHER_LINES, {"code": code, "cycle_id": cycle.id}))
    lines += [(code, cycle.label, ln.to_dict(), ln.amount) for ln in result.charge_lines]
    cycles = _cycles(s, [code])
    cycles[code][cycle.label] = (start, end)
    last = s.scalar(_LAST_DAY_OF, {"code": code})
    inputs = A.Inputs(plan=plan, period=cycle.label, start=start, end=end, partners=[code], as_of=end,
                      items=_items(s, [code]), fees=_fees(lines), cycles=cycles, last_data_day=last)
    rows = _history_rows(s, [code], first, start, exclude_cycle=cycle.id)
    daily = result.traffic if result.traffic is not None else Daily.empty(start, (end - start).days)
    inputs.series = series_of(rows, first, (end - first).days, extra=(code, daily))
    _cycle_traffic(code, daily, inputs)
    accept = set(getattr(result, "accept", ()))
    out = []
    for f in A.check(inputs, policy, only=CYCLE_CHECKS):
        if f.code == "traffic_missing_day":
            continue  # validation's traffic_profile reports days without traffic already
        severity = f.severity if f.code in CYCLE_ERRORS else "warning" if f.severity == "error" else f.severity
        out.append(ValidationFinding(
            f.code, severity, f"{f.subject}: {f.message}; what to do: {f.action}", f.count, (),
            f.as_dict(), validator="assurance",
            accepted=severity == "error" and (f.code in accept or ACCEPT_ALL in accept)))
    return out


def _cycle_traffic(code: str, daily: Daily, inputs: A.Inputs) -> None:
    """What :func:`_period_traffic` makes of a cycle's daily rows, from its matrices: amounts,
    records and currency per series, billed units, rated records per service and day. Keyed in
    the order the rows would give (by the first day of each key, then the key), a key's
    currency the one of its last row (its latest day, then the greatest currency)."""
    n = (inputs.end - inputs.start).days
    lo = (daily.first - inputs.start).days
    has = daily.records != 0
    firsts = np.where(has.any(axis=1), has.argmax(axis=1), daily.days).tolist()
    lasts = (daily.days - 1 - has[:, ::-1].argmax(axis=1)).tolist()
    records, units, amounts = (m.sum(axis=1).tolist() for m in (daily.records, daily.units, daily.amounts))
    by_key: dict[tuple[str, str, str, str], list[int]] = {}
    by_service: dict[tuple[str, str, str], list[int]] = {}
    for i, k in enumerate(daily.keys):
        by_key.setdefault((code, *k[:3]), []).append(i)
        by_service.setdefault((code, *k[:2]), []).append(i)
    order = sorted(by_key, key=lambda k: (min(firsts[i] for i in by_key[k]), k[1:]))
    if inputs.series is not None:
        out = {}
        for k in order:
            ii = by_key[k]
            cur = max(ii, key=lambda i: (lasts[i], daily.keys[i][3]))
            out[k] = (daily.amount(sum(amounts[i] for i in ii)), int(sum(records[i] for i in ii)), daily.keys[cur][3])
        inputs.series.amounts = out
    inputs.volumes = {k: int(sum(units[i] for i in by_key[k])) for k in order}
    rated = {}
    for k in sorted(by_service, key=lambda k: (min(firsts[i] for i in by_service[k]), k[1:])):
        vec = np.zeros(n, np.int64)
        a, b = max(0, -lo), min(daily.days, n - lo)
        if a < b:
            vec[lo + a:lo + b] = daily.records[by_service[k], a:b].sum(axis=0)
        rated[k] = {inputs.start + timedelta(days=j): int(vec[j]) for j in np.flatnonzero(vec).tolist()}
    inputs.rated = rated
