"""Open and click tracking: signed links, redirects only to the message's URLs, machines apart."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from carepath.channels.links import LinkSigner
from carepath.entrypoints.tracking_app import tracking_app
from tests.integration.harness import Harness
from tests.integration.tracked_mail import mail_tracked

FLOW = """
template: guide
subject: Your guide
html: |
  <html><body>
  <p>Hello {{ contact.first_name }}</p>
  <p><a href="https://hospital.example/visit?x=1&amp;y=2">Directions</a></p>
  <p><a class="b" data-track="download:bariatric-guide" href="https://hospital.example/guide.pdf">Guide</a></p>
  <p><a href="mailto:care@hospital.example">Write to us</a></p>
  </body></html>
---
workflow: w
trigger: manual
steps:
  send: {email: guide}
"""
LINKS = LinkSigner.from_settings("https://care.example.org", "t" * 40, None)


@pytest.fixture
def sent(journey: Harness) -> tuple[Harness, TestClient, list[str], str]:
    _, clicks, (pixel,) = mail_tracked(journey, LINKS, FLOW, "w")
    client = TestClient(tracking_app(journey.engine, LINKS), follow_redirects=False)
    return journey, client, clicks, pixel


def test_links_are_rewritten_and_remembered_in_order(
    sent: tuple[Harness, TestClient, list[str], str],
) -> None:
    journey, _, clicks, _ = sent
    (row,) = journey.outbox()
    assert len(clicks) == 2  # mailto: is left alone
    assert row.links == [
        {"url": "https://hospital.example/visit?x=1&y=2", "tag": None},
        {"url": "https://hospital.example/guide.pdf", "tag": "download:bariatric-guide"},
    ]
    assert "data-track" not in row.html
    assert "mailto:care@hospital.example" in row.html
    assert "Ann" not in "".join(clicks)


def test_a_click_redirects_to_that_link_and_becomes_an_event(
    sent: tuple[Harness, TestClient, list[str], str],
) -> None:
    journey, client, clicks, _ = sent
    response = client.get(f"/c/{clicks[1]}", headers={"user-agent": "Mozilla/5.0"})
    assert response.status_code == 302
    assert response.headers["location"] == "https://hospital.example/guide.pdf"
    assert response.headers["cache-control"] == "no-store, private"
    (event,) = journey.events("email.clicked")
    assert event.data == {
        "outbox_id": journey.outbox()[0].id,
        "link": 1,
        "machine": False,
        "tag": "download:bariatric-guide",
    }
    client.get(f"/c/{clicks[1]}")
    assert len(journey.events("email.clicked")) == 2  # totals count every click


def test_scanners_and_prefetches_are_recorded_as_machines(
    sent: tuple[Harness, TestClient, list[str], str],
) -> None:
    journey, client, clicks, pixel = sent
    assert client.head(f"/c/{clicks[0]}").status_code == 302
    client.get(
        f"/o/{pixel}", headers={"user-agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"}
    )
    assert [e.data["machine"] for e in journey.events("email.clicked")] == [True]
    assert [e.data["machine"] for e in journey.events("email.opened")] == [True]
    response = client.get(f"/o/{pixel}", headers={"user-agent": "Mozilla/5.0"})
    assert (response.status_code, response.headers["content-type"]) == (200, "image/gif")
    assert [e.data["machine"] for e in journey.events("email.opened")] == [True, False]


def test_tampered_tokens_and_links_not_in_the_message_are_refused(
    sent: tuple[Harness, TestClient, list[str], str],
) -> None:
    journey, client, clicks, _ = sent
    head, tail = clicks[0].split(".")
    assert client.get(f"/c/{head}.{tail[:-2]}zz").status_code == 404
    assert client.get("/c/garbage").status_code == 404
    assert LINKS is not None
    message_id = journey.outbox()[0].message_id
    beyond = LINKS.token("click", f"{message_id}#7")  # a validly signed index it never had
    response = client.get(f"/c/{beyond}")
    assert (response.status_code, response.text) == (404, "not found")
    assert journey.events("email.clicked") == []
