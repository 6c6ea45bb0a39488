"""Reconciliation of partners' invoices against our own view of the same traffic.

No database and no UI: the partner's invoice (plain data, :mod:`icdsl.recon.model`), our view
(the cycle engine's result for the partner's outbound services) and the agreement's tolerances
in, a :class:`~icdsl.recon.model.Reconciliation` out. The store's side (importing, keeping and
loading partners' invoices, disputes) is in ``icdsl.billing``.
"""
