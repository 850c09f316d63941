"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection


def insert_ignoring_conflicts(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, returning: str | None = None
) -> list[Any]:
    """INSERT … ON CONFLICT DO NOTHING; returns the `returning` column of rows inserted."""
    if not rows:
        return []
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = module.insert(table).on_conflict_do_nothing()
    if returning is None:
        conn.execute(stmt, list(rows))
        return []
    # RETURNING with executemany needs one statement per row on SQLite; use a
    # multi-VALUES insert instead, which both dialects accept with RETURNING.
    inserted: list[Any] = []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        result = conn.execute(stmt.values(list(chunk)).returning(table.c[returning]))
        inserted.extend(result.scalars().all())
    return inserted
