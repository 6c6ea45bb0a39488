"""Billing: the store (SQLite or PostgreSQL + Parquet files), intake batches, billing cycles and
invoices.

- :mod:`~icdsl.billing.store`: :func:`~icdsl.billing.store.open_store` and the :class:`Store` API
- :mod:`~icdsl.billing.models`: the tables (SQLAlchemy); ``migrations/``: their Alembic history
- :mod:`~icdsl.billing.intake`: traffic files into intake batches
- :mod:`~icdsl.billing.cycles`: rating, validating, invoicing and finalizing a partner's period
- :mod:`~icdsl.billing.periods`: billing periods in the partner's time zone
- :mod:`~icdsl.billing.files`: the data folder (atomic, content-addressed Parquet files)
- :mod:`~icdsl.billing.types`: exact money, rates and UTC timestamps on both back ends
"""
