"""Rows delivered after commit (outbox messages, webhook calls): which are due, and leasing them.

Both tables have `status`, `next_attempt_at`, `lease_owner` and `lease_until`:
a row is due when it is pending, its next attempt has come, and no live
lease holds it; a worker leases a batch with SKIP LOCKED so that two workers
never take the same row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carepath.db.dialect import execute_in_index_order


def due_for_attempt(table: sa.Table, now: Any, wall: Any) -> sa.ColumnElement[bool]:
    """Pending, its attempt due at business time `now`, no lease live at wall time `wall`."""
    return sa.and_(
        table.c.status == "pending",
        table.c.next_attempt_at <= now,
        sa.or_(table.c.lease_until.is_(None), table.c.lease_until < wall),
    )


def lease_due(
    conn: Connection,
    table: sa.Table,
    *,
    now: datetime,
    wall: datetime,
    owner: str,
    lease: timedelta,
    limit: int,
    returning: sa.ColumnElement[Any] | sa.Table,
) -> list[Row[Any]]:
    """Lease up to `limit` due rows, oldest attempt first, to `owner`; `returning` of each."""
    due = (
        sa.select(table.c.id)
        .where(due_for_attempt(table, now, wall))
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    columns = list(returning.c) if isinstance(returning, sa.Table) else [returning]
    return execute_in_index_order(
        conn,
        table.update()
        .where(table.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_until=wall + lease)
        .returning(*columns),
    )
