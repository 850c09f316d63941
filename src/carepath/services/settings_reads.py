"""Reading settings rows by key: the clock, and what storing events needs."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import settings

# PostgreSQL: written out for the driver. Every clock reading and every group of
# events stored reads settings; built through SQLAlchemy, the statement cost its
# caller about three times the driver's own work.
_PG_SETTINGS = "SELECT key, value FROM settings WHERE key = ANY(%(keys)s::text[])"


def setting_values(conn: Connection, keys: Sequence[str]) -> dict[str, object]:
    """The stored value of each of `keys` that has one."""
    if conn.dialect.name == "postgresql":
        return dict(list(conn.exec_driver_sql(_PG_SETTINGS, {"keys": list(keys)})))
    rows = conn.execute(sa.select(settings.c.key, settings.c.value).where(settings.c.key.in_(keys)))
    return {row.key: row.value for row in rows}
