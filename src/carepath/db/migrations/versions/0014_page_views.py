"""First-party page-view tracking: visitor tokens, and page views counted per day and path.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "visitors",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("contact_id", carepath.db.types.Id, nullable=False),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("expires_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_visitors_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_visitors")),
    )
    op.create_index(op.f("ix_visitors_contact_id"), "visitors", ["contact_id"])
    op.create_index(op.f("ix_visitors_expires_at"), "visitors", ["expires_at"])
    op.create_table(
        "page_view_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("anonymous", sa.Integer(), nullable=False),
        sa.Column("identified", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "path", name=op.f("pk_page_view_counts")),
    )


def downgrade() -> None:
    op.drop_table("page_view_counts")
    op.drop_index(op.f("ix_visitors_expires_at"), table_name="visitors")
    op.drop_index(op.f("ix_visitors_contact_id"), table_name="visitors")
    op.drop_table("visitors")
