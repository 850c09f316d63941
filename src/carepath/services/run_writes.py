"""The two writes every change to runs makes: the run rows, and closing their open waits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from carepath.db.dialect import bulk_update
from carepath.db.schema import run_steps, runs
from carepath.domain.runs import RunStatus
from carepath.services.events import NewEvent


def write_run_updates(
    conn: Connection, updates: Sequence[Mapping[str, Any]], *, release_lease: bool
) -> None:
    """Each mapping has `id` and the new values; one statement for the batch."""
    constants = {"lease_owner": None, "lease_until": None} if release_lease else {}
    bulk_update(conn, runs, updates, constants=constants)


def close_open_steps(
    conn: Connection, closes: Sequence[Mapping[str, Any]], *, now: datetime
) -> None:
    """Close the open history row (a wait) of each run: `run_id`, `outcome`, `next_step`."""
    bulk_update(
        conn,
        run_steps,
        closes,
        match=("run_id",),
        constants={"left_at": now},
        where=(run_steps.c.left_at.is_(None),),
    )


def completion_event(row: Any, status: RunStatus, *, now: datetime) -> NewEvent:
    """`workflow.completed` for a run that completed or converted; one per run."""
    return NewEvent(
        type="workflow.completed",
        contact_id=row.contact_id,
        occurred_at=now,
        idempotency_key=f"run:{row.id}:{status.value}",
        data={"workflow": row.workflow, "status": status.value},
        source="engine",
        chain_depth=row.chain_depth + 1,
    )
