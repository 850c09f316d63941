"""The funnel kept per day: exact at any moment, without counting all history per report.

`funnel_rollup` holds each day's step totals (runs by the day they started
on). A trigger on `runs` notes in `funnel_changes` every day whose runs
moved; `refresh_funnels` counts those days again, a few at a time, in the
worker. A report adds up the rollup for the whole days it covers whose runs
have not moved since, and counts from the history itself the rest: the days
noted as changed and the partial days at its ends. So it is always exact
and current, and its cost is that of the days that changed since the last
refresh, not of the whole history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from carepath.db.dialect import dialect_insert
from carepath.db.schema import funnel_changes, funnel_rollup
from carepath.services.funnel_totals import RunFilter, StepTotals, step_totals

REFRESH_BATCH = 20  # days counted again per call, at most
REFRESH_BUDGET_SECONDS = 2.0  # and no more days once this much time is spent: a worker
# catching up after a bulk load goes on with its other work in between
# One day's count may take no longer (PostgreSQL): a plan gone wrong on statistics
# that lag behind a table's growth must not hold a worker's deliveries for minutes.
# The day stays noted, and reports count it from the history meanwhile.
DAY_COUNT_TIMEOUT_MS = 20_000
# Another worker counting the same day holds its notes: skip it rather than queue.
NOTES_LOCK_TIMEOUT_MS = 2_000
# A day whose count failed is left alone this long (in this process), so that it
# cannot hold back the days after it on every refresh.
FAILED_DAY_PAUSE_SECONDS = 3600.0
DAY = timedelta(days=1)
_failed_days: dict[tuple[str, int, date], float] = {}  # -> monotonic time to retry at

log = logging.getLogger(__name__)


def refresh_funnels(
    engine: Engine, *, limit: int = REFRESH_BATCH, budget: float | None = None
) -> int:
    """Count again the days whose runs moved (at most `limit`, and no more once `budget`
    seconds are spent); how many were."""
    started = monotonic()
    with engine.begin() as conn:
        moved = conn.execute(
            sa.select(
                funnel_changes.c.workflow, funnel_changes.c.workflow_version, funnel_changes.c.day
            )
            .distinct()
            .order_by(funnel_changes.c.day)
            .limit(limit)
        ).all()
    counted = 0
    for workflow, version, day in moved:
        if budget is not None and counted and monotonic() - started > budget:
            break
        if _failed_days.get((workflow, version, day), 0.0) > monotonic():
            continue
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {DAY_COUNT_TIMEOUT_MS}")
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {NOTES_LOCK_TIMEOUT_MS}")
                _count_day(conn, workflow, version, day)
        except sa.exc.OperationalError as exc:  # a time limit, or the database busy or gone
            log.warning("counting a day of the funnel again failed (%s)", type(exc.orig).__name__)
            if exc.connection_invalidated:
                break
            _failed_days[(workflow, version, day)] = monotonic() + FAILED_DAY_PAUSE_SECONDS
            continue
        _failed_days.pop((workflow, version, day), None)
        counted += 1
    return counted


def _count_day(conn: Connection, workflow: str, version: int, day: date) -> None:
    # The notes go first: a change committed after this statement stays noted, so the
    # day is counted again even if this count does not see it. Notes another worker
    # took meanwhile are its to count.
    taken = conn.execute(
        funnel_changes.delete().where(
            funnel_changes.c.workflow == workflow,
            funnel_changes.c.workflow_version == version,
            funnel_changes.c.day == day,
        )
    ).rowcount
    if not taken:
        return
    start = _midnight(day)
    totals = step_totals(conn, workflow, RunFilter(version, start, start + DAY))
    if not totals:
        return
    rows = [
        {
            "workflow": workflow,
            "workflow_version": version,
            "day": day,
            "step": step,
            "kind": t.kind,
            "totals": t.counts,
            "spent": [[b, *values] for b, values in sorted(t.spent.items())],
        }
        for step, t in totals.items()
    ]
    # A step's row is replaced whole (a run never leaves a day's steps, so none goes
    # stale); an upsert, so that two workers counting the same day never collide.
    insert: Any = dialect_insert(conn, funnel_rollup)
    replaced = {c: insert.excluded[c] for c in ("kind", "totals", "spent")}
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=["workflow", "workflow_version", "day", "step"], set_=replaced
        ),
        rows,
    )


def current_totals(conn: Connection, workflow: str, which: RunFilter) -> dict[str, StepTotals]:
    """Each step's totals over the runs `which` selects, exact as of now."""
    first, last = _whole_days(which.since, which.until)
    if first is not None and last is not None and first >= last:
        return step_totals(conn, workflow, which)  # within one day: nothing to read
    changed = _changed_days(conn, workflow, which.version, first, last)
    found = _rolled_up(conn, workflow, which.version, (first, last), changed)
    live = [(_midnight(a), _midnight(b)) for a, b in _spans(changed)]
    if which.since is not None and first is not None and which.since < _midnight(first):
        live.append((which.since, _midnight(first)))
    if which.until is not None and last is not None and _midnight(last) < which.until:
        live.append((_midnight(last), which.until))
    for since, until in live:
        part = step_totals(conn, workflow, RunFilter(which.version, since, until))
        for step, totals in part.items():
            found.setdefault(step, StepTotals()).add(totals)
    return found


def _whole_days(since: datetime | None, until: datetime | None) -> tuple[date | None, date | None]:
    """The first whole day in [since, until) and the day after the last (None: open)."""
    first = None
    if since is not None:
        first = since.astimezone(UTC).date()
        if _midnight(first) < since:
            first += DAY
    last = until.astimezone(UTC).date() if until is not None else None
    return first, last


def _changed_days(
    conn: Connection, workflow: str, version: int | None, first: date | None, last: date | None
) -> list[date]:
    c = funnel_changes.c
    query = sa.select(c.day).distinct().where(c.workflow == workflow)
    query = query.where(*_day_range(c.day, first, last))
    if version is not None:
        query = query.where(c.workflow_version == version)
    return sorted(_as_date(d) for d in conn.execute(query).scalars())


def _rolled_up(
    conn: Connection,
    workflow: str,
    version: int | None,
    days: tuple[date | None, date | None],
    changed: list[date],
) -> dict[str, StepTotals]:
    first, last = days
    c = funnel_rollup.c
    query = sa.select(c.step, c.kind, c.totals, c.spent, c.day).where(
        c.workflow == workflow, *_day_range(c.day, first, last)
    )
    if version is not None:
        query = query.where(c.workflow_version == version)
    skipped = set(changed)  # counted from the history instead
    found: dict[str, StepTotals] = {}
    for row in conn.execute(query):
        if _as_date(row.day) in skipped:
            continue
        spent = {int(b): [n, low, high] for b, n, low, high in row.spent}
        totals = StepTotals(row.kind, {k: int(v) for k, v in row.totals.items()}, spent)
        found.setdefault(row.step, StepTotals()).add(totals)
    return found


def _day_range(column: Any, first: date | None, last: date | None) -> list[Any]:
    found = []
    if first is not None:
        found.append(column >= first)
    if last is not None:
        found.append(column < last)
    return found


def _spans(days: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive days as [first, day after last) spans."""
    spans: list[tuple[date, date]] = []
    for day in sorted(days):
        if spans and spans[-1][1] == day:
            spans[-1] = (spans[-1][0], day + DAY)
        else:
            spans.append((day, day + DAY))
    return spans


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
