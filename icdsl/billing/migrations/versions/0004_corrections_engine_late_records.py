"""Corrections through the engine: adjustments of charge lines, the record charges of a
correction, late records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

- ``adjustments``: an adjustment corrects a traffic line (as before) or a **charge line**
  (``charge_line_id``, ``charge_key``: the charge line's key; ``placement``: where the corrected
  line went, ``invoice``, ``statement`` or ``share``; ``party``: a revenue share's party);
- ``corrections``: the Parquet file of the per-record charges of the records a correction rated
  again (``charges_path``, ``charges_sha256``, ``charges_rows``), and what the corrected period
  measured and charged (``charge_usage``, ``charge_lines``: the history later cycles read);
- ``late_records``: passed records of an intake batch whose start falls in a **finalized**
  cycle of their partner: counted and kept at ingest (never billed into the finalized cycle,
  never dropped), reported on the partner's next cycle and billed by ``icdsl rerate``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("adjustments", sa.Column("charge_line_id", sa.Integer(), nullable=True))
    op.add_column("adjustments", sa.Column("charge_key", sa.Text(), nullable=True))
    op.add_column("adjustments", sa.Column("placement", sa.String(length=16), nullable=True))
    op.add_column("adjustments", sa.Column("party", sa.String(length=64), nullable=True))
    op.add_column("corrections", sa.Column("charges_path", sa.String(length=1000), nullable=True))
    op.add_column("corrections", sa.Column("charges_sha256", sa.String(length=64), nullable=True))
    op.add_column("corrections", sa.Column("charges_rows", sa.BigInteger(), nullable=True))
    op.add_column("corrections", sa.Column("charge_usage", sa.JSON(), nullable=True))
    op.add_column("corrections", sa.Column("charge_lines", sa.JSON(), nullable=True))
    op.create_table(
        "late_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("first_start", TS, nullable=False),
        sa.Column("last_start", TS, nullable=False),
        sa.Column("samples", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["intake_batches.id"], name=op.f("fk_late_records_batch_id_intake_batches")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_late_records_partner_id_partners")),
        sa.ForeignKeyConstraint(["cycle_id"], ["billing_cycles.id"],
                                name=op.f("fk_late_records_cycle_id_billing_cycles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_late_records")),
        sa.UniqueConstraint("batch_id", "cycle_id", name=op.f("uq_late_records_batch_id_cycle_id")),
    )
    op.create_index(op.f("ix_late_records_cycle_id"), "late_records", ["cycle_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_late_records_cycle_id"), table_name="late_records")
    op.drop_table("late_records")
    for column in ("charge_lines", "charge_usage", "charges_rows", "charges_sha256", "charges_path"):
        op.drop_column("corrections", column)  # SQLite >= 3.35 drops a column in place
    for column in ("party", "placement", "charge_key", "charge_line_id"):
        op.drop_column("adjustments", column)
