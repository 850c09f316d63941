"""Claiming due runs and advancing them, a batch at a time.

Two short transactions per batch: the claim (lease, SKIP LOCKED on
PostgreSQL) and the write. The write re-checks ownership and the row's
revision, so a run that another worker took over, or that an event moved
in between, is left alone: no step is ever executed twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carepath.db.schema import LIVE_RUN, runs
from carepath.domain.conditions import Facts
from carepath.domain.engine import advance_run
from carepath.domain.runs import Advance, RunSnapshot, RunStatus
from carepath.services.batch_writer import BatchWriter
from carepath.services.clock import wall_time
from carepath.services.contacts import load_facts
from carepath.services.context import EngineContext
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


def advance_claimed(
    conn: Connection, ctx: EngineContext, claimed: dict[int, Row[Any]], *, now: datetime
) -> AdvanceStats:
    rows = _still_owned(conn, ctx, claimed)
    if not rows:
        return AdvanceStats(0, 0)
    current = ctx.cache.current(conn)
    schema = current.catalog.schema
    workflows = ctx.cache.workflows_by_id(conn, {r.resource_id for r in rows})
    contact_ids = {r.contact_id for r in rows}
    fields = ctx.cache.contact_fields(conn, current, {r.resource_id for r in rows})
    contacts = load_facts(conn, contact_ids, schema, fields=fields)
    lists = load_lists(conn, contact_ids)
    known_events = load_events(
        conn, [*(r.trigger_event_id for r in rows), *(r.event_id for r in rows)]
    )
    writer = BatchWriter(conn, ctx, current, now=now, contacts=contacts, lists=lists)
    steps = 0
    for row in rows:
        workflow = workflows.get(row.resource_id)
        if workflow is None:
            writer.fail_run(row, "workflow version can no longer be read")
            continue
        facts = Facts(
            contact=writer.contacts[row.contact_id],
            now=now,
            lists=frozenset(writer.lists[row.contact_id]),
            trigger=known_events.get(row.trigger_event_id) if row.trigger_event_id else None,
            event=known_events.get(row.event_id) if row.event_id else None,
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
        advance: Advance = advance_run(snapshot, now=now, limits=ctx.limits)
        steps += len(advance.records)
        writer.add(row, workflow, advance)
    writer.flush()
    return AdvanceStats(len(rows), steps)
