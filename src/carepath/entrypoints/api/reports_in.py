"""`POST /v1/bounces`: a bounce (RFC 3464) or complaint (ARF) report, as a mail system relays it."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from carepath.entrypoints.api.auth import EventsWriter
from carepath.entrypoints.api.problems import problem_response
from carepath.errors import InvalidInput
from carepath.services.bounces import ingest_reports

router = APIRouter(tags=["email"])
MAX_REPORT_BYTES = 10 * 1024 * 1024


class ReportsOut(BaseModel):
    hard_bounces: int
    soft_bounces: int
    complaints: int
    unmatched: int
    suppressed: int


@router.post(
    "/v1/bounces",
    summary="Apply one bounce or complaint report (the whole message, message/rfc822)",
    description=(
        "What `carepath bounces ingest` does for a file: hard bounces and complaints "
        "suppress the address and become email.bounced / email.complained events. "
        "A report applied twice changes nothing the second time."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    response_model=ReportsOut,
)
async def post_bounce(request: Request, _: EventsWriter) -> ReportsOut | JSONResponse:
    raw = await request.body()
    if len(raw) > MAX_REPORT_BYTES:
        return problem_response(413, detail="a report is at most 10 MB")
    return await run_in_threadpool(_apply, request, raw)


def _apply(request: Request, raw: bytes) -> ReportsOut | JSONResponse:
    state = request.app.state.api
    try:
        with state.engine.begin() as conn:
            done = ingest_reports(conn, [("report", raw)], now=state.clock.now(conn))
    except InvalidInput as exc:
        detail = exc.problems[0].message if exc.problems else "not a report"
        return problem_response(422, detail=detail, kind="invalid_input")
    return ReportsOut(**asdict(done))
