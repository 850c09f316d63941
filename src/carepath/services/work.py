"""Draining due work, and moving the simulated clock through everything in between."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from carepath.db.connection import read_only
from carepath.db.schema import (
    LIVE_RUN,
    date_trigger_scans,
    events,
    outbox,
    resources,
    runs,
    segment_checks,
    segment_refreshes,
    webhook_calls,
)
from carepath.domain.fields import parse_datetime
from carepath.errors import ConfigurationError
from carepath.services.clock import set_simulated_now, simulated_now, wall_time
from carepath.services.cohort_reads import due_by
from carepath.services.context import EngineContext
from carepath.services.date_scans import scan_due_at, scans_due_before
from carepath.services.date_triggers import scan_date_triggers
from carepath.services.event_processing import process_events
from carepath.services.funnel_rollup import REFRESH_BUDGET_SECONDS, refresh_funnels
from carepath.services.leases import due_for_attempt
from carepath.services.outbox import deliver_outbox
from carepath.services.runner import advance_due_runs
from carepath.services.segments import update_segments
from carepath.services.webhook_calls import deliver_webhooks
from carepath.services.workflow_states import not_paused


@dataclass
class WorkDone:
    events: int = 0
    runs: int = 0
    steps: int = 0
    sent: int = 0
    failed_sends: int = 0
    webhooks: int = 0  # calls made, whatever their outcome
    segment_checks: int = 0  # segments recounted and contacts re-checked
    date_scans: int = 0  # date-triggered workflows scanned ahead

    def __iadd__(self, other: WorkDone) -> WorkDone:
        self.events += other.events
        self.runs += other.runs
        self.steps += other.steps
        self.sent += other.sent
        self.failed_sends += other.failed_sends
        self.webhooks += other.webhooks
        self.segment_checks += other.segment_checks
        self.date_scans += other.date_scans
        return self

    @property
    def anything(self) -> bool:
        sends = self.sent or self.failed_sends or self.webhooks
        return bool(self.events or self.runs or sends or self.segment_checks or self.date_scans)


@dataclass(frozen=True)
class DueWork:
    events: bool
    runs: bool
    outbox: bool
    webhooks: bool = False
    segments: bool = False
    date_scans: bool = False

    @property
    def anything(self) -> bool:
        sends = self.outbox or self.webhooks
        return self.events or self.runs or sends or self.segments or self.date_scans


_NOW = sa.bindparam("now", type_=runs.c.wake_at.type)
_WALL = sa.bindparam("wall", type_=runs.c.wake_at.type)
_SCANS_BEFORE = sa.bindparam("scans_before", type_=date_trigger_scans.c.scanned_through.type)
_SEGMENTS_BEFORE = sa.bindparam("segments_before", type_=segment_refreshes.c.refreshed_at.type)
# Segment work due now: queued contacts, or a segment version never counted.
_SEGMENTS_NOW = sa.or_(
    sa.exists().where(segment_checks.c.contact_id.is_not(None)),
    sa.exists().where(
        resources.c.kind == "segment",
        ~sa.exists().where(
            segment_refreshes.c.segment_name == resources.c.name,
            segment_refreshes.c.version >= resources.c.version,
        ),
    ),
)
# Built once: this runs between every batch, so statement construction matters.
_DUE_WORK = sa.select(
    sa.exists().where(events.c.processed_at.is_(None)),
    sa.exists().where(due_by(_NOW), not_paused(runs.c.workflow)),
    sa.or_(
        sa.exists().where(due_for_attempt(outbox, _NOW, _WALL)),
        # a crashed worker's messages, to be counted as sent
        sa.exists().where(outbox.c.status == "sending", outbox.c.lease_until < _WALL),
    ),
    sa.exists().where(due_for_attempt(webhook_calls, _NOW, _WALL)),
    sa.or_(
        _SEGMENTS_NOW,
        sa.exists().where(
            segment_refreshes.c.time_relative, segment_refreshes.c.refreshed_at <= _SEGMENTS_BEFORE
        ),
    ),
    sa.exists().where(date_trigger_scans.c.scanned_through <= _SCANS_BEFORE),
)
_NEXT_DUE = sa.select(
    sa.or_(sa.exists().where(events.c.processed_at.is_(None)), _SEGMENTS_NOW),
    sa.select(sa.func.min(runs.c.wake_at))
    .where(LIVE_RUN, runs.c.wake_at > _NOW, not_paused(runs.c.workflow))
    .scalar_subquery(),
    sa.select(sa.func.min(outbox.c.next_attempt_at))
    .where(outbox.c.status == "pending", outbox.c.next_attempt_at > _NOW)
    .scalar_subquery(),
    sa.select(sa.func.min(webhook_calls.c.next_attempt_at))
    .where(webhook_calls.c.status == "pending", webhook_calls.c.next_attempt_at > _NOW)
    .scalar_subquery(),
    sa.select(sa.func.min(segment_refreshes.c.refreshed_at))
    .where(segment_refreshes.c.time_relative)
    .scalar_subquery(),
    sa.select(sa.func.min(date_trigger_scans.c.scanned_through)).scalar_subquery(),
)


def due_work(ctx: EngineContext, *, now: datetime) -> DueWork:
    """Which kinds of work are due, in one cheap statement (so idle rounds cost little)."""
    with read_only(ctx.engine) as conn:
        parameters = {
            "now": now,
            "wall": wall_time(),
            "segments_before": now - ctx.segment_refresh_interval,
            "scans_before": scans_due_before(now),
        }
        row = conn.execute(_DUE_WORK, parameters).one()
    return DueWork(
        bool(row[0]),
        bool(row[1]),
        bool(row[2]) and ctx.sender is not None,
        bool(row[3]),
        bool(row[4]),
        bool(row[5]),
    )


BUSY_REFRESH_SLOWDOWN = 10


def run_one_round(ctx: EngineContext, *, now: datetime, due: DueWork | None = None) -> WorkDone:
    """One batch of each kind of work that is due: events, runs, outbox."""
    due = due or DueWork(True, True, True, webhooks=True, segments=True, date_scans=True)
    done = WorkDone()
    if due.events:
        done.events = process_events(ctx, now=now)
    if due.runs:
        stats = advance_due_runs(ctx, now=now)
        done.runs, done.steps = stats.runs, stats.steps
    if due.outbox:
        delivery = deliver_outbox(ctx, now=now)
        done.sent, done.failed_sends = delivery.sent, delivery.failed
    if due.webhooks:
        calls = deliver_webhooks(ctx, now=now)
        done.webhooks = calls.sent + calls.failed
    if due.date_scans:
        done.date_scans = scan_date_triggers(
            ctx.engine, ctx.cache, now=now, max_chain_depth=ctx.limits.max_chain_depth
        )
    if _funnel_refresh_due(ctx, busy=done.anything):
        refresh_funnels(ctx.engine, budget=REFRESH_BUDGET_SECONDS)
    if due.segments:
        done.segment_checks = update_segments(
            ctx.engine,
            ctx.cache,
            now=now,
            batch_size=ctx.batch_size,
            interval=ctx.segment_refresh_interval,
        ).done
    return done


def _funnel_refresh_due(ctx: EngineContext, *, busy: bool) -> bool:
    """Counting the funnel again is upkeep: in rounds that found little to do, and at
    a tenth of the pace while the worker is busy with journeys and deliveries."""
    at = time.monotonic()
    last = ctx.funnel_refreshed_at
    pause = ctx.funnel_refresh_seconds * (BUSY_REFRESH_SLOWDOWN if busy else 1)
    if last is not None and at - last < pause:
        return False
    ctx.funnel_refreshed_at = at
    return True


def drain(ctx: EngineContext, *, now: datetime | None = None) -> WorkDone:
    """Repeat rounds until nothing is due at `now` (business time from the clock if omitted)."""
    total = WorkDone()
    while True:
        at = now or current_time(ctx)
        due = due_work(ctx, now=at)
        if not due.anything:
            return total
        done = run_one_round(ctx, now=at, due=due)
        total += done
        if not done.anything:
            # Due but nothing could be taken (held by another worker): stop rather than spin.
            return total


def current_time(ctx: EngineContext) -> datetime:
    with read_only(ctx.engine) as conn:
        return ctx.clock.now(conn)


def next_due(ctx: EngineContext, after: datetime) -> datetime | None:
    """The earliest moment after `after` at which some run or message falls due."""
    with read_only(ctx.engine) as conn:
        row = conn.execute(_NEXT_DUE, {"now": after}).one()
    pending_now, run_due, mail_due, call_due, recounted, scanned = row
    if pending_now:
        return after
    candidates = [_utc(t) for t in (run_due, mail_due, call_due) if t is not None]
    if recounted is not None:
        candidates.append(max(_utc(recounted) + ctx.segment_refresh_interval, after))
    if scanned is not None:
        candidates.append(max(scan_due_at(_utc(scanned)), after))
    return min(candidates) if candidates else None


def _utc(value: datetime | str) -> datetime:
    """Aggregates lose the column type on SQLite: parse what comes back."""
    return parse_datetime(value)


def advance_clock(ctx: EngineContext, delta: timedelta) -> tuple[datetime, WorkDone]:
    """Move the simulated clock forward, running everything that falls due, in order."""
    with ctx.engine.begin() as conn:
        start = simulated_now(conn)
    if start is None:
        raise ConfigurationError(
            "this database uses the system clock (init with --simulated-clock)"
        )
    if delta < timedelta(0):
        raise ConfigurationError("the clock only moves forward")
    target = start + delta
    total = drain(ctx, now=start)
    now = start
    while True:
        due = next_due(ctx, now)
        if due is None or due > target:
            break
        now = max(due, now)
        with ctx.engine.begin() as conn:
            set_simulated_now(conn, now)
        total += drain(ctx, now=now)
    with ctx.engine.begin() as conn:
        set_simulated_now(conn, target)
    total += drain(ctx, now=target)
    return target, total
