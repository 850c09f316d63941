"""Initial schema: every table of carepath.db.schema.metadata.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Hand-checked against the metadata (tests/migrations proves an empty database
upgraded to this revision compares equal to it). Constraint and index names are
the metadata's naming convention, spelled out with op.f() because op works on a
MetaData of its own. Column types are the shared objects of carepath.db.types,
so Id (BIGINT, INTEGER on SQLite), Json (JSONB on PostgreSQL) and UtcDateTime
(timestamptz) are exactly what the metadata uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("sex", sa.String(length=20), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=True),
        sa.Column("tags", carepath.db.types.Json, nullable=False),
        sa.Column("attributes", carepath.db.types.Json, nullable=False),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint("email", name=op.f("uq_contacts_email")),
        sa.UniqueConstraint("external_id", name=op.f("uq_contacts_external_id")),
    )
    op.create_table(
        "lists",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_lists")),
    )
    op.create_table(
        "resources",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("body", carepath.db.types.OrderedJson, nullable=False),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resources")),
        sa.UniqueConstraint("kind", "name", "version", name=op.f("uq_resources_kind_name_version")),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", carepath.db.types.Json, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_settings")),
    )
    op.create_table(
        "events",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("occurred_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("received_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("data", carepath.db.types.Json, nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("chain_depth", sa.Integer(), nullable=False),
        sa.Column("processed_at", carepath.db.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_events_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_events_idempotency_key")),
    )
    op.create_index(
        op.f("ix_events_contact_id_type_occurred_at"),
        "events",
        ["contact_id", "type", "occurred_at"],
    )
    op.create_index(
        "ix_events_unprocessed",
        "events",
        ["id"],
        postgresql_where=sa.text("processed_at IS NULL"),
        sqlite_where=sa.text("processed_at IS NULL"),
    )
    op.create_table(
        "list_members",
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("list_name", sa.String(length=100), nullable=False),
        sa.Column("joined_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_list_members_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["list_name"], ["lists.name"], name=op.f("fk_list_members_list_name_lists")
        ),
        sa.PrimaryKeyConstraint("contact_id", "list_name", name=op.f("pk_list_members")),
    )
    op.create_index(op.f("ix_list_members_list_name"), "list_members", ["list_name"])
    op.create_table(
        "runs",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("resource_id", carepath.db.types.Id, nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_step", sa.String(length=100), nullable=True),
        sa.Column("wake_at", carepath.db.types.UtcDateTime(), nullable=True),
        sa.Column("waiting_for", sa.String(length=100), nullable=True),
        sa.Column("visits", carepath.db.types.Json, nullable=False),
        sa.Column("chain_depth", sa.Integer(), nullable=False),
        sa.Column("parent_run_id", carepath.db.types.Id, nullable=True),
        sa.Column("trigger_event_id", carepath.db.types.Id, nullable=True),
        sa.Column("event_id", carepath.db.types.Id, nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", carepath.db.types.UtcDateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("ended_at", carepath.db.types.UtcDateTime(), nullable=True),
        sa.Column("updated_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_runs_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"], ["resources.id"], name=op.f("fk_runs_resource_id_resources")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_contact_id_workflow"), "runs", ["contact_id", "workflow"])
    op.create_index(
        "ix_runs_due",
        "runs",
        ["wake_at"],
        postgresql_where=sa.text("status IN ('active', 'waiting')"),
        sqlite_where=sa.text("status IN ('active', 'waiting')"),
    )
    op.create_index(
        "ix_runs_waiting_for",
        "runs",
        ["contact_id", "waiting_for"],
        postgresql_where=sa.text("status = 'waiting'"),
        sqlite_where=sa.text("status = 'waiting'"),
    )
    op.create_index(
        op.f("ix_runs_workflow_workflow_version_status"),
        "runs",
        ["workflow", "workflow_version", "status"],
    )
    op.create_table(
        "outbox",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("run_id", carepath.db.types.Id, nullable=True),
        sa.Column("workflow", sa.String(length=100), nullable=True),
        sa.Column("step", sa.String(length=100), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("template", sa.String(length=100), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", carepath.db.types.UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("sent_at", carepath.db.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_outbox_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_outbox_run_id_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_outbox_message_id")),
    )
    op.create_index(op.f("ix_outbox_contact_id"), "outbox", ["contact_id"])
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(op.f("ix_outbox_run_id"), "outbox", ["run_id"])
    op.create_table(
        "run_steps",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("run_id", carepath.db.types.Id, nullable=False),
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("next_step", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("entered_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("left_at", carepath.db.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_steps_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_steps")),
    )
    op.create_index(op.f("ix_run_steps_run_id"), "run_steps", ["run_id"])
    op.create_index(
        op.f("ix_run_steps_workflow_workflow_version_step"),
        "run_steps",
        ["workflow", "workflow_version", "step"],
    )
    op.create_table(
        "tasks",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("run_id", carepath.db.types.Id, nullable=True),
        sa.Column("workflow", sa.String(length=100), nullable=True),
        sa.Column("step", sa.String(length=100), nullable=True),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=100), nullable=True),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("completed_at", carepath.db.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_tasks_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_tasks_run_id_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(op.f("ix_tasks_contact_id"), "tasks", ["contact_id"])
    op.create_index(op.f("ix_tasks_queue_status"), "tasks", ["queue", "status"])


def downgrade() -> None:
    # Children before parents; each table takes its indexes with it.
    for table in (
        "tasks",
        "run_steps",
        "outbox",
        "runs",
        "list_members",
        "events",
        "settings",
        "resources",
        "lists",
        "contacts",
    ):
        op.drop_table(table)
