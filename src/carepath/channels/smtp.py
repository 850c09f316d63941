"""SMTP delivery with aiosmtplib: pooled connections, a TLS policy, outcomes per message.

`CAREPATH_SMTP_URL` names the server: `smtp://host:port` (STARTTLS) or
`smtps://host:port` (TLS from the first byte), with `user:password@` for
AUTH and query parameters:

- `tls=required` (default): STARTTLS or nothing. A server that does not offer
  it gets no message: PHI never crosses the network in clear text.
- `tls=opportunistic`: STARTTLS when offered, clear text otherwise.
- `tls=none`: never TLS (a sink on the loopback interface).
- `cafile=PATH`: trust this CA bundle instead of the system's.
- `pool=N` (default 8): connections kept open and used at the same time.
- `timeout=SECONDS` (default 30).

The sender runs its own event loop so that the synchronous worker can call it;
connections stay open between batches and are checked before reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib

from carepath.channels.email import DeliveryOutcome, DeliveryResult, OutgoingEmail, message_bytes
from carepath.errors import ConfigurationError


class TlsPolicy(StrEnum):
    REQUIRED = "required"
    OPPORTUNISTIC = "opportunistic"
    NONE = "none"


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    tls: TlsPolicy
    username: str | None
    password: str | None
    cafile: str | None
    pool: int
    timeout: float


_KNOWN_PARAMETERS = frozenset({"tls", "cafile", "pool", "timeout"})


def parse_smtp_url(url: str) -> SmtpTarget:
    """The target an SMTP URL names; errors name the part that is wrong, never the password."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigurationError("CAREPATH_SMTP_URL must look like smtp://host:port or smtps://…")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _KNOWN_PARAMETERS)
    if unknown:
        raise ConfigurationError(f"CAREPATH_SMTP_URL: unknown parameter {', '.join(unknown)}")
    try:
        tls = TlsPolicy(query.get("tls", TlsPolicy.REQUIRED.value))
    except ValueError:
        raise ConfigurationError(
            "CAREPATH_SMTP_URL: tls must be required, opportunistic or none"
        ) from None
    implicit = parts.scheme == "smtps"
    if implicit and tls is not TlsPolicy.REQUIRED:
        raise ConfigurationError("CAREPATH_SMTP_URL: smtps:// always uses TLS; drop tls=")
    try:
        port = parts.port or (465 if implicit else 25)
        pool = int(query.get("pool", "8"))
        timeout = float(query.get("timeout", "30"))
    except ValueError:
        raise ConfigurationError(
            "CAREPATH_SMTP_URL: port, pool and timeout must be numbers"
        ) from None
    if not 1 <= pool <= 100:
        raise ConfigurationError("CAREPATH_SMTP_URL: pool must be between 1 and 100")
    if timeout <= 0:
        raise ConfigurationError("CAREPATH_SMTP_URL: timeout must be positive")
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        implicit_tls=implicit,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        cafile=query.get("cafile") or None,
        pool=pool,
        timeout=timeout,
    )


class _PolicyRefusalError(Exception):
    """The server cannot be used under the TLS policy: hold the messages, send nothing."""


