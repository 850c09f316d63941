"""Alembic environment for carepath.

Normally driven by `carepath.db.migrate`, which hands over a live connection in
`config.attributes["connection"]`, already inside its transaction (so the
engine's own set-up, SQLite pragmas and `BEGIN IMMEDIATE`, applies and the
caller owns the commit). Without one (e.g. `command.revision(...,
autogenerate=True)`), an engine is made from the configured `sqlalchemy.url`
with `make_engine` and used the same way. Offline (`--sql`) mode renders SQL
for the configured URL's dialect.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from carepath.db import types as db_types
from carepath.db.connection import make_engine
from carepath.db.migrate import migration_connection
from carepath.db.schema import metadata

config = context.config

# The shared type objects render as references to carepath.db.types in new
# revisions, like 0001_initial does, instead of being spelled out again.
_SHARED_TYPES = {id(db_types.Id): "Id", id(db_types.Json): "Json"}


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    if type_ == "type":
        if id(obj) in _SHARED_TYPES:
            autogen_context.imports.add("import carepath.db.types")
            return f"carepath.db.types.{_SHARED_TYPES[id(obj)]}"
        if isinstance(obj, db_types.UtcDateTime):
            autogen_context.imports.add("import carepath.db.types")
            return "carepath.db.types.UtcDateTime()"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode recreates the table.
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url is not None and url.startswith("sqlite"),
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        assert isinstance(connection, Connection)
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection in config.attributes and no sqlalchemy.url set")
    engine = make_engine(url)
    try:
        with migration_connection(engine) as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
