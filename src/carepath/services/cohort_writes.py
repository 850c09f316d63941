"""Writing one decision for a whole cohort of runs: a few statements, whatever its size.

A cohort's members share their `Advance` (see `domain.cohorts`), so the run
rows, the history rows, the contact change and the completion events are
each one set-oriented statement over the members' ids. Even tags, which
differ per contact, are edited in SQL from each contact's own list. The
history, the contacts and the events are written from the members' run and
contact ids as given, without reading the runs again.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from carepath.db.dialect import id_in, id_rows, id_rows_values, in_id_rows, json_rows
from carepath.db.schema import contacts, run_steps, runs
from carepath.domain.runs import (
    COMPLETION_STATUSES,
    TERMINAL_STATUSES,
    Advance,
    StepRecord,
    UpdateContact,
)
from carepath.services.cohort_reads import Cohort
from carepath.services.contact_changes import write_shared_change
from carepath.services.event_interest import arrives_processed
from carepath.services.run_writes import (
    COMPLETION_TYPE,
    MEMBER,
    history_values,
    store_completion_events,
)


def writes_as_cohort(advance: Advance) -> bool:
    """Whether the decision's effects are the same for every member (contact updates only).

    Emails render per contact; list changes, tasks and enrollments emit per-contact
    events and rows: those runs are written one by one.
    """
    return all(isinstance(e, UpdateContact) for e in advance.effects)


def write_cohort(
    conn: Connection,
    cohort: Cohort,
    advance: Advance,
    *,
    now: datetime,
    listened: frozenset[str] | None,
) -> None:
    """Apply `advance` to every member run; members' contacts are distinct."""
    dialect = conn.dialect.name
    members = id_rows_values(
        dialect, "member", {"run_id": cohort.ids, "contact_id": cohort.contact_ids}
    )
    if advance.closed_wait is not None:
        first = advance.records[0].step if advance.records else None
        closed = {"closed_at": now, "closed_outcome": advance.closed_wait.value}
        conn.execute(_wait_closing(dialect), members | closed | {"closed_next": first})
    decided = {
        "new_status": advance.status.value,
        "new_step": advance.current_step,
        "new_wake_at": advance.wake_at,
        "new_waiting_for": advance.waiting_for,
        "new_visits": dict(advance.visits),
        "new_reason": advance.reason,
        "new_ended_at": now if advance.status in TERMINAL_STATUSES else None,
        "new_updated_at": now,
    }
    conn.execute(_run_update(dialect), members | decided)
    _append_history(conn, cohort, members, advance.records, now=now)
    updates = [e for e in advance.effects if isinstance(e, UpdateContact)]
    if updates:
        write_shared_change(conn, id_in(conn, contacts.c.id, cohort.contact_ids), updates, now=now)
    if advance.status in COMPLETION_STATUSES:
        processed = arrives_processed(listened, COMPLETION_TYPE)
        store_completion_events(
            conn,
            members,
            cohort.workflow,
            advance.status,
            chain_depth=cohort.snapshot.chain_depth,
            now=now,
            processed=processed,
        )


@functools.cache
def _wait_closing(dialect: str) -> Any:
    """Close the member runs' open history row (their wait), built once per dialect."""
    return (
        run_steps.update()
        .where(
            in_id_rows(dialect, run_steps.c.run_id, "member", MEMBER, "run_id"),
            run_steps.c.left_at.is_(None),
        )
        .values(
            left_at=sa.bindparam("closed_at", type_=run_steps.c.left_at.type),
            outcome=sa.bindparam("closed_outcome", type_=run_steps.c.outcome.type),
            next_step=sa.bindparam("closed_next", type_=run_steps.c.next_step.type),
        )
    )


@functools.cache
def _run_update(dialect: str) -> Any:
    """The member runs' new state, built once per dialect."""
    new = {
        "status": "new_status",
        "current_step": "new_step",
        "wake_at": "new_wake_at",
        "waiting_for": "new_waiting_for",
        "visits": "new_visits",
        "reason": "new_reason",
        "ended_at": "new_ended_at",
        "updated_at": "new_updated_at",
    }
    return (
        runs.update()
        .where(in_id_rows(dialect, runs.c.id, "member", MEMBER, "run_id"))
        .values(
            {c: sa.bindparam(key, type_=runs.c[c].type) for c, key in new.items()}
            | {"revision": runs.c.revision + 1}
        )
    )


# What a history row takes from its step record; the rest is the member's and the time's.
_RECORD_COLUMNS: dict[str, TypeEngine[Any]] = {
    "n": sa.Integer(),
    "step": sa.String(),
    "kind": sa.String(),
    "outcome": sa.String(),
    "next_step": sa.String(),
    "detail": sa.String(),
    "error": sa.String(),
    "open": sa.Boolean(),
}


@functools.cache
def _history_insert(dialect: str) -> Any:
    """Each member run with each record, record by record, each in run id order.

    Built once per dialect: the members, the records and the time are parameters.
    """
    members = id_rows(dialect, "member", MEMBER)
    record = json_rows(dialect, "record", _RECORD_COLUMNS)
    now = sa.bindparam("now", type_=run_steps.c.entered_at.type)
    texts = [n for n in _RECORD_COLUMNS if n not in ("n", "open")]
    selected = (
        sa.select(
            members.c.run_id,
            members.c.contact_id,
            sa.bindparam("workflow", type_=run_steps.c.workflow.type),
            sa.bindparam("workflow_version", type_=run_steps.c.workflow_version.type),
            *(record.c[n] for n in texts),
            now,
            sa.case((record.c.open, sa.null()), else_=now),
        )
        .select_from(members.join(record, sa.true()))
        .order_by(record.c.n, members.c.run_id)
    )
    columns = ["run_id", "contact_id", "workflow", "workflow_version", *texts]
    return run_steps.insert().from_select([*columns, "entered_at", "left_at"], selected)


def _append_history(
    conn: Connection,
    cohort: Cohort,
    members: dict[str, str],
    records: Sequence[StepRecord],
    *,
    now: datetime,
) -> None:
    """The history rows of every member run, in one statement (see `history_values`)."""
    if not records:
        return
    rows = []
    for n, record in enumerate(records):
        values = history_values(record, now=now)
        rows.append(
            {k: values[k] for k in _RECORD_COLUMNS if k in values}
            | {"n": n, "open": values["left_at"] is None}
        )
    params = members | {"record_json": json.dumps(rows), "now": now}
    params |= {"workflow": cohort.workflow, "workflow_version": cohort.workflow_version}
    conn.execute(_history_insert(conn.dialect.name), params)
