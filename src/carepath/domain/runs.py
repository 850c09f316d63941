"""Run states, step outcomes and the decisions a run's advance returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from carepath.domain.conditions import Facts
from carepath.domain.workflow import Workflow


class RunStatus(StrEnum):
    ACTIVE = "active"
    WAITING = "waiting"
    COMPLETED = "completed"
    CONVERTED = "converted"
    EXITED = "exited"
    FAILED = "failed"


LIVE_STATUSES = frozenset({RunStatus.ACTIVE, RunStatus.WAITING})
TERMINAL_STATUSES = frozenset(RunStatus) - LIVE_STATUSES
COMPLETION_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.CONVERTED})  # emit completion


class StepOutcome(StrEnum):
    DONE = "done"  # the step did its work and the run moved on
    WAITING = "waiting"  # the run is parked on this step (row still open)
    ELAPSED = "elapsed"  # a wait ended on time
    EVENT = "event"  # a wait_for caught its event
    TIMED_OUT = "timed_out"  # a wait_for's window ran out
    ENDED = "ended"  # an exit step, or a goal/exit_when, ended the run here
    FAILED = "failed"  # the step could not run; the run failed


@dataclass(frozen=True)
class Limits:
    """Caps that stop loops validation could not see."""

    max_step_visits: int = 50
    max_steps_per_turn: int = 200
    max_chain_depth: int = 5


@dataclass(frozen=True)
class RunSnapshot:
    """What the engine needs of one run to advance it."""

    id: int
    contact_id: int
    workflow: Workflow
    status: RunStatus
    current_step: str | None
    visits: Mapping[str, int]
    chain_depth: int
    facts: Facts


@dataclass(frozen=True)
class SendEmail:
    step: str
    template: str


@dataclass(frozen=True)
class UpdateContact:
    step: str
    set: Mapping[str, object]
    unset: tuple[str, ...]
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]


@dataclass(frozen=True)
class ChangeLists:
    step: str
    add: tuple[str, ...]
    remove: tuple[str, ...]


@dataclass(frozen=True)
class CreateTask:
    step: str
    queue: str
    title: str


@dataclass(frozen=True)
class CallWebhook:
    step: str
    url: str
    secret_env: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class StartRun:
    step: str
    workflow: str


Effect = SendEmail | UpdateContact | ChangeLists | CreateTask | CallWebhook | StartRun


@dataclass(frozen=True)
class StepRecord:
    """One step execution, as appended to run history."""

    step: str
    kind: str
    outcome: StepOutcome
    next_step: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Advance:
    """The decision for one run: its new state, its history rows and its effects."""

    status: RunStatus
    current_step: str | None
    wake_at: datetime | None
    waiting_for: str | None
    visits: Mapping[str, int]
    records: tuple[StepRecord, ...]
    effects: tuple[Effect, ...]
    reason: str | None = None
    closed_wait: StepOutcome | None = None  # how the open wait row, if any, ended
    facts: Facts | None = None
