"""Workers: a crashed worker's batch taken over, concurrent workers, events meeting a batch."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from carepath.channels.email import MemorySender
from carepath.db.schema import contacts, outbox, run_steps
from carepath.services.context import EngineContext
from carepath.services.event_processing import process_events
from carepath.services.runner import advance_due_runs, advance_locked, lock_due_runs
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


# SQLite has one writer at a time: a batch and event processing cannot overlap there.
ONE_WRITER_AT_A_TIME_ON_SQLITE = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)


def _worker(journey: Harness, *, batch: int = 500) -> EngineContext:
    return EngineContext(engine=journey.engine, sender=MemorySender([]), batch_size=batch)


def _step_counts(journey: Harness) -> Counter[tuple[int, str]]:
    with journey.engine.connect() as conn:
        rows = conn.execute(sa.select(run_steps.c.run_id, run_steps.c.step)).all()
    return Counter((r.run_id, r.step) for r in rows)


def test_a_killed_workers_batch_is_taken_over_at_once(journey: Harness) -> None:
    journey.apply(FLOW)
    ids = [journey.contact() for _ in range(5)]
    journey.enroll("w", *ids)
    now = journey.now
    doomed = journey.engine.connect()
    doomed.begin()
    assert len(lock_due_runs(doomed, now=now, limit=100)) == 5
    survivor = _worker(journey)
    if journey.engine.dialect.name == "postgresql":  # (SQLite: one writer, the survivor waits)
        assert advance_due_runs(survivor, now=now).runs == 0  # held: skipped, not waited for
    # The worker dies here, before writing anything: its connection goes, its
    # transaction with it, and nothing of the batch is left held or half-written.
    doomed.invalidate()
    doomed.close()
    assert advance_due_runs(survivor, now=now).runs == 5
    assert all(r.status == "waiting" for r in journey.runs())
    assert max(_step_counts(journey).values()) == 1


@ONE_WRITER_AT_A_TIME_ON_SQLITE
def test_a_run_whose_contact_an_event_is_being_processed_for_waits_for_the_next_batch(
    journey: Harness,
) -> None:
    journey.apply(FLOW)
    ann, bob = journey.contact(), journey.contact()
    journey.enroll("w", ann, bob)
    worker = _worker(journey)
    with journey.engine.begin() as holding:  # as event processing holds its contacts
        holding.execute(
            sa.select(contacts.c.id).where(contacts.c.id == ann).with_for_update()
        ).all()
        assert advance_due_runs(worker, now=journey.now).runs == 1  # Bob's: Ann's is skipped
    assert journey.run(ann).status == "active"
    assert advance_due_runs(worker, now=journey.now).runs == 1
    assert [journey.run(c).status for c in (ann, bob)] == ["waiting", "waiting"]


@ONE_WRITER_AT_A_TIME_ON_SQLITE
def test_an_event_processed_while_a_batch_holds_its_run_applies_after_the_batch(
    journey: Harness,
) -> None:
    journey.apply(FLOW_WITH_EXIT)
    ann = journey.contact()
    journey.enroll("w", ann)
    journey.work()
    journey.event("opted.out", ann)
    later = journey.now + timedelta(days=2)
    worker = _worker(journey)
    processed: list[int] = []
    with journey.engine.begin() as conn:
        due = lock_due_runs(conn, now=later, limit=10)
        assert len(due) == 1
        # Event processing starts meanwhile: it locks Ann first, then waits for her run.
        processing = threading.Thread(
            target=lambda: processed.append(process_events(journey.ctx, now=later))
        )
        processing.start()
        time.sleep(0.5)
        assert processing.is_alive()  # waiting for the batch, not deciding on a stale run
        assert advance_locked(conn, worker, due, now=later).runs == 0  # Ann is held: skipped
    processing.join(10)
    assert processed == [1]
    run = journey.run(ann)
    assert run.status == "exited"
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
    # Whatever a worker skipped (its contact held by the other's event processing)
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
