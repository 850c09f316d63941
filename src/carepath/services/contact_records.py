"""One contact at a time, as the HTTP API needs: save, read, change, erase, list.

Erasing removes a person's data and keeps an anonymous tombstone: the row
and its id stay, so runs, messages and events still count in reports, but
every identifier, attribute and tag is gone, rendered messages lose their
content, events their data and webhook calls their bodies, and live runs end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import (
    LIVE_RUN,
    contacts,
    events,
    outbox,
    runs,
    segment_members,
    tasks,
    webhook_calls,
)
from carepath.domain.access import Principal
from carepath.domain.fields import (
    COLUMN_FIELDS,
    READ_ONLY_FIELDS,
    ContactSchema,
    json_value,
)
from carepath.errors import InvalidInput, NotFound, Problem
from carepath.protection.identifiers import with_indexes
from carepath.services.access import READ, WRITE, authorize, require_all_contacts
from carepath.services.contacts import (
    check_record,
    coerce_field,
    contact_facts,
    contact_with,
    to_storage,
    upsert_contacts,
)
from carepath.services.events import NewEvent, store_events
from carepath.services.page_views import forget_visitors

ERASED = "erased"  # a task's title once its contact is erased


@dataclass(frozen=True)
class SavedContact:
    id: int
    created: bool


def save_contact(
    conn: Connection,
    record: Mapping[str, object],
    schema: ContactSchema,
    *,
    now: datetime,
    who: Principal,
) -> SavedContact:
    """Create a contact, or update the one with the same external_id (then email)."""
    authorize(conn, who, WRITE, now=now)
    values, errors = check_record(record, schema)
    if errors:
        raise InvalidInput([Problem.at_field(e) for e in errors])
    created, _ = upsert_contacts(conn, [values], schema, now=now)
    name = "external_id" if values.get("external_id") else "email"
    contact_id = contact_with(conn, name, values[name])
    assert contact_id is not None  # just inserted or updated
    authorize(conn, who, WRITE, now=now, contact_ids=[contact_id])  # an agent: its contacts
    return SavedContact(contact_id, bool(created))


def read_contact(
    conn: Connection, contact_id: int, schema: ContactSchema, *, who: Principal, now: datetime
) -> dict[str, object]:
    """A contact's fields as JSON values: core, custom, tags, times; 404 if unknown or erased."""
    authorize(conn, who, READ, now=now, contact_ids=[contact_id])
    row = conn.execute(sa.select(contacts).where(contacts.c.id == contact_id)).first()
    if row is None or row.erased_at is not None:
        raise NotFound("no contact with that id")
    facts = {k: v for k, v in contact_facts(row, schema).items() if k != "erased_at"}
    return {name: _json(value) for name, value in facts.items() if value is not None}


def change_contact(
    conn: Connection,
    contact_id: int,
    changes: Mapping[str, object],
    schema: ContactSchema,
    *,
    now: datetime,
    who: Principal,
) -> None:
    """Set fields (null unsets one); `contact.updated` names the fields, never their values."""
    authorize(conn, who, WRITE, now=now, contact_ids=[contact_id])
    current = conn.execute(sa.select(contacts).where(contacts.c.id == contact_id)).first()
    if current is None or current.erased_at is not None:
        raise NotFound("no contact with that id")
    problems: list[Problem] = []
    facts = contact_facts(current, schema)
    for name, raw in changes.items():
        spec = schema.get(name)
        if spec is None:
            problems.append(Problem(name, "unknown field"))
        elif name in READ_ONLY_FIELDS:
            problems.append(Problem(name, "cannot be changed"))
        elif raw is None:
            facts[name] = None
        else:
            try:
                facts[name] = coerce_field(spec, raw)
            except ValueError as exc:
                problems.append(Problem(name, str(exc)))
    if not facts.get("external_id") and not facts.get("email"):
        problems.append(Problem("", "a contact keeps an external_id or an email"))
    if problems:
        raise InvalidInput(problems)
    conn.execute(
        contacts.update()
        .where(contacts.c.id == contact_id)
        .values(**to_storage(facts, schema), updated_at=now)
    )
    data = {"fields": sorted(changes)}
    key = f"contact:{contact_id}:updated:{now.isoformat()}:{','.join(sorted(changes))}"
    store_events(conn, [NewEvent("contact.updated", contact_id, now, key, data, "api")], now=now)


def erase_contact(conn: Connection, contact_id: int, *, now: datetime, who: Principal) -> None:
    """Remove everything personal about a contact, keep an anonymous tombstone."""
    authorize(conn, who, WRITE, now=now, contact_ids=[contact_id])
    found = conn.execute(
        contacts.update()
        .where(contacts.c.id == contact_id)
        .values(
            **with_indexes(dict.fromkeys(COLUMN_FIELDS)),
            tags=[],
            attributes={},
            updated_at=now,
            erased_at=now,
        )
    ).rowcount
    if not found:
        raise NotFound("no contact with that id")
    conn.execute(
        outbox.update()
        .where(outbox.c.contact_id == contact_id)
        .values(subject="", html="", text="", links=None)
    )
    conn.execute(events.update().where(events.c.contact_id == contact_id).values(data={}))
    conn.execute(segment_members.delete().where(segment_members.c.contact_id == contact_id))
    conn.execute(
        webhook_calls.update()
        .where(webhook_calls.c.contact_id == contact_id, webhook_calls.c.status == "pending")
        .values(status="failed", last_error="contact erased")
    )
    conn.execute(
        webhook_calls.update()
        .where(webhook_calls.c.contact_id == contact_id)
        .values(body={"contact": {"id": contact_id}, "erased": True})
    )
    conn.execute(tasks.update().where(tasks.c.contact_id == contact_id).values(title=ERASED))
    forget_visitors(conn, contact_id)  # their browsers are no longer recognised
    conn.execute(
        runs.update()
        .where(runs.c.contact_id == contact_id, LIVE_RUN)
        .values(status="exited", reason="contact erased", ended_at=now, updated_at=now)
        .values(wake_at=None, waiting_for=None)
    )


def list_contacts(
    conn: Connection, *, after: int, limit: int, who: Principal, now: datetime
) -> list[dict[str, object]]:
    """Contacts by id after `after`: ids and identifiers only, erased ones left out."""
    require_all_contacts(conn, who, now=now)
    query = (
        sa.select(contacts.c.id, contacts.c.external_id, contacts.c.email, contacts.c.updated_at)
        .where(contacts.c.id > after, contacts.c.erased_at.is_(None))
        .order_by(contacts.c.id)
        .limit(limit)
    )
    return [
        {k: _json(v) for k, v in row._mapping.items() if v is not None}
        for row in conn.execute(query)
    ]


def _json(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return json_value(value)
