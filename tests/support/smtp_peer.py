"""A real SMTP server process for tests: aiosmtpd, behaving by recipient.

    python -m tests.support.smtp_peer --port P --log FILE [--cert PEM --key PEM]

With a certificate it offers STARTTLS, otherwise it does not. Recipients:
- `reject…@`: 550 at RCPT (a hard bounce);
- `tempfail-N…@`: 451 after DATA for the first N tries of each Message-ID;
- anything else: accepted.
Each accepted message appends its Message-ID and whether it came over TLS to
the log, one JSON object per line, flushed at once (so a test can count
deliveries even when the client is killed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import ssl
import threading
from collections import Counter
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

TEMPFAIL = re.compile(r"^tempfail-(\d+)")


class Handler:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.tries: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.lower().startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        headers = BytesHeaderParser().parsebytes(envelope.original_content or envelope.content)
        message_id = str(headers["Message-ID"])
        with self.lock:
            self.tries[message_id] += 1
            tries = self.tries[message_id]
        wanted = TEMPFAIL.match(envelope.rcpt_tos[0].lower())
        if wanted and tries <= int(wanted.group(1)):
            return "451 4.3.0 try again later"
        line = json.dumps({"message_id": message_id, "tls": session.ssl is not None})
        with self.lock, self.log.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
        return "250 2.0.0 accepted"


class DrainingSMTP(SMTP):
    """Finishes what it received before the client went away, as Postfix does.

    aiosmtpd cancels its session when it reads end-of-file, dropping a complete
    message (final dot included) that is still in its input buffer: a client
    killed right after writing the dot would lose a message a real MTA keeps.
    """

    def eof_received(self) -> bool | None:
        # StreamReaderProtocol's own handling: the session reads to the end first.
        return asyncio.StreamReaderProtocol.eof_received(self)

    def connection_lost(self, error: Exception | None) -> None:
        # A killed client's kernel may reset the connection right after its last
        # bytes: read those to the end too, instead of cancelling the session.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        asyncio.StreamReaderProtocol.connection_lost(self, None)


class DrainingController(Controller):
    def factory(self) -> SMTP:
        return DrainingSMTP(self.handler, **self.SMTP_kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    options: dict[str, Any] = {}
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        options["tls_context"] = context
    controller = DrainingController(
        Handler(args.log), hostname="127.0.0.1", port=args.port, **options
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
