"""API keys: created with scopes, shown once, stored as a hash, revocable.

A key reads `cpk_<public id>_<secret>`. The public id names the key for the
lookup; the secret (256 random bits) is kept only as its SHA-256: with that
much entropy a fast hash is enough, and a stolen table gives no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import api_keys
from carepath.errors import Conflict, InvalidInput, NotFound, Problem

PREFIX = "cpk"
SCOPES = frozenset(
    {
        "events:write",
        "contacts:read",
        "contacts:write",
        "resources:write",
        "workflows:read",
        "workflows:write",
        "tasks:read",
        "tasks:write",
        "reports:read",
    }
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_KEY = re.compile(rf"^{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str  # the whole key, shown once


@dataclass(frozen=True)
class KeyListing:
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(s.strip() for s in scopes if s.strip())
    unknown = sorted(wanted - SCOPES)
    problems = [Problem("scopes", f"unknown scope {s!r}") for s in unknown]
    if not wanted:
        problems.append(Problem("scopes", "name at least one scope"))
    if problems:
        raise InvalidInput(problems)
    return wanted


def create_key(conn: Connection, *, name: str, scopes: Iterable[str], now: datetime) -> IssuedKey:
    """A new key; its secret is in the result and nowhere else."""
    if not _NAME.match(name):
        raise InvalidInput([Problem("name", "1 to 80 lower-case letters, digits, '.', '_' or '-'")])
    granted = check_scopes(scopes)
    taken = conn.execute(sa.select(api_keys.c.id).where(api_keys.c.name == name)).first()
    if taken is not None:
        raise Conflict(f"an API key named {name!r} exists already")
    public_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    key_id = conn.execute(
        api_keys.insert()
        .values(
            public_id=public_id,
            name=name,
            secret_sha256=_digest(secret),
            scopes=sorted(granted),
            created_at=now,
        )
        .returning(api_keys.c.id)
    ).scalar_one()
    return IssuedKey(ApiKey(key_id, name, granted), f"{PREFIX}_{public_id}_{secret}")


def authenticate(conn: Connection, presented: str) -> ApiKey | None:
    """The live key `presented` is, or None (malformed, unknown, wrong secret, revoked)."""
    match = _KEY.match(presented)
    if match is None:
        return None
    public_id, secret = match.groups()
    row = conn.execute(
        sa.select(
            api_keys.c.id, api_keys.c.name, api_keys.c.secret_sha256, api_keys.c.scopes
        ).where(api_keys.c.public_id == public_id, api_keys.c.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.secret_sha256, _digest(secret)):
        return None
    return ApiKey(row.id, row.name, frozenset(row.scopes))


def revoke_key(conn: Connection, name: str, *, now: datetime) -> None:
    done = conn.execute(
        api_keys.update()
        .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if not done.rowcount:
        raise NotFound(f"no live API key named {name!r}")


def list_keys(conn: Connection) -> list[KeyListing]:
    query = sa.select(
        api_keys.c.name, api_keys.c.scopes, api_keys.c.created_at, api_keys.c.revoked_at
    ).order_by(api_keys.c.name)
    return [
        KeyListing(r.name, frozenset(r.scopes), r.created_at, r.revoked_at)
        for r in conn.execute(query)
    ]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()
