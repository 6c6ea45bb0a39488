"""Billing: the store (SQLite or PostgreSQL + Parquet files), intake batches, billing cycles,
validation, invoices, corrections and the audit trail (see ``docs/billing.md``).

Data flows: traffic files -> :mod:`intake` (batches, daily counts) -> :mod:`cycles` (rate with
the batch executor, reconcile) -> :mod:`validation` (findings; errors stop the cycle) ->
:mod:`invoicing` (lines, streams, netting, :mod:`fx`, :mod:`amounts`: rounding and tax) ->
drafts -> finalized documents (:mod:`documents`, written by :mod:`icdsl.outputs`);
:mod:`corrections` evaluate finalized periods again, whole, into adjustments on the next cycle
(:mod:`late`: records of finalized periods that arrive afterwards);
:mod:`trace` walks back from a line to its agreement, rules and records.

- :mod:`~icdsl.billing.store`: :func:`~icdsl.billing.store.open_store` and the :class:`Store` API
- :mod:`~icdsl.billing.models`: the tables (SQLAlchemy); ``migrations/``: their Alembic history
- :mod:`~icdsl.billing.intake`: traffic files into intake batches
- :mod:`~icdsl.billing.cycles`: rating, validating, invoicing and finalizing a partner's period
- :mod:`~icdsl.billing.validation`: pre-invoice checks, findings as data, the validator registry
- :mod:`~icdsl.billing.invoicing`: line groups to draft invoices and settlement statements
- :mod:`~icdsl.billing.amounts`, :mod:`~icdsl.billing.fx`: minor units, rounding, tax; FX rates
- :mod:`~icdsl.billing.corrections`: ``rerate`` and adjustments (traffic and charge lines)
- :mod:`~icdsl.billing.late`: late records of finalized cycles (found, reported, billed once)
- :mod:`~icdsl.billing.trace`: the audit trail of an invoice line
- :mod:`~icdsl.billing.documents`: invoices and statements as plain mappings for the outputs
- :mod:`~icdsl.billing.periods`: billing periods in the partner's time zone
- :mod:`~icdsl.billing.files`: the data folder (atomic, content-addressed Parquet files)
- :mod:`~icdsl.billing.types`: exact money, rates and UTC timestamps on both back ends
"""
