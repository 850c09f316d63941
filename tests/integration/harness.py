"""A small driver for engine scenarios: apply YAML, add contacts, send events, move time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from carepath.channels.email import MemorySender
from carepath.db.connection import read_only
from carepath.db.schema import events, outbox, run_steps, runs, tasks
from carepath.domain.access import SYSTEM
from carepath.domain.durations import parse_duration
from carepath.domain.fields import ContactSchema
from carepath.domain.resources import Kind
from carepath.services import catalog_store, contacts
from carepath.services.clock import set_simulated_now, simulated_now
from carepath.services.context import EngineContext
from carepath.services.documents import load_paths
from carepath.services.enrollment import EnrollRequest, enroll
from carepath.services.events import ingest_events
from carepath.services.tasks import complete_task
from carepath.services.work import WorkDone, advance_clock, drain


@dataclass(frozen=True)
class StepRow:
    step: str
    outcome: str
    next_step: str | None
    detail: str | None


class Harness:
    def __init__(self, engine: sa.Engine, tmp_path: Path, *, start: datetime) -> None:
        self.engine = engine
        self.tmp_path = tmp_path
        self.sender = MemorySender([])
        self.ctx = EngineContext(engine=engine, sender=self.sender)
        self._files = 0
        self._keys = 0
        with engine.begin() as conn:
            set_simulated_now(conn, start)

    # ------------------------------------------------------------- set-up

    def apply(self, text: str) -> list[catalog_store.AppliedResource]:
        self._files += 1
        path = self.tmp_path / f"resources-{self._files}.yaml"
        path.write_text(text, encoding="utf-8")
        docs, problems = load_paths([path])
        assert not problems, problems
        now = self.now
        with self.engine.begin() as conn:
            return catalog_store.apply_documents(conn, docs, now=now)

    def contact(self, **fields: object) -> int:
        self._keys += 1
        record = {"external_id": f"MRN-{self._keys}", "email": f"p{self._keys}@example.test"}
        record.update(fields)
        now = self.now
        with self.engine.begin() as conn:
            schema = catalog_store.build_current(conn).catalog.schema
            values, errors = contacts.check_record(record, schema)
            assert not errors, errors
            contacts.upsert_contacts(conn, [values], schema, now=now)
            return contacts.find_contact(conn, str(values["external_id"]))

    # ------------------------------------------------------------ actions

    @property
    def now(self) -> datetime:
        with read_only(self.engine) as conn:
            now = simulated_now(conn)
        assert now is not None
        return now

    def event(self, kind: str, contact_id: int, *, key: str | None = None, **data: Any) -> None:
        raw: dict[str, Any] = {"type": kind, "contact": {"id": contact_id}, "data": data}
        if key:
            raw["idempotency_key"] = key
        now = self.now
        with self.engine.begin() as conn:
            ingest_events(conn, [("test", raw)], now=now, source="test")

    def enroll(self, workflow: str, *contact_ids: int) -> list[int]:
        now = self.now
        with self.engine.begin() as conn:
            current = catalog_store.build_current(conn)
            outcome = enroll(
                conn,
                current,
                [EnrollRequest(c, workflow) for c in contact_ids],
                now=now,
                max_chain_depth=self.ctx.limits.max_chain_depth,
            )
        return outcome.run_ids

    def work(self) -> WorkDone:
        return drain(self.ctx, now=self.now)

    def advance(self, duration: str) -> WorkDone:
        _, done = advance_clock(self.ctx, parse_duration(duration))
        return done

    def complete_task(self, task_id: int, outcome: str) -> None:
        now = self.now
        with self.engine.begin() as conn:
            complete_task(conn, task_id, outcome=outcome, now=now, who=SYSTEM)

    # ---------------------------------------------------------- inspection

    def runs(self, contact_id: int | None = None, workflow: str | None = None) -> list[Any]:
        query = sa.select(runs).order_by(runs.c.id)
        if contact_id is not None:
            query = query.where(runs.c.contact_id == contact_id)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        with read_only(self.engine) as conn:
            return list(conn.execute(query).all())

    def run(self, contact_id: int, workflow: str | None = None) -> Any:
        found = self.runs(contact_id, workflow)
        assert len(found) == 1, f"expected one run, found {len(found)}"
        return found[0]

    def steps(self, run_id: int) -> list[StepRow]:
        with read_only(self.engine) as conn:
            rows = conn.execute(
                sa.select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.id)
            ).all()
        return [StepRow(r.step, r.outcome, r.next_step, r.detail) for r in rows]

    def path(self, run_id: int) -> list[str]:
        return [s.step for s in self.steps(run_id)]

    def outbox(self, contact_id: int | None = None) -> list[Any]:
        query = sa.select(outbox).order_by(outbox.c.id)
        if contact_id is not None:
            query = query.where(outbox.c.contact_id == contact_id)
        with read_only(self.engine) as conn:
            return list(conn.execute(query).all())

    def tasks(self) -> list[Any]:
        with read_only(self.engine) as conn:
            return list(conn.execute(sa.select(tasks).order_by(tasks.c.id)).all())

    def events(self, kind: str) -> list[Any]:
        with read_only(self.engine) as conn:
            return list(
                conn.execute(sa.select(events).where(events.c.type == kind).order_by(events.c.id))
            )

    def version(self, kind: Kind, name: str) -> int:
        with read_only(self.engine) as conn:
            return catalog_store.latest_versions(conn)[(kind, name)].version

    def schema(self) -> ContactSchema:
        with read_only(self.engine) as conn:
            return catalog_store.build_current(conn).catalog.schema

    def shift(self, delta: timedelta) -> None:
        now = self.now
        with self.engine.begin() as conn:
            set_simulated_now(conn, now + delta)
