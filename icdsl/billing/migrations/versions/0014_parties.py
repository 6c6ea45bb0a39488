"""Who is who: a partner's legal details and our own company.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

- ``partners.party``: the partner's legal details as declared (address, postcode, city, VAT
  identifier, registration, Peppol endpoint, contacts; JSON, see :mod:`icdsl.parties`), null when
  the rules declare none;
- ``companies``: our company (the seller of our invoices) as the rules declare it with
  ``company CODE "Legal name" { ... }``; one row per code, its changes audited like a partner's.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("partners", sa.Column("party", sa.JSON(), nullable=True))
    op.create_table(
        "companies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("party", sa.JSON(), nullable=False),
        sa.Column("decl_hash", sa.String(64), nullable=False),
        sa.Column("source_file", sa.String(1000), nullable=False),
        sa.Column("span", sa.String(1100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("companies")
    op.drop_column("partners", "party")
