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
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import polars as pl
import pyarrow as pa

from icdsl.cycle.fx import FxRow, FxTable
from icdsl.lang.diagnostics import did_you_mean
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
from icdsl.routing.policy import REASONS as REASONS
from icdsl.routing.policy import SCALE as SCALE
from icdsl.routing.policy import Rows, apply_policy, rank_routes
from icdsl.routing.quality import measure

KEY_BITS = 16  # key = digits * 16 + length
MAX_DIGITS = 15
POW10 = np.array([10**i for i in range(MAX_DIGITS + 1)], dtype=np.int64)
ALL_BANDS = "all"  # the band of a service without a calendar, as the row executor names it
SELL = "(sell)"
MAX_PRICE_N = 10**13  # 10,000 currency units per unit: beyond, int64 costs could overflow
MAX_COST_N = 10**17  # a converted cost (the margin and limit tests multiply it by at most 60)



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
    both = np.frombuffer(arr.buffers()[1], dtype="<i8").reshape(-1, 2)[arr.offset: arr.offset + n]
    words = both[:, 0].copy()
    if not np.array_equal(both[:, 1], words >> 63):  # beyond int64: no price a route can have
        words[both[:, 1] != (words >> 63)] = np.iinfo(np.int64).max
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
    rules: np.ndarray  # object (str): where each row is written ("decks/x.csv:12:1", "a.icd:30:7")
    fallback: np.ndarray | None = None  # bool per row: a row of the deck's fallback price list


def _service_bands(sp: ServicePlan) -> tuple[str, ...]:
    return sp.calendar.bands if sp.calendar is not None else ()


def _columns_of(sp: ServicePlan) -> tuple:
    """(prefixes, destinations, {band or '*': prices}, fees, increments, from, to) of a service."""
    rows = sp.rates.rows if sp.rates is not None else None
    if rows is None:  # a flat price covers every destination: the empty prefix (by band: the band's own)
        flat = {"*": [sp.flat_price]} if sp.flat_price is not None else {}
        flat.update({p.band: [p.price] for p in sp.band_parts if p.price is not None})
        return ([""], [f"{sp.service} (flat)"], flat, None, None, None, None)
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


def _span_of(sp: ServicePlan, i: int) -> Span:
    rows = sp.rates.rows if sp.rates is not None else None
    if rows is None:
        return sp.span
    return rows.span_at(i) if isinstance(rows, RateColumns) else rows[i].span


def _rules_of(sp: ServicePlan) -> list[str]:
    """Where each rate row is written (the row's deck line or rule span; the service's if flat)."""
    rows = sp.rates.rows if sp.rates is not None else None
    if rows is None:
        return [str(sp.span)]
    if isinstance(rows, RateColumns):
        return rows.spans()
    return [str(r.span) for r in rows]


def _in_force_rows(prefixes, starts, stops, day: date, only: np.ndarray | None = None) -> np.ndarray:
    """Indices of the rows in force on ``day`` (from <= day < until), one per prefix: the later
    ``from`` wins, then the later row (as the executors choose). ``only``: a mask of the rows
    that may count (a deck keyed by origin: its rows for every origin)."""
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
    if only is not None:
        idx = idx[only[idx]]
    if len(idx) == 0:
        return idx
    frame = pl.DataFrame({"p": pl.Series(np.asarray(prefixes, dtype=object)[idx], dtype=pl.Utf8),
                          "f": pl.Series([starts[i] if starts else None for i in idx] if starts else [None] * len(idx),
                                         dtype=pl.Utf8),
                          "i": idx})
    keep = frame.sort(["p", "f", "i"], nulls_last=False).unique("p", keep="last", maintain_order=True)
    return np.sort(keep["i"].to_numpy())


