"""Processing stored events in batches: goals and exits, waking waits, triggers.

For each event, in order: a live run whose workflow's goal matches ends as
converted, one whose exit_when matches ends as exited; a run waiting for
this event (within its window, `where` satisfied) moves on; then workflows
whose trigger matches enroll the contact. Every change bumps the run's
revision. The contacts are locked first, in id order, as the runner locks
them: the two never work on one contact's runs at the same time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carepath.db.schema import LIVE_RUN, events, runs
from carepath.domain.conditions import Facts, evaluate
from carepath.domain.resources import Kind
from carepath.domain.runs import RunStatus, StepOutcome
from carepath.domain.workflow import EventMatch, EventTrigger, WaitForStep, Workflow
from carepath.services.catalog_store import CurrentCatalog
from carepath.services.contacts import load_facts, lock_contacts
from carepath.services.context import EngineContext
from carepath.services.enrollment import EnrollRequest, enroll
from carepath.services.events import NewEvent, store_events
from carepath.services.facts import event_facts, load_events, load_lists, load_segments
from carepath.services.run_writes import close_open_steps, completion_event, write_run_updates


@dataclass
class _LiveRun:
    row: Row[Any]
    workflow: Workflow | None
    status: RunStatus
    ended: bool = False


@dataclass
class _Changes:
    run_updates: list[dict[str, Any]] = field(default_factory=list)
    closes: list[dict[str, Any]] = field(default_factory=list)
    enrollments: list[EnrollRequest] = field(default_factory=list)
    new_events: list[NewEvent] = field(default_factory=list)


def claim_events(conn: Connection, *, limit: int) -> Sequence[Row[Any]]:
    return conn.execute(
        sa.select(events)
        .where(events.c.processed_at.is_(None))
        .order_by(events.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def process_events(ctx: EngineContext, *, now: datetime, limit: int | None = None) -> int:
    """Process one batch of unprocessed events; returns how many were processed."""
    with ctx.engine.begin() as conn:
        batch = claim_events(conn, limit=limit or ctx.batch_size)
        if not batch:
            return 0
        contact_ids = sorted({e.contact_id for e in batch})
        # Serialise per contact across workers (SQLite already has one writer).
        lock_contacts(conn, contact_ids, skip_locked=False)
        _process(conn, ctx, batch, contact_ids, now=now)
        conn.execute(
            events.update().where(events.c.id.in_([e.id for e in batch])).values(processed_at=now)
        )
        return len(batch)


def _process(
    conn: Connection,
    ctx: EngineContext,
    batch: Sequence[Row[Any]],
    contact_ids: list[int],
    *,
    now: datetime,
) -> None:
    current = ctx.cache.current(conn)
    schema = current.catalog.schema
    live_rows = conn.execute(
        sa.select(runs).where(runs.c.contact_id.in_(contact_ids), LIVE_RUN).order_by(runs.c.id)
    ).all()
    workflows = ctx.cache.workflows_by_id(conn, {r.resource_id for r in live_rows})
    versions = {v.id for (kind, _), v in current.versions.items() if kind is Kind.WORKFLOW}
    fields = ctx.cache.contact_fields(conn, current, versions | set(workflows))
    facts = load_facts(conn, contact_ids, schema, fields=fields)
    lists = load_lists(conn, contact_ids)
    segments = load_segments(conn, contact_ids)
    triggers = load_events(conn, [r.trigger_event_id for r in live_rows])
    live: dict[int, list[_LiveRun]] = defaultdict(list)
    for row in live_rows:
        live[row.contact_id].append(
            _LiveRun(row, workflows.get(row.resource_id), RunStatus(row.status))
        )
    by_trigger: dict[str, list[Workflow]] = defaultdict(list)
    for workflow in current.catalog.workflows.values():
        if isinstance(workflow.trigger, EventTrigger):
            by_trigger[workflow.trigger.event].append(workflow)
    changes = _Changes()
    for event in batch:
        contact = facts.get(event.contact_id)
        if contact is None:
            continue
        incoming = event_facts(event)
        for run in live[event.contact_id]:
            if run.ended or run.workflow is None:
                continue
            run_facts = Facts(
                contact, now, frozenset(lists[event.contact_id]),
                frozenset(segments[event.contact_id]),
                trigger=triggers.get(run.row.trigger_event_id), event=incoming,
            )  # fmt: skip
            _apply_to_run(run, event, run_facts, changes, now=now)
        event_only = Facts(
            contact, now, frozenset(lists[event.contact_id]), frozenset(segments[event.contact_id]),
            trigger=incoming, event=incoming,
        )  # fmt: skip
        for workflow in by_trigger.get(event.type, []):
            trigger = workflow.trigger
            assert isinstance(trigger, EventTrigger)
            if trigger.when is None or evaluate(trigger.when, event_only):
                changes.enrollments.append(
                    EnrollRequest(event.contact_id, workflow.name, event.id, event.chain_depth)
                )
    _write(conn, ctx, current, changes, now=now)


def _matches(match: EventMatch | None, event_type: str, facts: Facts) -> bool:
    if match is None or match.event not in (event_type, None):
        return False
    return match.when is None or evaluate(match.when, facts)


def _apply_to_run(
    run: _LiveRun, event: Row[Any], facts: Facts, changes: _Changes, *, now: datetime
) -> None:
    workflow = run.workflow
    assert workflow is not None
    row = run.row
    goal, exit_when = workflow.goal, workflow.exit_when
    if goal is not None and _matches(goal, event.type, facts):
        reason = f"goal reached: {goal.event or 'condition'}"
        _end(run, RunStatus.CONVERTED, reason, changes, now=now)
        changes.new_events.append(completion_event(row, RunStatus.CONVERTED, now=now))
        return
    if exit_when is not None and _matches(exit_when, event.type, facts):
        _end(
            run, RunStatus.EXITED, f"exit_when: {exit_when.event or 'condition'}", changes, now=now
        )
        return
    if run.status is not RunStatus.WAITING or row.waiting_for != event.type:
        return
    step = workflow.steps.get(row.current_step or "")
    if not isinstance(step, WaitForStep) or not _within_window(event.occurred_at, row):
        return
    if step.where is not None and not evaluate(step.where, facts):
        return
    run.ended = True  # one event moves a waiting run once
    changes.closes.append(
        {"run_id": row.id, "outcome": StepOutcome.EVENT.value, "next_step": step.next}
    )
    changes.run_updates.append(
        _run_values(
            row, status=RunStatus.ACTIVE, step=step.next, now=now, wake_at=now, event_id=event.id
        )
    )


def _within_window(occurred_at: datetime, row: Row[Any]) -> bool:
    """The event happened while the run waited: after it entered the wait, before the deadline.

    A run is last written when it enters its wait, so `updated_at` is that moment;
    an event that arrives late but happened before then does not count.
    """
    return bool(row.updated_at <= occurred_at) and (
        row.wake_at is None or occurred_at <= row.wake_at
    )


def _end(
    run: _LiveRun, status: RunStatus, reason: str, changes: _Changes, *, now: datetime
) -> None:
    run.ended = True
    row = run.row
    if run.status is RunStatus.WAITING:
        changes.closes.append(
            {"run_id": row.id, "outcome": StepOutcome.ENDED.value, "next_step": None}
        )
    changes.run_updates.append(
        _run_values(row, status=status, step=row.current_step, now=now, reason=reason, ended_at=now)
    )


def _run_values(
    row: Row[Any],
    *,
    status: RunStatus,
    step: str | None,
    now: datetime,
    wake_at: datetime | None = None,
    event_id: int | None = None,
    reason: str | None = None,
    ended_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": status.value,
        "current_step": step,
        "wake_at": wake_at,
        "waiting_for": None,
        "event_id": event_id if event_id is not None else row.event_id,
        "reason": reason,
        "ended_at": ended_at,
        "updated_at": now,
        "revision": row.revision + 1,
    }


def _write(
    conn: Connection,
    ctx: EngineContext,
    current: CurrentCatalog,
    changes: _Changes,
    *,
    now: datetime,
) -> None:
    write_run_updates(conn, changes.run_updates)
    close_open_steps(conn, changes.closes, now=now)
    if changes.new_events:
        store_events(conn, changes.new_events, now=now)
    if changes.enrollments:
        enroll(
            conn, current, changes.enrollments, now=now, max_chain_depth=ctx.limits.max_chain_depth
        )


__all__ = ["process_events"]
