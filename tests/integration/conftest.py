"""Integration fixtures: a migrated database per test on SQLite and PostgreSQL.

SQLite gets a new file per test. PostgreSQL gets one database per test run,
migrated once, and every table is truncated before each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from carepath.db import migrate
from carepath.db.connection import make_engine
from carepath.db.schema import metadata
from tests.conftest import BACKENDS, PostgresDatabases
from tests.integration.api_support import client, key_for
from tests.integration.harness import Harness

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: PostgresDatabases) -> str:
    """One migrated database for the run (dropped with the others at the end)."""
    url = postgres_databases.create()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def truncate_all(engine: sa.Engine) -> None:
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'carepath.db'}")
        migrate.upgrade(engine)
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        truncate_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def journey(engine: sa.Engine, tmp_path: Path) -> Harness:
    """A harness on a simulated clock starting at START."""
    return Harness(engine, tmp_path, start=START)


__all__ = ["client", "key_for"]  # the API fixtures, for every integration test
