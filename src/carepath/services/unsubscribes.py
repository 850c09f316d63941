"""Unsubscribing through the signed link or mailto of a message's List-Unsubscribe header.

The link's token names the message, and so its recipient. What they can stop:

- `all`: every email (the address is suppressed; `email.unsubscribed`). This is
  what RFC 8058's one-click POST and the mailto do.
- `marketing`: marketing only. The HIPAA marketing authorization is revoked
  (`consent.revoked`), so every marketing message, queued ones included, is
  refused at sending time while appointment reminders and other treatment
  messages still go.
- any of the lists they are on (`list.left`).

Stopping all or marketing also stores `contact.opted_out` (`data.scope`),
which journeys exit on. Sending checks suppressions and consents for each
message as it goes, so a change applies at once to everything queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from carepath.channels.links import InvalidTokenError, LinkSigner
from carepath.db.schema import consents, contacts, list_members, lists, outbox
from carepath.domain.access import SYSTEM
from carepath.errors import InvalidInput, Problem
from carepath.services.consents import ConsentChange, ConsentKind, set_consent
from carepath.services.events import NewEvent, store_events
from carepath.services.list_memberships import leave_list
from carepath.services.suppressions import suppress

OPTED_OUT = "contact.opted_out"


class Scope(StrEnum):
    ALL = "all"
    MARKETING = "marketing"
    NONE = "none"  # lists only


@dataclass(frozen=True)
class Subscriptions:
    """What the preference page offers: the lists the recipient is on, (name, title)."""

    lists: list[tuple[str, str]]


def subscriptions(conn: sa.Connection, links: LinkSigner, token: str) -> Subscriptions:
    """What the token's recipient can leave; reads only."""
    return Subscriptions(_lists_of(conn, _recipient(conn, links, token).contact_id))


def _lists_of(conn: sa.Connection, contact_id: int) -> list[tuple[str, str]]:
    query = (
        sa.select(lists.c.name, lists.c.title)
        .join(list_members, list_members.c.list_name == lists.c.name)
        .where(list_members.c.contact_id == contact_id)
        .order_by(lists.c.title, lists.c.name)
    )
    return [(name, title) for name, title in conn.execute(query)]


def unsubscribe(
    conn: sa.Connection,
    links: LinkSigner,
    token: str,
    *,
    now: datetime,
    source: str,
    scope: Scope = Scope.ALL,
    leave: Sequence[str] = (),
) -> bool:
    """Stop what `scope` names and leave the lists in `leave`; True if anything changed
    (False: stopped already). Idempotent."""
    row = _recipient(conn, links, token)
    if not set(leave) <= {name for name, _ in _lists_of(conn, row.contact_id)}:
        raise InvalidInput([Problem("leave", "not a list this address is on")])
    changed = False
    if scope is Scope.ALL:
        changed = _stop_all(conn, row, now=now, source=source)
    elif scope is Scope.MARKETING:
        changed = _stop_marketing(conn, row, now=now, source=source)
    for name in sorted(set(leave)):
        changed |= leave_list(conn, name, row.contact_id, now=now, source=source, who=SYSTEM)
    return changed


def _stop_all(conn: sa.Connection, row: _Recipient, *, now: datetime, source: str) -> bool:
    if not row.email:
        raise InvalidInput([Problem("token", "the message it names is no longer known")])
    added = suppress(conn, [row.email], reason="unsubscribed", source=source, now=now)
    _store(conn, row, "email.unsubscribed", {"outbox_id": row.id}, now=now, source=source)
    _opted_out(conn, row, Scope.ALL, now=now, source=source)
    return added > 0


def _stop_marketing(conn: sa.Connection, row: _Recipient, *, now: datetime, source: str) -> bool:
    if row.marketing == "revoked":
        return False
    change = ConsentChange(ConsentKind.MARKETING, granted=False, source=f"unsubscribe:{source}")
    set_consent(conn, row.contact_id, change, now=now, who=SYSTEM)
    _opted_out(conn, row, Scope.MARKETING, now=now, source=source)
    return True


def _opted_out(
    conn: sa.Connection, row: _Recipient, scope: Scope, *, now: datetime, source: str
) -> None:
    data: dict[str, object] = {"scope": scope.value, "outbox_id": row.id}
    _store(conn, row, OPTED_OUT, data, now=now, source=source, tag=scope.value)


def _store(
    conn: sa.Connection,
    row: _Recipient,
    kind: str,
    data: dict[str, object],
    *,
    now: datetime,
    source: str,
    tag: str = "",
) -> None:
    # Keyed by message (and scope): pressing the button twice stores one event.
    key = f"outbox:{row.id}:{kind}" + (f":{tag}" if tag else "")
    store_events(conn, [NewEvent(kind, row.contact_id, now, key, data, source)], now=now)


def _recipient(conn: sa.Connection, links: LinkSigner, token: str) -> _Recipient:
    """The message a token names: its id, contact, address and marketing consent status."""
    try:
        message_id = links.read("unsubscribe", token)
    except InvalidTokenError:
        raise InvalidInput([Problem("token", "not a valid unsubscribe token")]) from None
    marketing = consents.alias("marketing_consent")
    row = conn.execute(
        sa.select(outbox.c.id, outbox.c.contact_id, contacts.c.email, marketing.c.status)
        .join(contacts, contacts.c.id == outbox.c.contact_id)
        .outerjoin(
            marketing,
            (marketing.c.contact_id == contacts.c.id) & (marketing.c.kind == "marketing"),
        )
        .where(outbox.c.message_id == message_id, contacts.c.erased_at.is_(None))
    ).first()
    if row is None:
        raise InvalidInput([Problem("token", "the message it names is no longer known")])
    return _Recipient(row.id, row.contact_id, row.email, row.status)


@dataclass(frozen=True)
class _Recipient:
    id: int  # the message's outbox row
    contact_id: int
    email: str | None
    marketing: str | None  # the marketing authorization's status, if any
