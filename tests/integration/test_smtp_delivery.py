"""Delivery to real SMTP server processes: TLS policy, retries, bounces, suppression.

The peers are `tests.support.smtp_peer` processes (aiosmtpd): one offers
STARTTLS with a self-signed certificate the client is told to trust, one
offers no TLS at all. What they accepted is read from their logs.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from carepath.channels.email import message_bytes
from carepath.channels.smtp import PooledSmtpSender
from carepath.channels.smtp_sink import SmtpSink
from carepath.db.schema import suppressions
from carepath.services.outbox import release_held
from tests.integration.harness import Harness
from tests.support.mail import outgoing
from tests.support.smtp_peers import SmtpPeer, start_peer

FLOW = """
template: welcome
subject: Welcome to the program
html: "<h1>Hello {{ contact.first_name }}</h1><p>We are glad you are here.</p>"
---
workflow: w
trigger: manual
reentry: always
steps:
  greet: {email: welcome}
"""


@pytest.fixture(scope="module")
def tls_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpPeer]:
    peer = start_peer(tmp_path_factory.mktemp("tls-peer"), starttls=True)
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def plain_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpPeer]:
    peer = start_peer(tmp_path_factory.mktemp("plain-peer"), starttls=False)
    yield peer
    peer.stop()


def _use(journey: Harness, url: str) -> PooledSmtpSender:
    sender = PooledSmtpSender(url)
    journey.ctx.sender = sender
    return sender


def _accepted(peer: SmtpPeer, journey: Harness) -> list[dict[str, object]]:
    """What the peer accepted of this test's messages."""
    mine = {r.message_id for r in journey.outbox()}
    return [a for a in peer.accepted() if a["message_id"] in mine]


def _row(journey: Harness, contact_id: int) -> sa.Row[object]:
    (row,) = journey.outbox(contact_id)
    return row


def test_delivered_once_per_row_over_starttls(journey: Harness, tls_peer: SmtpPeer) -> None:
    journey.apply(FLOW)
    ids = [journey.contact(first_name=f"Pat{i}") for i in range(12)]
    sender = _use(journey, tls_peer.url(cafile=str(tls_peer.cert), pool="4"))
    journey.enroll("w", *ids)
    journey.work()
    journey.work()  # nothing left: no second delivery
    sender.close()
    accepted = _accepted(tls_peer, journey)
    assert [r.status for r in journey.outbox()] == ["sent"] * 12
    assert sorted(a["message_id"] for a in accepted) == sorted(
        r.message_id for r in journey.outbox()
    )
    assert all(a["tls"] for a in accepted)
    assert len(journey.events("email.sent")) == 12


def test_required_tls_without_starttls_holds_and_sends_nothing(
    journey: Harness, plain_peer: SmtpPeer
) -> None:
    journey.apply(FLOW)
    ann = journey.contact()
    sender = _use(journey, plain_peer.url())  # tls=required is the default
    journey.enroll("w", ann)
    journey.work()
    sender.close()
    row = _row(journey, ann)
    assert row.status == "held"
    assert row.last_error == "held: the server offers no STARTTLS and tls=required"
    assert _accepted(plain_peer, journey) == []
    assert journey.events("email.sent") == []
    with journey.engine.begin() as conn:
        assert release_held(conn, now=journey.now) == 1
    sender = _use(journey, plain_peer.url(tls="opportunistic"))
    journey.work()
    sender.close()
    assert _row(journey, ann).status == "sent"
    assert [a["tls"] for a in _accepted(plain_peer, journey)] == [False]


def test_an_untrusted_certificate_holds_the_message(journey: Harness, tls_peer: SmtpPeer) -> None:
    journey.apply(FLOW)
    ann = journey.contact()
    sender = _use(journey, tls_peer.url())  # the self-signed certificate is not trusted
    journey.enroll("w", ann)
    journey.work()
    sender.close()
    row = _row(journey, ann)
    assert row.status == "held"
    assert row.last_error.startswith("held: TLS with the server failed")
    assert _accepted(tls_peer, journey) == []


def test_4xx_is_retried_with_backoff_then_delivered_once(
    journey: Harness, plain_peer: SmtpPeer
) -> None:
    journey.apply(FLOW)
    ann = journey.contact(email="tempfail-2@example.test")
    sender = _use(journey, plain_peer.url(tls="none"))
    journey.enroll("w", ann)
    journey.work()
    first = _row(journey, ann)
    assert (first.status, first.attempts) == ("pending", 1)
    assert first.last_error == "server refused the message (451)"
    assert journey.now + timedelta(seconds=30) <= first.next_attempt_at
    assert first.next_attempt_at <= journey.now + timedelta(minutes=1)
    journey.advance("1m")
    assert _row(journey, ann).attempts == 2
    journey.advance("2m")
    sender.close()
    done = _row(journey, ann)
    assert (done.status, done.attempts, done.last_error) == ("sent", 3, None)
    assert len(_accepted(plain_peer, journey)) == 1


