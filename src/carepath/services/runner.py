"""Claiming due runs and advancing them, a batch at a time.

Two short transactions per batch: the claim (lease, SKIP LOCKED on
PostgreSQL) and the write. The write reads the runs' state itself, only for
runs this worker still holds: a run another worker took over after the lease
ran out is left alone, so no step is ever executed twice.
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
from carepath.db.schema import LIVE_RUN, contacts, runs
from carepath.domain.conditions import Facts
from carepath.domain.engine import advance_run
from carepath.domain.runs import RunSnapshot, RunStatus
from carepath.domain.workflow import Workflow
from carepath.services.batch_writer import BatchWriter
from carepath.services.clock import wall_time
from carepath.services.cohort_reads import owned_and_due, read_cohorts
from carepath.services.cohort_writes import write_cohort, writes_as_cohort
from carepath.services.contacts import load_facts
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


def claim_due_runs(
    conn: Connection, ctx: EngineContext, *, now: datetime, limit: int
) -> list[Row[Any]]:
    """Lease up to `limit` due runs to this worker: id, contact_id and resource_id of each."""
    wall = wall_time()
    due = (
        sa.select(runs.c.id)
        .where(
            LIVE_RUN,
            runs.c.wake_at <= now,
            sa.or_(runs.c.lease_until.is_(None), runs.c.lease_until < wall),
            not_paused(runs.c.workflow),
        )
        .order_by(runs.c.wake_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if conn.dialect.name == "postgresql":
        # = ANY(ARRAY(…)): the planner cannot turn it into a join over the whole table.
        chosen = runs.c.id == sa.any_(sa.func.array(due.scalar_subquery()))
    else:
        chosen = runs.c.id.in_(due.scalar_subquery())
    return execute_in_index_order(
        conn,
        runs.update()
        .where(chosen)
        .values(lease_owner=ctx.worker_id, lease_until=wall + ctx.lease)
        .returning(runs.c.id, runs.c.contact_id, runs.c.resource_id),
    )


def advance_due_runs(
    ctx: EngineContext, *, now: datetime, limit: int | None = None
) -> AdvanceStats:
    """Claim one batch of due runs and advance each until it waits or ends."""
    with ctx.engine.begin() as conn:
        claimed = claim_due_runs(conn, ctx, now=now, limit=limit or ctx.batch_size)
    if not claimed:
        return AdvanceStats(0, 0)
    try:
        with ctx.engine.begin() as conn:
            return advance_claimed(conn, ctx, claimed, now=now)
    except Exception:
        with ctx.engine.begin() as conn:  # best effort: let the runs be claimed again at once
            _release(conn, ctx, [r.id for r in claimed])
        raise


def _release(conn: Connection, ctx: EngineContext, ids: list[int]) -> None:
    conn.execute(
        runs.update()
        .where(id_in(conn, runs.c.id, ids), runs.c.lease_owner == ctx.worker_id)
        .values(lease_owner=None, lease_until=None)
    )


def advance_claimed(
    conn: Connection, ctx: EngineContext, claimed: Sequence[Row[Any]], *, now: datetime
) -> AdvanceStats:
    """Advance the claimed runs this worker still holds and that are still due.

    The state is read inside this transaction, after the contacts are locked
    (events take the same locks first), so a run an event moved since the
    claim is advanced from where the event left it. Cohorts get set-oriented
    writes; a contact with several runs in the batch, small cohorts and turns
    with per-contact effects (emails, lists, tasks, enrollments) go one by one.
    """
    ids = [r.id for r in claimed]
    _lock_contacts(conn, ids)
    workflows = ctx.cache.workflows_by_id(conn, {r.resource_id for r in claimed})
    readable = {rid: w for rid, w in workflows.items() if w is not None}
    per_contact = Counter(r.contact_id for r in claimed)
    grouped = [
        r.id for r in claimed if per_contact[r.contact_id] == 1 and r.resource_id in readable
    ]
    one_by_one = sorted(set(ids) - set(grouped))
    written: set[int] = set()  # each write releases its runs' leases
    steps = 0
    listened: tuple[frozenset[str] | None] | None = None  # read once, when first needed
    if grouped:
        schema = ctx.cache.current(conn).catalog.schema
        cohorts = read_cohorts(conn, grouped, readable, schema, owner=ctx.worker_id, now=now)
        for cohort in cohorts:
            advance = advance_run(cohort.snapshot, now=now, limits=ctx.limits)
            if len(cohort.ids) < MIN_COHORT or not writes_as_cohort(advance):
                one_by_one += cohort.ids
                continue
            listened = listened or (event_interest(conn),)
            write_cohort(conn, cohort.ids, advance, now=now, listened=listened[0])
            written.update(cohort.ids)
            steps += len(advance.records) * len(cohort.ids)
    if one_by_one:
        rows: list[Row[Any]] = list(
            conn.execute(
                sa.select(*RUN_COLUMNS)
                .where(owned_and_due(conn, one_by_one, ctx.worker_id, now))
                .order_by(runs.c.id)
            )
        )
        written.update(r.id for r in rows)
        steps += _advance_one_by_one(conn, ctx, rows, workflows, now=now) if rows else 0
    if len(written) < len(ids):  # an event moved some out of reach: give them back
        _release(conn, ctx, sorted(set(ids) - written))
    return AdvanceStats(len(written), steps)


def _lock_contacts(conn: Connection, run_ids: list[int]) -> None:
    """PostgreSQL: lock the batch's contacts in id order, as event processing does first."""
    if conn.dialect.name != "postgresql":
        return  # one writer at a time already
    of_runs = sa.select(runs.c.contact_id).where(id_in(conn, runs.c.id, run_ids))
    locked = (
        sa.select(contacts.c.id)
        .where(contacts.c.id.in_(of_runs.scalar_subquery()))
        .order_by(contacts.c.id)
        .with_for_update()
    )
    conn.execute(sa.select(sa.func.count()).select_from(locked.subquery()))


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
