"""Journey funnel from run history: SQL aggregates, no loops over rows."""

from __future__ import annotations

from dataclasses import dataclass

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


def funnel(conn: Connection, definition: Workflow) -> list[FunnelRow]:
    """Per-step counts for every version of a workflow, in the order of `definition`'s steps."""
    workflow = definition.name
    kinds = {name: step_kind(step) for name, step in definition.steps.items()}
    step_order = list(kinds)
    rs = run_steps
    visits = conn.execute(
        sa.select(
            rs.c.step,
            sa.func.min(rs.c.kind).label("kind"),
            sa.func.count(sa.distinct(rs.c.run_id)).label("entered"),
            sa.func.count(sa.distinct(sa.case((rs.c.left_at.is_(None), rs.c.run_id)))).label(
                "waiting"
            ),
            sa.func.count(
                sa.distinct(
                    sa.case(
                        (
                            sa.and_(
                                rs.c.left_at.is_not(None),
                                rs.c.outcome.not_in(
                                    [StepOutcome.FAILED.value, StepOutcome.ENDED.value]
                                ),
                            ),
                            rs.c.run_id,
                        )
                    )
                )
            ).label("completed"),
        )
        .where(rs.c.workflow == workflow, rs.c.kind != "error")
        .group_by(rs.c.step)
    ).all()
    converted: dict[str, int] = dict(
        conn.execute(
            sa.select(rs.c.step, sa.func.count(sa.distinct(rs.c.run_id)))
            .join(runs, runs.c.id == rs.c.run_id)
            .where(rs.c.workflow == workflow, runs.c.status == RunStatus.CONVERTED.value)
            .group_by(rs.c.step)
        ).all()
    )
    dropped = _drop_offs(conn, workflow, has_goal=definition.goal is not None)
    by_step = {v.step: v for v in visits}
    rows = []
    for step in [*step_order, *sorted(set(by_step) - set(step_order))]:
        v = by_step.get(step)
        if v is None:
            rows.append(FunnelRow(step, kinds.get(step, ""), 0, 0, 0, 0, dropped.get(step, 0)))
            continue
        rows.append(
            FunnelRow(
                step,
                v.kind,
                v.entered,
                v.completed,
                v.waiting,
                converted.get(step, 0),
                dropped.get(step, 0),
            )
        )
    return rows


def _drop_offs(conn: Connection, workflow: str, *, has_goal: bool) -> dict[str, int]:
    """Runs that ended short of success, by the last step they did before any exit step.

    With a goal, success is converting, so a run that completed without it
    dropped off; without a goal, completing the journey is success.
    """
    last = run_steps.alias("last")
    last_active = (
        sa.select(sa.func.max(last.c.id))
        .where(last.c.run_id == runs.c.id, last.c.kind != "exit")
        .correlate(runs)
        .scalar_subquery()
    )
    ended = [RunStatus.EXITED.value, RunStatus.FAILED.value]
    if has_goal:
        ended.append(RunStatus.COMPLETED.value)
    rows = conn.execute(
        sa.select(run_steps.c.step, sa.func.count())
        .select_from(runs.join(run_steps, run_steps.c.id == last_active))
        .where(runs.c.workflow == workflow, runs.c.status.in_(ended))
        .group_by(run_steps.c.step)
    ).all()
    return {str(row[0]): int(row[1]) for row in rows}


def run_status_counts(conn: Connection, workflow: str) -> dict[str, int]:
    return dict(
        conn.execute(
            sa.select(runs.c.status, sa.func.count())
            .where(runs.c.workflow == workflow)
            .group_by(runs.c.status)
        ).all()
    )


def message_counts(conn: Connection) -> dict[str, int]:
    return dict(
        conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
    )
