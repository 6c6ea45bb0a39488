"""Exchange rates for invoices, effective-dated: the pure lookup (rows are the store's
``fx_rates`` rows, read by :mod:`icdsl.billing.fx`, or :class:`FxRow` s built by hand).

A line priced in another currency than the invoice's is converted with the agreement's ``fx``
source at the rate **in force on the last day of the billing cycle** (the partner's local
date): the rate of the pair with the latest ``effective_from`` on or before that day. The
listed pair is used as written (``EUR/GBP 0.8511``: 1 EUR = 0.8511 GBP); the inverse pair
(GBP to EUR) is ``1 / rate`` rounded as the source's ``rounding`` says (default half even to 6
decimals). There are no cross rates: a pair that is not listed (either way) has no rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from icdsl.money import round_decimal
from icdsl.plan.model import Plan, Rounding

DEFAULT_INVERSE_ROUNDING = Rounding(6, "half_even")


@dataclass(frozen=True, slots=True)
class FxQuote:
    """The rate that converts ``base`` amounts into ``quote``: ``amount * rate``."""

    source: str
    base: str
    quote: str
    rate: Decimal
    effective_from: date
    rate_id: int  # the fx_rates row it comes from (the listed pair)
    inverse: bool  # derived as 1 / the listed quote/base rate

    def __str__(self) -> str:
        how = f", 1 / {self.listed} rounded" if self.inverse else ""
        return (f"1 {self.base} = {self.rate} {self.quote} ({self.source}, in force from "
                f"{self.effective_from}{how})")

    @property
    def listed(self) -> str:
        return f"{self.quote}/{self.base}" if self.inverse else f"{self.base}/{self.quote}"


@dataclass(frozen=True, slots=True)
class FxRow:
    """One listed rate: 1 ``base`` = ``rate`` ``quote`` from ``effective_from`` (``id``: where it
    comes from, e.g. the store's row; shown on invoices)."""

    source: str
    base: str
    quote: str
    rate: Decimal
    effective_from: date
    id: int = 0


class FxTable:
    """Rates by source and pair (rows with ``source, base, quote, rate, effective_from, id``)."""

    def __init__(self, rows: Iterable[Any], roundings: dict[str, Rounding] | None = None):
        self._rows: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
        for r in rows:
            self._rows[(r.source, r.base, r.quote)].append(r)
        for v in self._rows.values():
            v.sort(key=lambda r: r.effective_from)
        self.roundings = dict(roundings or {})

    @classmethod
    def of_plan(cls, rows: Iterable[Any], plan: Plan | None = None) -> FxTable:
        """A table of ``rows`` with the inverse roundings of ``plan``'s fx sources."""
        roundings = {src.name: src.rounding for src in plan.fx_sources} if plan is not None else {}
        return cls(list(rows), roundings)

    def sources(self) -> list[str]:
        return sorted({k[0] for k in self._rows})

    def _in_force(self, source: str, base: str, quote: str, day: date) -> Any:
        found = None
        for r in self._rows.get((source, base, quote), ()):
            if r.effective_from <= day:
                found = r
            else:
                break
        return found

    def quote(self, source: str, base: str, quote: str, day: date) -> FxQuote | None:
        """The rate converting ``base`` into ``quote`` in force on ``day``, or None."""
        direct = self._in_force(source, base, quote, day)
        if direct is not None:
            return FxQuote(source, base, quote, direct.rate, direct.effective_from, direct.id, False)
        listed = self._in_force(source, quote, base, day)
        if listed is None or listed.rate == 0:
            return None
        rnd = self.roundings.get(source, DEFAULT_INVERSE_ROUNDING)
        rate = round_decimal(Decimal(1) / listed.rate, rnd.precision, rnd.mode)
        return FxQuote(source, base, quote, rate, listed.effective_from, listed.id, True)
