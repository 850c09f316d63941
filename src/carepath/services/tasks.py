"""Contact-center tasks created by journeys; completing one emits `task.completed`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carepath.db.schema import tasks
from carepath.errors import Conflict, NotFound
from carepath.services.events import NewEvent, store_events


def list_tasks(
    conn: Connection, *, queue: str | None = None, status: str | None = "open", limit: int = 100
) -> list[Row[Any]]:
    query = sa.select(tasks).order_by(tasks.c.id).limit(limit)
    if queue:
        query = query.where(tasks.c.queue == queue)
    if status:
        query = query.where(tasks.c.status == status)
    return list(conn.execute(query).all())


def claim_task(conn: Connection, task_id: int, *, agent: str, now: datetime) -> Row[Any]:
    """Give an open task to an agent; claiming one's own task again changes nothing."""
    claimed = conn.execute(
        tasks.update()
        .where(
            tasks.c.id == task_id,
            tasks.c.status == "open",
            sa.or_(tasks.c.assignee.is_(None), tasks.c.assignee == agent),
        )
        .values(assignee=agent, claimed_at=sa.func.coalesce(tasks.c.claimed_at, now))
        .returning(*tasks.c)
    ).first()
    if claimed is not None:
        return claimed
    row = conn.execute(sa.select(tasks.c.status).where(tasks.c.id == task_id)).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    if row.status != "open":
        raise Conflict(f"task {task_id} is already {row.status}")
    raise Conflict(f"task {task_id} is claimed by another agent")


def complete_task(conn: Connection, task_id: int, *, outcome: str, now: datetime) -> None:
    """Close an open task with an outcome (e.g. `booked`, `no-answer`) and emit the event."""
    row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    if row.status != "open":
        raise Conflict(f"task {task_id} is already {row.status}")
    conn.execute(
        tasks.update()
        .where(tasks.c.id == task_id)
        .values(status="completed", outcome=outcome, completed_at=now)
    )
    store_events(
        conn,
        [
            NewEvent(
                "task.completed",
                row.contact_id,
                now,
                f"task:{task_id}:completed",
                {
                    "task_id": task_id,
                    "queue": row.queue,
                    "outcome": outcome,
                    "workflow": row.workflow,
                    "step": row.step,
                },
                "agent",
            )
        ],
        now=now,
    )
