"""Sealing field values with AES-256-GCM, and keyed blind indexes for equality lookups.

A sealed value is `cp1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The
purpose (the table and column, e.g. `contacts.email`) is authenticated as
associated data, so a sealed value copied into another column does not open.
A blind index is HMAC-SHA256 over the purpose and the value with the index key:
equal values give equal indexes, and nothing about the value can be read back.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Iterable
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carepath.errors import ConfigurationError
from carepath.protection.keyring import Keyring, active_keyring

PREFIX = "cp1"
NONCE_BYTES = 12


class SealError(ConfigurationError):
    """A sealed value that does not open: wrong keyring, or a changed value."""


@lru_cache(maxsize=32)
def _cipher(key: bytes) -> AESGCM:
    return AESGCM(key)


def seal(value: str, purpose: str, keyring: Keyring | None = None) -> str:
    keyring = keyring or active_keyring()
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = _cipher(keyring.key(keyring.current)).encrypt(nonce, value.encode(), purpose.encode())
    body = base64.urlsafe_b64encode(nonce + sealed).decode()
    return f"{PREFIX}:{keyring.current}:{body}"


def unseal(token: str, purpose: str, keyring: Keyring | None = None) -> str:
    keyring = keyring or active_keyring()
    key_id = sealed_key_id(token)
    if key_id is None:
        raise SealError(f"{purpose}: a stored value is not sealed")
    raw = base64.urlsafe_b64decode(token[len(PREFIX) + len(key_id) + 2 :])
    try:
        opened = _cipher(keyring.key(key_id)).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode()
        )
    except InvalidTag:
        raise SealError(f"{purpose}: a sealed value does not open with key {key_id!r}") from None
    return opened.decode()


SEALED_VALUE = re.compile(rf"{PREFIX}:[a-z0-9-]{{1,20}}:[A-Za-z0-9_=-]+")


def without_sealed_values(text: str) -> str:
    """`text` with every sealed value in it cut out (what is left is in clear)."""
    return SEALED_VALUE.sub("", text)


def sealed_key_id(token: str) -> str | None:
    """The id of the key a value was sealed with; None if it is not a sealed value."""
    prefix, sep, rest = token.partition(":")
    key_id, sep2, _ = rest.partition(":")
    return key_id if prefix == PREFIX and sep and sep2 and key_id else None


def blind_index(value: str, purpose: str, keyring: Keyring | None = None) -> str:
    return blind_indexes([value], purpose, keyring)[0]


def blind_indexes(values: Iterable[str], purpose: str, keyring: Keyring | None = None) -> list[str]:
    """The blind index of each value, in order (the keyring looked up once for all)."""
    keyed = hmac.new((keyring or active_keyring()).index_key, purpose.encode() + b"\x00", "sha256")
    found = []
    for value in values:  # a copy of the keyed state: no key set-up per value
        each = keyed.copy()
        each.update(value.encode())
        found.append(each.hexdigest())
    return found
