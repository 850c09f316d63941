"""API keys: created with a role (an integration's with scopes), shown once, stored as a
hash, revocable.

A key reads `cpk_<public id>_<secret>`. The public id names the key for the
lookup; the secret (256 random bits) is kept only as its SHA-256: with that
much entropy a fast hash is enough, and a stolen table gives no usable key.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import api_keys
from carepath.domain.access import SCOPES, Principal, Role, role_scopes
from carepath.errors import Conflict, InvalidInput, NotFound, Problem
from carepath.protection.digests import secret_digest

PREFIX = "cpk"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_KEY = re.compile(rf"^{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    scopes: frozenset[str]  # what it may do: its own (integration) or its role's
    role: Role = Role.INTEGRATION
    queues: frozenset[str] = frozenset()

    @property
    def principal(self) -> Principal:
        return Principal(f"key:{self.name}", self.role, self.scopes, self.queues)


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str  # the whole key, shown once


@dataclass(frozen=True)
class KeyListing:
    name: str
    role: Role
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


def create_key(
    conn: Connection,
    *,
    name: str,
    scopes: Iterable[str] = (),
    role: Role = Role.INTEGRATION,
    queues: Iterable[str] = (),
    now: datetime,
) -> IssuedKey:
    """A new key; its secret is in the result and nowhere else."""
    if not _NAME.match(name):
        raise InvalidInput([Problem("name", "1 to 80 lower-case letters, digits, '.', '_' or '-'")])
    wanted_queues = frozenset(q.strip() for q in queues if q.strip())
    if role is Role.INTEGRATION:
        granted = check_scopes(scopes)
    elif [s for s in scopes if s.strip()]:
        raise InvalidInput([Problem("scopes", f"a {role} key has its role's scopes")])
    else:
        granted = role_scopes(role, frozenset())
    if (role is Role.AGENT) != bool(wanted_queues):
        message = "an agent key names its task queues" if role is Role.AGENT else "only agents"
        raise InvalidInput([Problem("queues", message)])
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
            secret_sha256=secret_digest(secret),
            scopes=sorted(granted),
            created_at=now,
            role=role.value,
            queues=sorted(wanted_queues) if wanted_queues else None,
        )
        .returning(api_keys.c.id)
    ).scalar_one()
    key = ApiKey(key_id, name, granted, role, wanted_queues)
    return IssuedKey(key, f"{PREFIX}_{public_id}_{secret}")


def authenticate(conn: Connection, presented: str) -> ApiKey | None:
    """The live key `presented` is, or None (malformed, unknown, wrong secret, revoked)."""
    match = _KEY.match(presented)
    if match is None:
        return None
    public_id, secret = match.groups()
    row = conn.execute(
        sa.select(
            api_keys.c.id,
            api_keys.c.name,
            api_keys.c.secret_sha256,
            api_keys.c.scopes,
            api_keys.c.role,
            api_keys.c.queues,
        ).where(api_keys.c.public_id == public_id, api_keys.c.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.secret_sha256, secret_digest(secret)):
        return None
    role = Role(row.role)
    scopes = role_scopes(role, frozenset(row.scopes))
    return ApiKey(row.id, row.name, scopes, role, frozenset(row.queues or ()))


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
        api_keys.c.name,
        api_keys.c.role,
        api_keys.c.scopes,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
    ).order_by(api_keys.c.name)
    return [
        KeyListing(r.name, Role(r.role), frozenset(r.scopes), r.created_at, r.revoked_at)
        for r in conn.execute(query)
    ]
