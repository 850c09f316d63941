"""Segment membership, materialised in `segment_members` and kept current.

Three ways membership is brought up to date, all with the same two
set-oriented statements per segment (DELETE the members that no longer
qualify, INSERT the contacts that newly do, both RETURNING who moved):

- a full recount, when a segment is applied or changed, and on schedule for
  segments that move with time alone (ages, "no visit for 90 days");
- a re-check of the contacts queued in `segment_checks` (services/segment_checks.py),
  in batches, whenever their facts changed;
- both record each move as a `segment.entered` / `segment.left` event, so
  workflows and other segments react to them.

Segments are processed in dependency order (a segment that tests `in_segment`
after the one it names), so one pass leaves every level consistent.
Erased contacts belong to no segment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.condition_sql import compile_condition
from carepath.db.dialect import dialect_insert, id_in, ids_table
from carepath.db.schema import (
    contacts,
    events,
    segment_checks,
    segment_members,
    segment_refreshes,
)
from carepath.domain.access import Principal
from carepath.domain.conditions import depends_on_time, referenced_memberships
from carepath.domain.fields import parse_datetime
from carepath.domain.resources import Kind, SegmentDef
from carepath.errors import NotFound
from carepath.services.access import require_all_contacts
from carepath.services.catalog_store import CatalogCache, CurrentCatalog
from carepath.services.event_interest import arrives_processed
from carepath.services.event_routing import event_routing
from carepath.services.segment_checks import mark_contacts

ENTERED = "segment.entered"
LEFT = "segment.left"
EVENT_COLUMNS = [
    "idempotency_key", "type", "contact_id", "occurred_at", "received_at", "data", "source",
    "chain_depth", "processed_at",
]  # fmt: skip


@dataclass
class Moves:
    """Who entered and who left, per segment."""

    entered: dict[str, list[int]] = field(default_factory=dict)
    left: dict[str, list[int]] = field(default_factory=dict)

    def count(self) -> int:
        return sum(map(len, self.entered.values())) + sum(map(len, self.left.values()))


def segment_order(segments: Mapping[str, SegmentDef]) -> list[SegmentDef]:
    """Segments after those they name with in_segment (validation refuses cycles)."""
    ordered: list[SegmentDef] = []
    placed: set[str] = set()

    def place(name: str, path: tuple[str, ...]) -> None:
        if name in placed or name not in segments or name in path:
            return
        for kind, other in sorted(referenced_memberships(segments[name].condition)):
            if kind == "segment":
                place(other, (*path, name))
        placed.add(name)
        ordered.append(segments[name])

    for name in sorted(segments):
        place(name, ())
    return ordered


def recount(
    conn: Connection,
    segment: SegmentDef,
    *,
    now: datetime,
    only: Sequence[int] | None = None,
    moves: Moves | None = None,
) -> Moves:
    """Bring one segment's membership up to date (for the contacts `only`, or everyone)."""
    moves = moves or Moves()
    name = segment.name
    qualifies = sa.and_(
        contacts.c.erased_at.is_(None),
        compile_condition(segment.condition, dialect=conn.dialect.name, now=now),
    )
    if only is None and conn.dialect.name == "postgresql":
        entered, left = _recount_in_one_statement(conn, name, qualifies, now)
    else:
        entered, left = _recount_in_two_statements(conn, name, qualifies, now, only)
    _record_moves(conn, name, entered, left, now=now)
    moves.entered.setdefault(name, []).extend(entered)
    moves.left.setdefault(name, []).extend(left)
    return moves


_MEMBER_COLUMNS = ["segment_name", "contact_id", "entered_at"]


def _recount_in_one_statement(
    conn: Connection, name: str, qualifies: sa.ColumnElement[bool], now: datetime
) -> tuple[list[int], list[int]]:
    """PostgreSQL: the condition evaluated once (a materialised CTE), then both moves.

    The DELETE and the INSERT see the same snapshot and touch different rows:
    the members not in the set leave, the set is inserted (members already in
    are skipped by ON CONFLICT).
    """
    wanted = sa.select(contacts.c.id).where(qualifies).cte("qualifying").prefix_with("MATERIALIZED")
    kept = sa.exists().where(wanted.c.id == segment_members.c.contact_id)
    leaving = (
        segment_members.delete()
        .where(segment_members.c.segment_name == name, ~kept)
        .returning(segment_members.c.contact_id)
        .cte("leaving")
    )
    joining = sa.select(
        sa.literal(name, segment_members.c.segment_name.type),
        wanted.c.id,
        sa.literal(now, segment_members.c.entered_at.type),
    )
    entering = (
        dialect_insert(conn, segment_members)
        .from_select(_MEMBER_COLUMNS, joining)
        .on_conflict_do_nothing()
        .returning(segment_members.c.contact_id)
        .cte("entering")
    )
    moved = sa.union_all(
        sa.select(sa.literal(True).label("entered"), entering.c.contact_id),
        sa.select(sa.literal(False), leaving.c.contact_id),
    )
    entered: list[int] = []
    left: list[int] = []
    for is_entry, contact_id in conn.execute(moved):
        (entered if is_entry else left).append(contact_id)
    return entered, left


