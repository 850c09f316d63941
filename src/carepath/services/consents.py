"""Consents: a HIPAA marketing authorization and channel opt-outs, checked at sending time.

A workflow's purpose decides what a message needs (HIPAA 164.508(a)(3)):
`marketing` needs a marketing authorization that is granted, not revoked and
not expired at the moment the message is sent, so a revocation mid-campaign
stops every later message; `treatment` and `operations` (appointment
reminders) need none. Every purpose honours a revoked channel (email).
A message refused for either reason is kept in the outbox as `skipped` with
the reason. Granting and revoking are events in the contact's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import dialect_insert
from carepath.db.schema import consents, contacts
from carepath.domain.access import Principal
from carepath.errors import InvalidInput, NotFound, Problem
from carepath.services.access import authorize
from carepath.services.events import NewEvent, store_events


class ConsentKind(StrEnum):
    MARKETING = "marketing"  # the HIPAA marketing authorization
    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True)
class ConsentChange:
    kind: ConsentKind
    granted: bool
    source: str
    expires_at: datetime | None = None


def set_consent(
    conn: Connection, contact_id: int, change: ConsentChange, *, now: datetime, who: Principal
) -> None:
    """Grant or revoke one consent; recorded as consent.granted / consent.revoked."""
    authorize(conn, who, "contacts:write", now=now, contact_ids=[contact_id])
    found = conn.execute(
        sa.select(contacts.c.id).where(contacts.c.id == contact_id, contacts.c.erased_at.is_(None))
    ).first()
    if found is None:
        raise NotFound("no contact with that id")
    source = change.source.strip()
    if not source or len(source) > 100:
        raise InvalidInput(
            [Problem("source", "say where the consent was given (1 to 100 characters)")]
        )
    if change.expires_at is not None and (not change.granted or change.expires_at <= now):
        raise InvalidInput(
            [Problem("expires_at", "an expiry is a future moment of a granted consent")]
        )
    values = {
        "status": "granted" if change.granted else "revoked",
        "source": source,
        "granted_at": now if change.granted else None,
        "expires_at": change.expires_at,
        "revoked_at": None if change.granted else now,
        "updated_at": now,
    }
    insert: Any = dialect_insert(conn, consents).values(
        contact_id=contact_id, kind=change.kind.value, **values
    )
    update = {k: insert.excluded[k] for k in values}
    if not change.granted:  # a revocation keeps when it had been granted
        update.pop("granted_at")
    conn.execute(insert.on_conflict_do_update(index_elements=["contact_id", "kind"], set_=update))
    kind = "consent.granted" if change.granted else "consent.revoked"
    key = f"consent:{contact_id}:{change.kind.value}:{values['status']}:{now.isoformat()}"
    data = {"consent": change.kind.value, "source": source}
    store_events(conn, [NewEvent(kind, contact_id, now, key, data, "consent")], now=now)


def read_consents(
    conn: Connection, contact_id: int, *, who: Principal, now: datetime
) -> list[dict[str, Any]]:
    authorize(conn, who, "contacts:read", now=now, contact_ids=[contact_id])
    rows = conn.execute(
        sa.select(consents).where(consents.c.contact_id == contact_id).order_by(consents.c.kind)
    )
    return [{k: v for k, v in row._mapping.items() if k != "contact_id"} for row in rows]


def consent_columns() -> tuple[tuple[Any, Any], list[Any]]:
    """Outer joins and columns that give each outbox row's consents (for `send_refusal`)."""
    marketing = consents.alias("marketing_consent")
    email = consents.alias("email_consent")
    columns = [
        marketing.c.status.label("marketing_status"),
        marketing.c.expires_at.label("marketing_expires_at"),
        email.c.status.label("email_status"),
    ]
    return (marketing, email), columns


def send_refusal(row: Any, now: datetime) -> str | None:
    """Why a claimed message may not go now (its purpose and the contact's consents), or None."""
    if row.email_status == "revoked":
        return "email opted out"
    if row.purpose == "marketing":
        expires = row.marketing_expires_at
        if row.marketing_status != "granted" or (expires is not None and expires <= now):
            return "no marketing authorization"
    return None
