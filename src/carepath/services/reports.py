"""Journey funnel: per-step rows from the day rollup and run history (services/funnel_rollup)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import outbox, runs
from carepath.domain.runs import RunStatus
from carepath.domain.workflow import Workflow, step_kind
from carepath.services.funnel_rollup import current_totals
from carepath.services.funnel_totals import RunFilter, StepTotals, in_period

__all__ = ["FunnelRow", "RunFilter", "conversion", "funnel", "in_period", "run_status_counts"]


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


def funnel(
    conn: Connection, definition: Workflow, which: RunFilter | None = None
) -> list[FunnelRow]:
    """Per-step counts for a workflow's runs, in the order of `definition`'s steps.

    With a goal, success is converting, so a run that completed without it dropped
    off; without a goal, completing the journey is success.
    """
    totals = current_totals(conn, definition.name, which or RunFilter())
    kinds = {name: step_kind(step) for name, step in definition.steps.items()}
    rows = []
    for step in [*kinds, *sorted(set(totals) - set(kinds))]:
        t = totals.get(step) or StepTotals(kinds.get(step, ""))
        dropped = t.count("dropped_short")
        if definition.goal is not None:
            dropped += t.count("dropped_unconverted")
        rows.append(
            FunnelRow(
                step=step,
                kind=t.kind or kinds.get(step, ""),
                entered=t.count("entered"),
                completed=t.count("completed"),
                waiting=t.count("waiting"),
                converted=t.count("converted"),
                dropped=dropped,
                exited=t.count("exited"),
                failed=t.count("failed"),
                median_seconds=t.median_seconds(),
            )
        )
    return rows


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
