"""Email messages and a minimal SMTP sender (connection reuse, no pooling yet)."""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol
from urllib.parse import urlsplit

from carepath.errors import ConfigurationError


@dataclass(frozen=True)
class OutgoingEmail:
    outbox_id: int
    message_id: str
    sender: str
    recipient: str
    subject: str
    html: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class DeliveryResult:
    outbox_id: int
    ok: bool
    permanent: bool = False
    error: str | None = None


class EmailSender(Protocol):
    def send(self, messages: Sequence[OutgoingEmail]) -> list[DeliveryResult]: ...

    def close(self) -> None: ...


def build_message(mail: OutgoingEmail) -> EmailMessage:
    """multipart/alternative with a text and an HTML part; CR/LF in headers refused."""
    message = EmailMessage()
    message["Message-ID"] = mail.message_id
    message["From"] = mail.sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(mail.created_at)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    ssl: bool
    username: str | None
    password: str | None
    starttls: bool


def parse_smtp_url(url: str) -> SmtpTarget:
    """`smtp://host:port` or `smtps://user:pass@host:port`; `?tls=none` for a local sink."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigurationError("CAREPATH_SMTP_URL must look like smtp://host:port")
    tls = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("tls", "required")
    if tls not in ("required", "none"):
        raise ConfigurationError("tls must be required or none for this sender")
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if parts.scheme == "smtps" else 25),
        ssl=parts.scheme == "smtps",
        username=parts.username,
        password=parts.password,
        starttls=parts.scheme == "smtp" and tls == "required",
    )


class SmtpSender:
    """Sends batches over one reused SMTP connection; 4xx is retried later, 5xx is permanent."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.target = parse_smtp_url(url)
        self.timeout = timeout
        self._client: smtplib.SMTP | None = None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()

    def _connection(self) -> smtplib.SMTP:
        """The open connection if the server still answers, else a new one."""
        if self._client is not None:
            try:
                if self._client.noop()[0] == 250:
                    return self._client
            except (OSError, smtplib.SMTPException):
                pass
            self.close()
        self._client = self._connect()
        return self._client

    def _connect(self) -> smtplib.SMTP:
        t = self.target
        client: smtplib.SMTP
        if t.ssl:
            client = smtplib.SMTP_SSL(t.host, t.port, timeout=self.timeout)
        else:
            client = smtplib.SMTP(t.host, t.port, timeout=self.timeout)
            if t.starttls:
                client.ehlo()
                if not client.has_extn("starttls"):
                    client.quit()
                    raise smtplib.SMTPNotSupportedError("server offers no STARTTLS; message held")
                client.starttls()
        if t.username:
            client.login(t.username, t.password or "")
        return client

    def send(self, messages: Sequence[OutgoingEmail]) -> list[DeliveryResult]:
        if not messages:
            return []
        try:
            client = self._connection()
        except (OSError, smtplib.SMTPException) as exc:
            reason = f"cannot connect to SMTP server: {exc.__class__.__name__}"
            return [DeliveryResult(m.outbox_id, ok=False, error=reason) for m in messages]
        results = [self._send_one(client, mail) for mail in messages]
        if any(r.error and r.error.startswith("delivery failed") for r in results):
            self.close()  # the connection broke: start afresh next time
        return results

    def _send_one(self, client: smtplib.SMTP, mail: OutgoingEmail) -> DeliveryResult:
        try:
            client.send_message(build_message(mail))
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            return DeliveryResult(
                mail.outbox_id, False, permanent=code >= 500, error=f"recipient refused ({code})"
            )
        except smtplib.SMTPResponseException as exc:
            return DeliveryResult(
                mail.outbox_id,
                False,
                permanent=exc.smtp_code >= 500,
                error=f"server said {exc.smtp_code}",
            )
        except (OSError, smtplib.SMTPException) as exc:
            return DeliveryResult(
                mail.outbox_id, False, error=f"delivery failed: {exc.__class__.__name__}"
            )
        return DeliveryResult(mail.outbox_id, True)


@dataclass
class MemorySender:
    """In-memory fake for tests: records every message it is given."""

    sent: list[OutgoingEmail]

    def close(self) -> None:
        """Nothing to release."""

    def send(self, messages: Sequence[OutgoingEmail]) -> list[DeliveryResult]:
        self.sent.extend(messages)
        return [DeliveryResult(m.outbox_id, True) for m in messages]
