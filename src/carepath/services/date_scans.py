"""How far ahead each date- or schedule-triggered workflow has scheduled its runs.

See services/date_triggers.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import date_trigger_scans
from carepath.domain.workflow import DateTrigger, ScheduleTrigger, Workflow

AHEAD = timedelta(days=1)  # how far ahead runs are scheduled
# A scan is due once less than this much of the scheduled window is left.
RESCAN_MARGIN = timedelta(hours=12)


def sync_scans(conn: Connection, workflows: Mapping[str, Workflow], *, now: datetime) -> None:
    """One scan row per date-triggered workflow; a new one starts scanning now."""
    dated = {
        name
        for name, w in workflows.items()
        if isinstance(w.trigger, DateTrigger | ScheduleTrigger)
    }
    existing = set(conn.execute(sa.select(date_trigger_scans.c.workflow)).scalars())
    gone = existing - dated
    if gone:
        conn.execute(date_trigger_scans.delete().where(date_trigger_scans.c.workflow.in_(gone)))
    for name in sorted(dated - existing):
        conn.execute(date_trigger_scans.insert().values(workflow=name, scanned_through=now))


def scans_due_before(now: datetime) -> datetime:
    """Scans whose window ends at or before this are due."""
    return now + AHEAD - RESCAN_MARGIN


def scan_due_at(scanned_through: datetime) -> datetime:
    """When a scan that reached `scanned_through` falls due again."""
    return scanned_through - AHEAD + RESCAN_MARGIN
