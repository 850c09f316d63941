"""`/v1/tasks` on both databases: an agent works the queue a journey filled."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.integration.api_support import KeyMaker, is_problem
from tests.integration.harness import Harness

FLOW = """
workflow: w
trigger: manual
steps:
  call: {task: {queue: contact-center, title: Discuss a consultation}, next: await}
  await:
    wait_for: {event: task.completed, within: 3d, where: {field: event.data.outcome, eq: booked}}
    next: booked
    on_timeout: unreached
  booked: {exit: converted}
  unreached: {exit: completed}
"""


def test_an_agent_claims_and_completes_a_task_and_the_journey_goes_on(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(FLOW)
    ann, bob = journey.contact(), journey.contact()
    journey.enroll("w", ann, bob)
    journey.work()
    agent = key_for("tasks:read", "tasks:write")
    queue = client.get("/v1/tasks", params={"queue": "contact-center"}, headers=agent).json()
    assert [t["contact_id"] for t in queue] == [ann, bob]
    assert queue[0]["title"] == "Discuss a consultation"
    first = queue[0]["id"]
    claimed = client.post(f"/v1/tasks/{first}/claim", json={"agent": "jo"}, headers=agent)
    assert claimed.json()["assignee"] == "jo"
    assert client.post(f"/v1/tasks/{first}/claim", json={"agent": "jo"}, headers=agent).is_success
    taken = client.post(f"/v1/tasks/{first}/claim", json={"agent": "sam"}, headers=agent)
    assert is_problem(taken, 409)["detail"] == f"task {first} is claimed by another agent"
    done = client.post(f"/v1/tasks/{first}/complete", json={"outcome": "booked"}, headers=agent)
    assert done.status_code == 204
    again = client.post(f"/v1/tasks/{first}/complete", json={"outcome": "booked"}, headers=agent)
    is_problem(again, 409)
    journey.work()
    assert journey.run(ann).status == "converted"
    assert journey.run(bob).status == "waiting"
    open_tasks = client.get("/v1/tasks", headers=agent).json()
    assert [t["contact_id"] for t in open_tasks] == [bob]


def test_task_requests_are_checked(journey: Harness, client: TestClient, key_for: KeyMaker) -> None:
    agent = key_for("tasks:read", "tasks:write")
    is_problem(client.post("/v1/tasks/99/claim", json={"agent": "jo"}, headers=agent), 404)
    empty = client.post("/v1/tasks/99/complete", json={"outcome": ""}, headers=agent)
    assert is_problem(empty, 422)["errors"][0]["pointer"] == "#/outcome"  # type: ignore[index]
    bad = client.get("/v1/tasks", params={"status": "lost"}, headers=agent)
    is_problem(bad, 422)
    reader = key_for("tasks:read", name="viewer")
    is_problem(client.post("/v1/tasks/1/claim", json={"agent": "jo"}, headers=reader), 403)
