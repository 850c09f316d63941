"""Contact-center tasks created by journeys; completing one emits `task.completed`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carepath.db.schema import tasks
from carepath.domain.access import Principal, Role
from carepath.errors import Conflict, Forbidden, NotFound
from carepath.services.access import authorize
from carepath.services.events import NewEvent, store_events


def list_tasks(
    conn: Connection,
    *,
    who: Principal,
    now: datetime,
    queue: str | None = None,
    status: str | None = "open",
    limit: int = 100,
) -> list[Row[Any]]:
    """Tasks by id; an agent sees only its own queues."""
    authorize(conn, who, "tasks:read", now=now)
    query = sa.select(tasks).order_by(tasks.c.id).limit(limit)
    if who.limited_to_queues:
        if queue and queue not in who.queues:
            raise Forbidden("an agent sees only the tasks of its queues")
        query = query.where(tasks.c.queue.in_(sorted(who.queues)))
    if queue:
        query = query.where(tasks.c.queue == queue)
    if status:
        query = query.where(tasks.c.status == status)
    return list(conn.execute(query).all())


def claim_task(
    conn: Connection, task_id: int, *, agent: str, now: datetime, who: Principal
) -> Row[Any]:
    """Give an open task to an agent; claiming one's own task again changes nothing.

    An agent's key claims for itself, whatever name it gives.
    """
    _check_queue(conn, who, task_id, now=now)
    if who.role is Role.AGENT:
        agent = who.name
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


def complete_task(
    conn: Connection, task_id: int, *, outcome: str, now: datetime, who: Principal
) -> int:
    """Close an open task with an outcome (e.g. `booked`, `no-answer`) and emit the event;
    the task's contact id."""
    _check_queue(conn, who, task_id, now=now)
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
    return int(row.contact_id)


def _check_queue(conn: Connection, who: Principal, task_id: int, *, now: datetime) -> None:
    authorize(conn, who, "tasks:write", now=now)
    if not who.limited_to_queues:
        return
    queue = conn.execute(sa.select(tasks.c.queue).where(tasks.c.id == task_id)).scalar()
    if queue is not None and queue not in who.queues:
        raise Forbidden("an agent works only the tasks of its queues")
