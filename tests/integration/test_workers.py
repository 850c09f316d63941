"""Workers: leases taken over after a crash, concurrent workers, runs moved under a worker."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import sqlalchemy as sa

from carepath.channels.email import MemorySender
from carepath.db.schema import outbox, run_steps
from carepath.services.context import EngineContext
from carepath.services.runner import advance_claimed, advance_due_runs, claim_due_runs
from carepath.services.work import drain
from tests.integration.harness import Harness

FLOW = """
template: hello
subject: Welcome
html: "<p>Hello</p>"
---
template: thanks
subject: Thank you
html: "<p>Thanks</p>"
---
workflow: w
trigger: manual
steps:
  greet: {email: hello, next: tag}
  tag: {update: {add_tags: [greeted]}, next: await}
  await:
    wait_for: {event: visit.completed, within: 1d}
    next: thank
    on_timeout: done
  thank: {email: thanks, next: done}
  done: {exit: completed}
"""
FLOW_WITH_EXIT = FLOW.replace(
    "trigger: manual\n", "trigger: manual\nexit_when: {event: opted.out}\n"
)


def _worker(
    journey: Harness, *, lease: timedelta = timedelta(minutes=5), batch: int = 500
) -> EngineContext:
    return EngineContext(
        engine=journey.engine, sender=MemorySender([]), lease=lease, batch_size=batch
    )


def _step_counts(journey: Harness) -> Counter[tuple[int, str]]:
    with journey.engine.connect() as conn:
        rows = conn.execute(sa.select(run_steps.c.run_id, run_steps.c.step)).all()
    return Counter((r.run_id, r.step) for r in rows)


def test_killed_workers_lease_is_taken_over_after_it_expires(journey: Harness) -> None:
    journey.apply(FLOW)
    ids = [journey.contact() for _ in range(5)]
    journey.enroll("w", *ids)
    now = journey.now
    doomed = _worker(journey, lease=timedelta(milliseconds=300))
    with journey.engine.begin() as conn:
        claimed = claim_due_runs(conn, doomed, now=now, limit=100)
    assert len(claimed) == 5
    # The worker dies here, before writing anything.
    survivor = _worker(journey)
    assert advance_due_runs(survivor, now=now).runs == 0  # leases still live
    time.sleep(0.4)
    assert advance_due_runs(survivor, now=now).runs == 5
    assert all(r.status == "waiting" for r in journey.runs())
    # The dead worker's late write is refused: it no longer owns the runs.
    with journey.engine.begin() as conn:
        assert advance_claimed(conn, doomed, claimed, now=now).runs == 0
    assert max(_step_counts(journey).values()) == 1


def test_a_claimed_run_an_event_moved_goes_on_from_where_the_event_left_it(
    journey: Harness,
) -> None:
    journey.apply(FLOW)
    ann = journey.contact()
    journey.enroll("w", ann)
    journey.work()
    journey.advance("2h")
    worker = _worker(journey)
    later = journey.now + timedelta(days=2)
    with journey.engine.begin() as conn:  # claims the run for its timeout
        claimed = claim_due_runs(conn, worker, now=later, limit=10)
    assert len(claimed) == 1
    journey.event("visit.completed", ann)
    journey.work()  # the event moves the run past the wait (still leased, so not further)
    # The worker reads the run as the event left it, not as it claimed it: no timeout.
    with journey.engine.begin() as conn:
        assert advance_claimed(conn, worker, claimed, now=later).runs == 1
    run = journey.run(ann)
    assert run.status == "completed"
    assert run.lease_owner is None
    assert journey.path(run.id) == ["greet", "tag", "await", "thank", "done"]
    assert journey.steps(run.id)[2].outcome == "event"


def test_a_claimed_run_an_event_ended_is_left_alone_and_released(journey: Harness) -> None:
    journey.apply(FLOW_WITH_EXIT)
    ann = journey.contact()
    journey.enroll("w", ann)
    journey.work()
    worker = _worker(journey)
    later = journey.now + timedelta(days=2)
    with journey.engine.begin() as conn:
        claimed = claim_due_runs(conn, worker, now=later, limit=10)
    journey.event("opted.out", ann)
    journey.work()
    with journey.engine.begin() as conn:
        assert advance_claimed(conn, worker, claimed, now=later).runs == 0
    run = journey.run(ann)
    assert run.status == "exited"
    assert run.lease_owner is None
    assert journey.path(run.id) == ["greet", "tag", "await"]


def test_two_concurrent_workers_never_execute_a_step_twice(journey: Harness) -> None:
    journey.apply(FLOW)
    ids = [journey.contact() for _ in range(300)]
    journey.enroll("w", *ids)
    now = journey.now
    workers = [_worker(journey, batch=20) for _ in range(2)]
    errors: list[BaseException] = []

    def run_all(ctx: EngineContext) -> None:
        try:
            drain(ctx, now=now)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def race() -> None:
        threads = [threading.Thread(target=run_all, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors

    race()
    assert Counter(r.status for r in journey.runs()) == {"waiting": 300}
    for contact_id in ids:
        journey.event("visit.completed", contact_id)
    race()
    # Whatever a worker left mid-way (an event landed between claim and write)
    # is picked up by a final pass.
    drain(workers[0], now=now)
    assert Counter(r.status for r in journey.runs()) == {"completed": 300}
    counts = _step_counts(journey)
    assert len(counts) == 300 * 5
    assert set(counts.values()) == {1}
    with journey.engine.connect() as conn:
        per_contact = Counter(r.contact_id for r in conn.execute(sa.select(outbox.c.contact_id)))
    assert set(per_contact.values()) == {2}
    sent = [m.outbox_id for w in workers for m in w.sender.sent]  # type: ignore[union-attr]
    assert len(sent) == len(set(sent)) == 600
