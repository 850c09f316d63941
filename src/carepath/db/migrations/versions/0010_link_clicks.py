"""Clicks by people per link on each message's outbox row, backfilled from the click events.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PG_BACKFILL = """
UPDATE outbox SET link_clicks = counted.links
FROM (
  SELECT outbox_id, jsonb_object_agg(link, clicks) AS links FROM (
    SELECT (data ->> 'outbox_id')::bigint AS outbox_id,
           CASE WHEN jsonb_typeof(data -> 'link') = 'number' AND data ->> 'link' ~ '^[0-9]{1,3}$'
                THEN data ->> 'link' ELSE '?' END AS link,
           count(*) AS clicks
    FROM events
    WHERE type = 'email.clicked' AND coalesce(data ->> 'machine', 'false') <> 'true'
      AND jsonb_typeof(data -> 'outbox_id') = 'number'
    GROUP BY 1, 2
  ) AS per_link GROUP BY outbox_id
) AS counted
WHERE outbox.id = counted.outbox_id
"""
_SQLITE_BACKFILL = """
UPDATE outbox SET link_clicks = (
  SELECT json_group_object(link, clicks) FROM (
    SELECT CASE WHEN json_type(data, '$.link') = 'integer'
                 AND json_extract(data, '$.link') BETWEEN 0 AND 999
                THEN CAST(json_extract(data, '$.link') AS TEXT) ELSE '?' END AS link,
           count(*) AS clicks
    FROM events
    WHERE type = 'email.clicked' AND json_extract(data, '$.outbox_id') = outbox.id
      AND coalesce(json_type(data, '$.machine'), 'false') <> 'true'
    GROUP BY 1
  )
)
WHERE clicked_at IS NOT NULL
"""


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("link_clicks", carepath.db.types.Json, nullable=True))
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute(_PG_BACKFILL if postgres else _SQLITE_BACKFILL)
    op.create_index(
        "ix_outbox_link_clicks",
        "outbox",
        ["workflow"],
        postgresql_where=sa.text("link_clicks IS NOT NULL"),
        sqlite_where=sa.text("link_clicks IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_link_clicks", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("link_clicks")
