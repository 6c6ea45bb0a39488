"""A new FX rate may not take effect inside a finalized billing cycle.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

0007 refuses UPDATE and DELETE of an ``fx_rates`` row in force during a finalized cycle. A new
row with an earlier ``effective_from`` changes the rate in force just as much: a rate
"from 2026-03-15" loaded after March was finalized would be the rate of the second half of a
month whose invoices are sealed, and a re-rating or a what-if of March would convert with a rate
the invoices never used. ``icdsl load`` refuses it with its own message (``FxRateConflict``);
this trigger refuses it whatever writes the row. A correction takes effect from the day after the
last finalized period (or goes through a credit note).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "icdsl_fx_rates_no_backdated_insert"
MESSAGE = ("icdsl: the FX rate would take effect during a finalized billing cycle: "
           "give it an effective date after the last finalized period")
CONDITION = "EXISTS (SELECT 1 FROM billing_cycles c WHERE c.status = 'finalized' AND c.local_end > NEW.effective_from)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"CREATE TRIGGER {NAME} BEFORE INSERT ON fx_rates FOR EACH ROW WHEN {CONDITION} "
                   f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")
        return
    op.execute(f"""
CREATE FUNCTION {NAME}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {CONDITION} THEN RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation',
        DETAIL = format('%s on %s', TG_OP, TG_TABLE_NAME); END IF;
    RETURN NEW;
END
$$""")
    op.execute(f"CREATE TRIGGER {NAME} BEFORE INSERT ON fx_rates FOR EACH ROW EXECUTE FUNCTION {NAME}()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {NAME}")
        return
    op.execute(f"DROP TRIGGER IF EXISTS {NAME} ON fx_rates")
    op.execute(f"DROP FUNCTION IF EXISTS {NAME}()")
