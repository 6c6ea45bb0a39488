"""Least-cost routing: for every destination prefix, the suppliers ranked by cost.

From the agreements in force on a day (a plan's versions), each partner's outbound service
(``outbound voice`` by default: what the partner charges us) is a *supplier deck*; the sell
deck is our inbound service with the policy's ``sell`` partner. The table's destinations are
the union of the prefixes of all these decks, with longest-prefix semantics: for destination
``P`` a deck's price is that of its longest prefix that begins ``P`` (so a supplier's ``447``
overrides its ``44`` for ``447...``, and ``44`` itself is priced by its ``44`` row).

The cost of a supplier for a destination and band is the cost of a **reference call** of
``R`` seconds (``reference call R s``, default 60): the connect fee plus the band's price times
the billed time, where the billed time is ``R`` raised to the service's minimum and then to the
row's (or the service's) increments (60/6, 1/1...). It is exact to 10^-9 of the currency before
any rounding of a record, converted into the policy's currency with the policy's ``fx`` source
at the rate in force on the day. Suppliers are ranked by that cost, the supplier's code
breaking ties; the table shows it to 6 decimals and per minute (``cost x 60 / R``).

Everything runs on columns (NumPy and polars): the decks' ``RateColumns`` are turned into integer
columns once, the longest-prefix match of every destination in every deck is one join on
integer keys (``prefix digits x 16 + length``) over the destinations cut at every length, and the
policy's rules are column expressions. :func:`reference_table` is the slow, obvious
implementation (one destination at a time, Decimal) that tests compare it with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import polars as pl
import pyarrow as pa

from icdsl.cycle.fx import FxRow, FxTable
from icdsl.plan.model import (
    KIND_TIME,
    TIME_UNITS,
    Agreement,
    Increments,
    LcrPolicy,
    Plan,
    RateColumns,
    ServicePlan,
    Span,
)
from icdsl.rating.select import in_force, ordinal
from icdsl.routing.quality import measure

SCALE = 10**9  # costs in 10^-9 of a currency unit
KEY_BITS = 16  # key = digits * 16 + length
MAX_DIGITS = 15
POW10 = np.array([10**i for i in range(MAX_DIGITS + 1)], dtype=np.int64)
ALL_BANDS = "all"  # the band of a service without a calendar, as the row executor names it
SELL = "(sell)"

#: why a supplier is not in a destination's list, in the order they are checked
REASONS = ("blocked", "unmeasured", "asr", "acd", "pdd", "cost", "margin")


class LcrError(Exception):
    """A routing table that cannot be built as asked (located at the policy or agreement)."""

    def __init__(self, message: str, span: Span | None = None, help: str | None = None):
        super().__init__(message)
        self.span = span
        self.help = help

    def __str__(self) -> str:
        where = f"{self.span}: " if self.span is not None and self.span.line else ""
        return where + self.args[0] + (f"\n  help: {self.help}" if self.help else "")


@dataclass(frozen=True, slots=True)
class Supplier:
    code: str
    agreement: str  # "Name vN"
    currency: str
    fx: str = ""  # the rate used to convert into the policy's currency ("" if none was needed)
    span: Span | None = None


@dataclass
class LcrTable:
    """The routing table of ``policy`` on ``day``.

    ``routes``: one row per destination prefix, band and supplier kept, ranked (``rank`` 1 is
    tried first; the members of a split share rank 1 and carry their ``share``);
    ``excluded``: the suppliers left out of a destination's list and why (``reason`` one of
    :data:`REASONS`); ``destinations``: prefix, destination name and the sell price per band.
    Amounts are integers in 10^-9 of ``policy.currency`` (``*_n`` columns)."""

    policy: LcrPolicy
    day: date
    bands: tuple[str, ...]
    suppliers: tuple[Supplier, ...]
    routes: pl.DataFrame
    excluded: pl.DataFrame
    destinations: pl.DataFrame
    sell: Supplier | None = None
    notes: list[str] = field(default_factory=list)

    def ranked(self, prefix: str, band: str | None = None) -> list[tuple]:
        """(rank, supplier, cost per reference call as text, share) for one prefix and band."""
        band = band or self.bands[0]
        rows = self.routes.filter((pl.col("prefix") == prefix) & (pl.col("band") == band)).sort("rank", "supplier")
        return [(r["rank"], r["supplier"], money_text(r["cost_n"]), r["share"]) for r in rows.iter_rows(named=True)]


# --------------------------------------------------------------------------- exact integer helpers


def div_half_even(num: np.ndarray, den: np.ndarray | int) -> np.ndarray:
    """``num / den`` rounded half to even, on int64 arrays (den > 0)."""
    q, r = np.divmod(num, den)
    twice = 2 * r
    up = (twice > den) | ((twice == den) & (q % 2 == 1))
    return q + up


def to_nano(values: Sequence[Decimal | None]) -> tuple[np.ndarray, np.ndarray]:
    """Decimals as int64 in 10^-9 (half even beyond 9 decimals) and a mask of the missing ones."""
    try:
        arr = pa.array(values, type=pa.decimal128(38, 9))
    except (pa.ArrowInvalid, OverflowError):
        arr = pa.array([None if v is None else v.quantize(Decimal("1e-9"), ROUND_HALF_EVEN) for v in values],
                       type=pa.decimal128(38, 9))
    n = len(arr)
    words = np.frombuffer(arr.buffers()[1], dtype="<i8").reshape(-1, 2)[arr.offset: arr.offset + n, 0].copy()
    missing = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(n, dtype=bool)
    words[missing] = 0
    return words, missing


def money_text(n: int | None, places: int = 6) -> str:
    """10^-9 units as a decimal text with ``places`` decimals (half even); "" for None."""
    if n is None:
        return ""
    d = (Decimal(int(n)) / SCALE).quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN)
    return f"{d:f}"


def money_col(name: str, places: int = 6) -> pl.Expr:
    """A column of 10^-9 units as decimal texts (half even), on columns."""
    div = 10 ** (9 - places)
    col = pl.col(name)
    a = col.abs()
    q = a // div
    r = a % div
    q = q + (((2 * r) > div) | (((2 * r) == div) & ((q % 2) == 1))).cast(pl.Int64)
    whole = (q // 10**places).cast(pl.Utf8)
    frac = (q % 10**places).cast(pl.Utf8).str.zfill(places)
    sign = pl.when((col < 0) & (q > 0)).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.when(col.is_null()).then(pl.lit("")).otherwise(sign + whole + "." + frac)


# --------------------------------------------------------------------------- decks as columns


@dataclass
class _Deck:
    """One deck's rows in force on the day, as columns: prefix text, destination, per table
    band the price (10^-9 per unit) and the reference call's cost (10^-9, deck currency)."""

    code: str
    prefixes: np.ndarray  # object (str)
    destinations: np.ndarray  # object (str)
    price: dict[str, np.ndarray]  # band -> int64 (missing: -1)
    cost: dict[str, np.ndarray]  # band -> int64 (missing: -1)


