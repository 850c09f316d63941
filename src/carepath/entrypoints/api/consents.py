"""`/v1/contacts/{id}/consents`: the marketing authorization and channel opt-outs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from carepath.db.connection import read_only
from carepath.entrypoints.api.auth import ContactsReader, ContactsWriter, audit_read_or_change
from carepath.entrypoints.api.params import ContactId, Moment
from carepath.services.consents import ConsentChange, ConsentKind, read_consents, set_consent

router = APIRouter(tags=["contacts"])


class ConsentIn(BaseModel):
    status: Literal["granted", "revoked"]
    source: str = Field(min_length=1, max_length=100, examples=["registration form", "SMS STOP"])
    expires_at: Moment | None = None


class ConsentOut(BaseModel):
    kind: str
    status: str
    source: str
    granted_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    updated_at: datetime


@router.put(
    "/v1/contacts/{contact_id}/consents/{kind}",
    summary="Grant or revoke a consent: marketing (the HIPAA authorization), email or sms",
    status_code=204,
)
def put_consent(
    request: Request, contact_id: ContactId, kind: ConsentKind, body: ConsentIn, key: ContactsWriter
) -> Response:
    state = request.app.state.api
    change = ConsentChange(kind, body.status == "granted", body.source, body.expires_at)
    with state.engine.begin() as conn:
        set_consent(conn, contact_id, change, now=state.clock.now(conn), who=key.principal)
    audit_read_or_change(request, key, f"consent.{body.status}", [contact_id], detail=kind.value)
    return Response(status_code=204)


@router.get(
    "/v1/contacts/{contact_id}/consents",
    summary="A contact's consents",
    response_model=list[ConsentOut],
)
def get_consents(request: Request, contact_id: ContactId, key: ContactsReader) -> list[Any]:
    state = request.app.state.api
    with read_only(state.engine) as conn:
        found = read_consents(conn, contact_id, who=key.principal, now=state.clock.now(conn))
    audit_read_or_change(request, key, "consent.read", [contact_id])
    return found
