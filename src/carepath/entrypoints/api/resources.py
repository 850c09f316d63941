"""Resources and workflows: validate and apply (as the CLI does), list, enroll, runs."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from carepath.db.connection import read_only
from carepath.db.schema import contacts, resources, runs
from carepath.domain.resources import Kind
from carepath.entrypoints.api.auth import (
    ResourcesWriter,
    WorkflowsReader,
    WorkflowsWriter,
    audit_read_or_change,
)
from carepath.entrypoints.api.params import ContactId, Id
from carepath.entrypoints.api.problems import problem_response
from carepath.errors import Forbidden, InvalidInput, NotFound, Problem
from carepath.services import catalog_store
from carepath.services.access import identities_reason, record_break_glass, refuse_data_leaving
from carepath.services.documents import load_text
from carepath.services.enrollment import EnrollRequest, enroll
from carepath.services.workflow_states import activate_workflow, pause_workflow

router = APIRouter(tags=["resources"])
MAX_SOURCE = 1_000_000  # characters of YAML or JSON in one request
SOURCE_NAME = "request"


class ResourceSource(BaseModel):
    source: str = Field(
        max_length=MAX_SOURCE,
        description="The documents, as a YAML file holds them (several separated by ---) or JSON.",
    )


class AppliedOut(BaseModel):
    kind: str
    name: str
    version: int
    changed: bool


class WorkflowOut(BaseModel):
    name: str
    version: int
    created_at: datetime


class WorkflowState(BaseModel):
    name: str
    paused: bool


class EnrollIn(BaseModel):
    contact_ids: list[Id] = Field(min_length=1, max_length=1000)


class EnrollOut(BaseModel):
    run_ids: list[int]
    skipped: list[dict[str, object]]


class RunOut(BaseModel):
    id: int
    workflow: str
    workflow_version: int
    status: str
    current_step: str | None
    wake_at: datetime | None
    started_at: datetime
    ended_at: datetime | None
    reason: str | None


def _problems(problems: list[Problem]) -> JSONResponse:
    errors = [{"location": p.location, "detail": p.message} for p in problems]
    return problem_response(
        422, detail="the documents are not valid", errors=errors, kind="invalid_input"
    )


@router.post("/v1/resources/validate", summary="Check documents without storing them")
def post_validate(
    request: Request,
    body: ResourceSource,
    _: ResourcesWriter,
) -> JSONResponse:
    docs, problems = load_text(body.source, SOURCE_NAME)
    if not problems:
        with read_only(request.app.state.api.engine) as conn:
            problems = catalog_store.check_documents(conn, docs)
    if problems:
        return _problems(problems)
    return JSONResponse({"valid": len(docs)})


@router.post(
    "/v1/resources/apply",
    summary="Validate, then store a new version of each resource that changed (all or nothing)",
    response_model=list[AppliedOut],
)
def post_apply(
    request: Request,
    body: ResourceSource,
    key: ResourcesWriter,
) -> list[AppliedOut] | JSONResponse:
    docs, problems = load_text(body.source, SOURCE_NAME)
    if problems:
        return _problems(problems)
    state = request.app.state.api
    try:
        with state.engine.begin() as conn:
            applied = catalog_store.apply_documents(conn, docs, now=state.clock.now(conn))
            changed_workflows = [a.name for a in applied if a.changed and a.kind is Kind.WORKFLOW]
            refuse_data_leaving(conn, key.principal, changed_workflows)  # else rolled back
    except InvalidInput as exc:
        return _problems(exc.problems)
    changed = [f"{a.kind.value} {a.name} v{a.version}" for a in applied if a.changed]
    if changed:
        audit_read_or_change(request, key, "resources.apply", [], ", ".join(changed))
    return [
        AppliedOut(kind=a.kind.value, name=a.name, version=a.version, changed=a.changed)
        for a in applied
    ]


@router.get("/v1/workflows", summary="Workflows and their latest versions", tags=["workflows"])
def get_workflows(request: Request, _: WorkflowsReader) -> list[WorkflowOut]:
    latest = (
        sa.select(resources.c.name, sa.func.max(resources.c.version).label("version"))
        .where(resources.c.kind == "workflow")
        .group_by(resources.c.name)
        .subquery()
    )
    query = (
        sa.select(resources.c.name, resources.c.version, resources.c.created_at)
        .join(
            latest,
            sa.and_(latest.c.name == resources.c.name, latest.c.version == resources.c.version),
        )
        .where(resources.c.kind == "workflow")
        .order_by(resources.c.name)
    )
    with read_only(request.app.state.api.engine) as conn:
        return [WorkflowOut.model_validate(r, from_attributes=True) for r in conn.execute(query)]


@router.get(
    "/v1/workflows/{name}/versions",
    summary="Every stored version of a workflow (runs stay on the version they started on)",
    tags=["workflows"],
)
def get_versions(request: Request, name: str, _: WorkflowsReader) -> list[WorkflowOut]:
    query = (
        sa.select(resources.c.name, resources.c.version, resources.c.created_at)
        .where(resources.c.kind == "workflow", resources.c.name == name)
        .order_by(resources.c.version)
    )
    with read_only(request.app.state.api.engine) as conn:
        found = [WorkflowOut.model_validate(r, from_attributes=True) for r in conn.execute(query)]
    if not found:
        raise NotFound(f"no workflow named {name!r}")
    return found


@router.post(
    "/v1/workflows/{name}/pause",
    summary="Pause a workflow: no new enrollments, its runs wait until it is activated",
    tags=["workflows"],
)
def post_pause(request: Request, name: str, key: WorkflowsWriter) -> WorkflowState:
    state = request.app.state.api
    with state.engine.begin() as conn:
        pause_workflow(conn, name, now=state.clock.now(conn))
    audit_read_or_change(request, key, "workflow.pause", [], name)
    return WorkflowState(name=name, paused=True)


@router.post(
    "/v1/workflows/{name}/activate",
    summary="Activate a paused workflow: it enrolls again and its runs go on",
    tags=["workflows"],
)
def post_activate(request: Request, name: str, key: WorkflowsWriter) -> WorkflowState:
    state = request.app.state.api
    with state.engine.begin() as conn:
        activate_workflow(conn, name)
    audit_read_or_change(request, key, "workflow.activate", [], name)
    return WorkflowState(name=name, paused=False)


@router.post(
    "/v1/workflows/{name}/enroll",
    summary="Enroll contacts by hand (re-entry rules apply)",
    tags=["workflows"],
)
def post_enroll(
    request: Request,
    name: str,
    body: EnrollIn,
    key: WorkflowsWriter,
) -> EnrollOut:
    state = request.app.state.api
    with state.engine.begin() as conn:
        current = state.cache.current(conn)
        current.workflow_version(name)  # NotFound for an unknown workflow
        wanted = sorted(set(body.contact_ids))
        known = set(
            conn.execute(
                sa.select(contacts.c.id).where(
                    contacts.c.id.in_(wanted), contacts.c.erased_at.is_(None)
                )
            ).scalars()
        )
        missing = [i for i in wanted if i not in known]
        if missing:
            raise InvalidInput([Problem("contact_ids", f"no contact with id {i}") for i in missing])
        outcome = enroll(
            conn,
            current,
            [EnrollRequest(i, name) for i in wanted],
            now=state.clock.now(conn),
            max_chain_depth=state.max_chain_depth,
        )
    skipped = [{"contact_id": s.request.contact_id, "reason": s.reason} for s in outcome.skipped]
    audit_read_or_change(request, key, "workflow.enroll", wanted, name)
    return EnrollOut(run_ids=outcome.run_ids, skipped=skipped)


@router.get("/v1/contacts/{contact_id}/runs", summary="A contact's runs", tags=["workflows"])
def get_runs(
    request: Request,
    contact_id: ContactId,
    key: WorkflowsReader,
) -> list[RunOut]:
    state = request.app.state.api
    with read_only(state.engine) as conn:
        shown, emergency = identities_reason(conn, key.principal)
        if not shown:
            raise Forbidden(f"the {key.role} role sees workflows without contact identities")
        if emergency is not None:
            record_break_glass(conn, key.principal, [contact_id], emergency)
        exists = conn.execute(sa.select(contacts.c.id).where(contacts.c.id == contact_id)).first()
        if exists is None:
            raise NotFound("no contact with that id")
        rows = conn.execute(
            sa.select(runs).where(runs.c.contact_id == contact_id).order_by(runs.c.id)
        )
        found = [RunOut.model_validate(r, from_attributes=True) for r in rows]
    audit_read_or_change(request, key, "contact.runs", [contact_id])
    return found
