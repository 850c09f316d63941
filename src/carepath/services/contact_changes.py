"""Writing what journeys change on contacts: only the fields an update step touched.

A batch never rewrites a whole contact from the copy it read, so a change
committed by someone else in between (an import, another worker) survives.
Custom attributes are merged into the JSON in SQL (merge-patch semantics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import contacts
from carepath.db.types import Json
from carepath.domain.fields import COLUMN_FIELDS
from carepath.domain.runs import UpdateContact


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
                self.columns[name] = value
            else:
                self.patch[name] = _json_value(value)
        if update.add_tags or update.remove_tags:
            tags = facts.get("tags")
            self.tags = list(tags) if isinstance(tags, list) else []

    def signature(self) -> tuple[tuple[str, ...], bool, bool]:
        return tuple(sorted(self.columns)), bool(self.patch), self.tags is not None


def _json_value(value: object) -> object:
    return value.isoformat() if isinstance(value, date | datetime) else value


def _merged_attributes(conn: Connection) -> sa.ColumnElement[Any]:
    patch = sa.bindparam("b_patch", type_=Json)
    if conn.dialect.name == "postgresql":
        # Null values in the patch delete keys; attributes never store nulls.
        return sa.func.jsonb_strip_nulls(contacts.c.attributes.op("||")(patch))
    return sa.func.json_patch(contacts.c.attributes, patch)


def write_contact_changes(
    conn: Connection, changes: Mapping[int, ContactChange], *, now: datetime
) -> None:
    """One executemany per shape of change (usually one per update step in the batch)."""
    groups: dict[tuple[tuple[str, ...], bool, bool], list[int]] = defaultdict(list)
    for contact_id, change in changes.items():
        groups[change.signature()].append(contact_id)
    for (columns, has_patch, has_tags), ids in groups.items():
        values: dict[str, Any] = {c: sa.bindparam(f"b_{c}") for c in columns}
        values["updated_at"] = now
        if has_patch:
            values["attributes"] = _merged_attributes(conn)
        if has_tags:
            values["tags"] = sa.bindparam("b_tags", type_=contacts.c.tags.type)
        params = []
        for contact_id in ids:
            change = changes[contact_id]
            row: dict[str, Any] = {"b_id": contact_id}
            row.update({f"b_{c}": v for c, v in change.columns.items()})
            if has_patch:
                row["b_patch"] = change.patch
            if has_tags:
                row["b_tags"] = change.tags
            params.append(row)
        conn.execute(
            contacts.update().where(contacts.c.id == sa.bindparam("b_id")).values(values), params
        )
