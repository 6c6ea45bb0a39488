"""The partner portal (``icdsl serve``): its users, API tokens, sessions, sign-in attempts, its
audit trail and the disputes partners raise on our invoices.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

- ``portal_users``: a person who signs in; belongs to one partner (``partner_id``) or, with none,
  to our staff; the password as an argon2 hash (never the password); ``disabled_at`` set by
  ``icdsl users disable`` refuses the user at its next request.
- ``portal_tokens``: a partner's API token (``icdsl tokens issue``), kept as its SHA-256 (the
  token is 256 random bits: a fast hash is as safe as a slow one here); ``revoked_at`` refuses it.
- ``portal_sessions``: a signed-in browser: the cookie's SHA-256, its CSRF token, when it ends.
- ``portal_login_attempts``: every sign-in try (user name, address, outcome): the rate limit.
- ``portal_events``: who signed in, out, downloaded what, raised which dispute (append-only).
- ``portal_disputes``: a dispute a partner raised on a line of one of our invoices, with its
  comment, its attached file (stored under the data folder with a generated name) and its state.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None



def ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "portal_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=True),
        sa.Column("partner_code", sa.String(length=64), nullable=True),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("disabled_at", ts(), nullable=True),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_portal_users_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_users")),
        sa.UniqueConstraint("username", name=op.f("uq_portal_users_username")),
    )
    op.create_table(
        "portal_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("revoked_at", ts(), nullable=True),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_portal_tokens_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_portal_tokens_token_hash")),
    )
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", ts(), nullable=False),
        sa.Column("expires_at", ts(), nullable=False),
        sa.Column("ended_at", ts(), nullable=True),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["portal_users.id"], name=op.f("fk_portal_sessions_user_id_portal_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_sessions")),
        sa.UniqueConstraint("session_hash", name=op.f("uq_portal_sessions_session_hash")),
    )
    op.create_table(
        "portal_login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.Column("at", ts(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_login_attempts")),
    )
    op.create_index("ix_portal_login_attempts_username_at", "portal_login_attempts", ["username", "at"])
    op.create_index("ix_portal_login_attempts_remote_at", "portal_login_attempts", ["remote", "at"])
    op.create_table(
        "portal_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", ts(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("partner_code", sa.String(length=64), nullable=True),
        sa.Column("target", sa.String(length=300), nullable=True),
        sa.Column("remote", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_events")),
    )
    op.create_index(op.f("ix_portal_events_action"), "portal_events", ["action"])
    op.create_table(
        "portal_disputes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("partner_code", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("invoice_number", sa.String(length=64), nullable=True),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("attachment_path", sa.String(length=1000), nullable=True),
        sa.Column("attachment_name", sa.String(length=300), nullable=True),
        sa.Column("attachment_type", sa.String(length=100), nullable=True),
        sa.Column("attachment_size", sa.Integer(), nullable=True),
        sa.Column("attachment_sha256", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("raised_at", ts(), nullable=False),
        sa.Column("raised_by", sa.String(length=200), nullable=False),
        sa.Column("changed_at", ts(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("change_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('open', 'in_review', 'accepted', 'rejected', 'withdrawn')",
                           name=op.f("ck_portal_disputes_state")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_portal_disputes_partner_id_partners")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_portal_disputes_invoice_id_invoices")),
        sa.ForeignKeyConstraint(["line_id"], ["invoice_lines.id"],
                                name=op.f("fk_portal_disputes_line_id_invoice_lines")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_disputes")),
        sa.UniqueConstraint("number", name=op.f("uq_portal_disputes_number")),
    )
    op.create_index(op.f("ix_portal_disputes_partner_id"), "portal_disputes", ["partner_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_portal_disputes_partner_id"), table_name="portal_disputes")
    op.drop_table("portal_disputes")
    op.drop_index(op.f("ix_portal_events_action"), table_name="portal_events")
    op.drop_table("portal_events")
    op.drop_index("ix_portal_login_attempts_remote_at", table_name="portal_login_attempts")
    op.drop_index("ix_portal_login_attempts_username_at", table_name="portal_login_attempts")
    op.drop_table("portal_login_attempts")
    op.drop_table("portal_sessions")
    op.drop_table("portal_tokens")
    op.drop_table("portal_users")
