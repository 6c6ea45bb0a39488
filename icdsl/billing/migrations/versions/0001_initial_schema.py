"""Initial schema of the billing store, with the immutability triggers.

Revision ID: 0001
Revises:
Create Date: 2026-03-01

Types are spelled out here (not imported from the models) so that this migration keeps meaning
what it meant: money is NUMERIC(24, 8) on PostgreSQL and exact decimal text on SQLite (whose
NUMERIC affinity would turn it into a float), rates NUMERIC(24, 12), timestamps timestamptz
(UTC text on SQLite).

The triggers make the database itself refuse changes to what must never change: a finalized
invoice and its lines, a finalized settlement statement, a finalized cycle and the data files it
references, agreement versions, intake batches, and the cycle event and audit logs. Both back
ends raise an integrity error whose message starts with ``icdsl:``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
MONEY = sa.Numeric(24, 8).with_variant(sa.String(40), "sqlite")
RATE = sa.Numeric(24, 12).with_variant(sa.String(40), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"])

    op.create_table(
        "fx_rates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("base", sa.String(length=8), nullable=False),
        sa.Column("quote", sa.String(length=8), nullable=False),
        sa.Column("rate", RATE, nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("origin", sa.String(length=1100), nullable=False),
        sa.Column("loaded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fx_rates")),
        sa.UniqueConstraint(
            "source",
            "base",
            "quote",
            "effective_from",
            name=op.f("uq_fx_rates_source_base_quote_effective_from"),
        ),
    )
    op.create_table(
        "intake_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("file_path", sa.String(length=2000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("layout", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("read_count", sa.BigInteger(), nullable=False),
        sa.Column("passed_count", sa.BigInteger(), nullable=False),
        sa.Column("rejected_count", sa.BigInteger(), nullable=False),
        sa.Column("duplicate_count", sa.BigInteger(), nullable=False),
        sa.Column("min_start", TS, nullable=True),
        sa.Column("max_start", TS, nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('complete')", name=op.f("ck_intake_batches_status")),
        sa.CheckConstraint(
            "read_count = passed_count + rejected_count + duplicate_count",
            name=op.f("ck_intake_batches_reconciles"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_batches")),
        sa.UniqueConstraint("sha256", name=op.f("uq_intake_batches_sha256")),
    )
    op.create_table(
        "number_sequences",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_number_sequences")),
    )
    op.create_table(
        "partners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("billing", sa.String(length=16), nullable=False),
        sa.Column("due_days", sa.Integer(), nullable=False),
        sa.Column("tax_kind", sa.String(length=32), nullable=False),
        sa.Column("tax_rate", RATE, nullable=False),
        sa.Column("country", sa.String(length=8), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("decl_hash", sa.String(length=64), nullable=False),
        sa.Column("source_file", sa.String(length=1000), nullable=False),
        sa.Column("span", sa.String(length=1100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partners")),
        sa.UniqueConstraint("code", name=op.f("uq_partners_code")),
    )
    op.create_table(
        "source_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("loaded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_files")),
        sa.UniqueConstraint("path", "sha256", name=op.f("uq_source_files_path_sha256")),
    )
    op.create_index(op.f("ix_source_files_sha256"), "source_files", ["sha256"])

    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_store_meta")),
    )
    op.create_table(
        "agreement_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=True),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("source_file", sa.String(length=1000), nullable=False),
        sa.Column("source_file_hash", sa.String(length=64), nullable=False),
        sa.Column("span", sa.String(length=1100), nullable=False),
        sa.Column("source_text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("decks", sa.JSON(), nullable=False),
        sa.Column("amends_id", sa.Integer(), nullable=True),
        sa.Column("loaded_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["amends_id"],
            ["agreement_versions.id"],
            name=op.f("fk_agreement_versions_amends_id_agreement_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_agreement_versions_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreement_versions")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_agreement_versions_content_hash")),
        sa.UniqueConstraint(
            "name", "version", "revision", name=op.f("uq_agreement_versions_name_version_revision")
        ),
    )
    op.create_index(op.f("ix_agreement_versions_partner_code"), "agreement_versions", ["partner_code"])

    op.create_table(
        "billing_cycles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("frequency", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("local_start", sa.Date(), nullable=False),
        sa.Column("local_end", sa.Date(), nullable=False),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("period_end", TS, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("rated_at", TS, nullable=True),
        sa.Column("validated_at", TS, nullable=True),
        sa.Column("invoiced_at", TS, nullable=True),
        sa.Column("finalized_at", TS, nullable=True),
        sa.Column("plan_hash", sa.String(length=64), nullable=True),
        sa.Column("records_in", sa.BigInteger(), nullable=True),
        sa.Column("rated_count", sa.BigInteger(), nullable=True),
        sa.Column("rejected_count", sa.BigInteger(), nullable=True),
        sa.Column("totals", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "frequency IN ('monthly', 'weekly', 'quarterly', 'adhoc')",
            name=op.f("ck_billing_cycles_frequency"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'rated', 'validated', 'invoiced', 'finalized')",
            name=op.f("ck_billing_cycles_status"),
        ),
        sa.CheckConstraint("period_start < period_end", name=op.f("ck_billing_cycles_period")),
        sa.CheckConstraint(
            "records_in IS NULL OR records_in = rated_count + rejected_count",
            name=op.f("ck_billing_cycles_reconciles"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_billing_cycles_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_cycles")),
        sa.UniqueConstraint(
            "partner_id",
            "period_start",
            "period_end",
            name=op.f("uq_billing_cycles_partner_id_period_start_period_end"),
        ),
    )
    op.create_index(op.f("ix_billing_cycles_partner_code"), "billing_cycles", ["partner_code"])

    op.create_table(
        "intake_partner_stats",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("partner", sa.String(length=64), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("min_start", TS, nullable=False),
        sa.Column("max_start", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["intake_batches.id"], name=op.f("fk_intake_partner_stats_batch_id_intake_batches")
        ),
        sa.PrimaryKeyConstraint("batch_id", "partner", name=op.f("pk_intake_partner_stats")),
    )
    op.create_index(op.f("ix_intake_partner_stats_partner"), "intake_partner_stats", ["partner"])

    op.create_table(
        "intake_reject_counts",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["intake_batches.id"], name=op.f("fk_intake_reject_counts_batch_id_intake_batches")
        ),
        sa.PrimaryKeyConstraint("batch_id", "reason", name=op.f("pk_intake_reject_counts")),
    )
    op.create_table(
        "inventory_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("activation_date", sa.Date(), nullable=False),
        sa.Column("termination_date", sa.Date(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("superseded_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_inventory_items_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["superseded_by_id"],
            ["inventory_items.id"],
            name=op.f("fk_inventory_items_superseded_by_id_inventory_items"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_items")),
        sa.UniqueConstraint(
            "partner_id",
            "kind",
            "reference",
            "version",
            name=op.f("uq_inventory_items_partner_id_kind_reference_version"),
        ),
    )
    op.create_index(op.f("ix_inventory_items_partner_id"), "inventory_items", ["partner_id"])

    op.create_table(
        "cycle_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["billing_cycles.id"], name=op.f("fk_cycle_events_cycle_id_billing_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycle_events")),
    )
    op.create_index(op.f("ix_cycle_events_cycle_id"), "cycle_events", ["cycle_id"])

    op.create_table(
        "cycle_inputs",
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["intake_batches.id"], name=op.f("fk_cycle_inputs_batch_id_intake_batches")
        ),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["billing_cycles.id"], name=op.f("fk_cycle_inputs_cycle_id_billing_cycles")
        ),
        sa.PrimaryKeyConstraint("cycle_id", "batch_id", name=op.f("pk_cycle_inputs")),
    )
    op.create_table(
        "data_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("amount_totals", sa.JSON(), nullable=True),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("partner", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind IN ('intake_records', 'intake_rejects', 'rated', 'rating_rejects')",
            name=op.f("ck_data_files_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["intake_batches.id"], name=op.f("fk_data_files_batch_id_intake_batches")
        ),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["billing_cycles.id"], name=op.f("fk_data_files_cycle_id_billing_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_files")),
        sa.UniqueConstraint("path", name=op.f("uq_data_files_path")),
    )
    op.create_index(op.f("ix_data_files_batch_id"), "data_files", ["batch_id"])
    op.create_index(op.f("ix_data_files_cycle_id"), "data_files", ["cycle_id"])

    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("partner_name", sa.String(length=300), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("subtotal", MONEY, nullable=False),
        sa.Column("tax_kind", sa.String(length=32), nullable=False),
        sa.Column("tax_rate", RATE, nullable=False),
        sa.Column("tax_amount", MONEY, nullable=True),
        sa.Column("total", MONEY, nullable=True),
        sa.Column("fx_rate_id", sa.Integer(), nullable=True),
        sa.Column("corrects_invoice_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finalized_at", TS, nullable=True),
        sa.CheckConstraint("status IN ('draft', 'finalized', 'void')", name=op.f("ck_invoices_status")),
        sa.ForeignKeyConstraint(
            ["corrects_invoice_id"], ["invoices.id"], name=op.f("fk_invoices_corrects_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["billing_cycles.id"], name=op.f("fk_invoices_cycle_id_billing_cycles")
        ),
        sa.ForeignKeyConstraint(
            ["fx_rate_id"], ["fx_rates.id"], name=op.f("fk_invoices_fx_rate_id_fx_rates")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_invoices_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
    )
    op.create_index(op.f("ix_invoices_cycle_id"), "invoices", ["cycle_id"])
    op.create_index(op.f("ix_invoices_partner_id"), "invoices", ["partner_id"])

    op.create_table(
        "settlement_statements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("receivable", MONEY, nullable=False),
        sa.Column("payable", MONEY, nullable=False),
        sa.Column("net", MONEY, nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finalized_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'finalized', 'void')", name=op.f("ck_settlement_statements_status")
        ),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["billing_cycles.id"], name=op.f("fk_settlement_statements_cycle_id_billing_cycles")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_settlement_statements_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_statements")),
        sa.UniqueConstraint("number", name=op.f("uq_settlement_statements_number")),
    )
    op.create_index(op.f("ix_settlement_statements_partner_id"), "settlement_statements", ["partner_id"])

    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("destination", sa.String(length=300), nullable=True),
        sa.Column("prefix", sa.String(length=64), nullable=True),
        sa.Column("band", sa.String(length=64), nullable=True),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("rate", RATE, nullable=True),
        sa.Column("rate_unit", sa.String(length=32), nullable=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("agreement_version_id", sa.Integer(), nullable=True),
        sa.Column("agreement_hash", sa.String(length=64), nullable=True),
        sa.Column("rule", sa.String(length=1100), nullable=True),
        sa.Column("data_file_id", sa.Integer(), nullable=True),
        sa.Column("line_key", sa.Integer(), nullable=True),
        sa.Column("record_count", sa.BigInteger(), nullable=True),
        sa.Column("first_start", TS, nullable=True),
        sa.Column("last_start", TS, nullable=True),
        sa.Column("corrects_line_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind IN ('traffic', 'recurring', 'one_time', 'event', 'surcharge', 'discount', 'tiered', 'commitment', 'adjustment', 'revenue_share', 'fx', 'tax', 'other')",
            name=op.f("ck_invoice_lines_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["agreement_version_id"],
            ["agreement_versions.id"],
            name=op.f("fk_invoice_lines_agreement_version_id_agreement_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["corrects_line_id"],
            ["invoice_lines.id"],
            name=op.f("fk_invoice_lines_corrects_line_id_invoice_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["data_file_id"], ["data_files.id"], name=op.f("fk_invoice_lines_data_file_id_data_files")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
        sa.UniqueConstraint("invoice_id", "line_no", name=op.f("uq_invoice_lines_invoice_id_line_no")),
    )
    op.create_index(op.f("ix_invoice_lines_invoice_id"), "invoice_lines", ["invoice_id"])

    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index(op.f("ix_invoice_lines_invoice_id"), table_name="invoice_lines")

    op.drop_table("invoice_lines")
    op.drop_index(op.f("ix_settlement_statements_partner_id"), table_name="settlement_statements")

    op.drop_table("settlement_statements")
    op.drop_index(op.f("ix_invoices_partner_id"), table_name="invoices")
    op.drop_index(op.f("ix_invoices_cycle_id"), table_name="invoices")

    op.drop_table("invoices")
    op.drop_index(op.f("ix_data_files_cycle_id"), table_name="data_files")
    op.drop_index(op.f("ix_data_files_batch_id"), table_name="data_files")

    op.drop_table("data_files")
    op.drop_table("cycle_inputs")
    op.drop_index(op.f("ix_cycle_events_cycle_id"), table_name="cycle_events")

    op.drop_table("cycle_events")
    op.drop_index(op.f("ix_inventory_items_partner_id"), table_name="inventory_items")

    op.drop_table("inventory_items")
    op.drop_table("intake_reject_counts")
    op.drop_index(op.f("ix_intake_partner_stats_partner"), table_name="intake_partner_stats")

    op.drop_table("intake_partner_stats")
    op.drop_index(op.f("ix_billing_cycles_partner_code"), table_name="billing_cycles")

    op.drop_table("billing_cycles")
    op.drop_index(op.f("ix_agreement_versions_partner_code"), table_name="agreement_versions")

    op.drop_table("agreement_versions")
    op.drop_table("store_meta")
    op.drop_index(op.f("ix_source_files_sha256"), table_name="source_files")

    op.drop_table("source_files")
    op.drop_table("partners")
    op.drop_table("number_sequences")
    op.drop_table("intake_batches")
    op.drop_table("fx_rates")
    op.drop_index(op.f("ix_audit_log_action"), table_name="audit_log")

    op.drop_table("audit_log")


# --------------------------------------------------------------------------- immutability triggers

FINALIZED_INVOICE = "icdsl: invoice is finalized: it cannot be changed or deleted (issue a credit note)"
FINALIZED_LINE = "icdsl: the line belongs to a finalized invoice: it cannot be changed, added or deleted"
FINALIZED_CYCLE = "icdsl: billing cycle is finalized: it cannot be changed or deleted"
FINALIZED_FILE = "icdsl: data file of a finalized billing cycle: it cannot be changed or deleted"
FINALIZED_STATEMENT = "icdsl: settlement statement is finalized: it cannot be changed or deleted"
IMMUTABLE_AGREEMENT = "icdsl: agreement versions are immutable once loaded"
IMMUTABLE_BATCH = "icdsl: intake batches are immutable once recorded"
APPEND_ONLY = "icdsl: the log is append-only"

# (table, operations, row condition (SQLite, may use sub-queries; None: always), message)
_SQLITE_RULES = [
    ("invoices", ("UPDATE", "DELETE"), "OLD.status = 'finalized'", FINALIZED_INVOICE),
    (
        "invoice_lines",
        ("INSERT",),
        "(SELECT status FROM invoices WHERE id = NEW.invoice_id) = 'finalized'",
        FINALIZED_LINE,
    ),
    (
        "invoice_lines",
        ("UPDATE",),
        "(SELECT status FROM invoices WHERE id = OLD.invoice_id) = 'finalized' "
        "OR (SELECT status FROM invoices WHERE id = NEW.invoice_id) = 'finalized'",
        FINALIZED_LINE,
    ),
    (
        "invoice_lines",
        ("DELETE",),
        "(SELECT status FROM invoices WHERE id = OLD.invoice_id) = 'finalized'",
        FINALIZED_LINE,
    ),
    ("settlement_statements", ("UPDATE", "DELETE"), "OLD.status = 'finalized'", FINALIZED_STATEMENT),
    ("billing_cycles", ("UPDATE", "DELETE"), "OLD.status = 'finalized'", FINALIZED_CYCLE),
    (
        "data_files",
        ("UPDATE", "DELETE"),
        "(SELECT status FROM billing_cycles WHERE id = OLD.cycle_id) = 'finalized'",
        FINALIZED_FILE,
    ),
    ("agreement_versions", ("UPDATE", "DELETE"), None, IMMUTABLE_AGREEMENT),
    ("intake_batches", ("UPDATE",), None, IMMUTABLE_BATCH),
    ("cycle_events", ("UPDATE", "DELETE"), None, APPEND_ONLY),
    ("audit_log", ("UPDATE", "DELETE"), None, APPEND_ONLY),
]

# PostgreSQL: one function raising the message given as the trigger's argument, and two that
# look at the parent row (a WHEN clause cannot hold a sub-query there).
_PG_FUNCTIONS = [
    """
