"""Which event types any workflow listens to: the rest are stored already processed.

Engine-emitted history (`email.sent`, `list.joined`, `contact.created` for
every imported contact…) is often of no interest to any journey; storing it
as processed spares the worker a batch for each. The set covers every stored
workflow version, since live runs may be on older ones, and is refreshed
whenever resources are applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import resources, settings
from carepath.domain.resources import Kind

INTEREST_KEY = "event_interest"


def listened_types(bodies: Iterable[Mapping[str, object]]) -> set[str]:
    """Event types named by triggers, goals, exit criteria and wait_for steps."""
    found: set[str] = set()
    for body in bodies:
        for key in ("trigger", "goal", "exit_when"):
            part = body.get(key)
            if isinstance(part, Mapping) and isinstance(part.get("event"), str):
                found.add(str(part["event"]))
            if key == "trigger" and isinstance(part, Mapping) and "segment" in part:
                found.add("segment.entered")
        steps = body.get("steps")
        for step in steps.values() if isinstance(steps, Mapping) else ():
            wait = step.get("wait_for") if isinstance(step, Mapping) else None
            if isinstance(wait, Mapping) and isinstance(wait.get("event"), str):
                found.add(str(wait["event"]))
    return found


def refresh_event_interest(conn: Connection) -> None:
    bodies = conn.execute(
        sa.select(resources.c.body).where(resources.c.kind == Kind.WORKFLOW.value)
    ).scalars()
    value = sorted(listened_types(bodies))
    updated = conn.execute(
        settings.update().where(settings.c.key == INTEREST_KEY).values(value=value)
    ).rowcount
    if not updated:
        conn.execute(settings.insert().values(key=INTEREST_KEY, value=value))


def event_interest(conn: Connection) -> frozenset[str] | None:
    """The listened types, or None when never computed (then every event is processed)."""
    value = conn.execute(sa.select(settings.c.value).where(settings.c.key == INTEREST_KEY)).scalar()
    return interest_from(value)


def interest_from(value: object) -> frozenset[str] | None:
    """The listened types from the stored setting."""
    return frozenset(value) if isinstance(value, list) else None


def arrives_processed(interest: frozenset[str] | None, event_type: str) -> bool:
    """Whether an event of this type is stored already processed: nothing listens to it."""
    return interest is not None and event_type not in interest
