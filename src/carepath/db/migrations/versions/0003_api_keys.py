"""HTTP API: API keys, webhook receipts, erased contacts, claimed tasks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("scopes", carepath.db.types.Json, nullable=False),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("revoked_at", carepath.db.types.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
        sa.UniqueConstraint("public_id", name=op.f("uq_api_keys_public_id")),
    )
    op.create_table(
        "hook_receipts",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("received_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "signature", name=op.f("pk_hook_receipts")),
    )
    op.create_index(
        op.f("ix_hook_receipts_received_at"), "hook_receipts", ["received_at"], unique=False
    )
    op.add_column(
        "contacts", sa.Column("erased_at", carepath.db.types.UtcDateTime(), nullable=True)
    )
    op.add_column("tasks", sa.Column("assignee", sa.String(length=80), nullable=True))
    op.add_column("tasks", sa.Column("claimed_at", carepath.db.types.UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("assignee")
    with op.batch_alter_table("contacts") as batch:  # SQLite rebuilds the table
        batch.drop_column("erased_at")
    op.drop_index(op.f("ix_hook_receipts_received_at"), table_name="hook_receipts")
    op.drop_table("hook_receipts")
    op.drop_table("api_keys")
