"""`/v1/contacts`: create or update by identifier, read, change, erase, list by cursor."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from carepath.db.connection import read_only
from carepath.entrypoints.api.auth import ContactsReader, ContactsWriter, audit_read_or_change
from carepath.entrypoints.api.params import ContactId
from carepath.entrypoints.api.problems import problem_response
from carepath.errors import InvalidInput, Problem
from carepath.services.api_keys import ApiKey
from carepath.services.contact_records import (
    change_contact,
    erase_contact,
    list_contacts,
    read_contact,
    save_contact,
)
from carepath.services.contacts import import_contacts

router = APIRouter(tags=["contacts"])
MAX_IMPORT_BYTES = 100 * 1024 * 1024
_IMPORT_TYPES = {
    "text/csv": ".csv",
    "application/x-ndjson": ".jsonl",
    "application/jsonl": ".jsonl",
}
_FIELDS_DOC = (
    "Core fields (external_id, email, phone, first_name, last_name, birth_date, sex, "
    "time_zone) and the custom fields of the `fields` documents."
)


class SavedContactOut(BaseModel):
    id: int
    created: bool


class ImportOut(BaseModel):
    created: int
    updated: int


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
    request: Request, record: Annotated[dict[str, Any], Body()], key: ContactsWriter
) -> JSONResponse:
    state = request.app.state.api
    with state.engine.begin() as conn:
        schema = state.cache.current(conn).catalog.schema
        now = state.clock.now(conn)
        saved = save_contact(conn, record, schema, now=now, who=key.principal)
    audit_read_or_change(request, key, "contact.save", [saved.id])
    body = {"id": saved.id, "created": saved.created}
    return JSONResponse(body, status_code=201 if saved.created else 200)


@router.post(
    "/v1/contacts/import",
    summary="Import contacts from CSV or JSON Lines, all or nothing",
    description=(
        "The body is a CSV file (`text/csv`, a header row of field names) or JSON Lines "
        "(`application/x-ndjson`, one object per line), up to 100 MB. Every record is "
        "checked first; if any is wrong nothing is written and every problem is listed "
        "with its line number. Records update the contact with the same external_id, then "
        "email."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
    response_model=ImportOut,
)
async def post_import(request: Request, key: ContactsWriter) -> ImportOut | JSONResponse:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    suffix = _IMPORT_TYPES.get(kind)
    if suffix is None:
        detail = "send text/csv or application/x-ndjson"
        return problem_response(415, detail=detail, kind="invalid_input")
    with tempfile.TemporaryDirectory(prefix="carepath-import-") as folder:
        path = Path(folder) / f"upload{suffix}"
        size = 0
        with path.open("wb") as handle:  # streamed: a large upload never sits in memory
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_IMPORT_BYTES:
                    too_large = "an import is at most 100 MB"
                    closing = {"Connection": "close"}  # rather than read the rest of it
                    return problem_response(413, detail=too_large, headers=closing)
                handle.write(chunk)
        return await run_in_threadpool(_import_file, request, path, key)


def _import_file(request: Request, path: Path, key: ApiKey) -> ImportOut | JSONResponse:
    state = request.app.state.api
    try:
        with state.engine.begin() as conn:
            schema = state.cache.current(conn).catalog.schema
            now = state.clock.now(conn)
            result = import_contacts(conn, path, schema, now=now, who=key.principal)
    except InvalidInput as exc:
        errors = [{"location": p.location, "detail": p.message} for p in exc.problems]
        return problem_response(
            422, detail="nothing was imported", errors=errors, kind="invalid_input"
        )
    except UnicodeDecodeError:
        return problem_response(422, detail="the file is not UTF-8 text", kind="invalid_input")
    detail = f"{result.created} created, {result.updated} updated"
    audit_read_or_change(request, key, "contacts.import", [], detail)
    return ImportOut(created=result.created, updated=result.updated)


@router.get("/v1/contacts/{contact_id}", summary="A contact's fields")
def get_contact(request: Request, contact_id: ContactId, key: ContactsReader) -> dict[str, Any]:
    state = request.app.state.api
    with read_only(state.engine) as conn:
        schema = state.cache.current(conn).catalog.schema
        now = state.clock.now(conn)
        found = read_contact(conn, contact_id, schema, who=key.principal, now=now)
    audit_read_or_change(request, key, "contact.read", [contact_id])
    return found


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
    key: ContactsWriter,
) -> Response:
    state = request.app.state.api
    with state.engine.begin() as conn:
        schema = state.cache.current(conn).catalog.schema
        now = state.clock.now(conn)
        change_contact(conn, contact_id, changes, schema, now=now, who=key.principal)
    fields = ", ".join(sorted(map(str, changes)))[:200]
    audit_read_or_change(request, key, "contact.change", [contact_id], f"fields: {fields}")
    return Response(status_code=204)


@router.delete(
    "/v1/contacts/{contact_id}",
    summary="Erase a contact's data, keeping an anonymous tombstone for reports",
    status_code=204,
)
def delete_contact(request: Request, contact_id: ContactId, key: ContactsWriter) -> Response:
    state = request.app.state.api
    with state.engine.begin() as conn:
        erase_contact(conn, contact_id, now=state.clock.now(conn), who=key.principal)
    audit_read_or_change(request, key, "contact.erase", [contact_id])
    return Response(status_code=204)


@router.get("/v1/contacts", summary="Contacts by id, a page at a time", response_model=ContactPage)
def get_contacts(
    request: Request,
    key: ContactsReader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> ContactPage:
    state = request.app.state.api
    after = _read_cursor(cursor) if cursor else 0
    with read_only(state.engine) as conn:
        now = state.clock.now(conn)
        page = list_contacts(conn, after=after, limit=limit, who=key.principal, now=now)
    audit_read_or_change(request, key, "contact.list", [int(str(c["id"])) for c in page])
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
