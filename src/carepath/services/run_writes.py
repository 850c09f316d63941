"""What every change to runs writes: the run rows, their history, and `workflow.completed`."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from carepath.db.dialect import bulk_update, id_rows, in_id_rows
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

# The member runs of a cohort write, as `id_rows(…, "member", MEMBER)` parameters.
MEMBER = ("run_id", "contact_id")


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
    members: Mapping[str, str],
    workflow: str,
    status: RunStatus,
    *,
    chain_depth: int,
    now: datetime,
    processed: bool,
) -> None:
    """`completion_event` for many runs of one workflow in one INSERT … SELECT.

    `members` are the parameters of `id_rows(…, "member", MEMBER)`,
    runs with the same chain depth; keys already stored are kept.
    """
    params = dict(members) | {
        "key_prefix": "run:",
        "key_suffix": f":{status.value}",
        "event_type": COMPLETION_TYPE,
        "received": now,
        "workflow": workflow,
        "status": status.value,
        "source": "engine",
        "chain_depth": chain_depth + 1,
        "processed_at": now if processed else None,
    }
    conn.execute(_completion_insert(conn.dialect.name), params)
    if COMPLETION_TYPE in read_inputs(conn).event_types:
        which = in_id_rows(conn.dialect.name, contacts.c.id, "member", MEMBER, "contact_id")
        mark_contacts_where(conn, which, now=now, params=members)


@functools.cache
def _completion_insert(dialect: str) -> Any:
    """The insert of `store_completion_events`, built once per dialect."""
    if dialect == "postgresql":
        insert: Any = postgresql.insert(events)
        data = sa.func.jsonb_build_object
    else:
        insert = sqlite.insert(events)
        data = sa.func.json_object
    members = id_rows(dialect, "member", MEMBER)
    text = sa.String()
    key = (
        sa.bindparam("key_prefix", type_=text)
        + sa.cast(members.c.run_id, sa.String)
        + sa.bindparam("key_suffix", type_=text)
    )
    received = sa.bindparam("received", type_=events.c.received_at.type)
    workflow = sa.bindparam("workflow", type_=text)
    selected = sa.select(
        key,
        sa.bindparam("event_type", type_=text),
        members.c.contact_id,
        received,
        received,
        data("workflow", workflow, "status", sa.bindparam("status", type_=text)),
        sa.bindparam("source", type_=text),
        sa.bindparam("chain_depth", type_=events.c.chain_depth.type),
        sa.bindparam("processed_at", type_=events.c.processed_at.type),
    ).select_from(members)
    selected = selected.where(sa.true())  # SQLite reads ON CONFLICT after a bare FROM as a join
    columns = ["idempotency_key", "type", "contact_id", "occurred_at", "received_at", "data"]
    columns += ["source", "chain_depth", "processed_at"]
    return insert.from_select(columns, selected).on_conflict_do_nothing()
