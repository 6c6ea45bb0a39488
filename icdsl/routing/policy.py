"""The rules of an ``lcr`` policy on the candidate routes, as NumPy columns: which routes are
left out and why (blocks, quality, cost and margin limits) and how the others are ranked
(splits, preferred suppliers, cost, the supplier's code). Used by :mod:`icdsl.routing.lcr`.

Every test is exact on integers: costs in 10^-9 of the policy's currency, percentages times
10^4, durations in seconds (PDD in milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from icdsl.plan.model import LcrPolicy

SCALE = 10**9  # costs in 10^-9 of a currency unit
#: why a supplier is not in a destination's list, in the order they are checked
REASONS = ("blocked", "unmeasured", "asr", "acd", "pdd", "cost", "margin")


def _starts(prefixes: pl.Series, scope: str) -> np.ndarray:
    return prefixes.str.starts_with(scope).to_numpy() if scope else np.ones(len(prefixes), dtype=bool)


def _in_scope(prefixes: pl.Series, scopes: tuple[str, ...]) -> np.ndarray:
    if not scopes:
        return np.ones(len(prefixes), dtype=bool)
    out = np.zeros(len(prefixes), dtype=bool)
    for p in scopes:
        out |= _starts(prefixes, p)
    return out


def scoped(prefixes: pl.Series, rules: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per destination: (has a rule, the value of the rule with the longest matching scope)."""
    has = np.zeros(len(prefixes), dtype=bool)
    value = np.zeros(len(prefixes), dtype=np.int64)
    for scope, v in sorted(rules, key=lambda r: len(r[0])):
        hit = _starts(prefixes, scope)
        has |= hit
        value[hit] = v
    return has, value


def _limits(policy: LcrPolicy, measure: str, scale) -> list[tuple[str, int, str]]:
    out = []
    for lim in policy.limits:
        if lim.measure == measure:
            factor = 10**4 if lim.unit == "%" else scale
            for scope in lim.prefixes or ("",):
                out.append((scope, int(lim.value * factor), lim.unit))
    return out


