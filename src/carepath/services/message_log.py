"""Who received which message when, with what happened to it; and one contact's timeline.

The log names messages by template, never by their rendered content, and
pages by id (keyset: stable while new messages arrive). The timeline puts a
contact's events, runs, steps and messages in one order; of event data it
shows only the keys carepath itself writes (ids and names, never values a
source sent).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import events, outbox, run_steps, runs
from carepath.domain.access import SYSTEM, Principal
from carepath.domain.fields import parse_datetime
from carepath.errors import Forbidden
from carepath.services.access import authorize, identities_reason, record_break_glass
from carepath.services.reports import in_period

# Event data keys the engine writes itself: names and ids, safe to show.
SHOWN_KEYS = ("outbox_id", "workflow", "segment", "list", "form", "link", "tag", "bounce",
              "machine", "status", "field", "reason", "run")  # fmt: skip


@dataclass(frozen=True)
class LogFilter:
    workflow: str | None = None
    step: str | None = None
    template: str | None = None
    contact_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class LoggedMessage:
    id: int
    created_at: datetime
    contact_id: int | None  # None: masked for a role that sees aggregates only
    workflow: str | None
    step: str | None
    template: str
    status: str
    sent_at: datetime | None
    opened: bool  # by a person
    clicked: bool  # by a person
    last_error: str | None  # why it was skipped, failed or deferred


def message_log(
    conn: Connection,
    which: LogFilter,
    *,
    who: Principal,
    now: datetime,
    after: int = 0,
    limit: int = 100,
) -> list[LoggedMessage]:
    """One page of the log, in id order, after message `after`.

    For a role that sees aggregates only, contact ids are masked, and asking for one
    contact's messages is refused.
    """
    authorize(conn, who, "reports:read", now=now)
    shown, emergency = identities_reason(conn, who)
    masked = not shown
    if masked and which.contact_id is not None:
        raise Forbidden(f"the {who.role} role sees reports without contact identities")
    query = (
        sa.select(
            outbox.c.id,
            outbox.c.created_at,
            outbox.c.contact_id,
            outbox.c.workflow,
            outbox.c.step,
            outbox.c.template,
            outbox.c.status,
            outbox.c.sent_at,
            outbox.c.opened_at.is_not(None).label("opened"),
            outbox.c.clicked_at.is_not(None).label("clicked"),
            outbox.c.last_error,
        )
        .where(outbox.c.id > after, *_conditions(which))
        .order_by(outbox.c.id)
        .limit(limit)
    )
    hidden = {"contact_id": None} if masked else {}
    found = [
        LoggedMessage(
            **{**r._asdict(), "opened": bool(r.opened), "clicked": bool(r.clicked), **hidden}
        )
        for r in conn.execute(query)
    ]
    if emergency is not None:
        shown_ids = {m.contact_id for m in found if m.contact_id is not None}
        record_break_glass(conn, who, shown_ids, emergency)
    return found


def whole_log(
    conn: Connection, which: LogFilter, *, who: Principal, now: datetime, page: int = 1000
) -> Iterator[LoggedMessage]:
    """Every message the filter selects, fetched a page at a time (for exports)."""
    after = 0
    while True:
        rows = message_log(conn, which, who=who, now=now, after=after, limit=page)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].id


def _conditions(which: LogFilter) -> list[sa.ColumnElement[bool]]:
    found: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (outbox.c.workflow, which.workflow),
        (outbox.c.step, which.step),
        (outbox.c.template, which.template),
        (outbox.c.contact_id, which.contact_id),
    ):
        if value is not None:
            found.append(column == value)
    return found + in_period(outbox.c.created_at, which.since, which.until)


# ------------------------------------------------------------------ timeline


@dataclass(frozen=True, order=True)
class TimelineEntry:
    at: datetime
    rank: int  # at the same instant: what arrived, the run, its steps, then its messages
    order: int  # then the order they were written in
    what: str  # event, run, step or message
    summary: str
    detail: dict[str, object] = field(compare=False, default_factory=dict)


def timeline(
    conn: Connection, contact_id: int, *, who: Principal, now: datetime
) -> list[TimelineEntry]:
    """Everything that happened to one contact, oldest first."""
    authorize(conn, who, "contacts:read", now=now, contact_ids=[contact_id])
    entries = [
        *_event_entries(conn, contact_id),
        *_run_entries(conn, contact_id),
        *_step_entries(conn, contact_id),
    ]
    for message in whole_log(conn, LogFilter(contact_id=contact_id), who=SYSTEM, now=now):
        detail: dict[str, object] = {"outbox_id": message.id, "step": message.step}
        if message.last_error:
            detail["note"] = message.last_error
        summary = f"{message.template} {message.status}"
        entries.append(
            TimelineEntry(
                parse_datetime(message.created_at), 3, message.id, "message", summary, detail
            )
        )
    return sorted(entries)


def _event_entries(conn: Connection, contact_id: int) -> Iterator[TimelineEntry]:
    query = sa.select(
        events.c.id, events.c.type, events.c.occurred_at, events.c.source, events.c.data
    ).where(events.c.contact_id == contact_id)
    for row in conn.execute(query):
        shown = {k: v for k, v in (row.data or {}).items() if k in SHOWN_KEYS}
        detail = {"source": row.source, **shown}
        yield TimelineEntry(parse_datetime(row.occurred_at), 0, row.id, "event", row.type, detail)


def _run_entries(conn: Connection, contact_id: int) -> Iterator[TimelineEntry]:
    query = sa.select(
        runs.c.id, runs.c.workflow, runs.c.workflow_version, runs.c.status,
        runs.c.started_at, runs.c.ended_at, runs.c.reason,
    ).where(runs.c.contact_id == contact_id)  # fmt: skip
    for row in conn.execute(query):
        detail: dict[str, object] = {"run": row.id, "version": row.workflow_version}
        started = f"{row.workflow} started"
        yield TimelineEntry(parse_datetime(row.started_at), 1, row.id, "run", started, detail)
        if row.ended_at is not None:
            ended = {**detail, "reason": row.reason} if row.reason else detail
            summary = f"{row.workflow} {row.status}"
            yield TimelineEntry(parse_datetime(row.ended_at), 4, row.id, "run", summary, ended)


def _step_entries(conn: Connection, contact_id: int) -> Iterator[TimelineEntry]:
    query = sa.select(
        run_steps.c.id, run_steps.c.run_id, run_steps.c.workflow, run_steps.c.step,
        run_steps.c.kind, run_steps.c.outcome, run_steps.c.entered_at,
    ).where(run_steps.c.contact_id == contact_id)  # fmt: skip
    for row in conn.execute(query):
        summary = f"{row.workflow}: {row.step} ({row.kind}) {row.outcome}"
        detail = {"run": row.run_id}
        yield TimelineEntry(parse_datetime(row.entered_at), 2, row.id, "step", summary, detail)
