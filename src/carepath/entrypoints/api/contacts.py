"""`/v1/contacts`: create or update by identifier, read, change, erase, list by cursor."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from carepath.db.connection import read_only
from carepath.entrypoints.api.auth import require
from carepath.entrypoints.api.params import ContactId
from carepath.errors import InvalidInput, Problem
from carepath.services.api_keys import ApiKey
from carepath.services.contact_records import (
    change_contact,
    erase_contact,
    list_contacts,
    read_contact,
    save_contact,
)

router = APIRouter(tags=["contacts"])
Reader = Annotated[ApiKey, Depends(require("contacts:read"))]
Writer = Annotated[ApiKey, Depends(require("contacts:write"))]
_FIELDS_DOC = (
    "Core fields (external_id, email, phone, first_name, last_name, birth_date, sex, "
    "time_zone) and the custom fields of the `fields` documents."
)


class SavedContactOut(BaseModel):
    id: int
    created: bool


class ContactPage(BaseModel):
    contacts: list[dict[str, Any]]
    next: str | None


@router.post(
    "/v1/contacts",
    summary="Create a contact, or update the one with the same external_id or email",
    description=_FIELDS_DOC,
    response_model=SavedContactOut,
    responses={201: {"model": SavedContactOut}},
)
def post_contact(
    request: Request, record: Annotated[dict[str, Any], Body()], _: Writer
) -> JSONResponse:
    state = request.app.state.api
    with state.engine.begin() as conn:
        schema = state.cache.current(conn).catalog.schema
        saved = save_contact(conn, record, schema, now=state.clock.now(conn))
    body = {"id": saved.id, "created": saved.created}
    return JSONResponse(body, status_code=201 if saved.created else 200)


@router.get("/v1/contacts/{contact_id}", summary="A contact's fields")
def get_contact(request: Request, contact_id: ContactId, _: Reader) -> dict[str, Any]:
    state = request.app.state.api
    with read_only(state.engine) as conn:
        schema = state.cache.current(conn).catalog.schema
        return read_contact(conn, contact_id, schema)


@router.patch(
    "/v1/contacts/{contact_id}",
    summary="Set fields of a contact (null removes a value)",
    description=_FIELDS_DOC,
    status_code=204,
)
def patch_contact(
    request: Request,
    contact_id: ContactId,
    changes: Annotated[dict[str, Any], Body()],
    _: Writer,
) -> Response:
    state = request.app.state.api
    with state.engine.begin() as conn:
        schema = state.cache.current(conn).catalog.schema
        change_contact(conn, contact_id, changes, schema, now=state.clock.now(conn))
    return Response(status_code=204)


@router.delete(
    "/v1/contacts/{contact_id}",
    summary="Erase a contact's data, keeping an anonymous tombstone for reports",
    status_code=204,
)
def delete_contact(request: Request, contact_id: ContactId, _: Writer) -> Response:
    state = request.app.state.api
    with state.engine.begin() as conn:
        erase_contact(conn, contact_id, now=state.clock.now(conn))
    return Response(status_code=204)


@router.get("/v1/contacts", summary="Contacts by id, a page at a time", response_model=ContactPage)
def get_contacts(
    request: Request,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> ContactPage:
    state = request.app.state.api
    after = _read_cursor(cursor) if cursor else 0
    with read_only(state.engine) as conn:
        page = list_contacts(conn, after=after, limit=limit)
    last = page[-1]["id"] if len(page) == limit else None
    return ContactPage(contacts=page, next=_cursor(int(str(last))) if last is not None else None)


def _cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"c:{last_id}".encode()).decode().rstrip("=")


def _read_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "c" or not value.isdigit():
            raise ValueError(cursor)
        return int(value)
    except ValueError:
        raise InvalidInput([Problem("cursor", "not a cursor this API gave out")]) from None