class PooledSmtpSender:
    """Sends batches over up to `pool` reused connections at once."""

    def __init__(self, url: str) -> None:
        self.target = parse_smtp_url(url)
        self._loop = asyncio.new_event_loop()
        self._idle: list[aiosmtplib.SMTP] = []

    def send(self, messages: Sequence[OutgoingEmail]) -> list[DeliveryResult]:
        if not messages:
            return []
        return self._loop.run_until_complete(self._send_all(messages))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.run_until_complete(self._quit_all())
        self._loop.close()

    # ------------------------------------------------------------ internals

    async def _quit_all(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            transport = client.transport
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
            # QUIT closes TLS gracefully, which needs the loop to keep running;
            # the loop is about to close, so drop the socket now.
            _abort(transport)
        await asyncio.sleep(0)  # let the transports report their connections lost

    async def _send_all(self, messages: Sequence[OutgoingEmail]) -> list[DeliveryResult]:
        queue: asyncio.Queue[OutgoingEmail] = asyncio.Queue()
        for message in messages:
            queue.put_nowait(message)
        results: dict[int, DeliveryResult] = {}
        lanes = min(self.target.pool, len(messages))
        await asyncio.gather(*(self._lane(queue, results) for _ in range(lanes)))
        return [results[m.outbox_id] for m in messages]

    async def _lane(
        self, queue: asyncio.Queue[OutgoingEmail], results: dict[int, DeliveryResult]
    ) -> None:
        """One connection working through the queue; a broken one is replaced."""
        client: aiosmtplib.SMTP | None = None
        try:
            while not queue.empty():
                mail = queue.get_nowait()
                if client is None:
                    try:
                        client = await self._connection()
                    except _PolicyRefusalError as exc:
                        results[mail.outbox_id] = _held(mail, str(exc))
                        continue
                    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                        reason = f"cannot connect to the SMTP server ({exc.__class__.__name__})"
                        results[mail.outbox_id] = _deferred(mail, reason)
                        continue
                result, broken = await _deliver(client, mail)
                results[mail.outbox_id] = result
                if broken:
                    _drop(client)
                    client = None
        finally:
            if client is not None:
                self._idle.append(client)

    async def _connection(self) -> aiosmtplib.SMTP:
        """An idle connection that still answers, or a new one that satisfies the policy."""
        while self._idle:
            client = self._idle.pop()
            try:
                code, _ = await client.noop()
            except (aiosmtplib.SMTPException, OSError):
                code = 0
            if code == 250:
                return client
            _drop(client)
        return await self._connect()

    async def _connect(self) -> aiosmtplib.SMTP:
        t = self.target
        context = ssl.create_default_context(cafile=t.cafile)
        client = aiosmtplib.SMTP(
            hostname=t.host,
            port=t.port,
            use_tls=t.implicit_tls,
            start_tls=False,
            tls_context=context,
            timeout=t.timeout,
        )
        await client.connect()
        try:
            if not t.implicit_tls and t.tls is not TlsPolicy.NONE:
                await client.ehlo()
                if client.supports_extension("starttls"):
                    await client.starttls(tls_context=context)
                elif t.tls is TlsPolicy.REQUIRED:
                    raise _PolicyRefusalError(
                        "held: the server offers no STARTTLS and tls=required"
                    )
            if t.username:
                await client.login(t.username, t.password or "")
        except (_PolicyRefusalError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            _drop(client)
            if isinstance(exc, ssl.SSLError | aiosmtplib.SMTPAuthenticationError):
                # A certificate or credentials problem needs an operator, not a retry.
                raise _PolicyRefusalError(f"held: {_tls_or_auth(exc)}") from None
            raise
        return client


def _abort(transport: asyncio.BaseTransport | None) -> None:
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    elif transport is not None:
        transport.close()


def _drop(client: aiosmtplib.SMTP) -> None:
    """Close a connection at once, TLS or not (no graceful shutdown to wait for)."""
    _abort(client.transport)
    client.close()


def _tls_or_auth(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return f"the server refused the credentials ({exc.code})"
    return f"TLS with the server failed ({exc.__class__.__name__})"


async def _deliver(client: aiosmtplib.SMTP, mail: OutgoingEmail) -> tuple[DeliveryResult, bool]:
    """Send one message: its result, and whether the connection should be dropped."""
    try:
        await client.sendmail(mail.sender_address, [mail.recipient], message_bytes(mail))
    except aiosmtplib.SMTPRecipientsRefused as exc:
        code = min(r.code for r in exc.recipients)
        return _by_code(mail, code, "recipient refused"), False
    except aiosmtplib.SMTPServerDisconnected:
        return _deferred(mail, "the SMTP server closed the connection"), True
    except aiosmtplib.SMTPResponseException as exc:
        return _by_code(mail, exc.code, "server refused the message"), exc.code == 421
    except (aiosmtplib.SMTPException, OSError) as exc:
        return _deferred(mail, f"delivery failed ({exc.__class__.__name__})"), True
    return DeliveryResult(mail.outbox_id, DeliveryOutcome.SENT), False


def _by_code(mail: OutgoingEmail, code: int, what: str) -> DeliveryResult:
    """5xx is permanent (a hard bounce); anything else is tried again later."""
    outcome = DeliveryOutcome.BOUNCED if code >= 500 else DeliveryOutcome.DEFERRED
    return DeliveryResult(mail.outbox_id, outcome, f"{what} ({code})")


def _deferred(mail: OutgoingEmail, reason: str) -> DeliveryResult:
    return DeliveryResult(mail.outbox_id, DeliveryOutcome.DEFERRED, reason)


def _held(mail: OutgoingEmail, reason: str) -> DeliveryResult:
    return DeliveryResult(mail.outbox_id, DeliveryOutcome.HELD, reason)
