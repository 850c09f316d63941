"""Roles on API keys (and an agent's queues); break-glass emergency access.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("role", sa.String(length=20), nullable=False, server_default="integration")
        )
        batch.add_column(sa.Column("queues", carepath.db.types.Json, nullable=True))
    op.create_table(
        "break_glass",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("principal", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("started_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("expires_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_glass")),
    )
    op.create_index(
        "ix_break_glass_principal_expires_at", "break_glass", ["principal", "expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_break_glass_principal_expires_at", table_name="break_glass")
    op.drop_table("break_glass")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("queues")
        batch.drop_column("role")
