"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    literal,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Row
from sqlalchemy.types import NullType, TypeEngine

from carepath.db.types import Sealed


def execute_in_index_order(conn: Connection, statement: Any) -> list[Row[Any]]:
    """Execute a claim (`ORDER BY … LIMIT … FOR UPDATE SKIP LOCKED`) reading its index in order.

    PostgreSQL: while the statistics still describe the table before a burst of
    new rows (autovacuum analyzes it only later), the planner reckons a handful
    of due rows and reads and sorts all of them instead, every claim: 130 ms per
    claim of 500 with 100,000 messages due. Sorting is switched off for this one
    statement; the index gives the order and the scan stops at the limit.
    """
    if conn.dialect.name != "postgresql":
        return list(conn.execute(statement).all())
    conn.exec_driver_sql("SET LOCAL enable_sort = off")
    rows = list(conn.execute(statement).all())
    conn.exec_driver_sql("SET LOCAL enable_sort = on")  # (a failure rolls the setting back)
    return rows


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING on both databases."""
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def bulk_insert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    ignore_conflicts: bool = False,
    returning: str | tuple[str, ...] | None = None,
) -> list[Any]:
    """INSERT many rows; optionally ON CONFLICT DO NOTHING, returning a column of rows inserted
    (or, for a tuple of names, those columns of each row inserted).

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
    names = (returning,) if isinstance(returning, str) else returning
    if names:
        stmt = stmt.returning(*(table.c[n] for n in names))
    if conn.dialect.name == "postgresql":
        result = conn.execute(stmt)
    else:
        result = conn.execute(stmt, list(rows))
    if returning is None:
        return []
    return list(result.scalars().all()) if isinstance(returning, str) else list(result.all())


def insert_ignoring_conflicts(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    returning: str | tuple[str, ...] | None = None,
) -> list[Any]:
    """INSERT … ON CONFLICT DO NOTHING; returns the `returning` column of rows inserted."""
    return bulk_insert(conn, table, rows, ignore_conflicts=True, returning=returning)


def id_in(conn: Connection, col: ColumnElement[Any], ids: Sequence[int]) -> ColumnElement[bool]:
    """`col` is one of `ids`, as one parameter whatever their number.

    A statement with one array (PostgreSQL) or one JSON text (SQLite) stays the
    same text for any batch size, so it is compiled and parsed once.
    """
    values = [int(i) for i in ids]
    if conn.dialect.name == "postgresql":
        return col == any_(_bigint_array(values))
    listed: Any = select(column("value")).select_from(func.json_each(json.dumps(values)))
    return col.in_(listed.scalar_subquery())


def _bigint_array(values: Sequence[int]) -> ColumnElement[Any]:
    """A PostgreSQL `bigint[]` parameter sent as one array literal."""
    return cast(bindparam(None, _array_literal(values), type_=Text), postgresql.ARRAY(BigInteger))


def _array_literal(values: Sequence[int]) -> str:
    """The PostgreSQL array literal of `values`, such as `{1,2,3}`.

    Handed a list, the driver and SQLAlchemy would each convert and check every
    element in Python: a tenth of a worker's time for a batch of ids.
    """
    return "{" + ",".join(map(str, map(int, values))) + "}"


def ids_table(conn: Connection, ids: Sequence[int]) -> Any:
    """A one-column table (`value`) of these ids, from one parameter (see `id_in`)."""
    values = [int(i) for i in ids]
    if conn.dialect.name == "postgresql":
        unnested = func.unnest(_bigint_array(values)).table_valued(column("value", BigInteger))
        return unnested.render_derived(name="ids")  # AS ids(value)
    return func.json_each(json.dumps(values)).table_valued(column("value", BigInteger)).alias("ids")


def id_rows(dialect: str, name: str, names: Sequence[str]) -> Any:
    """A table `name` of integer columns `names`, whose values are parameters.

    The statement is the same whatever the values, so it can be built once;
    `id_rows_values` gives its parameters: one array per column on PostgreSQL,
    one JSON text of rows on SQLite (see `id_in`).
    """
    if dialect == "postgresql":
        arrays = (_id_array(name, n) for n in names)
        unnested = func.unnest(*arrays).table_valued(*(column(n, BigInteger) for n in names))
        return unnested.render_derived(name=name)  # AS name(column, …)
    rows = bindparam(f"{name}_rows", type_=Text)
    each = func.json_each(rows).table_valued(column("value")).alias(f"{name}_rows")
    values = (
        type_coerce(func.json_extract(each.c.value, f"$[{i}]"), BigInteger).label(n)
        for i, n in enumerate(names)
    )
    return select(*values).subquery(name)


def in_id_rows(
    dialect: str, col: ColumnElement[Any], name: str, names: Sequence[str], key: str
) -> ColumnElement[bool]:
    """`col` is one of the values of column `key` of `id_rows(dialect, name, names)`.

    It reads the same parameters, so a statement can use both. PostgreSQL gets the
    column's array itself: `IN (SELECT … FROM unnest(…))` may be planned as a scan
    of all of `col`'s table.
    """
    if dialect == "postgresql":
        return col == any_(_id_array(name, key))
    listed = select(id_rows(dialect, name, names).c[key])
    return col.in_(listed.scalar_subquery())


def _id_array(name: str, key: str) -> ColumnElement[Any]:
    """Column `key` of `id_rows(…, name, …)` on PostgreSQL: a `bigint[]` parameter."""
    return cast(bindparam(f"{name}_{key}", type_=Text), postgresql.ARRAY(BigInteger))