CREATE FUNCTION icdsl_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation',
        DETAIL = format('%s on %s', TG_OP, TG_TABLE_NAME);
END
$$""",
    f"""
CREATE FUNCTION icdsl_refuse_finalized_line() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP IN ('UPDATE', 'DELETE') AND EXISTS (
            SELECT 1 FROM invoices WHERE id = OLD.invoice_id AND status = 'finalized'))
       OR (TG_OP IN ('INSERT', 'UPDATE') AND EXISTS (
            SELECT 1 FROM invoices WHERE id = NEW.invoice_id AND status = 'finalized')) THEN
        RAISE EXCEPTION '{FINALIZED_LINE}' USING ERRCODE = 'integrity_constraint_violation',
            DETAIL = format('%s on %s', TG_OP, TG_TABLE_NAME);
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END
$$""",
    f"""
CREATE FUNCTION icdsl_refuse_finalized_file() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM billing_cycles WHERE id = OLD.cycle_id AND status = 'finalized') THEN
        RAISE EXCEPTION '{FINALIZED_FILE}' USING ERRCODE = 'integrity_constraint_violation',
            DETAIL = format('%s on %s', TG_OP, TG_TABLE_NAME);
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END
$$""",
]

# (trigger name, table, operations, WHEN condition or None, function call)
_PG_TRIGGERS = [
    (
        "icdsl_invoices_finalized",
        "invoices",
        "UPDATE OR DELETE",
        "OLD.status = 'finalized'",
        f"icdsl_refuse('{FINALIZED_INVOICE}')",
    ),
    (
        "icdsl_invoice_lines_finalized",
        "invoice_lines",
        "INSERT OR UPDATE OR DELETE",
        None,
        "icdsl_refuse_finalized_line()",
    ),
    (
        "icdsl_settlements_finalized",
        "settlement_statements",
        "UPDATE OR DELETE",
        "OLD.status = 'finalized'",
        f"icdsl_refuse('{FINALIZED_STATEMENT}')",
    ),
    (
        "icdsl_cycles_finalized",
        "billing_cycles",
        "UPDATE OR DELETE",
        "OLD.status = 'finalized'",
        f"icdsl_refuse('{FINALIZED_CYCLE}')",
    ),
    (
        "icdsl_data_files_finalized",
        "data_files",
        "UPDATE OR DELETE",
        "OLD.cycle_id IS NOT NULL",
        "icdsl_refuse_finalized_file()",
    ),
    (
        "icdsl_agreement_versions_immutable",
        "agreement_versions",
        "UPDATE OR DELETE",
        None,
        f"icdsl_refuse('{IMMUTABLE_AGREEMENT}')",
    ),
    (
        "icdsl_intake_batches_immutable",
        "intake_batches",
        "UPDATE",
        None,
        f"icdsl_refuse('{IMMUTABLE_BATCH}')",
    ),
    (
        "icdsl_cycle_events_append_only",
        "cycle_events",
        "UPDATE OR DELETE",
        None,
        f"icdsl_refuse('{APPEND_ONLY}')",
    ),
    ("icdsl_audit_log_append_only", "audit_log", "UPDATE OR DELETE", None, f"icdsl_refuse('{APPEND_ONLY}')"),
]
# TRUNCATE skips row triggers on PostgreSQL: refuse it on the tables that hold history.
_PG_NO_TRUNCATE = [
    "invoices",
    "invoice_lines",
    "settlement_statements",
    "billing_cycles",
    "data_files",
    "agreement_versions",
    "intake_batches",
    "cycle_events",
    "audit_log",
]


def _sqlite_name(table: str, ops: tuple[str, ...]) -> str:
    return f"icdsl_{table}_no_{'_'.join(o.lower() for o in ops)}"


def _create_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table, ops, when, message in _SQLITE_RULES:
            for o in ops:
                cond = f" WHEN {when}" if when else ""
                op.execute(
                    f"CREATE TRIGGER {_sqlite_name(table, (o,))} BEFORE {o} ON {table} FOR EACH ROW{cond} "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )
    elif dialect == "postgresql":
        for fn in _PG_FUNCTIONS:
            op.execute(fn)
        for name, table, ops, when, call in _PG_TRIGGERS:
            cond = f" WHEN ({when})" if when else ""
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {ops} ON {table} FOR EACH ROW{cond} EXECUTE FUNCTION {call}"
            )
        for table in _PG_NO_TRUNCATE:
            op.execute(
                f"CREATE TRIGGER icdsl_{table}_no_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION icdsl_refuse('icdsl: {table} cannot be truncated')"
            )
    else:  # pragma: no cover - the store supports SQLite and PostgreSQL only
        raise RuntimeError(f"icdsl's billing store supports SQLite and PostgreSQL, not {dialect}")


def _drop_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table, ops, _when, _message in _SQLITE_RULES:
            for o in ops:
                op.execute(f"DROP TRIGGER IF EXISTS {_sqlite_name(table, (o,))}")
    elif dialect == "postgresql":
        for name, table, *_ in _PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for table in _PG_NO_TRUNCATE:
            op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_no_truncate ON {table}")
        for fn in ("icdsl_refuse", "icdsl_refuse_finalized_line", "icdsl_refuse_finalized_file"):
            op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
