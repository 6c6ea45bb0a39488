"""Disputes of partners' invoices: the dispute, its lines, the credit notes that settle it.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-07

- ``disputes``: one row per dispute (``DSP-YYYY-NNNNNN``, gap-free from ``number_sequences``),
  opened from a reconciliation of a partner's invoice: the partner invoice it disputes (its
  store id, number and sha256 as plain columns: no foreign key to the partner-invoice tables),
  the amounts (theirs, ours, disputed = theirs - ours, exact), how many lines it has, its
  evidence (a Parquet file of the differing records in the data folder: path, sha256, rows),
  the SHA-256 of its canonical content at opening, who opened it, when and why; then its
  ``state`` (open, sent, partially_accepted, accepted, rejected, withdrawn), the amount the
  partner accepted (credited) and who made the last change, when and why.
- ``dispute_lines``: the disputed lines (service, destination, band; both sides' calls,
  quantities and amounts; the amount disputed; how many evidence records).
- ``dispute_credits``: the partner's credit notes applied to a dispute (number, sha256, total,
  the amount applied).

Triggers (messages start with ``icdsl:``; PostgreSQL raises ``integrity_constraint_violation``)
make the database hold what :mod:`icdsl.billing.disputes` does, for anyone writing around it:

- a dispute is never deleted; its number, partner, invoice, amounts, line count, evidence and
  opening never change; it is opened in state ``open`` with a positive amount disputed equal to
  theirs - ours and nothing accepted;
- its state changes only along ``open -> sent | withdrawn`` and ``sent | partially_accepted ->
  partially_accepted | accepted | rejected | withdrawn``; accepted, rejected and withdrawn are
  final; a change says who made it and when (``changed_by``, a new ``changed_at``); it leaves
  ``open`` only with all its lines;
- its accepted amount is the sum of the credit notes applied to it, only grows, is the whole
  amount disputed when ``accepted`` and part of it when ``partially_accepted``;
- its lines are written once, while it is open, no more than it declares, each disputing
  theirs - ours (positive), the last one making the lines add up to the dispute's amount;
  they are never changed or deleted;
- a credit note is applied only to a sent or partly accepted dispute, for a positive amount no
  more than what is left of the dispute and of the credit note (across the partner's
  disputes); applications are never changed or deleted;
- every insert and change of state writes its ``audit_log`` entry (who, when, from, to, why),
  from the row itself: the audit trail is complete whoever writes.

Money is text on SQLite (see :mod:`icdsl.billing.types`: 8 decimals, always): the triggers
compare and add it as integers of 10^-8 (the text without its point), exactly; PostgreSQL
compares its NUMERIC values.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
MONEY = sa.Numeric(24, 8).with_variant(sa.String(40), "sqlite")

STATES = ("open", "sent", "partially_accepted", "accepted", "rejected", "withdrawn")
FINAL = ("accepted", "rejected", "withdrawn")
TRANSITIONS = (("open", "sent"), ("open", "withdrawn"),
               *((a, b) for a in ("sent", "partially_accepted")
                 for b in ("partially_accepted", "accepted", "rejected", "withdrawn")))

NO_DELETE = "icdsl: a dispute is never deleted (withdraw it: icdsl dispute withdraw)"
FIXED = ("icdsl: a dispute's number, partner, invoice, amounts, lines and evidence never change once it is "
         "opened (open another dispute)")
OPENED = ("icdsl: a dispute is opened in state open, with a positive amount disputed equal to theirs - ours "
          "and nothing accepted")
CLOSED = "icdsl: the dispute is closed (accepted, rejected or withdrawn): it cannot change"
TRANSITION = ("icdsl: not a valid change of a dispute's state (open -> sent or withdrawn; sent or "
              "partially_accepted -> partially_accepted, accepted, rejected or withdrawn)")
WHO = "icdsl: every change of a dispute says who made it and when (changed_by and a new changed_at)"
INCOMPLETE = "icdsl: the dispute's lines are incomplete: it cannot leave the state open"
ACCEPTED = ("icdsl: a dispute's accepted amount is the sum of the credit notes applied to it: it only grows, "
            "is the whole amount when accepted and part of it when partially accepted")
LINES = ("icdsl: a dispute's lines are written once, while it is open: as many as it declares, each disputing "
         "theirs - ours, adding up to its amount; they never change")
CREDITS = ("icdsl: a credit note is applied only to a sent or partly accepted dispute, for a positive amount no "
           "more than what is left of the dispute and of the credit note; never changed or removed")

# columns fixed at opening
_FIXED = ("id", "number", "partner_id", "partner_code", "period_start", "period_end", "currency", "invoice_id",
          "invoice_number", "invoice_sha256", "invoice_total", "their_amount", "our_amount", "amount", "line_count",
          "evidence_path", "evidence_sha256", "evidence_rows", "tolerances", "content_hash", "opened_at", "opened_by",
          "opened_reason")


def _u(dialect: str, expr: str) -> str:
    """Money as an exact number in SQL: on SQLite the text's digits without its point (10^-8 units)."""
    return f"CAST(REPLACE({expr}, '.', '') AS INTEGER)" if dialect == "sqlite" else expr


