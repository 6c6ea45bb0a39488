"""The batch executor: the row executor's semantics (see ``icdsl.rating.row``), on Arrow columns.

``rate_batch(plan, table) -> (rated, rejects)`` gives, record for record, the same agreement,
prefix, band, billed units, rate, amount and reject reason (and detail) as ``rate_record``.

How it is fast:

- Once per plan (cached by identity): selection tables, and per ServicePlan a ``ServiceKernel``
  (prices as scaled int64 by band and row, fees, increments, texts) and, per epoch of effective
  dates, a multi-level prefix table. Per batch, only day-sized things are built: the band and
  local-date step functions of the UTC days the batch covers (from zoneinfo, never per record).
- Records are routed by (partner class, direction, service) with hash lookups on the columns'
  values; each (agreement, service) group is priced in cache-sized chunks of rows on a small
  thread pool (NumPy releases the GIL): digit keys from the string buffer, prefix table, band
  step function, increments and money in int64, one division per record at the end.
- Exactness: every int64 intermediate is bounded; records that could overflow are re-rated by the
  row executor (Python ints and Decimal), so a digit is never wrong, only slower. Numbers shorter
  than the longest prefix or with non-digits, and decks whose prefixes are not plain digits, use
  the same dict-based matcher as the row executor.
- Money as Arrow decimal128 is built from the int64 units without formatting a single string;
  low-cardinality text columns are dictionary-encoded (see ``icdsl.rating.result``).

Per-record charges (surcharges): ``rate_batch_with_charges(plan, table, cycle=)`` also returns
the record charges table (``icdsl.rating.result``): per agreement service, each charge's
``evaluate_batch`` sees the group's rated records as columns (conditions are evaluated column by
column, text columns once per distinct value) and their exact traffic amounts (the int64
numerators kept from pricing); amounts are rounded once like the row executor's. Records rated by
the exact path take their charges from the row executor. ``rate_batch`` does none of this.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from icdsl.charges.conditions import Col, partner_value
from icdsl.charges.evaluate import BatchView, record_charges
from icdsl.money import div_round_int
from icdsl.plan.model import Agreement, Plan, RateColumns, ServicePlan
from icdsl.rating import result as R
from icdsl.rating.calendar import DAY_US, EPOCH_ORDINAL, US, book, local_day_steps
from icdsl.rating.kernels import (
    BILLED_TABLE,
    INT64_SAFE,
    Dictionary,
    ServiceKernel,
    StringBytes,
    billed_increments,
    div_round,
)
from icdsl.rating.origins import NUMBER_FIELDS, number_field, origin_matcher
from icdsl.rating.row import EXACT, INT64_MAX, exact_round, rate_record, row_plan
from icdsl.rating.select import (
    FAR_FUTURE,
    FAR_PAST,
    KIND_COUNT,
    KIND_TIME,
    KIND_VOLUME,
    field_price,
    money_text,
    ordinal,
)
from icdsl.rounding import div_round_array
from icdsl.rounding import div_round_int as round_int

CHUNK = 1 << 15  # rows per chunk: the temporaries of a chunk stay in the L2 cache
REASON_CODE = {r: i + 1 for i, r in enumerate(R.REJECT_REASONS)}
MISSING_FIELDS = ("partner", "direction", "service", "start", "duration_s", "volume", "b_number")
NO_DESTINATION, NO_PRICE_RULE = -1, -2
LONG_CALL_S = 400 * 86_400  # split calls longer than this are rated by the exact (row) path
LIMIT = 10**R.MAX_DIGITS
EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_threads(), thread_name_prefix="icdsl-rate")
        return _pool


def _parallel(fn, n: int) -> None:
    """Run ``fn(lo, hi)`` over chunks of range(n), on the pool when it is worth it."""
    bounds = [(lo, min(lo + CHUNK, n)) for lo in range(0, n, CHUNK)]
    if len(bounds) <= 1 or _threads() == 1:
        for lo, hi in bounds:
            fn(lo, hi)
        return
    for f in [_executor().submit(fn, lo, hi) for lo, hi in bounds]:
        f.result()


# --------------------------------------------------------------------------- per plan


class BatchPlan:
    """Per-plan state of the batch executor: selection (shared with the row executor) and kernels."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.row = row_plan(plan)
        self.selector = self.row.selector
        self._kernels: dict[int, tuple[ServicePlan, ServiceKernel]] = {}
        self._lock = threading.Lock()

    def kernel(self, agreement: Agreement, sp: ServicePlan) -> ServiceKernel:
        got = self._kernels.get(id(sp))
        if got is None or got[0] is not sp:
            with self._lock:
                got = (sp, ServiceKernel(self.row.rules.get(agreement, sp)))
                self._kernels[id(sp)] = got
        return got[1]


_plans: dict[int, BatchPlan] = {}


def batch_plan(plan: Plan) -> BatchPlan:
    got = _plans.get(id(plan))
    if got is None or got.plan is not plan:
        if len(_plans) > 16:
            _plans.clear()
        got = BatchPlan(plan)
        _plans[id(plan)] = got
    return got


def rate_batch(plan: Plan, table: pa.Table, *, carry: tuple[str, ...] = ()) -> tuple[pa.Table, pa.Table]:
    """Rate a normalized record batch; returns (rated, rejects) as described in ``result``.
    ``carry``: columns of ``table`` that the rated table keeps too, after its own (rejects
    keep every column); rating never reads them."""
    return _Batch(batch_plan(plan), table, carry=carry).run()


@dataclass(frozen=True)
class UnitGroup:
    """One (agreement, service) group of :class:`Units`: what its records' codes stand for."""

    partner: str
    currency: str
    precision: int  # the amounts of the group are in 10^-precision of ``currency``
    prefixes: pa.Array  # the kernel's rate rows' prefixes (strings), by row
    rules: pa.Array  # distinct "file:line:col" texts; ``rule_code[row]`` indexes them
    rule_code: np.ndarray
    fallback_at: int | None  # rows from this one on are the fallback table's (None: no fallback)


@dataclass(frozen=True)
class Units:
    """``rate_batch`` before any output column is built: per input record whether it was rated
    (``ok``), its amount as an integer of 10^-precision of its group's currency, its group and
    its rate row; the rejects as ``rate_batch`` gives them. For consumers that aggregate
    millions of records on columns (margins) rather than write a rated file."""

    ok: np.ndarray
    amount: np.ndarray  # int64
    group: np.ndarray  # int16, -1: never routed
    row: np.ndarray  # int32, -1: none
    groups: tuple[UnitGroup, ...]
    rejects: pa.Table


SKIPPED = np.int8(-1)  # rate_units(skip=): never routed, neither rated nor rejected


def rate_units(plan: Plan, table: pa.Table, skip: np.ndarray | None = None) -> Units:
    """Rate like :func:`rate_batch` (the same kernels, exact path and rejects) and return the
    amounts as integer arrays (:class:`Units`) instead of a rated table. ``skip``: a mask of
    records to leave alone (not ok, not in the rejects): cheaper than taking the others."""
    b = _Batch(batch_plan(plan), table)
    if skip is not None and skip.any():
        b.status[skip] = SKIPPED
    if b.n:
        b.price()
    if skip is not None and skip.any():
        b.status[skip] = 0  # out of the rejects; not ok below
    groups = tuple(UnitGroup(g.agreement.partner, g.kernel.rules.currency, g.kernel.rules.precision,
                             g.kernel.prefix_dict, g.kernel.rule_dict, g.kernel.rule_code,
                             g.kernel.rules.destinations.fallback_at
                             if g.kernel.rules.destinations is not None else None)
                   for g in b.groups)
    ok = b.status == 0
    if skip is not None and skip.any():
        ok &= ~skip
    return Units(ok, np.where(ok, b.amount, 0), b.group, b.row, groups,
                 b._rejects() if b.n else R.rejects_schema(table.schema).empty_table())


