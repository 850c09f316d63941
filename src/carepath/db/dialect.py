"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, column, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
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


def bulk_update(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    match: Sequence[str] = ("id",),
    constants: Mapping[str, Any] | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> None:
    """UPDATE many rows, each with its own values, matched on the `match` columns.

    PostgreSQL: one statement joining a `jsonb_to_recordset` of all rows.
    SQLite: executemany, which its driver runs in C without round trips.
    """
    if not rows:
        return
    columns = list(rows[0])
    constants = dict(constants or {})
    if conn.dialect.name != "postgresql":
        stmt = (
            table.update()
            .where(*(table.c[c] == bindparam(f"b_{c}") for c in match), *where)
            .values({c: bindparam(f"b_{c}") for c in columns if c not in match} | constants)
        )
        conn.execute(stmt, [{f"b_{c}": row[c] for c in columns} for row in rows])
        return
    payload = [{c: _json_ready(row[c]) for c in columns} for row in rows]
    recordset = (
        func.jsonb_to_recordset(bindparam("b_rows", payload, type_=JSONB))
        .table_valued(*(column(c, table.c[c].type) for c in columns))
        .render_derived(name="v", with_types=True)
    )
    stmt = (
        table.update()
        .where(*(table.c[c] == recordset.c[c] for c in match), *where)
        .values({c: recordset.c[c] for c in columns if c not in match} | constants)
    )
    conn.execute(stmt)


def _json_ready(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value
