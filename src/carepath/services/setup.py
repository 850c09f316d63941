"""Creating and opening a carepath database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from carepath.db import migrate
from carepath.db.connection import make_engine
from carepath.errors import ConfigurationError
from carepath.protection.keyring import use_keyring_beside
from carepath.services.clock import set_simulated_now


def init_database(url: str, *, simulated_clock: datetime | None = None) -> Engine:
    """Migrate the database to the current schema; optionally start a simulated clock.

    An embedded SQLite database with no keyring configured gets one beside it.
    """
    engine = make_engine(url)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database:
        use_keyring_beside(Path(database), create=True)
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
