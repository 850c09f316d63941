"""Signed, opaque tokens for links in messages (unsubscribe now; tracking later).

A token names one message by its Message-ID (128 random bits, never an
address or a sequential id) and carries an HMAC-SHA256 over it and the
token's purpose, so a token for one purpose or one message cannot be turned
into another. The key comes from the environment (`CAREPATH_SECRET_KEY`),
never from the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from carepath.errors import ConfigurationError

MIN_SECRET = 32


class InvalidTokenError(ValueError):
    """A token that was not made by this key, for this purpose."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkSigner:
    base_url: str  # https://…, no trailing slash
    secret: bytes
    mailto: str | None = None  # where mail clients send one-click unsubscribes by mail

    @classmethod
    def from_settings(
        cls, public_url: str | None, secret: str | None, mailto: str | None
    ) -> LinkSigner | None:
        """None when links are not configured; a clear error when half or badly configured."""
        if not public_url and not secret:
            return None
        if not public_url or not secret:
            raise ConfigurationError(
                "CAREPATH_PUBLIC_URL and CAREPATH_SECRET_KEY go together: set both or neither"
            )
        parts = urlsplit(public_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigurationError("CAREPATH_PUBLIC_URL must be an https:// URL")
        if len(secret) < MIN_SECRET:
            raise ConfigurationError(
                f"CAREPATH_SECRET_KEY must be at least {MIN_SECRET} characters"
            )
        if mailto is not None and ("@" not in mailto or any(c in mailto for c in " <>\r\n")):
            raise ConfigurationError("CAREPATH_UNSUBSCRIBE_MAILTO must be a plain address")
        return cls(public_url.rstrip("/"), secret.encode("utf-8"), mailto)

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self.secret, purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()

    def token(self, purpose: str, message_id: str) -> str:
        payload = message_id.encode("ascii")
        return f"{_b64(payload)}.{_b64(self._mac(purpose, payload)[:16])}"

    def read(self, purpose: str, token: str) -> str:
        """The Message-ID a token names; InvalidTokenError if it was not made here for this."""
        head, _, tail = token.partition(".")
        try:
            payload, mac = _unb64(head), _unb64(tail)
        except (ValueError, TypeError):
            raise InvalidTokenError("malformed token") from None
        if not hmac.compare_digest(mac, self._mac(purpose, payload)[:16]):
            raise InvalidTokenError("token signature does not match")
        return payload.decode("ascii", errors="replace")

    def unsubscribe_headers(self, message_id: str) -> list[tuple[str, str]]:
        """RFC 2369 List-Unsubscribe (https, and mailto when set) and RFC 8058 one-click."""
        token = self.token("unsubscribe", message_id)
        targets = [f"<{self.base_url}/u/{token}>"]
        if self.mailto:
            targets.append(f"<mailto:{self.mailto}?subject={quote('unsubscribe ' + token)}>")
        return [
            ("List-Unsubscribe", ", ".join(targets)),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
