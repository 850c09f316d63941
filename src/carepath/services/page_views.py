"""First-party page-view tracking: page views of known visitors become events; the rest are counted.

HHS treats what a tracking technology learns on a provider's web pages, tied
to an identifier, as PHI. So carepath serves the script and the endpoint
itself (no third party sees a request), and identifies a browser only through
a visitor cookie it set when that person arrived from a tracked link in a
message to them or submitted a form. A view from any other browser is only
counted, per day and path, and stored nowhere per person. Query strings and
fragments are dropped before anything is kept.

A visitor token is 256 random bits, signed with the link key for this purpose
only; the database keeps its SHA-256, the contact and an expiry. Erasing the
contact removes its visitors.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.channels.links import InvalidTokenError, LinkSigner
from carepath.db.dialect import dialect_insert
from carepath.db.schema import contacts, page_view_counts, visitors
from carepath.protection.digests import secret_digest
from carepath.services.events import NewEvent, store_events

VISITOR_PURPOSE = "visitor"
VISITOR_LIFETIME = timedelta(days=90)
MAX_PATH = 300
VIEWED = "page.viewed"


def new_visitor(conn: Connection, links: LinkSigner, contact_id: int, *, now: datetime) -> str:
    """A visitor token for `contact_id`, stored by its hash: the cookie's value.

    Expired visitors (anyone's) are removed on the way.
    """
    conn.execute(visitors.delete().where(visitors.c.expires_at <= now))
    secret = secrets.token_urlsafe(32)
    conn.execute(
        visitors.insert().values(
            token_sha256=secret_digest(secret),
            contact_id=contact_id,
            created_at=now,
            expires_at=now + VISITOR_LIFETIME,
        )
    )
    return links.token(VISITOR_PURPOSE, secret)


def visitor_contact(
    conn: Connection, links: LinkSigner, token: str, *, now: datetime
) -> int | None:
    """The contact a visitor token names, or None (not ours, expired, or the contact erased)."""
    try:
        secret = links.read(VISITOR_PURPOSE, token)
    except InvalidTokenError:
        return None
    query = (
        sa.select(visitors.c.contact_id)
        .join(contacts, contacts.c.id == visitors.c.contact_id)
        .where(
            visitors.c.token_sha256 == secret_digest(secret),
            visitors.c.expires_at > now,
            contacts.c.erased_at.is_(None),
        )
    )
    found: int | None = conn.execute(query).scalar()
    return found


def page_path(raw: object) -> str | None:
    """The path of a viewed page, query string and fragment dropped; None if `raw` is not one."""
    if not isinstance(raw, str):
        return None
    path = raw.split("#", 1)[0].split("?", 1)[0]
    if not path.startswith("/") or path.startswith("//") or len(path) > MAX_PATH:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return None
    return path


def record_view(conn: Connection, path: str, contact_id: int | None, *, now: datetime) -> None:
    """Count a view of `path` today (UTC); for a known visitor, also store `page.viewed`."""
    column = "identified" if contact_id is not None else "anonymous"
    insert = dialect_insert(conn, page_view_counts).values(
        day=now.date(),
        path=path,
        anonymous=int(contact_id is None),
        identified=int(contact_id is not None),
    )
    counted = {column: page_view_counts.c[column] + 1}
    conn.execute(insert.on_conflict_do_update(index_elements=["day", "path"], set_=counted))
    if contact_id is not None:  # every view counts, so each has its own key
        event = NewEvent(VIEWED, contact_id, now, f"page:{uuid.uuid4().hex}", {"path": path}, "web")
        store_events(conn, [event], now=now)


def forget_visitors(conn: Connection, contact_id: int) -> None:
    conn.execute(visitors.delete().where(visitors.c.contact_id == contact_id))


def page_view_report(
    conn: Connection, *, since: date | None = None, until: date | None = None
) -> list[dict[str, object]]:
    """Views per path over the days from `since` up to and including `until` (UTC days),
    most viewed first: by known visitors, by everyone else, and both."""
    anonymous = sa.func.sum(page_view_counts.c.anonymous)
    identified = sa.func.sum(page_view_counts.c.identified)
    query = sa.select(page_view_counts.c.path, anonymous, identified).group_by(
        page_view_counts.c.path
    )
    if since is not None:
        query = query.where(page_view_counts.c.day >= since)
    if until is not None:
        query = query.where(page_view_counts.c.day <= until)
    rows = [
        {"path": path, "identified": known, "anonymous": other, "views": known + other}
        for path, other, known in ((p, int(o), int(k)) for p, o, k in conn.execute(query))
    ]
    return sorted(rows, key=lambda r: (-int(r["views"]), str(r["path"])))
