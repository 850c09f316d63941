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
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib

from carepath.channels.dkim_signing import DkimSigner
from carepath.channels.email import (
    Confirm,
    DeliveryOutcome,
    DeliveryResult,
    OutgoingEmail,
    message_bytes,
)
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
    """Sends batches over up to `pool` reused connections at once, each message in two phases.

    Phase one sends a message's envelope and content up to, not including,
    the final "." that ends DATA; then `confirm` records it as being sent;
    phase two sends the dot and reads the answer. A crash before the record
    leaves an unfinished transaction, which servers discard, so the message
    is sent again; a crash after it leaves the message recorded, so it is not.
    The one window in which a message can be lost is between the commit and
    writing the dot. Records are grouped: whatever the connections have
    staged while the previous record was being written goes in the next one.
    """

    def __init__(self, url: str, *, dkim: DkimSigner | None = None) -> None:
        self.target = parse_smtp_url(url)
        self.dkim = dkim
        self._loop = asyncio.new_event_loop()
        self._idle: list[aiosmtplib.SMTP] = []
        self._refusal: str | None = None  # why the TLS policy refused the server, this batch
        self._tls: ssl.SSLContext | None = None  # loading the CA bundle takes tens of ms

    def send(self, messages: Sequence[OutgoingEmail], confirm: Confirm) -> list[DeliveryResult]:
        if not messages:
            return []
        results: dict[int, DeliveryResult] = {}
        self._refusal = None  # asked afresh each batch: the server may have been fixed
        self._loop.run_until_complete(self._send_all(messages, confirm, results))
        return [results[m.outbox_id] for m in messages]

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

    async def _send_all(
        self,
        messages: Sequence[OutgoingEmail],
        confirm: Confirm,
        results: dict[int, DeliveryResult],
    ) -> None:
        queue: asyncio.Queue[OutgoingEmail] = asyncio.Queue()
        for message in messages:
            queue.put_nowait(message)
        records = _GroupedRecords(confirm)
        lanes = min(self.target.pool, len(messages))
        try:
            outcomes = await asyncio.gather(
                *(self._lane(queue, records, results) for _ in range(lanes)),
                return_exceptions=True,
            )
        finally:
            await records.close()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _lane(
        self,
        queue: asyncio.Queue[OutgoingEmail],
        records: _GroupedRecords,
        results: dict[int, DeliveryResult],
    ) -> None:
        """One connection working through the queue; a broken one is replaced."""
        client: aiosmtplib.SMTP | None = None
        try:
            while not queue.empty():
                mail = queue.get_nowait()
                if client is None:
                    client = await self._open(mail, results)
                    if client is None:
                        continue
                client = await self._deliver(client, mail, records, results)
        finally:
            if client is not None:
                self._idle.append(client)

    async def _open(
        self, mail: OutgoingEmail, results: dict[int, DeliveryResult]
    ) -> aiosmtplib.SMTP | None:
        """A usable connection, or None with the message's result set (held or deferred)."""
        if self._refusal is not None:  # the policy refused this server once: not again per message
            results[mail.outbox_id] = _held(mail, self._refusal)
            return None
        try:
            return await self._connection()
        except _PolicyRefusalError as exc:
            self._refusal = str(exc)
            results[mail.outbox_id] = _held(mail, self._refusal)
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            reason = f"cannot connect to the SMTP server ({exc.__class__.__name__})"
            results[mail.outbox_id] = _deferred(mail, reason)
        return None

    async def _deliver(
        self,
        client: aiosmtplib.SMTP,
        mail: OutgoingEmail,
        records: _GroupedRecords,
        results: dict[int, DeliveryResult],
    ) -> aiosmtplib.SMTP | None:
        """One message in two phases; returns the connection if it can be used again."""
        try:
            content = message_bytes(mail)
            if self.dkim is not None:
                content = self.dkim.sign(content)
            content = _dot_stuffed(content)
            sender, recipient = _path(mail.sender_address, "FROM"), _path(mail.recipient, "TO")
        except ValueError as exc:  # a header that cannot be sent: nothing goes on the wire
            results[mail.outbox_id] = DeliveryResult(
                mail.outbox_id, DeliveryOutcome.INVALID, f"not sent: {exc}"
            )
            return client
        try:
            # Commands written out: aiosmtplib's mail() and rcpt() parse each address again.
            code, _ = await client.execute_command(b"MAIL", sender)
            if code >= 500:  # about our sender, not this recipient: an operator must look
                reason = f"held: the server refused the sender ({code})"
                results[mail.outbox_id] = _held(mail, reason)
                _drop(client)
                return None
            if code != 250:
                return await self._refused(client, mail, code, "sender refused", results)
            code, _ = await client.execute_command(b"RCPT", recipient)
            if code not in (250, 251):
                return await self._refused(client, mail, code, "recipient refused", results)
            code, _ = await client.execute_command(b"DATA")
            if code != 354:
                return await self._refused(
                    client, mail, code, "server refused the message", results
                )
            assert client.protocol is not None
            client.protocol.write(content)
        except (aiosmtplib.SMTPException, OSError) as exc:
            results[mail.outbox_id] = _deferred(mail, f"delivery failed ({exc.__class__.__name__})")
            _drop(client)
            return None
        try:
            await records.record(mail.outbox_id, client)  # also writes the final dot
        except BaseException:
            _drop(client)  # the server discards what it did not see end
            raise
        try:
            if client.protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost")
            code = (await client.protocol.read_response(timeout=self.target.timeout)).code
        except (aiosmtplib.SMTPException, OSError) as exc:
            results[mail.outbox_id] = _deferred(mail, f"delivery failed ({exc.__class__.__name__})")
            _drop(client)
            return None
        if code == 250:
            results[mail.outbox_id] = DeliveryResult(mail.outbox_id, DeliveryOutcome.SENT)
            return client
        results[mail.outbox_id] = _by_code(mail, code, "server refused the message")
        if code == 421:  # the server is closing the connection
            _drop(client)
            return None
        return client

    async def _refused(
        self,
        client: aiosmtplib.SMTP,
        mail: OutgoingEmail,
        code: int,
        what: str,
        results: dict[int, DeliveryResult],
    ) -> aiosmtplib.SMTP | None:
        """A refused transaction: record why, RSET, and keep the connection if it answers."""
        results[mail.outbox_id] = _by_code(mail, code, what)
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            _drop(client)
            return None
        return client

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
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=t.cafile)
        context = self._tls
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
            await client.ehlo()
            if not t.implicit_tls and t.tls is not TlsPolicy.NONE:
                if client.supports_extension("starttls"):
                    await client.starttls(tls_context=context)
                    await client.ehlo()  # RFC 3207: what the server said before TLS is void
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