def _differs(dialect: str, col: str) -> str:
    if dialect == "sqlite":
        return f"NEW.{col} IS NOT OLD.{col}"
    if col == "tolerances":  # json has no equality operator on PostgreSQL
        return "NEW.tolerances::text IS DISTINCT FROM OLD.tolerances::text"
    return f"NEW.{col} IS DISTINCT FROM OLD.{col}"


def _q(text: str) -> str:
    """Text as the inside of an SQL string literal."""
    return text.replace("'", "''")


def _in(col: str, values: Sequence[str]) -> str:
    return f"{col} IN ({', '.join(repr(v) for v in values)})"


def _rules(d: str) -> list[tuple[str, str, str, str | None, str]]:
    """(name, table, operation, condition or None, message): the refusals, in SQL of dialect ``d``."""
    u = lambda e: _u(d, e)  # noqa: E731 - a short local spelling
    pairs = " OR ".join(f"(OLD.state = '{a}' AND NEW.state = '{b}')" for a, b in TRANSITIONS)
    credited = f"(SELECT COALESCE(SUM({u('c.amount')}), 0) FROM dispute_credits c WHERE c.dispute_id = NEW.id)"
    lines_of = "(SELECT COUNT(*) FROM dispute_lines l WHERE l.dispute_id = {id})"
    head = "(SELECT {col} FROM disputes h WHERE h.id = NEW.dispute_id)"
    line_sum = f"(SELECT COALESCE(SUM({u('l.amount')}), 0) FROM dispute_lines l WHERE l.dispute_id = NEW.dispute_id)"
    applied_note = (f"(SELECT COALESCE(SUM({u('c.amount')}), 0) FROM dispute_credits c "
                    "WHERE c.partner_code = NEW.partner_code AND c.credit_note_number = NEW.credit_note_number)")
    applied_here = f"(SELECT COALESCE(SUM({u('c.amount')}), 0) FROM dispute_credits c WHERE c.dispute_id = NEW.dispute_id)"
    return [
        ("icdsl_disputes_no_delete", "disputes", "DELETE", None, NO_DELETE),
        ("icdsl_disputes_opened", "disputes", "INSERT",
         f"NEW.state <> 'open' OR {u('NEW.accepted_amount')} <> 0 OR {u('NEW.amount')} <= 0 "
         f"OR {u('NEW.amount')} <> {u('NEW.their_amount')} - {u('NEW.our_amount')} OR NEW.line_count < 1", OPENED),
        ("icdsl_disputes_fixed", "disputes", "UPDATE", " OR ".join(_differs(d, c) for c in _FIXED), FIXED),
        ("icdsl_disputes_closed", "disputes", "UPDATE", _in("OLD.state", FINAL), CLOSED),
        ("icdsl_disputes_transition", "disputes", "UPDATE", f"NOT ({pairs})", TRANSITION),
        ("icdsl_disputes_who", "disputes", "UPDATE",
         "NEW.changed_by IS NULL OR NEW.changed_by = '' OR NEW.changed_at IS NULL "
         "OR NEW.changed_at = OLD.changed_at", WHO),
        ("icdsl_disputes_complete", "disputes", "UPDATE",
         f"OLD.state = 'open' AND {lines_of.format(id='OLD.id')} <> OLD.line_count", INCOMPLETE),
        ("icdsl_disputes_accepted", "disputes", "UPDATE",
         f"{u('NEW.accepted_amount')} < {u('OLD.accepted_amount')} "
         f"OR {u('NEW.accepted_amount')} <> {credited} "
         f"OR (NEW.state = 'accepted' AND {u('NEW.accepted_amount')} <> {u('NEW.amount')}) "
         f"OR (NEW.state = 'partially_accepted' AND ({u('NEW.accepted_amount')} <= 0 "
         f"OR {u('NEW.accepted_amount')} >= {u('NEW.amount')})) "
         f"OR (NEW.state = 'partially_accepted' AND OLD.state = 'partially_accepted' "
         f"AND {u('NEW.accepted_amount')} <= {u('OLD.accepted_amount')}) "
         f"OR ({_in('NEW.state', ('sent', 'rejected', 'withdrawn'))} "
         f"AND {u('NEW.accepted_amount')} <> {u('OLD.accepted_amount')})", ACCEPTED),
        ("icdsl_dispute_lines_no_update", "dispute_lines", "UPDATE", None, LINES),
        ("icdsl_dispute_lines_no_delete", "dispute_lines", "DELETE", None, LINES),
        ("icdsl_dispute_lines_insert", "dispute_lines", "INSERT",
         f"{head.format(col='state')} IS NOT 'open' OR NEW.line_no < 1 "
         f"OR NEW.line_no > {head.format(col='line_count')} "
         f"OR {lines_of.format(id='NEW.dispute_id')} >= {head.format(col='line_count')} "
         f"OR {u('NEW.amount')} <= 0 OR {u('NEW.amount')} <> {u('NEW.their_amount')} - {u('NEW.our_amount')} "
         f"OR ({lines_of.format(id='NEW.dispute_id')} + 1 = {head.format(col='line_count')} "
         f"AND {line_sum} + {u('NEW.amount')} <> {head.format(col=u('h.amount'))})", LINES),
        ("icdsl_dispute_credits_no_update", "dispute_credits", "UPDATE", None, CREDITS),
        ("icdsl_dispute_credits_no_delete", "dispute_credits", "DELETE", None, CREDITS),
        ("icdsl_dispute_credits_insert", "dispute_credits", "INSERT",
         f"{head.format(col='state')} NOT IN ('sent', 'partially_accepted') OR {u('NEW.amount')} <= 0 "
         f"OR {applied_here} + {u('NEW.amount')} > {head.format(col=u('h.amount'))} "
         f"OR {applied_note} + {u('NEW.amount')} > {u('NEW.credit_note_total')}", CREDITS),
    ]


