"""Pausing a workflow on both databases: no enrollments, runs hold still, activation resumes."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.integration.api_support import KeyMaker, is_problem
from tests.integration.harness import Harness

FLOW = """
workflow: reminders
trigger: {event: appointment.scheduled}
steps:
  first: {update: {add_tags: [reminded-once]}, next: pause}
  pause: {wait: 1d, next: second}
  second: {update: {add_tags: [reminded-twice]}, next: done}
  done: {exit: completed}
"""


def test_a_paused_workflow_enrolls_no_one_and_holds_its_runs_until_activated(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(FLOW)
    ann, bob = journey.contact(first_name="Ann"), journey.contact(first_name="Bob")
    journey.event("appointment.scheduled", ann, key="a1")
    journey.work()
    assert journey.run(ann).status == "waiting"
    headers = key_for("workflows:write")
    paused = client.post("/v1/workflows/reminders/pause", headers=headers)
    assert paused.json() == {"name": "reminders", "paused": True}
    journey.event("appointment.scheduled", bob, key="b1")
    journey.advance("3d")  # the clock moves past Ann's wait; nothing of this workflow runs
    assert journey.runs(bob) == []
    assert journey.run(ann).status == "waiting"
    assert journey.path(journey.run(ann).id) == ["first", "pause"]
    activated = client.post("/v1/workflows/reminders/activate", headers=headers)
    assert activated.json() == {"name": "reminders", "paused": False}
    journey.work()
    assert journey.run(ann).status == "completed"
    is_problem(client.post("/v1/workflows/nope/pause", headers=headers), 404)
