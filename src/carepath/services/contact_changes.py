"""Writing what journeys change on contacts: only the fields an update step touched.

A batch never rewrites a whole contact from the copy it read, so a change
committed by someone else in between (an import, another worker) survives.
Custom attributes are merged into the JSON in SQL (merge-patch semantics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from carepath.db.dialect import json_list_edited, recordset_of
from carepath.db.schema import contacts
from carepath.db.types import Json
from carepath.domain.fields import COLUMN_FIELDS, json_value
from carepath.domain.runs import UpdateContact
from carepath.protection.identifiers import with_indexes
from carepath.services.segment_checks import mark_contacts, mark_contacts_where


@dataclass
class ContactChange:
    columns: dict[str, object] = field(default_factory=dict)
    patch: dict[str, object] = field(default_factory=dict)  # None removes a key
    tags: list[str] | None = None

    def record(self, update: UpdateContact, facts: Mapping[str, object]) -> None:
        """Note an update step's changes; tags come from the contact's facts after the turn."""
        for name in (*update.set, *update.unset):
            value = update.set.get(name)  # the step's own value; None for unset
            if name in COLUMN_FIELDS:
                self.columns.update(with_indexes({name: value}))
            else:
                self.patch[name] = json_value(value)
        if update.add_tags or update.remove_tags:
            tags = facts.get("tags")
            self.tags = list(tags) if isinstance(tags, list) else []

    def signature(self) -> tuple[tuple[str, ...], bool, bool]:
        return tuple(sorted(self.columns)), bool(self.patch), self.tags is not None


def write_contact_changes(
    conn: Connection, changes: Mapping[int, ContactChange], *, now: datetime
) -> None:
    """One statement per shape of change (usually one per update step in the batch)."""
    groups: dict[tuple[tuple[str, ...], bool, bool], list[int]] = defaultdict(list)
    for contact_id, change in changes.items():
        groups[change.signature()].append(contact_id)
    write = _write_group_postgres if conn.dialect.name == "postgresql" else _write_group_sqlite
    for (columns, has_patch, has_tags), ids in groups.items():
        rows = [
            _group_row(contact_id, changes[contact_id], has_patch, has_tags) for contact_id in ids
        ]
        write(conn, rows, columns, has_patch=has_patch, has_tags=has_tags, now=now)


def write_shared_change(
    conn: Connection,
    which: sa.ColumnElement[bool],
    updates: Sequence[UpdateContact],
    *,
    now: datetime,
) -> None:
    """The same update steps applied to the contacts `which` selects, in one statement.

    Tags are edited in SQL from each contact's own list, like the engine does in memory.
    """
    change = ContactChange()
    tags: Any = contacts.c.tags
    for update in updates:
        change.record(update, {})
        if update.add_tags or update.remove_tags:
            tags = json_list_edited(conn, tags, add=update.add_tags, remove=update.remove_tags)
    values: dict[str, Any] = {**change.columns, "updated_at": now}
    if change.patch:
        values["attributes"] = _merged_attributes(conn, sa.bindparam(None, change.patch, Json))
    if change.tags is not None:
        values["tags"] = tags
    conn.execute(contacts.update().where(which).values(values))
    mark_contacts_where(conn, which, now=now)


def _merged_attributes(conn: Connection, patch: Any) -> Any:
    """The stored attributes with `patch` merged in; a null in the patch removes the key."""
    if conn.dialect.name == "postgresql":
        # Attributes never store nulls, so stripping them after the merge removes exactly those.
        return sa.func.jsonb_strip_nulls(contacts.c.attributes.op("||")(patch))
    return sa.func.json_patch(contacts.c.attributes, patch)  # RFC 7386 merge patch


def _group_row(
    contact_id: int, change: ContactChange, has_patch: bool, has_tags: bool
) -> dict[str, Any]:
    row: dict[str, Any] = {"id": contact_id, **change.columns}
    if has_patch:
        row["patch"] = change.patch
    if has_tags:
        row["tags"] = change.tags
    return row


def _write_group_postgres(
    conn: Connection,
    rows: list[dict[str, Any]],
    columns: tuple[str, ...],
    *,
    has_patch: bool,
    has_tags: bool,
    now: datetime,
) -> None:
    """One UPDATE … FROM jsonb_to_recordset; the patch is merged into the stored JSON."""
    names = ["id", *columns, *(["patch"] if has_patch else []), *(["tags"] if has_tags else [])]
    v = recordset_of(contacts, rows, names, types={"patch": JSONB()})
    values: dict[str, Any] = {c: v.c[c] for c in columns}
    values["updated_at"] = now
    if has_patch:
        values["attributes"] = _merged_attributes(conn, v.c.patch)
    if has_tags:
        values["tags"] = v.c.tags
    conn.execute(contacts.update().where(contacts.c.id == v.c.id).values(values))
    mark_contacts(conn, [row["id"] for row in rows], now=now)


def _write_group_sqlite(
    conn: Connection,
    rows: list[dict[str, Any]],
    columns: tuple[str, ...],
    *,
    has_patch: bool,
    has_tags: bool,
    now: datetime,
) -> None:
    """executemany; json_patch merges with RFC 7386 semantics (null deletes a key)."""
    values: dict[str, Any] = {c: sa.bindparam(f"b_{c}") for c in columns}
    values["updated_at"] = now
    if has_patch:
        values["attributes"] = _merged_attributes(conn, sa.bindparam("b_patch", type_=Json))
    if has_tags:
        values["tags"] = sa.bindparam("b_tags", type_=contacts.c.tags.type)
    conn.execute(
        contacts.update().where(contacts.c.id == sa.bindparam("b_id")).values(values),
        [{f"b_{k}": value for k, value in row.items()} for row in rows],
    )
    mark_contacts(conn, [row["id"] for row in rows], now=now)
