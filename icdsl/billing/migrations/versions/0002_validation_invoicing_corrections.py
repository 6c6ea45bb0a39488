"""Validation findings, daily intake counts, invoice arithmetic (FX, rounding, tax notes),
corrections of finalized cycles and their adjustments.

Revision ID: 0002
Revises: 0001
Create Date: 2026-04-01

- ``intake_daily_counts``: passed records by batch, partner and local day (the traffic profile
  pre-invoice validation compares a cycle's days with);
- ``validation_findings``: what validation found in each run of a cycle (append-only);
- ``corrections`` and ``adjustments``: ``rerate`` of a finalized cycle and the lines it adds to
  the partner's next cycle (immutable);
- ``invoice_lines``: the exact source amount and currency, the FX rate and the rounding that
  made the line's amount, its dimension key, the adjustment it bills;
- ``invoices``: the taxable amount and the tax note (reverse charge, exemption);
- ``billing_cycles``: the dimensions its lines were grouped by.

Columns are only added (nullable), so existing rows keep their meaning. Types are spelled out,
as in 0001.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
MONEY = sa.Numeric(24, 8).with_variant(sa.String(40), "sqlite")
RATE = sa.Numeric(24, 12).with_variant(sa.String(40), "sqlite")

APPEND_ONLY = "icdsl: validation findings are append-only"
IMMUTABLE_CORRECTION = "icdsl: corrections and adjustments are immutable once recorded"

# (table, operations, message)
_RULES = [
    ("validation_findings", ("UPDATE", "DELETE"), APPEND_ONLY),
    ("corrections", ("UPDATE", "DELETE"), IMMUTABLE_CORRECTION),
    ("adjustments", ("UPDATE", "DELETE"), IMMUTABLE_CORRECTION),
]


def upgrade() -> None:
    op.create_table(
        "intake_daily_counts",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("partner", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["intake_batches.id"], name=op.f("fk_intake_daily_counts_batch_id_intake_batches")
        ),
        sa.PrimaryKeyConstraint("batch_id", "partner", "day", name=op.f("pk_intake_daily_counts")),
    )
    op.create_index("ix_intake_daily_counts_partner_day", "intake_daily_counts", ["partner", "day"])

    op.create_table(
        "validation_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("validator", sa.String(length=100), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=True),
        sa.Column("samples", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "severity IN ('error', 'warning', 'info')", name=op.f("ck_validation_findings_severity")
        ),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["billing_cycles.id"], name=op.f("fk_validation_findings_cycle_id_billing_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_findings")),
    )
    op.create_index(op.f("ix_validation_findings_cycle_id"), "validation_findings", ["cycle_id"])

    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("local_from", sa.Date(), nullable=False),
        sa.Column("local_to", sa.Date(), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=True),
        sa.Column("plan_hash", sa.String(length=64), nullable=False),
        sa.Column("records_in", sa.BigInteger(), nullable=False),
        sa.Column("rated_count", sa.BigInteger(), nullable=False),
        sa.Column("rejected_count", sa.BigInteger(), nullable=False),
        sa.Column("file_path", sa.String(length=1000), nullable=True),
        sa.Column("file_sha256", sa.String(length=64), nullable=True),
        sa.Column("file_rows", sa.BigInteger(), nullable=True),
        sa.Column("file_bytes", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["billing_cycles.id"], name=op.f("fk_corrections_cycle_id_billing_cycles")
        ),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_corrections_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
        sa.UniqueConstraint("file_path", name=op.f("uq_corrections_file_path")),
    )
    op.create_index(op.f("ix_corrections_cycle_id"), "corrections", ["cycle_id"])
    op.create_index(op.f("ix_corrections_partner_id"), "corrections", ["partner_id"])

    op.create_table(
        "adjustments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("correction_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("source_cycle_id", sa.Integer(), nullable=False),
        sa.Column("target_cycle_id", sa.Integer(), nullable=False),
        sa.Column("corrects_line_id", sa.Integer(), nullable=True),
        sa.Column("netted", sa.Boolean(), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=300), nullable=True),
        sa.Column("band", sa.String(length=64), nullable=True),
        sa.Column("prefix", sa.String(length=64), nullable=True),
        sa.Column("group_key", sa.String(length=2000), nullable=False),
        sa.Column("line_key", sa.Integer(), nullable=True),
        sa.Column("agreement_version_id", sa.Integer(), nullable=True),
        sa.Column("agreement_hash", sa.String(length=64), nullable=True),
        sa.Column("rule", sa.String(length=1100), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("source_currency", sa.String(length=8), nullable=False),
        sa.Column("old_source", MONEY, nullable=False),
        sa.Column("new_source", MONEY, nullable=False),
        sa.Column("source_delta", MONEY, nullable=False),
        sa.Column("old_units", sa.BigInteger(), nullable=False),
        sa.Column("new_units", sa.BigInteger(), nullable=False),
        sa.Column("old_count", sa.BigInteger(), nullable=False),
        sa.Column("new_count", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("fx_rate", RATE, nullable=True),
        sa.Column("fx_rate_id", sa.Integer(), nullable=True),
        sa.Column("rounding", sa.String(length=32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["agreement_version_id"],
            ["agreement_versions.id"],
            name=op.f("fk_adjustments_agreement_version_id_agreement_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["correction_id"], ["corrections.id"], name=op.f("fk_adjustments_correction_id_corrections")
        ),
        sa.ForeignKeyConstraint(
            ["corrects_line_id"], ["invoice_lines.id"], name=op.f("fk_adjustments_corrects_line_id_invoice_lines")
        ),
        sa.ForeignKeyConstraint(["fx_rate_id"], ["fx_rates.id"], name=op.f("fk_adjustments_fx_rate_id_fx_rates")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_adjustments_partner_id_partners")),
        sa.ForeignKeyConstraint(
            ["source_cycle_id"], ["billing_cycles.id"], name=op.f("fk_adjustments_source_cycle_id_billing_cycles")
        ),
        sa.ForeignKeyConstraint(
            ["target_cycle_id"], ["billing_cycles.id"], name=op.f("fk_adjustments_target_cycle_id_billing_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adjustments")),
    )
    op.create_index(op.f("ix_adjustments_correction_id"), "adjustments", ["correction_id"])
    op.create_index(op.f("ix_adjustments_target_cycle_id"), "adjustments", ["target_cycle_id"])

    sqlite = op.get_bind().dialect.name == "sqlite"
    # SQLite adds a column with a REFERENCES clause in place (ALTER TABLE ... ADD COLUMN); the
    # constraint is named on PostgreSQL only (SQLite does not name inline references).
    line_columns = [
        sa.Column("source_amount", MONEY, nullable=True),
        sa.Column("source_currency", sa.String(length=8), nullable=True),
        sa.Column("fx_rate", RATE, nullable=True),
        sa.Column("fx_rate_id", sa.Integer(), sa.ForeignKey("fx_rates.id"), nullable=True),
        sa.Column("rounding", sa.String(length=32), nullable=True),
        sa.Column("group_key", sa.String(length=2000), nullable=True),
        sa.Column("adjustment_id", sa.Integer(), sa.ForeignKey("adjustments.id"), nullable=True),
    ]
    for col in line_columns:
        fk = next(iter(col.foreign_keys), None)
        if fk is None:
            op.add_column("invoice_lines", col)
            continue
        target = fk.target_fullname.split(".")[0]
        if sqlite:
            op.execute(f"ALTER TABLE invoice_lines ADD COLUMN {col.name} INTEGER REFERENCES {target} (id)")
        else:
            op.add_column("invoice_lines", sa.Column(col.name, sa.Integer(), nullable=True))
            op.create_foreign_key(op.f(f"fk_invoice_lines_{col.name}_{target}"), "invoice_lines", target,
                                  [col.name], ["id"])
    op.add_column("invoices", sa.Column("taxable_amount", MONEY, nullable=True))
    op.add_column("invoices", sa.Column("tax_note", sa.String(length=300), nullable=True))
    op.add_column("billing_cycles", sa.Column("line_dims", sa.JSON(), nullable=True))

    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # Rebuilding a table on SQLite (batch mode) breaks triggers that name it and drops its
        # own: take 0001's triggers off first, put them back at the end.
        _initial_triggers(create=False)
    with op.batch_alter_table("billing_cycles") as b:
        b.drop_column("line_dims")
    with op.batch_alter_table("invoices") as b:
        b.drop_column("tax_note")
        b.drop_column("taxable_amount")
    if not sqlite:
        op.drop_constraint(op.f("fk_invoice_lines_adjustment_id_adjustments"), "invoice_lines", type_="foreignkey")
        op.drop_constraint(op.f("fk_invoice_lines_fx_rate_id_fx_rates"), "invoice_lines", type_="foreignkey")
    op.drop_index(op.f("ix_adjustments_target_cycle_id"), table_name="adjustments")
    op.drop_index(op.f("ix_adjustments_correction_id"), table_name="adjustments")
    if sqlite:
        # invoice_lines.adjustment_id references adjustments: rebuild invoice_lines first
        _drop_line_columns()
        op.drop_table("adjustments")
    else:
        op.drop_table("adjustments")
        _drop_line_columns()
    op.drop_index(op.f("ix_corrections_partner_id"), table_name="corrections")
    op.drop_index(op.f("ix_corrections_cycle_id"), table_name="corrections")
    op.drop_table("corrections")
    op.drop_index(op.f("ix_validation_findings_cycle_id"), table_name="validation_findings")
    op.drop_table("validation_findings")
    op.drop_index("ix_intake_daily_counts_partner_day", table_name="intake_daily_counts")
    op.drop_table("intake_daily_counts")
    if sqlite:
        _initial_triggers(create=True)


def _drop_line_columns() -> None:
    with op.batch_alter_table("invoice_lines") as b:
        for name in ("adjustment_id", "group_key", "rounding", "fx_rate_id", "fx_rate", "source_currency",
                     "source_amount"):
            b.drop_column(name)


def _initial():
    """The 0001 migration module (its trigger definitions)."""
    path = Path(__file__).with_name("0001_initial_schema.py")
    spec = importlib.util.spec_from_file_location("icdsl_migration_0001", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _initial_triggers(*, create: bool) -> None:
    """Drop, or create again, the SQLite triggers of 0001 (as 0001 defines them)."""
    initial = _initial()
    for table, ops, when, message in initial._SQLITE_RULES:
        for o in ops:
            name = initial._sqlite_name(table, (o,))
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
            if create:
                cond = f" WHEN {when}" if when else ""
                op.execute(f"CREATE TRIGGER {name} BEFORE {o} ON {table} FOR EACH ROW{cond} "
                           f"BEGIN SELECT RAISE(ABORT, '{message}'); END")


def _create_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for table, ops, message in _RULES:
        if dialect == "sqlite":
            for o in ops:
                op.execute(f"CREATE TRIGGER icdsl_{table}_no_{o.lower()} BEFORE {o} ON {table} FOR EACH ROW "
                           f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
        else:
            op.execute(f"CREATE TRIGGER icdsl_{table}_immutable BEFORE {' OR '.join(ops)} ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION icdsl_refuse('{message}')")
            op.execute(f"CREATE TRIGGER icdsl_{table}_no_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION icdsl_refuse('icdsl: {table} cannot be truncated')")


def _drop_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for table, ops, _message in _RULES:
        if dialect == "sqlite":
            for o in ops:
                op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_no_{o.lower()}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_immutable ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_no_truncate ON {table}")
