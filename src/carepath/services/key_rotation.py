"""Re-sealing stored values under the keyring's current key, online, in batches.

Each batch is a short transaction that locks its rows (FOR UPDATE on
PostgreSQL; SQLite's write lock), reads the raw sealed values, re-seals those
under an older key and writes them back: a write by a worker or the API to
the same rows waits for the batch, or lands before it and is re-sealed with
it, so nothing written meanwhile is lost. Values already under the current
key are left alone, so a rotation that stops can simply be run again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, Table

from carepath.db.schema import contacts, metadata
from carepath.db.types import Sealed
from carepath.domain.fields import FieldClass
from carepath.protection.keyring import Keyring, active_keyring
from carepath.protection.sealing import PREFIX, seal, sealed_key_id, unseal
from carepath.services.catalog_store import build_current

BATCH = 500
ATTRIBUTE_PURPOSE = "contacts.attributes."  # custom identifier attributes, sealed one by one


@dataclass
class RotationDone:
    resealed: Counter[str] = field(default_factory=Counter)  # per table.column
    rows: int = 0  # rows looked at


def sealed_columns() -> Iterator[tuple[Table, list[str]]]:
    """Every table with sealed columns, and those columns."""
    for table in metadata.sorted_tables:
        names = [c.name for c in table.columns if isinstance(c.type, Sealed)]
        if names:
            yield table, names


def rotate_sealed_values(
    engine: Engine, *, keyring: Keyring | None = None, batch: int = BATCH
) -> RotationDone:
    keyring = keyring or active_keyring()
    done = RotationDone()
    with engine.connect() as conn:
        schema = build_current(conn).catalog.schema
    identifiers = sorted(n for n, s in schema.custom.items() if s.klass is FieldClass.IDENTIFIER)
    for table, names in sealed_columns():
        (key,) = table.primary_key.columns
        after: Any = None
        while True:
            with engine.begin() as conn:
                raw = [sa.type_coerce(table.c[n], sa.Text).label(n) for n in names]
                extra = [contacts.c.attributes] if table is contacts else []
                query = sa.select(key, *raw, *extra).order_by(key).limit(batch)
                if after is not None:
                    query = query.where(key > after)
                rows = conn.execute(query.with_for_update()).all()
                if not rows:
                    break
                updates = _resealed_rows(table, names, rows, keyring, done, identifiers=identifiers)
                if updates:
                    _write(conn, table, updates)
                after = rows[-1][0]
                done.rows += len(rows)
    return done


def _resealed_rows(
    table: Table,
    names: list[str],
    rows: Sequence[Any],
    keyring: Keyring,
    done: RotationDone,
    *,
    identifiers: Sequence[str],
) -> list[dict[str, Any]]:
    updates = []
    for row in rows:
        values: dict[str, Any] = {}
        for name in names:
            token = row._mapping[name]
            if token is not None and sealed_key_id(token) != keyring.current:
                purpose = table.c[name].type.purpose  # type: ignore[attr-defined]
                values[name] = seal(unseal(token, purpose, keyring), purpose, keyring)
                done.resealed[f"{table.name}.{name}"] += 1
        if table is contacts:
            attributes = _resealed_attributes(row.attributes or {}, keyring, done, identifiers)
            if attributes is not None:
                values["attributes"] = attributes
        if values:
            updates.append({"b_key": row[0], **{f"b_{k}": v for k, v in values.items()}})
    return updates


def _resealed_attributes(
    attributes: dict[str, Any], keyring: Keyring, done: RotationDone, identifiers: Sequence[str]
) -> dict[str, Any] | None:
    """The custom identifier fields sealed under the current key: re-sealed, or sealed
    for the first time when stored before the field was declared an identifier. Other
    fields are never touched, whatever they look like."""
    changed = dict(attributes)
    for name in identifiers:
        value = attributes.get(name)
        if value is None:
            continue
        purpose = ATTRIBUTE_PURPOSE + name
        key_id = sealed_key_id(value) if isinstance(value, str) else None
        if key_id is None:
            changed[name] = seal(json.dumps(value), purpose, keyring)
        elif key_id != keyring.current:
            changed[name] = seal(unseal(value, purpose, keyring), purpose, keyring)
        else:
            continue
        done.resealed["contacts.attributes"] += 1
    return changed if changed != attributes else None


def _write(conn: sa.Connection, table: Table, updates: list[dict[str, Any]]) -> None:
    """One UPDATE per set of changed columns; values are written as they are (already sealed)."""
    (key,) = table.primary_key.columns
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for update in updates:
        groups.setdefault(tuple(sorted(k for k in update if k != "b_key")), []).append(update)
    for columns, group in groups.items():
        values: dict[str, Any] = {}
        for bound in columns:
            name = bound[2:]
            type_: Any = table.c[name].type if name == "attributes" else sa.Text()
            values[name] = sa.bindparam(bound, type_=type_)
        conn.execute(table.update().where(key == sa.bindparam("b_key")).values(values), group)


def key_usage(engine: Engine, keyring: Keyring | None = None) -> Counter[str]:
    """How many stored values each key of the keyring seals (custom attributes: rows);
    `unknown` counts values sealed with a key the keyring no longer has."""
    keyring = keyring or active_keyring()
    used: Counter[str] = Counter()
    with engine.connect() as conn:
        for table, names in sealed_columns():
            for name in names:
                text = sa.type_coerce(table.c[name], sa.Text)
                used.update(_count_by_key(conn, table, text, keyring, prefix=""))
        attributes = sa.cast(contacts.c.attributes, sa.Text)
        used.update(_count_by_key(conn, contacts, attributes, keyring, prefix="%"))
    return +used


def _count_by_key(
    conn: sa.Connection, table: Table, text: Any, keyring: Keyring, *, prefix: str
) -> Counter[str]:
    known = {k: text.like(f"{prefix}{PREFIX}:{k}:%") for k in keyring.keys}
    counts = [sa.func.count(sa.case((like, 1))).label(k) for k, like in known.items()]
    sealed = text.like(f"{prefix}{PREFIX}:%")
    unknown = sa.func.count(sa.case((sa.and_(sealed, *(~like for like in known.values())), 1)))
    row = conn.execute(sa.select(*counts, unknown.label("unknown")).select_from(table)).one()
    return Counter(dict(row._mapping))
