"""The HTTP API through its ASGI app, on both databases: keys, scopes, events, problems."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from starlette.exceptions import HTTPException
from starlette.testclient import TestClient

from carepath.db.schema import api_keys, events
from carepath.entrypoints.api.app import create_app
from carepath.entrypoints.api.auth import EventsWriter
from carepath.entrypoints.api.events import (
    EVENTS_PATH,
    store_single_events,
    store_sourced_events,
)
from carepath.services.api_keys import revoke_key
from carepath.services.clock import DatabaseClock
from tests.integration.api_support import LINKS, KeyMaker, is_problem
from tests.integration.harness import Harness


def test_health_and_readiness_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_openapi_schema_is_published(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/events" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_requests_without_a_valid_key_get_401(client: TestClient, key_for: KeyMaker) -> None:
    event = {"type": "x.y", "contact": {"id": 1}}
    body = is_problem(client.post("/v1/events", json=event), 401)
    assert body["detail"] == "a valid API key is required"
    for header in ("Bearer nonsense", "Basic abc", "Bearer cpk_0123456789abcdef_" + "A" * 43):
        response = client.post("/v1/events", json=event, headers={"authorization": header})
        is_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_key_without_the_scope_gets_403(client: TestClient, key_for: KeyMaker) -> None:
    headers = key_for("contacts:read")
    event = {"type": "x.y", "contact": {"id": 1}}
    body = is_problem(client.post("/v1/events", json=event, headers=headers), 403)
    assert body["detail"] == "this API key lacks the scope events:write"


def test_a_revoked_key_is_refused(journey: Harness, key_for: KeyMaker) -> None:
    headers = key_for("events:write")
    with journey.engine.begin() as conn:
        revoke_key(conn, "ehr-bridge", now=journey.now)
    fresh = TestClient(create_app(journey.engine), raise_server_exceptions=False)
    ann = journey.contact(first_name="Ann")
    event = {"type": "x.y", "contact": {"id": ann}}
    response = fresh.post("/v1/events", json=event, headers=headers)
    is_problem(response, 401)


def test_keys_are_stored_only_as_hashes(journey: Harness, key_for: KeyMaker) -> None:
    secret = key_for("events:write")["authorization"].removeprefix("Bearer ")
    with journey.engine.connect() as conn:
        stored = conn.execute(sa.select(api_keys)).one()
    # The secret part may hold underscores itself (URL-safe base64).
    assert secret.split("_", 2)[2] not in str(tuple(stored))
    assert len(stored.secret_sha256) == 64


def test_one_event_is_stored_and_a_retry_gets_the_same_answer(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    headers = key_for("events:write")
    ann = journey.contact(first_name="Ann", email="ann@example.test")
    event = {
        "type": "lab.result_available",
        "contact": {"email": "ann@example.test"},
        "idempotency_key": "lab-991",
        "data": {"panel": "A1C"},
    }
    first = client.post("/v1/events", json=event, headers=headers)
    again = client.post("/v1/events", json=event, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    (stored,) = journey.events("lab.result_available")
    assert first.json() == {"event_id": stored.id}
    assert stored.contact_id == ann
    assert stored.source == "api:ehr-bridge"


def test_a_batch_stores_the_valid_items_and_says_why_the_others_were_not(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    headers = key_for("events:write")
    ann = journey.contact(first_name="Ann", external_id="MRN-1")
    batch = {
        "events": [
            {"type": "visit.done", "contact": {"external_id": "MRN-1"}, "idempotency_key": "1"},
            {"type": "visit.done", "contact": {"external_id": "MRN-404"}},
            {"type": "Bad Type!", "contact": {"id": ann}},
            "not an object",
            {"type": "visit.done", "contact": {"id": ann}, "occurred_at": "yesterday"},
            {"type": "visit.done", "contact": {"id": ann}, "idempotency_key": "v2"},
        ]
    }
    response = client.post("/v1/events", json=batch, headers=headers)
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 4)
    items = body["items"]
    assert [i["status"] for i in items] == [
        "accepted", "rejected", "rejected", "rejected", "rejected", "accepted",
    ]  # fmt: skip
    assert items[1]["errors"] == [
        {"pointer": "#/events/1/contact", "detail": "no contact with that external_id"}
    ]
    assert items[2]["errors"][0]["pointer"] == "#/events/2/type"
    assert items[3]["errors"] == [{"pointer": "#/events/3", "detail": "an event is a JSON object"}]
    assert items[4]["errors"][0]["pointer"] == "#/events/4/occurred_at"
    assert "MRN-404" not in response.text  # errors name fields, never values
    assert len(journey.events("visit.done")) == 2
    retried = client.post("/v1/events", json=batch, headers=headers)
    assert retried.json() == body


def test_an_invalid_single_event_is_a_422_problem_with_field_paths(
    client: TestClient, key_for: KeyMaker, journey: Harness
) -> None:
    headers = key_for("events:write")
    event = {"type": "ok.type", "contact": {"phone": "1"}, "extra": 1}
    response = client.post("/v1/events", json=event, headers=headers)
    body = is_problem(response, 422)
    pointers = {e["pointer"] for e in body["errors"]}  # type: ignore[attr-defined]
    assert pointers == {"#/extra", "#/contact"}
    with journey.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 0


def test_a_body_that_is_not_a_json_object_or_too_big_a_batch_is_refused(
    client: TestClient, key_for: KeyMaker
) -> None:
    headers = key_for("events:write")
    is_problem(client.post("/v1/events", content=b"[1, 2", headers=headers), 422)
    is_problem(client.post("/v1/events", json=[1, 2], headers=headers), 422)
    too_many = {"events": [{"type": "a.b", "contact": {"id": 1}}] * 1001}
    body = is_problem(client.post("/v1/events", json=too_many, headers=headers), 422)
    assert body["errors"] == [{"pointer": "#/events", "detail": "a batch holds 1 to 1000 events"}]


def test_a_key_over_its_rate_limit_gets_429(journey: Harness, key_for: KeyMaker) -> None:
    headers = key_for("events:write")
    slow = TestClient(create_app(journey.engine, rate_per_second=1.0))
    statuses = [
        slow.post("/v1/events", json={"events": []}, headers=headers).status_code for _ in range(4)
    ]
    assert statuses[:2] == [422, 422]  # a burst of two, then the limit
    assert 429 in statuses[2:]
    response = slow.post("/v1/events", json={"events": []}, headers=headers)
    assert response.headers["retry-after"] == "1"


def test_one_click_unsubscribe_needs_a_post_and_a_get_only_shows_a_page(
    journey: Harness, client: TestClient
) -> None:
    assert LINKS is not None
    journey.ctx.links = LINKS
    journey.apply(
        "template: t\nsubject: Hello\nhtml: <p>Hi</p>\n---\n"
        "workflow: w\ntrigger: manual\nsteps:\n  send: {email: t}\n"
    )
    ann = journey.contact(first_name="Ann", email="ann@example.test")
    journey.enroll("w", ann)
    journey.work()
    (row,) = journey.outbox(ann)
    token = LINKS.token("unsubscribe", row.message_id)
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    assert 'method="post"' in page.text
    assert "ann@example.test" not in page.text
    assert journey.events("email.unsubscribed") == []
    done = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert len(journey.events("email.unsubscribed")) == 1
    assert client.post(f"/u/{token}x").status_code == 404


def test_tracking_links_are_served_by_the_api(client: TestClient) -> None:
    response = client.get("/c/not-a-token", follow_redirects=False)
    assert response.status_code == 404
    assert client.get("/o/not-a-token").headers["content-type"] == "image/gif"


def test_an_unknown_path_is_a_404_problem(client: TestClient) -> None:
    is_problem(client.get("/v1/nothing-here"), 404)


def test_an_unexpected_error_is_a_bare_500_and_its_message_is_not_logged(
    journey: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(journey.engine)

    @app.get("/boom")
    def boom() -> None:
        raise ValueError("ann@example.test has BMI 41")

    response = TestClient(app).get("/boom")
    body = is_problem(response, 500)
    assert body == {"type": "about:blank", "title": "Internal Server Error", "status": 500}
    assert "ann@example.test" not in caplog.text
    assert "ValueError" in caplog.text


def test_a_nul_character_in_the_query_is_refused_not_a_server_error(
    client: TestClient, key_for: KeyMaker
) -> None:
    answer = client.get("/v1/tasks?queue=a%00b", headers=key_for("tasks:read"))
    assert is_problem(answer, 400)["detail"] == "the request may not contain NUL characters"


def test_a_nul_character_in_a_json_body_is_refused_not_a_server_error(
    client: TestClient, key_for: KeyMaker
) -> None:
    answer = client.post(
        "/v1/tasks/1/claim",
        content=b'{"agent": "a\\u0000b"}',
        headers={**key_for("tasks:write"), "content-type": "application/json"},
    )
    assert is_problem(answer, 400)["detail"] == "the request may not contain NUL characters"


def test_json_nested_deeper_than_the_limit_is_refused_not_a_server_error(
    client: TestClient, key_for: KeyMaker
) -> None:
    deep = b'{"type": "x.y", "contact": {"id": 1}, "data": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = client.post(
        "/v1/events",
        content=deep,
        headers={**key_for("events:write"), "content-type": "application/json"},
    )
    assert is_problem(answer, 400)["detail"] == "JSON may nest at most 32 levels deep"
    fine = b'{"type": "x.y", "contact": {"id": 1}, "data": {"note": "' + b"[" * 40 + b'"}}'
    accepted = client.post(
        "/v1/events",
        content=fine,
        headers={**key_for("events:write", name="b"), "content-type": "application/json"},
    )
    assert accepted.status_code != 400  # brackets inside text are not nesting


def test_concurrent_single_events_each_get_their_own_answer(
    journey: Harness, key_for: KeyMaker
) -> None:
    # Requests arriving together are stored in one transaction: each still gets its own
    # answer, a retry the id of its first copy, a bad reference its own 422.
    headers = key_for("events:write")
    ids = [journey.contact(first_name=f"P{n}", external_id=f"MRN-{n}") for n in range(12)]
    bodies = [
        {"type": "visit.done", "contact": {"external_id": f"MRN-{n}"}, "idempotency_key": f"v{n}"}
        for n in range(12)
    ]
    bodies += [bodies[0], {"type": "visit.done", "contact": {"external_id": "MRN-404"}}]
    with (
        TestClient(create_app(journey.engine), raise_server_exceptions=False) as client,
        ThreadPoolExecutor(len(bodies)) as pool,
    ):
        answers = list(
            pool.map(lambda body: client.post("/v1/events", json=body, headers=headers), bodies)
        )
    assert [a.status_code for a in answers] == [202] * 13 + [422]
    event_ids = [a.json()["event_id"] for a in answers[:13]]
    assert event_ids[12] == event_ids[0]
    stored = {e.id: e.contact_id for e in journey.events("visit.done")}
    assert [stored[i] for i in event_ids[:12]] == ids
    assert len(stored) == 12


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "x.y", "contact": {"id": 1}, "data": {"dose": NaN}}',
        b'{"type": "x.y", "contact": {"external_id": "\\udc00"}}',
    ],
)
def test_json_no_database_can_hold_is_a_400_problem(
    client: TestClient, key_for: KeyMaker, body: bytes
) -> None:
    headers = {**key_for("events:write"), "content-type": "application/json"}
    answer = client.post("/v1/events", content=body, headers=headers)
    assert is_problem(answer, 400)["detail"].startswith("JSON")  # type: ignore[union-attr]


def test_twin_events_without_key_or_time_stay_two_when_their_requests_are_grouped(
    journey: Harness,
) -> None:
    # Sent one after the other, each would get its own time and so its own derived key.
    journey.contact(first_name="Ann", external_id="MRN-1")
    dose = {"type": "dose.taken", "contact": {"external_id": "MRN-1"}, "data": {"mg": 5}}
    clock = DatabaseClock()
    grouped = store_single_events(journey.engine, clock, [("api:a", dose), ("api:b", dose)])
    first, second = (o.event_id for o in grouped)
    assert None not in (first, second)
    assert first != second
    # Within one batch, the same content is the same event, as it always was.
    batch = store_sourced_events(journey.engine, clock, [("api:a", dose), ("api:a", dose)])
    assert batch[0].event_id == batch[1].event_id is not None


def test_single_events_of_a_verified_key_are_answered_before_the_router(
    journey: Harness, key_for: KeyMaker
) -> None:
    headers = key_for("events:write")
    app = create_app(journey.engine)
    route_key = EventsWriter.__metadata__[0].dependency

    def at_the_route() -> None:  # the route's own key check: answers 418 here
        raise HTTPException(418)

    app.dependency_overrides[route_key] = at_the_route
    marked = TestClient(app, raise_server_exceptions=False)
    journey.contact(external_id="MRN-1")
    event = {"type": "visit.done", "contact": {"external_id": "MRN-1"}}
    # Until the key is verified (which the route does), requests go on to the route.
    assert marked.post(EVENTS_PATH, json=event, headers=headers).status_code == 418
    app.state.keys.verify(headers["authorization"].removeprefix("Bearer "))
    answer = marked.post(EVENTS_PATH, json=event, headers=headers)
    assert answer.status_code == 202
    assert answer.json() == {"event_id": journey.events("visit.done")[0].id}
    json_type = {"content-type": "application/json"}
    for body, content_type, status in (
        (json.dumps({"events": [event]}).encode(), json_type, 418),  # a batch
        (b"[1]", json_type, 418),  # not an object
        (b"type=visit.done", {"content-type": "text/plain"}, 418),
        (b'{"type": ', json_type, 422),  # not JSON: the route's parser answers before its key check
    ):
        response = marked.post(EVENTS_PATH, content=body, headers={**headers, **content_type})
        assert response.status_code == status


@pytest.mark.parametrize(
    ("scopes", "event", "status"),
    [
        (("events:write",), {"type": "visit.done", "contact": {"external_id": "MRN-1"}}, 202),
        (("events:write",), {"type": "Visit!", "contact": {"phone": "1"}, "extra": 1}, 422),
        (("events:write",), {"type": "visit.done", "contact": {"external_id": "MRN-404"}}, 422),
        (("contacts:read",), {"type": "visit.done", "contact": {"external_id": "MRN-1"}}, 403),
    ],
)
def test_the_lane_and_the_route_answer_a_single_event_alike(
    journey: Harness,
    key_for: KeyMaker,
    scopes: tuple[str, ...],
    event: dict[str, object],
    status: int,
) -> None:
    headers = key_for(*scopes)
    client = TestClient(create_app(journey.engine), raise_server_exceptions=False)
    journey.contact(external_id="MRN-1")
    keyed = {**event, "idempotency_key": "visit-1"}  # so that the same request, same answer
    by_route = client.post(EVENTS_PATH, json=keyed, headers=headers)  # the key is verified here
    by_lane = client.post(EVENTS_PATH, json=keyed, headers=headers)
    assert by_route.status_code == by_lane.status_code == status
    assert by_route.headers["content-type"] == by_lane.headers["content-type"]
    assert by_route.json() == by_lane.json()
