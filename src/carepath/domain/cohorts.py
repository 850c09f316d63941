"""Runs that must come to the same decision, so that one turn decides for all of them.

`advance_run` reads a run's position and counters and only a few facts: the
contact fields its branches and dated waits look at, the lists its branches
name, trigger and event data when its conditions read them, the chain depth
at an enroll step and the contact id at a split. Runs of one workflow version
that agree on all of these get the same `Advance`, apart from which run and
contact it belongs to. The runner computes it once per such cohort and writes
it for every member with a handful of set-oriented statements.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from carepath.domain.conditions import (
    Condition,
    Facts,
    Scope,
    referenced_contact_fields,
    referenced_memberships,
    referenced_scopes,
)
from carepath.domain.workflow import BranchStep, SplitStep, WaitStep, Workflow


@dataclass(frozen=True)
class TurnInputs:
    """What of a run's facts a workflow's turns can depend on."""

    fields: tuple[str, ...]  # contact fields read by branches and dated waits
    lists: bool  # branches test list membership
    events: bool  # branches or waits read trigger or event data
    per_contact: bool  # a split, or a segment test: every contact decides alone


def turn_inputs(workflow: Workflow) -> TurnInputs:
    conditions: list[Condition] = []
    fields: set[str] = set()
    events = per_contact = False
    for step in workflow.steps.values():
        match step:
            case BranchStep(cases=cases):
                conditions.extend(c.when for c in cases)
            case SplitStep():
                per_contact = True
            case WaitStep(until=until) if until is not None:
                scope, _, name = until.partition(".")
                fields.add("time_zone")
                if scope == Scope.CONTACT.value:
                    fields.add(name.partition(".")[0])
                else:
                    events = True
    lists = False
    for condition in conditions:
        fields |= referenced_contact_fields(condition)
        events = events or bool(referenced_scopes(condition) - {Scope.CONTACT})
        kinds = {kind for kind, _ in referenced_memberships(condition)}
        lists = lists or "list" in kinds
        per_contact = per_contact or "segment" in kinds
    return TurnInputs(tuple(sorted(fields)), lists, events, per_contact)


@dataclass(frozen=True)
class RunPosition:
    """Where a run stands, as claimed."""

    contact_id: int
    resource_id: int
    status: str
    current_step: str | None
    visits: Mapping[str, int]
    chain_depth: int
    trigger_event_id: int | None
    event_id: int | None


def cohort_key(inputs: TurnInputs, run: RunPosition, facts: Facts) -> Hashable:
    """Equal keys, equal decisions: everything `advance_run` may read, frozen."""
    return (
        run.resource_id,
        run.status,
        run.current_step,
        tuple(sorted(run.visits.items())),
        run.chain_depth,
        tuple(_frozen(facts.contact.get(name)) for name in inputs.fields),
        facts.lists if inputs.lists else None,
        (run.trigger_event_id, run.event_id) if inputs.events else None,
        run.contact_id if inputs.per_contact else None,
    )


def _frozen(value: object) -> Hashable:
    """A hashable stand-in that keeps 1, 1.0, True and "1" apart."""
    match value:
        case list() | tuple():
            return ("seq", tuple(_frozen(v) for v in value))
        case dict():
            return ("map", tuple(sorted((str(k), _frozen(v)) for k, v in value.items())))
        case None | bool() | int() | float() | str() | date() | datetime():
            return (type(value).__name__, value)
    return ("repr", repr(value))
