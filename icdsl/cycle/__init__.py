"""The billing-cycle engine: one partner's period, from its records to its draft documents, as
a pure function of its inputs (no database, no UI).

::

    from icdsl.cycle import CycleInputs, run

    result = run(CycleInputs.of(plan, "ORFR", "2026-03", records))  # records: an Arrow table
    result.counts            # read = rated + rejected + events + refunds + unusable refunds
    result.lines             # the invoice lines' exact sums (Group: count, units, amount, first, last)
    result.charge_lines      # fees, tiers, discounts, commitments, shares... (ChargeLine)
    result.findings          # validation findings; result.blocked: an error not accepted
    result.drafts.invoices   # draft invoices (lines rounded once, tax), result.drafts.statement
    result.shares            # revenue-share statements
    result.sinks.read_rated(["id", "amount", "line"])  # the rated records, with their line

Inputs built by hand take the same path as the store's: ``CycleInputs(plan, partner, period,
records=[(batch_id, table), ...], inventory=..., history=History(...), fx=FxTable(rows),
dims=..., accept=..., sinks=...)``; the store (:func:`icdsl.billing.cycles.run_locked`) reads
them from its database and intake files, streams the records to Parquet files through its own
sinks, and writes the result in the same transaction.

Modules (layers: ``lang -> plan -> rating / charges -> cycle -> billing``; this package imports
nothing of :mod:`icdsl.billing`):

- :mod:`~icdsl.cycle.engine`: :class:`CycleInputs`, :class:`History`, :func:`run`, :class:`CycleResult`
- :mod:`~icdsl.cycle.rater`: the rate stage on columns (lines, partial sums, local days)
- :mod:`~icdsl.cycle.charges`: events and refunds set apart, charge evaluation, placement
- :mod:`~icdsl.cycle.validation`: pre-invoice findings and the validator registry
- :mod:`~icdsl.cycle.invoicing`: line groups to draft invoices and settlement statements
- :mod:`~icdsl.cycle.amounts`, :mod:`~icdsl.cycle.fx`: minor units, rounding, tax; FX lookup
- :mod:`~icdsl.cycle.periods`: billing periods; the one function deciding an instant's local day
- :mod:`~icdsl.cycle.errors`: :class:`CycleError`, :class:`ReconciliationError`
"""

from icdsl.cycle.engine import Counts, CycleInputs, CycleResult, History, MemorySink, MemorySinks, run
from icdsl.cycle.errors import CycleError, ReconciliationError
from icdsl.cycle.fx import FxRow, FxTable
from icdsl.cycle.periods import Period, day_edges, day_index, local_day, parse_period

__all__ = ["Counts", "CycleError", "CycleInputs", "CycleResult", "FxRow", "FxTable", "History", "MemorySink",
           "MemorySinks", "Period", "ReconciliationError", "day_edges", "day_index", "local_day", "parse_period",
           "run"]
