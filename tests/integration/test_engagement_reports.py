"""Engagement per step, A/B paths, the message log and a contact's timeline, on both databases.

A known scenario: ten patients through an A/B split, then scripted opens
(by people and by machines), clicks on two links, bounces, a complaint and
an unsubscribe — shaped exactly as the tracking, bounce and unsubscribe
services store them. Every number is asserted.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from carepath.db.connection import read_only
from carepath.db.schema import contacts
from carepath.domain.access import SYSTEM
from carepath.services.engagement import (
    compare_splits,
    engagement,
    engagement_report,
    link_clicks,
    two_proportion_test,
)
from carepath.services.events import NewEvent, store_events
from carepath.services.message_log import LogFilter, message_log, timeline, whole_log
from tests.integration.api_support import KeyMaker
from tests.integration.harness import Harness

ADMIN = {"who": SYSTEM, "now": datetime(2026, 1, 5, tzinfo=UTC)}  # the caller of reports

DOCUMENTS = """
template: tip-a
subject: A tip for you
html: <p>Tip A <a href="https://example.org/one">one</a> <a href="https://example.org/two">two</a></p>
---
template: tip-b
subject: A tip for you
html: <p>Tip B</p>
---
workflow: tips
trigger: {event: tips.requested}
steps:
  test: {split: [{weight: 1, goto: a}, {weight: 1, goto: b}]}
  a: {email: tip-a, next: done}
  b: {email: tip-b, next: done}
  done: {exit: completed}