def _recount_in_two_statements(
    conn: Connection,
    name: str,
    qualifies: sa.ColumnElement[bool],
    now: datetime,
    only: Sequence[int] | None,
) -> tuple[list[int], list[int]]:
    """DELETE who no longer qualifies, then INSERT who newly does (for `only`, or everyone)."""
    still = sa.exists().where(contacts.c.id == segment_members.c.contact_id, qualifies)
    leaving = segment_members.delete().where(segment_members.c.segment_name == name, ~still)
    if only is not None:
        leaving = leaving.where(id_in(conn, segment_members.c.contact_id, only))
    left = conn.execute(leaving.returning(segment_members.c.contact_id)).scalars().all()

    # Members already in are skipped by ON CONFLICT, not by NOT EXISTS: an anti-join on
    # the table being filled is planned from its old statistics (an empty table: a
    # nested loop over a growing heap) and RETURNING gives exactly the rows inserted.
    joining = sa.select(
        sa.literal(name, segment_members.c.segment_name.type),
        contacts.c.id,
        sa.literal(now, segment_members.c.entered_at.type),
    ).where(qualifies)
    if only is not None:
        joining = joining.where(id_in(conn, contacts.c.id, only))
    statement = dialect_insert(conn, segment_members).from_select(_MEMBER_COLUMNS, joining)
    returning = statement.on_conflict_do_nothing().returning(segment_members.c.contact_id)
    entered = conn.execute(returning).scalars().all()
    return list(entered), list(left)


def _record_moves(
    conn: Connection, name: str, entered: Sequence[int], left: Sequence[int], *, now: datetime
) -> None:
    """One INSERT … SELECT per kind of move, from the ids alone (no row travels twice)."""
    routing = event_routing(conn)
    interest, inputs = routing.interest, routing.segments
    stamp = sa.literal(now, events.c.occurred_at.type)
    build = sa.func.jsonb_build_object if conn.dialect.name == "postgresql" else sa.func.json_object
    for kind, word, ids in ((ENTERED, "entered", entered), (LEFT, "left", left)):
        if not ids:
            continue
        moved = ids_table(conn, ids)
        key = (
            sa.literal(f"segment:{name}:")
            + sa.cast(moved.c.value, sa.String)
            + sa.literal(f":{word}:{now.isoformat()}")
        )
        processed = stamp if arrives_processed(interest, kind) else sa.null()
        rows = sa.select(
            key, sa.literal(kind), moved.c.value, stamp, stamp, build("segment", name),
            sa.literal("segment"), sa.literal(0), processed,
        ).where(moved.c.value.is_not(None))  # fmt: skip
        # (SQLite reads `FROM t ON CONFLICT` as a join without a WHERE before ON.)
        insert = dialect_insert(conn, events).from_select(EVENT_COLUMNS, rows)
        conn.execute(insert.on_conflict_do_nothing())
        if kind in inputs.event_types:  # another segment tests in_segment: re-check them
            mark_contacts(conn, ids, now=now)


# ------------------------------------------------------------ full recounts


@dataclass(frozen=True)
class StaleSegment:
    segment: SegmentDef
    version: int


def stale_segments(
    conn: Connection, current: CurrentCatalog, *, now: datetime, interval: timedelta
) -> list[StaleSegment]:
    """Segments never counted at their current version, or moving with time and due again."""
    refreshed = {
        row.segment_name: row
        for row in conn.execute(
            sa.select(
                segment_refreshes.c.segment_name,
                segment_refreshes.c.version,
                segment_refreshes.c.time_relative,
                segment_refreshes.c.refreshed_at,
            )
        )
    }
    stale: list[StaleSegment] = []
    for segment in segment_order(current.catalog.segments):
        version = current.versions[(Kind.SEGMENT, segment.name)].version
        last = refreshed.get(segment.name)
        if (
            last is None
            or last.version != version
            or (last.time_relative and last.refreshed_at + interval <= now)
        ):
            stale.append(StaleSegment(segment, version))
    return stale


