"""The workflow model: frozen dataclasses built by `workflow_parser`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum

from carepath.domain.conditions import Condition


class Purpose(StrEnum):
    MARKETING = "marketing"
    TREATMENT = "treatment"
    OPERATIONS = "operations"


class EndStatus(StrEnum):
    """How an `exit` step ends a run."""

    COMPLETED = "completed"
    CONVERTED = "converted"
    EXITED = "exited"


@dataclass(frozen=True)
class EmailStep:
    template: str
    next: str | None


@dataclass(frozen=True)
class UpdateStep:
    set: Mapping[str, object]
    unset: tuple[str, ...]
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    next: str | None


@dataclass(frozen=True)
class ListStep:
    add: tuple[str, ...]
    remove: tuple[str, ...]
    next: str | None


@dataclass(frozen=True)
class WaitStep:
    """Wait a duration, or until a date named by a field (with offset and local time)."""

    duration: timedelta | None
    until: str | None
    offset: timedelta
    at: time | None
    next: str | None


@dataclass(frozen=True)
class WaitForStep:
    event: str
    within: timedelta
    where: Condition | None
    next: str | None
    on_timeout: str | None


@dataclass(frozen=True)
class BranchCase:
    when: Condition
    goto: str


@dataclass(frozen=True)
class BranchStep:
    cases: tuple[BranchCase, ...]
    otherwise: str | None


@dataclass(frozen=True)
class SplitPath:
    weight: int
    goto: str


@dataclass(frozen=True)
class SplitStep:
    paths: tuple[SplitPath, ...]


@dataclass(frozen=True)
class TaskStep:
    queue: str
    title: str
    next: str | None


@dataclass(frozen=True)
class WebhookStep:
    """POST the run's contact (ids, and only the fields named) to an endpoint, signed."""

    url: str
    secret_env: str
    fields: tuple[str, ...]
    next: str | None


@dataclass(frozen=True)
class EnrollStep:
    workflow: str
    end_current: bool
    next: str | None


@dataclass(frozen=True)
class GotoStep:
    target: str


@dataclass(frozen=True)
class ExitStep:
    status: EndStatus


Step = (
    EmailStep
    | UpdateStep
    | ListStep
    | WaitStep
    | WaitForStep
    | BranchStep
    | SplitStep
    | TaskStep
    | WebhookStep
    | EnrollStep
    | GotoStep
    | ExitStep
)

WAITING_STEPS = (WaitStep, WaitForStep)


@dataclass(frozen=True)
class EventMatch:
    """An event type, optionally narrowed by a condition on the event and contact.

    Without an event type, the condition alone (a goal or exit that is a state,
    not a happening): checked before each step and when an event for the run
    is processed.
    """

    event: str | None
    when: Condition | None = None


@dataclass(frozen=True)
class EventTrigger:
    event: str
    when: Condition | None
    # Set for `trigger: {segment: NAME}`: enrolled on that segment's segment.entered events.
    segment: str | None = None


@dataclass(frozen=True)
class ManualTrigger:
    pass


@dataclass(frozen=True)
class DateTrigger:
    """Enroll on a date a contact field names: once, or every year on its anniversary.

    The moment is the field's date moved by `offset`, at `at` local time in the
    contact's zone (local midnight of a date field without `at`).
    """

    field: str  # a date or datetime contact field
    offset: timedelta = timedelta(0)
    at: time | None = None
    yearly: bool = False
    when: Condition | None = None  # on contact.* only: checked when the date comes


@dataclass(frozen=True)
class ScheduleTrigger:
    """Enroll an audience at a moment (a broadcast), or every `every` from `starting`."""

    starting: datetime
    every: timedelta | None
    audience: Condition  # on contact.*: who is enrolled, as they are at that moment


Trigger = EventTrigger | ManualTrigger | DateTrigger | ScheduleTrigger


class ReentryMode(StrEnum):
    NEVER = "never"
    ALWAYS = "always"
    AFTER = "after"


@dataclass(frozen=True)
class Reentry:
    mode: ReentryMode
    after: timedelta | None = None


@dataclass(frozen=True)
class Workflow:
    name: str
    title: str
    purpose: Purpose
    trigger: Trigger
    reentry: Reentry
    goal: EventMatch | None
    exit_when: EventMatch | None
    start: str
    steps: Mapping[str, Step]
    # Its emails reach a contact at most once per template within this window
    # (a template's own no_repeat wins).
    no_repeat: timedelta | None = None


def successors(step: Step) -> list[str]:
    """Every step a step can lead to, in a stable order."""
    match step:
        case BranchStep(cases, otherwise):
            targets = [c.goto for c in cases]
            return [*targets, otherwise] if otherwise else targets
        case SplitStep(paths):
            return [p.goto for p in paths]
        case GotoStep(target):
            return [target]
        case ExitStep():
            return []
        case WaitForStep(next=next_, on_timeout=timeout):
            return [t for t in (next_, timeout) if t]
    nxt = getattr(step, "next", None)
    return [nxt] if nxt else []


def step_kind(step: Step) -> str:
    """The action key a step was written with (`email`, `wait_for`, …)."""
    return _KIND_NAMES[type(step)]


_KIND_NAMES: dict[type, str] = {
    EmailStep: "email",
    UpdateStep: "update",
    ListStep: "list",
    WaitStep: "wait",
    WaitForStep: "wait_for",
    BranchStep: "branch",
    SplitStep: "split",
    TaskStep: "task",
    WebhookStep: "webhook",
    EnrollStep: "enroll",
    GotoStep: "goto",
    ExitStep: "exit",
}
