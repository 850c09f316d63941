"""Fixtures shared by every suite: fresh, empty databases on SQLite and PostgreSQL.

PostgreSQL tests use a database of their own per test run (named with a random
suffix), so concurrent runs never collide. Set CAREPATH_REQUIRE_POSTGRES=1 to
turn an unreachable server into a failure instead of a skip (CI does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from carepath.protection.keyring import KEYRING_ENV, generate_keyring, keyring_text

# One keyring for the run, in the environment so that the CLI, server and worker
# processes the tests start use it too.
os.environ[KEYRING_ENV] = keyring_text(generate_keyring())

ADMIN_URL = os.environ.get(
    "CAREPATH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _admin_engine() -> sa.Engine:
    return sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


class PostgresDatabases:
    """Creates throw-away databases on the test server and drops them at the end."""

    def __init__(self) -> None:
        self.prefix = f"carepath_t{uuid.uuid4().hex[:10]}"
        self.created: list[str] = []
        self._admin: sa.Engine | None = None
        self.error: str | None = None
        try:
            self._admin = _admin_engine()
            with self._admin.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as exc:
            self.error = f"PostgreSQL unreachable at {ADMIN_URL}: {exc.__class__.__name__}"

    def create(self) -> str:
        if self.error or self._admin is None:
            if os.environ.get("CAREPATH_REQUIRE_POSTGRES"):
                pytest.fail(self.error or "PostgreSQL unavailable")
            pytest.skip(self.error or "PostgreSQL unavailable")
        name = f"{self.prefix}_{len(self.created)}"
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            for name in self.created:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    dbs = PostgresDatabases()
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=BACKENDS)
def empty_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> str:
    """The URL of a brand-new, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'carepath.db'}"
    return postgres_databases.create()
