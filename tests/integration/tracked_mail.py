"""A contact sent one message with tracked links, as the click and page-view tests need."""

from __future__ import annotations

import re
from datetime import timedelta

from carepath.channels.links import LinkSigner
from tests.integration.harness import Harness


def mail_tracked(
    journey: Harness, links: LinkSigner | None, flow: str, workflow: str
) -> tuple[int, list[str], list[str]]:
    """Ann, sent `workflow`'s message (from `flow`) with links signed by `links`: her id,
    the message's click tokens and its open-pixel tokens, read ten minutes later."""
    assert links is not None
    journey.ctx.links = links
    journey.apply(flow)
    ann = journey.contact(first_name="Ann")
    journey.enroll(workflow, ann)
    journey.work()
    (row,) = journey.outbox(ann)
    clicks = re.findall(r"https://care\.example\.org/c/([\w.-]+)", row.html)
    pixels = re.findall(r"https://care\.example\.org/o/([\w.-]+)", row.html)
    journey.shift(timedelta(minutes=10))  # a person reads later than a scanner
    return ann, clicks, pixels
