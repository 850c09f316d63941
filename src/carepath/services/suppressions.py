"""The suppression list: addresses that are never mailed again.

Hard bounces and complaints add to it automatically, unsubscribes and
operators by hand. The outbox checks it at send time, so a message queued
before an address was suppressed is not sent either.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from carepath.db.dialect import insert_ignoring_conflicts
from carepath.db.schema import suppressions
from carepath.protection.identifiers import identifier_index

REASONS = frozenset({"hard_bounce", "complaint", "unsubscribed", "manual"})


def suppress(
    conn: sa.Connection, emails: Iterable[str], *, reason: str, source: str, now: datetime
) -> int:
    """Add addresses (an address already listed keeps its first reason); how many were new."""
    if reason not in REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    addresses = sorted({e.strip().lower() for e in emails})
    rows = [
        {
            "email_index": identifier_index("email", address),
            "email": address,
            "reason": reason,
            "source": source,
            "created_at": now,
        }
        for address in addresses
    ]
    return len(insert_ignoring_conflicts(conn, suppressions, rows, returning="email_index"))
