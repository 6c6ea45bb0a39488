"""Conflicting and suspected duplicates of intake, both versions kept for review.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

- ``intake_conflicts``: a record that arrived again. ``conflict``: an id already ingested with
  other content (the later version is an intake reject ``conflicting_duplicate``, the earlier
  one stays billed); ``suspect``: a new id with the numbers, start and duration of a record
  ingested before (``icdsl ingest --fingerprint``; both billed). Both records as JSON
  (``earlier``, ``later``) and the fields that differ (``differs``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "intake_conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("row", sa.BigInteger(), nullable=True),
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("partner", sa.String(length=64), nullable=True),
        sa.Column("start", TS, nullable=True),
        sa.Column("earlier_batch_id", sa.Integer(), nullable=False),
        sa.Column("earlier_id", sa.Text(), nullable=False),
        sa.Column("differs", sa.JSON(), nullable=True),
        sa.Column("earlier", sa.JSON(), nullable=False),
        sa.Column("later", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('conflict', 'suspect')", name=op.f("ck_intake_conflicts_kind")),
        sa.ForeignKeyConstraint(["batch_id"], ["intake_batches.id"],
                                name=op.f("fk_intake_conflicts_batch_id_intake_batches")),
        sa.ForeignKeyConstraint(["earlier_batch_id"], ["intake_batches.id"],
                                name=op.f("fk_intake_conflicts_earlier_batch_id_intake_batches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_conflicts")),
    )
    op.create_index(op.f("ix_intake_conflicts_batch_id"), "intake_conflicts", ["batch_id"])
    op.create_index(op.f("ix_intake_conflicts_partner"), "intake_conflicts", ["partner"])


def downgrade() -> None:
    op.drop_index(op.f("ix_intake_conflicts_partner"), table_name="intake_conflicts")
    op.drop_index(op.f("ix_intake_conflicts_batch_id"), table_name="intake_conflicts")
    op.drop_table("intake_conflicts")
