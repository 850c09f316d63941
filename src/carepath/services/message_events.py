"""Keeping each message's outbox row up to date with what happened to it.

Opens, clicks, bounces, complaints and unsubscribes are stored as events (the
history); the first of each, the number of clicks and the kind of bounce are
also written on the message's outbox row in the same transaction, so that
reports aggregate the outbox alone instead of joining every event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import id_in
from carepath.db.schema import outbox

UNKNOWN_LINK = "?"  # a click event that does not say which link
MAX_LINKS = 1000  # links of one message that are counted one by one
FIRST_MOMENT = {
    ("email.opened", False): "opened_at",
    ("email.opened", True): "machine_opened_at",
    ("email.clicked", False): "clicked_at",
    ("email.complained", False): "complained_at",
    ("email.unsubscribed", False): "unsubscribed_at",
}
MESSAGE_EVENT_TYPES = frozenset(
    {"email.opened", "email.clicked", "email.bounced", "email.complained", "email.unsubscribed"}
)


class StoredEvent(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def data(self) -> Any: ...


def record_on_messages(conn: Connection, stored: Sequence[StoredEvent]) -> None:
    """Write what these new events say onto the messages they name."""
    firsts: dict[str, dict[int, datetime]] = {}
    clicks: Counter[tuple[int, str]] = Counter()  # (outbox id, link) by people
    bounces: dict[str, set[int]] = {}
    for event in stored:
        if event.type not in MESSAGE_EVENT_TYPES:
            continue
        outbox_id = event.data.get("outbox_id")
        if isinstance(outbox_id, bool) or not isinstance(outbox_id, int):
            continue
        machine = event.data.get("machine") is True
        if event.type == "email.bounced":
            kind = event.data.get("bounce")
            if kind in ("hard", "soft"):
                bounces.setdefault(kind, set()).add(outbox_id)
            continue
        column = FIRST_MOMENT.get((event.type, machine))
        if column is not None:
            seen = firsts.setdefault(column, {})
            seen[outbox_id] = min(seen.get(outbox_id, event.occurred_at), event.occurred_at)
        if event.type == "email.clicked" and not machine:
            clicks[outbox_id, _link_key(event.data.get("link"))] += 1
    for column, moments in firsts.items():
        _first_moments(conn, column, moments)
    for (outbox_id, link), count in sorted(clicks.items()):  # one lock order for every writer
        conn.execute(
            outbox.update()
            .where(outbox.c.id == outbox_id)
            .values(clicks=outbox.c.clicks + count, link_clicks=_counted(conn, link, count))
        )
    for kind in ("soft", "hard"):  # hard last: a hard bounce is kept once seen
        ids = sorted(bounces.get(kind, ()))
        if ids:
            keep_hard = sa.case((outbox.c.bounce == "hard", "hard"), else_=kind)
            conn.execute(
                outbox.update().where(id_in(conn, outbox.c.id, ids)).values(bounce=keep_hard)
            )


def _link_key(link: object) -> str:
    """A link's place in its message as a key; anything else (a click event from
    elsewhere may say anything) counts as an unknown link."""
    if isinstance(link, int) and not isinstance(link, bool) and 0 <= link < MAX_LINKS:
        return str(link)
    return UNKNOWN_LINK


def _counted(conn: Connection, link: str, count: int) -> Any:
    """The message's clicks per link with `count` more on `link` (an atomic update)."""
    stored = outbox.c.link_clicks
    if conn.dialect.name == "postgresql":
        before = sa.func.coalesce(sa.cast(stored.op("->>")(link), sa.Integer), 0)
        merged = sa.func.jsonb_build_object(sa.literal(link), before + count)
        return sa.func.coalesce(stored, sa.func.jsonb_build_object()).op("||")(merged)
    path = sa.literal(f'$."{link}"')  # a link is digits or "?": nothing to escape
    before = sa.func.coalesce(sa.func.json_extract(stored, path), 0)
    return sa.func.json_set(sa.func.coalesce(stored, "{}"), path, before + count)


def _first_moments(conn: Connection, column: str, moments: dict[int, datetime]) -> None:
    """Set `column` where it is still empty or later than the moment given."""
    by_moment: dict[datetime, list[int]] = {}
    for outbox_id, moment in moments.items():
        by_moment.setdefault(moment, []).append(outbox_id)
    target = outbox.c[column]
    for moment, ids in by_moment.items():
        conn.execute(
            outbox.update()
            .where(id_in(conn, outbox.c.id, sorted(ids)), sa.or_(target.is_(None), target > moment))
            .values({column: moment})
        )
