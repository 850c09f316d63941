"""Bounce and complaint reports fed back in: suppression, statuses, events, all or nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carepath.db.schema import suppressions
from carepath.errors import InvalidInput
from carepath.services.bounces import ingest_reports
from tests.integration.api_support import KeyMaker, is_problem
from tests.integration.harness import Harness
from tests.support.reports import arf, dsn

FLOW = """
template: note
subject: A note from your care team
html: "<p>Hello</p>"
---
workflow: w
trigger: manual
reentry: always
steps:
  note: {email: note}
"""


def _ingest(journey: Harness, *reports: bytes) -> object:
    with journey.engine.begin() as conn:
        return ingest_reports(
            conn, [(f"r{i}.eml", r) for i, r in enumerate(reports)], now=journey.now
        )


def _suppressed(journey: Harness) -> list[tuple[str, str, str]]:
    with journey.engine.connect() as conn:
        rows = conn.execute(sa.select(suppressions)).all()
    return sorted((r.email, r.reason, r.source) for r in rows)  # sealed: sorted once opened


def _sent_to(journey: Harness, contact: int) -> str:
    journey.enroll("w", contact)
    journey.work()
    return str(journey.outbox(contact)[-1].message_id)


def test_a_hard_bounce_report_bounces_the_message_and_suppresses_the_address(
    journey: Harness,
) -> None:
    journey.apply(FLOW)
    ann = journey.contact(email="ann@example.org")
    message_id = _sent_to(journey, ann)
    done = _ingest(journey, dsn(message_id, "ann@example.org"))
    assert (done.hard_bounces, done.suppressed, done.unmatched) == (1, 1, 0)
    row = journey.outbox(ann)[-1]
    assert (row.status, row.last_error) == ("bounced", "bounced (5.1.1)")
    (event,) = journey.events("email.bounced")
    assert event.data == {"outbox_id": row.id, "bounce": "hard", "status": "5.1.1"}
    assert _suppressed(journey) == [("ann@example.org", "hard_bounce", "dsn")]
    _ingest(journey, dsn(message_id, "ann@example.org"))  # the same report again
    assert len(journey.events("email.bounced")) == 1
    journey.enroll("w", ann)
    journey.work()
    assert journey.outbox(ann)[-1].status == "suppressed"


def test_a_soft_bounce_is_recorded_without_suppression(journey: Harness) -> None:
    journey.apply(FLOW)
    ann = journey.contact(email="ann@example.org")
    message_id = _sent_to(journey, ann)
    _ingest(journey, dsn(message_id, "ann@example.org", action="delayed", status="4.4.1"))
    assert [e.data["bounce"] for e in journey.events("email.bounced")] == ["soft"]
    assert journey.outbox(ann)[-1].status == "sent"
    assert _suppressed(journey) == []


def test_a_complaint_suppresses_and_becomes_an_event(journey: Harness) -> None:
    journey.apply(FLOW)
    bea = journey.contact(email="bea@example.org")
    message_id = _sent_to(journey, bea)
    done = _ingest(journey, arf(message_id, "bea@example.org"))
    assert done.complaints == 1
    (event,) = journey.events("email.complained")
    assert (event.contact_id, event.data) == (bea, {"outbox_id": journey.outbox(bea)[-1].id})
    assert _suppressed(journey) == [("bea@example.org", "complaint", "arf")]


def test_a_report_about_an_unknown_message_still_suppresses_a_known_address(
    journey: Harness,
) -> None:
    journey.apply(FLOW)
    cal = journey.contact(email="cal@example.org")
    done = _ingest(
        journey,
        dsn("<not-ours@elsewhere>", "cal@example.org"),
        dsn("<not-ours@elsewhere>", "stranger@example.org"),
    )
    assert (done.hard_bounces, done.unmatched, done.suppressed) == (2, 1, 2)
    (event,) = journey.events("email.bounced")
    assert event.contact_id == cal
    assert [s[0] for s in _suppressed(journey)] == ["cal@example.org", "stranger@example.org"]


def test_one_bad_report_and_nothing_is_written(journey: Harness) -> None:
    journey.apply(FLOW)
    ann = journey.contact(email="ann@example.org")
    message_id = _sent_to(journey, ann)
    with pytest.raises(InvalidInput) as caught:
        _ingest(journey, dsn(message_id, "ann@example.org"), b"Subject: hello\r\n\r\nhi")
    assert [str(p) for p in caught.value.problems] == ["r1.eml: not a multipart/report message"]
    assert "ann@" not in str(caught.value)
    assert journey.outbox(ann)[-1].status == "sent"
    assert _suppressed(journey) == []


def test_reports_come_in_through_the_api_too(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(FLOW)
    ann = journey.contact(first_name="Ann", email="ann@example.test")
    journey.enroll("w", ann)
    journey.work()
    (row,) = journey.outbox(ann)
    headers = key_for("events:write") | {"content-type": "message/rfc822"}
    report = dsn(row.message_id, "ann@example.test")
    response = client.post("/v1/bounces", content=report, headers=headers)
    assert response.json() == {
        "hard_bounces": 1, "soft_bounces": 0, "complaints": 0, "unmatched": 0, "suppressed": 1,
    }  # fmt: skip
    assert len(journey.events("email.bounced")) == 1
    again = client.post("/v1/bounces", content=report, headers=headers)
    assert again.json()["suppressed"] == 0
    assert len(journey.events("email.bounced")) == 1
    junk = client.post("/v1/bounces", content=b"hello", headers=headers)
    assert is_problem(junk, 422)["status"] == 422
