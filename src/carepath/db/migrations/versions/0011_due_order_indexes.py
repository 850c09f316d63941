"""Due-row indexes that also give the claim's order: (next_attempt_at, id).

A claim takes the oldest due rows first, `ORDER BY next_attempt_at, id LIMIT n`.
With only `next_attempt_at` in the index, PostgreSQL read and sorted every due
row on each claim (130 ms per claim of 500 with 100,000 messages queued at the
same time, sorted on disk); with `id` as the second column the index scan stops
after `n` rows. (SQLite appends the rowid to every index and never needed it.)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("status = 'pending'")
_INDEXES = (("ix_outbox_pending", "outbox"), ("ix_webhook_calls_due", "webhook_calls"))


def _recreate(columns: list[str]) -> None:
    for name, table in _INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, postgresql_where=_PENDING, sqlite_where=_PENDING)


def upgrade() -> None:
    _recreate(["next_attempt_at", "id"])


def downgrade() -> None:
    _recreate(["next_attempt_at"])
