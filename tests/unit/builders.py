"""Small builders shared by the domain unit tests: workflows from raw documents, runs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from carepath.domain.conditions import EventFacts, Facts
from carepath.domain.fields import ContactSchema, FieldSpec, FieldType
from carepath.domain.graph import check_workflow_graph
from carepath.domain.problems import Problems
from carepath.domain.runs import RunSnapshot, RunStatus
from carepath.domain.workflow import Workflow
from carepath.domain.workflow_parser import parse_workflow

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

SCHEMA = ContactSchema(
    custom={
        "score": FieldSpec("score", FieldType.NUMBER),
        "plan": FieldSpec("plan", FieldType.STRING),
        "surgery_date": FieldSpec("surgery_date", FieldType.DATE),
        "smoker": FieldSpec("smoker", FieldType.BOOL),
    }
)


def workflow_doc(steps: Mapping[str, object], **extra: object) -> dict[str, object]:
    """A minimal valid workflow document around `steps` (manual trigger)."""
    return {"workflow": "journey", "trigger": "manual", **extra, "steps": dict(steps)}


def parse_problems(doc: Mapping[str, object]) -> Problems:
    """Every problem parsing and graph checking finds in a workflow document."""
    problems = Problems()
    workflow = parse_workflow(doc, SCHEMA, problems)
    if workflow is not None:
        check_workflow_graph(workflow, problems)
    return problems


def valid_workflow(steps: Mapping[str, object], **extra: object) -> Workflow:
    """Parse and graph-check a workflow, failing the test on any problem."""
    problems = Problems()
    workflow = parse_workflow(workflow_doc(steps, **extra), SCHEMA, problems)
    assert workflow is not None, problems.items
    check_workflow_graph(workflow, problems)
    assert not problems, problems.items
    return workflow


def make_facts(
    contact: Mapping[str, object] | None = None,
    *,
    now: datetime = NOW,
    trigger_data: Mapping[str, object] | None = None,
    lists: frozenset[str] = frozenset(),
) -> Facts:
    trigger = EventFacts("form.submitted", now, dict(trigger_data or {}))
    return Facts(contact=dict(contact or {}), now=now, lists=lists, trigger=trigger, event=trigger)


def new_run(
    workflow: Workflow,
    *,
    contact_id: int = 1,
    facts: Facts | None = None,
    chain_depth: int = 0,
) -> RunSnapshot:
    """A freshly enrolled run, about to execute its start step."""
    return RunSnapshot(
        id=1,
        contact_id=contact_id,
        workflow=workflow,
        status=RunStatus.ACTIVE,
        current_step=workflow.start,
        visits={},
        chain_depth=chain_depth,
        facts=facts or make_facts(),
    )


# The example journey from DESIGN.md §3, verbatim.
BARIATRIC_YAML = """\
workflow: bariatric-journey
title: Bariatric surgery journey
purpose: marketing
trigger:
  event: form.submitted
  when: {all: [{field: event.data.form, eq: bariatric-hra}, {field: event.data.score, gte: 40}]}
reentry: never
goal: {event: surgery.scheduled}
exit_when: {event: contact.opted_out}
start: educate
steps:
  educate:
    email: bariatric-education
    next: await-click
  await-click:
    wait_for: {event: email.clicked, within: 7d}
    next: call
    on_timeout: stories
  stories:
    email: bariatric-stories
    next: call
  call:
    task: {queue: contact-center, title: Discuss a consultation}
    next: await-booking
  await-booking:
    wait_for: {event: appointment.scheduled, within: 14d}
    next: reminders
    on_timeout: done
  reminders:
    wait: {until: event.data.starts_at, offset: -2d, at: "09:00"}
    next: logistics
  logistics:
    email: consult-logistics
    next: done
  done:
    exit: completed
"""
