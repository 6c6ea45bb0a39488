"""Progressive billing: interim invoices raised in a period in progress.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

An interim invoice is an invoice (``doc_type`` ``invoice``, numbered in the invoice series,
sealed) that belongs to no cycle (``cycle_id`` null: the period's cycle runs later, and its
final invoice deducts it); these columns say which period and usage it billed:

- ``interim_period``: the label of the period in progress (``2026-03``);
- ``interim_until``: the last local day of the usage it billed;
- ``interim_threshold``: the threshold (``progressive billing at ...``) it was raised at.

All null on every other document. The lines that deduct an interim invoice from a later one are
``other`` lines (the kinds of lines are fixed by 0001's check) whose group key is
``progressive NUMBER``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


MONEY = sa.Numeric(24, 8).with_variant(sa.String(40), "sqlite")  # as icdsl.billing.types.Money (0001)


def upgrade() -> None:
    op.add_column("invoices", sa.Column("interim_period", sa.String(length=64), nullable=True))
    op.add_column("invoices", sa.Column("interim_until", sa.Date(), nullable=True))
    op.add_column("invoices", sa.Column("interim_threshold", MONEY, nullable=True))
    op.create_index("ix_invoices_partner_id_interim_period", "invoices", ["partner_id", "interim_period"])


def downgrade() -> None:
    op.drop_index("ix_invoices_partner_id_interim_period", table_name="invoices")
    op.drop_column("invoices", "interim_threshold")  # (SQLite >= 3.35 drops a column in place, as 0016's)
    op.drop_column("invoices", "interim_until")
    op.drop_column("invoices", "interim_period")
