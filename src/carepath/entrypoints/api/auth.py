"""Who is calling: API keys from `Authorization: Bearer …`, scopes, a rate limit per key.

Verified keys are remembered for a short while (by a hash of what was
presented, never the key itself), so a busy client costs no lookup per
request; a revoked key stops working within that time on every process.
Each verification against the database is audited as a use of the key: at
most one row per key, process and cache period, however busy the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from carepath.db.connection import read_only
from carepath.protection.digests import secret_digest
from carepath.services.api_keys import ApiKey, authenticate
from carepath.services.audit import AuditEntry, record_now

KEY_CACHE_SECONDS = 30.0
_CACHE_LIMIT = 10_000
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="carepath"'}


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class KeyRing:
    """Verifies presented keys against the database, with a short cache and rate limits."""

    engine: Engine
    rate_per_second: float
    burst: float
    _cache: dict[str, tuple[ApiKey | None, float]] = field(default_factory=dict)
    _buckets: dict[int, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def remembered(self, presented: str) -> tuple[bool, ApiKey | None]:
        """(True, the key or None) if verified within the cache period, else (False, None)."""
        cached = self._cache.get(secret_digest(presented))
        if cached is not None and cached[1] > time.monotonic():
            return True, cached[0]
        return False, None

    def verify(self, presented: str) -> ApiKey | None:
        known, key = self.remembered(presented)
        if known:
            return key
        with read_only(self.engine) as conn:
            key = authenticate(conn, presented)
        if key is not None:  # a use of the key, audited once per cache period and process
            record_now(self.engine, AuditEntry(f"key:{key.name}", "api_key.use"))
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[secret_digest(presented)] = (key, time.monotonic() + KEY_CACHE_SECONDS)
        return key

    def take(self, key: ApiKey) -> float | None:
        """Spend one request of `key`'s budget: None if allowed, else seconds to wait."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(key.id, _Bucket(self.burst, now))
            bucket.tokens = min(
                self.burst, bucket.tokens + (now - bucket.at) * self.rate_per_second
            )
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            return (1 - bucket.tokens) / self.rate_per_second


def presented_key(authorization: str) -> str | None:
    """The key in an `Authorization: Bearer …` header value, or None."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def admit(ring: KeyRing, key: ApiKey | None, scope: str | None) -> ApiKey:
    """`key` (verified, or None), if it holds `scope` and is within its rate limit;
    otherwise raises the 401, 403 or 429 to answer."""
    if key is None:
        raise HTTPException(401, "a valid API key is required", headers=_CHALLENGE)
    if scope is not None and scope not in key.scopes:
        raise HTTPException(403, f"this API key lacks the scope {scope}")
    wait = ring.take(key)
    if wait is not None:
        raise HTTPException(
            429,
            "rate limit reached for this API key",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    return key


def require(scope: str | None) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency: the calling key, which must hold `scope` (None: any valid key);
    401, 403 or 429 otherwise."""

    async def dependency(request: Request) -> ApiKey:
        ring: KeyRing = request.app.state.keys
        presented = presented_key(request.headers.get("authorization", ""))
        known, key = ring.remembered(presented) if presented else (True, None)
        if not known and presented:  # the database is asked in a worker thread
            key = await run_in_threadpool(ring.verify, presented)
        return admit(ring, key, scope)

    dependency.__name__ = f"require_{(scope or 'key').replace(':', '_')}"
    return dependency


# The calling key, holding one scope (or any valid key): for route signatures.
AnyKey = Annotated[ApiKey, Depends(require(None))]
EVENTS_WRITE = "events:write"
EventsWriter = Annotated[ApiKey, Depends(require(EVENTS_WRITE))]
ContactsReader = Annotated[ApiKey, Depends(require("contacts:read"))]
ContactsWriter = Annotated[ApiKey, Depends(require("contacts:write"))]
ResourcesWriter = Annotated[ApiKey, Depends(require("resources:write"))]
WorkflowsReader = Annotated[ApiKey, Depends(require("workflows:read"))]
WorkflowsWriter = Annotated[ApiKey, Depends(require("workflows:write"))]
TasksReader = Annotated[ApiKey, Depends(require("tasks:read"))]
TasksWriter = Annotated[ApiKey, Depends(require("tasks:write"))]
ReportsReader = Annotated[ApiKey, Depends(require("reports:read"))]


def audit_read_or_change(
    request: Request,
    key: ApiKey,
    action: str,
    contact_ids: Sequence[int],
    detail: str | None = None,
) -> None:
    """Append to the audit log what this key did to whose data (its own transaction)."""
    entry = AuditEntry(f"key:{key.name}", action, tuple(contact_ids), detail=detail)
    record_now(request.app.state.api.engine, entry)