def test_retries_stop_after_the_retry_period_as_a_soft_bounce(
    journey: Harness, plain_peer: SmtpPeer
) -> None:
    journey.apply(FLOW)
    ann = journey.contact(email="tempfail-99@example.test")
    journey.ctx.retry_for = timedelta(minutes=30)
    sender = _use(journey, plain_peer.url(tls="none"))
    journey.enroll("w", ann)
    journey.advance("2h")
    sender.close()
    row = _row(journey, ann)
    assert row.status == "failed"
    assert row.last_error.startswith(f"gave up after {row.attempts} attempts")
    assert [e.data["bounce"] for e in journey.events("email.bounced")] == ["soft"]
    with journey.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(suppressions)).scalar() == 0


def test_5xx_bounces_and_suppresses_the_address_for_good(
    journey: Harness, plain_peer: SmtpPeer
) -> None:
    journey.apply(FLOW)
    ann = journey.contact(email="reject-me@example.test")
    sender = _use(journey, plain_peer.url(tls="none"))
    journey.enroll("w", ann)
    journey.work()
    row = _row(journey, ann)
    assert (row.status, row.last_error) == ("bounced", "recipient refused (550)")
    (bounce,) = journey.events("email.bounced")
    assert bounce.data == {"outbox_id": row.id, "bounce": "hard"}
    with journey.engine.connect() as conn:
        listed = conn.execute(sa.select(suppressions)).all()
    assert [(s.email, s.reason, s.source) for s in listed] == [
        ("reject-me@example.test", "hard_bounce", "smtp")
    ]
    journey.enroll("w", ann)  # a later journey does not mail the address again
    journey.work()
    sender.close()
    later = journey.outbox(ann)[-1]
    assert (later.status, later.last_error) == ("suppressed", "address suppressed (hard_bounce)")
    assert later.attempts == 0


def test_unreachable_server_keeps_the_message_pending_for_retry(journey: Harness) -> None:
    journey.apply(FLOW)
    ann = journey.contact()
    sender = _use(journey, "smtp://127.0.0.1:9?tls=none&timeout=2")
    journey.enroll("w", ann)
    journey.work()
    sender.close()
    row = _row(journey, ann)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error == "cannot connect to the SMTP server (SMTPConnectError)"
    assert row.next_attempt_at > journey.now


def test_messages_as_received_are_correct_mime(journey: Harness) -> None:
    journey.apply(FLOW)
    ids = [journey.contact(first_name=f"Pat{i}") for i in range(3)]
    with SmtpSink() as sink:
        sender = _use(journey, sink.url)
        journey.enroll("w", *ids)
        journey.work()
        sender.close()
        received = sink.messages
    rows = {r.message_id: r for r in journey.outbox()}
    assert sorted(m["Message-ID"] for m in received) == sorted(rows)
    message = next(m for m in received if m["To"] == "p1@example.test")
    assert message["Subject"] == "Welcome to the program"
    assert message.get_content_type() == "multipart/alternative"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode() for p in message.get_payload()
    }
    assert "<h1>Hello Pat0</h1>" in parts["text/html"]
    assert "Hello Pat0" in parts["text/plain"]


def test_message_bytes_parse_back_exactly() -> None:
    mail = outgoing(
        outbox_id=7,
        message_id="<7.abc@carepath.invalid>",
        sender="Cäre Team <no-reply@example.org>",
        subject="Your visit \u2013 what to bring",
        html="<p>Bring your ID.</p>\n.\nA line = with = signs   \n" + "x" * 200,
        text="Bring your ID.\r\n.\rtrailing spaces   ",
    )
    raw = message_bytes(mail)
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == mail.subject
    assert parsed["From"] == mail.sender
    assert parsed["Message-ID"] == mail.message_id
    assert parsed.get_body(("html",)).get_content() == mail.html.replace("\n", "\r\n")
    assert parsed.get_body(("plain",)).get_content() == "Bring your ID.\r\n.\r\ntrailing spaces   "


def test_a_server_that_stops_answering_mid_envelope_defers_the_message(journey: Harness) -> None:
    """It greets and answers EHLO, then never answers MAIL: the message waits for a retry."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"220 stalling.example ESMTP\r\n")
            conn.recv(1024)  # EHLO
            conn.sendall(b"250 stalling.example\r\n")
            stop.wait(10)  # MAIL is never answered

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    journey.apply(FLOW)
    ann = journey.contact()
    sender = _use(journey, f"smtp://127.0.0.1:{port}?tls=none&timeout=1")
    try:
        journey.enroll("w", ann)
        journey.work()
    finally:
        stop.set()
        sender.close()
        listener.close()
    row = _row(journey, ann)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error == "delivery failed (SMTPReadTimeoutError)"
