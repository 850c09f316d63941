"""The day rollup on both databases: after any refresh, and whatever moved since, the
funnel adds up to exactly what counting all history gives, for any period."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from carepath.db.schema import funnel_changes, funnel_rollup, runs
from carepath.services import funnel_rollup as funnel_rollup_module
from carepath.services.funnel_rollup import current_totals, refresh_funnels
from carepath.services.funnel_totals import RunFilter, StepTotals, step_totals
from tests.integration.harness import Harness
from tests.integration.test_funnel import JOURNEY


def summary(totals: dict[str, StepTotals]) -> dict[str, tuple[object, ...]]:
    return {
        step: (t.kind, tuple(sorted(t.counts.items())), t.median_seconds())
        for step, t in totals.items()
        if any(t.counts.values()) or t.spent
    }


def noted(journey: Harness) -> int:
    with journey.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(funnel_changes)).scalar())


def test_rollup_and_history_agree_for_every_period_before_and_after_refreshes(
    journey: Harness,
) -> None:
    journey.apply(JOURNEY)
    start = journey.now
    people = []
    for day in range(4):  # runs starting on four days, some mid-day
        wave = [journey.contact() for _ in range(3)]
        journey.enroll("w", *wave)
        people += wave
        journey.work()
        journey.event("email.clicked", wave[0])
        journey.advance("1d" if day % 2 else "30h")
    periods = [
        RunFilter(),
        RunFilter(version=1),
        RunFilter(since=start + timedelta(hours=5)),
        RunFilter(until=start + timedelta(days=2, hours=3)),
        RunFilter(since=start + timedelta(hours=1), until=start + timedelta(days=3, hours=20)),
        RunFilter(since=start, until=start + timedelta(hours=2)),  # within one day
        RunFilter(version=2),
    ]

    def check() -> None:
        with journey.engine.connect() as conn:
            for which in periods:
                expected = summary(step_totals(conn, "w", which))
                assert summary(current_totals(conn, "w", which)) == expected, which

    assert noted(journey) > 0
    check()  # nothing rolled up yet: every day counted from history
    assert refresh_funnels(journey.engine) >= 4
    assert noted(journey) == 0
    with journey.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(funnel_rollup)).scalar()
    check()  # everything from the rollup
    journey.event("visit.booked", people[0])
    journey.advance("8d")  # timeouts move runs of every day
    assert noted(journey) > 0
    check()  # moved days from history, the others from the rollup
    refresh_funnels(journey.engine, limit=1)  # part of them caught up
    check()
    refresh_funnels(journey.engine)
    check()


def test_two_workers_refreshing_at_once_never_collide(journey: Harness) -> None:
    journey.apply(JOURNEY)
    for _ in range(3):
        journey.enroll("w", *(journey.contact() for _ in range(4)))
        journey.work()
        journey.advance("1d")
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            refresh_funnels(journey.engine)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=refresh) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert noted(journey) == 0
    with journey.engine.connect() as conn:
        expected = summary(step_totals(conn, "w", RunFilter()))
        assert summary(current_totals(conn, "w", RunFilter())) == expected


def test_only_a_change_of_a_runs_state_notes_its_day(journey: Harness) -> None:
    journey.apply(JOURNEY)
    journey.enroll("w", journey.contact())
    journey.work()
    refresh_funnels(journey.engine)
    assert noted(journey) == 0
    with journey.engine.begin() as conn:  # a write that leaves the state as it was
        conn.execute(runs.update().values(reason="noted by an operator"))
    assert noted(journey) == 0
    with journey.engine.begin() as conn:
        conn.execute(runs.update().values(status="exited", ended_at=journey.now))
    assert noted(journey) == 1


def test_a_refresh_stops_after_its_time_budget_but_always_counts_one_day(
    journey: Harness,
) -> None:
    journey.apply(JOURNEY)
    for _ in range(3):
        journey.enroll("w", journey.contact())
        journey.advance("1d")
    with journey.engine.connect() as conn:
        count = sa.select(sa.func.count(sa.distinct(funnel_changes.c.day)))
        days = int(conn.execute(count).scalar_one())
    assert days >= 2
    assert refresh_funnels(journey.engine, budget=0.0) == 1
    assert refresh_funnels(journey.engine) == days - 1
    assert noted(journey) == 0


def test_a_day_whose_count_fails_or_runs_too_long_stays_noted_and_the_worker_goes_on(
    journey: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    journey.apply(JOURNEY)
    journey.enroll("w", journey.contact())
    journey.advance("1d")
    with journey.engine.begin() as conn:
        note = {"workflow": "w", "workflow_version": 1, "day": journey.now.date()}
        conn.execute(funnel_changes.insert().values(note))
    postgres = journey.engine.dialect.name == "postgresql"

    def stuck_count(conn: sa.Connection, *_: object) -> None:
        conn.execute(sa.delete(funnel_changes))
        # PostgreSQL: a plan gone wrong, stopped by the time limit; SQLite: a failing read.
        conn.execute(sa.text("SELECT pg_sleep(5)" if postgres else "SELECT * FROM gone"))

    monkeypatch.setattr(funnel_rollup_module, "DAY_COUNT_TIMEOUT_MS", 50)
    monkeypatch.setattr(funnel_rollup_module, "_count_day", stuck_count)
    assert refresh_funnels(journey.engine) == 0
    assert noted(journey) == 1  # rolled back: the day is counted again later


def test_a_day_that_cannot_be_counted_holds_back_no_other_day(
    journey: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    journey.apply(JOURNEY)
    stuck, fine = journey.now.date(), (journey.now + timedelta(days=1)).date()
    with journey.engine.begin() as conn:
        for day in (stuck, fine):  # the stuck day comes first
            conn.execute(funnel_changes.insert().values(workflow="w", workflow_version=1, day=day))
    postgres = journey.engine.dialect.name == "postgresql"
    counted_days: list[object] = []
    real_count = funnel_rollup_module._count_day

    def count(conn: sa.Connection, workflow: str, version: int, day: object) -> None:
        if day == stuck:
            conn.execute(sa.text("SELECT pg_sleep(5)" if postgres else "SELECT * FROM gone"))
        counted_days.append(day)
        real_count(conn, workflow, version, day)

    monkeypatch.setattr(funnel_rollup_module, "DAY_COUNT_TIMEOUT_MS", 50)
    monkeypatch.setattr(funnel_rollup_module, "_count_day", count)
    monkeypatch.setattr(funnel_rollup_module, "_failed_days", {})
    assert refresh_funnels(journey.engine) == 1
    assert counted_days == [fine]
    assert noted(journey) == 1  # the stuck day, left for later
    assert refresh_funnels(journey.engine) == 0  # and not tried again at once
    assert counted_days == [fine]