def _service_bands(sp: ServicePlan) -> tuple[str, ...]:
    return sp.calendar.bands if sp.calendar is not None else ()


def _columns_of(sp: ServicePlan) -> tuple:
    """(prefixes, destinations, {band or '*': prices}, fees, increments, from, to) of a service."""
    rows = sp.rates.rows if sp.rates is not None else None
    if rows is None:  # a flat price covers every destination: the empty prefix
        return ([""], [f"{sp.service} (flat)"], {"*": [sp.flat_price]}, None, None, None, None)
    if isinstance(rows, RateColumns):
        prices = {}
        if rows.rate is not None:
            prices["*"] = rows.rate
        for band, col in rows.bands:
            prices[band] = col
        return (rows.prefixes, rows.destinations, prices, rows.connect_fees, rows.increments,
                rows.effective_from, rows.effective_to)
    bands = sorted({b for r in rows for b, _ in r.prices})
    prices = {b: [r.price_for(b) if b != "*" else dict(r.prices).get("*") for r in rows] for b in bands}
    return ([r.prefix for r in rows], [r.destination for r in rows], prices, [r.connect_fee for r in rows],
            [r.increments for r in rows],
            [r.effective_from.isoformat() if r.effective_from else None for r in rows],
            [r.effective_to.isoformat() if r.effective_to else None for r in rows])


