"""A synthetic patient population that reacts to a journey like real people would.

Seeded randomness: the same seed gives the same contacts, the same answers,
the same clicks, calls and bookings — and so the same funnel.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import outbox, tasks
from carepath.domain.access import SYSTEM
from carepath.services.consents import ConsentChange, ConsentKind, set_consent
from carepath.services.contacts import contact_with
from carepath.services.events import ingest_events
from carepath.services.tasks import complete_task

FIRST_NAMES = [
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Femi",
    "Grace",
    "Hiro",
    "Isla",
    "Jon",
    "Kira",
    "Luis",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
]
LAST_NAMES = [
    "Adams",
    "Baker",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jones",
    "Khan",
    "Lopez",
    "Moore",
    "Nguyen",
    "Okafor",
    "Patel",
    "Reyes",
    "Smith",
]
ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]
COMORBIDITIES = ["diabetes", "hypertension", "sleep-apnea", "joint-pain", "reflux"]
CLINIC = "Bariatric Center, 200 Main Street, Suite 4"
CLICK_RATES = {
    "bariatric-education-a": 0.28,
    "bariatric-education-b": 0.36,
    "bariatric-stories": 0.22,
}
DEFAULT_CLICK_RATE = 0.08


@dataclass(order=True)
class _Planned:
    at: datetime
    seq: int
    kind: str = field(compare=False)  # "event" or "task"
    payload: dict[str, object] = field(compare=False)


@dataclass
class Population:
    rng: random.Random
    start: datetime
    _queue: list[_Planned] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)
    _last_outbox: int = 0
    _last_task: int = 0
    opted_out: set[int] = field(default_factory=set)

    def write_contacts_csv(self, path: Path, count: int) -> None:
        """Contacts as a hospital's CRM export would give them."""
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                [
                    "external_id",
                    "email",
                    "first_name",
                    "last_name",
                    "birth_date",
                    "sex",
                    "time_zone",
                    "bmi",
                    "comorbidities",
                    "lead_source",
                ]
            )
            for n in range(1, count + 1):
                age_days = self.rng.randint(24 * 365, 76 * 365)
                born = self.start.date() - timedelta(days=age_days)
                conditions = self.rng.sample(COMORBIDITIES, self.rng.choice([0, 0, 1, 1, 2, 3]))
                writer.writerow(
                    [
                        f"MRN-{n:05d}",
                        f"patient{n:05d}@example.test",
                        self.rng.choice(FIRST_NAMES),
                        self.rng.choice(LAST_NAMES),
                        born.isoformat(),
                        self.rng.choice("FM"),
                        self.rng.choice(ZONES),
                        round(min(max(self.rng.gauss(38, 6), 24), 60), 1),
                        ";".join(conditions),
                        self.rng.choice(["search-ad", "social-ad", "referral"]),
                    ]
                )
                self._plan_assessment(n, conditions)

    def _plan_assessment(self, n: int, conditions: list[str]) -> None:
        if self.rng.random() > 0.85:
            return
        at = self.start + timedelta(days=self.rng.uniform(0, 21), hours=self.rng.uniform(0, 12))
        score = int(self.rng.gauss(30, 12) + 9 * len(conditions))
        self._event(
            at,
            "form.submitted",
            {"external_id": f"MRN-{n:05d}"},
            {"form": "bariatric-hra", "score": max(score, 0)},
            key=f"hra-{n}",
        )

    def _event(
        self,
        at: datetime,
        kind: str,
        contact: Mapping[str, object],
        data: Mapping[str, object],
        *,
        key: str,
    ) -> None:
        payload: dict[str, object] = {
            "type": kind,
            "contact": contact,
            "occurred_at": at.isoformat(),
            "idempotency_key": key,
            "data": data,
        }
        heapq.heappush(self._queue, _Planned(at, next(self._seq), "event", payload))

    def next_time(self) -> datetime | None:
        return self._queue[0].at if self._queue else None

    def act_until(self, conn: Connection, now: datetime) -> int:
        """Carry out everything planned up to `now`: ingest events, complete tasks."""
        due: list[_Planned] = []
        while self._queue and self._queue[0].at <= now:
            due.append(heapq.heappop(self._queue))
        items = [(f"sim:{p.seq}", p.payload) for p in due if p.kind == "event"]
        if items:
            ingest_events(conn, items, now=now, source="simulation")
        self._authorize_on_assessment(conn, [p.payload for p in due if p.kind == "event"], now)
        for planned in (p for p in due if p.kind == "task"):
            complete_task(
                conn,
                int(str(planned.payload["task_id"])),
                outcome=str(planned.payload["outcome"]),
                now=planned.at,
                who=SYSTEM,
            )
        return len(due)

    def _authorize_on_assessment(
        self, conn: Connection, payloads: list[dict[str, object]], now: datetime
    ) -> None:
        """The assessment form carries the HIPAA marketing authorization its senders sign."""
        for payload in payloads:
            data = payload.get("data")
            if payload.get("type") != "form.submitted" or not isinstance(data, Mapping):
                continue
            contact = payload.get("contact")
            external_id = contact.get("external_id") if isinstance(contact, Mapping) else None
            found = contact_with(conn, "external_id", external_id)
            if found is not None:
                source = f"{data.get('form')} form"
                change = ConsentChange(ConsentKind.MARKETING, True, source)
                set_consent(conn, found, change, now=now, who=SYSTEM)

    def react(self, conn: Connection, now: datetime) -> None:
        """Plan reactions to what carepath did since last time: emails read, calls taken."""
        sent = conn.execute(
            sa.select(outbox.c.id, outbox.c.contact_id, outbox.c.template, outbox.c.sent_at)
            .where(outbox.c.id > self._last_outbox, outbox.c.status == "sent")
            .order_by(outbox.c.id)
        ).all()
        for row in sent:
            self._last_outbox = max(self._last_outbox, row.id)
            self._react_to_email(row.id, row.contact_id, row.template, row.sent_at or now)
        opened = conn.execute(
            sa.select(tasks.c.id, tasks.c.contact_id, tasks.c.created_at)
            .where(tasks.c.id > self._last_task)
            .order_by(tasks.c.id)
        ).all()
        for task_row in opened:
            self._last_task = max(self._last_task, task_row.id)
            self._react_to_task(task_row.id, task_row.contact_id, task_row.created_at)

    def _react_to_email(
        self, outbox_id: int, contact_id: int, template: str, sent_at: datetime
    ) -> None:
        who = {"id": contact_id}
        if contact_id in self.opted_out or self.rng.random() > 0.6:
            return
        opened = sent_at + timedelta(minutes=self.rng.uniform(5, 2 * 24 * 60))
        self._event(
            opened,
            "email.opened",
            who,
            {"outbox_id": outbox_id, "template": template},
            key=f"open-{outbox_id}",
        )
        if self.rng.random() < CLICK_RATES.get(template, DEFAULT_CLICK_RATE) / 0.6:
            clicked = opened + timedelta(minutes=self.rng.uniform(0.5, 30))
            self._event(
                clicked,
                "email.clicked",
                who,
                {"outbox_id": outbox_id, "template": template},
                key=f"click-{outbox_id}",
            )
        elif self.rng.random() < 0.015:
            self.opted_out.add(contact_id)
            self._event(
                opened + timedelta(minutes=2),
                "contact.opted_out",
                who,
                {"channel": "email"},
                key=f"optout-{contact_id}",
            )

    def _react_to_task(self, task_id: int, contact_id: int, created: datetime) -> None:
        called = created + timedelta(hours=self.rng.uniform(2, 48))
        roll = self.rng.random()
        outcome = "booked" if roll < 0.6 else "no-answer" if roll < 0.85 else "declined"
        heapq.heappush(
            self._queue,
            _Planned(called, next(self._seq), "task", {"task_id": task_id, "outcome": outcome}),
        )
        if outcome != "booked":
            return
        who = {"id": contact_id}
        visit_day: date = (called + timedelta(days=self.rng.randint(6, 20))).date()
        starts = datetime(
            visit_day.year, visit_day.month, visit_day.day, 15, 30, tzinfo=called.tzinfo
        )
        self._event(
            called + timedelta(minutes=5),
            "appointment.scheduled",
            who,
            {"starts_at": starts.isoformat(), "location": CLINIC, "kind": "consultation"},
            key=f"appt-{task_id}",
        )
        if self.rng.random() < 0.55:
            decided = starts + timedelta(days=self.rng.uniform(1, 12))
            surgery = (decided + timedelta(days=self.rng.randint(25, 45))).replace(
                hour=13, minute=0
            )
            self._event(
                decided,
                "surgery.scheduled",
                who,
                {"surgery_at": surgery.isoformat()},
                key=f"surgery-{task_id}",
            )
            home = surgery + timedelta(days=self.rng.randint(1, 3))
            self._event(home, "patient.discharged", who, {}, key=f"discharge-{task_id}")
