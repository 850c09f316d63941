"""Advance one run through its workflow until it waits or ends. Pure: no I/O.

The caller passes the run, its facts and `now`; the result says what the run
became, which history rows to append and which effects to carry out. Updates
and list changes are applied to the in-memory facts as the run goes, so a
later branch sees them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from carepath.domain.conditions import Facts, Scope, evaluate, resolve
from carepath.domain.fields import parse_datetime
from carepath.domain.runs import (
    Advance,
    CallWebhook,
    ChangeLists,
    CreateTask,
    Effect,
    Limits,
    RunSnapshot,
    RunStatus,
    SendEmail,
    StartRun,
    StepOutcome,
    StepRecord,
    UpdateContact,
)
from carepath.domain.scheduling import resolve_wait_until
from carepath.domain.workflow import (
    BranchStep,
    EmailStep,
    EndStatus,
    EnrollStep,
    ExitStep,
    GotoStep,
    ListStep,
    SplitStep,
    Step,
    TaskStep,
    UpdateStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
    step_kind,
)


class _RunFailedError(Exception):
    """Raised inside a turn; becomes a failed run with this readable reason."""


@dataclass
class _Turn:
    run: RunSnapshot
    now: datetime
    limits: Limits
    facts: Facts
    visits: dict[str, int]
    at: str | None = None  # the step being run, so a failure is recorded where it happened
    records: list[StepRecord] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)

    def result(
        self,
        status: RunStatus,
        step: str | None,
        *,
        wake_at: datetime | None = None,
        waiting_for: str | None = None,
        reason: str | None = None,
        closed_wait: StepOutcome | None = None,
    ) -> Advance:
        return Advance(
            status=status,
            current_step=step,
            wake_at=wake_at,
            waiting_for=waiting_for,
            visits=self.visits,
            records=tuple(self.records),
            effects=tuple(self.effects),
            reason=reason,
            closed_wait=closed_wait,
            facts=self.facts,
        )


def advance_run(run: RunSnapshot, *, now: datetime, limits: Limits) -> Advance:
    """Run steps from the run's current position until it waits, ends or fails."""
    turn = _Turn(run, now, limits, run.facts, dict(run.visits))
    closed: StepOutcome | None = None
    current = run.current_step
    if run.status is RunStatus.WAITING and current is not None:
        step = run.workflow.steps[current]
        if isinstance(step, WaitForStep):
            closed = StepOutcome.TIMED_OUT
            if step.on_timeout is None:
                reason = f"timed out waiting for {step.event}"
                return turn.result(RunStatus.EXITED, current, reason=reason, closed_wait=closed)
            current = step.on_timeout
        else:
            closed = StepOutcome.ELAPSED
            current = getattr(step, "next", None)
    try:
        return _run_steps(turn, current, closed)
    except _RunFailedError as exc:
        failed_at = turn.at or current
        if failed_at is not None:
            step = run.workflow.steps[failed_at]
            _record(turn, failed_at, step, StepOutcome.FAILED, detail=str(exc))
        return turn.result(RunStatus.FAILED, failed_at, reason=str(exc), closed_wait=closed)


def _run_steps(turn: _Turn, current: str | None, closed: StepOutcome | None) -> Advance:
    executed = 0
    while current is not None:
        turn.at = current
        executed += 1
        if executed > turn.limits.max_steps_per_turn:
            raise _RunFailedError(
                f"more than {turn.limits.max_steps_per_turn} steps without a wait"
            )
        visits = turn.visits.get(current, 0) + 1
        if visits > turn.limits.max_step_visits:
            raise _RunFailedError(
                f"step {current} visited more than {turn.limits.max_step_visits} times"
            )
        turn.visits[current] = visits
        ended = _state_reached(turn, current)
        if ended is not None:
            return replace(ended, closed_wait=closed)
        step = turn.run.workflow.steps[current]
        outcome = _execute(turn, current, step)
        if isinstance(outcome, Advance):
            return replace(outcome, closed_wait=closed)
        current = outcome
    return turn.result(RunStatus.COMPLETED, None, closed_wait=closed)


def _state_reached(turn: _Turn, current: str) -> Advance | None:
    """A goal or exit that is a condition alone ends the run before its next step."""
    workflow = turn.run.workflow
    for match, status, label in (
        (workflow.goal, RunStatus.CONVERTED, "goal reached: condition"),
        (workflow.exit_when, RunStatus.EXITED, "exit_when: condition"),
    ):
        when = match.when if match is not None and match.event is None else None
        if when is not None and evaluate(when, turn.facts):
            return turn.result(status, current, reason=label)
    return None


def _record(
    turn: _Turn,
    name: str,
    step: Step,
    outcome: StepOutcome,
    *,
    next_step: str | None = None,
    detail: str | None = None,
) -> None:
    turn.records.append(StepRecord(name, step_kind(step), outcome, next_step, detail))


def _execute(turn: _Turn, name: str, step: Step) -> str | Advance | None:
    """Execute one step: the next step's name, None to complete, or a final Advance."""
    match step:
        case WaitStep():
            return _wait(turn, name, step)
        case WaitForStep(event=event, within=within):
            _record(turn, name, step, StepOutcome.WAITING)
            return turn.result(
                RunStatus.WAITING, name, wake_at=turn.now + within, waiting_for=event
            )
        case BranchStep() | SplitStep() | GotoStep() | ExitStep():
            return _route(turn, name, step)
        case _:
            return _act(turn, name, step)