def _in_force_rows(prefixes, starts, stops, day: date) -> np.ndarray:
    """Indices of the rows in force on ``day`` (from <= day < until), one per prefix: the later
    ``from`` wins, then the later row (as the executors choose)."""
    n = len(prefixes)
    if not (starts and any(starts)) and not (stops and any(stops)):
        idx = np.arange(n)
    else:
        iso = day.isoformat()
        df = pl.DataFrame({"f": pl.Series(list(starts) if starts else [None] * n, dtype=pl.Utf8),
                           "t": pl.Series(list(stops) if stops else [None] * n, dtype=pl.Utf8)})
        ok = df.select(((pl.col("f").is_null() | (pl.col("f") <= iso))
                        & (pl.col("t").is_null() | (pl.col("t") > iso))).alias("ok"))["ok"].to_numpy()
        idx = np.nonzero(ok)[0]
    if len(idx) == 0:
        return idx
    frame = pl.DataFrame({"p": pl.Series(np.asarray(prefixes, dtype=object)[idx], dtype=pl.Utf8),
                          "f": pl.Series([starts[i] if starts else None for i in idx] if starts else [None] * len(idx),
                                         dtype=pl.Utf8),
                          "i": idx})
    keep = frame.sort(["p", "f", "i"], nulls_last=False).unique("p", keep="last", maintain_order=True)
    return np.sort(keep["i"].to_numpy())


