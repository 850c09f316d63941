"""What every change to runs writes: the run rows, their history, and `workflow.completed`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from carepath.db.dialect import bulk_update
from carepath.db.schema import contacts, events, run_steps, runs
from carepath.domain.runs import RunStatus, StepOutcome, StepRecord
from carepath.services.events import NewEvent
from carepath.services.segment_checks import mark_contacts_where, read_inputs


def write_run_updates(conn: Connection, updates: Sequence[Mapping[str, Any]]) -> None:
    """Each mapping has `id` and the new values; one statement for the batch."""
    bulk_update(conn, runs, updates)


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


def history_values(record: StepRecord, *, now: datetime) -> dict[str, Any]:
    """The `run_steps` columns one step execution sets, apart from whose run it is."""
    failed = record.outcome is StepOutcome.FAILED
    return {
        "step": record.step,
        "kind": record.kind,
        "outcome": record.outcome.value,
        "next_step": record.next_step,
        "detail": None if failed else record.detail,
        "error": record.detail if failed else None,
        "entered_at": now,
        "left_at": None if record.outcome is StepOutcome.WAITING else now,
    }


COMPLETION_TYPE = "workflow.completed"


def completion_event(row: Any, status: RunStatus, *, now: datetime) -> NewEvent:
    """`workflow.completed` for a run that completed or converted; one per run."""
    return NewEvent(
        type=COMPLETION_TYPE,
        contact_id=row.contact_id,
        occurred_at=now,
        idempotency_key=f"run:{row.id}:{status.value}",
        data={"workflow": row.workflow, "status": status.value},
        source="engine",
        chain_depth=row.chain_depth + 1,
    )


def store_completion_events(
    conn: Connection,
    members: Any,
    workflow: str,
    status: RunStatus,
    *,
    chain_depth: int,
    now: datetime,
    processed: bool,
) -> None:
    """`completion_event` for many runs of one workflow in one INSERT … SELECT.

    `members` is a table of the runs (`run_id`, `contact_id`) with the same
    chain depth; keys already stored are kept.
    """
    if conn.dialect.name == "postgresql":
        insert: Any = postgresql.insert(events)
        data = sa.func.jsonb_build_object
    else:
        insert = sqlite.insert(events)
        data = sa.func.json_object
    run_id = members.c.run_id
    key = sa.literal("run:") + sa.cast(run_id, sa.String) + sa.literal(f":{status.value}")
    received = sa.literal(now, events.c.received_at.type)
    selected = sa.select(
        key,
        sa.literal(COMPLETION_TYPE),
        members.c.contact_id,
        received,
        received,
        data("workflow", workflow, "status", status.value),
        sa.literal("engine"),
        sa.literal(chain_depth + 1, events.c.chain_depth.type),
        received if processed else sa.null(),
    ).select_from(members)
    selected = selected.where(sa.true())  # SQLite reads ON CONFLICT after a bare FROM as a join
    columns = ["idempotency_key", "type", "contact_id", "occurred_at", "received_at", "data"]
    columns += ["source", "chain_depth", "processed_at"]
    conn.execute(insert.from_select(columns, selected).on_conflict_do_nothing())
    if COMPLETION_TYPE in read_inputs(conn).event_types:
        ended = sa.select(members.c.contact_id)
        mark_contacts_where(conn, contacts.c.id.in_(ended.scalar_subquery()), now=now)
