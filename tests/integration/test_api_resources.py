"""Resources and workflows through the API on both databases: validate, apply, enroll, runs."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.integration.api_support import KeyMaker, is_problem
from tests.integration.harness import Harness

FLOW = """\
workflow: welcome
trigger: manual
reentry: never
steps:
  tag: {update: {add_tags: [welcomed]}, next: done}
  done: {exit: completed}
"""


def test_documents_are_validated_with_line_numbers_and_nothing_is_stored(
    client: TestClient, key_for: KeyMaker
) -> None:
    headers = key_for("resources:write", "workflows:read")
    bad = FLOW.replace("next: done}", "next: nowhere}")
    for path in ("/v1/resources/validate", "/v1/resources/apply"):
        body = is_problem(client.post(path, json={"source": bad}, headers=headers), 422)
        assert body["errors"] == [
            {"location": "request:5", "detail": "unknown step 'nowhere'"},
            {"location": "request:6", "detail": "step is unreachable from start"},
        ]
    assert client.get("/v1/workflows", headers=headers).json() == []
    syntax = client.post("/v1/resources/validate", json={"source": "a: [b"}, headers=headers)
    assert is_problem(syntax, 422)["errors"][0]["location"].startswith("request:")  # type: ignore[index]
    control = client.post("/v1/resources/validate", json={"source": "\b"}, headers=headers)
    assert is_problem(control, 422)["errors"] == [
        {
            "location": "request",
            "detail": "YAML error: the text holds a character YAML does not allow",
        }
    ]


def test_apply_stores_versions_only_of_what_changed(client: TestClient, key_for: KeyMaker) -> None:
    headers = key_for("resources:write", "workflows:read")
    ok = client.post("/v1/resources/validate", json={"source": FLOW}, headers=headers)
    assert ok.json() == {"valid": 1}
    first = client.post("/v1/resources/apply", json={"source": FLOW}, headers=headers).json()
    assert first == [{"kind": "workflow", "name": "welcome", "version": 1, "changed": True}]
    again = client.post("/v1/resources/apply", json={"source": FLOW}, headers=headers).json()
    assert again[0]["changed"] is False
    changed = FLOW.replace("welcomed", "greeted")
    client.post("/v1/resources/apply", json={"source": changed}, headers=headers)
    (listed,) = client.get("/v1/workflows", headers=headers).json()
    assert (listed["name"], listed["version"]) == ("welcome", 2)
    versions = client.get("/v1/workflows/welcome/versions", headers=headers).json()
    assert [v["version"] for v in versions] == [1, 2]
    is_problem(client.get("/v1/workflows/nope/versions", headers=headers), 404)


def test_enrolling_through_the_api_follows_reentry_and_shows_runs(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(FLOW)
    ann = journey.contact(first_name="Ann")
    headers = key_for("workflows:write", "workflows:read")
    body = {"contact_ids": [ann]}
    first = client.post("/v1/workflows/welcome/enroll", json=body, headers=headers).json()
    assert len(first["run_ids"]) == 1
    journey.work()
    again = client.post("/v1/workflows/welcome/enroll", json=body, headers=headers).json()
    assert again["run_ids"] == []
    assert again["skipped"][0]["contact_id"] == ann
    (run,) = client.get(f"/v1/contacts/{ann}/runs", headers=headers).json()
    assert (run["workflow"], run["status"]) == ("welcome", "completed")
    unknown = client.post("/v1/workflows/nope/enroll", json=body, headers=headers)
    is_problem(unknown, 404)
    nobody = client.post(
        "/v1/workflows/welcome/enroll", json={"contact_ids": [999999]}, headers=headers
    )
    assert is_problem(nobody, 422)["errors"] == [
        {"pointer": "#/contact_ids", "detail": "no contact with id 999999"}
    ]
    is_problem(client.get("/v1/contacts/999999/runs", headers=headers), 404)
