"""Credit and debit notes in their own series; the parties sealed into a finalized document.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

- ``invoices.doc_type``: ``invoice``, ``credit_note`` or ``debit_note`` (null on documents written
  before 0016: an invoice, or a credit note when its total is negative). Credit notes are
  numbered ``CN-YYYY-NNNNNN`` and debit notes ``DN-YYYY-NNNNNN``, each from its own gap-free
  counter (``credit-note-YYYY``, ``debit-note-YYYY``);
- ``invoices.seller`` and ``invoices.buyer``: the parties (our company, the partner: name,
  address, VAT identifier, bank account, electronic address...) as they were when the document
  was finalized (JSON, :meth:`icdsl.parties.Party.as_json`), sealed with it: a later change of
  the rules does not change an issued document. Null on drafts and on documents finalized
  before 0016 (their parties are read as the rules declare them now). Settlement and
  revenue-share statements keep theirs in ``details`` (``seller``, ``buyer``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN (not a batch copy on SQLite: the table's triggers stay)
    op.add_column("invoices", sa.Column("doc_type", sa.String(16), nullable=True))
    op.add_column("invoices", sa.Column("seller", sa.JSON(), nullable=True))
    op.add_column("invoices", sa.Column("buyer", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("invoices", "buyer")
    op.drop_column("invoices", "seller")
    op.drop_column("invoices", "doc_type")
