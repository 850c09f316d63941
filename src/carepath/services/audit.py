"""The audit log: who read or changed whose data, when and why — tamper-evident.

Every row's hash covers its own content and the hash of the row before it
(SHA-256 over canonical JSON), so changing, removing or reordering any row
breaks the chain from there on: `verify` names the first row that does not
hold. Rows carry contact ids, names and counts, never values (HIPAA
164.312(b), audit controls). The application only appends; appends are
serialised (an advisory lock on PostgreSQL, the single writer on SQLite) so
the chain has one order.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import audit_log
from carepath.services.clock import wall_time

GENESIS = "0" * 64
# Any constant: the advisory lock that makes appends one queue on PostgreSQL.
_APPEND_LOCK = 0x0CA4E9A7
_BATCH = 1000


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    contact_ids: tuple[int, ...] = ()
    purpose: str | None = None
    detail: str | None = None


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def record(conn: Connection, entry: AuditEntry, *, now: datetime) -> None:
    """Append one row to the chain, in the caller's transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_APPEND_LOCK)))
    last = conn.execute(
        sa.select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
    ).first()
    prev_hash = last.hash if last else GENESIS
    next_id = (last.id if last else 0) + 1
    at = now.astimezone(UTC)
    content = {
        "id": next_id,
        "at": at.isoformat(),
        "actor": entry.actor[:120],
        "action": entry.action[:60],
        "contact_ids": sorted({int(i) for i in entry.contact_ids}),
        "purpose": entry.purpose,
        "detail": entry.detail[:300] if entry.detail else None,
    }
    row = {k: v for k, v in content.items() if k != "at"}
    conn.execute(
        audit_log.insert().values(
            **row, at=at, prev_hash=prev_hash, hash=chain_hash(prev_hash, content)
        )
    )


def record_now(engine: sa.Engine, entry: AuditEntry) -> None:
    """Append one row in a transaction of its own, at wall-clock time.

    Audit times are real times, also when the business clock is simulated.
    """
    with engine.begin() as conn:
        record(conn, entry, now=wall_time())


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    rows: int  # rows checked
    first_bad: int | None  # the id of the first row that does not hold
    reason: str | None

    @property
    def intact(self) -> bool:
        return self.first_bad is None


def verify(conn: Connection) -> Verdict:
    """Walk the chain in id order; the first row whose links or content do not hold."""
    prev_hash, expected_id, checked = GENESIS, 1, 0
    for row in rows_in_order(conn):
        checked += 1
        if row["id"] != expected_id:
            return Verdict(checked, row["id"], f"row {expected_id} is missing")
        if row["prev_hash"] != prev_hash:
            reason = "does not follow the row before it (removed or reordered)"
            return Verdict(checked, row["id"], reason)
        content = {k: row[k] for k in ("id", "at", "actor", "action", "contact_ids")}
        content |= {"purpose": row["purpose"], "detail": row["detail"]}
        if chain_hash(prev_hash, content) != row["hash"]:
            return Verdict(checked, row["id"], "its content was changed")
        prev_hash, expected_id = row["hash"], expected_id + 1
    return Verdict(checked, None, None)


def rows_in_order(conn: Connection) -> Iterator[dict[str, Any]]:
    """Every row as plain data (times in ISO 8601), in id order, a batch at a time."""
    after = 0
    while True:
        batch = conn.execute(
            sa.select(audit_log)
            .where(audit_log.c.id > after)
            .order_by(audit_log.c.id)
            .limit(_BATCH)
        ).all()
        for row in batch:
            data = dict(row._mapping)
            data["at"] = data["at"].astimezone(UTC).isoformat()
            data["contact_ids"] = list(data["contact_ids"] or [])
            yield data
        if len(batch) < _BATCH:
            return
        after = batch[-1].id
