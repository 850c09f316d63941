"""Email messages: what the outbox hands a sender, and the RFC 5322 bytes that go on the wire.

Bodies are quoted-printable UTF-8, non-ASCII headers RFC 2047 encoded, lines
end in CRLF, and no header value may contain a line break (that would let
content inject headers). The default `EmailMessage` policy parses every header
it is given and builds about a thousand messages a second, a bottleneck for a
sender meant for millions, so the bytes are written directly; tests parse them
back with the standard library to prove them correct.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True)
class OutgoingEmail:
    outbox_id: int
    message_id: str
    sender: str  # "Name <address>" as configured
    recipient: str
    subject: str
    html: str
    text: str
    created_at: datetime
    headers: tuple[tuple[str, str], ...] = ()  # more header fields (List-Unsubscribe…)

    @property
    def sender_address(self) -> str:
        """The envelope sender (MAIL FROM): the address part of `sender`."""
        return _address_part(self.sender)


class DeliveryOutcome(StrEnum):
    SENT = "sent"  # the server accepted the message
    DEFERRED = "deferred"  # 4xx or a connection problem: try again later
    BOUNCED = "bounced"  # 5xx: the address does not take mail (hard bounce)
    HELD = "held"  # the server cannot be used safely (TLS policy, certificate, credentials)
    INVALID = "invalid"  # the message itself cannot be sent (a bad header or address)


@dataclass(frozen=True)
class DeliveryResult:
    outbox_id: int
    outcome: DeliveryOutcome
    error: str | None = None  # a reason with codes only: never an address or content


class Confirm(Protocol):
    """Records messages durably as being sent (see services.outbox).

    A sender awaits `record` with the messages whose content the server holds,
    just before the final "." that makes the server take them; it is awaited in
    the sender's event loop, so other connections go on meanwhile. `aclose`
    ends the batch.
    """

    async def record(self, outbox_ids: Sequence[int]) -> None: ...

    async def aclose(self) -> None: ...


class EmailSender(Protocol):
    def send(self, messages: Sequence[OutgoingEmail], confirm: Confirm) -> list[DeliveryResult]: ...

    def close(self) -> None: ...


class HeaderInjectionError(ValueError):
    """A header value contains a line break or another control character."""


def _checked(name: str, value: str) -> str:
    # Besides CR and LF, parsers split lines on VT, FF, FS, GS, RS, NEL, U+2028 and U+2029.
    if any((ch < " " and ch != "\t") or ch in "\x7f\x85\u2028\u2029" for ch in value):
        raise HeaderInjectionError(f"the {name} header contains a line break or control character")
    return value


_PLAIN_ADDRESS = re.compile(r"[!#-'*+\-/-9=?A-Z^-~.]+@[A-Za-z0-9.\-\[\]:]+")


@functools.lru_cache(maxsize=64)
def _address_part(value: str) -> str:
    return parseaddr(value)[1]


def _address(name: str, value: str) -> str:
    """An address header's value; a display name is RFC 2047 encoded when not ASCII."""
    if _PLAIN_ADDRESS.fullmatch(value):  # the usual case, without the cost of parsing
        return value
    return _named_address(name, value)


@functools.lru_cache(maxsize=64)
def _named_address(name: str, value: str) -> str:
    display, address = parseaddr(_checked(name, value))
    if "@" not in address or not address.isascii():
        raise ValueError(f"the {name} header has no valid address")
    return formataddr((display, address), charset="utf-8") if display else address


MAX_SUBJECT = 900  # RFC 5322 allows 998 characters on a line, the header name included


@functools.lru_cache(maxsize=1024)  # subjects come from templates: few, and repeated
def _subject(subject: str) -> str:
    subject = _checked("Subject", subject).strip()
    if subject.isascii() and "=?" not in subject:  # "=?" would read as an encoded-word
        if len(subject) > MAX_SUBJECT:
            raise ValueError(f"the subject is longer than {MAX_SUBJECT} characters")
        return subject
    folded = Header(subject, "utf-8", header_name="Subject")
    return folded.encode(linesep="\r\n")  # encoded-words, folded under 78 characters


def _folded(name: str, value: str) -> str:
    """An ASCII structured value folded after its commas to keep lines under 78 characters."""
    if not value.isascii():
        raise ValueError(f"the {name} header must be ASCII")
    _checked(name, value)
    pieces = value.split(", ")
    lines = [pieces[0]]
    width = len(name) + 2 + len(pieces[0])
    for piece in pieces[1:]:
        if width + 2 + len(piece) > 78:
            lines[-1] += ","
            lines.append(" " + piece)
            width = 1 + len(piece)
        else:
            lines[-1] += ", " + piece
            width += 2 + len(piece)
    return "\r\n".join(lines)


def _quoted_printable(body: str) -> bytes:
    """UTF-8, quoted-printable, CRLF line ends, no line over 76 characters."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(lines, istext=True).replace(b"\n", b"\r\n")


def message_bytes(mail: OutgoingEmail) -> bytes:
    """multipart/alternative (text, then HTML), CRLF line ends, ready for DATA.

    Written directly rather than through `email.mime`: that machinery folds
    every header through `email.header` and compiles a regular expression per
    message, about 0.6 ms a message. The boundary starts with "=_", which a
    quoted-printable body can never contain.
    """
    boundary = f"=_carepath_{mail.outbox_id}_{secrets.token_hex(8)}"
    head = (
        f"Message-ID: {_checked('Message-ID', mail.message_id)}\r\n"
        f"Date: {format_datetime(mail.created_at)}\r\n"
        f"From: {_address('From', mail.sender)}\r\n"
        f"To: {_address('To', mail.recipient)}\r\n"
        f"Subject: {_subject(mail.subject)}\r\n"
        + "".join(f"{name}: {_folded(name, value)}\r\n" for name, value in mail.headers)
        + "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
        "\r\n"
    )
    parts = [head.encode("ascii")]
    for subtype, body in (("plain", mail.text), ("html", mail.html)):
        parts.append(
            f"--{boundary}\r\n"
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
        )
        parts.append(_quoted_printable(body))
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


@dataclass
class MemorySender:
    """In-memory fake for tests: records every message it is given and accepts it."""

    sent: list[OutgoingEmail]

    def close(self) -> None:
        """Nothing to release."""

    def send(self, messages: Sequence[OutgoingEmail], confirm: Confirm) -> list[DeliveryResult]:
        async def record_all() -> None:
            try:
                await confirm.record([m.outbox_id for m in messages])
            finally:
                await confirm.aclose()

        asyncio.run(record_all())
        self.sent.extend(messages)
        return [DeliveryResult(m.outbox_id, DeliveryOutcome.SENT) for m in messages]
