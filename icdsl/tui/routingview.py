"""Least-cost routing and margins as the terminal shows them, headless.

The LCR table (:class:`icdsl.routing.lcr.LcrTable`) is shown one line per destination prefix and
band: the suppliers in the order the switch tries them, each with its cost per minute, then our
sell price and the margin of the first choice. The margins (:class:`icdsl.routing.margin.Margins`)
are shown by destination, partner, supplier or day, the most negative first; a key's records
are the drill-down. Amounts stay integers in 10^-9 of the policy's currency until they are
written (:func:`icdsl.routing.lcr.money_text`): nothing is rounded for the screen but the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from icdsl.routing.lcr import LcrTable, money_text
from icdsl.routing.margin import BY, Margins

RECORD_LIMIT = 500
RECORD_COLUMNS = (
    "id",
    "day",
    "partner",
    "destination",
    "number",
    "band",
    "duration_s",
    "supplier",
    "chosen_by",
    "supplier_prefix",
    "revenue_n",
    "cost_n",
    "margin_n",
    "uncosted",
    "cost_rule",
)


@dataclass(frozen=True)
class Route:
    rank: int
    supplier: str
    cost_per_minute_n: int
    share: str | None


@dataclass(frozen=True)
class LcrRow:
    """One destination prefix in one band: its suppliers, ranked, and what we sell it at."""

    prefix: str
    destination: str
    band: str
    routes: tuple[Route, ...]
    sell_per_minute_n: int | None
    excluded: int  # suppliers the policy left out of this list

    @property
    def margin_per_minute_n(self) -> int | None:
        """Sell minus the first choice's cost, per minute (None when we do not sell it)."""
        if self.sell_per_minute_n is None or not self.routes:
            return None
        return self.sell_per_minute_n - self.routes[0].cost_per_minute_n

    def ranked_text(self, places: int = 5) -> str:
        """``LUMFR 0.01200 > BRKGB 0.01500`` (a split's members with their share: ``A 60% | B 40%``)."""
        out = []
        for i, r in enumerate(self.routes):
            sep = "" if i == 0 else (" | " if r.rank == self.routes[i - 1].rank else " > ")
            share = f" {r.share}%" if r.share else ""
            out.append(f"{sep}{r.supplier} {money_text(r.cost_per_minute_n, places)}{share}")
        return "".join(out)


def _per_minute(n: Any, reference_s: int) -> int | None:
    return None if n is None else n * 60 // reference_s


def lcr_rows(table: LcrTable, search: str = "", limit: int | None = 2000) -> tuple[list[LcrRow], int]:
    """(the first ``limit`` lines, how many there are) of the table, by prefix then band;
    ``search``: only prefixes that begin with it, or destinations that contain it (any case)."""
    r = table.policy.reference_s
    routes = table.routes
    dest = table.destinations.select("prefix", "destination").unique("prefix")
    if search:
        s = search.strip()
        hit = dest.filter(
            pl.col("prefix").str.starts_with(s)
            | pl.col("destination").str.to_lowercase().str.contains(s.lower(), literal=True)
        )
        routes = routes.filter(pl.col("prefix").is_in(hit["prefix"].implode()))
    keys = routes.select("prefix", "band").unique().sort("prefix", "band")
    total = keys.height
    if limit is not None:
        keys = keys.head(limit)
    mine = routes.join(keys, on=["prefix", "band"], how="semi").sort("prefix", "band", "rank", "supplier")
    out_n = table.excluded.join(keys, on=["prefix", "band"], how="semi").group_by("prefix", "band").len()
    excluded = {(p, b): n for p, b, n in out_n.iter_rows()}
    sells: dict[tuple[str, str], int] = {}
    if "sell_n" in table.destinations.columns:
        for p, b, s in table.destinations.select("prefix", "band", "sell_n").drop_nulls().iter_rows():
            sells[(p, b)] = s
    rows = []
    for (prefix, band), g in mine.group_by(["prefix", "band"], maintain_order=True):
        first = g.row(0, named=True)
        rts = tuple(
            Route(k, s, _per_minute(c, r), sh)
            for k, s, c, sh in g.select("rank", "supplier", "cost_n", "share").iter_rows()
        )
        rows.append(
            LcrRow(
                prefix,
                first["destination"] or "",
                band,
                rts,
                _per_minute(sells.get((prefix, band)), r),
                excluded.get((prefix, band), 0),
            )
        )
    return rows, total


def margin_rows(m: Margins, by: str) -> list[dict[str, Any]]:
    """The report by ``by`` (see :meth:`Margins.report`), the most negative margin first."""
    return m.report(by).sort("margin_n", by, nulls_last=True).to_dicts()


def records_of(
    m: Margins, by: str, key: Any, limit: int | None = RECORD_LIMIT
) -> tuple[list[dict[str, Any]], int]:
    """(the first ``limit`` records, how many) behind one row of the report by ``by``: the
    records whose ``by`` column is ``key``, the most negative margin first."""
    if by not in BY:
        raise ValueError(f"by {by!r}: one of {', '.join(BY)}")
    r = m.records
    col = pl.col(by)
    sub = r.filter(
        col.is_null()
        if key is None
        else col.cast(pl.Utf8) == (key.isoformat() if isinstance(key, date) else str(key))
    )
    total = sub.height
    sub = sub.sort("margin_n", "id")
    if limit is not None:
        sub = sub.head(limit)
    return sub.select([c for c in RECORD_COLUMNS if c in sub.columns]).to_dicts(), total


def summary(m: Margins, period: str) -> str:
    t = m.totals()
    negative = m.report("destination").filter(pl.col("margin_n") < 0).height
    out = (
        f"{period}: {t['records']:,} records sold · revenue {money_text(t['revenue_n'], 4)} · cost "
        f"{money_text(t['cost_n'], 4)} · margin {money_text(t['margin_n'], 4)} {m.currency}"
    )
    extra = []
    if negative:
        extra.append(f"{negative} destination(s) at a loss")
    if t["uncosted"]:
        extra.append(f"{t['uncosted']:,} uncosted")
    return out + ("\n" + " · ".join(extra) if extra else "")
