"""Unsubscribing through the signed link a message carried, and the preference page."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from carepath.channels.links import LinkSigner
from carepath.channels.smtp import PooledSmtpSender
from carepath.channels.smtp_sink import SmtpSink
from carepath.domain.access import SYSTEM
from carepath.entrypoints.api.app import create_app
from carepath.errors import InvalidInput
from carepath.services.consents import ConsentChange, ConsentKind, set_consent
from carepath.services.list_memberships import join_list
from carepath.services.unsubscribes import unsubscribe
from tests.integration.api_support import LINKS
from tests.integration.harness import Harness

FLOW = """
template: news
subject: Healthy living this month
html: "<p>News</p>"
---
workflow: w
trigger: manual
reentry: always
steps:
  news: {email: news}
"""


def test_the_link_in_a_delivered_message_unsubscribes_its_recipient(journey: Harness) -> None:
    links = LinkSigner.from_settings("https://care.example.org", "s" * 40, None)
    assert links is not None
    journey.ctx.links = links
    journey.apply(FLOW)
    ann = journey.contact(email="ann@example.org")
    with SmtpSink() as sink:
        sender = PooledSmtpSender(sink.url)
        journey.ctx.sender = sender
        journey.enroll("w", ann)
        journey.work()
        sender.close()
        (received,) = sink.messages
    url = str(received["List-Unsubscribe"]).strip("<> ")
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = url.rsplit("/", 1)[1]
    with journey.engine.begin() as conn:
        assert unsubscribe(conn, links, token, now=journey.now, source="link") is True
        assert unsubscribe(conn, links, token, now=journey.now, source="link") is False
    (event,) = journey.events("email.unsubscribed")
    assert event.contact_id == ann
    journey.ctx.sender = None
    journey.enroll("w", ann)
    journey.ctx.sender = journey.sender
    journey.work()
    assert journey.outbox(ann)[-1].status == "suppressed"
    with journey.engine.begin() as conn, pytest.raises(InvalidInput) as caught:
        unsubscribe(conn, links, token[:-3] + "xyz", now=journey.now, source="link")
    assert str(caught.value.problems[0]) == "token: not a valid unsubscribe token"


PREFERENCES = """
list: healthy-living
title: Healthy living news
---
list: bariatric-info
title: Weight-loss surgery information
---
template: news
subject: Healthy living this month
html: "<p>News</p>"
---
template: reminder
subject: Your visit
html: "<p>See you soon</p>"
---
workflow: news
purpose: marketing
trigger: manual
reentry: always
exit_when: {event: contact.opted_out}
steps:
  news: {email: news, next: later}
  later: {wait: 7d, next: again}
  again: {email: news}
---
workflow: reminders
purpose: treatment
trigger: manual
reentry: always
steps:
  remind: {email: reminder}
"""


@pytest.fixture
def subscribed(journey: Harness) -> tuple[Harness, TestClient, int, str]:
    """Ann, on two lists and with a marketing authorization, mailed the news once."""
    assert LINKS is not None
    journey.ctx.links = LINKS
    journey.apply(PREFERENCES)
    ann = journey.contact(first_name="Ann", email="ann@example.org")
    with journey.engine.begin() as conn:
        for name in ("healthy-living", "bariatric-info"):
            join_list(conn, name, [ann], now=journey.now, source="test", who=SYSTEM)
        granted = ConsentChange(ConsentKind.MARKETING, granted=True, source="intake form")
        set_consent(conn, ann, granted, now=journey.now, who=SYSTEM)
    journey.enroll("news", ann)
    journey.work()
    (row,) = journey.outbox(ann)
    client = TestClient(create_app(journey.engine, links=LINKS), raise_server_exceptions=False)
    return journey, client, ann, LINKS.token("unsubscribe", row.message_id)


def test_the_preference_page_offers_choices_and_changes_nothing(
    subscribed: tuple[Harness, TestClient, int, str],
) -> None:
    journey, client, _, token = subscribed
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    for offered in ('value="all" checked', 'value="marketing"', 'value="none"'):
        assert offered in page.text
    assert page.text.index("Healthy living news") < page.text.index("Weight-loss surgery")
    assert 'name="leave" value="bariatric-info"' in page.text
    assert "ann@example.org" not in page.text
    assert "Ann" not in page.text
    assert journey.events("contact.opted_out") == []
    assert client.get(f"/u/{token}x").status_code == 404


def test_stopping_marketing_keeps_reminders_and_ends_marketing_journeys(
    subscribed: tuple[Harness, TestClient, int, str],
) -> None:
    journey, client, ann, token = subscribed
    saved = client.post(f"/u/{token}", data={"scope": "marketing", "leave": "bariatric-info"})
    assert saved.status_code == 200
    assert "Appointment reminders" in saved.text
    (opted,) = journey.events("contact.opted_out")
    assert (opted.contact_id, opted.data["scope"]) == (ann, "marketing")
    assert [e.data["list"] for e in journey.events("list.left")] == ["bariatric-info"]
    assert journey.run(ann, "news").status == "waiting"
    journey.work()
    assert journey.run(ann, "news").status == "exited"  # exit_when: contact.opted_out
    journey.enroll("news", ann)
    journey.enroll("reminders", ann)
    journey.work()
    statuses = {row.subject: (row.status, row.last_error) for row in journey.outbox(ann)[1:]}
    assert statuses == {
        "Healthy living this month": ("skipped", "no marketing authorization"),
        "Your visit": ("sent", None),
    }
    again = client.post(f"/u/{token}", data={"scope": "marketing"})
    assert again.status_code == 200
    assert len(journey.events("contact.opted_out")) == 1


def test_one_click_stops_all_email_and_says_so_to_journeys(
    subscribed: tuple[Harness, TestClient, int, str],
) -> None:
    journey, client, ann, token = subscribed
    done = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    (opted,) = journey.events("contact.opted_out")
    assert opted.data["scope"] == "all"
    assert len(journey.events("email.unsubscribed")) == 1
    assert journey.events("list.left") == []
    journey.enroll("reminders", ann)
    journey.work()
    assert journey.outbox(ann)[-1].status == "suppressed"


def test_choices_not_offered_are_refused_and_change_nothing(
    subscribed: tuple[Harness, TestClient, int, str],
) -> None:
    journey, client, _, token = subscribed
    assert client.post(f"/u/{token}", data={"scope": "everything"}).status_code == 400
    assert client.post(f"/u/{token}", data={"scope": "none", "leave": "vip"}).status_code == 400
    assert client.post(f"/u/{token}", data={"scope": "none"}).status_code == 200
    assert journey.events("contact.opted_out") == []
    assert journey.events("list.left") == []
