"""Segments on both databases: materialised membership, kept current by changes and by time."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from carepath.db.connection import read_only
from carepath.db.schema import segment_checks, segment_members
from carepath.domain.access import SYSTEM
from carepath.services import contact_records
from tests.integration.harness import Harness

FIELDS = """
fields:
  bmi: number
  last_visit_at: datetime
"""
SEGMENTS = """
segment: bariatric-candidates
condition: {all: [{field: contact.bmi, gte: 35}, {field: contact.age, gte: 18}]}
---
segment: quiet
title: No email opened in 30 days
condition: {event: email.opened, count: 0, within: 30d}
---
segment: engaged-candidates
condition: {all: [{in_segment: bariatric-candidates}, {not: {in_segment: quiet}}]}
"""


def members(journey: Harness, name: str) -> set[int]:
    with read_only(journey.engine) as conn:
        query = sa.select(segment_members.c.contact_id).where(
            segment_members.c.segment_name == name
        )
        return set(conn.execute(query).scalars())


def moves(journey: Harness, kind: str, segment: str) -> list[int]:
    return [e.contact_id for e in journey.events(kind) if e.data["segment"] == segment]


def test_a_new_segment_is_counted_in_full_and_each_entry_is_an_event(journey: Harness) -> None:
    journey.apply(FIELDS)
    adult = journey.contact(bmi=41, birth_date=date(1980, 5, 1))
    minor = journey.contact(bmi=38, birth_date=date(2012, 5, 1))
    lean = journey.contact(bmi=22, birth_date=date(1970, 5, 1))
    journey.apply(SEGMENTS)
    journey.work()
    assert members(journey, "bariatric-candidates") == {adult}
    assert members(journey, "quiet") == {adult, minor, lean}
    assert members(journey, "engaged-candidates") == set()  # quiet, so not engaged
    assert moves(journey, "segment.entered", "bariatric-candidates") == [adult]


def test_changes_to_a_contact_move_it_in_and_out_on_the_next_round(journey: Harness) -> None:
    journey.apply(FIELDS)
    journey.apply(SEGMENTS)
    ann = journey.contact(bmi=36, birth_date=date(1990, 1, 1))
    journey.work()
    assert ann in members(journey, "bariatric-candidates")
    journey.event("email.opened", ann, key="open-1")
    journey.work()
    assert ann not in members(journey, "quiet")
    assert ann in members(journey, "engaged-candidates")  # the dependent segment follows
    journey.contact(external_id="MRN-1", bmi=30)  # the import updates her record
    journey.work()
    assert ann not in members(journey, "bariatric-candidates")
    assert ann not in members(journey, "engaged-candidates")
    assert moves(journey, "segment.left", "bariatric-candidates") == [ann]
    with read_only(journey.engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(segment_checks)).scalar() == 0


def test_time_alone_moves_contacts_into_time_relative_segments(journey: Harness) -> None:
    journey.apply(FIELDS)
    journey.apply(SEGMENTS)
    ann = journey.contact(bmi=36, birth_date=date(1990, 1, 1))
    journey.event("email.opened", ann, key="open-1")
    journey.work()
    assert ann not in members(journey, "quiet")
    journey.advance("29d")
    assert ann not in members(journey, "quiet")
    journey.advance("2d")  # the open is now 31 days old: the daily recount sees it
    assert ann in members(journey, "quiet")
    assert ann not in members(journey, "engaged-candidates")
    turning = journey.contact(bmi=40, birth_date=date(2008, 2, 20))  # 18 on 20 February
    journey.work()
    assert turning not in members(journey, "bariatric-candidates")
    journey.advance("20d")
    assert turning in members(journey, "bariatric-candidates")


def test_erased_contacts_leave_every_segment(journey: Harness) -> None:
    journey.apply(FIELDS)
    journey.apply(SEGMENTS)
    ann = journey.contact(bmi=36, birth_date=date(1990, 1, 1))
    journey.work()
    with journey.engine.begin() as conn:
        contact_records.erase_contact(conn, ann, now=journey.now, who=SYSTEM)
    journey.work()
    assert all(ann not in members(journey, name) for name in ("quiet", "bariatric-candidates"))


def test_a_changed_segment_is_recounted_at_its_new_version(journey: Harness) -> None:
    journey.apply(FIELDS)
    journey.apply(SEGMENTS)
    ann = journey.contact(bmi=36, birth_date=date(1990, 1, 1))
    journey.work()
    journey.apply("segment: bariatric-candidates\ncondition: {field: contact.bmi, gte: 40}\n")
    journey.work()
    assert members(journey, "bariatric-candidates") == set()
    assert ann in moves(journey, "segment.left", "bariatric-candidates")


def test_workflow_branches_read_segment_membership(journey: Harness) -> None:
    journey.apply(FIELDS)
    journey.apply(SEGMENTS)
    journey.apply(
        """
workflow: triage
trigger: {event: form.submitted}
steps:
  check:
    branch:
      - {when: {in_segment: bariatric-candidates}, goto: candidate}
    otherwise: other
  candidate: {update: {add_tags: [candidate]}, next: done}
  other: {update: {add_tags: [other]}, next: done}
  done: {exit: completed}
"""
    )
    ann = journey.contact(bmi=36, birth_date=date(1990, 1, 1))
    bob = journey.contact(bmi=20, birth_date=date(1990, 1, 1))
    journey.work()
    for contact_id in (ann, bob):
        journey.event("form.submitted", contact_id, key=f"form-{contact_id}")
    journey.work()
    assert journey.path(journey.run(ann).id)[:2] == ["check", "candidate"]
    assert journey.path(journey.run(bob).id)[:2] == ["check", "other"]


def test_a_segment_trigger_enrolls_contacts_as_they_join(journey: Harness) -> None:
    journey.apply(FIELDS)
    journey.apply(SEGMENTS)
    journey.apply(
        """
workflow: candidate-outreach
trigger: {segment: bariatric-candidates, when: {field: contact.bmi, lt: 45}}
steps:
  mark: {update: {add_tags: [outreach]}, next: done}
  done: {exit: completed}
"""
    )
    ann = journey.contact(bmi=36, birth_date=date(1990, 1, 1))
    severe = journey.contact(bmi=50, birth_date=date(1990, 1, 1))
    bob = journey.contact(bmi=20, birth_date=date(1990, 1, 1))
    journey.work()
    assert journey.run(ann, "candidate-outreach").status == "completed"
    assert journey.runs(severe) == []  # joined, but the trigger's `when` does not hold
    assert journey.runs(bob) == []
    journey.contact(external_id="MRN-3", bmi=38)  # Bob joins later
    journey.work()
    assert journey.run(bob, "candidate-outreach").status == "completed"


def test_runs_completing_together_move_their_contacts_into_a_segment_on_completions(
    journey: Harness,
) -> None:
    # Enough runs at one step to be decided and written as one cohort.
    journey.apply("""
workflow: welcome
title: Welcome
purpose: operations
trigger: manual
start: done
steps:
  done:
    exit: completed
---
segment: welcomed
condition: {event: workflow.completed, count_gte: 1, within: 30d}
""")
    people = [journey.contact(external_id=f"MRN-{i}") for i in range(12)]
    journey.work()
    assert members(journey, "welcomed") == set()
    journey.enroll("welcome", *people)
    journey.work()
    assert members(journey, "welcomed") == set(people)
