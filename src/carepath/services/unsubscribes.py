"""Unsubscribing through the signed link or mailto of a message's List-Unsubscribe header."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from carepath.channels.links import InvalidTokenError, LinkSigner
from carepath.db.schema import contacts, outbox
from carepath.errors import InvalidInput, Problem
from carepath.services.events import NewEvent, store_events
from carepath.services.suppressions import suppress


def unsubscribe(
    conn: sa.Connection, links: LinkSigner, token: str, *, now: datetime, source: str
) -> bool:
    """Suppress the address a message went to; False if it already was. Idempotent."""
    try:
        message_id = links.read("unsubscribe", token)
    except InvalidTokenError:
        raise InvalidInput([Problem("token", "not a valid unsubscribe token")]) from None
    row = conn.execute(
        sa.select(outbox.c.id, outbox.c.contact_id, contacts.c.email)
        .join(contacts, contacts.c.id == outbox.c.contact_id)
        .where(outbox.c.message_id == message_id)
    ).first()
    if row is None or not row.email:
        raise InvalidInput([Problem("token", "the message it names is no longer known")])
    added = suppress(conn, [row.email], reason="unsubscribed", source=source, now=now)
    event = NewEvent(
        "email.unsubscribed",
        row.contact_id,
        now,
        f"outbox:{row.id}:email.unsubscribed",
        {"outbox_id": row.id},
        source,
    )
    store_events(conn, [event], now=now)
    return added > 0
