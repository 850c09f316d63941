"""Engine scenarios, the same on SQLite and PostgreSQL, on a simulated clock."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import sqlalchemy as sa

from carepath.db.schema import contacts
from carepath.services.events import ingest_events
from tests.integration.harness import Harness

TEMPLATES = """
template: hello
subject: Welcome
html: "<p>Hello {{ contact.first_name }}</p>"
---
template: reminder
subject: A reminder
html: "<p>See you on {{ event.data.starts_at }}</p>"
"""


CLICK_OR_QUIET = (
    TEMPLATES
    + """---
workflow: w
trigger: manual
steps:
  greet: {email: hello, next: await}
  await:
    wait_for: {event: email.clicked, within: 7d}
    next: clicked
    on_timeout: quiet
  clicked: {exit: converted}
  quiet: {exit: completed}
"""
)


def test_wait_for_event_caught_within_window_takes_next(journey: Harness) -> None:
    journey.apply(CLICK_OR_QUIET)
    ann = journey.contact(first_name="Ann")
    journey.enroll("w", ann)
    journey.work()
    assert journey.run(ann).status == "waiting"
    journey.advance("2d")
    journey.event("email.clicked", ann)
    journey.work()
    run = journey.run(ann)
    assert run.status == "converted"
    assert [(s.step, s.outcome) for s in journey.steps(run.id)] == [
        ("greet", "done"),
        ("await", "event"),
        ("clicked", "ended"),
    ]


def test_wait_for_event_times_out_to_on_timeout(journey: Harness) -> None:
    journey.apply(CLICK_OR_QUIET)
    bob = journey.contact(first_name="Bob")
    journey.enroll("w", bob)
    journey.advance("6d")
    assert journey.run(bob).status == "waiting"
    journey.advance("2d")
    run = journey.run(bob)
    assert run.status == "completed"
    assert [(s.step, s.outcome, s.next_step) for s in journey.steps(run.id)][1:] == [
        ("await", "timed_out", "quiet"),
        ("quiet", "ended", None),
    ]
    # An event after the window no longer moves the finished run.
    journey.event("email.clicked", bob)
    journey.work()
    assert journey.run(bob).status == "completed"


BRANCHING = """
fields:
  score: {type: number}
---
workflow: w
trigger: manual
steps:
  decide:
    branch:
      - when: {field: contact.score, gte: 40}
        goto: high
    otherwise: low
  high: {update: {set: {score: 100}}, next: done}
  low: {update: {add_tags: [low-risk]}, next: done}
  done: {exit: completed}
"""


def test_branch_takes_each_way_by_contact_attributes(journey: Harness) -> None:
    journey.apply(BRANCHING)
    high = journey.contact(score=55)
    low = journey.contact(score=12)
    journey.enroll("w", high, low)
    journey.work()
    assert journey.path(journey.run(high).id) == ["decide", "high", "done"]
    assert journey.path(journey.run(low).id) == ["decide", "low", "done"]
    assert journey.steps(journey.run(high).id)[0].detail == "case 1"
    assert journey.steps(journey.run(low).id)[0].detail == "otherwise"


def test_update_step_is_written_to_the_contact(journey: Harness) -> None:
    journey.apply(BRANCHING)
    high = journey.contact(score=55)
    low = journey.contact(score=12)
    journey.enroll("w", high, low)
    journey.work()
    with journey.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(contacts))}
    assert rows[high].attributes == {"score": 100}
    assert rows[low].tags == ["low-risk"]


def test_split_divides_contacts_by_weight_and_is_stable(journey: Harness) -> None:
    journey.apply(
        """
workflow: w
trigger: manual
steps:
  ab:
    split:
      - {weight: 70, goto: a}
      - {weight: 30, goto: b}
  a: {exit: completed}
  b: {exit: completed}
"""
    )
    ids = [journey.contact() for _ in range(400)]
    journey.enroll("w", *ids)
    journey.work()
    paths = Counter(journey.steps(r.id)[0].next_step for r in journey.runs(workflow="w"))
    assert paths["a"] + paths["b"] == 400
    assert 240 <= paths["a"] <= 320  # 70% of 400 = 280, within a wide binomial margin


GOALS = """
workflow: w
trigger: manual
goal: {event: surgery.scheduled}
exit_when: {event: contact.opted_out}
steps:
  pause: {wait: 30d, next: done}
  done: {exit: completed}
