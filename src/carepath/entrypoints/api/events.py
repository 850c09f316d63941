"""`POST /v1/events`: one event, or a batch of up to 1,000; stored now, processed by workers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from carepath.entrypoints.api.auth import EventsWriter
from carepath.entrypoints.api.problems import field_errors, problem_response
from carepath.errors import Problem
from carepath.services.events import ItemOutcome, accept_events

MAX_BATCH = 1000

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
    "/v1/events",
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
def post_events(
    request: Request,
    body: Annotated[dict[str, Any], Body()],
    key: EventsWriter,
) -> JSONResponse:
    state = request.app.state.api
    batch = set(body) == {"events"}
    items: list[Any] = body["events"] if batch else [body]
    if batch and not isinstance(items, list):
        return _invalid([{"pointer": "#/events", "detail": "must be an array of events"}])
    if batch and not 1 <= len(items) <= MAX_BATCH:
        detail = f"a batch holds 1 to {MAX_BATCH} events"
        return _invalid([{"pointer": "#/events", "detail": detail}])
    with state.engine.begin() as conn:
        outcomes = accept_events(
            conn,
            [("", item) for item in items],
            now=state.clock.now(conn),
            source=f"api:{key.name}",
        )
    if not batch:
        (only,) = outcomes
        if only.event_id is None:
            return _invalid(_item_errors(only, prefix=()))
        return JSONResponse({"event_id": only.event_id}, status_code=202)
    result = batch_result(outcomes)
    return JSONResponse(result.model_dump(exclude_none=True), status_code=202)


def batch_result(outcomes: list[ItemOutcome]) -> BatchResult:
    return BatchResult(
        accepted=sum(1 for o in outcomes if o.event_id is not None),
        rejected=sum(1 for o in outcomes if o.event_id is None),
        items=[_batch_item(o) for o in outcomes],
    )


def _batch_item(outcome: ItemOutcome) -> BatchItem:
    if outcome.event_id is not None:
        return BatchItem(index=outcome.index, status="accepted", event_id=outcome.event_id)
    errors = _item_errors(outcome, prefix=("events", outcome.index))
    return BatchItem(index=outcome.index, status="rejected", errors=errors)


def _item_errors(outcome: ItemOutcome, *, prefix: tuple[str | int, ...]) -> list[dict[str, str]]:
    # The event checks word each problem "field: reason".
    return field_errors([Problem.at_field(p.message) for p in outcome.problems], prefix=prefix)


def _invalid(errors: list[dict[str, str]]) -> JSONResponse:
    return problem_response(
        422, detail="the request is not valid", errors=errors, kind="invalid_input"
    )
