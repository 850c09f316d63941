"""The per-step funnel from run history, with exact numbers for a scripted journey."""

from __future__ import annotations

from carepath.services import catalog_store, reports
from tests.integration.harness import Harness

JOURNEY = """
template: hello
subject: Hello
html: "<p>Hello</p>"
---
workflow: w
trigger: manual
goal: {event: visit.booked}
steps:
  greet: {email: hello, next: await}
  await:
    wait_for: {event: email.clicked, within: 7d}
    next: call
    on_timeout: nudge
  call: {task: {queue: desk, title: Call}, next: hold}
  hold: {wait: 30d, next: done}
  nudge: {email: hello, next: done}
  done: {exit: completed}
"""


def test_funnel_counts_entered_waiting_converted_and_drop_offs(journey: Harness) -> None:
    journey.apply(JOURNEY)
    booked, silent, pending, clicked = (journey.contact() for _ in range(4))
    journey.enroll("w", booked, silent, pending, clicked)
    journey.work()
    journey.advance("1d")
    journey.event("email.clicked", booked)
    journey.event("email.clicked", clicked)
    journey.work()
    journey.event("visit.booked", booked)  # goal reached while holding
    journey.advance("8d")  # silent and pending time out to the nudge
    with journey.engine.connect() as conn:
        definition = catalog_store.build_current(conn).catalog.workflows["w"]
        rows = {r.step: r for r in reports.funnel(conn, definition)}
        statuses = reports.run_status_counts(conn, "w")
    table = {
        s: (r.kind, r.entered, r.completed, r.waiting, r.converted, r.dropped)
        for s, r in rows.items()
    }
    assert table == {
        "greet": ("email", 4, 4, 0, 1, 0),
        "await": ("wait_for", 4, 4, 0, 1, 0),
        "call": ("task", 2, 2, 0, 1, 0),
        "hold": ("wait", 2, 0, 1, 1, 0),  # the converted run left it by its goal, not on time
        "nudge": ("email", 2, 2, 0, 0, 2),
        "done": ("exit", 2, 0, 0, 0, 0),
    }
    assert statuses == {"converted": 1, "waiting": 1, "completed": 2}
    ended = {s: (r.exited, r.failed) for s, r in rows.items() if r.exited or r.failed}
    assert ended == {"hold": (1, 0), "done": (2, 0)}  # the goal ended one run at hold
    medians = {s: r.median_seconds for s, r in rows.items()}
    day = 86_400.0
    assert medians["greet"] == 0.0
    assert medians["await"] == (1 * day + 7 * day) / 2  # two clicked after a day, two timed out
    assert medians["hold"] == 0.0  # the goal came the moment it arrived
    assert reports.conversion(statuses) == 0.25
    with journey.engine.connect() as conn:
        later = reports.RunFilter(since=journey.now)  # every run started before now
        assert {r.entered for r in reports.funnel(conn, definition, later)} == {0}
        assert reports.run_status_counts(conn, "w", later) == {}
        first = reports.RunFilter(version=1, until=journey.now)
        assert {r.step: r.entered for r in reports.funnel(conn, definition, first)} == {
            s: r.entered for s, r in rows.items()
        }
