"""Property tests for the run state machine over generated, valid workflows.

Each example builds a random workflow of up to eight steps (every kind of step,
cycles allowed as long as validation accepts them), a random contact and random
limits, then drives one run by its wake times until it ends, checking every turn.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from carepath.domain.conditions import EventFacts, Facts
from carepath.domain.engine import advance_run
from carepath.domain.graph import check_workflow_graph
from carepath.domain.problems import Problems
from carepath.domain.runs import (
    TERMINAL_STATUSES,
    Advance,
    Limits,
    RunSnapshot,
    RunStatus,
    StepOutcome,
)
from carepath.domain.workflow import (
    WAITING_STEPS,
    EndStatus,
    WaitForStep,
    WaitStep,
    Workflow,
    successors,
)
from carepath.domain.workflow_parser import parse_workflow

from .builders import NOW, SCHEMA, workflow_doc

NAMES = [f"s{i}" for i in range(8)]
CONDITIONS = [
    {"field": "contact.score", "gte": 40},
    {"field": "contact.plan", "eq": "gold"},
    {"field": "contact.tags", "contains": "engaged"},
    {"in_list": "vip"},
    {"not": {"in_list": "vip"}},
    {"any": [{"field": "contact.score", "lt": 10}, {"field": "contact.smoker", "eq": True}]},
]
ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC"]


def compact(body: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in body.items() if v is not None}


durations = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(1, 72), st.sampled_from(["m", "h", "d"])
)


@cache
def step_bodies(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, object]]:
    """Any step, leading only to `names` (built once per set of names)."""
    target = st.sampled_from(names)
    maybe = st.one_of(st.none(), target)
    nxt = st.fixed_dictionaries({"next": maybe})
    return st.one_of(
        st.builds(lambda n: compact({"email": "t", **n}), nxt),
        st.builds(
            lambda plan, tag, n: compact(
                {"update": {"set": {"plan": plan}, "add_tags": [tag]}, **n}
            ),
            st.sampled_from(["gold", "silver"]), st.sampled_from(["engaged", "new"]), nxt,
        ),
        st.builds(
            lambda key, n: compact({"list": {key: "vip"}, **n}),
            st.sampled_from(["add", "remove"]), nxt,
        ),
        st.builds(lambda n: compact({"task": {"queue": "calls", "title": "Call"}, **n}), nxt),
        st.builds(
            lambda end, n: compact({"enroll": {"workflow": "other", "end_current": end}, **n}),
            st.booleans(), nxt,
        ),
        st.builds(lambda d, n: compact({"wait": d, **n}), durations, nxt),
        st.builds(
            lambda until, offset, at, n: compact(
                {"wait": compact({"until": until, "offset": offset, "at": at}), **n}
            ),
            st.sampled_from(["trigger.data.starts_at", "contact.surgery_date"]),
            st.sampled_from(["0d", "-2d", "1d", "-36h"]),
            st.sampled_from([None, "09:00", "02:30"]),
            nxt,
        ),
        st.builds(
            lambda d, n, timeout: compact(
                {"wait_for": {"event": "email.clicked", "within": d}, **n, "on_timeout": timeout}
            ),
            durations, nxt, maybe,
        ),
        st.builds(
            lambda cases, otherwise: compact({"branch": cases, "otherwise": otherwise}),
            st.lists(
                st.builds(lambda c, g: {"when": c, "goto": g}, st.sampled_from(CONDITIONS), target),
                min_size=1, max_size=3,
            ),
            maybe,
        ),
        st.builds(
            lambda paths: {"split": paths},
            st.lists(
                st.builds(lambda w, g: {"weight": w, "goto": g}, st.integers(1, 5), target),
                min_size=2, max_size=3,
            ),
        ),
        st.builds(lambda g: {"goto": g}, target),
        st.builds(lambda end: {"exit": end.value}, st.sampled_from(list(EndStatus))),
    )  # fmt: skip


def _reachable(workflow: Workflow) -> set[str]:
    seen: set[str] = set()
    stack = [workflow.start]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(successors(workflow.steps[name]))
    return seen


def make_valid(steps: dict[str, dict[str, object]]) -> Workflow:
    """Repair a random step graph until validation accepts it.

    Unreachable steps are dropped; a step that starts a loop with no wait becomes
    a one-hour wait leading where it led. Each round removes a step or adds a
    wait, so this ends; the result passes every check `carepath validate` runs.
    """
    while True:
        problems = Problems()
        workflow = parse_workflow(workflow_doc(steps, start="s0"), SCHEMA, problems)
        assert workflow is not None, problems.items
        reachable = _reachable(workflow)
        if reachable != set(steps):
            steps = {name: body for name, body in steps.items() if name in reachable}
            continue
        check_workflow_graph(workflow, problems)
        if not problems:
            return workflow
        for problem in problems.items:
            assert problem.message.startswith("loop with no wait"), problem
            name = str(problem.path[1])
            steps[name] = {"wait": "1h", "next": successors(workflow.steps[name])[0]}


@st.composite
def workflows(draw: st.DrawFn) -> Workflow:
    names = tuple(NAMES[: draw(st.integers(1, len(NAMES)))])
    bodies = step_bodies(names)
    return make_valid({name: draw(bodies) for name in names})


@st.composite
def run_facts(draw: st.DrawFn, now: datetime) -> Facts:
    moments = st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    )
    starts_at = draw(st.one_of(
        st.none(),
        moments.map(lambda m: m.isoformat()),
        st.dates(date(2026, 1, 1), date(2026, 12, 31)).map(date.isoformat),
        st.just("not a date"),
    ))  # fmt: skip
    contact = compact({
        "score": draw(st.one_of(st.none(), st.integers(0, 100))),
        "plan": draw(st.sampled_from([None, "gold", "silver"])),
        "smoker": draw(st.one_of(st.none(), st.booleans())),
        "tags": draw(st.lists(st.sampled_from(["engaged", "new"]), unique=True)),
        "surgery_date": draw(st.one_of(st.none(), st.dates(date(2026, 1, 1), date(2026, 12, 31)))),
        "time_zone": draw(st.sampled_from(ZONES)),
    })  # fmt: skip
    trigger = EventFacts("form.submitted", now, compact({"starts_at": starts_at}))
    lists = frozenset(draw(st.sets(st.just("vip"))))
    return Facts(contact, now, lists=lists, trigger=trigger, event=trigger)


@dataclass(frozen=True)
class Scenario:
    run: RunSnapshot
    now: datetime
    limits: Limits
    lateness_seed: int  # 0: every wake-up is picked up on time; else up to 3 h late

    def lateness(self, turn: int) -> timedelta:
        return timedelta(seconds=(self.lateness_seed * (turn + 1) * 7919) % (3 * 3600))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    workflow = draw(workflows())
    now = NOW + timedelta(minutes=draw(st.integers(0, 60 * 24 * 300)))
    limits = Limits(
        max_step_visits=draw(st.integers(1, 4)),
        max_steps_per_turn=draw(st.integers(1, 20)),
        max_chain_depth=draw(st.integers(0, 3)),
    )
    run = RunSnapshot(
        id=7,
        contact_id=draw(st.integers(1, 10_000)),
        workflow=workflow,
        status=RunStatus.ACTIVE,
        current_step=workflow.start,
        visits={},
        chain_depth=draw(st.integers(0, 4)),
        facts=draw(run_facts(now)),
    )
    return Scenario(run, now, limits, draw(st.integers(0, 3 * 3600)))


@dataclass(frozen=True)
class Turn:
    before: RunSnapshot
    now: datetime
    result: Advance


def drive(scenario: Scenario) -> list[Turn]:
    """Advance the run, then wake it at (or a little after) each wake time, until it ends."""
    run, now = scenario.run, scenario.now
    bound = len(run.workflow.steps) * scenario.limits.max_step_visits + 1
    turns: list[Turn] = []
    for number in range(bound):
        result = advance_run(run, now=now, limits=scenario.limits)
        turns.append(Turn(run, now, result))
        if result.status is not RunStatus.WAITING:
            return turns
        assert result.wake_at is not None
        assert result.facts is not None
        now = result.wake_at + scenario.lateness(number)
        run = replace(
            run,
            status=result.status,
            current_step=result.current_step,
            visits=result.visits,
            facts=replace(result.facts, now=now),
        )
    raise AssertionError(f"run still waiting after {bound} turns: {turns[-1].result}")


def ran(turn: Turn) -> Counter[str]:
    """Steps a turn ran, by how much their visit counts went up."""
    added = Counter(turn.result.visits)
    added.subtract(turn.before.visits)
    assert all(count >= 0 for count in added.values())
    return +added


def completed_records(result: Advance) -> Counter[str]:
    return Counter(r.step for r in result.records if r.outcome is not StepOutcome.FAILED)


def check_every_turn(check: Callable[[Turn, Scenario], None]) -> Callable[[Scenario], None]:
    def run_checks(scenario: Scenario) -> None:
        for turn in drive(scenario):
            check(turn, scenario)

    return run_checks


PROPERTY = settings(max_examples=150, deadline=None)


@PROPERTY
@given(scenarios())
def test_every_turn_ends_waiting_for_a_future_time_on_a_wait_step_or_in_an_end_state(
    scenario: Scenario,
) -> None:
    @check_every_turn
    def check(turn: Turn, scenario: Scenario) -> None:
        result, steps = turn.result, scenario.run.workflow.steps
        if result.status is RunStatus.WAITING:
            assert result.wake_at is not None
            assert result.wake_at > turn.now
            assert result.wake_at.utcoffset() == timedelta(0)
            assert result.current_step in steps
            step = steps[result.current_step]
            assert isinstance(step, WAITING_STEPS)
            expected_event = step.event if isinstance(step, WaitForStep) else None
            assert result.waiting_for == expected_event
            assert result.records[-1].step == result.current_step
            assert result.records[-1].outcome is StepOutcome.WAITING
        else:
            assert result.status in TERMINAL_STATUSES
            assert result.wake_at is None
            assert result.waiting_for is None
        if result.status is RunStatus.FAILED:
            assert result.reason
            assert result.current_step in steps
            assert result.records[-1].step == result.current_step
            assert result.records[-1].outcome is StepOutcome.FAILED
            assert result.records[-1].detail == result.reason

    check(scenario)


@PROPERTY
@given(scenarios())
def test_visit_counts_never_exceed_the_cap_and_count_exactly_the_steps_run(
    scenario: Scenario,
) -> None:
    @check_every_turn
    def check(turn: Turn, scenario: Scenario) -> None:
        visits = turn.result.visits
        assert all(0 < count <= scenario.limits.max_step_visits for count in visits.values())
        # Every step that finished has one record; a step that failed while running
        # (an enroll past the chain cap) was visited and has a FAILED record; a step
        # refused by a cap was not visited.
        everything = Counter(r.step for r in turn.result.records)
        assert completed_records(turn.result) <= ran(turn) <= everything

    check(scenario)


@PROPERTY
@given(scenarios())
def test_a_turn_never_runs_more_than_max_steps_per_turn(scenario: Scenario) -> None:
    @check_every_turn
    def check(turn: Turn, scenario: Scenario) -> None:
        steps_run = sum(ran(turn).values())
        assert steps_run <= scenario.limits.max_steps_per_turn
        assert len(turn.result.effects) <= steps_run

    check(scenario)


@PROPERTY
@given(scenarios())
def test_records_name_real_steps_and_follow_each_other_in_order(scenario: Scenario) -> None:
    @check_every_turn
    def check(turn: Turn, scenario: Scenario) -> None:
        steps = scenario.run.workflow.steps
        records = turn.result.records
        assert all(r.step in steps for r in records)
        assert all(r.next_step is None or r.next_step in steps for r in records)
        for earlier, later in itertools.pairwise(records):
            assert earlier.next_step == later.step
        assert all(effect.step in ran(turn) for effect in turn.result.effects)
        if turn.before.status is RunStatus.ACTIVE:
            assert turn.result.closed_wait is None
            assert records[0].step == turn.before.current_step
        if turn.result.status is RunStatus.COMPLETED and turn.result.current_step is None:
            assert not records or records[-1].next_step is None

    check(scenario)


@PROPERTY
@given(scenarios())
def test_waking_a_waiting_run_closes_its_wait_and_carries_on_from_there(
    scenario: Scenario,
) -> None:
    @check_every_turn
    def check(turn: Turn, scenario: Scenario) -> None:
        if turn.before.status is not RunStatus.WAITING:
            return
        assert turn.before.current_step is not None
        step = scenario.run.workflow.steps[turn.before.current_step]
        result = turn.result
        if isinstance(step, WaitForStep):
            assert result.closed_wait is StepOutcome.TIMED_OUT
            following = step.on_timeout
            if following is None:
                assert result.status is RunStatus.EXITED
                assert result.reason == f"timed out waiting for {step.event}"
                assert result.records == ()
                assert result.effects == ()
                return
        else:
            assert isinstance(step, WaitStep)
            assert result.closed_wait is StepOutcome.ELAPSED
            following = step.next
        if following is None:
            assert (result.status, result.records) == (RunStatus.COMPLETED, ())
        else:
            assert result.records[0].step == following

    check(scenario)


@PROPERTY
@given(scenarios())
def test_driving_a_run_by_its_wake_times_always_reaches_an_end(scenario: Scenario) -> None:
    turns = drive(scenario)

    assert turns[-1].result.status in TERMINAL_STATUSES
    total = Counter(turns[-1].result.visits)
    assert total == sum((ran(t) for t in turns), Counter())
    wakes = [t.now for t in turns]
    assert wakes == sorted(wakes)


def test_generated_workflows_cover_waits_loops_and_every_step_kind() -> None:
    """Guard for the generator itself: the properties above see varied workflows (the same
    examples every run: a guard that failed by chance would only be noise)."""
    seen_kinds: set[str] = set()
    loops_through_waits = 0

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(workflows())
    def collect(workflow: Workflow) -> None:
        nonlocal loops_through_waits
        seen_kinds.update(type(step).__name__ for step in workflow.steps.values())
        names = list(workflow.steps)
        backwards = [
            target
            for name, step in workflow.steps.items()
            for target in successors(step)
            if target in names[: names.index(name) + 1]
        ]
        if backwards:  # an edge back to an earlier step (or itself) closes a loop
            loops_through_waits += 1

    collect()

    assert len(seen_kinds) == 11
    assert loops_through_waits > 10
