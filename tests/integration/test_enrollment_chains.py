"""Navigation across workflows at run time, on both databases: a chain never loops."""

from __future__ import annotations

from tests.integration.harness import Harness

PING_PONG = """
workflow: ping
trigger: {event: game.started}
reentry: always
steps:
  rest: {wait: 1d, next: serve}
  serve: {enroll: {workflow: pong, end_current: true}}
---
workflow: pong
trigger: manual
reentry: always
steps:
  back: {enroll: {workflow: ping, end_current: true}}
"""


def test_a_workflow_already_in_the_chain_is_refused_and_the_reason_recorded(
    journey: Harness,
) -> None:
    journey.apply(PING_PONG)
    ann = journey.contact()
    journey.event("game.started", ann, key="g1")
    journey.advance("2d")
    assert [(r.workflow, r.parent_run_id is not None) for r in journey.runs(ann)] == [
        ("ping", False),
        ("pong", True),
    ]
    [refused] = journey.events("enrollment.refused")
    assert refused.contact_id == ann
    assert refused.data["workflow"] == "ping"
    assert refused.data["reason"] == "enrollment loop: ping is already in this chain"
