"""What the funnel adds up per step, counted from run history by SQL aggregates.

Every count is of runs, and every run belongs to the day it started on, so
the totals of separate sets of runs (days, parts of days) add up exactly. The
time spent in a step is kept as a histogram that adds up too: exact seconds
below a minute, then buckets 2 % wide, each with its count, smallest and
largest value, so a median read from it is exact where a bucket holds one
value and within 2 % otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import run_steps, runs
from carepath.domain.runs import RunStatus, StepOutcome

_EXACT_BELOW = 60  # seconds kept one by one
_GROWTH = math.log(1.02)
COUNTS = (
    "entered",  # runs that reached the step
    "completed",  # runs that left it and moved on
    "waiting",  # runs parked on it now
    "exited",  # runs that ended at it (an exit step, a goal, exit_when)
    "failed",  # runs that failed at it
    "converted",  # runs that reached it and later converted
    "dropped_short",  # runs exited or failed with it as their last step before any exit
    "dropped_unconverted",  # runs completed without converting, likewise
)


@dataclass(frozen=True)
class RunFilter:
    """Which runs a report counts: one version, and runs started in [since, until)."""

    version: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self, steps: Any, workflow: str) -> list[sa.ColumnElement[bool]]:
        """The filter on rows of `run_steps` (or anything with run_id and workflow_version)
        of one workflow's runs."""
        found: list[sa.ColumnElement[bool]] = []
        if self.version is not None:
            found.append(steps.c.workflow_version == self.version)
        period = in_period(runs.c.started_at, self.since, self.until)
        if period:  # the workflow too, so that its runs are found by their index
            started = sa.select(runs.c.id).where(runs.c.workflow == workflow, *period)
            if self.version is not None:
                started = started.where(runs.c.workflow_version == self.version)
            found.append(steps.c.run_id.in_(started))
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


@dataclass
class StepTotals:
    kind: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    spent: dict[int, list[float]] = field(default_factory=dict)  # bucket: [count, min, max]

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    def add(self, other: StepTotals) -> None:
        self.kind = self.kind or other.kind
        for name, value in other.counts.items():
            self.counts[name] = self.count(name) + value
        for bucket, (n, low, high) in other.spent.items():
            mine = self.spent.get(bucket)
            self.spent[bucket] = (
                [n, low, high]
                if mine is None
                else [mine[0] + n, min(mine[1], low), max(mine[2], high)]
            )

    def note_spent(self, seconds: float, times: int) -> None:
        self.add(StepTotals(spent={spent_bucket(seconds): [times, seconds, seconds]}))

    def median_seconds(self) -> float | None:
        total = int(sum(n for n, _, _ in self.spent.values()))
        if not total:
            return None
        middle = [(total + 1) // 2, (total + 2) // 2]  # one rank, or the two middle ranks
        return round(sum(self._value_at(rank) for rank in middle) / 2, 3)

    def _value_at(self, rank: int) -> float:
        seen = 0
        for bucket in sorted(self.spent):
            n, low, high = self.spent[bucket]
            if seen + n >= rank:
                if n <= 1 or low == high:
                    return low
                return low + (high - low) * (rank - seen - 1) / (n - 1)
            seen += int(n)
        raise ValueError("rank beyond the histogram")


def spent_bucket(seconds: float) -> int:
    if seconds < _EXACT_BELOW:
        return max(0, math.floor(seconds))
    return _EXACT_BELOW + math.floor(math.log(seconds / _EXACT_BELOW) / _GROWTH)


def step_totals(conn: Connection, workflow: str, which: RunFilter) -> dict[str, StepTotals]:
    """The totals of each step over the runs `which` selects, from the history itself."""
    rs = run_steps
    scope = [rs.c.workflow == workflow, rs.c.kind != "error", *which.conditions(rs, workflow)]
    found: dict[str, StepTotals] = {}

    def at(step: str) -> StepTotals:
        return found.setdefault(step, StepTotals())

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
    )
    for row in visits:
        totals = at(row.step)
        totals.kind = row.kind
        totals.counts |= {n: int(row._mapping[n]) for n in COUNTS[:5]}
    converted = conn.execute(
        sa.select(rs.c.step, sa.func.count(sa.distinct(rs.c.run_id)))
        .join(runs, runs.c.id == rs.c.run_id)
        .where(*scope, runs.c.status == RunStatus.CONVERTED.value)
        .group_by(rs.c.step)
    )
    for step, count in converted:
        at(step).counts["converted"] = int(count)
    for step, completed, count in _drop_offs(conn, workflow, which):
        at(step).counts["dropped_unconverted" if completed else "dropped_short"] = count
    for step, seconds, times in _time_spent(conn, scope):
        at(step).note_spent(float(seconds), int(times))
    return found


def _drop_offs(conn: Connection, workflow: str, which: RunFilter) -> list[tuple[str, bool, int]]:
    """Runs that ended without converting, by the last step they did before any exit step,
    and whether they completed (a drop-off only when the workflow has a goal)."""
    ended = [RunStatus.EXITED.value, RunStatus.FAILED.value, RunStatus.COMPLETED.value]
    # Each run's last step before any exit: one grouped pass over the steps, not a
    # lookup per run.
    last = run_steps.alias("last")
    last_active = (
        sa.select(last.c.run_id, sa.func.max(last.c.id).label("id"))
        .where(
            last.c.workflow == workflow, last.c.kind != "exit", *which.conditions(last, workflow)
        )
        .group_by(last.c.run_id)
        .subquery("last_active")
    )
    completed = runs.c.status == RunStatus.COMPLETED.value
    rows = conn.execute(
        sa.select(run_steps.c.step, completed.label("completed"), sa.func.count())
        .select_from(
            runs.join(last_active, last_active.c.run_id == runs.c.id).join(
                run_steps, run_steps.c.id == last_active.c.id
            )
        )
        .where(runs.c.workflow == workflow, runs.c.status.in_(ended), *which.run_conditions())
        .group_by(run_steps.c.step, completed)
    )
    return [(str(step), bool(done), int(count)) for step, done, count in rows]


def _time_spent(conn: Connection, scope: list[sa.ColumnElement[bool]]) -> Any:
    """(step, seconds to the millisecond, how many) of the visits that left their step."""
    rs = run_steps
    if conn.dialect.name == "postgresql":
        spent: Any = sa.func.extract("epoch", rs.c.left_at - rs.c.entered_at)
    else:
        spent = (sa.func.julianday(rs.c.left_at) - sa.func.julianday(rs.c.entered_at)) * 86400
    seconds = sa.func.round(sa.cast(spent, sa.Numeric), 3).label("seconds")
    return conn.execute(
        sa.select(rs.c.step, seconds, sa.func.count())
        .where(*scope, rs.c.left_at.is_not(None))
        .group_by(rs.c.step, seconds)
    )
