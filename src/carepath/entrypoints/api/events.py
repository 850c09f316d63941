"""`POST /v1/events`: one event, or a batch of up to 1,000; stored now, processed by workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from carepath.entrypoints.api.auth import EventsWriter
from carepath.entrypoints.api.coalescing import Coalescer
from carepath.entrypoints.api.problems import field_errors, problem_response
from carepath.errors import Problem
from carepath.services.clock import CLOCK_KEY, Clock
from carepath.services.event_routing import ROUTING_KEYS, routing_from
from carepath.services.events import ItemOutcome, accept_events, derived_key
from carepath.services.settings_reads import setting_values

MAX_BATCH = 1000
EVENTS_PATH = "/v1/events"

router = APIRouter(tags=["events"])

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "contact"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "examples": ["lab.result_available"]},
        "contact": {
            "type": "object",
            "description": "exactly one of id, external_id or email",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "id": {"type": "integer"},
                "external_id": {"type": "string"},
                "email": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "occurred_at": {"type": "string", "format": "date-time"},
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200},
        "data": {"type": "object"},
    },
}
_BODY_SCHEMA: dict[str, Any] = {
    "oneOf": [
        _EVENT_SCHEMA,
        {
            "type": "object",
            "required": ["events"],
            "additionalProperties": False,
            "properties": {
                "events": {"type": "array", "maxItems": MAX_BATCH, "items": _EVENT_SCHEMA}
            },
        },
    ]
}


class StoredEvent(BaseModel):
    event_id: int


class BatchItem(BaseModel):
    index: int
    status: str  # accepted | rejected
    event_id: int | None = None
    errors: list[dict[str, str]] | None = None


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    items: list[BatchItem]


@router.post(
    EVENTS_PATH,
    status_code=202,
    summary="Store one event or a batch",
    description=(
        'One event, or `{"events": [...]}` with up to 1,000. Each event is stored once '
        "per idempotency key: a retried request gets the same answer. In a batch, items "
        "that are not valid (or name no known contact) are rejected with their reasons "
        "and the others are stored. Workers process stored events."
    ),
    responses={
        202: {"model": StoredEvent | BatchResult},
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
)
async def post_events(
    request: Request,
    body: Annotated[dict[str, Any], Body()],
    key: EventsWriter,
) -> JSONResponse:
    state = request.app.state.api
    source = f"api:{key.name}"
    if not is_batch(body):  # stored together with the single events of concurrent requests
        return single_answer(await state.single_events.submit((source, body)))
    items: list[Any] = body["events"]
    if not isinstance(items, list):
        return _invalid([{"pointer": "#/events", "detail": "must be an array of events"}])
    if not 1 <= len(items) <= MAX_BATCH:
        detail = f"a batch holds 1 to {MAX_BATCH} events"
        return _invalid([{"pointer": "#/events", "detail": detail}])
    sourced = [(source, item) for item in items]
    outcomes = await run_in_threadpool(store_sourced_events, state.engine, state.clock, sourced)
    return JSONResponse(batch_result(outcomes), status_code=202)


def is_batch(body: dict[str, Any]) -> bool:
    return set(body) == {"events"}


def single_answer(outcome: ItemOutcome) -> JSONResponse:
    """The answer to a request with one event (also given by `event_lane`)."""
    if outcome.event_id is None:
        return _invalid(_item_errors(outcome, prefix=()))
    return JSONResponse({"event_id": outcome.event_id}, status_code=202)


def single_events_coalescer(
    engine: Engine, clock: Clock
) -> Coalescer[tuple[str, object], ItemOutcome]:
    """Where single-event requests wait to be stored together (one per app and process)."""
    return Coalescer(
        lambda group: store_single_events(engine, clock, group),
        max_group=MAX_BATCH,
        splittable=may_be_one_items_fault,
    )


def may_be_one_items_fault(error: Exception) -> bool:
    """Whether one event of a group may have caused `error` (a value a statement refused),
    as opposed to the database being unreachable, busy or slow: then every item fails."""
    if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
        return False
    return not (isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated)


def store_sourced_events(
    engine: Engine, clock: Clock, items: Sequence[tuple[str, object]]
) -> list[ItemOutcome]:
    """Store (source, raw event) items in one transaction; one outcome per item, in order."""
    return _store_together(engine, clock, items, separate_twins=False)


def store_single_events(
    engine: Engine, clock: Clock, items: Sequence[tuple[str, object]]
) -> list[ItemOutcome]:
    """As `store_sourced_events`, for the events of separate requests stored together.

    An event that names neither an idempotency key nor a time gets a key
    derived from its content and the time it is stored. Had two such twins come
    in separate transactions, their times, and so their keys, would differ: two
    requests, two events. Stored together, each later twin is timed a
    microsecond after the one before it, to the same effect.
    """
    return _store_together(engine, clock, items, separate_twins=True)


def _store_together(
    engine: Engine, clock: Clock, items: Sequence[tuple[str, object]], *, separate_twins: bool
) -> list[ItemOutcome]:
    by_source: dict[str, list[int]] = {}
    for position, (source, _) in enumerate(items):
        by_source.setdefault(source, []).append(position)
    placed: dict[int, ItemOutcome] = {}
    with engine.begin() as conn:
        settings = setting_values(conn, (CLOCK_KEY, *ROUTING_KEYS))  # one query for both
        now, routing = clock.now_from(settings), routing_from(settings)
        raw_items = _timed_twins(items, now) if separate_twins else [raw for _, raw in items]
        for source, positions in by_source.items():
            raw = [("", raw_items[p]) for p in positions]
            outcomes = accept_events(conn, raw, now=now, source=source, routing=routing)
            placed.update(zip(positions, outcomes, strict=True))
    return [placed[p] for p in range(len(items))]


def _timed_twins(items: Sequence[tuple[str, object]], now: datetime) -> list[object]:
    seen: Counter[str] = Counter()
    timed: list[object] = []
    for _, raw in items:
        if isinstance(raw, Mapping) and not raw.get("idempotency_key") and "occurred_at" not in raw:
            content = derived_key(raw)
            earlier = seen[content]
            seen[content] += 1
            if earlier:
                later = now + timedelta(microseconds=earlier)
                timed.append({**raw, "occurred_at": later.isoformat()})
                continue
        timed.append(raw)
    return timed


def batch_result(outcomes: list[ItemOutcome]) -> dict[str, object]:
    """The answer to a batch, shaped as `BatchResult` (built as plain dicts: a thousand
    models per batch cost more than storing the events)."""
    items = [_batch_item(o) for o in outcomes]
    accepted = sum(1 for o in outcomes if o.event_id is not None)
    return {"accepted": accepted, "rejected": len(outcomes) - accepted, "items": items}


def _batch_item(outcome: ItemOutcome) -> dict[str, object]:
    if outcome.event_id is not None:
        return {"index": outcome.index, "status": "accepted", "event_id": outcome.event_id}
    errors = _item_errors(outcome, prefix=("events", outcome.index))
    return {"index": outcome.index, "status": "rejected", "errors": errors}


def _item_errors(outcome: ItemOutcome, *, prefix: tuple[str | int, ...]) -> list[dict[str, str]]:
    # The event checks word each problem "field: reason".
    return field_errors([Problem.at_field(p.message) for p in outcome.problems], prefix=prefix)


def _invalid(errors: list[dict[str, str]]) -> JSONResponse:
    return problem_response(
        422, detail="the request is not valid", errors=errors, kind="invalid_input"
    )
