"""What a workflow's turns can depend on, so that runs that agree on it share one decision.

`advance_run` reads a run's position and counters and only a few facts: the
contact fields its branches and dated waits look at, the lists its branches
name, trigger and event data when its conditions read them, the chain depth
at an enroll step and the contact id at a split. Runs of one workflow version
that agree on all of these get the same `Advance`, apart from which run and
contact it belongs to: a cohort. The runner groups runs by these in SQL,
computes one decision per cohort and writes it for every member with a
handful of set-oriented statements.
"""

from __future__ import annotations

from dataclasses import dataclass

from carepath.domain.conditions import (
    Condition,
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
    lists: tuple[str, ...]  # lists whose membership branches test
    events: bool  # branches or waits read trigger or event data
    per_contact: bool  # a split: every contact decides alone
    segments: tuple[str, ...] = ()  # segments whose membership branches test


def turn_inputs(workflow: Workflow) -> TurnInputs:
    conditions: list[Condition] = [
        match.when
        for match in (workflow.goal, workflow.exit_when)
        if match is not None and match.event is None and match.when is not None
    ]
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
    memberships: dict[str, set[str]] = {"list": set(), "segment": set()}
    for condition in conditions:
        fields |= referenced_contact_fields(condition)
        events = events or bool(referenced_scopes(condition) - {Scope.CONTACT})
        for kind, name in referenced_memberships(condition):
            memberships[kind].add(name)
    lists, segments = (tuple(sorted(memberships[k])) for k in ("list", "segment"))
    return TurnInputs(tuple(sorted(fields)), lists, events, per_contact, segments)
