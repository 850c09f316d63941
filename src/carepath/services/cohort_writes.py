"""Writing one decision for a whole cohort of runs: a few statements, whatever its size.

A cohort's members share their `Advance` (see `domain.cohorts`), so the run
rows, the history rows, the contact change and the completion events are
each one set-oriented statement over the members' ids. Even tags, which
differ per contact, are edited in SQL from each contact's own list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import id_in
from carepath.db.schema import contacts, run_steps, runs
from carepath.domain.runs import (
    COMPLETION_STATUSES,
    TERMINAL_STATUSES,
    Advance,
    UpdateContact,
)
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
    ids: Sequence[int],
    advance: Advance,
    *,
    now: datetime,
    listened: frozenset[str] | None,
) -> None:
    """Apply `advance` to every member run; members' contacts are distinct."""
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
    _append_history(conn, ids, [history_values(r, now=now) for r in advance.records])
    _change_contacts(conn, ids, advance, now=now)
    if advance.status in COMPLETION_STATUSES:
        processed = arrives_processed(listened, COMPLETION_TYPE)
        store_completion_events(conn, ids, advance.status, now=now, processed=processed)


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


def _append_history(
    conn: Connection, ids: Sequence[int], records: Sequence[Mapping[str, Any]]
) -> None:
    """The history rows of every member run, in one statement: each run with each record.

    Whose run it is comes from the run row; the records' values are constants.
    Rows go in record by record, each in run id order, as one statement per
    record would write them.
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
    selected = (
        sa.select(
            runs.c.id,
            runs.c.contact_id,
            runs.c.workflow,
            runs.c.workflow_version,
            *(constants.c[n] for n in names),
        )
        .select_from(runs.join(constants, sa.true()))
        .where(id_in(conn, runs.c.id, ids))
        .order_by(constants.c.record_order, runs.c.id)
    )
    columns = ["run_id", "contact_id", "workflow", "workflow_version", *names]
    conn.execute(run_steps.insert().from_select(columns, selected))


def _change_contacts(
    conn: Connection, ids: Sequence[int], advance: Advance, *, now: datetime
) -> None:
    updates = [e for e in advance.effects if isinstance(e, UpdateContact)]
    if updates:
        of_runs = sa.select(runs.c.contact_id).where(id_in(conn, runs.c.id, ids))
        which = contacts.c.id.in_(of_runs.scalar_subquery())
        write_shared_change(conn, which, updates, now=now)
