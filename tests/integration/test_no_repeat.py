"""No repetition across workflows, on both databases: the skip is recorded with its reason."""

from __future__ import annotations

from tests.integration.harness import Harness

DOCUMENTS = """
template: flu-shot
subject: Your flu shot
html: <p>Book your flu shot.</p>
no_repeat: 30d
---
template: newsletter
subject: News
html: <p>News.</p>
---
workflow: flu-campaign
trigger: {event: campaign.started}
reentry: always
steps:
  invite: {email: flu-shot, next: done}
  done: {exit: completed}
---
workflow: seniors-outreach
trigger: {event: outreach.started}
reentry: always
no_repeat: 7d
steps:
  invite: {email: flu-shot, next: news}
  news: {email: newsletter, next: again}
  again: {email: newsletter, next: done}
  done: {exit: completed}
"""


def statuses(journey: Harness, contact_id: int) -> list[tuple[str, str, str | None]]:
    return [(m.template, m.status, m.last_error) for m in journey.outbox(contact_id)]


def test_a_template_reaches_a_contact_once_per_window_whichever_workflow_sends_it(
    journey: Harness,
) -> None:
    journey.apply(DOCUMENTS)
    ann = journey.contact()
    journey.event("campaign.started", ann, key="c1")
    journey.work()
    journey.advance("1d")
    journey.event("outreach.started", ann, key="o1")
    journey.work()
    repeat = "not repeated: flu-shot reached this contact within 30d"
    news_again = "not repeated: newsletter reached this contact within 7d"
    assert [(t, s if s == "skipped" else "queued", e) for t, s, e in statuses(journey, ann)] == [
        ("flu-shot", "queued", None),
        ("flu-shot", "skipped", repeat),  # another workflow, within the template's 30 days
        ("newsletter", "queued", None),
        ("newsletter", "skipped", news_again),  # the workflow's own 7-day window
    ]
    assert journey.run(ann, "seniors-outreach").status == "completed"  # the run goes on
    journey.advance("31d")
    journey.event("campaign.started", ann, key="c2")
    journey.work()
    assert statuses(journey, ann)[-1][:2] != ("flu-shot", "skipped")  # the window has passed
