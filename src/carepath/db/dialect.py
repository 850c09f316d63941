"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Date, DateTime, Table, bindparam, column, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine


def bulk_insert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    ignore_conflicts: bool = False,
    returning: str | None = None,
) -> list[Any]:
    """INSERT many rows; optionally ON CONFLICT DO NOTHING, returning a column of rows inserted.

    PostgreSQL: one `INSERT … SELECT … FROM jsonb_to_recordset(:rows)`: a short
    statement with one parameter, which the server plans once (a multi-row
    VALUES with thousands of parameters costs more to parse than to run).
    SQLite: executemany, or SQLAlchemy's batched multi-row form with RETURNING.
    """
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        columns = list(rows[0])
        recordset = recordset_of(table, rows, columns)
        stmt: Any = postgresql.insert(table).from_select(
            columns, select(*(recordset.c[c] for c in columns))
        )
    else:
        stmt = sqlite.insert(table)
    if ignore_conflicts:
        stmt = stmt.on_conflict_do_nothing()
    if returning is not None:
        stmt = stmt.returning(table.c[returning])
    if conn.dialect.name == "postgresql":
        result = conn.execute(stmt)
    else:
        result = conn.execute(stmt, list(rows))
    return list(result.scalars().all()) if returning is not None else []


def insert_ignoring_conflicts(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    returning: str | None = None,
) -> list[Any]:
    """INSERT … ON CONFLICT DO NOTHING; returns the `returning` column of rows inserted."""
    return bulk_insert(conn, table, rows, ignore_conflicts=True, returning=returning)


def recordset_of(
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    types: Mapping[str, TypeEngine[Any]] | None = None,
) -> Any:
    """`jsonb_to_recordset(:rows) AS v(col type, …)` over `rows` (PostgreSQL).

    Column types come from `table`, or from `types` for columns it lacks.
    """
    types = dict(types or {})
    typed = {c: types.get(c) or table.c[c].type for c in columns}
    dated = [c for c, t in typed.items() if _is_date(t)]
    payload = [dict(row) for row in rows]
    for item in payload:
        for c in dated:
            value = item[c]
            if isinstance(value, datetime | date):
                item[c] = value.isoformat()
    return (
        func.jsonb_to_recordset(bindparam("b_rows", payload, type_=JSONB))
        .table_valued(*(column(c, typed[c]) for c in columns))
        .render_derived(name="v", with_types=True)
    )


def _is_date(type_: TypeEngine[Any]) -> bool:
    impl = getattr(type_, "impl", type_)
    return isinstance(impl, Date | DateTime)


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
    recordset = recordset_of(table, rows, columns)
    stmt = (
        table.update()
        .where(*(table.c[c] == recordset.c[c] for c in match), *where)
        .values({c: recordset.c[c] for c in columns if c not in match} | constants)
    )
    conn.execute(stmt)
