"""The webhook step on both databases, against a real HTTP endpoint on the loopback interface."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from carepath.db.schema import webhook_calls
from carepath.domain.access import SYSTEM
from carepath.errors import InvalidInput
from carepath.services.contact_records import erase_contact
from carepath.services.runner import advance_due_runs
from carepath.services.webhook_calls import TargetRefusedError, checked_address
from tests.integration.harness import Harness
from tests.support.smtp_peers import self_signed_certificate

SECRET = "crm-shared-secret-0123456789"


class Endpoint:
    """Records what it receives; answers with the statuses it is given, then 200."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                endpoint.received.append((dict(self.headers), self.rfile.read(length)))
                self.send_response(endpoint.answers.pop(0) if endpoint.answers else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/hooks/carepath"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{port}/hooks/carepath"  # checked by name
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    monkeypatch.setenv("CRM_HOOK_SECRET", SECRET)
    found = Endpoint()
    yield found
    found.server.shutdown()
    found.server.server_close()


def _flow(url: str) -> str:
    return f"""
workflow: handoff
trigger: manual
steps:
  notify:
    webhook: {{url: "{url}", secret_env: CRM_HOOK_SECRET, fields: [first_name, external_id]}}
    next: done
  done: {{exit: completed}}
"""


def test_the_contact_is_posted_signed_with_only_the_fields_named(
    journey: Harness, endpoint: Endpoint
) -> None:
    journey.ctx.allow_private_webhooks = True
    journey.apply(_flow(endpoint.url))
    ann = journey.contact(first_name="Ann", last_name="Lee", external_id="MRN-1")
    journey.enroll("handoff", ann)
    journey.work()
    ((headers, body),) = endpoint.received
    sent = json.loads(body)
    assert sent["contact"] == {"id": ann, "first_name": "Ann", "external_id": "MRN-1"}
    assert (sent["workflow"], sent["step"]) == ("handoff", "notify")
    stamp, mac = (p.split("=", 1)[1] for p in headers["x-carepath-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert mac == expected.hexdigest()
    assert journey.run(ann).status == "completed"
    with journey.engine.connect() as conn:
        assert conn.execute(sa.select(webhook_calls.c.status)).scalar() == "sent"


def test_an_https_endpoint_is_called_at_the_checked_address_and_its_name_verified(
    journey: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CRM_HOOK_SECRET", SECRET)
    cert, key = self_signed_certificate(tmp_path)
    endpoint = Endpoint(tls=(cert, key))
    try:
        journey.ctx.allow_private_webhooks = True
        journey.ctx.webhook_cafile = str(cert)
        journey.apply(_flow(endpoint.url))
        ann = journey.contact(first_name="Ann", external_id="MRN-1")
        journey.enroll("handoff", ann)
        journey.work()
        ((headers, _),) = endpoint.received
        host = {k.lower(): v for k, v in headers.items()}["host"]
        assert host == endpoint.url.split("/")[2]  # the name, not the address
        with journey.engine.connect() as conn:
            assert conn.execute(sa.select(webhook_calls.c.status)).scalar() == "sent"
    finally:
        endpoint.server.shutdown()
        endpoint.server.server_close()


def test_a_server_error_is_retried_with_backoff_and_a_client_error_is_final(
    journey: Harness, endpoint: Endpoint
) -> None:
    journey.ctx.allow_private_webhooks = True
    journey.apply(_flow(endpoint.url))
    ann, bob = journey.contact(first_name="Ann"), journey.contact(first_name="Bob")
    endpoint.answers = [503]
    journey.enroll("handoff", ann)
    journey.work()
    with journey.engine.connect() as conn:
        call = conn.execute(sa.select(webhook_calls)).one()
    assert (call.status, call.last_error) == ("pending", "the endpoint answered 503")
    journey.advance("10m")
    assert len(endpoint.received) == 2
    endpoint.answers = [422]
    journey.enroll("handoff", bob)
    journey.work()
    with journey.engine.connect() as conn:
        rows = conn.execute(sa.select(webhook_calls).order_by(webhook_calls.c.id)).all()
    assert [(r.status, r.attempts) for r in rows] == [("sent", 2), ("failed", 1)]
    (failed,) = journey.events("webhook.failed")
    assert failed.contact_id == bob


def test_a_call_not_yet_made_for_an_erased_contact_is_never_made(
    journey: Harness, endpoint: Endpoint
) -> None:
    journey.ctx.allow_private_webhooks = True
    journey.apply(_flow(endpoint.url))
    ann = journey.contact(first_name="Ann", external_id="MRN-1")
    journey.enroll("handoff", ann)
    advance_due_runs(journey.ctx, now=journey.now)  # the step runs; nothing delivered yet
    with journey.engine.begin() as conn:
        erase_contact(conn, ann, now=journey.now, who=SYSTEM)
    journey.work()
    assert endpoint.received == []
    with journey.engine.connect() as conn:
        call = conn.execute(sa.select(webhook_calls)).one()
    assert (call.status, call.last_error) == ("failed", "contact erased")
    assert "Ann" not in json.dumps(call.body)


def test_private_addresses_are_refused_unless_allowed(journey: Harness, endpoint: Endpoint) -> None:
    journey.apply(_flow(endpoint.url))
    ann = journey.contact(first_name="Ann")
    journey.enroll("handoff", ann)
    journey.work()
    assert endpoint.received == []
    with journey.engine.connect() as conn:
        call = conn.execute(sa.select(webhook_calls)).one()
    assert (call.status, call.last_error) == (
        "failed", "the host resolves to a private or reserved address",
    )  # fmt: skip
    assert len(journey.events("webhook.failed")) == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "private or reserved"),
        ("https://10.0.0.8/x", "private or reserved"),
        ("https://[::1]/x", "private or reserved"),
        ("http://localhost:9/x", "private or reserved"),
    ],
)
def test_the_ssrf_guard_names_why(url: str, reason: str) -> None:
    with pytest.raises(TargetRefusedError, match=reason):
        checked_address(url, allow_private=False)


def test_webhook_steps_are_validated(journey: Harness) -> None:
    bad = _flow("ftp://crm.example/x").replace("external_id]", "shoe_size]")
    with pytest.raises(InvalidInput) as caught:
        journey.apply(bad)
    assert "an http(s) URL" in str(caught.value)
    assert "unknown contact field 'shoe_size'" in str(caught.value)
