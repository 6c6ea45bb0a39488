"""PostgreSQL: the check refusing new lines of a finalized invoice, once per statement.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

A cycle run inserts its invoice lines in bulk (one executemany of a few dozen to thousands of
rows). On PostgreSQL the row-level trigger of 0001 (``icdsl_invoice_lines_finalized``) ran a
query per inserted line to see whether its invoice is finalized: inserting a cycle's ~60 lines
took about twice as long with it as without. Here its INSERT check becomes a statement-level
trigger (``AFTER INSERT ... REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT``) that looks
at the statement's new lines in one query and refuses the whole statement, with the same
message, if any of them belongs to a finalized invoice. UPDATE and DELETE keep the row-level
trigger (a cycle run never updates or deletes lines of a finalized invoice).

The check runs after the statement's rows are in place (a transition table exists only after
them), so an insert that also breaks a constraint (a line number the invoice already has, an
invoice that does not exist) is refused by that constraint's error first; either way nothing
is inserted.

Left as they are, measured or reasoned: the INSERT checks of charge lines (one INSERT per line,
flushed by the ORM), charge applications (a few rows per flush), the record charges file (one
row) and cycle inputs (one row per intake batch read, and their primary key would answer before
a statement trigger could, with a less useful message): a statement trigger over one or two
rows costs no less than a row trigger. SQLite keeps its row triggers: there a trigger is a few
instructions of the statement's own program, not a function call and a query.

Downgrade restores 0001's row-level trigger (INSERT OR UPDATE OR DELETE).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0001's message
FINALIZED_LINE = "icdsl: the line belongs to a finalized invoice: it cannot be changed, added or deleted"

# the new lines of a statement: one query over all of them, the statement refused as a whole
_PG_FUNCTION = f"""
CREATE FUNCTION icdsl_refuse_finalized_line_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows n JOIN invoices i ON i.id = n.invoice_id WHERE i.status = 'finalized') THEN
        RAISE EXCEPTION '{FINALIZED_LINE}' USING ERRCODE = 'integrity_constraint_violation',
            DETAIL = format('%s on %s', TG_OP, TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$$"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite keeps its row triggers
    op.execute(_PG_FUNCTION)
    # the row trigger keeps UPDATE and DELETE (its function, icdsl_refuse_finalized_line, serves every operation)
    op.execute("DROP TRIGGER icdsl_invoice_lines_finalized ON invoice_lines")
    op.execute("CREATE TRIGGER icdsl_invoice_lines_finalized BEFORE UPDATE OR DELETE ON invoice_lines "
               "FOR EACH ROW EXECUTE FUNCTION icdsl_refuse_finalized_line()")
    op.execute("CREATE TRIGGER icdsl_invoice_lines_finalized_insert AFTER INSERT ON invoice_lines "
               "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
               "EXECUTE FUNCTION icdsl_refuse_finalized_line_inserts()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER icdsl_invoice_lines_finalized_insert ON invoice_lines")
    op.execute("DROP TRIGGER icdsl_invoice_lines_finalized ON invoice_lines")
    op.execute("CREATE TRIGGER icdsl_invoice_lines_finalized BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines "
               "FOR EACH ROW EXECUTE FUNCTION icdsl_refuse_finalized_line()")
    op.execute("DROP FUNCTION icdsl_refuse_finalized_line_inserts()")
