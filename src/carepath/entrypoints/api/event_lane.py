"""`POST /v1/events` with one event, answered before FastAPI's routing.

Routing, dependency solving and body validation cost a single-event request
more CPU than storing its event does (stored with those of concurrent
requests, see `coalescing`). A request this lane can answer exactly as the
route would is answered here: a JSON object that is not a batch, sent with a
key verified within the cache period. Anything else (a batch, a key not
verified yet or refused, a body the route's parser must judge) goes on to the
route with its body unchanged, so the route stays the one place that words
those answers. The route also documents the operation in the OpenAPI schema.

It runs inside `RefuseHostileRequests`, which has read the body whole and
checked it already.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from carepath.entrypoints.api.asgi import header, is_json, read_body, replaying, route_path
from carepath.entrypoints.api.auth import EVENTS_WRITE, KeyRing, admit, presented_key
from carepath.entrypoints.api.events import EVENTS_PATH, is_batch, single_answer
from carepath.entrypoints.api.problems import carepath_problem, http_problem
from carepath.errors import CarepathError


class SingleEventLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not is_json(scope):
            await self.app(scope, receive, send)
            return
        if route_path(scope) != EVENTS_PATH:
            await self.app(scope, receive, send)
            return
        body, whole = await read_body(receive)
        event = _single_event(body) if whole else None
        app_state = scope["app"].state
        ring: KeyRing = app_state.keys
        presented = presented_key(header(scope, b"authorization").decode("latin-1"))
        known, key = ring.remembered(presented) if presented else (False, None)
        if event is None or not known or key is None:
            await self.app(scope, replaying(body, receive), send)
            return
        try:
            admit(ring, key, EVENTS_WRITE)
        except HTTPException as refused:
            await http_problem(refused)(scope, receive, send)
            return
        try:
            outcome = await app_state.api.single_events.submit((f"api:{key.name}", event))
        except CarepathError as failed:  # answered as the route's error handler would
            await carepath_problem(failed)(scope, receive, send)
            return
        await single_answer(outcome)(scope, receive, send)


def _single_event(body: bytes) -> dict[str, Any] | None:
    """The body's one event, or None if the route must judge it (not JSON, not an object,
    or a batch)."""
    if not body:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or is_batch(parsed):
        return None
    return parsed
