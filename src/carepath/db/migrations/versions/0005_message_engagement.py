"""What happened to each message, on its outbox row: opens, clicks, bounce, complaint, unsubscribe.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

# The backfill's SQL is assembled from the constants below only, never from input.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MOMENTS = ("opened_at", "machine_opened_at", "clicked_at", "complained_at", "unsubscribed_at")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        for name in _MOMENTS:
            batch.add_column(sa.Column(name, carepath.db.types.UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("clicks", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("bounce", sa.String(length=8), nullable=True))
    _backfill()


def _backfill() -> None:
    """Messages sent before this version: their state from the events that name them."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        about = "(e.data ->> 'outbox_id')::bigint = outbox.id"
        machine = "coalesce(e.data ->> 'machine', 'false') = 'true'"
        bounce = "e.data ->> 'bounce'"
    else:
        about = "json_extract(e.data, '$.outbox_id') = outbox.id"
        machine = "coalesce(json_type(e.data, '$.machine'), 'false') = 'true'"
        bounce = "json_extract(e.data, '$.bounce')"

    def first(kind: str, extra: str = "") -> str:
        return (
            f"(SELECT min(e.occurred_at) FROM events e WHERE e.type = '{kind}' AND {about}{extra})"
        )

    op.execute(
        "UPDATE outbox SET "
        f"opened_at = {first('email.opened', f' AND NOT {machine}')}, "
        f"machine_opened_at = {first('email.opened', f' AND {machine}')}, "
        f"clicked_at = {first('email.clicked', f' AND NOT {machine}')}, "
        "clicks = (SELECT count(*) FROM events e WHERE e.type = 'email.clicked' "
        f"AND {about} AND NOT {machine}), "
        f"bounce = (SELECT max({bounce}) FROM events e WHERE e.type = 'email.bounced' "
        f"AND {about}), "
        f"complained_at = {first('email.complained')}, "
        f"unsubscribed_at = {first('email.unsubscribed')} "
        "WHERE sent_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        for name in (*_MOMENTS, "clicks", "bounce"):
            batch.drop_column(name)