def _act(
    turn: _Turn,
    name: str,
    step: EmailStep | UpdateStep | ListStep | TaskStep | WebhookStep | EnrollStep,
) -> str | Advance | None:
    """Carry out a step's effect, then go on to its `next` (an enroll may end the run)."""
    match step:
        case EmailStep(template=template):
            turn.effects.append(SendEmail(name, template))
        case UpdateStep():
            _apply_update(turn, name, step)
        case ListStep(add=add, remove=remove):
            turn.effects.append(ChangeLists(name, add, remove))
            lists = (turn.facts.lists | set(add)) - set(remove)
            turn.facts = replace(turn.facts, lists=frozenset(lists))
        case TaskStep(queue=queue, title=title):
            turn.effects.append(CreateTask(name, queue, title))
        case WebhookStep(url=url, secret_env=secret_env, fields=fields):
            turn.effects.append(CallWebhook(name, url, secret_env, fields))
        case EnrollStep(workflow=target, end_current=end_current):
            if turn.run.chain_depth + 1 > turn.limits.max_chain_depth:
                raise _RunFailedError(
                    f"enrollment chain deeper than {turn.limits.max_chain_depth} at step {name}"
                )
            turn.effects.append(StartRun(name, target))
            if end_current:
                _record(turn, name, step, StepOutcome.ENDED, detail=f"moved to {target}")
                return turn.result(RunStatus.COMPLETED, name, reason=f"moved to workflow {target}")
    _record(turn, name, step, StepOutcome.DONE, next_step=step.next)
    return step.next


def _route(
    turn: _Turn, name: str, step: BranchStep | SplitStep | GotoStep | ExitStep
) -> str | Advance | None:
    """Where a routing step sends the run; an exit step ends it."""
    match step:
        case BranchStep():
            branch, detail = _choose_branch(step, turn.facts)
            _record(turn, name, step, StepOutcome.DONE, next_step=branch, detail=detail)
            return branch
        case SplitStep(paths=paths):
            index = split_index(
                turn.run.contact_id, turn.run.workflow.name, name, [p.weight for p in paths]
            )
            target = paths[index].goto
            _record(
                turn, name, step, StepOutcome.DONE, next_step=target, detail=f"path {index + 1}"
            )
            return target
        case GotoStep(target=target):
            _record(turn, name, step, StepOutcome.DONE, next_step=target)
            return target
        case ExitStep(status=end):
            _record(turn, name, step, StepOutcome.ENDED, detail=end.value)
            return turn.result(_END_STATUS[end], name, reason=f"exit step {name}")


_END_STATUS = {
    EndStatus.COMPLETED: RunStatus.COMPLETED,
    EndStatus.CONVERTED: RunStatus.CONVERTED,
    EndStatus.EXITED: RunStatus.EXITED,
}


def _apply_update(turn: _Turn, name: str, step: UpdateStep) -> None:
    values = {key.removeprefix("contact."): value for key, value in step.set.items()}
    unset = tuple(key.removeprefix("contact.") for key in step.unset)
    turn.effects.append(UpdateContact(name, values, unset, step.add_tags, step.remove_tags))
    contact = dict(turn.facts.contact)
    contact.update(values)
    for key in unset:
        contact.pop(key, None)
    if step.add_tags or step.remove_tags:
        contact["tags"] = tags_after(contact.get("tags"), step.add_tags, step.remove_tags)
    turn.facts = replace(turn.facts, contact=contact)


def tags_after(tags: object, add: tuple[str, ...], remove: tuple[str, ...]) -> list[str]:
    """A contact's tags after an update: removed ones go, added ones join at the end once."""
    current = [t for t in tags if t not in remove] if isinstance(tags, list) else []
    current += [t for t in add if t not in current]
    return current


def _wait(turn: _Turn, name: str, step: WaitStep) -> str | Advance | None:
    if step.duration is not None:
        until = turn.now + step.duration
    else:
        assert step.until is not None
        until = _resolve_until(turn, name, step)
    if until <= turn.now:
        _record(
            turn,
            name,
            step,
            StepOutcome.ELAPSED,
            next_step=step.next,
            detail="date already passed",
        )
        return step.next
    _record(turn, name, step, StepOutcome.WAITING)
    return turn.result(RunStatus.WAITING, name, wake_at=until)


def _resolve_until(turn: _Turn, name: str, step: WaitStep) -> datetime:
    assert step.until is not None
    scope, *path = step.until.split(".")
    value = resolve(Scope(scope), path, turn.facts)
    try:
        anchor = _date_or_instant(value)
    except (ValueError, TypeError):
        raise _RunFailedError(f"step {name}: {step.until} is missing or not a date") from None
    time_zone = turn.facts.contact.get("time_zone")
    return resolve_wait_until(
        anchor,
        offset=step.offset,
        at=step.at,
        time_zone=time_zone if isinstance(time_zone, str) else None,
    )


def _date_or_instant(value: object) -> date | datetime:
    """A calendar date stays a date (a day in the contact's zone); the rest are instants."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        return date.fromisoformat(value.strip())
    return parse_datetime(value)


def _choose_branch(step: BranchStep, facts: Facts) -> tuple[str | None, str]:
    for i, case in enumerate(step.cases, start=1):
        if evaluate(case.when, facts):
            return case.goto, f"case {i}"
    return step.otherwise, "otherwise"


def split_index(contact_id: int, workflow: str, step: str, weights: list[int]) -> int:
    """Deterministic weighted choice: the same contact always takes the same path."""
    digest = hashlib.sha256(f"{workflow}\x00{step}\x00{contact_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(weights)
    for index, weight in enumerate(weights):
        if point < weight:
            return index
        point -= weight
    raise AssertionError("unreachable: point is below the total weight")
