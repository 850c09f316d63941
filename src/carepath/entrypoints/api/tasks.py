"""`/v1/tasks`: the contact-center queue that journeys fill; claim and complete."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from carepath.db.connection import read_only
from carepath.entrypoints.api.auth import TasksReader, TasksWriter, audit_read_or_change
from carepath.entrypoints.api.params import TaskId
from carepath.services.tasks import claim_task, complete_task, list_tasks

router = APIRouter(tags=["tasks"])


class TaskOut(BaseModel):
    id: int
    contact_id: int
    queue: str
    title: str
    status: str
    workflow: str | None
    step: str | None
    assignee: str | None
    outcome: str | None
    created_at: datetime
    completed_at: datetime | None


class Claim(BaseModel):
    agent: str = Field(min_length=1, max_length=80)


class Completion(BaseModel):
    outcome: str = Field(min_length=1, max_length=100, examples=["booked", "no-answer"])


def _task(row: Any) -> TaskOut:
    return TaskOut.model_validate(row, from_attributes=True)


@router.get("/v1/tasks", summary="Tasks of a queue", response_model=list[TaskOut])
def get_tasks(
    request: Request,
    key: TasksReader,
    queue: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str, Query(pattern="^(open|completed)$")] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TaskOut]:
    state = request.app.state.api
    with read_only(state.engine) as conn:
        now = state.clock.now(conn)
        found = list_tasks(
            conn, who=key.principal, now=now, queue=queue, status=status, limit=limit
        )
        return [_task(r) for r in found]


@router.post("/v1/tasks/{task_id}/claim", summary="Take a task", response_model=TaskOut)
def post_claim(request: Request, task_id: TaskId, claim: Claim, key: TasksWriter) -> TaskOut:
    state = request.app.state.api
    with state.engine.begin() as conn:
        now = state.clock.now(conn)
        claimed = _task(claim_task(conn, task_id, agent=claim.agent, now=now, who=key.principal))
    audit_read_or_change(request, key, "task.claim", [claimed.contact_id], f"task {task_id}")
    return claimed


@router.post(
    "/v1/tasks/{task_id}/complete",
    summary="Close a task with an outcome; journeys waiting for task.completed go on",
    status_code=204,
)
def post_complete(
    request: Request, task_id: TaskId, completion: Completion, key: TasksWriter
) -> Response:
    state = request.app.state.api
    with state.engine.begin() as conn:
        now = state.clock.now(conn)
        contact_id = complete_task(
            conn, task_id, outcome=completion.outcome, now=now, who=key.principal
        )
    detail = f"task {task_id}: {completion.outcome}"
    audit_read_or_change(request, key, "task.complete", [contact_id], detail)
    return Response(status_code=204)
