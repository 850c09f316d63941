"""What is stored in place of a random secret the system hands out: its SHA-256.

API keys and visitor tokens are 256 random bits, so an unkeyed hash is enough to
keep the stored value useless to whoever reads the database.
"""

from __future__ import annotations

import hashlib


def secret_digest(secret: str) -> str:
    """The hex SHA-256 of `secret` (UTF-8; anything not encodable is replaced)."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()
