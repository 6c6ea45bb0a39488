"""Revenue assurance: the rated traffic of each cycle by local day and destination.

Revision ID: 0012
Revises: 0011 (set to 0008 on the branch that added it, until the migrations 0009-0011 of the
parallel work are merged: the coordinator re-chains it)
Create Date: 2026-12-07

- ``traffic_daily``: a cycle's rated records, billed units and amounts (exact) by local day, one
  row per direction, service, destination and currency with the days as comma-separated
  vectors from ``first_day`` and their totals, written with the cycle's result (replaced when
  the cycle runs again): the compact history ``icdsl assure`` learns each partner's baseline
  from (median and MAD by weekday) without reading a year of rated Parquet files.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RATE = sa.Numeric(24, 12).with_variant(sa.String(40), "sqlite")


def upgrade() -> None:
    op.create_table(
        "traffic_daily",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("destination", sa.String(length=300), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("amount", RATE, nullable=False),
        sa.Column("daily_records", sa.Text(), nullable=False),
        sa.Column("daily_units", sa.Text(), nullable=False),
        sa.Column("daily_amounts", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["cycle_id"], ["billing_cycles.id"],
                                name=op.f("fk_traffic_daily_cycle_id_billing_cycles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_daily")),
        sa.UniqueConstraint("cycle_id", "direction", "service", "destination", "currency",
                            name=op.f("uq_traffic_daily_cycle_id_direction_service_destination_currency")),
    )
    op.create_index(op.f("ix_traffic_daily_cycle_id"), "traffic_daily", ["cycle_id"])
    op.create_index("ix_traffic_daily_partner_first_day", "traffic_daily", ["partner_code", "first_day"])


def downgrade() -> None:
    op.drop_index("ix_traffic_daily_partner_first_day", table_name="traffic_daily")
    op.drop_index(op.f("ix_traffic_daily_cycle_id"), table_name="traffic_daily")
    op.drop_table("traffic_daily")
