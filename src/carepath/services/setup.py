"""Creating and opening a carepath database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine

from carepath.db import migrate
from carepath.db.connection import make_engine
from carepath.errors import ConfigurationError
from carepath.protection.keyring import use_keyring_beside
from carepath.services.clock import set_simulated_now

SEALING_REVISION = "0007"  # the first migration that seals stored values


def init_database(url: str, *, simulated_clock: datetime | None = None) -> Engine:
    """Migrate the database to the current schema; optionally start a simulated clock.

    An embedded SQLite database with no keyring configured gets one beside it.
    """
    engine = make_engine(url)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database:
        # A new keyring only for a database that has sealed nothing yet: one that has
        # would be unreadable with it (its own keyring file was lost or moved).
        use_keyring_beside(Path(database), create=not _holds_sealed_data(engine))
    migrate.upgrade(engine)
    if simulated_clock is not None:
        with engine.begin() as conn:
            set_simulated_now(conn, simulated_clock)
    return engine


def open_database(url: str) -> Engine:
    """An engine on an initialised, current database; a clear error otherwise."""
    engine = make_engine(url)
    try:
        current = migrate.is_current(engine)
    except Exception as exc:  # noqa: BLE001 - any driver error means "cannot open"
        engine.dispose()
        raise ConfigurationError(f"cannot open database: {exc.__class__.__name__}") from None
    if not current:
        engine.dispose()
        raise ConfigurationError("database is not initialised or not current: run `carepath init`")
    return engine


def _holds_sealed_data(engine: Engine) -> bool:
    """Whether the database is at migration 0007 or later (it seals what it stores)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return False
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return version is not None and str(version) >= SEALING_REVISION
