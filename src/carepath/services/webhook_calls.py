"""`webhook` steps: the call's row written with the step, then delivered after commit.

Delivery posts the body as JSON with `X-Carepath-Signature: t=…,v1=…` (the
same scheme as inbound webhooks, HMAC-SHA256 with the secret in the
environment variable the step names), a timeout, and retries with
exponential backoff and jitter for `retry_for`; a 2xx answer is success, a
4xx other than 408 and 429 is final.

SSRF guard: the host is resolved once, every address it resolves to must be
public (no private, loopback, link-local, multicast or reserved network)
unless the operator allows private targets, and the request goes to the
address that was checked, so a DNS answer cannot change between the check
and the connection. Plain http is refused for public targets: the body is PHI.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
from sqlalchemy.engine import Connection, Row

from carepath.db.schema import webhook_calls
from carepath.domain.runs import CallWebhook
from carepath.errors import ConfigurationError
from carepath.services.clock import wall_time
from carepath.services.context import EngineContext
from carepath.services.events import NewEvent, store_events
from carepath.services.hooks import sign, source_secret_value
from carepath.services.leases import lease_due
from carepath.services.outbox import backoff

TIMEOUT_SECONDS = 10.0


class TargetRefusedError(Exception):
    """The URL may not be called (SSRF guard or policy): final, not retried."""


@dataclass(frozen=True)
class WebhookStats:
    sent: int
    failed: int


def webhook_call_row(
    run: Row[Any], effect: CallWebhook, contact: Mapping[str, object], *, now: datetime
) -> dict[str, object]:
    """The row a webhook step writes: the body is fixed now, with only the fields named."""
    fields = {name: _json(contact.get(name)) for name in effect.fields}
    body = {
        "delivery_id": uuid.uuid4().hex,
        "type": "carepath.webhook",
        "workflow": run.workflow,
        "step": effect.step,
        "run_id": run.id,
        "contact": {"id": run.contact_id, **fields},
        "occurred_at": now.isoformat(),
    }
    return {
        "contact_id": run.contact_id,
        "run_id": run.id,
        "workflow": run.workflow,
        "step": effect.step,
        "url": effect.url,
        "secret_env": effect.secret_env,
        "body": body,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _json(value: object) -> object:
    return value.isoformat() if hasattr(value, "isoformat") else value


def deliver_webhooks(ctx: EngineContext, *, now: datetime, limit: int = 100) -> WebhookStats:
    """Call one batch of due webhooks; record each outcome."""
    with ctx.engine.begin() as conn:
        due = _claim(conn, ctx, now=now, limit=limit)
    if not due:
        return WebhookStats(0, 0)
    verify: ssl.SSLContext | bool = True
    if ctx.webhook_cafile:
        verify = ssl.create_default_context(cafile=ctx.webhook_cafile)
    allow_private = ctx.allow_private_webhooks
    outcomes = [(call, _call(call, allow_private=allow_private, verify=verify)) for call in due]
    with ctx.engine.begin() as conn:
        return _record(conn, ctx, outcomes, now=now)


def _claim(conn: Connection, ctx: EngineContext, *, now: datetime, limit: int) -> list[Row[Any]]:
    return lease_due(
        conn,
        webhook_calls,
        now=now,
        wall=wall_time(),
        owner=ctx.worker_id,
        lease=ctx.lease,
        limit=limit,
        returning=webhook_calls,
    )


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    final: bool  # no retry
    reason: str | None = None


def _call(call: Row[Any], *, allow_private: bool, verify: ssl.SSLContext | bool) -> _Outcome:
    try:
        secret = source_secret_value(call.secret_env)
    except ConfigurationError:
        return _Outcome(False, True, f"no secret in {call.secret_env}")
    try:
        address = checked_address(call.url, allow_private=allow_private)
    except TargetRefusedError as exc:
        return _Outcome(False, True, str(exc))
    body = json.dumps(call.body, separators=(",", ":")).encode()
    parts = urlsplit(call.url)
    headers = {
        "content-type": "application/json",
        "user-agent": "carepath-webhook",
        "x-carepath-signature": sign(secret, int(time.time()), body),
        "host": parts.netloc,
    }
    try:
        # To the address that was checked; TLS still verifies the host name.
        with httpx.Client(
            timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False, verify=verify
        ) as client:
            response = client.post(
                _with_address(call.url, address),
                content=body,
                headers=headers,
                extensions={"sni_hostname": parts.hostname or ""},
            )
    except httpx.HTTPError as exc:
        return _Outcome(False, False, f"request failed ({exc.__class__.__name__})")
    code = response.status_code
    if 200 <= code < 300:
        return _Outcome(True, True)
    final = 400 <= code < 500 and code not in (408, 429)
    return _Outcome(False, final, f"the endpoint answered {code}")


def checked_address(url: str, *, allow_private: bool) -> str:
    """The address to connect to for `url`, after the SSRF checks."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise TargetRefusedError("the URL has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise TargetRefusedError("the host name does not resolve") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    private = [a for a in addresses if not ipaddress.ip_address(a).is_global]
    if private and not allow_private:
        raise TargetRefusedError("the host resolves to a private or reserved address")
    if parts.scheme != "https" and not (allow_private and private):
        raise TargetRefusedError("webhooks carry PHI: https only")
    return addresses[0]


def _with_address(url: str, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def _record(
    conn: Connection,
    ctx: EngineContext,
    outcomes: Sequence[tuple[Row[Any], _Outcome]],
    *,
    now: datetime,
) -> WebhookStats:
    events: list[NewEvent] = []
    sent = failed = 0
    for call, outcome in outcomes:
        tries = call.attempts + 1
        values: dict[str, object] = {"attempts": tries, "lease_owner": None, "lease_until": None}
        if outcome.ok:
            values |= {"status": "sent", "sent_at": now, "last_error": None}
            sent += 1
        elif outcome.final or now - call.created_at >= ctx.retry_for:
            values |= {"status": "failed", "last_error": outcome.reason}
            failed += 1
            data = {"webhook_call_id": call.id, "workflow": call.workflow, "step": call.step}
            key = f"webhook:{call.id}:failed"
            events.append(NewEvent("webhook.failed", call.contact_id, now, key, data, "engine"))
        else:
            values |= {"last_error": outcome.reason, "next_attempt_at": now + backoff(tries)}
            failed += 1
        conn.execute(
            webhook_calls.update()
            .where(webhook_calls.c.id == call.id, webhook_calls.c.lease_owner == ctx.worker_id)
            .values(**values)
        )
    store_events(conn, events, now=now)
    return WebhookStats(sent, failed)
