"""Inbound webhooks on both databases: signature, tolerance, replay, payload mapping."""

from __future__ import annotations

import json
import time

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from carepath.services.hooks import sign
from tests.integration.api_support import is_problem
from tests.integration.harness import Harness

SECRET = "s3cret-shared-with-the-scheduler"
SOURCE = """
source: scheduler
title: Clinic scheduling
secret_env: TEST_HOOK_SCHEDULER
events:
  - when: {payload.kind: appointment.booked}
    type: appointment.scheduled
    contact: {external_id: payload.patient.mrn}
    occurred_at: payload.at
    idempotency_key: payload.id
    data: {starts_at: payload.appointment.start, site: payload.appointment.site}
  - when: {payload.kind: appointment.cancelled}
    type: appointment.cancelled
    contact: {external_id: payload.patient.mrn}
"""
BOOKED = {
    "id": "A-1",
    "kind": "appointment.booked",
    "at": "2026-01-05T07:00:00Z",
    "patient": {"mrn": "MRN-1"},
    "appointment": {"start": "2026-01-09T14:00:00Z", "site": "Main campus"},
}


@pytest.fixture
def scheduler(journey: Harness, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("TEST_HOOK_SCHEDULER", SECRET)
    journey.apply(SOURCE)
    journey.contact(first_name="Ann", external_id="MRN-1")
    return journey


def _post(
    client: TestClient, payload: object, *, at: int | None = None, secret: str = SECRET
) -> Response:
    body = json.dumps(payload).encode()
    header = sign(secret.encode(), at if at is not None else int(time.time()), body)
    return client.post(
        "/v1/hooks/scheduler",
        content=body,
        headers={"x-carepath-signature": header, "content-type": "application/json"},
    )


def test_a_signed_payload_becomes_the_mapped_event(scheduler: Harness, client: TestClient) -> None:
    response = _post(client, BOOKED)
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    (event,) = scheduler.events("appointment.scheduled")
    assert event.data == {"starts_at": "2026-01-09T14:00:00Z", "site": "Main campus"}
    assert event.idempotency_key == "scheduler:A-1"
    assert event.source == "hook:scheduler"


def test_a_batch_payload_is_mapped_item_by_item_and_unmatched_items_are_ignored(
    scheduler: Harness, client: TestClient
) -> None:
    cancelled = {"kind": "appointment.cancelled", "patient": {"mrn": "MRN-1"}}
    unknown = {"kind": "something.else", "patient": {"mrn": "MRN-1"}}
    stranger = {**BOOKED, "id": "A-2", "patient": {"mrn": "MRN-404"}}
    body = _post(client, [BOOKED, cancelled, unknown, stranger]).json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert len(scheduler.events("appointment.cancelled")) == 1


def test_unsigned_wrongly_signed_and_stale_requests_are_refused(
    scheduler: Harness, client: TestClient
) -> None:
    unsigned = client.post("/v1/hooks/scheduler", json=BOOKED)
    assert is_problem(unsigned, 401)["detail"] == "the request is not signed"
    wrong = _post(client, BOOKED, secret="not-the-shared-secret-at-all")
    assert is_problem(wrong, 401)["detail"] == "the signature does not match"
    huge = client.post(
        "/v1/hooks/scheduler",
        content=b"{}",
        headers={"x-carepath-signature": "t=99999999999999999999,v1=" + "0" * 64},
    )
    assert is_problem(huge, 401)["detail"] == "the signature header is malformed"
    stale = _post(client, BOOKED, at=int(time.time()) - 6 * 60)
    assert is_problem(stale, 401)["detail"] == "the signature is too old or too far in the future"
    assert scheduler.events("appointment.scheduled") == []


def test_a_replayed_request_is_refused(scheduler: Harness, client: TestClient) -> None:
    body = json.dumps(BOOKED).encode()
    headers = {"x-carepath-signature": sign(SECRET.encode(), int(time.time()), body)}
    assert client.post("/v1/hooks/scheduler", content=body, headers=headers).status_code == 202
    replay = client.post("/v1/hooks/scheduler", content=body, headers=headers)
    assert is_problem(replay, 409)["detail"] == "this request was received before (replay)"


def test_unknown_sources_and_missing_secrets_say_so(
    scheduler: Harness, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps(BOOKED).encode()
    header = sign(SECRET.encode(), int(time.time()), body)
    unknown = client.post(
        "/v1/hooks/nobody", content=body, headers={"x-carepath-signature": header}
    )
    is_problem(unknown, 404)
    monkeypatch.delenv("TEST_HOOK_SCHEDULER")
    is_problem(_post(client, BOOKED), 503)


def test_source_documents_are_validated(journey: Harness) -> None:
    bad = SOURCE.replace("payload.patient.mrn}\n    occurred", "patient.mrn}\n    occurred")
    bad = bad.replace("secret_env: TEST_HOOK_SCHEDULER", "secret_env: lower")
    with pytest.raises(Exception, match="payload path") as caught:
        journey.apply(bad)
    assert "environment variable" in str(caught.value)


def test_a_signed_body_is_checked_as_json_whatever_its_content_type(
    scheduler: Harness, client: TestClient
) -> None:
    body = b'{"id": "A-9", "patient": "MRN-1", "starts": NaN}'
    header = sign(SECRET.encode(), int(time.time()), body)
    answer = client.post(
        "/v1/hooks/scheduler",
        content=body,
        headers={"x-carepath-signature": header, "content-type": "text/plain"},
    )
    assert is_problem(answer, 400)["detail"] == "JSON may not hold NaN or Infinity"
    assert scheduler.events("appointment.scheduled") == []
