"""Expected versus billed traffic: each series (partner, direction, service, destination) of
the period's days against a baseline learned from the partner's history, with robust
statistics.

**The baseline** of a day is the median of the same weekday's records over the history
(:attr:`Policy.history_days`, from the series' first day with traffic: a new destination has no
past of zeros), and its spread the MAD (median absolute deviation) of those days, scaled by
1.4826 (the MAD of a normal distribution's standard deviation) and never below the Poisson
noise of the median (its square root) nor 1. A weekday needs :attr:`Policy.min_weeks`
observations. The deviation of a day is ``(actual - median) / spread``, in MADs.

**Findings**, with consecutive days of the same kind merged into one (its first and last day,
expected and actual records summed, the mean deviation):

- ``traffic_missing_day``: a day without any record of a (partner, direction, service) that
  usually sends on that weekday (median at least :attr:`Policy.min_daily`, traffic on at least
  :attr:`Policy.active_share` of those weekdays);
- ``traffic_drop``: a destination at least :attr:`Policy.threshold` MADs and
  :attr:`Policy.min_drop` below its median (days already missing for the whole service are
  left to the finding above);
- ``traffic_spike``: at least the threshold and :attr:`Policy.min_spike` above it.

The money of a drop or spike is estimated at the series' average amount per record in the
period (exact, rounded to the currency's minor unit); days after the last day any traffic was
ingested (the period still filling up) are not judged.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import numpy as np

from icdsl.assure.model import CODES, Finding, Inputs, Policy, action
from icdsl.charges.lines import round_money

MAD_SCALE = 1.4826
Key = tuple[str, ...]


class _Stats:
    """Median, spread and share of active days by series and weekday, from history columns."""

    def __init__(self, counts: np.ndarray, first: date, n_hist: int, policy: Policy):
        k = counts.shape[0]
        hist = counts[:, :n_hist].astype(np.float64)
        active = hist > 0
        start = np.where(active.any(axis=1), active.argmax(axis=1), n_hist)
        cols = np.arange(n_hist)
        hist[cols[None, :] < start[:, None]] = np.nan  # before the series began: not observed
        self.median = np.full((k, 7), np.nan)
        self.spread = np.full((k, 7), np.nan)
        self.share = np.zeros((k, 7))
        weekday = (first.weekday() + np.arange(n_hist)) % 7
        for w in range(7):
            sub = hist[:, weekday == w]
            if not sub.shape[1]:
                continue
            n = np.sum(~np.isnan(sub), axis=1)
            ok = n >= policy.min_weeks
            if not ok.any():
                continue
            with np.errstate(all="ignore"):
                med = _nanmedian(sub)
                mad = _nanmedian(np.abs(sub - med[:, None]))
                pos = np.nansum(sub > 0, axis=1) / np.maximum(n, 1)
            self.median[ok, w] = med[ok]
            self.spread[ok, w] = np.maximum.reduce([MAD_SCALE * mad[ok], np.sqrt(med[ok]), np.ones(int(ok.sum()))])
            self.share[ok, w] = pos[ok]


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """The median of each row, NaN left out (NaN for a row of NaN only): one sort of the
    matrix (NumPy's ``nanmedian`` goes through masked arrays, a hundred times slower on the
    small matrices of a cycle)."""
    missing = np.isnan(a)
    n = a.shape[1] - missing.sum(axis=1)
    srt = np.sort(np.where(missing, np.inf, a), axis=1)
    rows = np.arange(a.shape[0])
    lo = srt[rows, np.maximum((n - 1) // 2, 0)]
    hi = srt[rows, np.maximum(n // 2, 0) if a.shape[1] else 0]
    return np.where(n > 0, (lo + hi) / 2, np.nan)


def _runs(flags: list[tuple], skip: set[int] = frozenset()) -> list[list[tuple]]:  # type: ignore[assignment]
    """Consecutive day indices grouped: [(day, z, expected, actual, ...), ...] per run; days in
    ``skip`` (not judged) do not break a run."""
    runs: list[list[tuple]] = []
    for f in flags:
        if runs and all(j in skip for j in range(runs[-1][-1][0] + 1, f[0])):
            runs[-1].append(f)
        else:
            runs.append([f])
    return runs


def _dev(zs: list[float]) -> Decimal:
    return Decimal(str(round(sum(zs) / len(zs), 1)))


def traffic(inputs: Inputs, policy: Policy) -> list[Finding]:
    s = inputs.series
    if s is None or not s.keys:
        return []
    n_hist = (inputs.start - s.first).days
    n_per = (inputs.end - inputs.start).days
    if n_hist <= 0 or n_per <= 0:
        return []
    counts = np.asarray(s.counts, np.int64)[:, :n_hist + n_per]
    wanted = set(inputs.partners)
    judged = n_per
    if inputs.last_data_day is not None:
        judged = max(0, min(n_per, (inputs.last_data_day - inputs.start).days + 1))
    days = [inputs.start + timedelta(days=i) for i in range(judged)]
    # ---- per (partner, direction, service): missing days
    svc_keys = sorted({k[:3] for k in s.keys})
    svc_index = {k: i for i, k in enumerate(svc_keys)}
    rows = np.array([svc_index[k[:3]] for k in s.keys], np.int64)
    svc = np.zeros((len(svc_keys), counts.shape[1]), np.int64)
    np.add.at(svc, rows, counts)
    svc_stats = _Stats(svc, s.first, n_hist, policy)
    svc_amounts: dict[Key, list] = defaultdict(lambda: [Decimal(0), 0, ""])
    for key, (amount, records, currency) in s.amounts.items():
        acc = svc_amounts[key[:3]]
        acc[0] += amount
        acc[1] += records
        acc[2] = currency
    out: list[Finding] = []
    weekday = np.array([d.weekday() for d in days], np.int64)
    period = slice(n_hist, n_hist + judged)
    # every (series, day) judged at once, on columns; Python only for the series flagged
    smed = svc_stats.median[:, weekday]
    with np.errstate(invalid="ignore"):
        usual = (smed >= policy.min_daily) & (svc_stats.share[:, weekday] >= float(policy.active_share))
    gaps = usual & (svc[:, period] == 0)
    sz = np.where(gaps, -smed / svc_stats.spread[:, weekday], 0.0)
    for i in np.flatnonzero(gaps.any(axis=1)).tolist():
        key = svc_keys[i]
        if key[0] not in wanted:
            continue
        flags = [(j, float(sz[i, j]), int(round(smed[i, j])), 0) for j in np.flatnonzero(gaps[i]).tolist()]
        for run in _runs(flags):
            out.append(_finding(inputs, "traffic_missing_day", key, run, tuple(svc_amounts[key[:3]])
                                if key[:3] in svc_amounts else None))
    # ---- per destination: drops and spikes
    stats = _Stats(counts, s.first, n_hist, policy)
    med = stats.median[:, weekday]
    actual = counts[:, period].astype(np.float64)
    threshold = float(policy.threshold)
    off = gaps[rows]  # days missing for the whole service: left to the finding above
    with np.errstate(invalid="ignore"):
        z = (actual - med) / stats.spread[:, weekday]
        judge = ~np.isnan(med) & ~off
        drop_weak = judge & (med >= policy.min_daily) & (z <= -threshold / 2) & (
            actual <= med * (1 - float(policy.min_drop) / 2))
        drop_strong = drop_weak & (z <= -threshold) & (actual <= med * (1 - float(policy.min_drop)))
        spike_weak = judge & ~drop_weak & (actual >= policy.min_daily) & (z >= threshold / 2) & (
            actual >= med * (1 + float(policy.min_spike) / 2))
        spike_strong = spike_weak & (z >= threshold) & (actual >= med * (1 + float(policy.min_spike)))
    flagged = drop_strong.any(axis=1) | spike_strong.any(axis=1)
    for i in np.flatnonzero(flagged).tolist():
        key = s.keys[i]
        if key[0] not in wanted:
            continue
        amounts = s.amounts.get(key)
        skip = set(np.flatnonzero(off[i]).tolist())
        for code, weak, strong in (("traffic_drop", drop_weak, drop_strong), ("traffic_spike", spike_weak, spike_strong)):
            flags = [(j, float(z[i, j]), int(round(med[i, j])), int(actual[i, j]), bool(strong[i, j]))
                     for j in np.flatnonzero(weak[i]).tolist()]
            for run in _runs(flags, skip):
                # hysteresis: a run holds at least one day past the threshold; days past half of
                # it continue a run (a weekend's lower volume does not cut a week-long drop in
                # pieces) but neither start nor end one
                firm = [k for k, f in enumerate(run) if f[4]]
                if firm:
                    out.append(_finding(inputs, code, key, [f[:4] for f in run[firm[0]:firm[-1] + 1]], amounts))
    return out


def _finding(inputs: Inputs, code: str, key: Key, run: list[tuple[int, float, int, int]],
             amounts: tuple[Decimal, int, str] | None) -> Finding:
    first = inputs.start + timedelta(days=run[0][0])
    last = inputs.start + timedelta(days=run[-1][0])
    expected = sum(r[2] for r in run)
    actual = sum(r[3] for r in run)
    dev = _dev([r[1] for r in run])
    partner, direction, service = key[:3]
    subject = f"{direction} {service}" + (f" {key[3]}" if len(key) > 3 else "")
    money = None
    currency = None
    if amounts is not None and amounts[1]:
        amount, records, currency = amounts
        money = round_money(abs(amount * (expected - actual)) / records, currency) if currency else None
        currency = currency or None
    n = len(run)
    when = f"{first}" if n == 1 else f"{first}..{last} ({n} days)"
    if code == "traffic_missing_day":
        what = f"no {direction} {service} record from {partner} on {when}; about {expected} expected"
    else:
        pct = (Decimal(actual - expected) * 100 / Decimal(expected)).quantize(Decimal(1)) if expected else None
        what = (f"{subject}: {actual} record(s) on {when} where the baseline expects {expected}"
                + (f" ({pct:+}%)" if pct is not None else "") + f", {dev} MADs")
    if money is not None and money:
        what += f"; about {money} {currency} {'more' if code == 'traffic_spike' else 'less'} than usual"
    return Finding(code, CODES[code][0], partner, subject, what, action(code), inputs.period, first, last, n,
                   money if money else None, currency if money else None, expected, actual, dev,
                   details={"days": {(inputs.start + timedelta(days=r[0])).isoformat():
                                     {"expected": r[2], "actual": r[3], "mads": str(round(r[1], 1))} for r in run}})
