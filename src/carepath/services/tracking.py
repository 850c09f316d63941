"""Recording opens and clicks from tracking tokens, telling people from machines.

Security scanners follow every link of a message as it arrives, and privacy
proxies fetch images for the reader; neither is a person engaging. A request
is counted as a machine's (`machine: true` on the event) when it is a HEAD
request, comes within seconds of delivery, or names a known proxy or scanner
in its User-Agent. Reports count human engagement apart from it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from carepath.channels.links import InvalidTokenError, LinkSigner
from carepath.db.schema import outbox
from carepath.services.events import NewEvent, store_events

# Faster than a person opens a message after it arrives.
MACHINE_WINDOW = timedelta(seconds=5)
MACHINE_AGENTS = re.compile(
    r"GoogleImageProxy|YahooMailProxy|ggpht\.com|Barracuda|Mimecast|Proofpoint|"
    r"Symantec|MessageLabs|Forcepoint|Trend ?Micro|Microsoft Office Protocol|"
    r"python-requests|curl/|Wget|HeadlessChrome|bot\b|spider|crawler",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Visit:
    """One request to a tracking URL, as the HTTP layer saw it."""

    method: str
    user_agent: str | None


class UnknownLinkError(LookupError):
    """The token is not ours, was tampered with, or names nothing we still have."""


@dataclass(frozen=True)
class Click:
    url: str  # where the link in the message pointed
    contact_id: int  # to whom the message went
    machine: bool  # a scanner's or a proxy's request, not a person's


def record_click(
    conn: sa.Connection, links: LinkSigner, token: str, visit: Visit, *, now: datetime
) -> Click:
    """The link that was in the message at that place; an `email.clicked` event stored."""
    message_id, _, index_text = _read(links, "click", token).rpartition("#")
    row = _message(conn, message_id)
    targets = row.links or []
    if not index_text.isdigit() or int(index_text) >= len(targets):
        raise UnknownLinkError("the message has no such link")
    index = int(index_text)
    target = targets[index]
    machine = _machine(row, visit, now)
    data: dict[str, object] = {"outbox_id": row.id, "link": index, "machine": machine}
    if target.get("tag"):
        data["tag"] = target["tag"]
    _store(conn, row, "email.clicked", data, now)
    return Click(str(target["url"]), row.contact_id, machine)


def record_open(
    conn: sa.Connection, links: LinkSigner, token: str, visit: Visit, *, now: datetime
) -> None:
    row = _message(conn, _read(links, "open", token))
    data = {"outbox_id": row.id, "machine": _machine(row, visit, now)}
    _store(conn, row, "email.opened", data, now)


def _read(links: LinkSigner, purpose: str, token: str) -> str:
    try:
        return links.read(purpose, token)
    except InvalidTokenError:
        raise UnknownLinkError("not a valid tracking token") from None


def _message(conn: sa.Connection, message_id: str) -> Any:
    row = conn.execute(
        sa.select(outbox.c.id, outbox.c.contact_id, outbox.c.links, outbox.c.sent_at).where(
            outbox.c.message_id == message_id
        )
    ).first()
    if row is None:
        raise UnknownLinkError("the message is no longer known")
    return row


def _machine(row: Any, visit: Visit, now: datetime) -> bool:
    if visit.method.upper() == "HEAD":
        return True
    if visit.user_agent and MACHINE_AGENTS.search(visit.user_agent):
        return True
    return row.sent_at is not None and now - row.sent_at < MACHINE_WINDOW


def _store(
    conn: sa.Connection, row: Any, kind: str, data: dict[str, object], now: datetime
) -> None:
    # Every open and click counts (totals as well as uniques), so each has its own key.
    key = f"outbox:{row.id}:{kind}:{uuid.uuid4().hex}"
    store_events(conn, [NewEvent(kind, row.contact_id, now, key, data, "tracking")], now=now)
