"""Writing one decision for a whole cohort of runs: a few statements, whatever its size.

A cohort's members share their `Advance` (see `domain.cohorts`), so the run
rows, the history rows, the contact change and the completion events are
each one set-oriented statement over the members' ids. Even tags, which
differ per contact, are edited in SQL from each contact's own list. The
history, the contacts and the events are written from the members' run and
contact ids as given, without reading the runs again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import id_in, id_rows
from carepath.db.schema import contacts, run_steps, runs
from carepath.domain.runs import (
    COMPLETION_STATUSES,
    TERMINAL_STATUSES,
    Advance,
    UpdateContact,
)
from carepath.services.cohort_reads import Cohort
from carepath.services.contact_changes import write_shared_change
from carepath.services.event_interest import arrives_processed
from carepath.services.run_writes import (
    COMPLETION_TYPE,
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
    ids = cohort.ids
    _close_open_waits(conn, ids, advance, now=now)
    conn.execute(
        runs.update()
        .where(id_in(conn, runs.c.id, ids))
        .values(
            status=advance.status.value,
            current_step=advance.current_step,
            wake_at=advance.wake_at,
            waiting_for=advance.waiting_for,
            visits=dict(advance.visits),
            reason=advance.reason,
            ended_at=now if advance.status in TERMINAL_STATUSES else None,
            updated_at=now,
            revision=runs.c.revision + 1,
        )
    )
    _append_history(conn, cohort, [history_values(r, now=now) for r in advance.records])
    updates = [e for e in advance.effects if isinstance(e, UpdateContact)]
    if updates:
        write_shared_change(conn, id_in(conn, contacts.c.id, cohort.contact_ids), updates, now=now)
    if advance.status in COMPLETION_STATUSES:
        processed = arrives_processed(listened, COMPLETION_TYPE)
        store_completion_events(
            conn,
            _members(conn, cohort),
            cohort.workflow,
            advance.status,
            chain_depth=cohort.snapshot.chain_depth,
            now=now,
            processed=processed,
        )


def _members(conn: Connection, cohort: Cohort) -> Any:
    """The member runs as a table (`run_id`, `contact_id`)."""
    return id_rows(conn, "member", {"run_id": cohort.ids, "contact_id": cohort.contact_ids})


def _close_open_waits(
    conn: Connection, ids: Sequence[int], advance: Advance, *, now: datetime
) -> None:
    if advance.closed_wait is None:
        return
    first = advance.records[0].step if advance.records else None
    conn.execute(
        run_steps.update()
        .where(id_in(conn, run_steps.c.run_id, ids), run_steps.c.left_at.is_(None))
        .values(left_at=now, outcome=advance.closed_wait.value, next_step=first)
    )


def _append_history(conn: Connection, cohort: Cohort, records: Sequence[Mapping[str, Any]]) -> None:
    """The history rows of every member run, in one statement: each run with each record.

    The records' values are constants. Rows go in record by record, each in run
    id order, as one statement per record would write them.
    """
    if not records:
        return
    names = list(records[0])
    constants = sa.union_all(
        *(
            sa.select(
                sa.literal(order).label("record_order"),
                *(sa.literal(values[n], run_steps.c[n].type).label(n) for n in names),
            )
            for order, values in enumerate(records)
        )
    ).subquery("record")
    members = _members(conn, cohort)
    selected = (
        sa.select(
            members.c.run_id,
            members.c.contact_id,
            sa.literal(cohort.workflow, run_steps.c.workflow.type),
            sa.literal(cohort.workflow_version, run_steps.c.workflow_version.type),
            *(constants.c[n] for n in names),
        )
        .select_from(members.join(constants, sa.true()))
        .order_by(constants.c.record_order, members.c.run_id)
    )
    columns = ["run_id", "contact_id", "workflow", "workflow_version", *names]
    conn.execute(run_steps.insert().from_select(columns, selected))
