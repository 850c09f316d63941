"""What storing events needs from settings, read in one query.

Which types some workflow listens to (the rest are stored already processed)
and which types some segment counts (their contacts are queued for a
re-check): every transaction that stores events needs both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from carepath.services.event_interest import INTEREST_KEY, interest_from
from carepath.services.segment_checks import INPUTS_KEY, SegmentInputs, inputs_from
from carepath.services.settings_reads import setting_values


@dataclass(frozen=True)
class EventRouting:
    interest: frozenset[str] | None  # None: never computed, every event is processed
    segments: SegmentInputs


ROUTING_KEYS = (INTEREST_KEY, INPUTS_KEY)


def event_routing(conn: Connection) -> EventRouting:
    return routing_from(setting_values(conn, ROUTING_KEYS))


def routing_from(values: Mapping[str, object]) -> EventRouting:
    """The routing from settings read already (`ROUTING_KEYS` among the keys read)."""
    return EventRouting(
        interest_from(values.get(INTEREST_KEY)), inputs_from(values.get(INPUTS_KEY))
    )
