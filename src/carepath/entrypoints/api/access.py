"""`/v1/break-glass`: emergency access to any contact, for a short stated time, audited."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from carepath.domain.access import BREAK_GLASS_LONGEST
from carepath.entrypoints.api.auth import AnyKey
from carepath.services.access import start_break_glass

router = APIRouter(tags=["access"])
_LONGEST_MINUTES = int(BREAK_GLASS_LONGEST.total_seconds() // 60)


class BreakGlassIn(BaseModel):
    reason: str = Field(min_length=10, max_length=300, examples=["patient in ED, consent unclear"])
    minutes: int = Field(default=60, ge=1, le=_LONGEST_MINUTES)


class BreakGlassOut(BaseModel):
    until: datetime


@router.post(
    "/v1/break-glass",
    summary="Open emergency access: read any contact until it ends; every read is audited",
    response_model=BreakGlassOut,
)
def post_break_glass(request: Request, body: BreakGlassIn, key: AnyKey) -> BreakGlassOut:
    state = request.app.state.api
    with state.engine.begin() as conn:
        until = start_break_glass(conn, key.principal, reason=body.reason, minutes=body.minutes)
    return BreakGlassOut(until=until)
