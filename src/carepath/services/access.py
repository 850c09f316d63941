"""Checking a principal's rights where the data is read or changed, not only in routes.

Service functions that touch a contact's PHI call `authorize` with the
contacts concerned; the HTTP API and the CLI only say who is acting.
Break-glass access is kept in the database (`break_glass`), so every process
sees it at once and it ends on its own: while it is open, a principal also
reads any contact and sees identities, and each such read is audited with the
purpose `emergency` and the reason given.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.connection import READ_ONLY_OPTION
from carepath.db.dialect import id_in
from carepath.db.schema import break_glass, tasks
from carepath.domain.access import BREAK_GLASS_LONGEST, ROLE_SCOPES, Principal, Role
from carepath.domain.workflow import WebhookStep
from carepath.errors import Forbidden, InvalidInput, Problem
from carepath.services.audit import AuditEntry, cli_actor, record, record_now
from carepath.services.catalog_store import build_current
from carepath.services.clock import wall_time

EMERGENCY = "emergency"
READ = "contacts:read"
WRITE = "contacts:write"


def cli_principal() -> Principal:
    """Whoever runs the command line: it has the server's files, so it is an admin."""
    return Principal(cli_actor(), Role.ADMIN, ROLE_SCOPES[Role.ADMIN])


def authorize(
    conn: Connection,
    who: Principal,
    scope: str,
    *,
    now: datetime,
    contact_ids: Iterable[int] = (),
) -> None:
    """Refuse unless `who` holds `scope` and may see these contacts."""
    ids = sorted(set(contact_ids))
    held = scope in who.scopes
    if held and not (ids and who.limited_to_queues and _outside_queues(conn, who, ids)):
        return
    reason = break_glass_reason(conn, who) if scope == READ else None
    if reason is None:
        if not held:
            raise Forbidden(f"the {who.role} role does not allow {scope}")
        raise Forbidden("an agent sees only the contacts of open tasks in its queues")
    record_break_glass(conn, who, ids, reason)


def record_break_glass(
    conn: Connection, who: Principal, contact_ids: Iterable[int], reason: str
) -> None:
    """Audit a read made under emergency access (whose, why)."""
    entry = AuditEntry(who.name, "break_glass.read", tuple(contact_ids), EMERGENCY, reason)
    if conn.get_execution_options().get(READ_ONLY_OPTION):
        record_now(conn.engine, entry)  # a read-only connection never commits
    else:
        record(conn, entry, now=wall_time())  # audit times are real times


def identities_reason(conn: Connection, who: Principal) -> tuple[bool, str | None]:
    """Whether report rows name contacts for `who` (else they are masked), and the
    break-glass reason when that is why (the caller audits what it then shows)."""
    if who.sees_identities:
        return True, None
    reason = break_glass_reason(conn, who)
    return reason is not None, reason


def require_all_contacts(conn: Connection, who: Principal, *, now: datetime) -> None:
    """Refuse listings of everyone to principals limited to some contacts or to aggregates."""
    authorize(conn, who, READ, now=now)
    if who.limited_to_queues or not identities_reason(conn, who)[0]:
        raise Forbidden(f"the {who.role} role does not list contacts")


def _outside_queues(conn: Connection, who: Principal, ids: list[int]) -> bool:
    served = conn.execute(
        sa.select(tasks.c.contact_id)
        .distinct()
        .where(
            id_in(conn, tasks.c.contact_id, ids),
            tasks.c.queue.in_(sorted(who.queues)),
            tasks.c.status == "open",
        )
    )
    return bool(set(ids) - set(served.scalars()))


def break_glass_reason(conn: Connection, who: Principal) -> str | None:
    """The reason of `who`'s open emergency access, or None (wall-clock time: a simulated
    business clock neither stretches nor cuts it)."""
    if who.role in (Role.ADMIN, Role.INTEGRATION):
        return None  # they have nothing to break into
    return conn.execute(
        sa.select(break_glass.c.reason)
        .where(break_glass.c.principal == who.name, break_glass.c.expires_at > wall_time())
        .order_by(break_glass.c.expires_at.desc())
        .limit(1)
    ).scalar()


def start_break_glass(conn: Connection, who: Principal, *, reason: str, minutes: int) -> datetime:
    """Open emergency access for `who` until the returned time; audited with the reason."""
    reason = reason.strip()
    problems = []
    if not 10 <= len(reason) <= 300:
        problems.append(Problem("reason", "say why, in 10 to 300 characters"))
    longest = int(BREAK_GLASS_LONGEST.total_seconds() // 60)
    if not 1 <= minutes <= longest:
        problems.append(Problem("minutes", f"between 1 and {longest}"))
    if problems:
        raise InvalidInput(problems)
    now = wall_time()
    until = now + timedelta(minutes=minutes)
    conn.execute(
        break_glass.insert().values(
            principal=who.name, reason=reason, started_at=now, expires_at=until
        )
    )
    entry = AuditEntry(who.name, "break_glass.start", (), EMERGENCY, reason)
    record(conn, entry, now=wall_time())
    return until


def refuse_data_leaving(conn: Connection, who: Principal, workflows: Iterable[str]) -> None:
    """A webhook step sends contact fields out of carepath: only roles that may see every
    contact's data apply one (a marketer's workflow could otherwise post PHI anywhere)."""
    if who.sees_identities:
        return
    catalog = build_current(conn).catalog
    for name in workflows:
        definition = catalog.workflows.get(name)
        if definition and any(isinstance(s, WebhookStep) for s in definition.steps.values()):
            raise Forbidden(f"the {who.role} role does not apply workflows with webhook steps")
