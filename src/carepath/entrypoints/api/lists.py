"""`/v1/lists`: the lists, their members, joining and leaving by hand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from carepath.db.connection import read_only
from carepath.entrypoints.api.auth import ContactsReader, ContactsWriter, audit_read_or_change
from carepath.entrypoints.api.params import MAX_ID, ContactId, Id
from carepath.services.list_memberships import (
    join_list,
    leave_list,
    list_member_ids,
    list_summaries,
)

router = APIRouter(tags=["lists"])


class ListOut(BaseModel):
    name: str
    title: str
    members: int


class MembersIn(BaseModel):
    contact_ids: list[Id] = Field(min_length=1, max_length=1000)


class JoinedOut(BaseModel):
    joined: int


class MembersPage(BaseModel):
    contact_ids: list[int]
    next_after: int | None


@router.get("/v1/lists", summary="Lists and how many contacts each holds")
def get_lists(request: Request, _: ContactsReader) -> list[ListOut]:
    with read_only(request.app.state.api.engine) as conn:
        return [ListOut.model_validate(s) for s in list_summaries(conn)]


@router.get("/v1/lists/{name}/members", summary="Members of a list, by contact id")
def get_members(
    request: Request,
    name: str,
    key: ContactsReader,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MembersPage:
    state = request.app.state.api
    with read_only(state.engine) as conn:
        now = state.clock.now(conn)
        ids = list_member_ids(conn, name, after=after, limit=limit, who=key.principal, now=now)
    audit_read_or_change(request, key, "list.members", ids, name)
    return MembersPage(contact_ids=ids, next_after=ids[-1] if len(ids) == limit else None)


@router.post("/v1/lists/{name}/members", summary="Add contacts to a list (list.joined each)")
def post_members(request: Request, name: str, body: MembersIn, key: ContactsWriter) -> JoinedOut:
    state = request.app.state.api
    with state.engine.begin() as conn:
        now, source = state.clock.now(conn), f"api:{key.name}"
        joined = join_list(conn, name, body.contact_ids, now=now, source=source, who=key.principal)
    audit_read_or_change(request, key, "list.join", body.contact_ids, name)
    return JoinedOut(joined=joined)


@router.delete(
    "/v1/lists/{name}/members/{contact_id}",
    summary="Take a contact off a list (list.left)",
    status_code=204,
)
def delete_member(
    request: Request, name: str, contact_id: ContactId, key: ContactsWriter
) -> Response:
    state = request.app.state.api
    with state.engine.begin() as conn:
        now, source = state.clock.now(conn), f"api:{key.name}"
        leave_list(conn, name, contact_id, now=now, source=source, who=key.principal)
    audit_read_or_change(request, key, "list.leave", [contact_id], name)
    return Response(status_code=204)