"""


def test_goal_event_ends_the_run_as_converted(journey: Harness) -> None:
    journey.apply(GOALS)
    ann = journey.contact()
    journey.enroll("w", ann)
    journey.work()
    journey.advance("3d")
    journey.event("surgery.scheduled", ann)
    journey.work()
    run = journey.run(ann)
    assert (run.status, run.reason) == ("converted", "goal reached: surgery.scheduled")
    assert journey.steps(run.id)[-1].outcome == "ended"
    assert len(journey.events("workflow.completed")) == 1


def test_exit_when_event_ends_the_run_as_exited(journey: Harness) -> None:
    journey.apply(GOALS)
    bob = journey.contact()
    journey.enroll("w", bob)
    journey.work()
    journey.event("contact.opted_out", bob)
    journey.work()
    assert journey.run(bob).status == "exited"
    journey.advance("40d")
    assert journey.run(bob).status == "exited"  # the wait never resumes


TRIGGERED = """
workflow: w
trigger:
  event: form.submitted
  when: {field: event.data.score, gte: 40}
reentry: REENTRY
steps:
  pause: {wait: 1d, next: done}
  done: {exit: completed}
"""


def _submit(journey: Harness, contact_id: int, score: int = 50) -> None:
    journey.event("form.submitted", contact_id, score=score)
    journey.work()


def test_event_trigger_enrolls_only_when_condition_holds(journey: Harness) -> None:
    journey.apply(TRIGGERED.replace("REENTRY", "never"))
    yes, no = journey.contact(), journey.contact()
    _submit(journey, yes, 55)
    _submit(journey, no, 20)
    assert len(journey.runs(yes)) == 1
    assert journey.runs(no) == []


def test_reentry_never_enrolls_a_contact_once(journey: Harness) -> None:
    journey.apply(TRIGGERED.replace("REENTRY", "never"))
    ann = journey.contact()
    _submit(journey, ann)
    journey.advance("2d")
    _submit(journey, ann)
    assert len(journey.runs(ann)) == 1


def test_reentry_always_enrolls_again_after_the_run_ends(journey: Harness) -> None:
    journey.apply(TRIGGERED.replace("REENTRY", "always"))
    ann = journey.contact()
    _submit(journey, ann)
    _submit(journey, ann)  # still in the first run: not enrolled twice at once
    assert len(journey.runs(ann)) == 1
    journey.advance("2d")
    _submit(journey, ann)
    assert [r.status for r in journey.runs(ann)] == ["completed", "waiting"]


def test_reentry_after_waits_for_the_window(journey: Harness) -> None:
    journey.apply(TRIGGERED.replace("REENTRY", "{after: 10d}"))
    ann = journey.contact()
    _submit(journey, ann)
    journey.advance("5d")
    _submit(journey, ann)
    assert len(journey.runs(ann)) == 1
    journey.advance("6d")
    _submit(journey, ann)
    assert len(journey.runs(ann)) == 2


def test_duplicate_event_is_stored_and_processed_once(journey: Harness) -> None:
    journey.apply(TRIGGERED.replace("REENTRY", "always"))
    ann = journey.contact()
    journey.advance("1h")
    for _ in range(3):
        journey.event("form.submitted", ann, key="hra-42", score=60)
    journey.work()
    assert len(journey.events("form.submitted")) == 1
    journey.advance("2d")
    journey.event("form.submitted", ann, key="hra-42", score=60)
    journey.work()
    assert len(journey.runs(ann)) == 1


def test_a_long_enroll_chain_is_stopped_by_the_cap(journey: Harness) -> None:
    cap = journey.ctx.limits.max_chain_depth
    hops = [f"hop-{i}" for i in range(cap + 3)]
    journey.apply(
        "\n---\n".join(
            f"workflow: {name}\ntrigger: manual\nsteps:\n"
            f"  pause: {{wait: 1h, next: hop}}\n  hop: {{enroll: {following}}}\n"
            for name, following in zip(hops, [*hops[1:], hops[0]], strict=True)
        )
    )
    ann = journey.contact()
    journey.enroll(hops[0], ann)
    journey.advance("2d")
    chain = journey.runs(ann)
    assert [r.workflow for r in chain] == hops[: cap + 1]
    assert [r.chain_depth for r in chain] == list(range(cap + 1))
    last = chain[-1]
    assert last.status == "failed"
    assert last.reason == f"enrollment chain deeper than {cap} at step hop"
    assert all(r.status == "completed" for r in chain[:-1])


def test_task_completion_emits_event_that_moves_a_waiting_run(journey: Harness) -> None:
    journey.apply(
        """
workflow: w
trigger: manual
steps:
  call: {task: {queue: contact-center, title: Call about a consult}, next: await}
  await:
    wait_for: {event: task.completed, within: 3d, where: {field: event.data.outcome, eq: booked}}
    next: booked
    on_timeout: unreached
  booked: {exit: converted}
  unreached: {exit: completed}
