"""Starting runs: re-entry rules, chain depth, one live run per contact and workflow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import bulk_insert, id_in
from carepath.db.schema import runs
from carepath.domain.runs import LIVE_STATUSES, RunStatus
from carepath.domain.workflow import ReentryMode, Workflow
from carepath.services.catalog_store import CurrentCatalog
from carepath.services.events import NewEvent
from carepath.services.workflow_states import paused_names


@dataclass(frozen=True)
class EnrollRequest:
    contact_id: int
    workflow: str
    trigger_event_id: int | None = None
    chain_depth: int = 0
    parent_run_id: int | None = None
    starts_at: datetime | None = None  # a run scheduled ahead (date triggers) wakes then


@dataclass(frozen=True)
class Skipped:
    request: EnrollRequest
    reason: str


@dataclass(frozen=True)
class EnrollOutcome:
    run_ids: list[int]
    skipped: list[Skipped]


@dataclass
class _History:
    live: bool = False
    last_started: datetime | None = None


def reentry_refusal(workflow: Workflow, history: _History, now: datetime) -> str | None:
    """Why a contact may not enter `workflow` now, or None if it may."""
    if history.live:
        return "already in this workflow"
    if history.last_started is None:
        return None
    match workflow.reentry.mode:
        case ReentryMode.NEVER:
            return "re-entry is never allowed"
        case ReentryMode.AFTER:
            assert workflow.reentry.after is not None
            if now - history.last_started < workflow.reentry.after:
                return "re-entry window has not passed"
    return None


def _chain_workflows(conn: Connection, parents: Sequence[int]) -> dict[int, set[str]]:
    """For each run, the workflows of it and every run above it (who enrolled whom)."""
    if not parents:
        return {}
    up = sa.select(runs.c.id.label("origin"), runs.c.parent_run_id, runs.c.workflow).where(
        id_in(conn, runs.c.id, sorted(set(parents)))
    )
    chain = up.cte("chain", recursive=True)
    above = runs.alias("above")
    chain = chain.union_all(
        sa.select(chain.c.origin, above.c.parent_run_id, above.c.workflow).where(
            above.c.id == chain.c.parent_run_id
        )
    )
    found: dict[int, set[str]] = {}
    for origin, workflow in conn.execute(sa.select(chain.c.origin, chain.c.workflow)):
        found.setdefault(origin, set()).add(workflow)
    return found


def _histories(
    conn: Connection, requests: Sequence[EnrollRequest]
) -> dict[tuple[int, str], _History]:
    contact_ids = {r.contact_id for r in requests}
    names = {r.workflow for r in requests}
    rows = conn.execute(
        sa.select(runs.c.contact_id, runs.c.workflow, runs.c.status, runs.c.started_at).where(
            runs.c.contact_id.in_(contact_ids), runs.c.workflow.in_(names)
        )
    )
    found: dict[tuple[int, str], _History] = {}
    for row in rows:
        history = found.setdefault((row.contact_id, row.workflow), _History())
        history.live = history.live or row.status in LIVE_STATUSES
        if history.last_started is None or row.started_at > history.last_started:
            history.last_started = row.started_at
    return found


def enroll(
    conn: Connection,
    current: CurrentCatalog,
    requests: Sequence[EnrollRequest],
    *,
    now: datetime,
    max_chain_depth: int,
) -> EnrollOutcome:
    """Create runs for the requests that re-entry rules allow, in one insert."""
    if not requests:
        return EnrollOutcome([], [])
    histories = _histories(conn, requests)
    chains = _chain_workflows(conn, [r.parent_run_id for r in requests if r.parent_run_id])
    paused = paused_names(conn)
    rows: list[dict[str, object]] = []
    skipped: list[Skipped] = []
    for request in requests:
        workflow = current.catalog.workflows.get(request.workflow)
        if workflow is None:
            skipped.append(Skipped(request, f"unknown workflow {request.workflow}"))
            continue
        if workflow.name in paused:
            skipped.append(Skipped(request, f"workflow {workflow.name} is paused"))
            continue
        if request.chain_depth > max_chain_depth:
            skipped.append(Skipped(request, f"enrollment chain deeper than {max_chain_depth}"))
            continue
        if request.parent_run_id and workflow.name in chains.get(request.parent_run_id, ()):
            reason = f"enrollment loop: {workflow.name} is already in this chain"
            skipped.append(Skipped(request, reason))
            continue
        history = histories.setdefault((request.contact_id, request.workflow), _History())
        refusal = reentry_refusal(workflow, history, now)
        if refusal:
            skipped.append(Skipped(request, refusal))
            continue
        history.live, history.last_started = True, now
        stored = current.workflow_version(request.workflow)
        rows.append(
            {
                "contact_id": request.contact_id,
                "workflow": workflow.name,
                "resource_id": stored.id,
                "workflow_version": stored.version,
                "status": RunStatus.ACTIVE.value,
                "current_step": workflow.start,
                "wake_at": request.starts_at or now,
                "visits": {},
                "chain_depth": request.chain_depth,
                "parent_run_id": request.parent_run_id,
                "trigger_event_id": request.trigger_event_id,
                "event_id": request.trigger_event_id,
                "revision": 0,
                "started_at": now,
                "updated_at": now,
            }
        )
    run_ids = bulk_insert(conn, runs, rows, returning="id")
    return EnrollOutcome(run_ids, skipped)


REFUSED = "enrollment.refused"


def refused_enrollment(skipped: Skipped, *, now: datetime) -> NewEvent:
    """An enroll step's refused enrollment, kept in the contact's history with its reason."""
    request = skipped.request
    key = f"run:{request.parent_run_id}:enroll:{request.workflow}:{now.isoformat()}"
    data = {"workflow": request.workflow, "reason": skipped.reason, "run": request.parent_run_id}
    return NewEvent(REFUSED, request.contact_id, now, key, data, "engine", request.chain_depth)
