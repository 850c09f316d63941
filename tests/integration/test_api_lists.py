"""`/v1/lists` on both databases: lists, members, joining and leaving with events."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.integration.api_support import KeyMaker, is_problem
from tests.integration.harness import Harness

LISTS = """
list: newsletter
title: Monthly newsletter
---
list: bariatric-interest
"""


def test_contacts_join_and_leave_lists_with_events(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(LISTS)
    ann, bob = journey.contact(first_name="Ann"), journey.contact(first_name="Bob")
    headers = key_for("contacts:read", "contacts:write")
    joined = client.post(
        "/v1/lists/newsletter/members", json={"contact_ids": [ann, bob, ann]}, headers=headers
    )
    assert joined.json() == {"joined": 2}
    again = client.post(
        "/v1/lists/newsletter/members", json={"contact_ids": [ann]}, headers=headers
    )
    assert again.json() == {"joined": 0}
    assert client.get("/v1/lists", headers=headers).json() == [
        {"name": "bariatric-interest", "title": "bariatric-interest", "members": 0},
        {"name": "newsletter", "title": "Monthly newsletter", "members": 2},
    ]
    page = client.get("/v1/lists/newsletter/members", params={"limit": 1}, headers=headers).json()
    assert page == {"contact_ids": [ann], "next_after": ann}
    rest = client.get("/v1/lists/newsletter/members", params={"after": ann}, headers=headers).json()
    assert rest == {"contact_ids": [bob], "next_after": None}
    gone = client.delete(f"/v1/lists/newsletter/members/{ann}", headers=headers)
    assert gone.status_code == 204
    assert [e.contact_id for e in journey.events("list.joined")] == [ann, bob]
    assert [e.contact_id for e in journey.events("list.left")] == [ann]


def test_unknown_lists_and_contacts_are_named(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(LISTS)
    headers = key_for("contacts:read", "contacts:write")
    body = {"contact_ids": [999999]}
    unknown = client.post("/v1/lists/newsletter/members", json=body, headers=headers)
    assert is_problem(unknown, 422)["errors"] == [
        {"pointer": "#/contact_ids", "detail": "no contact with id 999999"}
    ]
    is_problem(client.get("/v1/lists/nope/members", headers=headers), 404)