class _GroupedRecords:
    """Records messages as they are staged, grouping those that wait together.

    While one record is being written, the other connections go on with their
    envelopes and contents; whatever they stage meanwhile goes in the next
    record. When a record is written, its connections' final dots go out
    before the loop runs anything else, which keeps the window in which a
    crash loses a message (recorded, dot not yet written) as short as the
    loop allows.
    """

    def __init__(self, confirm: Confirm) -> None:
        self.confirm = confirm
        self.waiting: list[tuple[int, aiosmtplib.SMTP, asyncio.Future[None]]] = []
        self.wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def record(self, outbox_id: int, client: aiosmtplib.SMTP) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((outbox_id, client, future))
        self.wake.set()
        await future

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            group, self.waiting = self.waiting, []
            if not group:
                continue
            try:
                await self.confirm.record([outbox_id for outbox_id, _, _ in group])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting lane
                for _, _, future in group:
                    future.set_exception(exc)
                continue
            # The dots go out as soon as the record is written, before the loop runs
            # anything else: a crash in between is what would lose these messages.
            for _, client, _ in group:
                _write_final_dot(client)
            for _, _, future in group:
                future.set_result(None)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.confirm.aclose()


def _write_final_dot(client: aiosmtplib.SMTP) -> None:
    """End DATA; the lane then reads the server's answer with `read_response`."""
    protocol = client.protocol
    if protocol is None:
        return  # the connection is gone: the lane reports it, the message is retried
    # aiosmtplib drops replies that arrive while it expects none; it expects one now.
    protocol._response_pending = True
    protocol.write(b".\r\n")


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


def _path(address: str, keyword: str) -> bytes:
    """`FROM:<address>` for MAIL, `TO:<address>` for RCPT; the address checked first."""
    if not address.isascii() or "@" not in address or any(c in address for c in " <>\r\n"):
        raise ValueError(f"the {keyword} address is not a plain address")
    return f"{keyword}:<{address}>".encode("ascii")


_LINE_STARTING_WITH_DOT = re.compile(rb"(?m)^\.")


def _dot_stuffed(message: bytes) -> bytes:
    """RFC 5321 4.5.2: a line that starts with "." gets another one."""
    return _LINE_STARTING_WITH_DOT.sub(b"..", message)


def _by_code(mail: OutgoingEmail, code: int, what: str) -> DeliveryResult:
    """5xx is permanent (a hard bounce); anything else is tried again later."""
    outcome = DeliveryOutcome.BOUNCED if code >= 500 else DeliveryOutcome.DEFERRED
    return DeliveryResult(mail.outbox_id, outcome, f"{what} ({code})")


def _deferred(mail: OutgoingEmail, reason: str) -> DeliveryResult:
    return DeliveryResult(mail.outbox_id, DeliveryOutcome.DEFERRED, reason)


def _held(mail: OutgoingEmail, reason: str) -> DeliveryResult:
    return DeliveryResult(mail.outbox_id, DeliveryOutcome.HELD, reason)
