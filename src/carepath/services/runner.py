"""Claiming due runs and advancing them, a batch at a time.

Two short transactions per batch: the claim (lease, SKIP LOCKED on
PostgreSQL) and the write. The write re-checks ownership and the row's
revision, so a run that another worker took over, or that an event moved
in between, is left alone: no step is ever executed twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carepath.db.schema import LIVE_RUN, runs
from carepath.domain.cohorts import RunPosition, cohort_key, turn_inputs
from carepath.domain.conditions import EventFacts, Facts
from carepath.domain.engine import advance_run
from carepath.domain.runs import Advance, RunSnapshot, RunStatus
from carepath.domain.workflow import Workflow
from carepath.services.batch_writer import BatchWriter
from carepath.services.clock import wall_time
from carepath.services.cohort_writes import write_cohort, writes_as_cohort
from carepath.services.contacts import load_facts, load_fields
from carepath.services.context import EngineContext
from carepath.services.event_interest import event_interest
from carepath.services.facts import load_events, load_lists


@dataclass(frozen=True)
class AdvanceStats:
    runs: int
    steps: int


# What advancing a run needs: returned by the claim, so nothing is read twice.
CLAIMED_COLUMNS = (
    runs.c.id, runs.c.contact_id, runs.c.workflow, runs.c.resource_id, runs.c.workflow_version,
    runs.c.status, runs.c.current_step, runs.c.visits, runs.c.chain_depth,
    runs.c.trigger_event_id, runs.c.event_id, runs.c.revision,
)  # fmt: skip


def claim_due_runs(
    conn: Connection, ctx: EngineContext, *, now: datetime, limit: int
) -> dict[int, Row[Any]]:
    """Lease up to `limit` due runs to this worker: run id -> the run as claimed."""
    wall = wall_time()
    due = (
        sa.select(runs.c.id)
        .where(
            LIVE_RUN,
            runs.c.wake_at <= now,
            sa.or_(runs.c.lease_until.is_(None), runs.c.lease_until < wall),
        )
        .order_by(runs.c.wake_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = conn.execute(
        runs.update()
        .where(runs.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=ctx.worker_id, lease_until=wall + ctx.lease)
        .returning(*CLAIMED_COLUMNS)
    )
    return {row.id: row for row in claimed}


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
        release_leases(ctx, claimed)
        raise


def release_leases(ctx: EngineContext, claimed: dict[int, Row[Any]]) -> None:
    """Best effort after a failed write: let the runs be claimed again at once."""
    with ctx.engine.begin() as conn:
        _release(conn, ctx, set(claimed))


def _release(conn: Connection, ctx: EngineContext, ids: set[int]) -> None:
    conn.execute(
        runs.update()
        .where(runs.c.id.in_(ids), runs.c.lease_owner == ctx.worker_id)
        .values(lease_owner=None, lease_until=None)
    )


def _still_owned(
    conn: Connection, ctx: EngineContext, claimed: dict[int, Row[Any]]
) -> list[Row[Any]]:
    """The claimed runs this worker still owns, unchanged since the claim; locked until commit."""
    current = conn.execute(
        sa.select(runs.c.id, runs.c.revision)
        .where(runs.c.id.in_(claimed), runs.c.lease_owner == ctx.worker_id)
        .with_for_update()
    ).all()
    owned = sorted(r.id for r in current if r.revision == claimed[r.id].revision)
    lost = set(claimed) - set(owned)
    if lost:
        # Moved by an event since the claim: give it back to be claimed afresh.
        _release(conn, ctx, lost)
    return [claimed[i] for i in owned]


# Below this size a cohort costs more statements than writing its runs one by one.
MIN_COHORT = 8


def advance_claimed(
    conn: Connection, ctx: EngineContext, claimed: dict[int, Row[Any]], *, now: datetime
) -> AdvanceStats:
    """Advance the runs still owned: cohorts with set-oriented writes, the rest one by one."""
    rows = _still_owned(conn, ctx, claimed)
    if not rows:
        return AdvanceStats(0, 0)
    workflows = ctx.cache.workflows_by_id(conn, {r.resource_id for r in rows})
    one_by_one: list[Row[Any]] = []
    steps = 0
    listened: tuple[frozenset[str] | None] | None = None  # read once, when first needed
    for cohort, advance in _cohort_decisions(conn, ctx, rows, workflows, one_by_one, now=now):
        if len(cohort) < MIN_COHORT or not writes_as_cohort(advance):
            one_by_one += cohort
            continue
        listened = listened or (event_interest(conn),)
        write_cohort(conn, cohort, advance, now=now, listened=listened[0])
        steps += len(advance.records) * len(cohort)
    if one_by_one:
        steps += _advance_one_by_one(conn, ctx, sorted(one_by_one, key=lambda r: r.id), now=now)
    return AdvanceStats(len(rows), steps)


def _cohort_decisions(
    conn: Connection,
    ctx: EngineContext,
    rows: list[Row[Any]],
    workflows: dict[int, Workflow | None],
    one_by_one: list[Row[Any]],
    *,
    now: datetime,
) -> Iterator[tuple[list[Row[Any]], Advance]]:
    """Runs grouped by what their turn depends on, each group with its one decision.

    Only the facts the keys need are read. A contact with several runs in the
    batch is advanced run by run, so that a later run sees what an earlier one
    changed; so is a run whose workflow version is gone: those go to `one_by_one`.
    """
    inputs = {rid: turn_inputs(w) for rid, w in workflows.items() if w is not None}
    per_contact = Counter(r.contact_id for r in rows)
    candidates = []
    for row in rows:
        if per_contact[row.contact_id] > 1 or row.resource_id not in inputs:
            one_by_one.append(row)
        else:
            candidates.append(row)
    if not candidates:
        return
    used = [inputs[r] for r in {r.resource_id for r in candidates}]
    names = set().union(*(i.fields for i in used))
    ids = [r.contact_id for r in candidates]
    schema = ctx.cache.current(conn).catalog.schema
    contacts = load_fields(conn, ids, schema, names) if names else {}
    lists = load_lists(conn, ids) if any(i.lists for i in used) else {}
    known = _run_events(conn, candidates) if any(i.events for i in used) else {}
    groups: dict[Hashable, list[Row[Any]]] = defaultdict(list)
    for row in candidates:
        facts = _facts(row, contacts.get(row.contact_id, {}), lists, known, now)
        groups[cohort_key(inputs[row.resource_id], _position(row), facts)].append(row)
    for cohort in groups.values():
        first = cohort[0]
        facts = _facts(first, contacts.get(first.contact_id, {}), lists, known, now)
        snapshot = _snapshot(first, workflows[first.resource_id], facts)
        yield cohort, advance_run(snapshot, now=now, limits=ctx.limits)


def _advance_one_by_one(
    conn: Connection, ctx: EngineContext, rows: list[Row[Any]], *, now: datetime
) -> int:
    """Each run's own turn, with every fact its workflow and templates read; returns steps."""
    current = ctx.cache.current(conn)
    resource_ids = {r.resource_id for r in rows}
    workflows = ctx.cache.workflows_by_id(conn, resource_ids)
    contact_ids = {r.contact_id for r in rows}
    fields = ctx.cache.contact_fields(conn, current, resource_ids)
    contacts = load_facts(conn, contact_ids, current.catalog.schema, fields=fields)
    lists = load_lists(conn, contact_ids)
    known = _run_events(conn, rows)
    writer = BatchWriter(conn, ctx, current, now=now, contacts=contacts, lists=lists)
    steps = 0
    for row in rows:
        workflow = workflows.get(row.resource_id)
        if workflow is None:
            writer.fail_run(row, "workflow version can no longer be read")
            continue
        # The writer's copies: a contact's earlier run in this batch may have changed them.
        facts = _facts(row, writer.contacts[row.contact_id], writer.lists, known, now)
        advance = advance_run(_snapshot(row, workflow, facts), now=now, limits=ctx.limits)
        steps += len(advance.records)
        writer.add(row, workflow, advance)
    writer.flush()
    return steps


