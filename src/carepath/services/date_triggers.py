"""Date triggers: enrolling contacts on a date their record names (birthdays, procedures).

Each date-triggered workflow keeps how far ahead it has scheduled
(`date_trigger_scans`). A scan looks one day ahead: it selects, in SQL, the
contacts whose date can fall in the window (a date range, or month-days for
yearly anniversaries) and who match the trigger's `when`, computes each
contact's exact moment in its own time zone, and creates a run that wakes at
that moment. Each enrollment is recorded as a `date.reached` event whose
idempotency key names the workflow, contact and moment, so overlapping or
repeated scans never enroll anyone twice. Dates already past when a workflow
is applied do not fire: scanning starts at the workflow's first apply.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.condition_sql import compile_condition
from carepath.db.schema import contacts, date_trigger_scans
from carepath.domain.conditions import FieldTest, Op, Scope
from carepath.domain.fields import ContactSchema, FieldType, parse_datetime
from carepath.domain.scheduling import date_trigger_fires, schedule_fires
from carepath.domain.workflow import DateTrigger, ScheduleTrigger, Workflow
from carepath.services.catalog_store import CatalogCache, CurrentCatalog
from carepath.services.contacts import contact_facts
from carepath.services.date_scans import AHEAD, scans_due_before
from carepath.services.enrollment import EnrollRequest, enroll
from carepath.services.events import NewEvent, store_events_keyed

REACHED = "date.reached"
_ENROLL_BATCH = 1000
# Local moments are at most 14 hours from UTC; offsets move whole days or less.
_SLACK = timedelta(days=2)


def candidates_query(
    conn: Connection,
    trigger: DateTrigger,
    schema: ContactSchema,
    *,
    after: datetime,
    until: datetime,
    now: datetime,
) -> sa.Select[Any]:
    """Contacts whose date may fire in (after, until], and who match `when`, in SQL."""
    spec = schema.get(trigger.field)
    assert spec is not None
    low = (after - trigger.offset - _SLACK).date()
    high = (until - trigger.offset + _SLACK).date()
    start = datetime(low.year, low.month, low.day, tzinfo=UTC)
    field = (trigger.field,)
    if trigger.yearly:  # anniversaries from `low` (as if today) through `high`
        test = FieldTest(Scope.CONTACT, field, Op.ANNIVERSARY_WITHIN, high - low, spec)
    elif spec.type is FieldType.DATETIME:
        bounds = (start, datetime(high.year, high.month, high.day, tzinfo=UTC) + timedelta(days=1))
        test = FieldTest(Scope.CONTACT, field, Op.BETWEEN, bounds, spec)
    else:
        test = FieldTest(Scope.CONTACT, field, Op.BETWEEN, (low, high), spec)
    dialect = conn.dialect.name
    where = compile_condition(test, dialect=dialect, now=start)
    if trigger.when is not None:  # about the contact as it is now
        where = sa.and_(where, compile_condition(trigger.when, dialect=dialect, now=now))
    columns = [contacts.c.id, contacts.c.time_zone]
    columns.append(contacts.c[trigger.field] if spec.core else contacts.c.attributes)
    return sa.select(*columns).where(contacts.c.erased_at.is_(None), where)


def scan_workflow(
    conn: Connection,
    workflow: Workflow,
    schema: ContactSchema,
    current: CurrentCatalog,
    *,
    after: datetime,
    until: datetime,
    now: datetime,
    max_chain_depth: int,
) -> int:
    """Schedule the runs of one workflow whose moments fall in (after, until]; returns runs."""
    trigger = workflow.trigger
    assert isinstance(trigger, DateTrigger)
    query = candidates_query(conn, trigger, schema, after=after, until=until, now=now)
    spec = schema.get(trigger.field)
    custom = [] if spec is None or spec.core else [trigger.field]
    new: list[NewEvent] = []
    for row in conn.execute(query):
        value = contact_facts(row, schema, custom=custom).get(trigger.field)
        if not isinstance(value, date):
            continue
        for moment in date_trigger_fires(
            value,
            offset=trigger.offset,
            at=trigger.at,
            yearly=trigger.yearly,
            time_zone=row.time_zone,
            after=after,
            until=until,
        ):
            key = f"date:{workflow.name}:{row.id}:{moment.isoformat()}"
            data = {"workflow": workflow.name, "field": trigger.field}
            new.append(NewEvent(REACHED, row.id, moment, key, data, "schedule"))
    stored = store_events_keyed(conn, new, now=now)
    requests = [
        EnrollRequest(
            e.contact_id, workflow.name, stored[e.idempotency_key], starts_at=e.occurred_at
        )
        for e in new
        if e.idempotency_key in stored
    ]
    return _enroll_in_batches(conn, current, requests, now=now, max_chain_depth=max_chain_depth)


def scan_schedule(
    conn: Connection,
    workflow: Workflow,
    current: CurrentCatalog,
    *,
    after: datetime,
    until: datetime,
    now: datetime,
    max_chain_depth: int,
) -> int:
    """Enroll the audience for each moment of the schedule in (after, until]; returns runs.

    The audience is who matches now, when the run is scheduled (up to a day ahead).
    Exactly once: the window moves forward in the same transaction.
    """
    trigger = workflow.trigger
    assert isinstance(trigger, ScheduleTrigger)
    moments = schedule_fires(trigger.starting, trigger.every, after=after, until=until)
    if not moments:
        return 0
    audience = compile_condition(trigger.audience, dialect=conn.dialect.name, now=now)
    query = sa.select(contacts.c.id).where(contacts.c.erased_at.is_(None), audience)
    ids = list(conn.execute(query.order_by(contacts.c.id)).scalars())
    requests = [EnrollRequest(i, workflow.name, starts_at=m) for m in moments for i in ids]
    return _enroll_in_batches(conn, current, requests, now=now, max_chain_depth=max_chain_depth)


def _enroll_in_batches(
    conn: Connection,
    current: CurrentCatalog,
    requests: list[EnrollRequest],
    *,
    now: datetime,
    max_chain_depth: int,
) -> int:
    """Enroll `requests` a batch at a time (an audience may be everyone); returns runs."""
    started = 0
    for first in range(0, len(requests), _ENROLL_BATCH):
        batch = requests[first : first + _ENROLL_BATCH]
        outcome = enroll(conn, current, batch, now=now, max_chain_depth=max_chain_depth)
        started += len(outcome.run_ids)
    return started


def scan_date_triggers(
    engine: sa.Engine, cache: CatalogCache, *, now: datetime, max_chain_depth: int
) -> int:
    """Scan every date-triggered workflow that is due; returns the scans made."""
    scanned = 0
    with engine.begin() as conn:
        due = sa.select(date_trigger_scans).where(
            date_trigger_scans.c.scanned_through <= scans_due_before(now)
        )
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        rows = conn.execute(due).all()
        current = cache.current(conn)
        for row in rows:
            workflow = current.catalog.workflows.get(row.workflow)
            until = now + AHEAD
            after = parse_datetime(row.scanned_through)
            trigger = workflow.trigger if workflow is not None else None
            if workflow is not None and isinstance(trigger, DateTrigger):
                scan_workflow(
                    conn, workflow, current.catalog.schema, current,
                    after=after, until=until, now=now, max_chain_depth=max_chain_depth,
                )  # fmt: skip
            elif workflow is not None and isinstance(trigger, ScheduleTrigger):
                scan_schedule(
                    conn, workflow, current,
                    after=after, until=until, now=now, max_chain_depth=max_chain_depth,
                )  # fmt: skip
            conn.execute(
                date_trigger_scans.update()
                .where(date_trigger_scans.c.workflow == row.workflow)
                .values(scanned_through=until)
            )
            scanned += 1
    return scanned
