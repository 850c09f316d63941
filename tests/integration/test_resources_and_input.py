"""Applying resources, importing contacts and ingesting events: versions, atomicity, errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from carepath.db.schema import contacts, events, resources
from carepath.domain.access import SYSTEM
from carepath.domain.resources import Kind
from carepath.errors import InvalidInput
from carepath.services import catalog_store
from carepath.services.contacts import import_contacts
from carepath.services.documents import load_paths
from carepath.services.events import NewEvent, ingest_events, store_events_keyed
from tests.integration.harness import Harness

V1 = """
template: hello
subject: Welcome
html: "<p>Version one</p>"
---
workflow: w
trigger: manual
steps:
  greet: {email: hello, next: pause}
  pause: {wait: 2d, next: again}
  again: {email: hello}
"""


def _count(journey: Harness, table: sa.Table) -> int:
    with journey.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_apply_stores_new_versions_only_of_what_changed(journey: Harness) -> None:
    first = journey.apply(V1)
    assert [(a.name, a.version, a.changed) for a in first] == [("hello", 1, True), ("w", 1, True)]
    again = journey.apply(V1)
    assert [a.changed for a in again] == [False, False]
    changed = journey.apply(V1.replace("Version one", "Version two"))
    assert [(a.name, a.version, a.changed) for a in changed] == [
        ("hello", 2, True),
        ("w", 1, False),
    ]
    assert _count(journey, resources) == 3


def test_apply_with_any_problem_writes_nothing(journey: Harness, tmp_path: Path) -> None:
    journey.apply(V1)
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        V1.replace("Version one", "Changed")
        + "---\nworkflow: x\ntrigger: manual\nsteps:\n  a: {email: nope}\n"
    )
    docs, problems = load_paths([broken])
    assert problems == []
    with pytest.raises(InvalidInput) as caught, journey.engine.begin() as conn:
        catalog_store.apply_documents(conn, docs, now=journey.now)
    assert [str(p) for p in caught.value.problems] == [f"{broken}:16: unknown template 'nope'"]
    assert _count(journey, resources) == 2
    assert journey.version(Kind.TEMPLATE, "hello") == 1


def test_running_runs_stay_on_their_version(journey: Harness) -> None:
    journey.apply(V1)
    ann = journey.contact()
    journey.enroll("w", ann)
    journey.work()
    journey.apply(
        V1.replace("next: again", "next: bye").replace(
            "again: {email: hello}", "bye: {exit: exited}"
        )
    )
    bob = journey.contact()
    journey.enroll("w", bob)
    journey.advance("3d")
    assert journey.path(journey.run(ann).id) == ["greet", "pause", "again"]
    assert journey.path(journey.run(bob).id) == ["greet", "pause", "bye"]
    assert [journey.run(c).workflow_version for c in (ann, bob)] == [1, 2]


def test_contact_import_is_all_or_nothing_with_line_numbers(
    journey: Harness, tmp_path: Path
) -> None:
    journey.apply("fields:\n  bmi: {type: number}\n")
    good = tmp_path / "good.csv"
    good.write_text(
        "external_id,email,first_name,birth_date,time_zone,bmi\n"
        "MRN-1,ann@example.test,Ann,1960-03-02,America/New_York,41.5\n"
        "MRN-2,BOB@Example.test,Bob,1980-01-01,Europe/London,33\n"
    )
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "external_id,email,birth_date,time_zone,bmi,shoe_size\n"
        "MRN-3,cy@example.test,1970-01-01,UTC,30,\n"
        "MRN-4,not-an-email,31/02/1990,Mars/Olympus,heavy,44\n"
    )
    schema = journey_schema(journey)
    with journey.engine.begin() as conn:
        result = import_contacts(conn, good, schema, now=journey.now, who=SYSTEM)
    assert (result.created, result.updated) == (2, 0)
    with pytest.raises(InvalidInput) as caught, journey.engine.begin() as conn:
        import_contacts(conn, bad, schema, now=journey.now, who=SYSTEM)
    messages = [str(p) for p in caught.value.problems]
    assert "bad.csv:3: shoe_size: unknown field" in messages
    assert "bad.csv:3: email: not an email address" in messages
    assert "bad.csv:3: time_zone: not an IANA time zone name" in messages
    assert any(m.startswith("bad.csv:3: birth_date:") for m in messages)
    assert any(m.startswith("bad.csv:3: bmi:") for m in messages)
    assert not any(
        "Mars" in m or "heavy" in m or "not-an-email" in m for m in messages
    )  # no values
    assert _count(journey, contacts) == 2  # MRN-3 (valid) was not written either
    with journey.engine.begin() as conn:
        again = import_contacts(conn, good, schema, now=journey.now, who=SYSTEM)
    assert (again.created, again.updated) == (0, 2)
    with journey.engine.connect() as conn:
        emails = set(conn.execute(sa.select(contacts.c.email)).scalars())
    assert emails == {"ann@example.test", "bob@example.test"}


def journey_schema(journey: Harness):  # type: ignore[no-untyped-def]
    with journey.engine.connect() as conn:
        return catalog_store.build_current(conn).catalog.schema


def test_event_ingest_rejects_bad_items_and_stores_none(journey: Harness) -> None:
    ann = journey.contact()
    items = [
        (
            "e.jsonl:1",
            {"type": "lab.result_available", "contact": {"id": ann}, "data": {"panel": "A1C"}},
        ),
        ("e.jsonl:2", {"type": "Lab Result", "contact": {"id": ann}}),
        ("e.jsonl:3", {"type": "lab.result_available", "contact": {"external_id": "MRN-404"}}),
        (
            "e.jsonl:4",
            {"type": "x", "contact": {"id": ann}, "occurred_at": "yesterday", "extra": 1},
        ),
    ]
    with pytest.raises(InvalidInput) as caught, journey.engine.begin() as conn:
        ingest_events(conn, items, now=journey.now, source="test")
    assert [str(p) for p in caught.value.problems] == [
        "e.jsonl:2: type: an event type is lower-case text such as lab.result_available",
        "e.jsonl:4: extra: unknown key",
        "e.jsonl:4: occurred_at: not an ISO 8601 date-time",
        "e.jsonl:3: contact: no contact with that external_id",
    ]
    with journey.engine.connect() as conn:
        stored = conn.execute(sa.select(events.c.type)).scalars().all()
    assert stored == ["contact.created"]  # from creating the contact; none of the batch


def test_events_no_workflow_listens_to_are_stored_already_processed(journey: Harness) -> None:
    journey.apply(
        "workflow: w\ntrigger: {event: lab.result_available}\nsteps:\n  done: {exit: completed}\n"
    )
    ann = journey.contact()
    journey.event("lab.result_available", ann, panel="A1C")
    journey.event("page.viewed", ann, page="/bariatric")
    with journey.engine.connect() as conn:
        rows = conn.execute(sa.select(events.c.type, events.c.processed_at)).all()
    pending = {kind for kind, processed in rows if processed is None}
    assert pending == {"lab.result_available"}
    assert {kind for kind, _ in rows} == {"contact.created", "lab.result_available", "page.viewed"}
    journey.work()
    assert journey.run(ann).status == "completed"


def test_stored_events_keep_every_field_and_a_stored_key_is_not_stored_again(
    journey: Harness,
) -> None:
    journey.apply(
        "workflow: w\ntrigger: {event: lab.result_available}\nsteps:\n  done: {exit: completed}\n"
    )
    ann, bob = journey.contact(), journey.contact()
    earlier = journey.now - timedelta(days=2)
    lab = NewEvent(
        "lab.result_available", ann, earlier, "k-lab", {"panel": "A1C", "note": "é ✓", "n": [1]},
        "ehr", chain_depth=2,
    )  # fmt: skip
    page = NewEvent("page.viewed", bob, journey.now, "k-page", {}, "site")
    with journey.engine.begin() as conn:
        first = store_events_keyed(conn, [lab, page], now=journey.now)
    with journey.engine.begin() as conn:
        again = store_events_keyed(conn, [lab], now=journey.now + timedelta(hours=1))
    assert set(first) == {"k-lab", "k-page"}
    assert again == {}
    query = sa.select(events).where(events.c.idempotency_key.in_(["k-lab", "k-page"]))
    with journey.engine.connect() as conn:
        rows = {row.idempotency_key: row for row in conn.execute(query)}
    assert {key: row.id for key, row in rows.items()} == first
    stored_lab, stored_page = rows["k-lab"], rows["k-page"]
    assert (stored_lab.type, stored_lab.contact_id, stored_lab.source) == (lab.type, ann, "ehr")
    assert (stored_lab.occurred_at, stored_lab.received_at) == (earlier, journey.now)
    assert (stored_lab.data, stored_lab.chain_depth, stored_lab.processed_at) == (lab.data, 2, None)
    assert (stored_page.contact_id, stored_page.data, stored_page.chain_depth) == (bob, {}, 0)
    assert stored_page.processed_at == journey.now  # no workflow listens to it
