"""HTTP API: API keys, webhooks, paused workflows, erased contacts, claimed tasks.

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
    op.create_table(
        "webhook_calls",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("run_id", carepath.db.types.Id, nullable=True),
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret_env", sa.String(length=100), nullable=False),
        sa.Column("body", carepath.db.types.Json, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", carepath.db.types.UtcDateTime(), nullable=True),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("sent_at", carepath.db.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_webhook_calls_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_webhook_calls_run_id_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_calls")),
    )
    op.create_index(
        "ix_webhook_calls_due",
        "webhook_calls",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "paused_workflows",
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("paused_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workflow", name=op.f("pk_paused_workflows")),
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
    op.drop_table("paused_workflows")
    op.drop_index("ix_webhook_calls_due", table_name="webhook_calls")
    op.drop_table("webhook_calls")
    op.drop_index(op.f("ix_hook_receipts_received_at"), table_name="hook_receipts")
    op.drop_table("hook_receipts")
    op.drop_table("api_keys")