def id_rows_values(dialect: str, name: str, columns: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """The parameters of `id_rows(dialect, name, …)` for these equal-length columns."""
    if dialect == "postgresql":
        return {f"{name}_{n}": _array_literal(values) for n, values in columns.items()}
    lists = [list(map(int, values)) for values in columns.values()]
    return {f"{name}_rows": json.dumps([list(row) for row in zip(*lists, strict=True)])}


def json_rows(dialect: str, name: str, columns: Mapping[str, TypeEngine[Any]]) -> Any:
    """A table `name` of these columns from one JSON parameter `{name}_json`: a list of objects.

    Like `id_rows`, the same statement whatever the rows.
    """
    payload = bindparam(f"{name}_json", type_=Text)
    if dialect == "postgresql":
        recordset = func.jsonb_to_recordset(cast(payload, JSONB))
        typed = recordset.table_valued(*(column(n, t) for n, t in columns.items()))
        return typed.render_derived(name=name, with_types=True)  # AS name(column type, …)
    each = func.json_each(payload).table_valued(column("value")).alias(f"{name}_json")
    values = (
        type_coerce(func.json_extract(each.c.value, f"$.{n}"), t).label(n)
        for n, t in columns.items()
    )
    return select(*values).subquery(name)


def text_in(
    conn: Connection, col: ColumnElement[Any], values: Sequence[str]
) -> ColumnElement[bool]:
    """`col` is one of `values` (text), as one parameter whatever their number (see `id_in`)."""
    listed = [str(v) for v in values]
    if conn.dialect.name == "postgresql":
        # = ANY(ARRAY(SELECT unnest(…))): given the array itself, PostgreSQL 15 plans a
        # sequential scan of the table from about a thousand text values on (16 ms at
        # 100k contacts, growing with the table); through a subquery it cannot see the
        # array's length and keeps to the index (3 ms).
        array = bindparam(None, listed, type_=postgresql.ARRAY(String))
        return col == any_(func.array(select(func.unnest(array)).scalar_subquery()))
    each: Any = select(column("value")).select_from(func.json_each(json.dumps(listed)))
    return col.in_(each.scalar_subquery())


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
    sealed = {c: t for c, t in typed.items() if isinstance(t, Sealed)}
    payload = [dict(row) for row in rows]
    for item in payload:
        for c in dated:
            value = item[c]
            if isinstance(value, datetime | date):
                item[c] = value.isoformat()
        for c, type_ in sealed.items():  # sealed here: a JSON parameter skips bind processing
            item[c] = type_.seal_value(item[c])
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


def json_list_edited(
    conn: Connection,
    current: ColumnElement[Any],
    *,
    add: Sequence[str],
    remove: Sequence[str],
) -> ColumnElement[Any]:
    """A JSON array of strings without `remove`, then with each of `add` it lacks, at the end.

    The SQL spelling of `domain.engine.tags_after`, so one statement edits the
    tags of many contacts, each from its own current list.
    """
    if conn.dialect.name == "postgresql":
        kept = current.op("-")(cast(bindparam(None, list(remove), ARRAY(Text)), ARRAY(Text)))
        added = (
            func.jsonb_array_elements_text(bindparam(None, list(add), JSONB))
            .table_valued("value", with_ordinality="n")
            .render_derived(name="a")
        )
        new = (
            select(
                func.coalesce(
                    func.jsonb_agg(postgresql.aggregate_order_by(added.c.value, added.c.n)),
                    cast(literal("[]"), JSONB),
                )
            )
            .where(~kept.op("@>", is_comparison=True)(func.jsonb_build_array(added.c.value)))
            .scalar_subquery()
        )
        return kept.op("||")(new)
    removed: Any = select(column("value")).select_from(func.json_each(json.dumps(list(remove))))
    old = func.json_each(current).table_valued("value", "key").alias("old")
    kept_old: Any = select(old.c.value, old.c.key).where(old.c.value.not_in(removed))
    again = func.json_each(current).table_valued("value").alias("again")
    still: Any = select(again.c.value).where(again.c.value.not_in(removed))
    new_ = func.json_each(json.dumps(list(add))).table_valued("value", "key").alias("new")
    joining: Any = select(new_.c.value, new_.c.key + 1_000_000).where(new_.c.value.not_in(still))
    both = union_all(kept_old, joining).subquery("both")
    ordered = select(both.c.value).order_by(both.c.key).subquery("ordered")
    return select(func.json_group_array(ordered.c.value)).scalar_subquery()


def json_member(
    conn: Connection, document: ColumnElement[Any], name: str
) -> list[ColumnElement[Any]]:
    """Columns that give one key of a JSON object, for grouping and then `json_member_value`.

    PostgreSQL: `document -> name` (jsonb, decoded by the driver). SQLite: its
    `json_type` and `json_extract`, since `json_extract` alone reads true as 1.
    """
    if conn.dialect.name == "postgresql":
        return [type_coerce(document, JSONB)[name]]
    path = "$." + json.dumps(name)
    return [func.json_type(document, path), func.json_extract(document, path)]


def json_member_value(values: Sequence[Any]) -> object:
    """The value of the key read by the columns of `json_member`."""
    if len(values) == 1:
        return values[0]
    kind, raw = values
    match kind:
        case None | "null":
            return None
        case "true" | "false":
            return kind == "true"
        case "array" | "object":
            return json.loads(raw)
    return raw


def aggregated_pairs(
    conn: Connection, first: ColumnElement[Any], second: ColumnElement[Any]
) -> ColumnElement[Any]:
    """The values of two integer columns in a group, as a list of pairs once fetched."""
    if conn.dialect.name == "postgresql":
        # The driver already returns lists of ints; typed as an ARRAY, SQLAlchemy
        # would walk every element again.
        return type_coerce(func.array_agg(postgresql.array([first, second])), NullType())
    return type_coerce(func.json_group_array(func.json_array(first, second)), JSON)
