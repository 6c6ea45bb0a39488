"""A cycle's inputs without a store: what the callers that bill nothing build by hand before
they call :func:`icdsl.cycle.engine.run` (the TUI's what-if, the plugin author kit, ``icdsl
commitments``), so that none of them assembles a cycle of its own.

- :func:`plan_fx`: the plan's ``fx`` sources as an :class:`~icdsl.cycle.fx.FxTable` (what a
  store loads from the same plan);
- :func:`period_of`: the :class:`~icdsl.cycle.periods.Period` of a partner for a label, a day
  or explicit local days;
- :func:`period_records`: a partner's records of a period out of a table holding any records
  (the store reads them that way from its intake files);
- :class:`SummarySinks`: sinks that keep the rejects and the per-record charges (what the
  charges and the counts read) but not the rated records themselves (a caller that compares
  sums needs the line sums, not millions of rated rows in memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from icdsl.cycle.engine import MemorySink, MemorySinks
from icdsl.cycle.fx import FxRow, FxTable
from icdsl.cycle.periods import Period, make_period, parse_period
from icdsl.plan.model import Partner, Plan


def plan_fx(plan: Plan) -> FxTable:
    """The rates of the plan's ``fx`` sources (with their inverse roundings), as a store that
    loaded the plan has them."""
    rows = [FxRow(src.name, r.base, r.quote, r.rate, r.effective_from, n)
            for src in plan.fx_sources for n, r in enumerate(src.rates, 1)]
    return FxTable.of_plan(rows, plan)


def period_of(partner: Partner, spec: str | date | Period | tuple[date, date], label: str | None = None) -> Period:
    """The partner's period: a label (``2026-03``), a day, a :class:`Period`, or ``(first day,
    end day exclusive)`` in the partner's time zone (ad hoc, labelled ``label``)."""
    if isinstance(spec, tuple):
        start, end = spec
        return make_period("adhoc", start, end, partner.timezone, label)
    return parse_period(spec, partner.timezone, partner.billing)


def period_records(table: pa.Table, partner: str, period: Period) -> tuple[pa.Table, int]:
    """(the partner's records of the period, how many of the partner's records fall outside
    it). A record without a start stays in: the rater rejects it with its reason."""
    if "partner" in table.column_names:
        mine = pc.fill_null(pc.equal(pc.cast(table.column("partner"), pa.string()), partner), False)
        table = table.filter(mine)
    if not table.num_rows:
        return table, 0
    start = table.column("start")
    if not pa.types.is_timestamp(start.type):
        start = pc.cast(start, pa.timestamp("us", tz="UTC"))
    inside = pc.fill_null(pc.and_(pc.greater_equal(start, pa.scalar(period.start, start.type)),
                                  pc.less(start, pa.scalar(period.end, start.type))), True)
    kept = table.filter(inside)
    return kept, table.num_rows - kept.num_rows


class _Counted(MemorySink):
    """Counts what is written and keeps nothing."""

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows


class SummarySinks(MemorySinks):
    """:class:`~icdsl.cycle.engine.MemorySinks` without the rated records (counted only): the
    rejects and the per-record charges are kept. ``read_rated`` gives empty columns, so a run
    with these sinks passes ``validators=()`` (the registered validators read rated records)."""

    def __init__(self) -> None:
        super().__init__()
        self.rated = _Counted()

    def read_rated(self, columns: Sequence[str]) -> pa.Table:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
