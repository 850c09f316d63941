"""`/v1/reports/...`: the funnel, engagement, the message log, page views, a contact's timeline.

The same services as `carepath report`, so the numbers are the CLI's.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from carepath.db.connection import read_only
from carepath.entrypoints.api.auth import ContactsReader, ReportsReader, audit_read_or_change
from carepath.entrypoints.api.params import MAX_ID, ContactId, Moment
from carepath.errors import NotFound
from carepath.services import reports
from carepath.services.catalog_store import build_current
from carepath.services.engagement import engagement_report
from carepath.services.message_log import LogFilter, message_log, timeline
from carepath.services.page_views import page_view_report

router = APIRouter(tags=["reports"])
Name = Annotated[str | None, Query(max_length=100)]


class MessagePage(BaseModel):
    messages: list[dict[str, Any]]
    next_after: int | None  # pass as `after` for the next page; null on the last one


def _which_runs(
    since: Moment | None = None,
    until: Moment | None = None,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> reports.RunFilter:
    """The period and version a report counts (query parameters)."""
    return reports.RunFilter(version, since, until)


WhichRuns = Annotated[reports.RunFilter, Depends(_which_runs)]


def _workflow(conn: Any, name: str) -> Any:
    definition = build_current(conn).catalog.workflows.get(name)
    if definition is None:
        raise NotFound(f"no workflow named {name!r}")
    return definition


@router.get("/v1/reports/workflows/{name}/funnel", summary="Per-step funnel of a workflow")
def get_funnel(request: Request, name: str, _: ReportsReader, which: WhichRuns) -> dict[str, Any]:
    with read_only(request.app.state.api.engine) as conn:
        rows = reports.funnel(conn, _workflow(conn, name), which)
        statuses = reports.run_status_counts(conn, name, which)
    return {
        "steps": [asdict(r) for r in rows],
        "runs": statuses,
        "conversion": reports.conversion(statuses),
    }


@router.get(
    "/v1/reports/workflows/{name}/engagement",
    summary="Engagement per email step, per link, and A/B split paths compared",
)
def get_engagement(
    request: Request, name: str, _: ReportsReader, which: WhichRuns
) -> dict[str, Any]:
    with read_only(request.app.state.api.engine) as conn:
        definition = _workflow(conn, name)
        return engagement_report(
            conn, definition, since=which.since, until=which.until, version=which.version
        )


@router.get(
    "/v1/reports/messages", summary="The message log, a page at a time", response_model=MessagePage
)
def get_messages(
    request: Request,
    key: ReportsReader,
    *,
    workflow: Name = None,
    step: Name = None,
    template: Name = None,
    contact_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    since: Moment | None = None,
    until: Moment | None = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MessagePage:
    which = LogFilter(workflow, step, template, contact_id, since, until)
    state = request.app.state.api
    with read_only(state.engine) as conn:
        now = state.clock.now(conn)
        page = message_log(conn, which, who=key.principal, now=now, after=after, limit=limit)
    named = sorted({m.contact_id for m in page if m.contact_id is not None})
    if named:
        audit_read_or_change(request, key, "messages.read", named)
    next_after = page[-1].id if len(page) == limit else None
    return MessagePage(messages=[asdict(m) for m in page], next_after=next_after)


@router.get(
    "/v1/reports/page-views",
    summary="Page views per path: by known visitors, and counted for everyone else",
)
def get_page_views(
    request: Request,
    _: ReportsReader,
    since: Annotated[date | None, Query(description="First day counted (UTC)")] = None,
    until: Annotated[date | None, Query(description="Last day counted (UTC)")] = None,
) -> dict[str, list[dict[str, Any]]]:
    with read_only(request.app.state.api.engine) as conn:
        return {"pages": page_view_report(conn, since=since, until=until)}


@router.get("/v1/contacts/{contact_id}/timeline", summary="Everything that happened to a contact")
def get_timeline(
    request: Request, contact_id: ContactId, key: ContactsReader
) -> list[dict[str, Any]]:
    state = request.app.state.api
    with read_only(state.engine) as conn:
        entries = timeline(conn, contact_id, who=key.principal, now=state.clock.now(conn))
    if not entries:
        raise NotFound("no contact with that id")
    audit_read_or_change(request, key, "contact.timeline", [contact_id])
    return [{"at": e.at, "what": e.what, "summary": e.summary, **e.detail} for e in entries]
