"""Acting on bounce and complaint reports that come back by mail (DSN, ARF).

A report names the original message by its Message-ID, which is the outbox
row's own, and the recipient. Hard bounces and complaints suppress the
address; a hard bounce also marks the message `bounced`. Each finding
becomes an event on the contact (`email.bounced`, `email.complained`), keyed
by the outbox row so that a report ingested twice, or a bounce already seen
at SMTP time, counts once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from carepath.channels.reports import Finding, ReportError, ReportFinding, read_report
from carepath.db.schema import contacts, outbox
from carepath.errors import InvalidInput, Problem
from carepath.services.contacts import contact_with
from carepath.services.events import NewEvent, store_events
from carepath.services.suppressions import suppress


@dataclass
class ReportsIngested:
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    unmatched: int = 0  # findings naming no message or contact we know
    suppressed: int = 0  # addresses newly on the suppression list


def ingest_reports(
    conn: sa.Connection, reports: Sequence[tuple[str, bytes]], *, now: datetime
) -> ReportsIngested:
    """Read every (name, raw) report first, then act: all or nothing on a bad one."""
    read = []
    problems = []
    for name, raw in reports:
        try:
            read.append((raw, read_report(raw)))
        except ReportError as exc:
            problems.append(Problem(name, str(exc)))
    if problems:
        raise InvalidInput(problems)
    done = ReportsIngested()
    new_events: list[NewEvent] = []
    for raw, findings in read:
        digest = hashlib.sha256(raw).hexdigest()[:16]
        for index, finding in enumerate(findings):
            event = _act(conn, finding, f"report:{digest}:{index}", done, now=now)
            if event is not None:
                new_events.append(event)
    store_events(conn, new_events, now=now)
    return done


def _act(
    conn: sa.Connection,
    finding: ReportFinding,
    fallback_key: str,
    done: ReportsIngested,
    *,
    now: datetime,
) -> NewEvent | None:
    """Apply one finding, counting it in `done`; the event to store, if a contact is known."""
    row = _outbox_row(conn, finding.message_id)
    address = finding.recipient or (row.email if row is not None else None)
    contact_id = row.contact_id if row is not None else _contact_of(conn, address)
    if address is None and contact_id is None:
        done.unmatched += 1
        return None
    match finding.kind:
        case Finding.HARD_BOUNCE:
            done.hard_bounces += 1
            if address:
                done.suppressed += suppress(
                    conn, [address], reason="hard_bounce", source="dsn", now=now
                )
            if row is not None:
                conn.execute(
                    outbox.update()
                    .where(outbox.c.id == row.id)
                    .values(status="bounced", last_error=f"bounced ({finding.status or '5.0.0'})")
                )
            kind = "email.bounced"
            data: dict[str, object] = {"bounce": "hard", "status": finding.status}
        case Finding.SOFT_BOUNCE:
            done.soft_bounces += 1
            kind, data = "email.bounced", {"bounce": "soft", "status": finding.status}
        case Finding.COMPLAINT:
            done.complaints += 1
            if address:
                done.suppressed += suppress(
                    conn, [address], reason="complaint", source="arf", now=now
                )
            kind, data = "email.complained", {}
    if contact_id is None:
        done.unmatched += 1
        return None
    key = f"outbox:{row.id}:{kind}" if row is not None else f"{fallback_key}:{kind}"
    if row is not None:
        data = {"outbox_id": row.id, **data}
    return NewEvent(kind, contact_id, now, key, data, "report")


def _outbox_row(conn: sa.Connection, message_id: str | None) -> Any:
    if not message_id:
        return None
    query = (
        sa.select(outbox.c.id, outbox.c.contact_id, contacts.c.email)
        .join(contacts, contacts.c.id == outbox.c.contact_id)
        .where(outbox.c.message_id == message_id)
    )
    return conn.execute(query).first()


def _contact_of(conn: sa.Connection, address: str | None) -> int | None:
    if not address:
        return None
    return contact_with(conn, "email", address.strip().lower())