def _deck(code: str, sp: ServicePlan, day: date, bands: tuple[str, ...], reference_s: int) -> _Deck:
    prefixes, destinations, prices, fees, incs, starts, stops = _columns_of(sp)
    idx = _in_force_rows(prefixes, starts, stops, day)
    pref = np.asarray(prefixes, dtype=object)[idx]
    dest = np.asarray(destinations, dtype=object)[idx]
    n = len(idx)
    own = {b: to_nano([col[i] for i in idx]) for b, col in prices.items()}
    # fees and increments: the row's own, else the service's
    if fees is not None:
        fee_n, fee_missing = to_nano([fees[i] for i in idx])
        fee_n[fee_missing] = to_nano([sp.connect_fee])[0][0]
    else:
        fee_n = np.full(n, to_nano([sp.connect_fee])[0][0], dtype=np.int64)
    first = np.full(n, sp.increments.initial, dtype=np.int64)
    nxt = np.full(n, sp.increments.subsequent, dtype=np.int64)
    if incs is not None:
        picked = [incs[i] for i in idx]
        has = np.fromiter((x is not None for x in picked), dtype=bool, count=n)
        if has.any():
            first[has] = np.fromiter((x.initial for x in picked if x is not None), dtype=np.int64)
            nxt[has] = np.fromiter((x.subsequent for x in picked if x is not None), dtype=np.int64)
    if sp.kind == KIND_TIME:
        unit_s = TIME_UNITS[sp.unit]
        eff = max(reference_s, sp.minimum_s)
        billed = np.where(eff <= first, first, first + -(-(eff - first) // np.maximum(nxt, 1)) * nxt)
    else:  # priced per call (a count unit): one unit
        unit_s = 1
        billed = np.ones(n, dtype=np.int64)
    price: dict[str, np.ndarray] = {}
    cost: dict[str, np.ndarray] = {}
    band_cols = [b for b in own if b != "*"]
    for b in bands:
        if b in own:
            p, miss = own[b][0].copy(), own[b][1].copy()
            if "*" in own:
                star, star_miss = own["*"]
                p[miss] = star[miss]
                miss = miss & star_miss
        elif "*" in own:
            p, miss = own["*"][0].copy(), own["*"][1].copy()
        else:
            p, miss = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        if miss.any() and band_cols:
            # a band the supplier's calendar does not have: its highest price (stated in the docs)
            stack = np.stack([np.where(own[c][1], -1, own[c][0]) for c in band_cols])
            high = stack.max(axis=0)
            fill = miss & (high >= 0)
            p[fill] = high[fill]
            miss = miss & ~fill
        c = div_half_even(fee_n * unit_s + p * billed, unit_s)
        p[miss] = -1
        c[miss] = -1
        price[b] = p
        cost[b] = c
    return _Deck(code, pref, dest, price, cost)


# --------------------------------------------------------------------------- agreements in force


def _agreement_on(plan: Plan, partner: str, direction: str, service: str, day: date) -> tuple[Agreement, ServicePlan] | None:
    n = day.toordinal()
    found = []
    for pos, a in enumerate(plan.agreements):
        if a.partner != partner or not in_force(a, n):
            continue
        sp = a.service(direction, service)
        if sp is not None:
            found.append(((-ordinal(a.effective_from, 0), -a.version, pos), a, sp))
    if not found:
        return None
    found.sort(key=lambda t: t[0])
    return found[0][1], found[0][2]


def _fx_factor(plan: Plan, policy: LcrPolicy, currency: str, day: date, span) -> tuple[Fraction, str]:
    if currency == policy.currency:
        return Fraction(1), ""
    if policy.fx is None:
        raise LcrError(f"a supplier prices in {currency} but the policy compares in {policy.currency}", span,
                       f"name an FX source in the policy ('fx NAME') with a {currency}/{policy.currency} rate")
    rows = [FxRow(src.name, r.base, r.quote, r.rate, r.effective_from) for src in plan.fx_sources
            if src.name == policy.fx for r in src.rates]
    q = FxTable.of_plan(rows, plan).quote(policy.fx, currency, policy.currency, day)
    if q is None:
        raise LcrError(f"FX source '{policy.fx}' has no {currency}/{policy.currency} rate in force on {day}", span,
                       f"add a rate 'fx {policy.fx} {{ {currency}/{policy.currency} RATE from DATE }}'")
    return Fraction(q.rate), str(q)


def _convert(cost: np.ndarray, factor: Fraction) -> np.ndarray:
    """Costs times an FX rate, half even, exact (on the distinct values)."""
    if factor == 1:
        return cost
    uniq, inverse = np.unique(cost, return_inverse=True)
    out = np.empty(len(uniq), dtype=np.int64)
    for i, v in enumerate(uniq.tolist()):
        if v < 0:
            out[i] = -1
            continue
        x = Fraction(v) * factor
        q, r = divmod(x.numerator, x.denominator)
        if 2 * r > x.denominator or (2 * r == x.denominator and q % 2):
            q += 1
        out[i] = q
    return out[inverse.reshape(-1)]


# --------------------------------------------------------------------------- the longest-prefix match


def _prefix_ints(prefixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = pl.Series(prefixes, dtype=pl.Utf8)
    lens = s.str.len_chars().to_numpy().astype(np.int64)
    nums = s.replace("", "0").cast(pl.Int64).to_numpy()
    return nums, lens


def _match(union_nums: np.ndarray, union_lens: np.ndarray, deck_keys: pl.DataFrame) -> pl.DataFrame:
    """For every destination (index ``u``) and deck: the row of the deck's longest prefix that
    begins the destination. ``deck_keys``: (key, deck, row). Returns (u, deck, row)."""
    us, keys, lens = [], [], []
    for L in range(0, int(union_lens.max(initial=0)) + 1):
        sel = np.nonzero(union_lens >= L)[0]
        if len(sel) == 0:
            continue
        cut = union_nums[sel] // POW10[union_lens[sel] - L]
        us.append(sel)
        keys.append(cut * KEY_BITS + L)
        lens.append(np.full(len(sel), L, dtype=np.int8))
    cuts = pl.DataFrame({"u": np.concatenate(us), "key": np.concatenate(keys), "L": np.concatenate(lens)})
    hits = cuts.join(deck_keys, on="key", how="inner")
    return (hits.sort("L").group_by(["u", "deck"]).agg(pl.col("row").last(), pl.col("L").last()))


# --------------------------------------------------------------------------- the policy on columns


def _scoped(rules: list[tuple[str, object]], default: object, dtype) -> pl.Expr:
    """The value of the rule whose scope prefix is the longest that begins the destination."""
    expr = pl.lit(default, dtype=dtype)
    for scope, value in sorted(rules, key=lambda r: len(r[0])):
        cond = pl.col("prefix").str.starts_with(scope) if scope else pl.lit(True)
        expr = pl.when(cond).then(pl.lit(value, dtype=dtype)).otherwise(expr)
    return expr


def _in_scope(prefixes: tuple[str, ...]) -> pl.Expr:
    if not prefixes:
        return pl.lit(True)
    expr = pl.lit(False)
    for p in prefixes:
        expr = expr | pl.col("prefix").str.starts_with(p)
    return expr


def _limits(policy: LcrPolicy, measure: str) -> list[tuple[str, object]]:
    out = []
    for lim in policy.limits:
        if lim.measure == measure:
            for scope in lim.prefixes or ("",):
                out.append((scope, lim))
    return out


def _apply_policy(rows: pl.DataFrame, policy: LcrPolicy) -> pl.DataFrame:
    """Flags and reasons on (prefix, band, supplier, cost_n, sell_n, quality) rows."""
    R = policy.reference_s
    blocked = pl.lit(False)
    preferred = pl.lit(False)
    for rule in policy.rules:
        hit = pl.col("supplier").is_in(list(rule.suppliers)) & _in_scope(rule.prefixes)
        if rule.kind == "block":
            blocked = blocked | hit
        else:
            preferred = preferred | hit
    min_calls = [(s, int(lim.value)) for s, lim in _limits(policy, "calls")]
    rows = rows.with_columns(blocked.alias("blocked"), preferred.alias("preferred"),
                             _scoped(min_calls, 1, pl.Int64).alias("_min_calls"))
    rows = rows.with_columns((pl.col("calls").fill_null(0) >= pl.col("_min_calls")).alias("measured"))
    checks: dict[str, pl.Expr] = {}

    def limit_expr(measure: str, scale, build) -> None:
        lims = _limits(policy, measure)
        if not lims:
            return
        # one column per distinct limit: the value of the longest scope, then the test
        col = f"_{measure}"
        nonnull = [(s, int(lim.value * (10**4 if lim.unit == "%" else scale))) for s, lim in lims]
        unit = [(s, lim.unit) for s, lim in lims]
        nonlocal rows
        rows = rows.with_columns(_scoped(nonnull, None, pl.Int64).alias(col),
                                 _scoped(unit, None, pl.Utf8).alias(col + "_unit"))
        checks[measure] = build(pl.col(col), pl.col(col + "_unit"))

    # asr: answered / calls >= pct / 100  <=>  answered * 10^6 >= (pct * 10^4) * calls
    limit_expr("asr", 10**4, lambda v, u: pl.col("answered") * 10**6 >= v * pl.col("calls"))
    limit_expr("acd", 1, lambda v, u: pl.col("billsec") >= v * pl.col("answered"))
    limit_expr("pdd", 1000, lambda v, u: (pl.col("pdd_n").fill_null(0) == 0)
               | (pl.col("pdd_ms") <= v * pl.col("pdd_n")))
    # cost per minute = cost x 60 / R <= max
    limit_expr("cost", SCALE, lambda v, u: pl.col("cost_n") * 60 <= v * R)
    # margin: (sell - cost) / sell >= pct / 100 (pct x 10^4 in v), or (sell - cost) x 60 / R >= amount
    limit_expr("margin", SCALE, lambda v, u: pl.col("sell_n").is_null() | pl.when(u == "%").then(
        (pl.col("sell_n") - pl.col("cost_n")) * 10**6 >= (v * pl.col("sell_n"))).otherwise(
        (pl.col("sell_n") - pl.col("cost_n")) * 60 >= v * R))
    reason = pl.lit(None, dtype=pl.Utf8)
    quality = {"asr", "acd", "pdd"}
    for name in reversed(REASONS):
        if name == "blocked":
            fail = pl.col("blocked")
        elif name == "unmeasured":
            fail = ~pl.col("measured") & pl.lit(policy.unmeasured == "block")
        elif name in checks:
            ok = checks[name]
            if name in quality:  # only what was measured is judged
                ok = ~pl.col("measured") | ok.fill_null(True)
            else:
                ok = ok.fill_null(True)
            fail = ~ok
        else:
            continue
        reason = pl.when(fail).then(pl.lit(name)).otherwise(reason)
    return rows.with_columns(reason.alias("reason"))


def _rank(kept: pl.DataFrame, policy: LcrPolicy) -> pl.DataFrame:
    splits = sorted(policy.splits, key=lambda s: len(s.prefix))
    split_of = pl.lit(None, dtype=pl.Utf8)
    for s in splits:
        split_of = pl.when(pl.col("prefix").str.starts_with(s.prefix)).then(pl.lit(s.prefix)).otherwise(split_of)
    share = pl.lit(None, dtype=pl.Utf8)
    for s in splits:
        for who, pct in s.shares:
            share = pl.when((pl.col("_split") == s.prefix) & (pl.col("supplier") == who)).then(
                pl.lit(f"{pct.normalize():f}")).otherwise(share)
    kept = kept.with_columns(split_of.alias("_split")).with_columns(share.alias("share"))
    last = policy.unmeasured == "last"
    group = (pl.when(pl.col("share").is_not_null()).then(0)
             .when(pl.col("preferred")).then(1)
             .when(pl.lit(last) & ~pl.col("measured")).then(3)
             .otherwise(2))
    kept = kept.with_columns(group.alias("_group")).sort(["prefix", "band", "_group", "cost_n", "supplier"])
    kept = kept.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64).over(["prefix", "band"]) + 1).alias("_pos"),
        (pl.col("_group") == 0).cast(pl.Int64).sum().over(["prefix", "band"]).alias("_nsplit"),
    )
    rank = pl.when(pl.col("_group") == 0).then(1).otherwise(
        pl.col("_pos") - pl.max_horizontal(pl.col("_nsplit") - 1, pl.lit(0)))
    kept = kept.with_columns(rank.cast(pl.Int64).alias("rank"))
    if policy.routes is not None:
        kept = kept.filter(pl.col("rank") <= policy.routes)
    return kept


