"""`POST /v1/hooks/{source}`: webhooks from systems that cannot call the events API."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from carepath.domain.sources import map_payload
from carepath.entrypoints.api.events import batch_result
from carepath.entrypoints.api.problems import json_problem, problem_response
from carepath.errors import ConfigurationError
from carepath.services.clock import wall_time
from carepath.services.events import accept_events
from carepath.services.hooks import (
    SIGNATURE_HEADER,
    SignatureError,
    check_signature,
    record_receipt,
    source_secret_value,
)

router = APIRouter(tags=["events"])
MAX_BODY = 1_000_000


@router.post(
    "/v1/hooks/{source}",
    status_code=202,
    summary="A signed webhook from a source; its payload becomes events",
    description=(
        "Signed with the source's shared secret: `X-Carepath-Signature: t=<unix seconds>,"
        "v1=<hex HMAC-SHA256 of '{t}.{body}'>`, within five minutes, once. The source "
        "document maps the payload to events."
    ),
)
async def post_hook(request: Request, source: str) -> JSONResponse:
    body = await request.body()
    if len(body) > MAX_BODY:
        return problem_response(413, detail=f"a webhook body is at most {MAX_BODY} bytes")
    return await run_in_threadpool(
        _receive, request, source, body, request.headers.get(SIGNATURE_HEADER)
    )


def _receive(request: Request, name: str, body: bytes, signature: str | None) -> JSONResponse:
    state = request.app.state.api
    with state.engine.begin() as conn:
        source = state.cache.current(conn).catalog.sources.get(name)
        if source is None:
            return problem_response(404, detail="no such source")
        try:
            secret = source_secret_value(source.secret_env)
        except ConfigurationError:
            return problem_response(503, detail="the source has no secret configured")
        wall = wall_time()
        try:
            digest = check_signature(secret, signature, body, wall=wall)
        except SignatureError as exc:
            return problem_response(401, detail=str(exc), kind=exc.code)
        # Checked here whatever the content type said (the middleware checks JSON only).
        if (problem := json_problem(body)) is not None:
            return problem_response(400, detail=problem)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return problem_response(422, detail="the body is not JSON", kind="invalid_input")
        try:
            record_receipt(conn, name, digest, wall=wall)
        except SignatureError as exc:
            return problem_response(409, detail=str(exc), kind=exc.code)
        events = map_payload(source, payload)
        outcomes = accept_events(
            conn, [("", e) for e in events], now=state.clock.now(conn), source=f"hook:{name}"
        )
    return JSONResponse(batch_result(outcomes), status_code=202)
