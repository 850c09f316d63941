"""Quiet hours and marketing frequency caps, honoured when the outbox sends."""

from __future__ import annotations

from datetime import timedelta

from carepath.domain.access import SYSTEM
from carepath.domain.sending_windows import FrequencyCap, QuietHours
from carepath.services.consents import ConsentChange, ConsentKind, set_consent
from tests.integration.harness import Harness

ONE_EMAIL = """
template: note
subject: A note
html: "<p>Hello</p>"
---
workflow: reminder
purpose: treatment
trigger: manual
steps:
  note: {email: note}
"""

NEWSLETTERS = """
template: news
subject: News
html: "<p>News</p>"
---
workflow: news
purpose: marketing
trigger: manual
reentry: always
steps:
  news: {email: news}
"""


def test_quiet_hours_hold_a_message_until_morning_in_the_contacts_zone(
    journey: Harness,
) -> None:
    # The harness clock starts at 08:00 UTC, 03:00 in New York.
    journey.ctx.quiet_hours = QuietHours.parse("21:00-08:00")
    journey.apply(ONE_EMAIL)
    ny = journey.contact(time_zone="America/New_York")
    berlin = journey.contact(time_zone="Europe/Berlin")  # 09:00 there
    journey.enroll("reminder", ny, berlin)
    journey.work()
    waiting, sent = journey.outbox(ny)[0], journey.outbox(berlin)[0]
    assert sent.status == "sent"
    assert (waiting.status, waiting.attempts, waiting.last_error) == (
        "pending",
        0,
        "deferred: quiet hours",
    )
    assert waiting.next_attempt_at == journey.now + timedelta(hours=5)  # 08:00 in New York
    journey.advance("4h59m")
    assert journey.outbox(ny)[0].status == "pending"
    journey.advance("1m")
    assert (journey.outbox(ny)[0].status, journey.outbox(ny)[0].attempts) == ("sent", 1)


def test_a_marketing_cap_defers_the_extra_message_until_a_slot_frees(journey: Harness) -> None:
    journey.ctx.marketing_cap = FrequencyCap.parse("2/7d")
    journey.apply(NEWSLETTERS + "---\n" + ONE_EMAIL)
    ann = journey.contact()
    with journey.engine.begin() as conn:  # marketing needs the contact's authorization
        change = ConsentChange(ConsentKind.MARKETING, True, "registration form")
        set_consent(conn, ann, change, now=journey.now, who=SYSTEM)
    start = journey.now
    for _ in range(2):
        journey.enroll("news", ann)
        journey.work()
        journey.advance("1h")
    journey.enroll("news", ann)
    journey.enroll("reminder", ann)  # treatment messages are not capped
    journey.work()
    rows = journey.outbox(ann)
    assert [r.status for r in rows] == ["sent", "sent", "pending", "sent"]
    assert rows[2].last_error == "deferred: marketing frequency cap"
    assert rows[2].next_attempt_at == start + timedelta(days=7)
    journey.advance("7d")
    assert journey.outbox(ann)[2].status == "sent"