def _deck(code: str, sp: ServicePlan, day: date, bands: tuple[str, ...], reference_s: int) -> _Deck:
    """The deck of ``sp`` on ``day``, then the rows of its fallback price list (``fallback ...``:
    they price what no row of the deck holds; flagged ``fallback``)."""
    own = _one_deck(code, sp, day, bands, reference_s)
    fb = sp.rates.fallback if sp.rates is not None else None
    if fb is None:
        return own
    other = _one_deck(code, replace(sp, rates=fb), day, bands, reference_s)
    return _Deck(code, np.concatenate([own.prefixes, other.prefixes]),
                 np.concatenate([own.destinations, other.destinations]),
                 {b: np.concatenate([own.price[b], other.price[b]]) for b in bands},
                 {b: np.concatenate([own.cost[b], other.cost[b]]) for b in bands},
                 np.concatenate([own.rules, other.rules]),
                 np.concatenate([np.zeros(len(own.prefixes), dtype=bool), np.ones(len(other.prefixes), dtype=bool)]))


def _one_deck(code: str, sp: ServicePlan, day: date, bands: tuple[str, ...], reference_s: int) -> _Deck:
    prefixes, destinations, prices, fees, incs, starts, stops = _columns_of(sp)
    # a deck keyed by origin (icdsl.rating.origins): routes cost what the rows for every origin say
    keys = sp.rates.keys if sp.rates is not None else None
    only = np.array([k.empty for k in keys], dtype=bool) if keys is not None else None
    idx = _in_force_rows(prefixes, starts, stops, day, only)
    pref = np.asarray(prefixes, dtype=object)[idx]
    dest = np.asarray(destinations, dtype=object)[idx]
    n = len(idx)
    whole = len(idx) == len(prefixes)

    def nano_of(col) -> tuple[np.ndarray, np.ndarray]:
        # converted whole (Arrow reads the tuple in C), then the rows in force picked
        v, miss = to_nano(col)
        return (v, miss) if whole else (v[idx], miss[idx])

    own = {b: nano_of(col) for b, col in prices.items()}
    for b, (v, miss) in own.items():
        big = np.nonzero(~miss & ((v > MAX_PRICE_N) | (v < 0)))[0]
        if len(big):
            raise LcrError(f"{code}: a price of {prices[b][idx[big[0]]]} per {sp.unit} cannot be routed",
                           _span_of(sp, idx[big[0]]),
                           f"prices up to {MAX_PRICE_N // SCALE:,} per unit are compared; check the deck's row")
    # fees and increments: the row's own, else the band's (``band NAME { ... }`` of the band the
    # call starts in), else the service's, as the rater chooses them
    parts = {p.band: p for p in sp.band_parts}
    if fees is not None:
        row_fee, fee_missing = nano_of(fees)
        big = np.nonzero(~fee_missing & ((row_fee > MAX_PRICE_N) | (row_fee < 0)))[0]
        if len(big):
            raise LcrError(f"{code}: a connect fee of {fees[idx[big[0]]]} cannot be routed", _span_of(sp, idx[big[0]]),
                           f"fees up to {MAX_PRICE_N // SCALE:,} are compared; check the deck's row")
    else:
        row_fee, fee_missing = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    row_first = np.full(n, -1, dtype=np.int64)
    row_next = np.full(n, -1, dtype=np.int64)
    if incs is not None:
        every = len(incs)
        a = np.fromiter((-1 if x is None else x.initial for x in incs), dtype=np.int64, count=every)
        b = np.fromiter((-1 if x is None else x.subsequent for x in incs), dtype=np.int64, count=every)
        row_first, row_next = (a, b) if whole else (a[idx], b[idx])
    has_inc = row_first >= 0
    unit_s = TIME_UNITS[sp.unit] if sp.kind == KIND_TIME else 1

    def fee_billed(band: str) -> tuple[np.ndarray, np.ndarray]:
        part = parts.get(band)
        fee = part.connect_fee if part is not None and part.connect_fee is not None else sp.connect_fee
        fee_n = np.where(fee_missing, to_nano([fee])[0][0], row_fee)
        if sp.kind != KIND_TIME:  # priced per call (a count unit): one unit
            return fee_n, np.ones(n, dtype=np.int64)
        inc = part.increments if part is not None and part.increments is not None else sp.increments
        first = np.where(has_inc, row_first, inc.initial)
        nxt = np.where(has_inc, row_next, inc.subsequent)
        eff = max(reference_s, sp.minimum_s)
        return fee_n, np.where(eff <= first, first, first + -(-(eff - first) // np.maximum(nxt, 1)) * nxt)

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
        fee_n, billed = fee_billed(b)
        c = div_half_even(fee_n * unit_s + p * billed, unit_s)
        p[miss] = -1
        c[miss] = -1
        price[b] = p
        cost[b] = c
    return _Deck(code, pref, dest, price, cost, np.asarray(_rules_of(sp), dtype=object)[idx])


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


def fx_factor(plan: Plan, policy: LcrPolicy, currency: str, day: date, span=None) -> tuple[Fraction, str]:
    """The exact rate that turns ``currency`` into the policy's currency on ``day`` (the policy's
    ``fx`` source, the rate in force that day), and how it was found (the quote as text; "" for
    the policy's own currency). :class:`LcrError` at ``span`` (default: the policy's) when the
    policy names no source or the source has no rate in force."""
    span = span if span is not None else policy.span
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


def convert(cost: np.ndarray, factor: Fraction) -> np.ndarray:
    """Non-negative amounts in 10^-9 (int64; -1 stays -1: no price) times an FX rate, half even
    at 10^-9, exact (computed once per distinct value). :class:`LcrError` when a result would
    not fit the costs compared."""
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
        if q > MAX_COST_N:
            raise LcrError(f"a cost of {Decimal(v) / SCALE} converted at {factor} is too large to compare")
        out[i] = q
    return out[inverse.reshape(-1)]


# --------------------------------------------------------------------------- the longest-prefix match


def _prefix_ints(prefixes) -> tuple[np.ndarray, np.ndarray]:
    s = prefixes if isinstance(prefixes, pl.Series) else pl.Series(prefixes, dtype=pl.Utf8)
    lens = s.str.len_chars().to_numpy().astype(np.int64)
    nums = s.replace("", "0").cast(pl.Int64).to_numpy()
    return nums, lens


def _match(union_nums: np.ndarray, union_lens: np.ndarray, deck_keys: np.ndarray, n_rows: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """For every destination ``u`` and deck: the deck's row (a global row number) of its longest
    prefix that begins the destination. ``deck_keys``: the key of every row of every deck, the
    rows of deck i after those of deck i - 1. Returns (u, row) sorted by u, then row."""
    us, keys = [], []
    for L in range(0, int(union_lens.max(initial=0)) + 1):
        sel = np.nonzero(union_lens >= L)[0]
        if len(sel) == 0:
            continue
        us.append(sel)
        keys.append((union_nums[sel] // POW10[union_lens[sel] - L]) * KEY_BITS + L)
    cuts = pl.DataFrame({"u": np.concatenate(us), "key": np.concatenate(keys)})
    rows = pl.DataFrame({"key": deck_keys, "row": np.arange(n_rows, dtype=np.int64)})
    hits = cuts.join(rows, on="key", how="inner")
    return hits["u"].to_numpy(), hits["row"].to_numpy()


def _number_ints(numbers: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numbers as (digits as int64, length, usable): a number that is not 1 to 15 digits is
    not usable (it matches no prefix)."""
    s = numbers.cast(pl.Utf8)
    lens = s.str.len_chars().fill_null(0).to_numpy().astype(np.int64)
    ok = s.str.contains(r"^[0-9]{1,15}$").fill_null(False).to_numpy()
    nums = s.cast(pl.Int64, strict=False).fill_null(0).to_numpy()
    return np.where(ok, nums, 0), np.where(ok, lens, 0), ok


def longest_match(numbers: pl.Series, prefixes: pl.Series) -> np.ndarray:
    """For each number, the position in ``prefixes`` of the longest prefix that begins it; -1
    where none does. On columns: one sorted lookup per prefix length, longest first."""
    if not len(prefixes) or not len(numbers):
        return np.full(len(numbers), -1, dtype=np.int64)
    return longest_match_ints(*_number_ints(numbers), prefixes)


def number_ints(numbers: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numbers as (digits as int64, length, usable) for :func:`longest_match_ints`: converted
    once, matched against several prefix lists."""
    return _number_ints(numbers)


def longest_match_ints(n_num: np.ndarray, n_len: np.ndarray, ok: np.ndarray, prefixes: pl.Series) -> np.ndarray:
    """:func:`longest_match` on numbers already converted by :func:`number_ints`."""
    out = np.full(len(n_num), -1, dtype=np.int64)
    if not len(prefixes) or not len(n_num):
        return out
    p_num, p_len = _prefix_ints(prefixes)
    keys = p_num * KEY_BITS + p_len
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    for L in sorted(set(p_len.tolist()), reverse=True):
        sel = np.nonzero((out < 0) & ok & (n_len >= L))[0]
        if not len(sel):
            continue
        k = (n_num[sel] // POW10[n_len[sel] - L]) * KEY_BITS + L
        at = np.minimum(np.searchsorted(sorted_keys, k), len(sorted_keys) - 1)
        hit = sorted_keys[at] == k
        out[sel[hit]] = order[at[hit]]
    return out


def _longest(u: np.ndarray, deck: np.ndarray, length: np.ndarray, row: np.ndarray, n_decks: int,
             own: np.ndarray | None = None):
    """Of the hits (u, deck, prefix length, row): the longest per (u, deck), sorted by u, deck;
    ``own``: per hit, False for a row of the deck's fallback list, which counts only when no
    row of the deck itself holds (at any length)."""
    bits = 2 * KEY_BITS
    rank = length + (KEY_BITS if own is None else np.where(own, KEY_BITS, 0))
    comp = (u * n_decks + deck) * bits + rank
    order = pl.Series(comp).arg_sort().to_numpy()
    comp = comp[order]
    group = comp // bits
    last = np.ones(len(group), dtype=bool)
    last[:-1] = group[1:] != group[:-1]
    keep = order[last]
    return u[keep], deck[keep], row[keep]


# --------------------------------------------------------------------------- the table


QUALITY_COLUMNS = {"calls": pl.Int64, "answered": pl.Int64, "billsec": pl.Int64, "pdd_ms": pl.Int64,
                   "pdd_n": pl.Int64}


def _sources(plan: Plan, policy: LcrPolicy, day: date, notes: list[str]):
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
        if sp.rates is None and sp.flat_price is None and not any(p.price is not None for p in sp.band_parts):
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
    return sources, sell_src


def _quality_arrays(quality: pl.DataFrame | None, prefixes: pl.Series, deck_of: dict[str, int],
                    u: np.ndarray, deck: np.ndarray) -> list[np.ndarray]:
    n = len(u)
    out = [np.zeros(n, dtype=np.int64) for _ in QUALITY_COLUMNS]
    if quality is None or not len(quality):
        return out
    n_decks = max(deck_of.values(), default=0) + 1
    q = quality.select("supplier", "prefix", *QUALITY_COLUMNS).cast(QUALITY_COLUMNS)
    q = q.join(pl.DataFrame({"supplier": list(deck_of), "deck": list(deck_of.values())}), on="supplier")
    q = q.join(pl.DataFrame({"prefix": prefixes, "u": np.arange(len(prefixes))}), on="prefix")
    if not len(q):
        return out
    qkey = q["u"].to_numpy() * n_decks + q["deck"].to_numpy()
    order = np.argsort(qkey)
    qkey = qkey[order]
    key = u * n_decks + deck
    at = np.searchsorted(qkey, key)
    at_c = np.minimum(at, len(qkey) - 1)
    found = qkey[at_c] == key
    for i, c in enumerate(QUALITY_COLUMNS):
        col = q[c].fill_null(0).to_numpy()[order]
        out[i][found] = col[at_c[found]]
    return out


def build_table(plan: Plan, policy: LcrPolicy, day: date, quality: pl.DataFrame | None = None,
                records=None) -> LcrTable:
    """The routing table of ``policy`` on ``day``. ``quality``: per (supplier, prefix) the
    measurement of a recent period (:func:`icdsl.routing.quality.measure`); or ``records``:
    outbound call records (Arrow or polars) measured here over the policy's quality window."""
    notes: list[str] = []
    sources, sell_src = _sources(plan, policy, day, notes)
    all_src = ([sell_src] if sell_src else []) + sources
    band_set = {b for _, _, sp in all_src for b in _service_bands(sp)}
    bands = tuple(sorted(band_set)) if band_set else (ALL_BANDS,)
    if any(sp.calendar is None for _, _, sp in all_src) and band_set:
        notes.append("decks without a calendar price every band alike")
    n_sell = 1 if sell_src else 0
    decks: list[_Deck] = []
    infos: list[Supplier] = []
    for code, a, sp in all_src:
        d = _deck(code, sp, day, bands, policy.reference_s)
        factor, how = fx_factor(plan, policy, sp.currency, day, a.span)
        for b in bands:
            d.cost[b] = convert(d.cost[b], factor)
        decks.append(d)
        infos.append(Supplier(code, a.key, sp.currency, how, a.span))
    suppliers = tuple(infos[n_sell:])
    deck_of = {s.code: i + n_sell for i, s in enumerate(suppliers)}

    # every deck's rows, one after the other (global row numbers)
    all_prefix = pl.Series(np.concatenate([d.prefixes for d in decks]), dtype=pl.Utf8)
    all_dest = pl.Series(np.concatenate([d.destinations for d in decks]), dtype=pl.Utf8)
    all_rule = pl.Series(np.concatenate([d.rules for d in decks]), dtype=pl.Utf8)
    row_deck = np.concatenate([np.full(len(d.prefixes), i, dtype=np.int64) for i, d in enumerate(decks)])
    price = np.stack([np.concatenate([d.price[b] for d in decks]) for b in bands])
    cost = np.stack([np.concatenate([d.cost[b] for d in decks]) for b in bands])
    fell = np.concatenate([d.fallback if d.fallback is not None else np.zeros(len(d.prefixes), dtype=bool)
                           for d in decks])
    nums, lens = _prefix_ints(all_prefix)

    # the destinations: every prefix of every deck; each matched in each deck
    prefixes = all_prefix.filter(all_prefix != "").unique().sort()
    u_num, u_len = _prefix_ints(prefixes)
    hu, hrow = _match(u_num, u_len, nums * KEY_BITS + lens, len(nums))
    mu, mdeck, mrow = _longest(hu, row_deck[hrow], lens[hrow], hrow, len(decks), ~fell[hrow])
    # destination names: the sell deck's, else a deck that has the prefix itself, else any
    prio = np.where(mdeck < n_sell, 0, np.where(lens[mrow] == u_len[mu], 1, 2)) * len(decks) + mdeck
    first = np.lexsort((prio, mu))
    new = np.ones(len(first), dtype=bool)
    new[1:] = mu[first][1:] != mu[first][:-1]
    names = all_dest.gather(mrow[first][new])

    # one candidate per (destination, band, deck) priced in that band
    nb = len(bands)
    u = np.tile(mu, nb)
    band = np.repeat(np.arange(nb), len(mu))
    deck = np.tile(mdeck, nb)
    row = np.tile(mrow, nb)
    pr = price[band, row]
    co = cost[band, row]
    priced = co >= 0
    sell = np.full((nb, len(prefixes)), -1, dtype=np.int64)
    sell_row = np.full((nb, len(prefixes)), -1, dtype=np.int64)
    if n_sell:
        s = priced & (deck == 0)
        sell[band[s], u[s]] = co[s]
        sell_row[band[s], u[s]] = row[s]
        priced &= deck > 0
    idx = np.nonzero(priced)[0]
    u, band, deck, row, pr, co = u[idx], band[idx], deck[idx], row[idx], pr[idx], co[idx]
    if quality is None and records is not None:
        quality = measure(records, prefixes.to_list(), day, policy.window_days)
    q = _quality_arrays(quality, prefixes, deck_of, u, deck)
    rows = Rows(u, band, deck, row, pr, co, sell[band, u], *q)

    reason, preferred, measured = apply_policy(rows, policy, prefixes, deck_of)
    kept = np.nonzero(reason == 0)[0]
    k = rows.take(kept)
    rank, share_idx, shares = rank_routes(k, preferred[kept], measured[kept], policy, prefixes, deck_of, nb)
    if policy.routes is not None:
        keep = rank <= policy.routes
        k, rank, share_idx, kept = k.take(keep), rank[keep], share_idx[keep], kept[keep]
    order = np.lexsort((k.deck, rank, k.band, k.u))
    k, rank, share_idx, kept = k.take(order), rank[order], share_idx[order], kept[order]
    share_col = pl.Series("share", shares, dtype=pl.Utf8).gather(np.maximum(share_idx, 0))
    share_col = pl.select(pl.when(pl.Series(share_idx >= 0)).then(share_col).otherwise(None)).to_series()
    routes = _frame(k, prefixes, names, bands, infos, all_prefix, all_rule, fell).with_columns(
        pl.Series("rank", rank), share_col.alias("share"), pl.Series("preferred", preferred[kept]),
        pl.Series("measured", measured[kept]))
    routes = routes.select("prefix", "destination", "band", "rank", "supplier", "agreement", "supplier_prefix",
                           "rule", "currency", "price_n", "cost_n", "sell_n", "share", "preferred", "measured",
                           *QUALITY_COLUMNS, "fallback")
    out = np.nonzero(reason > 0)[0]
    x = rows.take(out)
    xo = np.lexsort((x.deck, x.cost, x.band, x.u))
    x, xr = x.take(xo), reason[out][xo]
    excluded = _frame(x, prefixes, names, bands, infos, all_prefix, all_rule, fell).with_columns(
        pl.Series("reason", np.array(REASONS, dtype=object)[xr.astype(np.int64) - 1], dtype=pl.Utf8)
    ).select("prefix", "band", "supplier", "agreement", "supplier_prefix", "rule", "cost_n", "sell_n", "reason",
             *QUALITY_COLUMNS, "fallback")
    destinations = pl.DataFrame({"prefix": prefixes, "destination": names})
    if n_sell:
        sb, su = np.nonzero(sell >= 0)
        sells = pl.DataFrame({"prefix": prefixes.gather(su), "band": pl.Series(bands).gather(sb),
                              "sell_n": sell[sb, su], "sell_prefix": all_prefix.gather(sell_row[sb, su])})
        destinations = destinations.join(sells, on="prefix", how="left", maintain_order="left")
    unmeasured = sorted({suppliers[i - n_sell].code for i in np.unique(rows.deck[~measured])})
    if unmeasured and any(lim.measure in ("asr", "acd", "pdd") for lim in policy.limits):
        rule = {"allow": "kept, as if measured", "last": "ranked after the measured ones",
                "block": "left out"}[policy.unmeasured]
        notes.append(f"no quality measurement for some destinations of {', '.join(unmeasured)}: {rule} "
                     f"('unmeasured {policy.unmeasured}')")
    return LcrTable(policy, day, bands, suppliers, routes, excluded, destinations,
                    infos[0] if n_sell else None, notes)


def _frame(r: Rows, prefixes: pl.Series, names: pl.Series, bands, infos, all_prefix: pl.Series,
           all_rule: pl.Series, fell: np.ndarray) -> pl.DataFrame:
    codes = pl.Series([s.code for s in infos], dtype=pl.Utf8)
    keys = pl.Series([s.agreement for s in infos], dtype=pl.Utf8)
    curs = pl.Series([s.currency for s in infos], dtype=pl.Utf8)
    return pl.DataFrame({
        "prefix": prefixes.gather(r.u), "destination": names.gather(r.u),
        "band": pl.Series(bands, dtype=pl.Utf8).gather(r.band),
        "supplier": codes.gather(r.deck), "agreement": keys.gather(r.deck), "currency": curs.gather(r.deck),
        "supplier_prefix": all_prefix.gather(r.row), "rule": all_rule.gather(r.row),
        "fallback": fell[r.row],  # priced from the supplier's fallback price list
        "price_n": r.price, "cost_n": r.cost,
        "sell_n": pl.Series(r.sell).set(pl.Series(r.sell < 0), None) if len(r.sell) else pl.Series([], dtype=pl.Int64),
        **{c: pl.Series(c, getattr(r, c), dtype=pl.Int64) for c in QUALITY_COLUMNS},
    }).with_columns(pl.when(pl.col("calls") > 0).then(pl.col(c)).otherwise(None).alias(c) for c in QUALITY_COLUMNS)


def default_policy(name: str = "default") -> LcrPolicy:
    """The policy of ``icdsl lcr`` without ``--policy`` when the rules declare none: every
    supplier, ranked by the cost of a 60 s call, in EUR."""
    return LcrPolicy(name)


class PolicyChoiceError(LcrError):
    """No one policy can be chosen: several declared and none named, or the name is unknown."""


def choose_policy(plan: Plan, name: str | None = None) -> LcrPolicy:
    """The ``lcr`` policy named ``name``; without a name the only policy of the rules, else
    :func:`default_policy` when they declare none. :class:`PolicyChoiceError` (saying what to
    name) when the rules declare several and none is named, or none has that name."""
    policies = {p.name: p for p in plan.lcr_policies}
    if name is None:
        if len(policies) > 1:
            raise PolicyChoiceError(f"the rules declare several lcr policies: name one "
                                    f"({', '.join(sorted(policies))})")
        return next(iter(policies.values())) if policies else default_policy()
    if name not in policies:
        hint = did_you_mean(name, policies, "lcr policies") or "declare one with 'lcr NAME { ... }'"
        raise PolicyChoiceError(f"no lcr policy '{name}': {hint}")
    return policies[name]


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
                # the deck's longest row in force, else its fallback list's (``fallback ...``)
                r = _reference_row(sp.rates.rows, p, day)
                if r is None and sp.rates.fallback is not None:
                    r = _reference_row(sp.rates.fallback.rows, p, day)
                if r is None:
                    continue
                price = r.price_for(band)
                if price is None:
                    price = max(v for _, v in r.prices)
                # the row's own fee and increments, else the band's (``band NAME { ... }``), else the service's
                part = next((bp for bp in sp.band_parts if bp.band == band), None)
                fee = r.connect_fee if r.connect_fee is not None else (
                    part.connect_fee if part is not None and part.connect_fee is not None else sp.connect_fee)
                inc: Increments = r.increments or (part.increments if part is not None and part.increments
                                                   else sp.increments)
                billed = inc.billed(max(policy.reference_s, sp.minimum_s))
                cost = fee + price * billed / TIME_UNITS[sp.unit]
                got.append((code, cost.quantize(Decimal("1e-9"), ROUND_HALF_EVEN)))
            got.sort(key=lambda t: (t[1], t[0]))
            out[(p, band)] = got
    return out


def _reference_row(rows, p: str, day: date):
    """The longest row of ``rows`` in force on ``day`` that begins ``p`` (the later ``from`` and
    then the later row winning a tie), one row at a time."""
    best = None
    for r in rows:
        if not p.startswith(r.prefix):
            continue
        if r.effective_from and r.effective_from > day or r.effective_to and r.effective_to <= day:
            continue
        key = (len(r.prefix), r.effective_from or date.min)
        if best is None or key >= best[0]:
            best = (key, r)
    return best[1] if best is not None else None