_NO_TRUNCATE = ("disputes", "dispute_lines", "dispute_credits")


def _audit_values(d: str, row: str) -> str:
    """The audit entry of a dispute's row (``row``: NEW), written by the database itself."""
    reason = "NEW.change_reason"
    if d == "sqlite":
        details = ("json_object('number', NEW.number, 'from', {old}, 'to', NEW.state, 'reason', NEW.change_reason, "
                   "'amount', NEW.amount, 'accepted_amount', NEW.accepted_amount, 'currency', NEW.currency)")
    else:
        details = ("json_build_object('number', NEW.number, 'from', {old}, 'to', NEW.state, 'reason', "
                   "NEW.change_reason, 'amount', NEW.amount::text, 'accepted_amount', NEW.accepted_amount::text, "
                   "'currency', NEW.currency)")
    return reason, details


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=True),
        sa.Column("invoice_number", sa.String(length=200), nullable=False),
        sa.Column("invoice_sha256", sa.String(length=64), nullable=True),
        sa.Column("invoice_total", MONEY, nullable=False),
        sa.Column("their_amount", MONEY, nullable=False),
        sa.Column("our_amount", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("evidence_path", sa.String(length=1000), nullable=True),
        sa.Column("evidence_sha256", sa.String(length=64), nullable=True),
        sa.Column("evidence_rows", sa.BigInteger(), nullable=False),
        sa.Column("tolerances", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("opened_by", sa.String(length=200), nullable=False),
        sa.Column("opened_reason", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("accepted_amount", MONEY, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("change_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("state", STATES), name=op.f("ck_disputes_state")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_disputes_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
        sa.UniqueConstraint("number", name=op.f("uq_disputes_number")),
    )
    op.create_index(op.f("ix_disputes_partner_id"), "disputes", ["partner_id"])
    op.create_table(
        "dispute_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dispute_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=300), nullable=True),
        sa.Column("band", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("their_lines", sa.JSON(), nullable=False),
        sa.Column("our_lines", sa.JSON(), nullable=False),
        sa.Column("their_calls", sa.BigInteger(), nullable=False),
        sa.Column("our_calls", sa.BigInteger(), nullable=False),
        sa.Column("their_quantity", sa.String(length=60), nullable=False),
        sa.Column("our_quantity", sa.String(length=60), nullable=False),
        sa.Column("their_amount", MONEY, nullable=False),
        sa.Column("our_amount", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("evidence_records", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["dispute_id"], ["disputes.id"], name=op.f("fk_dispute_lines_dispute_id_disputes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute_lines")),
        sa.UniqueConstraint("dispute_id", "line_no", name=op.f("uq_dispute_lines_dispute_id_line_no")),
    )
    op.create_index(op.f("ix_dispute_lines_dispute_id"), "dispute_lines", ["dispute_id"])
    op.create_table(
        "dispute_credits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dispute_id", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("credit_note_id", sa.Integer(), nullable=True),
        sa.Column("credit_note_number", sa.String(length=200), nullable=False),
        sa.Column("credit_note_sha256", sa.String(length=64), nullable=True),
        sa.Column("credit_note_total", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("applied_at", TS, nullable=False),
        sa.Column("applied_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["dispute_id"], ["disputes.id"],
                                name=op.f("fk_dispute_credits_dispute_id_disputes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute_credits")),
    )
    op.create_index(op.f("ix_dispute_credits_dispute_id"), "dispute_credits", ["dispute_id"])
    op.create_index(op.f("ix_dispute_credits_partner_code_credit_note_number"), "dispute_credits",
                    ["partner_code", "credit_note_number"])
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index(op.f("ix_dispute_credits_partner_code_credit_note_number"), table_name="dispute_credits")
    op.drop_index(op.f("ix_dispute_credits_dispute_id"), table_name="dispute_credits")
    op.drop_table("dispute_credits")
    op.drop_index(op.f("ix_dispute_lines_dispute_id"), table_name="dispute_lines")
    op.drop_table("dispute_lines")
    op.drop_index(op.f("ix_disputes_partner_id"), table_name="disputes")
    op.drop_table("disputes")


_AUDIT_COLUMNS = "(at, actor, action, entity, entity_id, message, details)"


def _audit_insert(d: str, when: str) -> str:
    """The INSERT of the audit entry; ``when``: 'INSERT' (opened) or 'UPDATE' (a change of state)."""
    reason, details = _audit_values(d, "NEW")
    why = f"COALESCE(': ' || {reason}, '')"
    if when == "INSERT":
        message = f"NEW.number || ': opened on invoice ' || NEW.invoice_number || ' of ' || NEW.partner_code || {why}"
        action, old = "'dispute_opened'", "NULL"
    else:
        message = f"NEW.number || ': ' || OLD.state || ' -> ' || NEW.state || {why}"
        action, old = "'dispute_' || NEW.state", "OLD.state"
    return (f"INSERT INTO audit_log {_AUDIT_COLUMNS} VALUES (NEW.changed_at, NEW.changed_by, {action}, 'dispute', "
            f"NEW.id, {message}, {details.format(old=old)})")


def _groups(d: str) -> list[tuple[str, str, str, list[tuple[str | None, str]]]]:
    """The refusals by table and operation, in order: (trigger name, table, operation, [(condition,
    message)]). One trigger each, whose checks run in the order written (the first that holds
    refuses): the message is the same on both back ends whatever their order of triggers."""
    out: dict[tuple[str, str], list[tuple[str | None, str]]] = {}
    for _name, table, o, when, message in _rules(d):
        out.setdefault((table, o), []).append((when, message))
    return [(f"icdsl_{table}_check_{o.lower()}", table, o, checks) for (table, o), checks in out.items()]


def _create_triggers() -> None:
    d = op.get_bind().dialect.name
    if d == "sqlite":
        for name, table, o, checks in _groups(d):
            body = " ".join(f"SELECT RAISE(ABORT, '{_q(message)}')" + (f" WHERE {when}" if when else "") + ";"
                            for when, message in checks)
            op.execute(f"CREATE TRIGGER {name} BEFORE {o} ON {table} FOR EACH ROW BEGIN {body} END")
        for o in ("INSERT", "UPDATE"):
            op.execute(f"CREATE TRIGGER icdsl_disputes_audit_{o.lower()} AFTER {o} ON disputes FOR EACH ROW "
                       f"BEGIN {_audit_insert(d, o)}; END")
        return
    for name, table, o, checks in _groups(d):
        row = "OLD" if o == "DELETE" else "NEW"
        body = []
        for when, message in checks:
            when = (when or "TRUE").replace(" IS NOT 'open'", " IS DISTINCT FROM 'open'")
            body.append(f"IF {when} THEN RAISE EXCEPTION '{_q(message)}' USING ERRCODE = "
                        "'integrity_constraint_violation', DETAIL = format('%s on %s', TG_OP, TG_TABLE_NAME); END IF;")
        newline = "\n    "
        op.execute(f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {newline.join(body)}
    RETURN {row};
END
$$""")
        op.execute(f"CREATE TRIGGER {name} BEFORE {o} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
    op.execute(f"""
CREATE FUNCTION icdsl_disputes_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_audit_insert(d, "INSERT")};
    ELSE
        {_audit_insert(d, "UPDATE")};
    END IF;
    RETURN NULL;
END
$$""")
    op.execute("CREATE TRIGGER icdsl_disputes_audit AFTER INSERT OR UPDATE ON disputes FOR EACH ROW "
               "EXECUTE FUNCTION icdsl_disputes_audit()")
    for table in _NO_TRUNCATE:
        op.execute(f"CREATE TRIGGER icdsl_{table}_no_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION icdsl_refuse('icdsl: {table} cannot be truncated')")


def _drop_triggers() -> None:
    d = op.get_bind().dialect.name
    if d == "sqlite":
        for name, *_ in _groups(d):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        for o in ("insert", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS icdsl_disputes_audit_{o}")
        return
    for name, table, *_ in _groups(d):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.execute("DROP TRIGGER IF EXISTS icdsl_disputes_audit ON disputes")
    op.execute("DROP FUNCTION IF EXISTS icdsl_disputes_audit()")
    for table in _NO_TRUNCATE:
        op.execute(f"DROP TRIGGER IF EXISTS icdsl_{table}_no_truncate ON {table}")
