"""Writing a batch of advanced runs with a bounded number of statements.

Collects run updates, history rows and effects (emails into the outbox,
contact updates, list changes, tasks, enrollments, emitted events) for the
whole batch, then writes each kind with one executemany / multi-row insert.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Row

from carepath.channels.templates import RenderError, template_context
from carepath.channels.tracking import track
from carepath.db.dialect import bulk_insert, insert_ignoring_conflicts
from carepath.db.schema import list_members, outbox, run_steps, tasks, webhook_calls
from carepath.domain.runs import (
    COMPLETION_STATUSES,
    TERMINAL_STATUSES,
    Advance,
    CallWebhook,
    ChangeLists,
    CreateTask,
    RunStatus,
    SendEmail,
    StartRun,
    StepOutcome,
    StepRecord,
    UpdateContact,
)
from carepath.domain.workflow import Workflow
from carepath.services.catalog_store import CurrentCatalog
from carepath.services.contact_changes import ContactChange, write_contact_changes
from carepath.services.contacts import with_email
from carepath.services.context import EngineContext
from carepath.services.enrollment import EnrollRequest, enroll, refused_enrollment
from carepath.services.events import NewEvent, store_events
from carepath.services.repeats import RecentSends
from carepath.services.run_writes import (
    close_open_steps,
    completion_event,
    history_values,
    write_run_updates,
)
from carepath.services.webhook_calls import webhook_call_row


class BatchWriter:
    def __init__(
        self,
        conn: Connection,
        ctx: EngineContext,
        current: CurrentCatalog,
        *,
        now: datetime,
        contacts: dict[int, dict[str, object]],
        lists: dict[int, set[str]],
    ) -> None:
        self.conn = conn
        self.ctx = ctx
        self.current = current
        self.now = now
        self.contacts = contacts
        self.lists = lists
        self._original_lists = {cid: set(names) for cid, names in lists.items()}
        self.contact_changes: dict[int, ContactChange] = {}
        self._addressable: set[int] | None = None
        self._recent_sends: RecentSends | None = None
        self._library_set = False
        self.run_updates: list[dict[str, Any]] = []
        self.closes: list[dict[str, Any]] = []
        self.step_rows: list[dict[str, Any]] = []
        self.outbox_rows: list[dict[str, Any]] = []
        self.task_rows: list[dict[str, Any]] = []
        self.webhook_rows: list[dict[str, Any]] = []
        self.enrollments: list[EnrollRequest] = []
        self.new_events: list[NewEvent] = []

    # ----------------------------------------------------------- collecting

    def fail_run(self, row: Row[Any], reason: str) -> None:
        self._update_run(row, status=RunStatus.FAILED, step=row.current_step, reason=reason)

    def add(self, row: Row[Any], workflow: Workflow, advance: Advance) -> None:
        rendered, failure = self._render_emails(row, workflow, advance)
        self.outbox_rows.extend(rendered)
        if failure is not None:
            step, reason = failure
            # The run fails at that email step: what the domain decided after it is void.
            kept = advance.records[: [r.step for r in advance.records].index(step)]
            kept_steps = {r.step for r in kept}
            effects = tuple(e for e in advance.effects if e.step in kept_steps)
            lists = set(self.lists[row.contact_id])
            for effect in effects:
                if isinstance(effect, ChangeLists):
                    lists = (lists | set(effect.add)) - set(effect.remove)
            assert advance.facts is not None
            facts = replace(advance.facts, lists=frozenset(lists))
            self._history(row, kept, closed=advance.closed_wait, failure=failure)
            self._apply_effects(row, replace(advance, effects=effects, facts=facts))
            self._update_run(row, status=RunStatus.FAILED, step=step, reason=reason)
            return
        self._history(row, advance.records, closed=advance.closed_wait)
        self._apply_effects(row, advance)
        self._update_run(
            row,
            status=advance.status,
            step=advance.current_step,
            wake_at=advance.wake_at,
            waiting_for=advance.waiting_for,
            visits=dict(advance.visits),
            reason=advance.reason,
        )
        if advance.status in COMPLETION_STATUSES:
            self.new_events.append(completion_event(row, advance.status, now=self.now))

    def _update_run(
        self,
        row: Row[Any],
        *,
        status: RunStatus,
        step: str | None,
        wake_at: datetime | None = None,
        waiting_for: str | None = None,
        visits: dict[str, int] | None = None,
        reason: str | None = None,
    ) -> None:
        self.run_updates.append(
            {
                "id": row.id,
                "status": status.value,
                "current_step": step,
                "wake_at": wake_at,
                "waiting_for": waiting_for,
                "visits": visits if visits is not None else (row.visits or {}),
                "reason": reason,
                "ended_at": self.now if status in TERMINAL_STATUSES else None,
                "updated_at": self.now,
                "revision": row.revision + 1,
            }
        )

    def _history(
        self,
        row: Row[Any],
        records: tuple[StepRecord, ...],
        *,
        closed: StepOutcome | None,
        failure: tuple[str, str] | None = None,
    ) -> None:
        """Close the wait the run was parked on, append one row per step executed.

        `failure` is a reason found after the domain decided (a template that
        cannot render): it is recorded as a failed row at the run's step.
        """
        if closed is not None:
            first = records[0].step if records else None
            self.closes.append({"run_id": row.id, "outcome": closed.value, "next_step": first})
        base = {
            "run_id": row.id,
            "contact_id": row.contact_id,
            "workflow": row.workflow,
            "workflow_version": row.workflow_version,
        }
        for record in records:
            self.step_rows.append(base | history_values(record, now=self.now))
        if failure is not None:
            step, reason = failure
            failed = StepRecord(step, "email", StepOutcome.FAILED, detail=reason)
            self.step_rows.append(base | history_values(failed, now=self.now))

    def _render_emails(
        self, row: Row[Any], workflow: Workflow, advance: Advance
    ) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        """Outbox rows for the run's sends, up to the first that cannot render: (step, reason)."""
        sends = [e for e in advance.effects if isinstance(e, SendEmail)]
        if not sends:
            return [], None
        facts = advance.facts
        assert facts is not None
        context = template_context(facts, workflow.name, workflow.title)
        self._use_library()
        rows: list[dict[str, Any]] = []
        for send in sends:
            template = self.current.catalog.templates.get(send.template)
            if template is None:
                return rows, (
                    send.step,
                    f"step {send.step}: template {send.template} no longer exists",
                )
            version = self.current.template_version(send.template)
            repeat = self._recent().refusal(row.contact_id, template, workflow, now=self.now)
            if repeat is not None:
                rows.append(self._outbox_row(row, send, version, workflow, skipped=repeat))
                continue
            try:
                mail = self.ctx.renderer.render(template, version, context)
            except RenderError as exc:
                return rows, (send.step, f"step {send.step}: {exc}")
            has_address = row.contact_id in self._with_email()
            message_id = f"<{uuid.uuid4().hex}@carepath.invalid>"
            body, links = mail.html, None
            if self.ctx.links is not None:
                body, tracked = track(mail.html, self.ctx.links, message_id)
                links = [{"url": t.url, "tag": t.tag} for t in tracked]
            rendered = {"subject": mail.subject, "html": body, "links": links, "text": mail.text}
            missing = None if has_address else "contact has no email address"
            rows.append(
                self._outbox_row(
                    row, send, version, workflow, skipped=missing, content=rendered,
                    message_id=message_id,
                )
            )  # fmt: skip
        return rows, None

    def _outbox_row(
        self,
        row: Row[Any],
        send: SendEmail,
        version: int,
        workflow: Workflow,
        *,
        skipped: str | None,
        content: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """A message for the outbox; `skipped` (a reason) keeps it from being sent."""
        return {
            "contact_id": row.contact_id,
            "run_id": row.id,
            "workflow": row.workflow,
            "step": send.step,
            "channel": "email",
            "template": send.template,
            "template_version": version,
            "message_id": message_id or f"<{uuid.uuid4().hex}@carepath.invalid>",
            **(content or {"subject": "", "html": "", "links": None, "text": ""}),
            "purpose": workflow.purpose.value,
            "status": "pending" if skipped is None else "skipped",
            "attempts": 0,
            "next_attempt_at": self.now,
            "last_error": skipped,
            "created_at": self.now,
        }

    def _recent(self) -> RecentSends:
        if self._recent_sends is None:
            self._recent_sends = RecentSends(self.conn, self.current, self.contacts)
        return self._recent_sends

    def _use_library(self) -> None:
        """Give the renderer the catalog's templates, for layouts and partials (once a batch)."""
        if not self._library_set:
            self.ctx.renderer.use_library(self.current.template_library())
            self._library_set = True

    def _with_email(self) -> set[int]:
        """Contacts of the batch that have an address (read once, ids only)."""
        if self._addressable is None:
            self._addressable = with_email(self.conn, self.contacts)
        return self._addressable

    def _apply_effects(self, row: Row[Any], advance: Advance) -> None:
        cid = row.contact_id
        for effect in advance.effects:
            match effect:
                case UpdateContact():
                    assert advance.facts is not None
                    change = self.contact_changes.setdefault(cid, ContactChange())
                    change.record(effect, advance.facts.contact)
                case ChangeLists():
                    pass
                case CreateTask(step=step, queue=queue, title=title):
                    self.task_rows.append(
                        {
                            "contact_id": cid,
                            "run_id": row.id,
                            "workflow": row.workflow,
                            "step": step,
                            "queue": queue,
                            "title": title,
                            "status": "open",
                            "created_at": self.now,
                        }
                    )
                case CallWebhook():
                    assert advance.facts is not None
                    self.webhook_rows.append(
                        webhook_call_row(row, effect, advance.facts.contact, now=self.now)
                    )
                case StartRun(workflow=target):
                    self.enrollments.append(
                        EnrollRequest(
                            contact_id=cid,
                            workflow=target,
                            trigger_event_id=row.trigger_event_id,
                            chain_depth=row.chain_depth + 1,
                            parent_run_id=row.id,
                        )
                    )
        if advance.facts is not None:
            self.contacts[cid] = dict(advance.facts.contact)
            self.lists[cid] = set(advance.facts.lists)

    # ------------------------------------------------------------- writing

    def flush(self) -> None:
        conn = self.conn
        write_run_updates(conn, self.run_updates)
        close_open_steps(conn, self.closes, now=self.now)
        if self.step_rows:
            bulk_insert(conn, run_steps, self.step_rows)
        if self.outbox_rows:
            bulk_insert(conn, outbox, self.outbox_rows)
        if self.task_rows:
            bulk_insert(conn, tasks, self.task_rows)
        if self.webhook_rows:
            bulk_insert(conn, webhook_calls, self.webhook_rows)
        write_contact_changes(self.conn, self.contact_changes, now=self.now)
        self._flush_lists()
        if self.enrollments:
            outcome = enroll(
                conn,
                self.current,
                self.enrollments,
                now=self.now,
                max_chain_depth=self.ctx.limits.max_chain_depth,
            )
            self.new_events += [refused_enrollment(s, now=self.now) for s in outcome.skipped]
        if self.new_events:
            store_events(conn, self.new_events, now=self.now)

    def _flush_lists(self) -> None:
        joined: list[dict[str, Any]] = []
        left: dict[str, list[int]] = defaultdict(list)
        for cid, names in self.lists.items():
            before = self._original_lists.get(cid, set())
            joined += [
                {"contact_id": cid, "list_name": n, "joined_at": self.now}
                for n in sorted(names - before)
            ]
            for name in sorted(before - names):
                left[name].append(cid)
        insert_ignoring_conflicts(self.conn, list_members, joined)
        for name, ids in left.items():
            self.conn.execute(
                list_members.delete().where(
                    list_members.c.list_name == name, list_members.c.contact_id.in_(ids)
                )
            )
        stamp = self.now.isoformat()
        self.new_events += [
            NewEvent(
                "list.joined",
                j["contact_id"],
                self.now,
                f"list:{j['list_name']}:{j['contact_id']}:joined:{stamp}",
                {"list": j["list_name"]},
                "engine",
            )
            for j in joined
        ]
        self.new_events += [
            NewEvent(
                "list.left",
                cid,
                self.now,
                f"list:{name}:{cid}:left:{stamp}",
                {"list": name},
                "engine",
            )
            for name, ids in left.items()
            for cid in ids
        ]