def rate_batch_with_charges(plan: Plan, table: pa.Table, *, cycle: Any = None,
                            carry: tuple[str, ...] = ()) -> tuple[pa.Table, pa.Table, pa.Table]:
    """``rate_batch`` plus the per-record charges (surcharges) of the rated records: (rated,
    rejects, record charges) as described in ``result``. ``cycle``: the cycle's totals
    (``icdsl.charges.context.CycleTotals``) for conditions that read ``cycle.*``; ``carry``: as
    for ``rate_batch``."""
    b = _Batch(batch_plan(plan), table, charges=True, cycle=cycle, carry=carry)
    rated, rejects = b.run()
    return rated, rejects, b.record_charges()


# --------------------------------------------------------------------------- columns


def _column(table: pa.Table, name: str) -> pa.Array | None:
    if name not in table.column_names:
        return None
    col = table.column(name)
    if col.num_chunks == 1:
        return col.chunk(0)
    return col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)


def _ints(arr: pa.Array | None, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """int64 values (nulls as 0) and the null mask (None if no nulls); a missing column is all null."""
    if arr is None:
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    if pa.types.is_timestamp(arr.type):
        if arr.type.unit != "us":
            arr = pc.cast(arr, pa.timestamp("us", tz=arr.type.tz), safe=False)
        arr = arr.view(pa.int64())
    elif pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    nulls = None
    if arr.null_count:
        nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
        arr = pc.fill_null(arr, 0)
    return np.asarray(arr.to_numpy(zero_copy_only=False)).astype(np.int64, copy=False), nulls


def _codes(arr: pa.Array | None, values: tuple[str, ...] | list[str], n: int) -> np.ndarray | int:
    """Position of each value in ``values`` (int32; -1 for null or not found); a plain int when
    the column is one dictionary value repeated (a file of one direction, say)."""
    if arr is None or not values:
        return -1
    if pa.types.is_dictionary(arr.type) and len(arr.dictionary) == 1 and arr.null_count == 0:
        return int(_codes(arr.dictionary, values, 1)[0])
    vs = pa.array(list(values), type=pa.string())
    if pa.types.is_dictionary(arr.type):
        dict_codes = np.asarray(_codes(arr.dictionary, values, len(arr.dictionary)), dtype=np.int32)
        dict_codes = np.broadcast_to(dict_codes, (len(arr.dictionary),))
        idx = arr.indices
        out = (
            dict_codes[np.asarray(pc.fill_null(idx, 0).to_numpy(zero_copy_only=False))]
            if len(dict_codes)
            else None
        )
        if out is None:
            return np.full(n, -1, dtype=np.int32)
        if idx.null_count:
            out = np.where(np.asarray(idx.is_null().to_numpy(zero_copy_only=False)), -1, out)
        return out.astype(np.int32, copy=False)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    got = pc.index_in(arr, value_set=vs)
    return np.asarray(pc.fill_null(got, -1).to_numpy(zero_copy_only=False)).astype(np.int32, copy=False)


def _nulls(arr: pa.Array | None, n: int) -> np.ndarray | None:
    if arr is None:
        return np.ones(n, dtype=bool)
    if not arr.null_count:
        return None
    return np.asarray(arr.is_null().to_numpy(zero_copy_only=False))


def _pick_column(arr: pa.Array, sel: np.ndarray | None) -> pa.Array:
    """``arr`` at positions ``sel`` (None: all). Fixed-width columns without nulls and dictionary
    indices are gathered with NumPy (several times faster than Arrow's filter on a 1M batch)."""
    if sel is None:
        return arr
    typ = arr.type
    if arr.null_count == 0:
        if pa.types.is_dictionary(typ) and arr.indices.null_count == 0:
            idx = np.asarray(arr.indices.to_numpy())[sel]
            return pa.DictionaryArray.from_arrays(pa.array(idx), arr.dictionary)
        if pa.types.is_integer(typ) or pa.types.is_timestamp(typ) or pa.types.is_floating(typ):
            width = typ.bit_width // 8
            values = np.frombuffer(
                arr.buffers()[1], dtype=f"<i{width}" if width in (1, 2, 4, 8) else np.uint8
            )
            if width in (1, 2, 4, 8):
                picked = values[arr.offset : arr.offset + len(arr)][sel]
                return pa.Array.from_buffers(typ, len(sel), [None, pa.py_buffer(picked)])
    return arr.take(pa.array(sel))


def _decimal_array(units: np.ndarray, precision: int, digits: int = R.MAX_DIGITS) -> pa.Array:
    """decimal128(digits, precision) from int64 units of 10**-precision, without strings."""
    words = np.empty((len(units), 2), dtype=np.int64)
    words[:, 0] = units
    words[:, 1] = units >> 63  # sign extension: two's complement 128-bit
    return pa.Array.from_buffers(pa.decimal128(digits, precision), len(units), [None, pa.py_buffer(words)])


# --------------------------------------------------------------------------- one batch


class _Group:
    """Records priced by one (agreement, service)."""

    def __init__(self, index: int, agreement: Agreement, sp: ServicePlan, kernel: ServiceKernel):
        self.index = index
        self.agreement = agreement
        self.sp = sp
        self.kernel = kernel
        self.parts: list[np.ndarray | None] = []
        self.labels = Dictionary()
        for b in kernel.rules.bands:
            self.labels.code(b)


class _Batch:
    def __init__(self, bp: BatchPlan, table: pa.Table, *, charges: bool = False, cycle: Any = None,
                 carry: tuple[str, ...] = ()):
        self.bp = bp
        self.table = table
        missing = [c for c in carry if c not in table.column_names]
        if missing:
            raise ValueError(f"carried column(s) {missing} are not in the records")
        self.carry = tuple(carry)  # passed through to the rated table, never read as a record field
        self.n = n = table.num_rows
        self.cycle = cycle
        # exact traffic numerators (units of 10**-precision times kern.div) for per-record charges
        self.num = np.zeros(n, dtype=np.int64) if charges else None
        self.num_big: dict[int, int] = {}
        self.exact_hits: dict[int, tuple] = {}
        self.status = np.zeros(n, dtype=np.int8)
        self.aux = np.zeros(n, dtype=np.int32)
        self.group = np.full(n, -1, dtype=np.int16)
        self.row = np.full(n, -1, dtype=np.int32)
        self.band = np.zeros(n, dtype=np.int32)
        self.billed = np.zeros(n, dtype=np.int64)
        self.amount = np.zeros(n, dtype=np.int64)
        self.rate = np.zeros(n, dtype=np.int32)
        self.fallback = np.zeros(n, dtype=bool)
        self.groups: list[_Group] = []
        self._local_days: dict[str, np.ndarray] = {}
        self._cols: dict[str, Any] = {}
        self.details: dict[int, str] = {}  # reject details decided record by record
        # rate texts of services priced `from field NAME` (each record's own), per group, this batch
        self.own_rates: dict[int, Dictionary] = {}

    # ---------------------------------------------------------------- helpers

    def col(self, name: str) -> pa.Array | None:
        if name in self.carry:
            return None
        if name not in self._cols:
            self._cols[name] = _column(self.table, name)
        return self._cols[name]

    def ints(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        key = "#" + name
        if key not in self._cols:
            self._cols[key] = _ints(self.col(name), self.n)
        return self._cols[key]

    def strings(self) -> StringBytes:
        if "#b" not in self._cols:
            arr = self.col("b_number")
            self._cols["#b"] = StringBytes(arr if arr is not None else pa.nulls(self.n, pa.string()))
        return self._cols["#b"]

    def callers(self) -> StringBytes | None:
        """a_number as string bytes (tables keyed by origin), once per batch; None without it."""
        if "#a" not in self._cols:
            arr = self.col("a_number")
            self._cols["#a"] = StringBytes(arr) if arr is not None else None
        return self._cols["#a"]

    def reject(self, where, reason: str, aux: int | np.ndarray = 0) -> None:
        """Reject rows ``where`` (bool mask or index array) that are still pending."""
        code = REASON_CODE[reason]
        if isinstance(where, np.ndarray) and where.dtype == bool:
            where = np.flatnonzero(where & (self.status == 0))
        else:
            where = np.asarray(where)
            if isinstance(aux, np.ndarray):
                aux = aux[self.status[where] == 0]
            where = where[self.status[where] == 0]
        self.status[where] = code
        self.aux[where] = aux

    def local_days(self, tz: str) -> np.ndarray:
        """Local date (days since 1970-01-01) of every record's start in zone ``tz``."""
        got = self._local_days.get(tz)
        if got is None:
            steps = local_day_steps(tz, self.day_lo, self.day_hi)
            got = steps(self.t)
            self._local_days[tz] = got
        return got

    # ---------------------------------------------------------------- the run

    def run(self) -> tuple[pa.Table, pa.Table]:
        if self.n == 0:
            return self._empty()
        self.price()
        return self._rated(), self._rejects()

    def price(self) -> None:
        """Validate, route and price every record into the batch's arrays (no output built)."""
        self._validate()
        self._route()
        for g in self.groups:
            self._price_group(g)
        if self.fallback.any():
            self._exact(np.flatnonzero(self.fallback & (self.status == 0)))

    def _validate(self) -> None:
        n = self.n
        start, start_null = self.ints("start")
        dur, dur_null = self.ints("duration_s")
        self.dur = dur
        for i, name in enumerate(MISSING_FIELDS[:5]):
            if name == "start":
                nulls = start_null
            elif name == "duration_s":
                nulls = dur_null
            else:
                nulls = _nulls(self.col(name), n)
            if nulls is not None and nulls.any():
                self.reject(nulls, R.MISSING_FIELD, i)
        neg = dur < 0
        if neg.any():
            self.reject(neg, R.NEGATIVE_DURATION)
        ok = self.status == 0
        if start_null is not None or not ok.all():
            fill = start[ok].min() if ok.any() else 0
            start = np.where(ok, start, fill)
        self.t = start
        tmin, tmax = (int(start.min()), int(start.max()))
        self.tmin, self.tmax = tmin, tmax
        self.day_lo, self.day_hi = tmin // DAY_US, tmax // DAY_US

    def _route(self) -> None:
        n, sel = self.n, self.bp.selector
        pending = self.status == 0
        dc = np.asarray(_codes(self.col("direction"), sel.directions, n), dtype=np.int64)
        sc = np.asarray(_codes(self.col("service"), sel.services, n), dtype=np.int64)
        specific = sorted(sel.specific)
        nd, ns = len(sel.directions) + 1, len(sel.services) + 1
        if specific or not sel.has_star:
            pcol = self.col("partner")
            pclass = np.asarray(_codes(pcol, specific, n), dtype=np.int64) + 1  # 0: only "*" agreements
            if not sel.has_star:
                known = np.asarray(_codes(pcol, sorted(sel.declared), n)) >= 0
                self.reject(np.broadcast_to(~known, (n,)) & pending, R.UNKNOWN_PARTNER)
                pending = self.status == 0
            route = (pclass * nd + (dc + 1)) * ns + (sc + 1)
        else:
            route = (dc + 1) * ns + (sc + 1)
        if np.ndim(route) == 0:  # every record takes the same route
            route = np.full(n, int(route), dtype=np.int64) if not pending.all() else route
        lo, hi = (int(route.min()), int(route.max())) if np.ndim(route) else (int(route), int(route))
        if lo == hi:
            present = [lo]
        elif hi < 1 << 20:
            present = np.flatnonzero(np.bincount(route[pending] if not pending.all() else route)).tolist()
        else:
            present = np.unique(route[pending]).tolist()
        groups: dict[tuple[int, int], _Group] = {}
        all_pending = bool(pending.all())
        for r in present:
            pclass_r, rest = divmod(r, nd * ns)
            d_r, s_r = divmod(rest, ns)
            if lo == hi and all_pending:
                rows = None
            else:
                rows = np.flatnonzero((route == r) & pending)
                if not len(rows):
                    continue
            key = "*" if pclass_r == 0 else specific[pclass_r - 1]
            cands = ()
            if d_r > 0 and s_r > 0:
                cands = sel.candidates(key, sel.directions[d_r - 1], sel.services[s_r - 1])
            if not cands:
                self.reject(rows if rows is not None else np.arange(n), R.NO_AGREEMENT)
                continue
            for ag, sp in cands:
                if rows is not None and not len(rows):
                    break
                inside = self._in_force(ag, rows)
                if inside is None:  # all of them
                    take, rows = rows, np.zeros(0, dtype=np.int64)
                else:
                    all_rows = rows if rows is not None else np.arange(n)
                    take, rows = all_rows[inside], all_rows[~inside]
                if take is not None and not len(take):
                    continue
                g = groups.get((id(ag), id(sp)))
                if g is None:
                    g = _Group(len(self.groups), ag, sp, self.bp.kernel(ag, sp))
                    groups[(id(ag), id(sp))] = g
                    self.groups.append(g)
                g.parts.append(take)
            if rows is None or len(rows):
                self.reject(rows if rows is not None else np.arange(n), R.OUTSIDE_AGREEMENT_PERIOD)

    def _in_force(self, ag: Agreement, rows: np.ndarray | None) -> np.ndarray | None:
        """Mask of ``rows`` (None: all) in force for ``ag``; None when all of them are."""
        lo, hi = ordinal(ag.effective_from, FAR_PAST), ordinal(ag.effective_to, FAR_FUTURE)
        # local dates are within a day of UTC dates: decide without looking at records if we can
        if lo <= self.day_lo + EPOCH_ORDINAL - 1 and hi >= self.day_hi + EPOCH_ORDINAL + 1:
            return None
        days = self.local_days(ag.timezone)
        days = days if rows is None else days[rows]
        days = days + EPOCH_ORDINAL
        inside = (days >= lo) & (days <= hi)
        if rows is None:
            return inside if not inside.all() else None
        return inside

    # ---------------------------------------------------------------- pricing a group

    def _price_group(self, g: _Group) -> None:
        parts = g.parts
        if len(parts) == 1:
            idx = parts[0]
        else:
            idx = np.sort(np.concatenate([p if p is not None else np.arange(self.n) for p in parts]))
        kern = g.kernel
        rules = kern.rules
        sp = rules.plan
        m = self.n if idx is None else len(idx)
        if idx is None:
            self.group[:] = g.index
        else:
            self.group[idx] = g.index

        def at(a: np.ndarray) -> np.ndarray:
            return a if idx is None else a[idx]

        positions = np.arange(self.n) if idx is None else idx
        # fields the service needs
        qty = None
        if rules.kind == KIND_VOLUME:
            vol, vnull = self.ints("volume")
            v = at(vol)
            if vnull is not None:
                miss = at(vnull)
                self.reject(positions[miss], R.MISSING_FIELD, MISSING_FIELDS.index("volume"))
            self.reject(positions[v < 0], R.BAD_VOLUME)
            vu = rules.volume
            b = np.maximum(v, vu.minimum_bytes)
            r = max(vu.rounding_bytes, 1, *(kern.vol_step.tolist() if kern.vol_step is not None else ()))
            big = b > INT64_SAFE - r
            b = np.where(big, 0, b)
            qty = -(-b // r) * r
            self.fallback[positions[big]] = True
        elif rules.kind == KIND_COUNT:
            units, unull = self.ints("units")
            u = at(units)
            if unull is not None:
                u = np.where(at(unull), 1, u)
            self.reject(positions[u < 0], R.BAD_UNITS)
            qty = u
        if sp.refile_reject is not None:
            self._refiled(positions, sp.refile_reject[1])
        if not rules.priced:
            self.reject(positions, R.NO_RATE, NO_PRICE_RULE)
            return
        if sp.price_field is not None:
            self._field_prices(g, positions, qty)
            return

        # destination, band, price: chunk by chunk
        dest = rules.destinations
        sb = self.strings() if dest is not None else None
        if dest is not None:
            bnull = _nulls(self.col("b_number"), self.n)
            if bnull is not None:
                self.reject(positions[at(bnull)], R.MISSING_FIELD, MISSING_FIELDS.index("b_number"))
        tz_days = self.local_days(g.agreement.timezone) if dest is not None and dest.dated else None
        steps = None
        if sp.calendar is not None:
            end = self.tmax + 1
            if sp.split_at_band_boundary and rules.kind == KIND_TIME:
                dmax = min(int(at(self.dur).max()) if m else 0, LONG_CALL_S)
                end = self.tmax + max(dmax, 1) * US
            steps = book(sp.calendar).steps(self.day_lo, end // DAY_US)
        slow: list[np.ndarray] = []
        lock = threading.Lock()
        origin = origin_matcher(sp, dest)  # a table keyed by origin (icdsl.rating.origins), else None
        callers = self.callers() if origin is not None else None

        def chunk(lo: int, hi: int) -> None:
            pos = positions[lo:hi]
            if dest is not None:
                if kern.vector_match:
                    if idx is None:
                        keys, ok = sb.digit_keys(kern.key_digits, lo, hi)
                    else:
                        keys, ok = sb.digit_keys_at(kern.key_digits, pos)
                    if not ok.all():  # not k digits (short, or text such as an APN): the slow path
                        keys = np.where(ok, keys, 0)
                    if origin is None:
                        row = self._lookup(kern, keys, tz_days, pos)
                    else:
                        at = np.arange(lo, hi) if idx is None else pos
                        days = tz_days[at] + EPOCH_ORDINAL if tz_days is not None else None
                        row = origin.lookup(keys, kern.key_digits, sb, callers, at, days, kern.epoch_cuts)
                    bad = ~ok
                    if bad.any():
                        row[bad] = -1
                        with lock:
                            slow.append(pos[bad])
                else:
                    row = np.full(hi - lo, -1, dtype=np.int32)
                    with lock:
                        slow.append(pos)
            else:
                row = np.zeros(hi - lo, dtype=np.int32)
            where = slice(lo, hi) if idx is None else pos
            self._price_rows(g, where, row, None if qty is None else qty[lo:hi], steps)

        _parallel(chunk, m)
        if slow:
            rows_slow = np.concatenate(slow)
            rows_slow = rows_slow[self.status[rows_slow] == 0]
            if len(rows_slow):
                numbers = self.col("b_number").take(pa.array(rows_slow)).to_pylist()
                days = (
                    tz_days[rows_slow] + EPOCH_ORDINAL
                    if tz_days is not None
                    else np.zeros(len(rows_slow), dtype=np.int64)
                )
                if origin is None:
                    found = np.array(
                        [
                            dest.match(num, int(day)) if num is not None else -1
                            for num, day in zip(numbers, days.tolist(), strict=True)
                        ],
                        dtype=np.int32,
                    )
                else:
                    a_col = self.col("a_number")
                    callers = a_col.take(pa.array(rows_slow)).to_pylist() if a_col is not None else [None] * len(numbers)
                    found = np.array(
                        [
                            origin.match(num, a, int(day)) if num is not None else -1
                            for num, a, day in zip(numbers, callers, days.tolist(), strict=True)
                        ],
                        dtype=np.int32,
                    )
                q = None
                if qty is not None:
                    q = qty[np.searchsorted(positions, rows_slow)] if idx is not None else qty[rows_slow]
                self._price_rows(g, rows_slow, found, q, steps)
        nomatch = np.flatnonzero((self.group == g.index) & (self.status == 0) & (self.row < 0))
        if dest is not None and len(nomatch):
            self.reject(nomatch, R.NO_RATE, NO_DESTINATION)
        if sp.split_at_band_boundary and rules.kind == KIND_TIME and steps is not None:
            self._split(g, positions, steps)

    def _field_prices(self, g: _Group, positions: np.ndarray, qty: np.ndarray) -> None:
        """``price from field NAME``: each record's amount is its own price (row.py's rules, read
        with the same :func:`field_price`), plus the connect fee, capped, rounded once. With
        per-record charges the records take the exact path (their numerators are the row's)."""
        rules = g.kernel.rules
        sp = rules.plan
        pf = sp.price_field
        self.row[positions] = 0
        self.band[positions] = g.labels.code("all")
        pending = self.status[positions] == 0
        live, count = positions[pending], qty[pending]
        if self.num is not None and record_charges(g.agreement, sp.direction, sp.service):
            self.fallback[live] = True
            return
        col = self.col(pf.name)
        values = col.take(pa.array(live)).to_pylist() if col is not None else [None] * len(live)
        rates = self.own_rates.setdefault(g.index, Dictionary())
        fee = EXACT.multiply(sp.connect_fee, rules.per)
        cap = EXACT.multiply(sp.max_cost, rules.per) if sp.max_cost is not None else None
        for p, value, billed in zip(live.tolist(), values, count.tolist(), strict=True):
            price = field_price(value, pf)
            if price is None or isinstance(price, str):
                self.reject(np.array([p]), R.MISSING_FIELD if price is None else R.NO_RATE)
                self.details[p] = R.detail_missing(pf.name) if price is None else price
                continue
            num = EXACT.add(fee, price)
            if cap is not None and num > cap:
                num = cap
            q = exact_round(num, rules.per, rules.precision, rules.mode)
            if not -LIMIT < q < LIMIT:
                self.reject(np.array([p]), R.AMOUNT_OVERFLOW)
                continue
            self.amount[p] = q
            self.billed[p] = billed
            self.rate[p] = rates.code(money_text(price))

    def _refiled(self, positions: np.ndarray, prefixes: tuple[str, ...]) -> None:
        """Reject ``refiled`` the records at ``positions`` whose a_number is empty or starts with
        none of ``prefixes`` (the zone of ``refile origin ZONE reject``), on columns."""
        arr = self.col("a_number")
        if arr is None or not len(positions):
            self.reject(positions, R.REFILED)
            return
        a = arr if len(positions) == self.n else arr.take(pa.array(positions))
        if not pa.types.is_string(a.type) and not pa.types.is_large_string(a.type):
            a = pc.cast(a, pa.string())
        inside = None
        for p in prefixes:
            hit = pc.starts_with(a, pattern=p)
            inside = hit if inside is None else pc.or_(inside, hit)
        ok = pc.fill_null(inside, False).to_numpy(zero_copy_only=False)
        self.reject(positions[~ok], R.REFILED)

    def _lookup(self, kern: ServiceKernel, keys: np.ndarray, tz_days, pos: np.ndarray) -> np.ndarray:
        if tz_days is None:
            table = kern.table(0)
            return table.lookup(keys) if table is not None else np.full(len(keys), -1, dtype=np.int32)
        epochs = np.searchsorted(kern.epoch_cuts, tz_days[pos] + EPOCH_ORDINAL, side="right")
        out = np.full(len(keys), -1, dtype=np.int32)
        for e in np.unique(epochs).tolist():
            table = kern.table(e)
            if table is None:
                continue
            sel = np.flatnonzero(epochs == e)
            out[sel] = table.lookup(keys[sel])
        return out

    def _price_rows(self, g: _Group, pos, row: np.ndarray, qty, steps) -> None:
        """Band, billed units and amount of records ``pos`` (a slice of contiguous records or an
        index array) whose matched row is ``row`` (-1: none). Writes the batch arrays; rejects
        missing prices and zero-duration calls; flags records for the exact path."""
        kern = g.kernel
        rules = kern.rules
        sp = rules.plan
        contiguous = isinstance(pos, slice)

        def at(mask: np.ndarray) -> np.ndarray:
            """Batch positions of the records selected by ``mask``."""
            return np.flatnonzero(mask) + pos.start if contiguous else pos[mask]

        n = len(row)
        self.row[pos] = row
        live = row >= 0
        # unmatched records (-1) gather the last row's values: harmless, they are rejected
        r = row
        band = steps(self.t[pos]).astype(np.int32, copy=False) if steps is not None else np.zeros(n, np.int32)
        self.band[pos] = band
        # ``slots NAME``: each record's slot set by its row (0: the service's unnamed slots, if any)
        sidx = kern.row_set[r] if kern.row_set is not None else None
        if rules.slots and sidx is None:
            price = None
            self.rate[pos] = kern.slot_rate
        else:
            flat = r if kern.nbands == 1 else band * np.int64(kern.nrows) + r
            price = kern.price_flat[flat]
            rate = kern.rate_flat[flat]
            if sidx is not None:
                rate = rate.copy()
                for k, sk in enumerate(kern.slot_sets):
                    if sk.slots:
                        rate[sidx == k] = sk.rate
            self.rate[pos] = rate
            if not kern.all_priced:
                missing = live & ~kern.has_flat[flat]
                if sidx is not None:  # a row priced by slots needs no price of its own
                    missing &= (sidx == 0) & (not rules.slots)
                if missing.any():
                    self.reject(at(missing), R.NO_RATE, band[missing])
        zero = slot_num = None
        # band NAME { ... }: increments and fees by (band, row) of the call's start
        by_band = band.astype(np.int64) * kern.nrows + r if kern.fee_by_band or kern.inc_by_band else None
        ri = by_band if kern.inc_by_band else r
        if rules.kind == KIND_TIME:
            d = self.dur[pos]
            huge = d > INT64_SAFE // 4
            if huge.any():
                d = np.where(huge, 1, d)
            zero = d == 0
            if kern.slot_incs is not None and sidx is None:  # increments per slot (select.slot_windows)
                eff = np.where(zero, 0, np.maximum(d, sp.minimum_s)) if sp.minimum_s > 0 else d
                billed = np.zeros(n, dtype=np.int64)
                slot_num = np.zeros(n, dtype=np.int64)
                for until, p, own in zip(kern.slot_until, kern.slot_price, kern.slot_incs, strict=True):
                    end = eff if until is None else np.minimum(eff, until)
                    part = np.maximum(end - billed, 0)
                    ii, ss = own if own is not None else (kern.inc_i[ri], kern.inc_s[ri])
                    b = billed_increments(part, ii, ss)
                    slot_num += p * b
                    billed += b
            elif kern.billed_flat is not None:
                short = np.minimum(d, BILLED_TABLE - 1)
                billed = kern.billed_flat[short if kern.uniform_inc else kern.billed_base[ri] + short]
                longer = d >= BILLED_TABLE - 1
                if longer.any():
                    dl, rl = d[longer], ri[longer]
                    billed[longer] = billed_increments(
                        np.maximum(dl, sp.minimum_s), kern.inc_i[rl], kern.inc_s[rl]
                    )
            else:
                eff = np.maximum(d, sp.minimum_s) if sp.minimum_s > 0 else d
                billed = billed_increments(eff, kern.inc_i[ri], kern.inc_s[ri])
                if sp.minimum_s > 0:
                    billed[zero] = 0
        else:
            if kern.vol_min is not None:  # band NAME { minimum volume, round volume up to }
                raw = self.ints("volume")[0][pos]
                v = np.maximum(raw, kern.vol_min[band])
                step = kern.vol_step[band]
                qty = np.where(v > INT64_SAFE - step, 0, -(-v // step) * step)
            huge = qty > INT64_SAFE // 4
            if huge.any():
                qty = np.where(huge, 0, qty)
            billed = qty
        if sidx is not None:
            billed, slot_num = _by_slot_sets(kern, sidx, d, zero, billed, ri, sp.minimum_s, price)
        self.billed[pos] = billed
        fee = kern.fee_term[0] if kern.uniform_fee else kern.fee_term[by_band if kern.fee_by_band else r]
        if slot_num is not None:  # slots with increments of their own, or rows that choose their set
            num = slot_num + fee
        elif rules.slots:
            num = np.zeros(n, dtype=np.int64) + fee
            for lo, until, p in zip(kern.slot_from, kern.slot_until, kern.slot_price, strict=True):
                hi = billed if until is None else np.minimum(billed, until)
                num += p * np.maximum(hi - lo, 0)
        else:
            num = price * billed
            num += fee
        if kern.mult != 1:
            num *= kern.mult
        if kern.cap is not None:
            # a cap beyond int64 caps nothing here (such plans rate every record on the exact path)
            np.minimum(num, min(kern.cap, INT64_MAX), out=num)
        if zero is not None and sp.zero_duration != "connect_fee" and zero.any():
            if sp.zero_duration == "free":
                num[zero] = 0
            else:
                self.reject(at(zero & live), R.ZERO_DURATION)
        if self.num is not None:
            self.num[pos] = num
        amount = div_round(num, kern.div, rules.mode, nonneg=kern.nonneg)
        self.amount[pos] = amount
        # exactness guards: records that could leave int64 go to the exact path
        unsafe = (billed > kern.qmax) | huge
        if unsafe.any():
            self.fallback[at(unsafe)] = True
        over = (amount >= LIMIT) if kern.nonneg else (np.abs(amount) >= LIMIT)
        if over.any():
            self.reject(at(over & ~unsafe & live), R.AMOUNT_OVERFLOW, g.index)

    def _split(self, g: _Group, positions: np.ndarray, steps) -> None:
        """Calls that cross a band change: price each part at its band (see ``row``)."""
        kern = g.kernel
        pend = positions[(self.status[positions] == 0) & (self.dur[positions] > 1)]
        long = self.dur[pend] > LONG_CALL_S
        if long.any():  # beyond the band steps built for this batch: the exact path
            self.fallback[pend[long]] = True
            pend = pend[~long]
        if not len(pend):
            return
        t = self.t[pend]
        d = self.dur[pend]
        i0 = steps.index(t)
        i1 = steps.index(t + (d - 1) * US)
        cross = i1 > i0
        if not cross.any():
            return
        pend, t, d, i0, i1 = pend[cross], t[cross], d[cross], i0[cross], i1[cross]
        k = i1 - i0
        owner = np.repeat(np.arange(len(pend)), k)
        first = np.repeat(np.cumsum(k) - k, k)
        j = i0[owner] + 1 + (np.arange(len(owner)) - first)
        c = steps.instants[j]
        e = -((t[owner] - c) // US)  # ceil((c - t) / 1 s)
        be = steps(t[owner] + e * US)
        band0 = steps.values[i0]
        rules = kern.rules
        # per call: runs of (first second, band), merged as in the row executor
        starts = np.cumsum(k) - k
        e_list, b_list = e.tolist(), be.tolist()
        price_missing = []
        for n_i, p in enumerate(pend.tolist()):
            runs = [(0, int(band0[n_i]))]
            for x in range(int(starts[n_i]), int(starts[n_i] + k[n_i])):
                ee, bb = e_list[x], b_list[x]
                if runs[-1][0] == ee:
                    runs.pop()
                if runs[-1][1] == bb:
                    continue
                runs.append((ee, bb))
            if len(runs) == 1:
                continue
            dur = int(d[n_i])
            billed = int(self.billed[p])
            secs = [(runs[x + 1][0] if x + 1 < len(runs) else dur) - runs[x][0] for x in range(len(runs))]
            secs[-1] += billed - dur
            label = "+".join(rules.bands[b] for _, b in runs)
            self.band[p] = g.labels.code(label)
            row = int(self.row[p])
            own = kern.slot_sets[int(kern.row_set[row])] if kern.row_set is not None else kern.slot_sets[0]
            if not own.slots:
                fi = int(band0[n_i]) * kern.nrows + row if kern.fee_by_band else row
                num = int(kern.fee_term[fi if not kern.uniform_fee else 0])
                missing = None
                for (_, b), s in zip(runs, secs, strict=True):
                    if not kern.has[b, row]:
                        missing = rules.bands[b]
                        break
                    num += int(kern.price[b, row]) * s
                if missing is not None:
                    price_missing.append((p, missing))
                    continue
                if self.fallback[p]:
                    continue
                big = num * kern.mult
                if kern.cap is not None:
                    big = min(big, kern.cap)
                self.amount[p] = div_round_int(big, kern.div, rules.mode)
                if self.num is not None:
                    if -INT64_SAFE <= big <= INT64_SAFE:
                        self.num[p] = big
                    else:
                        self.num_big[p] = big
        dest = rules.destinations
        for p, band_name in price_missing:
            self.reject(np.array([p]), R.NO_RATE)
            prefix = dest.rows[int(self.row[p])].prefix if dest is not None else ""
            self.details[p] = R.detail_no_price(band_name, prefix)

    # ---------------------------------------------------------------- exact path

    def _exact(self, rows: np.ndarray) -> None:
        """Re-rate ``rows`` with the row executor (exact Python ints and Decimal)."""
        if not len(rows):
            return
        records = self.table.take(pa.array(rows)).to_pylist()
        for p, rec in zip(rows.tolist(), records, strict=True):
            g = self.groups[self.group[p]]
            res = rate_record(self.bp.plan, rec, cycle=self.cycle)
            if not res.ok:
                self.status[p] = REASON_CODE[res.reason]
                self.details[p] = res.detail
                continue
            if self.num is not None:
                self.exact_hits[p] = res.surcharges
            self.billed[p] = res.billed_units
            self.amount[p] = int(res.amount.scaleb(g.kernel.rules.precision))
            self.band[p] = g.labels.code(res.band)
            if g.kernel.rules.plan.price_field is not None:
                self.rate[p] = self.own_rates.setdefault(g.index, Dictionary()).code(res.rate)

    # ---------------------------------------------------------------- outputs

    def record_charges(self) -> pa.Table:
        """The per-record charges of the rated records (after ``run``)."""
        return _record_charges(self)

    def _empty(self) -> tuple[pa.Table, pa.Table]:
        schema = R.rated_schema(self.table.schema, 6)
        return schema.empty_table(), R.rejects_schema(self.table.schema).empty_table()

    def _rated(self) -> pa.Table:
        ok = self.status == 0
        sel = None if ok.all() else np.flatnonzero(ok)
        n_ok = self.n if sel is None else len(sel)
        groups = self.groups
        precision = max((g.kernel.rules.precision for g in groups), default=6)
        if not groups or n_ok == 0:
            return R.rated_schema(self.table.schema, precision).empty_table()

        def pick(a: np.ndarray) -> np.ndarray:
            return a if sel is None else a[sel]

        base = {
            name: _pick_column(self.col(name), sel)
            for name in ("id", "partner", "direction", "service", "start", "duration_s")
            if name in self.table.column_names
        }
        group = pick(self.group)
        single = len(groups) == 1
        masks = [None] if single else [group == gi for gi in range(len(groups))]

        def per_group(fn, dtype) -> np.ndarray:
            """Evaluate ``fn(g, mask)`` for each group into one array."""
            if single:
                return fn(groups[0], slice(None))
            out = np.zeros(n_ok, dtype=dtype)
            for g, m in zip(groups, masks, strict=True):
                if m.any():
                    out[m] = fn(g, m)
            return out

        def text(local_codes: np.ndarray, dicts: list[pa.Array]) -> pa.Array:
            """Dictionary column from group-local codes, dictionaries merged across groups."""
            if single:
                return pa.DictionaryArray.from_arrays(pa.array(local_codes, type=pa.int32()), dicts[0])
            merged = Dictionary()
            out = np.zeros(n_ok, dtype=np.int32)
            for d, m in zip(dicts, masks, strict=True):
                remap = np.array([merged.code(v) for v in d.to_pylist()], dtype=np.int32)
                if m.any():
                    out[m] = remap[local_codes[m]]
            return pa.DictionaryArray.from_arrays(pa.array(out), pa.array(merged.values, type=pa.string()))

        def passthrough(name: str, default: pa.DataType):
            return base[name] if name in base else pa.nulls(n_ok, default)

        row = np.maximum(pick(self.row), 0)
        zeros = np.zeros(n_ok, dtype=np.int32)
        # every column is built by an independent function: on a big batch they run concurrently
        # (NumPy gathers and Arrow release the GIL)
        builders = {
            "id": lambda: passthrough("id", pa.int64()),
            "partner": lambda: passthrough("partner", pa.string()),
            "direction": lambda: passthrough("direction", pa.string()),
            "service": lambda: passthrough("service", pa.string()),
            "agreement": lambda: text(zeros, [pa.array([g.agreement.name]) for g in groups]),
            "agreement_version": lambda: pa.array(
                per_group(lambda g, m: g.agreement.version, np.int64)
                if not single
                else np.full(n_ok, groups[0].agreement.version, dtype=np.int64),
                type=pa.int64(),
            ),
            "agreement_hash": lambda: text(zeros, [pa.array([g.agreement.source_hash]) for g in groups]),
            "prefix": lambda: text(row, [g.kernel.prefix_dict for g in groups]),
            "destination": lambda: text(
                per_group(lambda g, m: g.kernel.dest_code[row[m]], np.int32),
                [g.kernel.dest_dict for g in groups],
            ),
            "band": lambda: text(
                pick(self.band), [pa.array(g.labels.values, type=pa.string()) for g in groups]
            ),
            "billed_units": lambda: pa.array(pick(self.billed), type=pa.int64()),
            "rate": lambda: text(
                pick(self.rate),
                [pa.array(self.own_rates.get(g.index, g.kernel.rates).values, type=pa.string()) for g in groups],
            ),
            "amount": lambda: self._amounts(pick(self.amount), group, precision),
            "currency": lambda: text(zeros, [pa.array([g.kernel.rules.currency]) for g in groups]),
            "rule": lambda: text(
                per_group(lambda g, m: g.kernel.rule_code[row[m]], np.int32),
                [g.kernel.rule_dict for g in groups],
            ),
            "start": lambda: passthrough("start", pa.timestamp("us", tz="UTC")),
            "duration_s": lambda: passthrough("duration_s", pa.int64()),
        }
        for name in self.carry:
            builders[name] = lambda name=name: _pick_column(_column(self.table, name), sel)
        if n_ok >= 4 * CHUNK and _threads() > 1:
            built = list(_executor().map(lambda f: f(), builders.values()))
        else:
            built = [f() for f in builders.values()]
        cols = dict(zip(builders, built, strict=True))
        return pa.table(cols)

    def _amounts(self, amount: np.ndarray, group: np.ndarray, precision: int) -> pa.Array:
        """decimal128(18, P) at the largest precision of the batch; decimal128(38, P) if a rescaled
        amount would not fit 18 digits."""
        precs = [g.kernel.rules.precision for g in self.groups]
        if all(p == precision for p in precs):
            return _decimal_array(amount, precision)
        shift = np.array([precision - p for p in precs], dtype=np.int64)[group]
        factor = np.power(10, shift, dtype=np.int64)
        if (np.abs(amount) < LIMIT // factor).all():
            return _decimal_array(amount * factor, precision)

        values = [
            Decimal(a).scaleb(-precs[gi]) for a, gi in zip(amount.tolist(), group.tolist(), strict=True)
        ]
        return pa.array(values, type=pa.decimal128(38, precision))

    def _rejects(self) -> pa.Table:
        schema = R.rejects_schema(self.table.schema)
        bad = np.flatnonzero(self.status != 0)
        if not len(bad):
            return schema.empty_table()
        sub = self.table.filter(pa.array(self.status != 0))
        reasons = [R.REJECT_REASONS[c - 1] for c in self.status[bad].tolist()]
        details = self._details(bad, sub, reasons)
        cols = [sub.column("id") if "id" in sub.column_names else pa.nulls(len(bad), pa.int64())]
        cols += [pa.array(reasons, type=pa.string()), pa.array(details, type=pa.string())]
        names = ["id", "reason", "detail"]
        for name in sub.column_names:
            if name not in names:
                cols.append(sub.column(name))
                names.append(name)
        return pa.Table.from_arrays(cols, names=names)

    def _details(self, bad: np.ndarray, sub: pa.Table, reasons: list[str]) -> list[str]:
        py: dict[str, list] = {}
        n = len(bad)

        def field(name: str) -> list:
            """A column of the rejected records as Python values, converted on first use."""
            got = py.get(name)
            if got is None:
                got = py[name] = sub.column(name).to_pylist() if name in sub.column_names else [None] * n
            return got

        aux = self.aux[bad].tolist()
        group = self.group[bad].tolist()
        row = self.row[bad].tolist()
        out = []
        for i, reason in enumerate(reasons):
            a = aux[i]
            g = self.groups[group[i]] if group[i] >= 0 else None
            p = int(bad[i])
            if p in self.details:
                out.append(self.details[p])
            elif reason == R.MISSING_FIELD:
                out.append(R.detail_missing(MISSING_FIELDS[a]))
            elif reason == R.NEGATIVE_DURATION:
                out.append(R.detail_negative("duration_s", field("duration_s")[i]))
            elif reason == R.BAD_VOLUME:
                out.append(R.detail_negative("volume", field("volume")[i]))
            elif reason == R.BAD_UNITS:
                out.append(R.detail_negative("units", field("units")[i]))
            elif reason == R.UNKNOWN_PARTNER:
                out.append(R.detail_unknown_partner(field("partner")[i]))
            elif reason == R.NO_AGREEMENT:
                out.append(R.detail_no_agreement(*(field(c)[i] for c in ("partner", "direction", "service"))))
            elif reason == R.OUTSIDE_AGREEMENT_PERIOD:
                who = (field(c)[i] for c in ("partner", "direction", "service"))
                out.append(R.detail_outside_period(*who, _utc(field("start")[i])))
            elif reason == R.NO_RATE:
                if a == NO_DESTINATION:
                    if g is not None and g.sp.rates is not None and g.sp.rates.keys is not None:
                        out.append(R.detail_no_origin_cell(field("b_number")[i], field("a_number")[i]))
                    else:
                        out.append(R.detail_no_destination(field("b_number")[i]))
                elif a == NO_PRICE_RULE:
                    out.append(R.detail_no_price_rule())
                else:
                    band = g.kernel.rules.bands[a]
                    dest = g.kernel.rules.destinations
                    prefix = dest.rows[row[i]].prefix if dest is not None and row[i] >= 0 else ""
                    out.append(R.detail_no_price(band, prefix))
            elif reason == R.REFILED:
                out.append(R.detail_refiled(field("a_number")[i], g.sp.refile_reject[0]))
            elif reason == R.ZERO_DURATION:
                out.append(R.detail_zero_duration())
            elif reason == R.AMOUNT_OVERFLOW:
                out.append(R.detail_overflow(g.kernel.rules.precision))
            else:
                out.append(reason)
        return out


def _by_slot_sets(kern, sidx: np.ndarray, d: np.ndarray, zero: np.ndarray, billed: np.ndarray, ri, minimum: int,
                  price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Billed seconds and numerators (without the fee) of calls whose rows choose their slot set
    (``sidx``: each record's set, 0 the service's unnamed slots): the rows of a set with slots are
    priced by them (as ``_price_rows`` prices a service's slots), the others at their row's price
    (``billed``: on the whole call, with the row's increments)."""
    num = price * billed
    billed = billed.copy()
    for k, sk in enumerate(kern.slot_sets):
        if not sk.slots:
            continue
        sel = np.flatnonzero(sidx == k)
        if not len(sel):
            continue
        if sk.incs is not None:  # increments per slot (select.slot_windows)
            ds = d[sel]
            eff = np.where(zero[sel], 0, np.maximum(ds, minimum)) if minimum > 0 else ds
            b_sel = np.zeros(len(sel), dtype=np.int64)
            n_sel = np.zeros(len(sel), dtype=np.int64)
            for until, p, own in zip(sk.until, sk.price, sk.incs, strict=True):
                end = eff if until is None else np.minimum(eff, until)
                part = np.maximum(end - b_sel, 0)
                ii, ss = own if own is not None else (kern.inc_i[ri[sel]], kern.inc_s[ri[sel]])
                b = billed_increments(part, ii, ss)
                n_sel += p * b
                b_sel += b
            billed[sel] = b_sel
        else:  # increments on the whole call; the slots price its billed seconds
            b_sel = billed[sel]
            n_sel = np.zeros(len(sel), dtype=np.int64)
            for lo, until, p in zip(sk.start, sk.until, sk.price, strict=True):
                hi = b_sel if until is None else np.minimum(b_sel, until)
                n_sel += p * np.maximum(hi - lo, 0)
        num[sel] = n_sel
    return billed, num


class _GroupFields:
    """The fields of a group's rated records, as condition columns (``icdsl.charges.conditions``)."""

    def __init__(self, batch: _Batch, g: _Group, pos: np.ndarray):
        self.b = batch
        self.g = g
        self.pos = pos
        self.n = len(pos)
        self.timezone = g.agreement.timezone
        self._cache: dict[str, Any] = {}
        self._partner_col: Any = None

    def _partners(self):
        if self._partner_col is None:
            arr = self.b.col("partner")
            self._partner_col = (
                Col.from_arrow(_pick_column(arr, self.pos)) if arr is not None else Col.const(None, self.n)
            )
        return self._partner_col

    def _by_partner(self, fn) -> Any:
        pc_ = self._partners()
        if pc_.kind == "const":
            return Col.const(fn(pc_.value), self.n)
        if pc_.kind != "dict":
            return Col("py", self.n, values=[fn(v) for v in pc_.python()])
        return Col.keyed(pc_.idx, [fn(v) for v in pc_.values])

    def field(self, name: str):
        got = self._cache.get(name)
        if got is None:
            got = self._cache[name] = self._field(name)
        return got

    def _field(self, name: str):
        b, g, pos = self.b, self.g, self.pos
        rules = g.kernel.rules
        head, _, rest = name.partition(".")
        if rest and head == "partner":
            rp = b.bp.row
            return self._by_partner(lambda code: partner_value(rp.partner(code), code, rest))
        if rest and head == "cycle":
            cycle, ag = b.cycle, g.agreement.name
            if not cycle:
                return Col.const(None, self.n)
            return self._by_partner(lambda code: cycle.get(code, ag, rest) if code is not None else None)
        if name == "band":
            return Col.keyed(b.band[pos], list(g.labels.values))
        if name in ("destination", "prefix"):
            dest = rules.destinations
            if dest is None:
                return Col.const("", self.n)
            if name == "prefix":
                values = list(dest.prefixes)
            elif isinstance(dest.rows, RateColumns):
                values = list(dest.rows.destinations)
            else:
                values = [r.destination for r in dest.rows]
            return Col.keyed(np.maximum(b.row[pos], 0), values)
        if name in NUMBER_FIELDS:
            return self._number_field(name)
        if name == "billed_s":
            if rules.kind != KIND_TIME:
                return Col.const(None, self.n)
            return Col.integers(b.billed[pos])
        if name == "amount":
            return Col.units(b.amount[pos], rules.precision)
        arr = b.col(name)
        if arr is None:
            return Col.const(None, self.n)
        return Col.from_arrow(_pick_column(arr, pos))


    def _number_field(self, name: str):
        """``origin_operator`` and the like, once per distinct number (``icdsl.rating.origins``)."""
        table = self.g.kernel.rules.plan.numbers
        arr = self.b.col("a_number" if name[0] == "o" else "b_number")
        if table is None or arr is None:
            return Col.const(None, self.n)
        picked = _pick_column(arr, self.pos)
        enc = picked if pa.types.is_dictionary(picked.type) else picked.dictionary_encode()
        found = [number_field(table, v, name) for v in enc.dictionary.to_pylist()]
        d = Dictionary()
        remap = np.array([d.code(v) if v is not None else -1 for v in found] + [-1], dtype=np.int32)
        idx = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)).astype(np.int64)
        return Col.keyed(remap[idx], d.values)


def _round_units(num: np.ndarray, den: int, mode: str) -> np.ndarray:
    """round(num / den) exactly: int64 NumPy when ``num`` is int64, Python ints otherwise."""

    if num.dtype != object and den <= 1 << 62:  # 2 * remainder stays within int64
        if den == 1:
            return num.astype(np.int64, copy=True)
        return div_round_array(num, den, mode)
    out = [round_int(int(x), den, mode) for x in num.tolist()]
    if all(-INT64_SAFE <= x <= INT64_SAFE for x in out):
        return np.array(out, dtype=np.int64)
    return np.array(out, dtype=object)


def _record_charges(self: _Batch) -> pa.Table:
    """The per-record charges of the rated records (``rate_batch_with_charges``)."""

    ok = self.status == 0
    rated_index = np.cumsum(ok) - 1
    pieces = []  # (record positions, group, charge order, charge, units array, precision, currency)
    for g in self.groups:
        charges = record_charges(g.agreement, g.sp.direction, g.sp.service)
        if not charges:
            continue
        mine = np.flatnonzero((self.group == g.index) & ok)
        pos = mine[~self.fallback[mine]]
        rules = g.kernel.rules
        if rules.kind == KIND_TIME and g.sp.zero_duration == "free":  # a call made free bears no charges
            pos = pos[self.dur[pos] != 0]
        if len(pos):
            num = self.num[pos] if self.num is not None else np.zeros(len(pos), dtype=np.int64)
            if self.num_big:
                bigs = [(i, self.num_big[p]) for i, p in enumerate(pos.tolist()) if p in self.num_big]
                if bigs:
                    num = num.astype(object)
                    for i, v in bigs:
                        num[i] = v
            view = BatchView(len(pos), _GroupFields(self, g, pos), rules.kind, self.billed[pos], rules.per, num,
                             g.kernel.div, rules.currency, rules.precision, rules.mode)
            for order, (charge, ctype) in enumerate(charges):
                got = ctype.evaluate_batch(charge, view)
                hit = np.flatnonzero(np.asarray(got.applies, dtype=bool))
                if not len(hit):
                    continue
                units = _round_units(np.asarray(got.num)[hit], got.den, rules.mode)
                pieces.append((pos[hit], g, order, charge, units, rules.precision, got.currency))
        for p in mine[self.fallback[mine]].tolist():
            hits = self.exact_hits.get(p, ())
            for order, (charge, _) in enumerate(charges):
                for h in hits:
                    if h.charge == charge.name and h.kind == charge.kind:
                        units = np.array([int(h.amount.scaleb(rules.precision))], dtype=np.int64)
                        pieces.append((np.array([p]), g, order, charge, units, rules.precision, h.currency))
    precision = max((pc_[5] for pc_ in pieces), default=6)
    schema = R.record_charges_schema(self.table.schema, precision)
    if not pieces:
        return schema.empty_table()
    positions = np.concatenate([pc_[0] for pc_ in pieces])
    orders = np.concatenate([np.full(len(pc_[0]), pc_[2], dtype=np.int64) for pc_ in pieces])
    seg = np.concatenate([np.full(len(pc_[0]), i, dtype=np.int64) for i, pc_ in enumerate(pieces)])
    sort = np.lexsort((orders, positions))
    positions, seg = positions[sort], seg[sort]
    # amounts at the batch's largest precision, decimal128(38, P)
    scaled = []
    exact64 = True
    for _pos, _g, _o, _c, units, prec, _cur in pieces:
        shift = precision - prec
        if units.dtype == object or (shift and len(units) and int(np.abs(units).max()) > INT64_SAFE // 10**shift):
            exact64 = False
            scaled.append(np.array([int(u) * 10**shift for u in units.tolist()], dtype=object))
        else:
            scaled.append(units.astype(np.int64) * np.int64(10**shift))
    if exact64:
        amounts = _decimal_array(np.concatenate(scaled)[sort], precision, 38)
    else:
        flat = np.concatenate([x.astype(object) for x in scaled])[sort]
        amounts = pa.array([Decimal(int(u)).scaleb(-precision) for u in flat.tolist()], pa.decimal128(38, precision))

    def seg_text(values: list[str]) -> pa.Array:
        d = Dictionary()
        codes = np.array([d.code(v) for v in values], dtype=np.int32)
        return pa.DictionaryArray.from_arrays(pa.array(codes[seg]), pa.array(d.values, type=pa.string()))

    def passthrough(name: str) -> pa.Array:
        arr = self.col(name)
        if arr is None:
            return pa.nulls(len(positions), schema.field(name).type)
        return arr.take(pa.array(positions))

    cols = {
        "record": pa.array(rated_index[positions].astype(np.int64)),
        "id": passthrough("id"),
        "partner": passthrough("partner"),
        "direction": passthrough("direction"),
        "service": passthrough("service"),
        "agreement": seg_text([pc_[1].agreement.name for pc_ in pieces]),
        "agreement_version": pa.array(np.array([pc_[1].agreement.version for pc_ in pieces], dtype=np.int64)[seg]),
        "agreement_hash": seg_text([pc_[1].agreement.source_hash for pc_ in pieces]),
        "kind": seg_text([pc_[3].kind for pc_ in pieces]),
        "charge": seg_text([pc_[3].name for pc_ in pieces]),
        "amount": amounts,
        "currency": seg_text([pc_[6] for pc_ in pieces]),
        "rule": seg_text([str(pc_[3].span) for pc_ in pieces]),
    }
    return pa.table(cols, schema=schema)


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return EPOCH_UTC + timedelta(microseconds=int(value))
