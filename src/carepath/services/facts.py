"""Loading, in bulk, the facts that conditions and templates see for a batch of runs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carepath.db.schema import events, list_members
from carepath.domain.conditions import EventFacts


def load_lists(conn: Connection, contact_ids: Iterable[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = defaultdict(set)
    rows = conn.execute(
        sa.select(list_members.c.contact_id, list_members.c.list_name).where(
            list_members.c.contact_id.in_(set(contact_ids))
        )
    )
    for row in rows:
        found[row.contact_id].add(row.list_name)
    return found


def event_facts(row: Row[Any]) -> EventFacts:
    return EventFacts(type=row.type, occurred_at=row.occurred_at, data=row.data or {})


def load_events(conn: Connection, ids: Iterable[int | None]) -> dict[int, EventFacts]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = conn.execute(
        sa.select(events.c.id, events.c.type, events.c.occurred_at, events.c.data).where(
            events.c.id.in_(wanted)
        )
    )
    return {row.id: event_facts(row) for row in rows}
