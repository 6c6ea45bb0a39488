"""Seals of finalized documents, and the rows a finalized document depends on made immutable.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

- ``document_seals``: one row per finalized document (invoice or credit note, settlement
  statement, revenue-share statement): the SHA-256 of its canonical content and the seal chained
  to the seal before it (:mod:`icdsl.billing.seal`). The documents finalized before this
  migration are sealed by it, in the order they were finalized.
- Triggers, as in 0001 and 0003 (messages start with ``icdsl:``), refusing:

  - any UPDATE or DELETE of a seal (and TRUNCATE on PostgreSQL);
  - an UPDATE of ``number_sequences`` that lowers ``last`` or renames the sequence, and any
    DELETE (a number handed out is never handed out again: after ``SET last = 0`` the next
    finalization would take a number an invoice already has);
  - INSERT, UPDATE or DELETE of ``cycle_inputs`` of a finalized cycle;
  - UPDATE or DELETE of an ``fx_rates`` row in force during a finalized cycle (its
    ``effective_from`` before the end of a finalized period) or used by a finalized invoice;
  - UPDATE or DELETE of an intake batch's ``data_files`` rows, and DELETE of an
    ``intake_batches`` row, once a finalized cycle read the batch (its UPDATE is refused since
    0001, as are the finalized cycles' own files and every agreement version).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)

SEALED = "icdsl: document seals are immutable"
SEQUENCE = "icdsl: a number sequence never goes back and is never removed (its numbers were handed out)"
FINALIZED_INPUT = "icdsl: the row belongs to a finalized billing cycle: it cannot be added, changed or deleted"
FX_IN_USE = "icdsl: the FX rate was in force during a finalized billing cycle: it cannot be changed or deleted"
READ_BATCH = "icdsl: the intake batch was read by a finalized billing cycle: it and its files cannot be changed or deleted"

# row conditions, in SQL both back ends read (a WHEN clause on SQLite, an IF in PL/pgSQL)
_FX_USED = ("EXISTS (SELECT 1 FROM billing_cycles c WHERE c.status = 'finalized' AND c.local_end > OLD.effective_from) "
            "OR EXISTS (SELECT 1 FROM invoices i WHERE i.fx_rate_id = OLD.id AND i.status = 'finalized') "
            "OR EXISTS (SELECT 1 FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id "
            "WHERE l.fx_rate_id = OLD.id AND i.status = 'finalized')")
_BATCH_READ = ("EXISTS (SELECT 1 FROM cycle_inputs ci JOIN billing_cycles c ON c.id = ci.cycle_id "
               "WHERE ci.batch_id = OLD.{col} AND c.status = 'finalized')")
_CYCLE_FINALIZED = "EXISTS (SELECT 1 FROM billing_cycles c WHERE c.id = {row}.cycle_id AND c.status = 'finalized')"

# (name, table, operation, condition or None, message)
_RULES = [
    ("icdsl_document_seals_no_update", "document_seals", "UPDATE", None, SEALED),
    ("icdsl_document_seals_no_delete", "document_seals", "DELETE", None, SEALED),
    ("icdsl_number_sequences_no_decrease", "number_sequences", "UPDATE",
     "NEW.last < OLD.last OR NEW.name <> OLD.name", SEQUENCE),
    ("icdsl_number_sequences_no_delete", "number_sequences", "DELETE", None, SEQUENCE),
    ("icdsl_cycle_inputs_no_insert", "cycle_inputs", "INSERT", _CYCLE_FINALIZED.format(row="NEW"), FINALIZED_INPUT),
    ("icdsl_cycle_inputs_no_update", "cycle_inputs", "UPDATE",
     f"{_CYCLE_FINALIZED.format(row='OLD')} OR {_CYCLE_FINALIZED.format(row='NEW')}", FINALIZED_INPUT),
    ("icdsl_cycle_inputs_no_delete", "cycle_inputs", "DELETE", _CYCLE_FINALIZED.format(row="OLD"), FINALIZED_INPUT),
    ("icdsl_fx_rates_no_update", "fx_rates", "UPDATE", _FX_USED, FX_IN_USE),
    ("icdsl_fx_rates_no_delete", "fx_rates", "DELETE", _FX_USED, FX_IN_USE),
    ("icdsl_data_files_intake_no_update", "data_files", "UPDATE",
     f"OLD.batch_id IS NOT NULL AND {_BATCH_READ.format(col='batch_id')}", READ_BATCH),
    ("icdsl_data_files_intake_no_delete", "data_files", "DELETE",
     f"OLD.batch_id IS NOT NULL AND {_BATCH_READ.format(col='batch_id')}", READ_BATCH),
    ("icdsl_intake_batches_no_delete", "intake_batches", "DELETE", _BATCH_READ.format(col="id"), READ_BATCH),
]
_NO_TRUNCATE = ("document_seals", "number_sequences", "cycle_inputs", "fx_rates")


def upgrade() -> None:
    op.create_table(
        "document_seals",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("previous", sa.String(length=64), nullable=False),
        sa.Column("seal", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('invoice', 'settlement', 'share')", name=op.f("ck_document_seals_kind")),
        sa.ForeignKeyConstraint(["cycle_id"], ["billing_cycles.id"],
                                name=op.f("fk_document_seals_cycle_id_billing_cycles")),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_document_seals")),
        sa.UniqueConstraint("kind", "document_id", name=op.f("uq_document_seals_kind_document_id")),
        sa.UniqueConstraint("previous", name=op.f("uq_document_seals_previous")),
        sa.UniqueConstraint("seal", name=op.f("uq_document_seals_seal")),
    )
    op.create_index(op.f("ix_document_seals_cycle_id"), "document_seals", ["cycle_id"])
    # the documents finalized before seals existed, sealed in the order of their finalization
    # (the canonical form is versioned: seal.VERSION 1 reads only columns that exist at 0007)
    from icdsl.billing import seal  # lazy: the seal module loads the models, needed only here

    seal.seal_unsealed(op.get_bind(), schema_0007=True)
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index(op.f("ix_document_seals_cycle_id"), table_name="document_seals")
    op.drop_table("document_seals")


def _create_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name, table, o, when, message in _RULES:
            cond = f" WHEN {when}" if when else ""
            op.execute(f"CREATE TRIGGER {name} BEFORE {o} ON {table} FOR EACH ROW{cond} "
                       f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
        return
    for name, table, o, when, message in _RULES:
        row = "OLD" if o == "DELETE" else "NEW"
        test = f"IF {when} THEN " if when else ""
        end = " END IF;" if when else ""
        op.execute(f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {test}RAISE EXCEPTION '{message}' USING ERRCODE = 'integrity_constraint_violation',
        DETAIL = format('%s on %s', TG_OP, TG_TABLE_NAME);{end}
    RETURN {row};
END
$$""")
        op.execute(f"CREATE TRIGGER {name} BEFORE {o} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
    for table in _NO_TRUNCATE:
        op.execute(f"CREATE TRIGGER icdsl_{table}_no_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION icdsl_refuse('icdsl: {table} cannot be truncated')")


def _drop_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for name, table, *_ in _RULES:
        if dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    if dialect != "sqlite":
        for table in _NO_TRUNCATE:
            op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_no_truncate ON {table}")
