"""One outgoing message for tests, changed where a test needs it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from carepath.channels.email import OutgoingEmail


def outgoing(**changes: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "outbox_id": 1,
        "message_id": "<0123456789abcdef@carepath.invalid>",
        "sender": "Care Team <no-reply@clinic.example.org>",
        "recipient": "ann@example.org",
        "subject": "Your visit",
        "html": "<p>Hello</p>",
        "text": "Hello",
        "created_at": datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
    }
    values.update(changes)
    return OutgoingEmail(**values)


class NoRecords:
    """A `Confirm` that records nothing: for tests of a sender alone, without a database."""

    def __init__(self) -> None:
        self.recorded: list[int] = []

    async def record(self, outbox_ids: Sequence[int]) -> None:
        self.recorded.extend(outbox_ids)

    async def aclose(self) -> None:
        """Nothing to close."""
