"""Email delivery: suppression list, each message's purpose and tracked links, crashed sends.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_suppressions")),
    )
    op.add_column("outbox", sa.Column("purpose", sa.String(length=16), nullable=True))
    op.add_column("outbox", sa.Column("links", carepath.db.types.Json, nullable=True))
    op.create_index(
        "ix_outbox_sending",
        "outbox",
        ["lease_until"],
        postgresql_where=sa.text("status = 'sending'"),
        sqlite_where=sa.text("status = 'sending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_sending", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:  # SQLite rebuilds the table
        batch.drop_column("links")
        batch.drop_column("purpose")
    op.drop_table("suppressions")
