"""The worker loop outlives a failing round: it logs the class only, pauses, goes on."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from carepath.entrypoints import worker
from carepath.services import work
from carepath.services.work import WorkDone


def test_a_failing_round_is_logged_by_class_and_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stop = worker.StopFlag()
    outcomes: list[Any] = [
        OSError("connection to ann@example.test refused"),
        OSError("again"),
        WorkDone(runs=3, steps=6),
    ]
    pauses: list[float | None] = []

    def one_round(_ctx: object, *, now: datetime) -> WorkDone:
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is None:
            stop.event.set()
            return WorkDone()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(worker, "run_one_round", one_round)
    monkeypatch.setattr(worker, "current_time", lambda _ctx: datetime(2026, 1, 5, tzinfo=UTC))
    monkeypatch.setattr(stop.event, "wait", lambda seconds=None: pauses.append(seconds))
    ctx: Any = type("Ctx", (), {"worker_id": "w1"})()
    with caplog.at_level(logging.INFO, logger="carepath.worker"):
        done = worker.run_worker(ctx, poll_seconds=0.5, stop=stop)
    assert (done.runs, done.steps) == (3, 6)
    assert pauses[:2] == [1.0, 2.0]  # doubling from the poll interval
    assert "round failed (OSError, 2 in a row)" in caplog.text
    assert "ann@example.test" not in caplog.text


def test_the_funnel_is_counted_again_at_a_tenth_of_the_pace_while_the_worker_is_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(work.time, "monotonic", lambda: clock[0])
    ctx: Any = type("Ctx", (), {"funnel_refresh_seconds": 60.0, "funnel_refreshed_at": None})()
    assert work._funnel_refresh_due(ctx, busy=True)  # the first round always counts
    clock[0] += 61
    assert not work._funnel_refresh_due(ctx, busy=True)
    assert work._funnel_refresh_due(ctx, busy=False)
    clock[0] += 599
    assert not work._funnel_refresh_due(ctx, busy=True)
    clock[0] += 2
    assert work._funnel_refresh_due(ctx, busy=True)
