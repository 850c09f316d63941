"""Unsubscribing through the signed link a message carried."""

from __future__ import annotations

import pytest

from carepath.channels.links import LinkSigner
from carepath.channels.smtp import PooledSmtpSender
from carepath.channels.smtp_sink import SmtpSink
from carepath.errors import InvalidInput
from carepath.services.unsubscribes import unsubscribe
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
