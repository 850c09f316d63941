"""The queue of contacts whose segment membership may have changed.

Whatever changes a contact's facts marks it here in the same transaction
(an event of a type some segment counts, a changed attribute, a list joined),
so no change is missed however writes interleave; the worker re-checks the
marked contacts in batches (services/segments.py). Which event types matter
is computed when segments are applied and kept in `settings`, so writers pay
one primary-key read and nothing at all when no segment exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import dialect_insert, insert_ignoring_conflicts
from carepath.db.schema import contacts, segment_checks, settings
from carepath.domain.conditions import referenced_event_types, referenced_memberships
from carepath.domain.resources import SegmentDef

INPUTS_KEY = "segment_inputs"


@dataclass(frozen=True)
class SegmentInputs:
    """What can change segment membership: any contact change, and these event types."""

    any_segment: bool
    event_types: frozenset[str]


NO_SEGMENTS = SegmentInputs(any_segment=False, event_types=frozenset())


def inputs_of(segments: Iterable[SegmentDef]) -> SegmentInputs:
    types: set[str] = set()
    found = False
    for segment in segments:
        found = True
        types |= referenced_event_types(segment.condition)
        kinds = {kind for kind, _ in referenced_memberships(segment.condition)}
        if "list" in kinds:
            types |= {"list.joined", "list.left"}
        if "segment" in kinds:
            types |= {"segment.entered", "segment.left"}
    if found:
        types |= {"contact.created", "contact.updated"}
    return SegmentInputs(found, frozenset(types))


def store_inputs(conn: Connection, inputs: SegmentInputs) -> None:
    value = {"any": inputs.any_segment, "events": sorted(inputs.event_types)}
    updated = conn.execute(
        settings.update().where(settings.c.key == INPUTS_KEY).values(value=value)
    ).rowcount
    if not updated:
        conn.execute(settings.insert().values(key=INPUTS_KEY, value=value))


def read_inputs(conn: Connection) -> SegmentInputs:
    value = conn.execute(sa.select(settings.c.value).where(settings.c.key == INPUTS_KEY)).scalar()
    return inputs_from(value)


def inputs_from(value: object) -> SegmentInputs:
    """The segment inputs from the stored setting."""
    if not isinstance(value, dict) or not value.get("any"):
        return NO_SEGMENTS
    return SegmentInputs(True, frozenset(value.get("events") or ()))


def mark_contacts(conn: Connection, ids: Iterable[int], *, now: datetime) -> None:
    """Queue these contacts for a segment re-check (if any segment exists)."""
    wanted = sorted(set(ids))
    if wanted and read_inputs(conn).any_segment:
        _queue(conn, wanted, now=now)


def mark_contacts_where(
    conn: Connection,
    which: sa.ColumnElement[bool],
    *,
    now: datetime,
    params: Mapping[str, Any] | None = None,
) -> None:
    """Queue the contacts `which` selects (a condition on `contacts`, with the
    values of its `params`), in one statement."""
    if not read_inputs(conn).any_segment:
        return
    selected = sa.select(contacts.c.id, sa.literal(now, segment_checks.c.marked_at.type))
    insert = dialect_insert(conn, segment_checks).from_select(
        ["contact_id", "marked_at"], selected.where(which)
    )
    conn.execute(insert.on_conflict_do_nothing(), dict(params or {}))


def mark_for_events(
    conn: Connection,
    typed_contacts: Iterable[tuple[str, int]],
    *,
    now: datetime,
    inputs: SegmentInputs | None = None,
) -> None:
    """Queue the contacts of new events whose types some segment reads (`inputs`, when
    the caller has read them already)."""
    pairs = list(typed_contacts)
    if not pairs:
        return
    inputs = inputs if inputs is not None else read_inputs(conn)
    wanted = sorted({c for kind, c in pairs if kind in inputs.event_types})
    if wanted:
        _queue(conn, wanted, now=now)


def _queue(conn: Connection, ids: list[int], *, now: datetime) -> None:
    rows = [{"contact_id": i, "marked_at": now} for i in ids]
    insert_ignoring_conflicts(conn, segment_checks, rows)