# --------------------------------------------------------------------------- the table


QUALITY_COLUMNS = {"calls": pl.Int64, "answered": pl.Int64, "billsec": pl.Int64, "pdd_ms": pl.Int64,
                   "pdd_n": pl.Int64}


def build_table(plan: Plan, policy: LcrPolicy, day: date, quality: pl.DataFrame | None = None,
                records=None) -> LcrTable:
    """The routing table of ``policy`` on ``day``. ``quality``: per (supplier, prefix) the
    measurement of a recent period (:func:`icdsl.routing.quality.measure`); or ``records``:
    outbound call records (Arrow or polars) measured here over the policy's quality window."""
    notes: list[str] = []
    # the decks: suppliers (outbound) and the sell side (inbound with the sell partner)
    sources: list[tuple[str, Agreement, ServicePlan]] = []
    wanted = set(policy.suppliers)
    for code in sorted({a.partner for a in plan.agreements if a.partner != "*"}):
        if wanted and code not in wanted:
            continue
        got = _agreement_on(plan, code, "outbound", policy.service, day)
        if got is None:
            if code in wanted:
                notes.append(f"{code}: no agreement with an outbound {policy.service} in force on {day}")
            continue
        a, sp = got
        if sp.rates is None and sp.flat_price is None:
            notes.append(f"{code}: outbound {policy.service} of {a.key} has no price per destination (slots): left out")
            continue
        sources.append((code, a, sp))
    sell_src = None
    if policy.sell is not None:
        got = _agreement_on(plan, policy.sell, "inbound", policy.service, day)
        if got is None:
            raise LcrError(f"no agreement with {policy.sell} has an inbound {policy.service} in force on {day}",
                           policy.span, "the sell deck is our inbound service with the 'sell' partner")
        sell_src = (policy.sell, got[0], got[1])
    if not sources:
        raise LcrError(f"no supplier: no agreement has an outbound {policy.service} in force on {day}", policy.span,
                       "suppliers are the partners whose agreements price an outbound service")
    all_src = ([sell_src] if sell_src else []) + sources
    band_set = {b for _, _, sp in all_src for b in _service_bands(sp)}
    bands = tuple(sorted(band_set)) if band_set else (ALL_BANDS,)
    if any(sp.calendar is None for _, _, sp in all_src) and band_set:
        notes.append("decks without a calendar price every band alike")

    decks: list[_Deck] = []
    suppliers: list[Supplier] = []
    sell_info = None
    for i, (code, a, sp) in enumerate(all_src):
        d = _deck(code, sp, day, bands, policy.reference_s)
        factor, how = _fx_factor(plan, policy, sp.currency, day, a.span)
        for b in bands:
            d.cost[b] = _convert(d.cost[b], factor)
        decks.append(d)
        info = Supplier(code, a.key, sp.currency, how, a.span)
        if sell_src is not None and i == 0:
            sell_info = info
        else:
            suppliers.append(info)

    # the destinations: every prefix of every deck
    all_prefixes = np.concatenate([d.prefixes for d in decks])
    union = pl.Series(all_prefixes, dtype=pl.Utf8).unique().sort()
    union = union.filter(union != "")
    u_prefix = union.to_numpy().astype(object)
    u_num, u_len = _prefix_ints(u_prefix)
    key_frames = []
    for i, d in enumerate(decks):
        num, ln = _prefix_ints(d.prefixes)
        key_frames.append(pl.DataFrame({"key": num * KEY_BITS + ln, "deck": np.full(len(num), i, dtype=np.int32),
                                        "row": np.arange(len(num), dtype=np.int64)}))
    matched = _match(u_num, u_len, pl.concat(key_frames))

    # per (destination, deck): the matched row's prices and costs per band
    parts = []
    for i, d in enumerate(decks):
        m = matched.filter(pl.col("deck") == i)
        rows = m["row"].to_numpy()
        cols = {"u": m["u"], "deck": m["deck"], "L": m["L"],
                "supplier_prefix": pl.Series(d.prefixes[rows], dtype=pl.Utf8),
                "dest": pl.Series(d.destinations[rows], dtype=pl.Utf8)}
        for j, b in enumerate(bands):
            cols[f"p{j}"] = d.price[b][rows]
            cols[f"c{j}"] = d.cost[b][rows]
        parts.append(pl.DataFrame(cols))
    wide = pl.concat(parts)
    n_sell = 1 if sell_src else 0
    # destination names: the sell deck's, else the deck that has the prefix itself, else any
    u_lens = pl.DataFrame({"u": np.arange(len(u_len)), "ulen": u_len})
    names = (wide.join(u_lens, on="u")
             .with_columns(pl.when(pl.col("deck") < n_sell).then(0).when(pl.col("L") == pl.col("ulen")).then(1)
                           .otherwise(2).alias("_prio"))
             .sort(["u", "_prio", "deck"]).group_by("u", maintain_order=True).agg(pl.col("dest").first()))
    prefix_of = pl.DataFrame({"u": np.arange(len(u_prefix)), "prefix": pl.Series(u_prefix, dtype=pl.Utf8)})
    long = pl.concat([
        wide.select("u", "deck", "supplier_prefix", pl.lit(b).alias("band"), pl.col(f"p{j}").alias("price_n"),
                    pl.col(f"c{j}").alias("cost_n"))
        for j, b in enumerate(bands)
    ]).filter(pl.col("cost_n") >= 0)
    if sell_src:
        sell = long.filter(pl.col("deck") == 0).select("u", "band", pl.col("cost_n").alias("sell_n"),
                                                       pl.col("supplier_prefix").alias("sell_prefix"))
        long = long.filter(pl.col("deck") > 0).join(sell, on=["u", "band"], how="left")
    else:
        sell = None
        long = long.with_columns(pl.lit(None, dtype=pl.Int64).alias("sell_n"), pl.lit(None, dtype=pl.Utf8)
                                 .alias("sell_prefix"))
    deck_info = pl.DataFrame({"deck": np.arange(n_sell, len(decks), dtype=np.int32),
                              "supplier": [s.code for s in suppliers],
                              "agreement": [s.agreement for s in suppliers],
                              "currency": [s.currency for s in suppliers]})
    long = long.join(deck_info, on="deck").join(prefix_of, on="u")
    # quality measurements of the recent period
    if quality is None and records is not None:
        quality = measure(records, u_prefix.tolist(), day, policy.window_days)
    if quality is not None and len(quality):
        q = quality.select("supplier", "prefix", *QUALITY_COLUMNS).cast(QUALITY_COLUMNS)
        long = long.join(q, on=["supplier", "prefix"], how="left")
    else:
        long = long.with_columns(*(pl.lit(None, dtype=t).alias(c) for c, t in QUALITY_COLUMNS.items()))
    long = _apply_policy(long, policy)
    excluded = long.filter(pl.col("reason").is_not_null())
    kept = _rank(long.filter(pl.col("reason").is_null()), policy)
    out_cols = ["prefix", "band", "rank", "supplier", "agreement", "supplier_prefix", "currency", "price_n",
                "cost_n", "sell_n", "share", "preferred", "measured", "calls", "answered", "billsec", "pdd_ms", "pdd_n"]
    routes = kept.join(prefix_of.join(names, on="u").rename({"dest": "destination"}).drop("u"), on="prefix",
                       how="left").select("prefix", "destination", *out_cols[1:])
    excluded = excluded.sort(["prefix", "band", "cost_n", "supplier"]).select(
        "prefix", "band", "supplier", "agreement", "supplier_prefix", "cost_n", "sell_n", "reason", "calls",
        "answered", "billsec", "pdd_ms", "pdd_n")
    destinations = prefix_of.join(names, on="u").rename({"dest": "destination"}).drop("u")
    if sell is not None:
        destinations = destinations.join(
            sell.join(prefix_of, on="u").select("prefix", "band", "sell_n", "sell_prefix"), on="prefix", how="left")
    unmeasured = long.filter(~pl.col("measured"))["supplier"].unique().sort().to_list()
    if policy.limits and any(lim.measure in ("asr", "acd", "pdd") for lim in policy.limits) and unmeasured:
        rule = {"allow": "kept, as if measured", "last": "ranked after the measured ones",
                "block": "left out"}[policy.unmeasured]
        notes.append(f"no quality measurement for some destinations of {', '.join(unmeasured)}: {rule} "
                     f"('unmeasured {policy.unmeasured}')")
    return LcrTable(policy, day, bands, tuple(suppliers), routes.sort(["prefix", "band", "rank", "supplier"]),
                    excluded, destinations.sort("prefix"), sell_info, notes)


