"""Schema migrations (Alembic), driven from code: no alembic.ini needed at run time.

The migration scripts live in `carepath/db/migrations` and ship with the package.
Each upgrade or downgrade runs in one transaction on the caller's engine (so
`make_engine`'s SQLite set-up applies); on SQLite, DDL is transactional because
the driver's own transaction handling is off and `BEGIN IMMEDIATE` is ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from carepath.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _escape(value: str) -> str:
    # Config options go through ConfigParser interpolation: a literal % must be doubled.
    return value.replace("%", "%%")


def alembic_config(url: str) -> Config:
    """An Alembic Config for `url`, pointing at the packaged migration scripts."""
    config = Config()
    config.set_main_option("script_location", _escape(str(MIGRATIONS_DIR)))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", _escape(url))
    return config


def _engine_config(engine: Engine, connection: Connection) -> Config:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    config.attributes["connection"] = connection
    return config


def _driver_execute(conn: Connection, sql: str) -> None:
    # Straight to the driver connection (autocommit): going through SQLAlchemy
    # would begin a transaction first.
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(sql)


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction, committed if the block succeeds.

    On SQLite, foreign keys are switched off for the duration: batch mode
    rebuilds a table by copying it and dropping the old one, and with
    `foreign_keys=ON` that DROP would run ON DELETE CASCADE on referencing
    rows. The pragma is a no-op inside a transaction, so it is set on the
    driver connection first, and `PRAGMA foreign_key_check` runs before commit
    (the procedure in https://www.sqlite.org/lang_altertable.html).
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _driver_execute(conn, "PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        tables = sorted({str(row[0]) for row in broken})
                        raise ConfigurationError(
                            f"migration left foreign key violations in {', '.join(tables)}"
                        )
        finally:
            if sqlite:
                _driver_execute(conn, "PRAGMA foreign_keys=ON")


def upgrade(engine: Engine, revision: str = "head") -> None:
    with migration_connection(engine) as conn:
        command.upgrade(_engine_config(engine, conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with migration_connection(engine) as conn:
        command.downgrade(_engine_config(engine, conn), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an unmigrated database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:
        raise ConfigurationError("no migration scripts found")
    return head


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
