"""Drafting invoices (moved to :mod:`icdsl.cycle.invoicing`; kept for the store's callers)."""

from icdsl.cycle.invoicing import (
    BASE_DIMS,
    DEFAULT_DIMS,
    DEFAULT_STREAM,
    DIMENSIONS,
    NETTING,
    TIME_UNITS,
    VOLUME_UNITS,
    DraftInvoice,
    DraftLine,
    Drafts,
    DraftStatement,
    Group,
    check_dims,
    describe,
    draft_documents,
    fx_for,
    group_key,
    line_json,
    quantity_unit,
    route,
    traffic_line,
)

__all__ = ["BASE_DIMS", "DEFAULT_DIMS", "DEFAULT_STREAM", "DIMENSIONS", "NETTING", "TIME_UNITS", "VOLUME_UNITS",
           "DraftInvoice", "DraftLine", "DraftStatement", "Drafts", "Group", "check_dims", "describe",
           "draft_documents", "fx_for", "group_key", "line_json", "quantity_unit", "route", "traffic_line"]
