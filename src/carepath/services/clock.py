"""Business time: the system clock, or a simulated clock kept in the database.

Leases always use wall time (they are about worker liveness); everything a
journey schedules uses business time from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.engine import Connection

from carepath.db.schema import settings
from carepath.domain.fields import parse_datetime
from carepath.errors import ConfigurationError
from carepath.services.settings_reads import setting_values

CLOCK_KEY = "clock"


class Clock(Protocol):
    def now(self, conn: Connection) -> datetime: ...

    def now_from(self, values: Mapping[str, object]) -> datetime:
        """As `now`, from settings read already (`CLOCK_KEY` among the keys read)."""
        ...


def wall_time() -> datetime:
    return datetime.now(UTC)


class DatabaseClock:
    """Reads the clock setting each time: simulated when the database says so."""

    def now(self, conn: Connection) -> datetime:
        return self.now_from(setting_values(conn, (CLOCK_KEY,)))

    def now_from(self, values: Mapping[str, object]) -> datetime:
        simulated = _simulated(values.get(CLOCK_KEY))
        return simulated if simulated is not None else wall_time()


def simulated_now(conn: Connection) -> datetime | None:
    return _simulated(setting_values(conn, (CLOCK_KEY,)).get(CLOCK_KEY))


def _simulated(value: object) -> datetime | None:
    if not isinstance(value, dict) or value.get("mode") != "simulated":
        return None
    return parse_datetime(value["now"])


def set_simulated_now(conn: Connection, now: datetime) -> None:
    """Move the simulated clock (never backwards: scheduled work depends on it)."""
    current = simulated_now(conn)
    if current is not None and now < current:
        raise ConfigurationError("the simulated clock cannot move backwards")
    value = {"mode": "simulated", "now": now.astimezone(UTC).isoformat()}
    updated = conn.execute(
        settings.update().where(settings.c.key == CLOCK_KEY).values(value=value)
    ).rowcount
    if not updated:
        conn.execute(settings.insert().values(key=CLOCK_KEY, value=value))
