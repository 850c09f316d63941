"""Storing events: validated, contacts resolved in bulk, idempotent by key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import id_in, insert_ignoring_conflicts, text_in
from carepath.db.schema import contacts, events
from carepath.db.types import UtcDateTime
from carepath.domain.conditions import EVENT_TYPE_CHARS
from carepath.domain.fields import index_column, parse_datetime
from carepath.errors import InvalidInput, Problem
from carepath.protection.identifiers import identifier_indexes
from carepath.services.event_interest import arrives_processed
from carepath.services.event_routing import EventRouting, event_routing
from carepath.services.message_events import record_on_messages
from carepath.services.segment_checks import mark_for_events

REFERENCE_KEYS = ("id", "external_id", "email")
EVENT_KEYS = frozenset({"type", "contact", "occurred_at", "idempotency_key", "data"})
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class NewEvent:
    """An event ready to store: contact resolved, times parsed."""

    type: str
    contact_id: int
    occurred_at: datetime
    idempotency_key: str
    data: Mapping[str, object]
    source: str
    chain_depth: int = 0


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


def _check_shape(raw: object) -> tuple[dict[str, Any] | None, list[str]]:
    # Cheap checks first (`dict` before `Mapping`): a batch runs this a thousand times.
    if not isinstance(raw, dict):
        if not isinstance(raw, Mapping):
            return None, ["an event is a JSON object"]
        raw = dict(raw)
    errors = []
    if not raw.keys() <= EVENT_KEYS:
        unknown = set(raw) - EVENT_KEYS
        errors += [f"{key}: unknown key" for key in sorted(map(str, unknown))]
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind or not set(kind) <= EVENT_TYPE_CHARS:
        errors.append("type: an event type is lower-case text such as lab.result_available")
    ref = raw.get("contact")
    if not isinstance(ref, Mapping) or len(ref) != 1 or next(iter(ref)) not in REFERENCE_KEYS:
        errors.append("contact: name the contact by exactly one of id, external_id or email")
    if "occurred_at" in raw:
        try:
            parse_datetime(raw["occurred_at"])
        except (ValueError, TypeError):
            errors.append("occurred_at: not an ISO 8601 date-time")
    key = raw.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH):
        errors.append(f"idempotency_key: text of 1 to {MAX_KEY_LENGTH} characters")
    if not isinstance(raw.get("data", {}), Mapping):
        errors.append("data: must be a JSON object")
    return raw, errors


def derived_key(raw: Mapping[str, Any]) -> str:
    """A key for events sent without one: the same content is the same event."""
    canonical = json.dumps(
        [raw.get("type"), raw.get("contact"), raw.get("occurred_at"), raw.get("data", {})],
        sort_keys=True, default=str,
    )  # fmt: skip
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def resolve_contacts(
    conn: Connection, refs: Iterable[Mapping[str, Any]]
) -> dict[tuple[str, str], int]:
    """(kind, value) -> contact id, with one query per kind of reference."""
    wanted: dict[str, set[object]] = {k: set() for k in REFERENCE_KEYS}
    for ref in refs:
        (kind, value), *_ = ref.items()
        wanted[kind].add(_normal_ref(kind, value))
    found: dict[tuple[str, str], int] = {}
    for kind, values in wanted.items():
        if not values:
            continue
        if kind == "id":
            # An id the column cannot hold names no contact (and must not reach the driver).
            ids = [v for v in values if isinstance(v, int) and 0 < v < 2**63]
            column, found_in = contacts.c.id, id_in(conn, contacts.c.id, ids)
            named = {str(v): str(v) for v in ids}
        else:  # identifiers are sealed: looked up by their blind index
            texts = [str(v) for v in values]
            named = dict(zip(identifier_indexes(kind, texts), texts, strict=True))
            if conn.dialect.name == "postgresql":
                rows = conn.exec_driver_sql(_PG_CONTACTS_BY_INDEX[kind], {"values": list(named)})
                found.update(((kind, named[match]), contact_id) for contact_id, match in rows)
                continue
            column = contacts.c[index_column(kind)]
            found_in = text_in(conn, column, list(named))
        query = sa.select(contacts.c.id, column).where(found_in, contacts.c.erased_at.is_(None))
        for contact_id, match in conn.execute(query).all():
            found[(kind, named[str(match)])] = contact_id
    return found


# PostgreSQL: the statements of storing events, written out for the driver. Built
# through SQLAlchemy, the lookup and the insert cost their caller about three times
# the driver's own work, and single events from concurrent requests are stored in
# small groups, each paying that again. (`= ANY(ARRAY(SELECT unnest(…)))`: see
# `text_in`.)
_PG_CONTACTS_BY_INDEX = {
    "external_id": "SELECT id, external_id_index FROM contacts WHERE external_id_index "
    "= ANY(ARRAY(SELECT unnest(%(values)s::text[]))) AND erased_at IS NULL",
    "email": "SELECT id, email_index FROM contacts WHERE email_index "
    "= ANY(ARRAY(SELECT unnest(%(values)s::text[]))) AND erased_at IS NULL",
}
_UTC = UtcDateTime()
_PG_INSERT_EVENTS = (
    "INSERT INTO events (idempotency_key, type, contact_id, occurred_at, received_at, data, "
    "source, chain_depth, processed_at) "
    "SELECT k, t, c, o, %(received_at)s, d, s, n, p FROM jsonb_to_recordset(%(rows)s::jsonb) "
    "AS v(k text, t text, c bigint, o timestamptz, d jsonb, s text, n integer, p timestamptz) "
    "ON CONFLICT DO NOTHING RETURNING idempotency_key, id"
)


def _normal_ref(kind: str, value: object) -> object:
    if kind == "id":
        return int(value) if isinstance(value, int | str) and str(value).isdigit() else value
    if kind == "email" and isinstance(value, str):
        return value.strip().lower()
    return str(value)


def check_events(
    conn: Connection,
    items: Sequence[tuple[str, object]],
    *,
    now: datetime,
    source: str,
) -> tuple[list[tuple[int, NewEvent]], list[tuple[int, Problem]]]:
    """Items given as (location, raw): the good ones as events, the problems of the rest.

    Both are tagged with the item's position in `items`.
    """
    checked: list[tuple[int, dict[str, Any]]] = []
    problems: list[tuple[int, Problem]] = []
    for index, (location, raw) in enumerate(items):
        record, errors = _check_shape(raw)
        problems.extend((index, Problem(location, e)) for e in errors)
        if record is not None and not errors:
            checked.append((index, record))
    ids = resolve_contacts(conn, (r["contact"] for _, r in checked))
    new: list[tuple[int, NewEvent]] = []
    for index, record in checked:
        (kind, value), *_ = record["contact"].items()
        contact_id = ids.get((kind, str(_normal_ref(kind, value))))
        if contact_id is None:
            location = items[index][0]
            problems.append((index, Problem(location, f"contact: no contact with that {kind}")))
            continue
        occurred = parse_datetime(record["occurred_at"]) if "occurred_at" in record else now
        event = NewEvent(
            type=record["type"],
            contact_id=contact_id,
            occurred_at=occurred,
            idempotency_key=record.get("idempotency_key")
            or derived_key(record | {"occurred_at": occurred.isoformat()}),
            data=record.get("data", {}),
            source=source,
        )
        new.append((index, event))
    return new, problems


def ingest_events(
    conn: Connection,
    items: Sequence[tuple[str, object]],
    *,
    now: datetime,
    source: str,
) -> IngestResult:
    """Store events given as (location, raw) pairs; all or nothing on any bad item."""
    new, problems = check_events(conn, items, now=now, source=source)
    if problems:
        raise InvalidInput([p for _, p in problems])
    stored = store_events(conn, [e for _, e in new], now=now)
    return IngestResult(stored, len(new) - stored)


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one item of a batch: stored (or stored before), or why not."""

    index: int
    event_id: int | None
    problems: tuple[Problem, ...] = ()