def _run_events(conn: Connection, rows: list[Row[Any]]) -> dict[int, EventFacts]:
    return load_events(conn, [*(r.trigger_event_id for r in rows), *(r.event_id for r in rows)])


def _facts(
    row: Row[Any],
    contact: Mapping[str, object],
    lists: Mapping[int, set[str]],
    known: Mapping[int, EventFacts],
    now: datetime,
) -> Facts:
    return Facts(
        contact=contact,
        now=now,
        lists=frozenset(lists.get(row.contact_id, ())),
        trigger=known.get(row.trigger_event_id) if row.trigger_event_id else None,
        event=known.get(row.event_id) if row.event_id else None,
    )


def _position(row: Row[Any]) -> RunPosition:
    return RunPosition(
        contact_id=row.contact_id,
        resource_id=row.resource_id,
        status=row.status,
        current_step=row.current_step,
        visits=row.visits or {},
        chain_depth=row.chain_depth,
        trigger_event_id=row.trigger_event_id,
        event_id=row.event_id,
    )


def _snapshot(row: Row[Any], workflow: Workflow | None, facts: Facts) -> RunSnapshot:
    assert workflow is not None
    return RunSnapshot(
        id=row.id,
        contact_id=row.contact_id,
        workflow=workflow,
        status=RunStatus(row.status),
        current_step=row.current_step,
        visits=row.visits or {},
        chain_depth=row.chain_depth,
        facts=facts,
    )