def recount_fully(
    conn: Connection, stale: StaleSegment, *, now: datetime, moves: Moves | None = None
) -> Moves:
    """A full recount of one segment, recorded with its version and time."""
    moves = recount(conn, stale.segment, now=now, moves=moves)
    row = {
        "version": stale.version,
        "time_relative": depends_on_time(stale.segment.condition),
        "refreshed_at": now,
    }
    updated = conn.execute(
        segment_refreshes.update()
        .where(segment_refreshes.c.segment_name == stale.segment.name)
        .values(row)
    ).rowcount
    if not updated:
        conn.execute(segment_refreshes.insert().values(segment_name=stale.segment.name, **row))
    return moves


def next_refresh(conn: Connection, interval: timedelta) -> datetime | None:
    """When the earliest time-relative segment is due for its next recount."""
    last = conn.execute(
        sa.select(sa.func.min(segment_refreshes.c.refreshed_at)).where(
            segment_refreshes.c.time_relative
        )
    ).scalar()
    if last is None:
        return None
    return parse_datetime(last) + interval  # an aggregate: text on SQLite


# ------------------------------------------------------------ queued re-checks


def take_queued(conn: Connection, limit: int) -> list[int]:
    """Remove and return up to `limit` queued contacts (others' claims are skipped)."""
    oldest = sa.select(segment_checks.c.contact_id).order_by(segment_checks.c.contact_id)
    oldest = oldest.limit(limit)
    if conn.dialect.name == "postgresql":
        oldest = oldest.with_for_update(skip_locked=True)
    taken = segment_checks.delete().where(segment_checks.c.contact_id.in_(oldest.scalar_subquery()))
    return list(conn.execute(taken.returning(segment_checks.c.contact_id)).scalars())


def recheck(
    conn: Connection, segments: Mapping[str, SegmentDef], ids: Sequence[int], *, now: datetime
) -> Moves:
    """Re-check some contacts against every segment, in dependency order."""
    moves = Moves()
    if ids:
        for segment in segment_order(segments):
            recount(conn, segment, now=now, only=ids, moves=moves)
    return moves


# ------------------------------------------------------------ the worker's share


@dataclass(frozen=True)
class SegmentWork:
    recounted: int  # segments counted in full
    checked: int  # queued contacts re-checked
    moves: int  # entries and exits recorded

    @property
    def done(self) -> int:
        return self.recounted + self.checked


def update_segments(
    engine: sa.Engine, cache: CatalogCache, *, now: datetime, batch_size: int, interval: timedelta
) -> SegmentWork:
    """Recount the stale segments, then re-check one batch of queued contacts.

    Each recount and each batch is its own transaction, so a failure loses nothing:
    the segment stays stale, the contacts stay queued.
    """
    with engine.connect() as conn:
        current = cache.current(conn)
        stale = stale_segments(conn, current, now=now, interval=interval)
    moved = 0
    for segment in stale:
        with engine.begin() as conn:
            moved += recount_fully(conn, segment, now=now).count()
    with engine.begin() as conn:
        ids = take_queued(conn, batch_size)
        moved += recheck(conn, current.catalog.segments, ids, now=now).count()
    return SegmentWork(len(stale), len(ids), moved)


# ------------------------------------------------------------ reading


def member_count(conn: Connection, current: CurrentCatalog, name: str) -> int:
    _known(current, name)
    query = sa.select(sa.func.count()).where(segment_members.c.segment_name == name)
    return int(conn.execute(query).scalar_one())


def members_query(
    conn: Connection, current: CurrentCatalog, name: str, *, who: Principal, now: datetime
) -> sa.Select[Any]:
    """The members' contact rows (id and identifiers), in id order: an export of identities,
    for roles that see every contact."""
    require_all_contacts(conn, who, now=now)
    _known(current, name)
    return (
        sa.select(contacts.c.id, contacts.c.external_id, contacts.c.email)
        .join(segment_members, segment_members.c.contact_id == contacts.c.id)
        .where(segment_members.c.segment_name == name)
        .order_by(contacts.c.id)
    )


def _known(current: CurrentCatalog, name: str) -> None:
    if name not in current.catalog.segments:
        raise NotFound(f"no segment named {name!r}")
