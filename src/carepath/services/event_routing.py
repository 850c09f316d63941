"""What storing events needs from settings, read in one query.

Which types some workflow listens to (the rest are stored already processed)
and which types some segment counts (their contacts are queued for a
re-check): every transaction that stores events needs both.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import settings
from carepath.services.event_interest import INTEREST_KEY, interest_from
from carepath.services.segment_checks import INPUTS_KEY, SegmentInputs, inputs_from


@dataclass(frozen=True)
class EventRouting:
    interest: frozenset[str] | None  # None: never computed, every event is processed
    segments: SegmentInputs


def event_routing(conn: Connection) -> EventRouting:
    keys = (INTEREST_KEY, INPUTS_KEY)
    rows = conn.execute(sa.select(settings.c.key, settings.c.value).where(settings.c.key.in_(keys)))
    values = {row.key: row.value for row in rows}
    return EventRouting(
        interest_from(values.get(INTEREST_KEY)), inputs_from(values.get(INPUTS_KEY))
    )
