"""Date triggers on both databases: birthdays at local time (DST, 29 February), offsets."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa

from carepath.db.connection import read_only
from carepath.db.schema import runs
from carepath.services import catalog_store, contacts
from tests.integration.harness import Harness

BIRTHDAYS = """
workflow: birthday-greeting
trigger:
  date: contact.birth_date
  every: year
  at: "09:00"
  when: {field: contact.sex, eq: female}
reentry: always
steps:
  greet: {update: {add_tags: [greeted]}, next: done}
  done: {exit: completed}
"""
CHECK_INS = """
fields:
  last_procedure_at: datetime
---
workflow: post-procedure
trigger: {date: contact.last_procedure_at, offset: 7d}
steps:
  check: {update: {add_tags: [checked-in]}, next: done}
  done: {exit: completed}
"""


def reached(journey: Harness, contact_id: int) -> list[datetime]:
    return [e.occurred_at for e in journey.events("date.reached") if e.contact_id == contact_id]


def test_a_birthday_fires_at_nine_local_time_on_the_day_and_not_before(journey: Harness) -> None:
    journey.apply(BIRTHDAYS)
    ann = journey.contact(birth_date=date(1980, 1, 7), sex="female", time_zone="America/New_York")
    bob = journey.contact(birth_date=date(1980, 1, 7), sex="male", time_zone="America/New_York")
    journey.advance("1d")  # 2026-01-06 08:00 UTC
    assert journey.runs(ann) == []
    journey.advance("29h")  # 2026-01-07 13:00 UTC: 08:00 in New York
    assert journey.run(ann).status == "active"  # scheduled, waking at 09:00 local
    assert reached(journey, ann) == [datetime(2026, 1, 7, 14, 0, tzinfo=UTC)]
    journey.advance("1h")
    assert journey.run(ann).status == "completed"
    assert journey.runs(bob) == []  # the trigger's `when` leaves him out


def test_a_birthday_after_the_spring_change_fires_at_nine_daylight_time(
    engine: sa.Engine, tmp_path: Path
) -> None:
    journey = Harness(engine, tmp_path, start=datetime(2026, 3, 6, 12, tzinfo=UTC))
    journey.apply(BIRTHDAYS)
    ann = journey.contact(birth_date=date(1975, 3, 9), sex="female", time_zone="America/New_York")
    journey.advance("4d")
    assert reached(journey, ann) == [datetime(2026, 3, 9, 13, 0, tzinfo=UTC)]  # EDT, UTC-4
    assert journey.run(ann).status == "completed"


def test_29_february_birthdays_fall_on_28_february_in_common_years(
    engine: sa.Engine, tmp_path: Path
) -> None:
    journey = Harness(engine, tmp_path, start=datetime(2027, 2, 25, 12, tzinfo=UTC))
    journey.apply(BIRTHDAYS)
    leap = journey.contact(birth_date=date(1988, 2, 29), sex="female", time_zone="UTC")
    journey.advance("5d")
    assert reached(journey, leap) == [datetime(2027, 2, 28, 9, 0, tzinfo=UTC)]


def test_an_offset_from_a_date_time_fires_once_and_past_dates_do_not_fire(
    journey: Harness,
) -> None:
    journey.apply(CHECK_INS)
    recent = journey.contact(last_procedure_at="2026-01-02T10:30:00Z")
    old = journey.contact(last_procedure_at="2025-12-20T10:30:00Z")  # its day passed before
    journey.advance("5d")
    assert reached(journey, recent) == [datetime(2026, 1, 9, 10, 30, tzinfo=UTC)]
    assert journey.run(recent).status == "completed"
    assert journey.runs(old) == []
    journey.advance("30d")
    assert len(journey.runs(recent)) == 1


BROADCAST = """
workflow: flu-season
trigger:
  schedule: "2026-01-06T15:00:00Z"
  audience: {all: [{field: contact.sex, eq: female}, {field: contact.age, gte: 65}]}
steps:
  announce: {update: {add_tags: [flu-shot-invited]}, next: done}
  done: {exit: completed}
"""
WEEKLY = """
workflow: weekly-tips
trigger:
  schedule: {starting: "2026-01-06T15:00:00Z", every: 7d}
  audience: {field: contact.sex, eq: female}
reentry: always
steps:
  tip: {update: {add_tags: [tipped]}, next: done}
  done: {exit: completed}
"""


def test_a_broadcast_enrolls_its_audience_once_at_the_moment(journey: Harness) -> None:
    journey.apply(BROADCAST)
    ann = journey.contact(sex="female", birth_date=date(1950, 1, 1))
    young = journey.contact(sex="female", birth_date=date(1990, 1, 1))
    journey.advance("1d")  # 2026-01-06 08:00 UTC: scheduled, not yet started
    assert journey.run(ann).status == "active"
    journey.advance("7h")
    assert journey.run(ann).status == "completed"
    assert journey.runs(young) == []
    journey.advance("30d")
    assert len(journey.runs(ann)) == 1


def test_a_recurring_campaign_enrolls_whoever_matches_at_each_moment(journey: Harness) -> None:
    journey.apply(WEEKLY)
    ann = journey.contact(sex="female")
    journey.advance("8d")  # 2026-01-13 08:00 UTC: the first week done, the second scheduled
    late = journey.contact(sex="female")
    journey.advance("8d")  # 2026-01-21 08:00 UTC: weeks two and three done
    assert [r.status for r in journey.runs(ann)] == ["completed"] * 3
    assert [r.status for r in journey.runs(late)] == ["completed"]


def test_a_broadcast_to_more_contacts_than_one_batch_enrolls_them_all(journey: Harness) -> None:
    journey.apply(WEEKLY)
    records = [
        {"external_id": f"P-{n}", "email": f"p{n}@example.test", "sex": "female"}
        for n in range(1100)
    ]
    with journey.engine.begin() as conn:
        schema = catalog_store.build_current(conn).catalog.schema
        contacts.upsert_contacts(conn, records, schema, now=journey.now)
    journey.advance("2d")
    with read_only(journey.engine) as conn:
        started = conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar()
    assert started == 1100
