"""Goals and exits that are conditions (a state, not an event), on both databases."""

from __future__ import annotations

from tests.integration.harness import Harness

NUDGES = """
fields:
  screened: bool
---
workflow: screening-nudges
trigger: {event: form.submitted}
goal: {when: {field: contact.screened, eq: true}}
exit_when: {when: {field: contact.tags, contains: do-not-nudge}}
steps:
  first: {update: {add_tags: [nudged-once]}, next: pause}
  pause: {wait: 7d, next: second}
  second: {update: {add_tags: [nudged-twice]}, next: done}
  done: {exit: completed}
"""


def test_a_condition_goal_ends_runs_before_their_next_step(journey: Harness) -> None:
    journey.apply(NUDGES)
    screened = [journey.contact() for _ in range(5)]
    waiting = [journey.contact() for _ in range(5)]
    for contact_id in screened + waiting:
        journey.event("form.submitted", contact_id, key=f"form-{contact_id}")
    journey.work()
    for contact_id in screened:  # screened while the runs wait
        journey.contact(external_id=f"MRN-{contact_id}", screened=True)
    journey.advance("8d")
    for contact_id in screened:
        run = journey.run(contact_id)
        assert (run.status, journey.path(run.id)) == ("converted", ["first", "pause"])
    for contact_id in waiting:
        assert journey.run(contact_id).status == "completed"
    assert len(journey.events("workflow.completed")) == 10  # conversions complete runs too


def test_a_condition_exit_is_checked_when_an_event_for_the_run_arrives(journey: Harness) -> None:
    journey.apply(NUDGES)
    ann = journey.contact()
    journey.event("form.submitted", ann, key="form-1")
    journey.work()
    journey.contact(external_id="MRN-1", tags=["do-not-nudge"])
    journey.event("form.submitted", ann, key="form-2")  # processed for her live run
    journey.work()
    assert journey.run(ann).status == "exited"
