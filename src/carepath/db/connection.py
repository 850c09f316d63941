"""Engine set-up for SQLite (WAL, busy timeout, foreign keys, BEGIN IMMEDIATE) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url

from carepath.errors import ConfigurationError
from carepath.protection.keyring import use_keyring_beside

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY_OPTION = "carepath_read_only"


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, echo=echo)
    if backend == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True, hide_parameters=True)
    raise ConfigurationError(f"unsupported database {backend!r}: use sqlite or postgresql")


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    database = make_url(url).database
    if database in (None, "", ":memory:"):
        raise ConfigurationError("use a SQLite file, not an in-memory database")
    assert database is not None
    use_keyring_beside(Path(database), create=False)
    engine = create_engine(
        url,
        echo=echo,
        hide_parameters=True,  # errors and logs never show bound values: they may be PHI
        # Pooled: opening a WAL database and closing its last connection
        # (which checkpoints) costs far more than the queries of a batch.
        pool_size=5,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is broken).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that
        # later writes can fail with SQLITE_BUSY that busy_timeout cannot wait out.
        # Connections from `read_only` begin deferred: in WAL mode they read a
        # snapshot without blocking, or being blocked by, the writer.
        deferred = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only (on SQLite it never takes the write lock)."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY_OPTION: True})
        yield conn
