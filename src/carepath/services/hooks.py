"""Inbound webhooks: a signed payload from a known source becomes events.

The sender signs `{timestamp}.{body}` with HMAC-SHA256 and the source's
shared secret, and sends `X-Carepath-Signature: t=<unix seconds>,v1=<hex>`.
A signature older or newer than five minutes is refused, and so is one seen
before (receipts are kept for that long), so a captured request cannot be
replayed. The secret comes from the environment variable the `source`
document names.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from carepath.db.dialect import insert_ignoring_conflicts
from carepath.db.schema import hook_receipts
from carepath.errors import CarepathError, ConfigurationError

TOLERANCE = timedelta(minutes=5)
MIN_SECRET_LENGTH = 16
SIGNATURE_HEADER = "x-carepath-signature"


class SignatureError(CarepathError):
    """The request is not signed by the source (missing, malformed, wrong, stale, replayed)."""

    code = "bad_signature"


def source_secret_value(name: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The shared secret in environment variable `name`; ConfigurationError if missing or short."""
    secret = (os.environ if environ is None else environ).get(name, "")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"{name} must hold a secret of at least {MIN_SECRET_LENGTH} characters"
        )
    return secret.encode("utf-8")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The header value a sender puts on `body` (also what tests and clients use)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def check_signature(secret: bytes, header: str | None, body: bytes, *, wall: datetime) -> str:
    """The hex digest if `header` signs `body` recently enough; SignatureError if not."""
    if not header:
        raise SignatureError("the request is not signed")
    parts = dict(p.strip().partition("=")[::2] for p in header.split(","))
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or len(given) != 64:
        raise SignatureError("the signature header is malformed")
    try:
        signed_at = datetime.fromtimestamp(int(timestamp), tz=wall.tzinfo)
    except (OverflowError, OSError, ValueError):  # a number no clock reaches
        raise SignatureError("the signature header is malformed") from None
    if abs(wall - signed_at) > TOLERANCE:
        raise SignatureError("the signature is too old or too far in the future")
    expected = sign(secret, int(timestamp), body).partition("v1=")[2]
    if not hmac.compare_digest(expected, given.lower()):
        raise SignatureError("the signature does not match")
    return expected


def record_receipt(conn: Connection, source: str, signature: str, *, wall: datetime) -> None:
    """Remember a signature for the tolerance period; SignatureError if it was seen already."""
    conn.execute(hook_receipts.delete().where(hook_receipts.c.received_at < wall - 2 * TOLERANCE))
    row = {"source": source, "signature": signature, "received_at": wall}
    if not insert_ignoring_conflicts(conn, hook_receipts, [row], returning="source"):
        raise SignatureError("this request was received before (replay)")
