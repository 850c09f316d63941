"""Loading, in bulk, the facts that conditions and templates see for a batch of runs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.channels.templates import contact_fields
from carepath.db.dialect import id_in
from carepath.db.schema import events, list_members, segment_members
from carepath.domain.conditions import EventFacts, referenced_contact_fields
from carepath.domain.resources import Template
from carepath.domain.workflow import (
    BranchStep,
    EmailStep,
    EventTrigger,
    WaitForStep,
    WaitStep,
    WebhookStep,
    Workflow,
)


def load_lists(conn: Connection, contact_ids: Iterable[int]) -> dict[int, set[str]]:
    return _memberships(conn, list_members.c.contact_id, list_members.c.list_name, contact_ids)


def load_segments(conn: Connection, contact_ids: Iterable[int]) -> dict[int, set[str]]:
    table = segment_members
    return _memberships(conn, table.c.contact_id, table.c.segment_name, contact_ids)


def _memberships(
    conn: Connection, contact: sa.Column[int], name: sa.Column[str], ids: Iterable[int]
) -> dict[int, set[str]]:
    found: dict[int, set[str]] = defaultdict(set)
    rows = conn.execute(sa.select(contact, name).where(id_in(conn, contact, list(set(ids)))))
    for contact_id, member_of in rows:
        found[contact_id].add(member_of)
    return found


class EventRow(Protocol):
    """The columns of an `events` row that conditions see (any select that has them)."""

    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def data(self) -> Mapping[str, object] | None: ...


def event_facts(row: EventRow) -> EventFacts:
    return EventFacts(type=row.type, occurred_at=row.occurred_at, data=row.data or {})


def load_events(conn: Connection, ids: Iterable[int | None]) -> dict[int, EventFacts]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = conn.execute(
        sa.select(events.c.id, events.c.type, events.c.occurred_at, events.c.data).where(
            id_in(conn, events.c.id, list(wanted))
        )
    )
    return {row.id: event_facts(row) for row in rows}


def contact_fields_used(workflow: Workflow, templates: Mapping[str, Template]) -> set[str] | None:
    """Contact fields a workflow's conditions, waits and templates read; None means all."""
    conditions = [m.when for m in (workflow.goal, workflow.exit_when) if m and m.when]
    if isinstance(workflow.trigger, EventTrigger) and workflow.trigger.when:
        conditions.append(workflow.trigger.when)
    fields: set[str] = {"time_zone", "birth_date"}
    for step in workflow.steps.values():
        match step:
            case BranchStep(cases=cases):
                conditions.extend(c.when for c in cases)
            case WaitForStep(where=where) if where is not None:
                conditions.append(where)
            case WaitStep(until=until) if until and until.startswith("contact."):
                fields.add(until.removeprefix("contact."))
            case WebhookStep(fields=sent):
                fields |= set(sent)
            case EmailStep(template=name):
                template = templates.get(name)
                used = contact_fields(template) if template else set()
                if used is None:
                    return None
                fields |= used
    for condition in conditions:
        fields |= referenced_contact_fields(condition)
    return fields