def accept_events(
    conn: Connection,
    items: Sequence[tuple[str, object]],
    *,
    now: datetime,
    source: str,
    routing: EventRouting | None = None,
) -> list[ItemOutcome]:
    """Store the good items of a batch, report the others; one outcome per item, in order.

    An item whose idempotency key is stored already gets that event's id, so a
    retried request gets the same answer as the first.
    """
    new, problems = check_events(conn, items, now=now, source=source)
    stored_ids = store_events_keyed(conn, [e for _, e in new], now=now, routing=routing)
    earlier = sorted({e.idempotency_key for _, e in new} - set(stored_ids))
    if earlier:  # retries: the events stored before under the same keys
        query = sa.select(events.c.idempotency_key, events.c.id).where(
            text_in(conn, events.c.idempotency_key, earlier)
        )
        stored_ids |= {row.idempotency_key: row.id for row in conn.execute(query)}
    by_index: dict[int, list[Problem]] = {}
    for index, problem in problems:
        by_index.setdefault(index, []).append(problem)
    event_ids = {index: stored_ids[e.idempotency_key] for index, e in new}
    return [ItemOutcome(i, event_ids.get(i), tuple(by_index.get(i, ()))) for i in range(len(items))]


def store_events(conn: Connection, new: Sequence[NewEvent], *, now: datetime) -> int:
    """Insert events, ignoring keys already stored; returns how many were new.

    Events no workflow listens to are stored as already processed.
    """
    return len(store_events_keyed(conn, new, now=now))