def default_policy(name: str = "default") -> LcrPolicy:
    """The policy of ``icdsl lcr`` without ``--policy`` when the rules declare none: every
    supplier, ranked by the cost of a 60 s call, in EUR."""
    return LcrPolicy(name)


# --------------------------------------------------------------------------- the slow, obvious reference


def reference_table(plan: Plan, policy: LcrPolicy, day: date) -> dict[tuple[str, str], list[tuple[str, Decimal]]]:
    """{(prefix, band): [(supplier, cost of the reference call in its currency)] by cost} for
    every destination, one at a time with Decimals: no policy rules, no FX (tests only)."""
    table = build_table(plan, LcrPolicy(policy.name, service=policy.service, currency=policy.currency,
                                        fx=policy.fx, reference_s=policy.reference_s), day)
    out: dict[tuple[str, str], list[tuple[str, Decimal]]] = {}
    srcs = []
    for code in sorted({a.partner for a in plan.agreements if a.partner != "*"}):
        got = _agreement_on(plan, code, "outbound", policy.service, day)
        if got is not None and got[1].rates is not None:
            srcs.append((code, got[1]))
    prefixes = table.destinations["prefix"].to_list()
    for p in prefixes:
        for band in table.bands:
            got = []
            for code, sp in srcs:
                best = None
                for r in sp.rates.rows:
                    if not p.startswith(r.prefix):
                        continue
                    if r.effective_from and r.effective_from > day or r.effective_to and r.effective_to <= day:
                        continue
                    key = (len(r.prefix), r.effective_from or date.min)
                    if best is None or key >= best[0]:
                        best = (key, r)
                if best is None:
                    continue
                r = best[1]
                price = r.price_for(band)
                if price is None:
                    price = max(v for _, v in r.prices)
                fee = r.connect_fee if r.connect_fee is not None else sp.connect_fee
                inc: Increments = r.increments or sp.increments
                billed = inc.billed(max(policy.reference_s, sp.minimum_s))
                cost = fee + price * billed / TIME_UNITS[sp.unit]
                got.append((code, cost.quantize(Decimal("1e-9"), ROUND_HALF_EVEN)))
            got.sort(key=lambda t: (t[1], t[0]))
            out[(p, band)] = got
    return out
