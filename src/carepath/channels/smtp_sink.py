"""A local SMTP sink (aiosmtpd) that counts what it receives; used by the demo and tests."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

_SERVER_LOG = logging.getLogger("mail.log")


@dataclass
class _Collector:
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        message = message_from_bytes(envelope.original_content or envelope.content)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"


class SmtpSink:
    """Runs on a loopback port in a background thread: `with SmtpSink() as sink: sink.url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._collector = _Collector()
        self._controller = Controller(self._collector, hostname=host, port=port or _free_port(host))

    @property
    def url(self) -> str:
        return f"smtp://{self._controller.hostname}:{self._controller.port}?tls=none"

    @property
    def messages(self) -> list[Message]:
        with self._collector.lock:
            return list(self._collector.messages)

    def __enter__(self) -> SmtpSink:
        # aiosmtpd logs every envelope's addresses at INFO and DEBUG: PHI kept out of logs.
        self._log_level = _SERVER_LOG.level
        _SERVER_LOG.setLevel(max(self._log_level, logging.WARNING))
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
        _SERVER_LOG.setLevel(self._log_level)


def _free_port(host: str) -> int:
    import socket  # noqa: PLC0415 - only needed when no port is given

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
