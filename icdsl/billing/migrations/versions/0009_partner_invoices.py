"""Partners' invoices as received: the invoices (and credit notes), their lines, their CDR detail.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

- ``partner_invoices``: one row per imported document, with the file as received kept in the
  data folder (``file_path`` relative to it, ``sha256`` of its bytes, unique: importing the same
  file again is recognized); (partner, kind, number) is unique: the same number with other
  content is refused by the import (a correction comes as a credit note).
- ``partner_invoice_lines``: their lines as they wrote them (exact amounts, their rounding).
- ``partner_invoice_details``: their CDR detail files, read through the record readers into
  Parquet under ``partner-invoices/`` of the data folder: never an intake batch, so no billing
  cycle reads them.
- Triggers (messages start with ``icdsl:``): UPDATE and DELETE of the three tables are refused
  on SQLite and PostgreSQL (and TRUNCATE on PostgreSQL): what a partner sent us is never altered.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from icdsl.billing.types import money_ddl, rate_ddl

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
IMMUTABLE = "icdsl: an imported partner invoice is never altered (import a credit note to correct it)"
TABLES = ("partner_invoices", "partner_invoice_lines", "partner_invoice_details")


def upgrade() -> None:
    op.create_table(
        "partner_invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=200), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", money_ddl(), nullable=False),
        sa.Column("tax_total", money_ddl(), nullable=False),
        sa.Column("lines_total", money_ddl(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("layout", sa.String(length=200), nullable=True),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("file_path", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=True),
        sa.Column("imported_at", TS, nullable=False),
        sa.Column("imported_by", sa.String(length=200), nullable=False),
        sa.CheckConstraint("kind IN ('invoice', 'credit_note')", name=op.f("ck_partner_invoices_kind")),
        sa.CheckConstraint("format IN ('ubl', 'csv')", name=op.f("ck_partner_invoices_format")),
        sa.CheckConstraint("period_end >= period_start", name=op.f("ck_partner_invoices_period")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_partner_invoices_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_invoices")),
        sa.UniqueConstraint("sha256", name=op.f("uq_partner_invoices_sha256")),
        sa.UniqueConstraint("file_path", name=op.f("uq_partner_invoices_file_path")),
        sa.UniqueConstraint("partner_code", "kind", "number", name=op.f("uq_partner_invoices_partner_code_kind_number")),
    )
    op.create_index(op.f("ix_partner_invoices_partner_id"), "partner_invoices", ["partner_id"])
    op.create_table(
        "partner_invoice_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("destination", sa.String(length=300), nullable=True),
        sa.Column("prefix", sa.String(length=64), nullable=True),
        sa.Column("band", sa.String(length=64), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("calls", sa.BigInteger(), nullable=True),
        sa.Column("quantity", rate_ddl(), nullable=True),
        sa.Column("unit", sa.String(length=64), nullable=True),
        sa.Column("rate", rate_ddl(), nullable=True),
        sa.Column("amount", money_ddl(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["partner_invoices.id"],
                                name=op.f("fk_partner_invoice_lines_invoice_id_partner_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_invoice_lines")),
        sa.UniqueConstraint("invoice_id", "number", name=op.f("uq_partner_invoice_lines_invoice_id_number")),
    )
    op.create_table(
        "partner_invoice_details",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("reader", sa.String(length=64), nullable=False),
        sa.Column("layout", sa.String(length=200), nullable=True),
        sa.Column("records_path", sa.String(length=1000), nullable=False),
        sa.Column("records_sha256", sa.String(length=64), nullable=False),
        sa.Column("rejects_path", sa.String(length=1000), nullable=False),
        sa.Column("rejects_sha256", sa.String(length=64), nullable=False),
        sa.Column("read_count", sa.BigInteger(), nullable=False),
        sa.Column("passed_count", sa.BigInteger(), nullable=False),
        sa.Column("rejected_count", sa.BigInteger(), nullable=False),
        sa.Column("duplicate_count", sa.BigInteger(), nullable=False),
        sa.Column("by_reason", sa.JSON(), nullable=True),
        sa.Column("imported_at", TS, nullable=False),
        sa.CheckConstraint("read_count = passed_count + rejected_count + duplicate_count",
                           name=op.f("ck_partner_invoice_details_reconciles")),
        sa.ForeignKeyConstraint(["invoice_id"], ["partner_invoices.id"],
                                name=op.f("fk_partner_invoice_details_invoice_id_partner_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_invoice_details")),
        sa.UniqueConstraint("invoice_id", "sha256", name=op.f("uq_partner_invoice_details_invoice_id_sha256")),
    )
    op.create_index(op.f("ix_partner_invoice_details_invoice_id"), "partner_invoice_details", ["invoice_id"])
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index(op.f("ix_partner_invoice_details_invoice_id"), table_name="partner_invoice_details")
    op.drop_table("partner_invoice_details")
    op.drop_table("partner_invoice_lines")
    op.drop_index(op.f("ix_partner_invoices_partner_id"), table_name="partner_invoices")
    op.drop_table("partner_invoices")


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            for o in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER icdsl_{table}_no_{o.lower()} BEFORE {o} ON {table} FOR EACH ROW "
                           f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END")
        return
    op.execute(f"""
CREATE FUNCTION icdsl_refuse_partner_invoice_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{IMMUTABLE}' USING ERRCODE = 'integrity_constraint_violation',
        DETAIL = format('%s on %s', TG_OP, TG_TABLE_NAME);
END
$$""")
    for table in TABLES:
        op.execute(f"CREATE TRIGGER icdsl_{table}_immutable BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW "
                   "EXECUTE FUNCTION icdsl_refuse_partner_invoice_change()")
        op.execute(f"CREATE TRIGGER icdsl_{table}_no_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
                   "EXECUTE FUNCTION icdsl_refuse_partner_invoice_change()")


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            for o in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_no_{o}")
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_immutable ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS icdsl_refuse_partner_invoice_change()")
