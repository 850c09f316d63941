"""Taking due runs and advancing them, a batch at a time, in one transaction.

The transaction that advances a batch is the one that takes it: the due runs
are locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so that two workers never
take the same run; on SQLite, BEGIN IMMEDIATE makes one writer at a time),
then their contacts, which event processing locks first too. A contact that
another transaction holds is skipped: its run stays due for a later batch,
and the worker never waits while holding runs, so no two workers wait on each
other in a cycle. A worker that dies mid-batch leaves nothing half-done: its
transaction rolls back and its runs are due again at once, with no lease to
run out first. Nothing about a claim is written to the runs themselves, which
would double the writes to the busiest table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carepath.db.dialect import execute_in_index_order, id_in
from carepath.db.schema import runs
from carepath.domain.conditions import Facts
from carepath.domain.engine import advance_run
from carepath.domain.runs import RunSnapshot, RunStatus
from carepath.domain.workflow import Workflow
from carepath.services.batch_writer import BatchWriter
from carepath.services.cohort_reads import due_by, read_cohorts
from carepath.services.cohort_writes import write_cohort, writes_as_cohort
from carepath.services.contacts import load_facts, lock_contacts
from carepath.services.context import EngineContext
from carepath.services.event_interest import event_interest
from carepath.services.facts import load_events, load_lists, load_segments
from carepath.services.workflow_states import not_paused


@dataclass(frozen=True)
class AdvanceStats:
    runs: int
    steps: int


# What advancing a run one by one needs.
RUN_COLUMNS = (
    runs.c.id, runs.c.contact_id, runs.c.workflow, runs.c.resource_id, runs.c.workflow_version,
    runs.c.status, runs.c.current_step, runs.c.visits, runs.c.chain_depth,
    runs.c.trigger_event_id, runs.c.event_id, runs.c.revision,
)  # fmt: skip

# Below this size a cohort costs more statements than writing its runs one by one.
MIN_COHORT = 8


def lock_due_runs(conn: Connection, *, now: datetime, limit: int) -> list[Row[Any]]:
    """Lock up to `limit` due runs, oldest wake-up first: id, contact_id and resource_id of each."""
    due = (
        sa.select(runs.c.id, runs.c.contact_id, runs.c.resource_id)
        .where(due_by(now), not_paused(runs.c.workflow))
        .order_by(runs.c.wake_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return execute_in_index_order(conn, due)


def advance_due_runs(
    ctx: EngineContext, *, now: datetime, limit: int | None = None
) -> AdvanceStats:
    """Take one batch of due runs and advance each until it waits or ends."""
    with ctx.engine.begin() as conn:
        due = lock_due_runs(conn, now=now, limit=limit or ctx.batch_size)
        return advance_locked(conn, ctx, due, now=now) if due else AdvanceStats(0, 0)


def advance_locked(
    conn: Connection, ctx: EngineContext, due: Sequence[Row[Any]], *, now: datetime
) -> AdvanceStats:
    """Advance the locked runs `due` whose contacts this transaction can lock too.

    Cohorts get set-oriented writes; a contact with several runs in the batch,
    small cohorts and turns with per-contact effects (emails, lists, tasks,
    enrollments) go one by one.
    """
    held = _lock_contacts(conn, due)
    workflows = ctx.cache.workflows_by_id(conn, {r.resource_id for r in held})
    readable = {rid: w for rid, w in workflows.items() if w is not None}
    per_contact = Counter(r.contact_id for r in held)
    grouped = [r.id for r in held if per_contact[r.contact_id] == 1 and r.resource_id in readable]
    one_by_one = sorted({r.id for r in held} - set(grouped))
    advanced = steps = 0
    listened: tuple[frozenset[str] | None] | None = None  # read once, when first needed
    if grouped:
        schema = ctx.cache.current(conn).catalog.schema
        for cohort in read_cohorts(conn, grouped, readable, schema, now=now):
            advance = advance_run(cohort.snapshot, now=now, limits=ctx.limits)
            if len(cohort.ids) < MIN_COHORT or not writes_as_cohort(advance):
                one_by_one += cohort.ids
                continue
            listened = listened or (event_interest(conn),)
            write_cohort(conn, cohort, advance, now=now, listened=listened[0])
            advanced += len(cohort.ids)
            steps += len(advance.records) * len(cohort.ids)
    if one_by_one:
        rows: list[Row[Any]] = list(
            conn.execute(
                sa.select(*RUN_COLUMNS)
                .where(id_in(conn, runs.c.id, one_by_one))
                .order_by(runs.c.id)
            )
        )
        advanced += len(rows)
        steps += _advance_one_by_one(conn, ctx, rows, workflows, now=now) if rows else 0
    return AdvanceStats(advanced, steps)


def _lock_contacts(conn: Connection, due: Sequence[Row[Any]]) -> list[Row[Any]]:
    """The runs of `due` whose contacts are now locked too (PostgreSQL; SQLite: all of them).

    A contact locked elsewhere is skipped rather than waited for, since this
    transaction already holds runs that the other one may be about to write.
    """
    if conn.dialect.name != "postgresql":
        return list(due)  # one writer at a time already
    locked = lock_contacts(conn, {r.contact_id for r in due}, skip_locked=True)
    return [r for r in due if r.contact_id in locked]


def _advance_one_by_one(
    conn: Connection,
    ctx: EngineContext,
    rows: Sequence[Row[Any]],
    workflows: Mapping[int, Workflow | None],
    *,
    now: datetime,
) -> int:
    """Each run's own turn, with every fact its workflow and templates read; returns steps."""
    current = ctx.cache.current(conn)
    resource_ids = {r.resource_id for r in rows}
    contact_ids = {r.contact_id for r in rows}
    fields = ctx.cache.contact_fields(conn, current, resource_ids)
    contacts_ = load_facts(conn, contact_ids, current.catalog.schema, fields=fields)
    lists = load_lists(conn, contact_ids)
    segments = load_segments(conn, contact_ids)
    known = load_events(conn, [*(r.trigger_event_id for r in rows), *(r.event_id for r in rows)])
    writer = BatchWriter(conn, ctx, current, now=now, contacts=contacts_, lists=lists)
    steps = 0
    for row in rows:
        workflow = workflows.get(row.resource_id)
        if workflow is None:
            writer.fail_run(row, "workflow version can no longer be read")
            continue
        # The writer's copies: a contact's earlier run in this batch may have changed them.
        facts = Facts(
            contact=writer.contacts[row.contact_id],
            now=now,
            lists=frozenset(writer.lists.get(row.contact_id, ())),
            segments=frozenset(segments.get(row.contact_id, ())),
            trigger=known.get(row.trigger_event_id) if row.trigger_event_id else None,
            event=known.get(row.event_id) if row.event_id else None,
        )
        snapshot = RunSnapshot(
            id=row.id,
            contact_id=row.contact_id,
            workflow=workflow,
            status=RunStatus(row.status),
            current_step=row.current_step,
            visits=row.visits or {},
            chain_depth=row.chain_depth,
            facts=facts,
        )
        advance = advance_run(snapshot, now=now, limits=ctx.limits)
        steps += len(advance.records)
        writer.add(row, workflow, advance)
    writer.flush()
    return steps
