"""Joining and leaving lists by hand (the API), set-based, with `list.joined` / `list.left`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import id_in, insert_ignoring_conflicts
from carepath.db.schema import contacts, list_members, lists
from carepath.domain.access import Principal
from carepath.errors import InvalidInput, NotFound, Problem
from carepath.services.access import authorize, require_all_contacts
from carepath.services.events import NewEvent, store_events


def list_summaries(conn: Connection) -> list[dict[str, object]]:
    """Every list with its title and how many contacts are in it."""
    members = (
        sa.select(list_members.c.list_name, sa.func.count().label("members"))
        .group_by(list_members.c.list_name)
        .subquery()
    )
    query = (
        sa.select(lists.c.name, lists.c.title, sa.func.coalesce(members.c.members, 0))
        .outerjoin(members, members.c.list_name == lists.c.name)
        .order_by(lists.c.name)
    )
    return [{"name": n, "title": t, "members": int(c)} for n, t, c in conn.execute(query)]


def list_member_ids(
    conn: Connection, name: str, *, after: int, limit: int, who: Principal, now: datetime
) -> list[int]:
    """Members by contact id: who is on a list can be PHI, so for roles that see everyone."""
    require_all_contacts(conn, who, now=now)
    _check_list(conn, name)
    query = (
        sa.select(list_members.c.contact_id)
        .where(list_members.c.list_name == name, list_members.c.contact_id > after)
        .order_by(list_members.c.contact_id)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def join_list(
    conn: Connection,
    name: str,
    contact_ids: Sequence[int],
    *,
    now: datetime,
    source: str,
    who: Principal,
) -> int:
    """Add contacts to a list; returns how many were not in it yet."""
    _check_list(conn, name)
    wanted = sorted(set(contact_ids))
    authorize(conn, who, "contacts:write", now=now, contact_ids=wanted)
    known = set(
        conn.execute(
            sa.select(contacts.c.id).where(
                id_in(conn, contacts.c.id, wanted), contacts.c.erased_at.is_(None)
            )
        ).scalars()
    )
    missing = [i for i in wanted if i not in known]
    if missing:
        raise InvalidInput([Problem("contact_ids", f"no contact with id {i}") for i in missing])
    rows = [{"contact_id": i, "list_name": name, "joined_at": now} for i in wanted]
    joined = insert_ignoring_conflicts(conn, list_members, rows, returning="contact_id")
    store_events(conn, [_event("list.joined", name, cid, now, source) for cid in joined], now=now)
    return len(joined)


def leave_list(
    conn: Connection, name: str, contact_id: int, *, now: datetime, source: str, who: Principal
) -> bool:
    """Take a contact off a list; False if it was not on it."""
    _check_list(conn, name)
    authorize(conn, who, "contacts:write", now=now, contact_ids=[contact_id])
    removed = conn.execute(
        list_members.delete().where(
            list_members.c.list_name == name, list_members.c.contact_id == contact_id
        )
    ).rowcount
    if removed:
        store_events(conn, [_event("list.left", name, contact_id, now, source)], now=now)
    return bool(removed)


def _check_list(conn: Connection, name: str) -> None:
    if conn.execute(sa.select(lists.c.name).where(lists.c.name == name)).first() is None:
        raise NotFound(f"no list named {name!r}")


def _event(kind: str, name: str, contact_id: int, now: datetime, source: str) -> NewEvent:
    key = f"list:{name}:{contact_id}:{kind.split('.')[1]}:{now.isoformat()}"
    return NewEvent(kind, contact_id, now, key, {"list": name}, source)
