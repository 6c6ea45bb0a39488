"""Charges beyond traffic: charge lines and their applications (once and only once), the
per-record charges file of a cycle, revenue-share statements, the usage a cycle measured.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-01

- ``charge_lines``: every line a charge produced in a cycle (surcharges, fees, tiers,
  discounts, commitments, revenue shares, corrections of them): the charge line as JSON (its
  whole audit trail), its key (``key_hash`` UNIQUE), where it went (an invoice line, the
  settlement statement, a revenue-share statement);
- ``charge_applications``: each application a line bills for the first time (``key_hash``
  UNIQUE): an application can be billed once in the whole store, whatever reruns happen;
- ``record_charge_files``: the Parquet file of a cycle's per-record charges (one row per
  record and surcharge that applies);
- ``share_statements``: what each party of a revenue share is owed for a cycle, per currency;
- ``billing_cycles.charge_usage``: the usage and event units a cycle measured (the history of
  period-to-date tiers and contract-year commitments).

Rows of a finalized cycle are immutable (triggers, as in 0001): charge lines, applications and
the record charges file refuse INSERT, UPDATE and DELETE once their cycle is finalized; a
finalized share statement refuses UPDATE and DELETE.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
MONEY = sa.Numeric(24, 8).with_variant(sa.String(40), "sqlite")

FINALIZED_CHARGE = "icdsl: the row belongs to a finalized billing cycle: it cannot be added, changed or deleted"
FINALIZED_SHARE = "icdsl: revenue-share statement is finalized: it cannot be changed or deleted"
CYCLE_TABLES = ("charge_lines", "charge_applications", "record_charge_files")


def upgrade() -> None:
    op.create_table(
        "charge_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("charge_name", sa.String(length=300), nullable=False),
        sa.Column("agreement", sa.String(length=300), nullable=False),
        sa.Column("agreement_version", sa.Integer(), nullable=False),
        sa.Column("agreement_hash", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("placement", sa.String(length=16), nullable=False),
        sa.Column("invoice_line_id", sa.Integer(), nullable=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("corrects_hash", sa.String(length=64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["cycle_id"], ["billing_cycles.id"], name=op.f("fk_charge_lines_cycle_id_billing_cycles")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_charge_lines_partner_id_partners")),
        sa.ForeignKeyConstraint(["invoice_line_id"], ["invoice_lines.id"],
                                name=op.f("fk_charge_lines_invoice_line_id_invoice_lines")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charge_lines")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_charge_lines_key_hash")),
        sa.CheckConstraint("placement IN ('invoice', 'statement', 'share')", name=op.f("ck_charge_lines_placement")),
    )
    op.create_index(op.f("ix_charge_lines_cycle_id"), "charge_lines", ["cycle_id"])
    op.create_index(op.f("ix_charge_lines_partner_id"), "charge_lines", ["partner_id"])
    op.create_index(op.f("ix_charge_lines_invoice_line_id"), "charge_lines", ["invoice_line_id"])

    op.create_table(
        "charge_applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("charge_line_id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["charge_line_id"], ["charge_lines.id"],
                                name=op.f("fk_charge_applications_charge_line_id_charge_lines")),
        sa.ForeignKeyConstraint(["cycle_id"], ["billing_cycles.id"],
                                name=op.f("fk_charge_applications_cycle_id_billing_cycles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charge_applications")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_charge_applications_key_hash")),
    )
    op.create_index(op.f("ix_charge_applications_charge_line_id"), "charge_applications", ["charge_line_id"])
    op.create_index(op.f("ix_charge_applications_cycle_id"), "charge_applications", ["cycle_id"])

    op.create_table(
        "record_charge_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("amount_totals", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["cycle_id"], ["billing_cycles.id"],
                                name=op.f("fk_record_charge_files_cycle_id_billing_cycles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_charge_files")),
        sa.UniqueConstraint("path", name=op.f("uq_record_charge_files_path")),
        sa.UniqueConstraint("cycle_id", name=op.f("uq_record_charge_files_cycle_id")),
    )

    op.create_table(
        "share_statements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("party", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("total", MONEY, nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finalized_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["cycle_id"], ["billing_cycles.id"],
                                name=op.f("fk_share_statements_cycle_id_billing_cycles")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_share_statements_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_statements")),
        sa.UniqueConstraint("number", name=op.f("uq_share_statements_number")),
        sa.UniqueConstraint("cycle_id", "party", "currency", name=op.f("uq_share_statements_cycle_id_party_currency")),
        sa.CheckConstraint("status IN ('draft', 'finalized', 'void')", name=op.f("ck_share_statements_status")),
    )
    op.create_index(op.f("ix_share_statements_cycle_id"), "share_statements", ["cycle_id"])

    op.add_column("billing_cycles", sa.Column("charge_usage", sa.JSON(), nullable=True))
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_column("billing_cycles", "charge_usage")  # SQLite >= 3.35 drops a column in place
    op.drop_index(op.f("ix_share_statements_cycle_id"), table_name="share_statements")
    op.drop_table("share_statements")
    op.drop_table("record_charge_files")
    op.drop_index(op.f("ix_charge_applications_cycle_id"), table_name="charge_applications")
    op.drop_index(op.f("ix_charge_applications_charge_line_id"), table_name="charge_applications")
    op.drop_table("charge_applications")
    op.drop_index(op.f("ix_charge_lines_invoice_line_id"), table_name="charge_lines")
    op.drop_index(op.f("ix_charge_lines_partner_id"), table_name="charge_lines")
    op.drop_index(op.f("ix_charge_lines_cycle_id"), table_name="charge_lines")
    op.drop_table("charge_lines")


_PG_FUNCTION = f"""
CREATE FUNCTION icdsl_refuse_finalized_cycle_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP IN ('UPDATE', 'DELETE') AND EXISTS (
            SELECT 1 FROM billing_cycles WHERE id = OLD.cycle_id AND status = 'finalized'))
       OR (TG_OP IN ('INSERT', 'UPDATE') AND EXISTS (
            SELECT 1 FROM billing_cycles WHERE id = NEW.cycle_id AND status = 'finalized')) THEN
        RAISE EXCEPTION '{FINALIZED_CHARGE}' USING ERRCODE = 'integrity_constraint_violation',
            DETAIL = format('%s on %s', TG_OP, TG_TABLE_NAME);
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END
$$"""


def _create_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in CYCLE_TABLES:
            for o, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD")):
                op.execute(f"CREATE TRIGGER icdsl_{table}_no_{o.lower()} BEFORE {o} ON {table} FOR EACH ROW "
                           f"WHEN (SELECT status FROM billing_cycles WHERE id = {row}.cycle_id) = 'finalized' "
                           f"BEGIN SELECT RAISE(ABORT, '{FINALIZED_CHARGE}'); END")
        for o in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER icdsl_share_statements_no_{o.lower()} BEFORE {o} ON share_statements "
                       f"FOR EACH ROW WHEN OLD.status = 'finalized' BEGIN SELECT RAISE(ABORT, '{FINALIZED_SHARE}'); END")
    else:
        op.execute(_PG_FUNCTION)
        for table in CYCLE_TABLES:
            op.execute(f"CREATE TRIGGER icdsl_{table}_finalized BEFORE INSERT OR UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION icdsl_refuse_finalized_cycle_row()")
        op.execute("CREATE TRIGGER icdsl_share_statements_finalized BEFORE UPDATE OR DELETE ON share_statements "
                   f"FOR EACH ROW WHEN (OLD.status = 'finalized') EXECUTE FUNCTION icdsl_refuse('{FINALIZED_SHARE}')")
        for table in (*CYCLE_TABLES, "share_statements"):
            op.execute(f"CREATE TRIGGER icdsl_{table}_no_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION icdsl_refuse('icdsl: {table} cannot be truncated')")


def _drop_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in CYCLE_TABLES:
            for o in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_no_{o}")
        for o in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS icdsl_share_statements_no_{o}")
    else:
        for table in CYCLE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_finalized ON {table}")
        op.execute("DROP TRIGGER IF EXISTS icdsl_share_statements_finalized ON share_statements")
        for table in (*CYCLE_TABLES, "share_statements"):
            op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS icdsl_refuse_finalized_cycle_row()")
