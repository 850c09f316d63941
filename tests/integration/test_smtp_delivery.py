"""Delivery over real SMTP to a local aiosmtpd peer: one message per outbox row, MIME as sent."""

from __future__ import annotations

import sqlalchemy as sa

from carepath.channels.email import SmtpSender
from carepath.channels.smtp_sink import SmtpSink
from carepath.db.schema import outbox
from tests.integration.harness import Harness

FLOW = """
template: welcome
subject: Welcome to the program
html: "<h1>Hello {{ contact.first_name }}</h1><p>We are glad you are here.</p>"
---
workflow: w
trigger: manual
steps:
  greet: {email: welcome}
"""


def test_outbox_is_delivered_over_smtp_once_per_row(journey: Harness) -> None:
    journey.apply(FLOW)
    ids = [journey.contact(first_name=f"Pat{i}") for i in range(3)]
    with SmtpSink() as sink:
        journey.ctx.sender = sender = SmtpSender(sink.url)
        journey.enroll("w", *ids)
        journey.work()
        journey.work()  # nothing left: no second delivery
        sender.close()
        received = sink.messages
    with journey.engine.connect() as conn:
        rows = conn.execute(sa.select(outbox).order_by(outbox.c.id)).all()
    assert [r.status for r in rows] == ["sent"] * 3
    assert sorted(m["Message-ID"] for m in received) == sorted(r.message_id for r in rows)
    message = next(m for m in received if m["To"] == "p1@example.test")
    assert message["Subject"] == "Welcome to the program"
    assert message.get_content_type() == "multipart/alternative"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode() for p in message.get_payload()
    }
    assert "<h1>Hello Pat0</h1>" in parts["text/html"]
    assert "Hello Pat0" in parts["text/plain"]
    assert len(journey.events("email.sent")) == 3


def test_unreachable_server_keeps_the_message_pending_for_retry(journey: Harness) -> None:
    journey.apply(FLOW)
    ann = journey.contact()
    journey.ctx.sender = SmtpSender("smtp://127.0.0.1:9?tls=none", timeout=2)
    journey.enroll("w", ann)
    journey.work()
    (row,) = journey.outbox(ann)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error == "cannot connect to SMTP server: ConnectionRefusedError"
    assert row.next_attempt_at > journey.now
