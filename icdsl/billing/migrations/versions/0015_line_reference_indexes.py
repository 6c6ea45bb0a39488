"""Indexes on the columns that point at invoice lines and rated files.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

Deleting a draft's invoice lines (a cycle run again, ``run_cycle(..., rerate=True)``) makes the
database check, for each deleted line, the rows whose foreign keys point at it:
``invoice_lines.corrects_line_id`` and ``adjustments.corrects_line_id``; and deleting a
cycle's rated file checks ``invoice_lines.data_file_id``. Without an index each check scans
the whole table: measured on SQLite with 12,000 lines in the store, re-running 11 cycles spent
4.22 s deleting lines, 0.023 s with these indexes, and the cost grew with the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("invoice_lines", "corrects_line_id"),
    ("invoice_lines", "data_file_id"),
    ("adjustments", "corrects_line_id"),
)


def upgrade() -> None:
    for table, column in INDEXES:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column])


def downgrade() -> None:
    for table, column in INDEXES:
        op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