@dataclass
class Rows:
    """The candidate routes as NumPy columns: destination ``u``, ``band`` index, ``deck`` index
    (suppliers in code order), the deck's global ``row``, costs, sell price (-1: none) and the
    quality sums."""

    u: np.ndarray
    band: np.ndarray
    deck: np.ndarray
    row: np.ndarray
    price: np.ndarray
    cost: np.ndarray
    sell: np.ndarray
    calls: np.ndarray
    answered: np.ndarray
    billsec: np.ndarray
    pdd_ms: np.ndarray
    pdd_n: np.ndarray

    def take(self, idx: np.ndarray) -> Rows:
        return Rows(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def apply_policy(r: Rows, policy: LcrPolicy, prefixes: pl.Series, deck_of: dict[str, int]) -> tuple:
    """(reason code per row: 0 kept, else 1 + index in REASONS; preferred; measured)."""
    R = policy.reference_s
    blocked = np.zeros(len(r.u), dtype=bool)
    preferred = np.zeros(len(r.u), dtype=bool)
    for rule in policy.rules:
        decks = [deck_of[c] for c in rule.suppliers if c in deck_of]
        if not decks:
            continue
        hit = _in_scope(prefixes, rule.prefixes)[r.u] & np.isin(r.deck, decks)
        if rule.kind == "block":
            blocked |= hit
        else:
            preferred |= hit
    has_calls, min_calls = scoped(prefixes, [(s, v) for s, v, _ in _limits(policy, "calls", 1)])
    need = np.where(has_calls, min_calls, 1)[r.u]
    measured = r.calls >= np.maximum(need, 1)
    fails: dict[str, np.ndarray] = {"blocked": blocked,
                                    "unmeasured": ~measured & (policy.unmeasured == "block")}

    def judged(measure: str, scale, test) -> None:
        lims = _limits(policy, measure, scale)
        if not lims:
            return
        has, value = scoped(prefixes, [(s, v) for s, v, _ in lims])
        _, pct = scoped(prefixes, [(s, int(unit == "%")) for s, _, unit in lims])
        ok = test(value[r.u], pct[r.u].astype(bool))
        fails[measure] = has[r.u] & ~ok

    # asr: answered / calls >= pct / 100 (pct x 10^4 in v): answered x 10^6 >= v x calls
    judged("asr", 1, lambda v, _: ~measured | (r.answered * 10**6 >= v * r.calls))
    judged("acd", 1, lambda v, _: ~measured | (r.billsec >= v * r.answered))
    judged("pdd", 1000, lambda v, _: ~measured | (r.pdd_n == 0) | (r.pdd_ms <= v * r.pdd_n))
    # cost per minute = cost x 60 / R <= max
    judged("cost", SCALE, lambda v, _: r.cost * 60 <= v * R)
    # margin: (sell - cost) / sell >= pct / 100, or (sell - cost) x 60 / R >= amount per minute
    def margin_ok(v: np.ndarray, pct: np.ndarray) -> np.ndarray:
        sell, cost = r.sell, r.cost
        if len(sell) and max(int(sell.max()), int(cost.max())) > 9 * 10**12:  # x 10^6 could pass int64
            sell, cost, v = sell.astype(object), cost.astype(object), v.astype(object)
        ok = np.where(pct, (sell - cost) * 10**6 >= v * sell, (sell - cost) * 60 >= v * R)
        return (r.sell < 0) | ok.astype(bool)

    judged("margin", SCALE, margin_ok)
    reason = np.zeros(len(r.u), dtype=np.int8)
    for i, name in reversed(list(enumerate(REASONS))):
        if name in fails:
            reason[fails[name]] = i + 1
    return reason, preferred, measured


def rank_routes(r: Rows, preferred: np.ndarray, measured: np.ndarray, policy: LcrPolicy, prefixes: pl.Series,
          deck_of: dict[str, int], n_bands: int) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """(order of the rows, their rank, the share texts by split and deck) of the routes kept."""
    splits = sorted(policy.splits, key=lambda s: len(s.prefix))
    has_split, split_id = scoped(prefixes, [(s.prefix, i) for i, s in enumerate(splits)])
    n_decks = max(deck_of.values(), default=0) + 1
    shares: list[str | None] = [None] * (max(len(splits), 1) * n_decks)
    for i, s in enumerate(splits):
        for who, pct in s.shares:
            if who in deck_of:
                shares[i * n_decks + deck_of[who]] = f"{pct.normalize():f}"
    share_known = np.array([x is not None for x in shares], dtype=bool)
    member = has_split[r.u] & share_known[split_id[r.u] * n_decks + r.deck]
    group = np.full(len(r.u), 2, dtype=np.int64)
    if policy.unmeasured == "last":
        group[~measured] = 3
    group[preferred] = 1
    group[member] = 0
    order = np.lexsort((r.deck, r.cost, group, r.band, r.u))
    run = (r.u * n_bands + r.band)[order]
    starts = np.ones(len(run), dtype=bool)
    starts[1:] = run[1:] != run[:-1]
    start_idx = np.nonzero(starts)[0]
    run_no = np.cumsum(starts) - 1
    pos = np.arange(len(run)) - start_idx[run_no] + 1
    g = group[order]
    nsplit = np.add.reduceat((g == 0).astype(np.int64), start_idx) if len(start_idx) else np.zeros(0, np.int64)
    rank = np.where(g == 0, 1, pos - np.maximum(nsplit[run_no] - 1, 0)) if len(run) else pos
    rank_of = np.empty(len(r.u), dtype=np.int64)
    rank_of[order] = rank
    share_idx = np.where(member, split_id[r.u] * n_decks + r.deck, -1)
    return rank_of, share_idx, shares