"""
    )
    ann, bob = journey.contact(), journey.contact()
    journey.enroll("w", ann, bob)
    journey.work()
    tasks = {t.contact_id: t for t in journey.tasks()}
    assert {t.queue for t in tasks.values()} == {"contact-center"}
    journey.complete_task(tasks[ann].id, "booked")
    journey.complete_task(tasks[bob].id, "no-answer")
    journey.work()
    assert journey.run(ann).status == "converted"
    assert journey.run(bob).status == "waiting"  # `where` did not match
    journey.advance("4d")
    assert journey.run(bob).status == "completed"


def test_wait_until_event_date_wakes_in_contact_time_zone(journey: Harness) -> None:
    journey.apply(
        TEMPLATES
        + """---
workflow: w
trigger: {event: appointment.scheduled}
steps:
  reminder:
    wait: {until: event.data.starts_at, offset: -2d, at: "09:00"}
    next: send
  send: {email: reminder}
"""
    )
    ann = journey.contact(time_zone="America/New_York")
    journey.event("appointment.scheduled", ann, starts_at="2026-01-20T15:30:00Z")
    journey.work()
    run = journey.run(ann)
    # 09:00 in New York (EST, UTC-5) on 18 January.
    assert run.wake_at.isoformat() == "2026-01-18T14:00:00+00:00"
    journey.advance("13d")
    assert journey.outbox(ann) == []
    journey.advance("1d")
    mails = journey.outbox(ann)
    assert len(mails) == 1
    assert mails[0].status == "sent"
    assert "2026-01-20T15:30:00Z" in mails[0].html
    assert journey.run(ann).status == "completed"


def test_email_without_address_is_recorded_as_skipped(journey: Harness) -> None:
    journey.apply(
        TEMPLATES + "---\nworkflow: w\ntrigger: manual\nsteps:\n  greet: {email: hello}\n"
    )
    ann = journey.contact(first_name="Ann")
    with journey.engine.begin() as conn:
        conn.execute(sa.update(contacts).where(contacts.c.id == ann).values(email=None))
    journey.enroll("w", ann)
    journey.work()
    (mail,) = journey.outbox(ann)
    assert (mail.status, mail.last_error) == ("skipped", "contact has no email address")
    assert journey.sender.sent == []


def test_template_render_failure_fails_the_run_with_a_reason(journey: Harness) -> None:
    journey.apply(
        """
template: broken
subject: Hi
html: "<p>{{ contact.nickname }}</p>"
---
workflow: w
trigger: manual
steps:
  greet: {email: broken, next: done}
  done: {exit: completed}
"""
    )
    ann = journey.contact()
    journey.enroll("w", ann)
    journey.work()
    run = journey.run(ann)
    assert run.status == "failed"
    assert run.reason == "step greet: template broken: 'dict object' has no attribute 'nickname'"
    assert journey.outbox(ann) == []


def test_update_step_merges_attributes_and_leaves_other_fields_alone(journey: Harness) -> None:
    journey.apply(
        """
fields:
  score: {type: number}
  plan: {type: string}
  seen_on: {type: date}
---
workflow: w
trigger: manual
steps:
  change:
    update: {set: {score: 10, seen_on: "2026-01-05", time_zone: Europe/Paris}, unset: [plan]}
"""
    )
    ann = journey.contact(first_name="Ann", score=5, plan="gold")
    with journey.engine.begin() as conn:  # changed by someone else after enrollment
        conn.execute(sa.update(contacts).where(contacts.c.id == ann).values(first_name="Anne"))
    journey.enroll("w", ann)
    journey.work()
    with journey.engine.connect() as conn:
        row = conn.execute(sa.select(contacts).where(contacts.c.id == ann)).one()
    assert row.attributes == {"score": 10, "seen_on": "2026-01-05"}
    assert (row.first_name, row.time_zone, row.email) == ("Anne", "Europe/Paris", "p1@example.test")


def test_wait_for_ignores_an_event_that_happened_before_the_wait(journey: Harness) -> None:
    journey.apply(CLICK_OR_QUIET)
    ann = journey.contact()
    journey.advance("1h")
    before = journey.now
    journey.enroll("w", ann)
    journey.work()
    journey.advance("1h")
    late = {
        "type": "email.clicked",
        "contact": {"id": ann},
        "occurred_at": (before - timedelta(minutes=5)).isoformat(),
    }
    with journey.engine.begin() as conn:
        ingest_events(conn, [("late", late)], now=journey.now, source="test")
    journey.work()
    assert journey.run(ann).status == "waiting"  # the click happened before the email
