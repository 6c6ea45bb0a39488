"""Billing commands of the ``icdsl`` command line (the store, intake, cycles, invoices)."""

from __future__ import annotations