def store_events_keyed(
    conn: Connection,
    new: Sequence[NewEvent],
    *,
    now: datetime,
    routing: EventRouting | None = None,
) -> dict[str, int]:
    """As `store_events`; returns idempotency key -> id of each event that was new.

    `routing`: when the caller has read it already, in this transaction.
    """
    if not new:
        return {}
    if routing is None:
        routing = event_routing(conn)
    if conn.dialect.name == "postgresql":
        stored = _pg_insert_events(conn, new, now=now, interest=routing.interest)
    else:
        stored = _insert_events(conn, new, now=now, interest=routing.interest)
    fresh = [e for e in new if e.idempotency_key in stored]
    mark_for_events(conn, [(e.type, e.contact_id) for e in fresh], now=now, inputs=routing.segments)
    record_on_messages(conn, fresh)
    return stored


def _insert_events(
    conn: Connection, new: Sequence[NewEvent], *, now: datetime, interest: frozenset[str] | None
) -> dict[str, int]:
    rows = [
        {
            "idempotency_key": e.idempotency_key,
            "type": e.type,
            "contact_id": e.contact_id,
            "occurred_at": e.occurred_at,
            "received_at": now,
            "data": dict(e.data),
            "source": e.source,
            "chain_depth": e.chain_depth,
            "processed_at": now if arrives_processed(interest, e.type) else None,
        }
        for e in new
    ]
    inserted = insert_ignoring_conflicts(conn, events, rows, returning=("idempotency_key", "id"))
    return {row.idempotency_key: row.id for row in inserted}


def _pg_insert_events(
    conn: Connection, new: Sequence[NewEvent], *, now: datetime, interest: frozenset[str] | None
) -> dict[str, int]:
    """As `_insert_events`, as one written-out statement over a JSON array of the rows."""
    utc = _UTC.bind_processor(conn.dialect)  # the UTC column type's own check and conversion
    assert utc is not None
    processed = utc(now).isoformat()
    rows = [
        {
            "k": e.idempotency_key,
            "t": e.type,
            "c": e.contact_id,
            "o": utc(e.occurred_at).isoformat(),
            "d": dict(e.data),
            "s": e.source,
            "n": e.chain_depth,
            "p": processed if arrives_processed(interest, e.type) else None,
        }
        for e in new
    ]
    values = {"received_at": now, "rows": json.dumps(rows)}
    return dict(list(conn.exec_driver_sql(_PG_INSERT_EVENTS, values)))


def read_jsonl(path: Path) -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{path.name}:{number}"
            try:
                items.append((location, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise InvalidInput([Problem(location, f"invalid JSON: {exc.msg}")]) from None
    return items
