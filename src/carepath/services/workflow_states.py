"""Pausing a workflow: no new enrollments, and its runs wait where they are until activated.

Events that arrive meanwhile are stored and still move waiting runs (a
`wait_for` that is answered is answered); what a run does next happens
after the workflow is activated again.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import insert_ignoring_conflicts
from carepath.db.schema import paused_workflows, resources
from carepath.domain.resources import Kind
from carepath.errors import NotFound


def not_paused(workflow: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """For the claim and due-work queries: runs of a paused workflow are not due."""
    return workflow.not_in(sa.select(paused_workflows.c.workflow).scalar_subquery())


def pause_workflow(conn: Connection, name: str, *, now: datetime) -> bool:
    """Pause `name`; False if it already was; NotFound if no such workflow is stored."""
    _check_exists(conn, name)
    row = {"workflow": name, "paused_at": now}
    return bool(insert_ignoring_conflicts(conn, paused_workflows, [row], returning="workflow"))


def activate_workflow(conn: Connection, name: str) -> bool:
    """Let `name` enroll and advance again; False if it was not paused."""
    _check_exists(conn, name)
    done = conn.execute(paused_workflows.delete().where(paused_workflows.c.workflow == name))
    return bool(done.rowcount)


def paused_names(conn: Connection) -> set[str]:
    return set(conn.execute(sa.select(paused_workflows.c.workflow)).scalars())


def _check_exists(conn: Connection, name: str) -> None:
    stored = sa.select(resources.c.id).where(
        resources.c.kind == Kind.WORKFLOW.value, resources.c.name == name
    )
    if conn.execute(stored.limit(1)).first() is None:
        raise NotFound(f"no workflow named {name!r}")
