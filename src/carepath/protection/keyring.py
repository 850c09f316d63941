"""The keyring: field-encryption keys and the blind-index key, never stored in the database.

A keyring is a small JSON document::

    {"current": "k2",
     "keys": {"k1": "<base64 of 32 bytes>", "k2": "<base64 of 32 bytes>"},
     "index_key": "<base64 of 32 bytes>"}

New values are sealed with `current`; older keys stay until `carepath keys
rotate` has re-sealed everything under the current one. The index key makes
the blind indexes (equality lookups on sealed identifiers) and is not rotated
with the others: changing it means recomputing every index.

Where it comes from, first match wins: a keyring set by the process itself
(tests, benchmarks), `CAREPATH_KEYRING` (the JSON text, for secret managers),
`CAREPATH_KEYRING_FILE` (a path), then the file beside an embedded SQLite
database (`carepath.db.keyring`), which `carepath init` creates.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from carepath.errors import ConfigurationError

KEY_BYTES = 32  # AES-256
KEY_ID = re.compile(r"^[a-z0-9-]{1,20}$")
KEYRING_ENV = "CAREPATH_KEYRING"
KEYRING_FILE_ENV = "CAREPATH_KEYRING_FILE"


@dataclass(frozen=True)
class Keyring:
    current: str
    keys: Mapping[str, bytes] = field(repr=False)
    index_key: bytes = field(repr=False)

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise ConfigurationError(f"key {key_id!r} is not in the keyring") from None


def generate_keyring(key_id: str = "k1") -> Keyring:
    return Keyring(key_id, {key_id: secrets.token_bytes(KEY_BYTES)}, secrets.token_bytes(KEY_BYTES))


def with_new_key(keyring: Keyring) -> Keyring:
    """The keyring with a fresh key (`k<n+1>`) made current; the old keys stay for reading."""
    numbers = [int(k[1:]) for k in keyring.keys if re.fullmatch(r"k\d+", k)]
    key_id = f"k{max(numbers, default=0) + 1}"
    keys = {**keyring.keys, key_id: secrets.token_bytes(KEY_BYTES)}
    return Keyring(key_id, keys, keyring.index_key)


def without_key(keyring: Keyring, key_id: str) -> Keyring:
    """The keyring without an old key (once nothing is sealed with it any more)."""
    if key_id == keyring.current:
        raise ConfigurationError("the current key cannot be removed")
    keyring.key(key_id)
    return Keyring(
        keyring.current, {k: v for k, v in keyring.keys.items() if k != key_id}, keyring.index_key
    )


def keyring_text(keyring: Keyring) -> str:
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    body = {
        "current": keyring.current,
        "keys": {k: b64(v) for k, v in sorted(keyring.keys.items())},
        "index_key": b64(keyring.index_key),
    }
    return json.dumps(body, indent=2) + "\n"


def parse_keyring(text: str, source: str) -> Keyring:
    """A keyring from its JSON text; errors name `source` and the entry, never a key."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigurationError(f"{source}: the keyring is not valid JSON") from None
    if not isinstance(body, dict):
        raise ConfigurationError(f"{source}: the keyring is a JSON object")
    keys = body.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise ConfigurationError(f"{source}: keys must map key ids to base64 keys")
    parsed = {}
    for key_id, raw in keys.items():
        if not KEY_ID.match(str(key_id)):
            raise ConfigurationError(f"{source}: key id {key_id!r} uses a-z, 0-9 and -")
        parsed[str(key_id)] = _key_bytes(raw, f"{source}: keys.{key_id}")
    current = body.get("current")
    if current not in parsed:
        raise ConfigurationError(f"{source}: current must name one of the keys")
    index_key = _key_bytes(body.get("index_key"), f"{source}: index_key")
    return Keyring(str(current), parsed, index_key)


def _key_bytes(raw: object, where: str) -> bytes:
    try:
        key = base64.b64decode(str(raw), validate=True) if isinstance(raw, str) else b""
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{where} must be {KEY_BYTES} random bytes in base64")
    return key


def read_keyring_file(path: Path) -> Keyring:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the keyring file: {exc.strerror}") from None
    return parse_keyring(text, path.name)


def write_keyring_file(path: Path, keyring: Keyring) -> None:
    """Write atomically, readable by the owner only."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(keyring_text(keyring))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sources.file_lookup = None


# ------------------------------------------------------------ the process's keyring


# A keyring file is looked at again (resolved and its time stamp read) at most this
# often: every sealed value written or read asks for the keyring, and those system
# calls cost more than opening the value. Writing a keyring file, or choosing
# another source, in this process forgets the last look at once.
FILE_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class _FileLookup:
    source: tuple[str | None, Path | None]  # what named the file
    at: float  # time.monotonic() of the lookup
    keyring: Keyring


@dataclass
class _Sources:
    chosen: Keyring | None = None  # set by the process itself
    beside_database: Path | None = None  # the embedded database's keyring file
    file_lookup: _FileLookup | None = None  # the last keyring read from a file, and when


_sources = _Sources()


def use_keyring(keyring: Keyring | None) -> None:
    """Set (or with None, clear) the keyring this process uses before any other source."""
    _sources.chosen = keyring
    _sources.file_lookup = None


def use_keyring_beside(database_file: Path, *, create: bool) -> None:
    """Remember the embedded database's keyring file; create it if asked and missing."""
    path = database_file.with_name(database_file.name + ".keyring")
    if create and not path.exists() and not _configured_elsewhere():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_keyring_file(path, generate_keyring())
    _sources.beside_database = path
    _sources.file_lookup = None


def _configured_elsewhere() -> bool:
    from_environment = os.environ.get(KEYRING_ENV) or os.environ.get(KEYRING_FILE_ENV)
    return _sources.chosen is not None or bool(from_environment)


def keyring_source() -> tuple[str, Path | None]:
    """Where the keyring comes from: a description, and its file if it has one."""
    if _sources.chosen is not None:
        return "set by the process", None
    if os.environ.get(KEYRING_ENV):
        return KEYRING_ENV, None
    if path := os.environ.get(KEYRING_FILE_ENV):
        return KEYRING_FILE_ENV, Path(path)
    beside = _sources.beside_database
    if beside is not None and beside.exists():
        return "the file beside the database", beside
    raise ConfigurationError(
        f"no keyring: set {KEYRING_FILE_ENV} or {KEYRING_ENV} (see docs/security.md)"
    )


def active_keyring() -> Keyring:
    if _sources.chosen is not None:
        return _sources.chosen
    if text := os.environ.get(KEYRING_ENV):
        return _parsed(text)
    source = (os.environ.get(KEYRING_FILE_ENV), _sources.beside_database)
    now = time.monotonic()
    last = _sources.file_lookup
    if last is not None and last.source == source and now - last.at < FILE_RECHECK_SECONDS:
        return last.keyring
    _, path = keyring_source()
    assert path is not None
    keyring = _read_cached(path)
    _sources.file_lookup = _FileLookup(source, now, keyring)
    return keyring


_cache: dict[object, Keyring] = {}


def _parsed(text: str) -> Keyring:
    if (found := _cache.get(text)) is None:
        found = _cache[text] = parse_keyring(text, KEYRING_ENV)
    return found


def _read_cached(path: Path) -> Keyring:
    try:
        stamp = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the keyring file: {exc.strerror}") from None
    if (found := _cache.get(stamp)) is None:
        found = _cache[stamp] = read_keyring_file(path)
    return found
