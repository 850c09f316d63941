"""A synthetic patient panel for the preventive-care examples, over a simulated year.

Seeded: the same seed gives the same patients, histories and answers. Patients
come with a past (wellness visits, mammograms, opened emails); during the year
some have procedures (their record is updated), and reminders get answered
with bookings and visits at plausible rates.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import outbox
from carepath.domain.access import SYSTEM
from carepath.domain.fields import ContactSchema
from carepath.services.consents import ConsentChange, ConsentKind, set_consent
from carepath.services.contact_records import change_contact
from carepath.services.events import ingest_events
from carepath.services.simulation import FIRST_NAMES, LAST_NAMES, ZONES

# Of the messages a patient gets, the share answered, and with which events.
ANSWERS: dict[str, tuple[float, tuple[tuple[str, str | None], ...]]] = {
    "wellness": (0.35, (("visit.scheduled", None), ("visit.completed", "wellness"))),
    "mammogram": (0.3, (("screening.scheduled", None), ("screening.completed", "mammogram"))),
    "we-miss-you": (0.2, (("email.clicked", None), ("visit.scheduled", None))),
}
PROCEDURES_PER_DAY = 0.0015  # share of the panel having a procedure on a given day
AUTHORIZED = 0.7  # share of patients with a marketing authorization on file


@dataclass
class PreventivePanel:
    rng: random.Random
    start: datetime
    count: int = 0
    _last_outbox: int = 0
    _events: int = 0

    def write_contacts_csv(self, path: Path, count: int) -> None:
        """Patients as an EHR export gives them: ages 18 to 90, in four US time zones."""
        self.count = count
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["external_id", "email", "first_name", "last_name", "birth_date", "sex",
                 "time_zone", "primary_care_site"]
            )  # fmt: skip
            for n in range(1, count + 1):
                born = self.start.date() - timedelta(days=self.rng.randint(18 * 365, 90 * 365))
                writer.writerow(
                    [
                        f"MRN-{n:05d}",
                        f"patient{n:05d}@example.test",
                        self.rng.choice(FIRST_NAMES),
                        self.rng.choice(LAST_NAMES),
                        born.isoformat(),
                        self.rng.choice(["female", "male"]),
                        self.rng.choice(ZONES),
                        self.rng.choice(["north", "south", "downtown"]),
                    ]
                )

    def record_history(self, conn: Connection, contact_ids: list[int]) -> None:
        """Each patient's past: visits, screenings and opened emails over two years."""
        items: list[tuple[str, object]] = []
        for contact_id in contact_ids:
            if self.rng.random() < 0.55:
                items.append(self._item(contact_id, "visit.completed", "wellness", 30, 700))
            if self.rng.random() < 0.5:
                items.append(self._item(contact_id, "screening.completed", "mammogram", 30, 700))
            if self.rng.random() < 0.5:
                items.append(self._item(contact_id, "email.opened", None, 1, 400))
        ingest_events(conn, items, now=self.start, source="demo")
        for contact_id in contact_ids:  # signed at registration by most patients
            if self.rng.random() < AUTHORIZED:
                change = ConsentChange(ConsentKind.MARKETING, True, "registration form")
                set_consent(conn, contact_id, change, now=self.start, who=SYSTEM)

    def _item(
        self, contact_id: int, kind: str, detail: str | None, least: int, most: int
    ) -> tuple[str, object]:
        at = self.start - timedelta(days=self.rng.uniform(least, most))
        return self._raw(contact_id, kind, detail, at)

    def _raw(
        self, contact_id: int, kind: str, detail: str | None, at: datetime
    ) -> tuple[str, object]:
        self._events += 1
        raw = {
            "type": kind,
            "contact": {"id": contact_id},
            "occurred_at": at.isoformat(),
            "idempotency_key": f"demo-{self._events}",
            "data": {"kind": detail} if detail else {},
        }
        return f"demo:{self._events}", raw

    def live_a_day(self, conn: Connection, now: datetime, schema: ContactSchema) -> None:
        """Answer the messages sent since the last call; some patients have procedures."""
        rows = conn.execute(
            sa.select(outbox.c.id, outbox.c.contact_id, outbox.c.template)
            .where(outbox.c.id > self._last_outbox, outbox.c.status == "sent")
            .order_by(outbox.c.id)
        ).all()
        items: list[tuple[str, object]] = []
        for row in rows:
            self._last_outbox = max(self._last_outbox, row.id)
            kind = next((k for k in ANSWERS if row.template.startswith(k)), None)
            if kind is None:
                continue
            rate, answers = ANSWERS[kind]
            if self.rng.random() < rate:
                items += [self._raw(row.contact_id, e, detail, now) for e, detail in answers]
        if items:
            ingest_events(conn, items, now=now, source="demo")
        for contact_id in range(1, self.count + 1):
            if self.rng.random() < PROCEDURES_PER_DAY:
                change = {"last_procedure_at": now.isoformat()}
                change_contact(conn, contact_id, change, schema, now=now, who=SYSTEM)
