"""No repetition: a template reaches a contact at most once within its window.

The window is the template's `no_repeat`, else the sending workflow's. It
holds across workflows: whichever journey would send the template again, the
message is recorded as skipped, with the reason, instead of being sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import id_in
from carepath.db.schema import outbox
from carepath.domain.durations import format_duration
from carepath.domain.fields import parse_datetime
from carepath.domain.resources import Template
from carepath.domain.workflow import Workflow
from carepath.services.catalog_store import CurrentCatalog

# Messages that reached, or are on their way to, the contact.
_NOT_RECEIVED = ("skipped", "failed")


def repeat_window(template: Template, workflow: Workflow) -> timedelta | None:
    return template.no_repeat or workflow.no_repeat


class RecentSends:
    """Which templates went to the batch's contacts lately: read once, on first need."""

    def __init__(self, conn: Connection, current: CurrentCatalog, contact_ids: Iterable[int]):
        self._conn = conn
        self._contacts = sorted(set(contact_ids))
        windows = [t.no_repeat for t in current.catalog.templates.values() if t.no_repeat]
        windows += [w.no_repeat for w in current.catalog.workflows.values() if w.no_repeat]
        self._longest = max(windows, default=None)
        self._last: dict[tuple[int, str], datetime] | None = None

    def refusal(
        self, contact_id: int, template: Template, workflow: Workflow, *, now: datetime
    ) -> str | None:
        """Why this send is skipped as a repeat, or None; a send that goes is remembered."""
        if self._longest is None:
            return None  # no window anywhere: nothing to read or remember
        sent = self._sent(now)
        window = repeat_window(template, workflow)
        last = sent.get((contact_id, template.name))
        if window is not None and last is not None and last > now - window:
            within = format_duration(window)
            return f"not repeated: {template.name} reached this contact within {within}"
        sent[(contact_id, template.name)] = now
        return None

    def _sent(self, now: datetime) -> dict[tuple[int, str], datetime]:
        if self._last is None:
            self._last = {}
            if self._longest is not None and self._contacts:
                latest = sa.func.max(outbox.c.created_at)
                query = (
                    sa.select(outbox.c.contact_id, outbox.c.template, latest)
                    .where(
                        id_in(self._conn, outbox.c.contact_id, self._contacts),
                        outbox.c.created_at > now - self._longest,
                        outbox.c.status.not_in(_NOT_RECEIVED),
                    )
                    .group_by(outbox.c.contact_id, outbox.c.template)
                )
                for contact_id, name, at in self._conn.execute(query):
                    self._last[(contact_id, name)] = parse_datetime(at)
        return self._last
