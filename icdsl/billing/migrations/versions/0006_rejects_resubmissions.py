"""The quarantine: resubmissions of rejected records.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

- ``reject_resubmissions``: one row per ``icdsl rejects resubmit`` (who, when, the filters,
  how many records, the intake batches its re-ingested files became, the cycles it reopened);
- ``resubmitted_rejects``: each record it resubmitted, by origin: an **intake** reject (the
  batch whose rejects file holds it and its ``row``: unique, so a reject is re-ingested once;
  ``new_batch_id``/``new_row``: where the re-ingest put it), a **rating** reject of a cycle
  (``cycle_id``) or a record of a partner that was **unknown** at ingest (``batch_id``: the
  intake batch that holds it, ``record_id``: its id, ``start``: its start, which finds its cycle).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reject_resubmissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.JSON(), nullable=False),
        sa.Column("cycles", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reject_resubmissions")),
    )
    op.create_table(
        "resubmitted_rejects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resubmission_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("row", sa.BigInteger(), nullable=True),
        sa.Column("record_id", sa.String(length=500), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("partner", sa.String(length=64), nullable=True),
        sa.Column("start", TS, nullable=True),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("new_batch_id", sa.Integer(), nullable=True),
        sa.Column("new_row", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("source IN ('intake', 'rating', 'unknown_partner')",
                           name=op.f("ck_resubmitted_rejects_source")),
        sa.ForeignKeyConstraint(["resubmission_id"], ["reject_resubmissions.id"],
                                name=op.f("fk_resubmitted_rejects_resubmission_id_reject_resubmissions")),
        sa.ForeignKeyConstraint(["batch_id"], ["intake_batches.id"],
                                name=op.f("fk_resubmitted_rejects_batch_id_intake_batches")),
        sa.ForeignKeyConstraint(["cycle_id"], ["billing_cycles.id"],
                                name=op.f("fk_resubmitted_rejects_cycle_id_billing_cycles")),
        sa.ForeignKeyConstraint(["new_batch_id"], ["intake_batches.id"],
                                name=op.f("fk_resubmitted_rejects_new_batch_id_intake_batches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resubmitted_rejects")),
        sa.UniqueConstraint("source", "batch_id", "row", name=op.f("uq_resubmitted_rejects_source_batch_id_row")),
    )
    op.create_index(op.f("ix_resubmitted_rejects_resubmission_id"), "resubmitted_rejects", ["resubmission_id"])
    op.create_index("ix_resubmitted_rejects_batch_id_record_id", "resubmitted_rejects", ["batch_id", "record_id"])


def downgrade() -> None:
    op.drop_index("ix_resubmitted_rejects_batch_id_record_id", table_name="resubmitted_rejects")
    op.drop_index(op.f("ix_resubmitted_rejects_resubmission_id"), table_name="resubmitted_rejects")
    op.drop_table("resubmitted_rejects")
    op.drop_table("reject_resubmissions")
