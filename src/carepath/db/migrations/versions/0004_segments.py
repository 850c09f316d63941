"""Segments (membership, re-check queue, refresh times) and date-trigger scans.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_members",
        sa.Column("segment_name", sa.String(length=100), nullable=False),
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("entered_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_segment_members_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("segment_name", "contact_id", name=op.f("pk_segment_members")),
    )
    op.create_index(
        op.f("ix_segment_members_contact_id"), "segment_members", ["contact_id"], unique=False
    )
    op.create_table(
        "segment_checks",
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("marked_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_segment_checks_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_segment_checks")),
    )
    op.create_table(
        "segment_refreshes",
        sa.Column("segment_name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("time_relative", sa.Boolean(), nullable=False),
        sa.Column("refreshed_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("segment_name", name=op.f("pk_segment_refreshes")),
    )
    op.create_table(
        "date_trigger_scans",
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("scanned_through", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workflow", name=op.f("pk_date_trigger_scans")),
    )


def downgrade() -> None:
    op.drop_table("date_trigger_scans")
    op.drop_table("segment_refreshes")
    op.drop_table("segment_checks")
    op.drop_index(op.f("ix_segment_members_contact_id"), table_name="segment_members")
    op.drop_table("segment_members")
