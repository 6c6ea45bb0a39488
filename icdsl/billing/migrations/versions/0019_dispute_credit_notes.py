"""An accepted dispute of our invoice names the credit note it produced.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

- ``portal_disputes.accepted_amount``: the net amount our staff accepted (all of the disputed
  line, or the part given), in the invoice's currency; null until the dispute is accepted;
- ``portal_disputes.credit_note_id``: the credit note (``CN-YYYY-NNNNNN``) issued for it in the
  same transaction as the acceptance; unique, so a dispute is never credited twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(24, 8).with_variant(sa.String(40), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("portal_disputes") as b:
        b.add_column(sa.Column("accepted_amount", MONEY, nullable=True))
        b.add_column(sa.Column("credit_note_id", sa.Integer(), nullable=True))
        b.create_foreign_key(op.f("fk_portal_disputes_credit_note_id_invoices"), "invoices", ["credit_note_id"],
                             ["id"])
        b.create_unique_constraint(op.f("uq_portal_disputes_credit_note_id"), ["credit_note_id"])


def downgrade() -> None:
    with op.batch_alter_table("portal_disputes") as b:
        b.drop_constraint(op.f("uq_portal_disputes_credit_note_id"), type_="unique")
        b.drop_constraint(op.f("fk_portal_disputes_credit_note_id_invoices"), type_="foreignkey")
        b.drop_column("credit_note_id")
        b.drop_column("accepted_amount")