"""


KEYS = itertools.count()


def happen(journey: Harness, message: Any, kind: str, **data: object) -> None:
    key = f"outbox:{message.id}:{kind}:{next(KEYS)}"
    event = NewEvent(
        kind, message.contact_id, journey.now, key, {"outbox_id": message.id, **data}, "test"
    )
    with journey.engine.begin() as conn:
        store_events(conn, [event], now=journey.now)


@pytest.fixture
def scenario(journey: Harness) -> dict[str, list[Any]]:
    journey.apply(DOCUMENTS)
    people = [journey.contact() for _ in range(10)]
    silent = journey.contact()
    with journey.engine.begin() as conn:  # a patient without an address
        conn.execute(contacts.update().where(contacts.c.id == silent).values(email=None))
    for contact_id in [*people, silent]:
        journey.event("tips.requested", contact_id, key=f"t-{contact_id}")
    journey.work()
    by_step: dict[str, list[Any]] = {"a": [], "b": []}
    for message in journey.outbox():
        by_step[message.step].append(message)
    a, b = by_step["a"], by_step["b"]
    sent_a = [m for m in a if m.status == "sent"]
    sent_b = [m for m in b if m.status == "sent"]
    assert len(sent_a) >= 3  # the deterministic split gives both paths enough
    assert len(sent_b) >= 2
    happen(journey, sent_a[0], "email.opened", machine=False)
    happen(journey, sent_a[0], "email.opened", machine=False)
    happen(journey, sent_a[0], "email.clicked", link=0, machine=False)
    happen(journey, sent_a[0], "email.clicked", link=0, machine=False)
    happen(journey, sent_a[0], "email.clicked", link=1, machine=False)
    happen(journey, sent_a[0], "email.clicked", link=1, machine=True)  # a link scanner
    happen(journey, sent_a[1], "email.opened", machine=True)
    happen(journey, sent_a[2], "email.bounced", bounce="hard", status="5.1.1")
    happen(journey, sent_b[0], "email.bounced", bounce="soft", status="4.2.2")
    happen(journey, sent_b[0], "email.opened", machine=False)
    happen(journey, sent_b[1], "email.complained")
    happen(journey, sent_b[1], "email.unsubscribed")
    return by_step


def test_engagement_per_step_counts_people_and_machines_apart(
    journey: Harness, scenario: dict[str, list[Any]]
) -> None:
    a, b = scenario["a"], scenario["b"]
    with read_only(journey.engine) as conn:
        rows = {r.step: r for r in engagement(conn, "tips")}
        links = link_clicks(conn, "tips")
    sent_a = sum(m.status == "sent" for m in a)
    skipped_a = sum(m.status == "skipped" for m in a)
    assert rows["a"].messages == len(a)
    assert (rows["a"].sent, rows["a"].skipped) == (sent_a, skipped_a)
    assert rows["a"].hard_bounced == 1
    assert rows["a"].delivered == sent_a - 1
    assert (rows["a"].opened, rows["a"].machine_opened) == (1, 1)
    assert (rows["a"].clicked, rows["a"].clicks) == (1, 3)
    assert rows["a"].click_rate == pytest.approx(1 / (sent_a - 1))
    sent_b = sum(m.status == "sent" for m in b)
    assert (rows["b"].soft_bounced, rows["b"].delivered) == (1, sent_b - 1)
    assert (rows["b"].opened, rows["b"].clicked) == (1, 0)
    assert (rows["b"].complained, rows["b"].unsubscribed) == (1, 1)
    assert [(x.step, x.link, x.clicked, x.clicks) for x in links] == [
        ("a", 0, 1, 2),
        ("a", 1, 1, 1),
    ]


def test_clicks_naming_no_real_link_count_as_an_unknown_link(
    journey: Harness, scenario: dict[str, list[Any]]
) -> None:
    message = next(m for m in scenario["b"] if m.status == "sent")
    for link in (-1, 10**15, True, "0", None):  # what an events:write client could send
        happen(journey, message, "email.clicked", link=link, machine=False)
    with read_only(journey.engine) as conn:
        links = [(x.step, x.link, x.clicked, x.clicks) for x in link_clicks(conn, "tips")]
    assert ("b", None, 1, 5) in links


def test_split_paths_side_by_side_with_a_two_proportion_test(
    journey: Harness, scenario: dict[str, list[Any]]
) -> None:
    with read_only(journey.engine) as conn:
        rows = engagement(conn, "tips")
        definition = journey.ctx.cache.current(conn).catalog.workflows["tips"]
    [split] = compare_splits(definition, rows)
    assert [path for path, _ in split.paths] == ["a", "b"]
    a, b = (row for _, row in split.paths)
    assert (split.z, split.p_value) == two_proportion_test(
        a.clicked, a.delivered, b.clicked, b.delivered
    )


def test_two_proportion_test_matches_a_textbook_case() -> None:
    z, p = two_proportion_test(45, 100, 30, 100)  # 45 % against 30 %
    assert z == pytest.approx(2.1909, abs=1e-4)
    assert p == pytest.approx(0.02846, abs=1e-4)
    assert two_proportion_test(0, 0, 1, 10) == (None, None)


def test_the_message_log_pages_by_id_and_filters(
    journey: Harness, scenario: dict[str, list[Any]]
) -> None:
    total = len(scenario["a"]) + len(scenario["b"])
    with read_only(journey.engine) as conn:
        first = message_log(conn, LogFilter(workflow="tips"), limit=4, **ADMIN)
        rest = message_log(conn, LogFilter(workflow="tips"), after=first[-1].id, limit=100, **ADMIN)
        every = list(whole_log(conn, LogFilter(), page=3, **ADMIN))
        only_a = message_log(conn, LogFilter(step="a"), **ADMIN)
        skipped = [m for m in every if m.status == "skipped"]
    assert len(first) == 4
    assert [m.id for m in first + rest] == sorted(m.id for m in every)
    assert len(every) == total
    assert {m.step for m in only_a} == {"a"}
    assert [m.last_error for m in skipped] == ["contact has no email address"]
    opened = [m for m in every if m.opened]
    assert {m.id for m in opened} == {scenario["a"][0].id, scenario["b"][0].id}  # people only
    assert [m.id for m in every if m.clicked] == [scenario["a"][0].id]


def test_a_contacts_timeline_orders_events_runs_steps_and_messages(
    journey: Harness, scenario: dict[str, list[Any]]
) -> None:
    message = scenario["a"][0]
    with read_only(journey.engine) as conn:
        entries = timeline(conn, message.contact_id, **ADMIN)
    kinds = [(e.what, e.summary) for e in entries]
    assert kinds[0] == ("event", "contact.created")
    assert ("run", "tips started") in kinds
    assert ("step", "tips: a (email) done") in kinds
    assert ("message", "tip-a sent") in kinds
    assert ("run", "tips completed") in kinds
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    clicked = [e for e in entries if e.summary == "email.clicked"]
    assert [e.detail.get("link") for e in clicked] == [0, 0, 1, 1]


def test_the_api_answers_with_the_same_numbers_as_the_services(
    journey: Harness, scenario: dict[str, list[Any]], client: TestClient, key_for: KeyMaker
) -> None:
    reader = key_for("reports:read")
    answer = client.get("/v1/reports/workflows/tips/engagement", headers=reader)
    assert answer.status_code == 200
    with read_only(journey.engine) as conn:
        definition = journey.ctx.cache.current(conn).catalog.workflows["tips"]
        expected = engagement_report(conn, definition)
    assert answer.json() == json.loads(json.dumps(expected))
    funnel = client.get("/v1/reports/workflows/tips/funnel", headers=reader).json()
    assert {row["step"] for row in funnel["steps"]} >= {"test", "a", "b", "done"}
    first = client.get("/v1/reports/messages", params={"limit": 3}, headers=reader).json()
    rest = client.get(
        "/v1/reports/messages", params={"after": first["next_after"]}, headers=reader
    ).json()
    ids = [m["id"] for m in first["messages"] + rest["messages"]]
    assert ids == sorted(m.id for m in journey.outbox())
    assert rest["next_after"] is None
    contact_id = scenario["a"][0].contact_id
    assert client.get(f"/v1/contacts/{contact_id}/timeline", headers=reader).status_code == 403
    timeline_answer = client.get(
        f"/v1/contacts/{contact_id}/timeline", headers=key_for("contacts:read", name="crm")
    )
    assert timeline_answer.json()[0]["summary"] == "contact.created"
    missing = client.get("/v1/reports/workflows/nope/engagement", headers=reader)
    assert missing.status_code == 404


def test_a_moment_outside_what_utc_can_hold_is_a_422(client: TestClient, key_for: KeyMaker) -> None:
    answer = client.get(
        "/v1/reports/messages",
        params={"until": "0001-01-01T00:00:01+01:02"},
        headers=key_for("reports:read"),
    )
    assert answer.status_code == 422
