"""Journey funnel from run history: SQL aggregates, no loops over rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import outbox, run_steps, runs
from carepath.domain.runs import RunStatus, StepOutcome
from carepath.domain.workflow import Workflow, step_kind


@dataclass(frozen=True)
class FunnelRow:
    step: str
    kind: str
    entered: int  # runs that reached the step
    completed: int  # runs that left it and moved on
    waiting: int  # runs parked on it now
    converted: int  # runs that reached it and later converted
    # runs that ended short of success (exited, failed, or — when the workflow
    # has a goal — completed without converting) with this as their last step
    # before any exit step: where people drop off
    dropped: int
    exited: int = 0  # runs that ended at this step (an exit step, a goal, exit_when)
    failed: int = 0  # runs that failed at this step
    median_seconds: float | None = None  # median time from entering the step to leaving it


@dataclass(frozen=True)
class RunFilter:
    """Which runs a report counts: one version, and runs started in [since, until)."""

    version: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self, steps: Any) -> list[sa.ColumnElement[bool]]:
        """The filter on rows of `run_steps` (or anything with run_id and workflow_version)."""
        found: list[sa.ColumnElement[bool]] = []
        if self.version is not None:
            found.append(steps.c.workflow_version == self.version)
        period = in_period(runs.c.started_at, self.since, self.until)
        if period:
            found.append(steps.c.run_id.in_(sa.select(runs.c.id).where(*period)))
        return found

    def run_conditions(self) -> list[sa.ColumnElement[bool]]:
        """The filter on rows of `runs`."""
        found = in_period(runs.c.started_at, self.since, self.until)
        if self.version is not None:
            found.append(runs.c.workflow_version == self.version)
        return found


def in_period(
    column: sa.ColumnElement[Any], since: datetime | None, until: datetime | None
) -> list[sa.ColumnElement[bool]]:
    """`column` in [since, until); either end may be open."""
    found: list[sa.ColumnElement[bool]] = []
    if since is not None:
        found.append(column >= since)
    if until is not None:
        found.append(column < until)
    return found


def funnel(
    conn: Connection, definition: Workflow, which: RunFilter | None = None
) -> list[FunnelRow]:
    """Per-step counts for a workflow's runs, in the order of `definition`'s steps."""
    which = which or RunFilter()
    workflow = definition.name
    kinds = {name: step_kind(step) for name, step in definition.steps.items()}
    rs = run_steps
    scope = [rs.c.workflow == workflow, rs.c.kind != "error", *which.conditions(rs)]

    def runs_where(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.count(sa.distinct(sa.case((sa.and_(*conditions), rs.c.run_id))))

    moved_on = rs.c.outcome.not_in([StepOutcome.FAILED.value, StepOutcome.ENDED.value])
    visits = conn.execute(
        sa.select(
            rs.c.step,
            sa.func.min(rs.c.kind).label("kind"),
            sa.func.count(sa.distinct(rs.c.run_id)).label("entered"),
            runs_where(rs.c.left_at.is_(None)).label("waiting"),
            runs_where(rs.c.left_at.is_not(None), moved_on).label("completed"),
            runs_where(rs.c.outcome == StepOutcome.ENDED.value).label("exited"),
            runs_where(rs.c.outcome == StepOutcome.FAILED.value).label("failed"),
        )
        .where(*scope)
        .group_by(rs.c.step)
    ).all()
    converted: dict[str, int] = dict(
        conn.execute(
            sa.select(rs.c.step, sa.func.count(sa.distinct(rs.c.run_id)))
            .join(runs, runs.c.id == rs.c.run_id)
            .where(*scope, runs.c.status == RunStatus.CONVERTED.value)
            .group_by(rs.c.step)
        ).all()
    )
    dropped = _drop_offs(conn, workflow, which, has_goal=definition.goal is not None)
    medians = _median_seconds(conn, scope)
    by_step = {v.step: v for v in visits}
    rows = []
    for step in [*kinds, *sorted(set(by_step) - set(kinds))]:
        v = by_step.get(step)
        rows.append(
            FunnelRow(
                step=step,
                kind=v.kind if v is not None else kinds.get(step, ""),
                entered=v.entered if v is not None else 0,
                completed=v.completed if v is not None else 0,
                waiting=v.waiting if v is not None else 0,
                converted=converted.get(step, 0),
                dropped=dropped.get(step, 0),
                exited=v.exited if v is not None else 0,
                failed=v.failed if v is not None else 0,
                median_seconds=medians.get(step),
            )
        )
    return rows


def _median_seconds(conn: Connection, scope: list[sa.ColumnElement[bool]]) -> dict[str, float]:
    """The median time spent in each step (rows that left it)."""
    rs = run_steps
    if conn.dialect.name == "postgresql":
        spent: Any = sa.func.extract("epoch", rs.c.left_at - rs.c.entered_at)
        median = sa.func.percentile_cont(0.5).within_group(spent)
        query: Any = (
            sa.select(rs.c.step, median)
            .where(*scope, rs.c.left_at.is_not(None))
            .group_by(rs.c.step)
        )
    else:  # no percentile aggregate: the middle row(s) by window functions
        spent = (sa.func.julianday(rs.c.left_at) - sa.func.julianday(rs.c.entered_at)) * 86400
        ranked = (
            sa.select(
                rs.c.step,
                spent.label("spent"),
                sa.func.row_number().over(partition_by=rs.c.step, order_by=spent).label("n"),
                sa.func.count().over(partition_by=rs.c.step).label("total"),
            )
            .where(*scope, rs.c.left_at.is_not(None))
            .subquery("ranked")
        )
        # The middle row, or the two middle rows of an even count (`//`: integer division).
        middle = sa.or_(
            ranked.c.n == (ranked.c.total + 1) // 2, ranked.c.n == (ranked.c.total + 2) // 2
        )
        query = (
            sa.select(ranked.c.step, sa.func.avg(ranked.c.spent))
            .where(middle)
            .group_by(ranked.c.step)
        )
    return {str(step): round(float(value), 3) for step, value in conn.execute(query)}


def _drop_offs(
    conn: Connection, workflow: str, which: RunFilter, *, has_goal: bool
) -> dict[str, int]:
    """Runs that ended short of success, by the last step they did before any exit step.

    With a goal, success is converting, so a run that completed without it
    dropped off; without a goal, completing the journey is success.
    """
    ended = [RunStatus.EXITED.value, RunStatus.FAILED.value]
    if has_goal:
        ended.append(RunStatus.COMPLETED.value)
    # Each run's last step before any exit: one grouped pass over the steps, not a
    # lookup per run.
    last = run_steps.alias("last")
    last_active = (
        sa.select(last.c.run_id, sa.func.max(last.c.id).label("id"))
        .where(last.c.workflow == workflow, last.c.kind != "exit")
        .group_by(last.c.run_id)
        .subquery("last_active")
    )
    rows = conn.execute(
        sa.select(run_steps.c.step, sa.func.count())
        .select_from(
            runs.join(last_active, last_active.c.run_id == runs.c.id).join(
                run_steps, run_steps.c.id == last_active.c.id
            )
        )
        .where(runs.c.workflow == workflow, runs.c.status.in_(ended), *which.run_conditions())
        .group_by(run_steps.c.step)
    ).all()
    return {str(row[0]): int(row[1]) for row in rows}


def run_status_counts(
    conn: Connection, workflow: str, which: RunFilter | None = None
) -> dict[str, int]:
    return dict(
        conn.execute(
            sa.select(runs.c.status, sa.func.count())
            .where(runs.c.workflow == workflow, *(which or RunFilter()).run_conditions())
            .group_by(runs.c.status)
        ).all()
    )


def conversion(statuses: dict[str, int]) -> float:
    """Runs that reached the goal, as a share of all runs counted."""
    total = sum(statuses.values())
    return statuses.get(RunStatus.CONVERTED.value, 0) / total if total else 0.0


def message_counts(conn: Connection) -> dict[str, int]:
    return dict(
        conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
    )
