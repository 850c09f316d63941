"""DKIM signatures (RFC 6376) over outgoing messages, with dkimpy.

The signature covers the headers a receiver judges the message by, the two
unsubscribe headers included (RFC 8058 asks for that, so that one-click
unsubscribe cannot be forged onto a message). The private key is read from a
file named in the environment, never stored in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dkim

from carepath.errors import ConfigurationError

SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
    b"list-unsubscribe", b"list-unsubscribe-post",
)  # fmt: skip


@dataclass(frozen=True)
class DkimSigner:
    domain: str
    selector: str
    private_key: bytes

    @classmethod
    def from_settings(
        cls, domain: str | None, selector: str | None, key_file: str | None
    ) -> DkimSigner | None:
        """None when DKIM is not configured; a clear error when half or badly configured."""
        given = [v for v in (domain, selector, key_file) if v]
        if not given:
            return None
        if len(given) < 3 or domain is None or selector is None or key_file is None:
            raise ConfigurationError(
                "CAREPATH_DKIM_DOMAIN, CAREPATH_DKIM_SELECTOR and CAREPATH_DKIM_KEY_FILE "
                "go together: set all three or none"
            )
        path = Path(key_file)
        if not path.is_file():
            raise ConfigurationError("CAREPATH_DKIM_KEY_FILE: no such file")
        signer = cls(domain, selector, path.read_bytes())
        try:  # a key dkimpy cannot use is found now, not at the first send
            signer.sign(b"From: a@example.org\r\nSubject: x\r\n\r\nx\r\n")
        except dkim.DKIMException:
            raise ConfigurationError(
                "CAREPATH_DKIM_KEY_FILE: not a PEM private key dkimpy can sign with"
            ) from None
        return signer

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front (relaxed/relaxed)."""
        present = {
            line.split(b":", 1)[0].strip().lower()
            for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if line and not line[:1].isspace()
        }
        signature = dkim.sign(
            message,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h for h in SIGNED_HEADERS if h in present],
        )
        return bytes(signature) + message
