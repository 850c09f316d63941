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
    # executemany + RETURNING: SQLAlchemy batches it into multi-row statements
    # ("insertmanyvalues") on both dialects, with one cached compiled form.
    result = conn.execute(stmt.returning(table.c[returning]), list(rows))
    return list(result.scalars().all())
