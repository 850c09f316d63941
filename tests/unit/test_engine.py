from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml

from carepath.domain.conditions import EventFacts
from carepath.domain.engine import advance_run, split_index
from carepath.domain.problems import Problems
from carepath.domain.runs import (
    Advance,
    CreateTask,
    Limits,
    RunSnapshot,
    RunStatus,
    SendEmail,
    StartRun,
    StepOutcome,
    StepRecord,
    UpdateContact,
)
from carepath.domain.workflow import Workflow
from carepath.domain.workflow_parser import parse_workflow

from .builders import BARIATRIC_YAML, NOW, SCHEMA, make_facts, new_run, valid_workflow

LIMITS = Limits()
END = {"exit": "completed"}


def resume(run: RunSnapshot, advance: Advance, now: datetime) -> RunSnapshot:
    """The run as stored after `advance`, picked up again at `now`."""
    assert advance.facts is not None
    return replace(
        run,
        status=advance.status,
        current_step=advance.current_step,
        visits=advance.visits,
        facts=replace(advance.facts, now=now),
    )


def steps_taken(advance: Advance) -> list[tuple[str, StepOutcome]]:
    return [(r.step, r.outcome) for r in advance.records]


# ------------------------------------------------------------------- split


def test_split_sends_contacts_down_paths_in_proportion_to_the_weights() -> None:
    counts = Counter(split_index(cid, "journey", "ab", [70, 30]) for cid in range(1, 10_001))

    assert 0.68 < counts[0] / 10_000 < 0.72
    assert counts[0] + counts[1] == 10_000


def test_three_way_split_matches_its_weights() -> None:
    counts = Counter(split_index(cid, "journey", "abc", [1, 1, 2]) for cid in range(1, 10_001))

    assert [round(counts[i] / 10_000, 2) for i in range(3)] == pytest.approx(
        [0.25, 0.25, 0.5], abs=0.02
    )


def test_split_is_deterministic_per_contact() -> None:
    first = [split_index(cid, "journey", "ab", [50, 50]) for cid in range(500)]
    again = [split_index(cid, "journey", "ab", [50, 50]) for cid in range(500)]

    assert first == again


def test_two_splits_assign_contacts_independently() -> None:
    both = sum(
        split_index(cid, "journey", "first", [70, 30]) == 0
        and split_index(cid, "journey", "second", [70, 30]) == 0
        for cid in range(1, 10_001)
    )

    assert 0.47 < both / 10_000 < 0.51  # 0.7 * 0.7, not 0.7


def test_split_step_in_a_run_takes_the_same_path_for_the_same_contact_every_time() -> None:
    workflow = valid_workflow({
        "ab": {"split": [{"weight": 1, "goto": "a"}, {"weight": 1, "goto": "b"}]},
        "a": {"email": "version-a"},
        "b": {"email": "version-b"},
    })  # fmt: skip

    for contact_id in range(1, 50):
        runs = [advance_run(new_run(workflow, contact_id=contact_id), now=NOW, limits=LIMITS)
                for _ in range(2)]  # fmt: skip
        expected = ["a", "b"][split_index(contact_id, "journey", "ab", [1, 1])]
        assert [r.records[0].next_step for r in runs] == [expected, expected]
        assert runs[0].effects == runs[1].effects == (SendEmail(expected, f"version-{expected}"),)


# ------------------------------------------------------------------ branch

BRANCHING = {
    "check": {"branch": [{"when": {"field": "contact.score", "gte": 40}, "goto": "high"}],
              "otherwise": "low"},
    "high": {"email": "high-risk", "next": "end"},
    "low": {"email": "low-risk", "next": "end"},
    "end": END,
}  # fmt: skip


@pytest.mark.parametrize(
    ("contact", "path", "detail"),
    [({"score": 50}, "high", "case 1"), ({"score": 10}, "low", "otherwise"),
     ({}, "low", "otherwise")],
)  # fmt: skip
def test_branch_goes_to_the_first_matching_case_or_otherwise(
    contact: dict[str, object], path: str, detail: str
) -> None:
    run = new_run(valid_workflow(BRANCHING), facts=make_facts(contact))

    result = advance_run(run, now=NOW, limits=LIMITS)

    assert result.records[0] == StepRecord("check", "branch", StepOutcome.DONE, path, detail)
    assert result.effects == (SendEmail(path, f"{path}-risk"),)
    assert (result.status, result.current_step) == (RunStatus.COMPLETED, "end")


def test_branch_with_no_match_and_no_otherwise_completes_the_run() -> None:
    workflow = valid_workflow({
        "check": {"branch": [{"when": {"in_list": "vip"}, "goto": "vip"}]},
        "vip": {"email": "vip"},
    })  # fmt: skip

    result = advance_run(new_run(workflow), now=NOW, limits=LIMITS)

    assert result.status is RunStatus.COMPLETED
    assert result.current_step is None
    assert result.effects == ()


def test_branch_sees_updates_and_list_changes_made_earlier_in_the_same_turn() -> None:
    workflow = valid_workflow({
        "upgrade": {"update": {"set": {"plan": "gold"}, "add_tags": ["upgraded"]}, "next": "join"},
        "join": {"list": {"add": "vip"}, "next": "check"},
        "check": {"branch": [{"when": {"all": [{"field": "contact.plan", "eq": "gold"},
                                                {"in_list": "vip"},
                                                {"field": "contact.tags", "contains": "upgraded"}]},
                              "goto": "gold"}],
                  "otherwise": "plain"},
        "gold": {"email": "gold"},
        "plain": {"email": "plain"},
    })  # fmt: skip

    result = advance_run(new_run(workflow), now=NOW, limits=LIMITS)

    assert result.effects[0] == UpdateContact("upgrade", {"plan": "gold"}, (), ("upgraded",), ())
    assert result.effects[-1] == SendEmail("gold", "gold")
    assert result.facts is not None
    assert result.facts.contact["plan"] == "gold"


# --------------------------------------------------------------- wait_for

WAIT_FOR_CLICK = {
    "educate": {"email": "education", "next": "await-click"},
    "await-click": {"wait_for": {"event": "email.clicked", "within": "7d"}, "next": "call",
                    "on_timeout": "stories"},
    "stories": {"email": "stories", "next": "call"},
    "call": {"task": {"queue": "contact-center", "title": "Call"}},
}  # fmt: skip


def test_wait_for_parks_the_run_until_its_window_ends() -> None:
    result = advance_run(new_run(valid_workflow(WAIT_FOR_CLICK)), now=NOW, limits=LIMITS)

    assert result.status is RunStatus.WAITING
    assert result.current_step == "await-click"
    assert result.wake_at == NOW + timedelta(days=7)
    assert result.waiting_for == "email.clicked"
    assert steps_taken(result) == [
        ("educate", StepOutcome.DONE), ("await-click", StepOutcome.WAITING),
    ]  # fmt: skip


def test_wait_for_timing_out_goes_to_on_timeout() -> None:
    run = new_run(valid_workflow(WAIT_FOR_CLICK))
    parked = advance_run(run, now=NOW, limits=LIMITS)
    assert parked.wake_at is not None

    result = advance_run(resume(run, parked, parked.wake_at), now=parked.wake_at, limits=LIMITS)

    assert result.closed_wait is StepOutcome.TIMED_OUT
    assert steps_taken(result) == [("stories", StepOutcome.DONE), ("call", StepOutcome.DONE)]
    assert result.effects == (SendEmail("stories", "stories"),
                              CreateTask("call", "contact-center", "Call"))  # fmt: skip
    assert result.status is RunStatus.COMPLETED


def test_wait_for_timing_out_without_on_timeout_exits_the_run_with_a_reason() -> None:
    steps = {**WAIT_FOR_CLICK,
             "await-click": {"wait_for": {"event": "email.clicked", "within": "7d"},
                             "next": "call"}}  # fmt: skip
    del steps["stories"]
    run = new_run(valid_workflow(steps))
    parked = advance_run(run, now=NOW, limits=LIMITS)
    assert parked.wake_at is not None

    result = advance_run(resume(run, parked, parked.wake_at), now=parked.wake_at, limits=LIMITS)

    assert result.status is RunStatus.EXITED
    assert result.reason == "timed out waiting for email.clicked"
    assert result.closed_wait is StepOutcome.TIMED_OUT
    assert result.records == ()
    assert result.effects == ()


# ------------------------------------------------------------ wait until

REMINDER = {
    "reminders": {"wait": {"until": "event.data.starts_at", "offset": "-2d", "at": "09:00"},
                  "next": "logistics"},
    "logistics": {"email": "consult-logistics", "next": "done"},
    "done": END,
}  # fmt: skip


def reminder_run(starts_at: object, time_zone: str = "America/New_York") -> RunSnapshot:
    data = {} if starts_at is None else {"starts_at": starts_at}
    return new_run(
        valid_workflow(REMINDER),
        facts=make_facts({"time_zone": time_zone}, trigger_data=data),
    )


def test_wait_until_an_event_date_wakes_two_local_days_before_at_nine() -> None:
    run = reminder_run("2026-03-10T14:00:00Z")  # 10:00 EDT, two days after the clocks change

    result = advance_run(run, now=NOW, limits=LIMITS)

    assert result.status is RunStatus.WAITING
    assert result.current_step == "reminders"
    assert result.waiting_for is None
    assert result.wake_at == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)  # 09:00 EDT


def test_wait_until_uses_the_contacts_own_time_zone() -> None:
    run = reminder_run("2026-03-10T14:00:00Z", time_zone="Europe/London")

    result = advance_run(run, now=NOW, limits=LIMITS)

    assert result.wake_at == datetime(2026, 3, 8, 9, 0, tzinfo=UTC)  # 09:00 GMT


def test_wait_until_a_contact_date_field_counts_from_that_local_day() -> None:
    workflow = valid_workflow({
        "w": {"wait": {"until": "contact.surgery_date", "offset": "-1d", "at": "18:00"}},
    })  # fmt: skip
    contact = {"surgery_date": date(2026, 3, 10), "time_zone": "America/Los_Angeles"}

    result = advance_run(new_run(workflow, facts=make_facts(contact)), now=NOW, limits=LIMITS)

    assert result.wake_at == datetime(2026, 3, 10, 1, 0, tzinfo=UTC)  # 18:00 PDT on 9 March


def test_run_woken_after_a_wait_until_carries_on_to_the_next_step() -> None:
    run = reminder_run("2026-03-10T14:00:00Z")
    parked = advance_run(run, now=NOW, limits=LIMITS)
    assert parked.wake_at is not None

    result = advance_run(resume(run, parked, parked.wake_at), now=parked.wake_at, limits=LIMITS)

    assert result.closed_wait is StepOutcome.ELAPSED
    assert result.effects == (SendEmail("logistics", "consult-logistics"),)
    assert (result.status, result.current_step) == (RunStatus.COMPLETED, "done")
    assert result.visits == {"reminders": 1, "logistics": 1, "done": 1}


def test_wait_until_a_date_already_past_moves_straight_on() -> None:
    result = advance_run(reminder_run("2026-03-03T14:00:00Z"), now=NOW, limits=LIMITS)

    assert result.records[0] == StepRecord(
        "reminders", "wait", StepOutcome.ELAPSED, "logistics", "date already passed"
    )
    assert result.status is RunStatus.COMPLETED


@pytest.mark.parametrize("starts_at", [None, "next tuesday", 42])
def test_wait_until_a_missing_or_bad_date_fails_the_run_at_that_step(starts_at: object) -> None:
    result = advance_run(reminder_run(starts_at), now=NOW, limits=LIMITS)

    assert result.status is RunStatus.FAILED
    assert result.reason == "step reminders: event.data.starts_at is missing or not a date"
    assert result.current_step == "reminders"
    assert result.records[-1] == StepRecord(
        "reminders", "wait", StepOutcome.FAILED, detail=result.reason
    )


# ---------------------------------------------------------------- enroll


def enroll_workflow(*, end_current: bool = False) -> Workflow:
    return valid_workflow({
        "intro": {"email": "intro", "next": "hand-off"},
        "hand-off": {"enroll": {"workflow": "aftercare", "end_current": end_current},
                     "next": "bye"},
        "bye": {"email": "bye"},
    })  # fmt: skip


def test_enroll_starts_the_other_workflow_and_carries_on() -> None:
    result = advance_run(new_run(enroll_workflow(), chain_depth=4), now=NOW, limits=LIMITS)

    assert StartRun("hand-off", "aftercare") in result.effects
    assert result.effects[-1] == SendEmail("bye", "bye")
    assert result.status is RunStatus.COMPLETED


def test_enroll_with_end_current_completes_this_run_there() -> None:
    result = advance_run(new_run(enroll_workflow(end_current=True)), now=NOW, limits=LIMITS)

    assert result.status is RunStatus.COMPLETED
    assert result.current_step == "hand-off"
    assert result.reason == "moved to workflow aftercare"
    assert result.effects[-1] == StartRun("hand-off", "aftercare")


def test_enroll_past_the_chain_cap_fails_the_run_with_a_readable_reason() -> None:
    run = new_run(enroll_workflow(), chain_depth=LIMITS.max_chain_depth)

    result = advance_run(run, now=NOW, limits=LIMITS)

    assert result.status is RunStatus.FAILED
    assert result.reason == "enrollment chain deeper than 5 at step hand-off"
    assert result.current_step == "hand-off"
    assert not any(isinstance(e, StartRun) for e in result.effects)
    assert steps_taken(result) == [("intro", StepOutcome.DONE), ("hand-off", StepOutcome.FAILED)]


# ------------------------------------------------------------------ caps


def test_loop_through_a_wait_that_never_waits_hits_the_visit_cap() -> None:
    workflow = valid_workflow({
        "nudge": {"email": "nudge", "next": "hold"},
        "hold": {"wait": {"until": "trigger.data.starts_at", "at": "09:00"}, "next": "nudge"},
    })  # fmt: skip
    run = new_run(workflow, facts=make_facts(trigger_data={"starts_at": "2020-01-01"}))

    result = advance_run(run, now=NOW, limits=Limits(max_step_visits=3))

    assert result.status is RunStatus.FAILED
    assert result.reason == "step nudge visited more than 3 times"
    assert result.current_step == "nudge"
    assert result.effects == (SendEmail("nudge", "nudge"),) * 3
    assert result.visits == {"nudge": 3, "hold": 3}


def test_a_turn_stops_after_max_steps_per_turn() -> None:
    steps: dict[str, object] = {f"s{i}": {"email": "t", "next": f"s{i + 1}"} for i in range(9)}
    steps["s9"] = END
    run = new_run(valid_workflow(steps))

    result = advance_run(run, now=NOW, limits=Limits(max_steps_per_turn=5))

    assert result.status is RunStatus.FAILED
    assert result.reason == "more than 5 steps without a wait"
    assert result.current_step == "s5"
    assert len(result.effects) == 5
    assert sum(result.visits.values()) == 5


def test_exit_step_ends_the_run_with_its_status() -> None:
    workflow = valid_workflow({"won": {"exit": "converted"}})

    result = advance_run(new_run(workflow), now=NOW, limits=LIMITS)

    assert (result.status, result.current_step) == (RunStatus.CONVERTED, "won")
    assert result.records == (StepRecord("won", "exit", StepOutcome.ENDED, None, "converted"),)


# --------------------------------------------------------- whole journey


def test_design_example_journey_runs_end_to_end_on_simulated_time() -> None:
    problems = Problems()
    workflow = parse_workflow(yaml.safe_load(BARIATRIC_YAML), SCHEMA, problems)
    assert workflow is not None, problems.items
    trigger = {"form": "bariatric-hra", "score": 44}
    run = new_run(
        workflow, facts=make_facts({"time_zone": "America/Chicago"}, trigger_data=trigger)
    )

    first = advance_run(run, now=NOW, limits=LIMITS)
    assert (first.status, first.current_step) == (RunStatus.WAITING, "await-click")
    assert first.effects == (SendEmail("educate", "bariatric-education"),)

    # No click within 7 days: the stories email, a call task, then wait for a booking.
    t1 = NOW + timedelta(days=7)
    run = resume(run, first, t1)
    second = advance_run(run, now=t1, limits=LIMITS)
    assert (second.status, second.current_step) == (RunStatus.WAITING, "await-booking")
    assert [type(e) for e in second.effects] == [SendEmail, CreateTask]

    # The booking arrives: the service moves the run to the wait_for's `next` with
    # the caught event as `event.*`.
    t2 = t1 + timedelta(days=3)
    booked = EventFacts("appointment.scheduled", t2, {"starts_at": "2026-04-02T15:30:00Z"})
    assert second.facts is not None
    run = replace(
        run,
        status=RunStatus.ACTIVE,
        current_step="reminders",
        visits=second.visits,
        facts=replace(second.facts, now=t2, event=booked),
    )
    third = advance_run(run, now=t2, limits=LIMITS)
    assert third.status is RunStatus.WAITING
    assert third.wake_at == datetime(2026, 3, 31, 14, 0, tzinfo=UTC)  # 09:00 CDT, 31 March

    assert third.wake_at is not None
    last = advance_run(resume(run, third, third.wake_at), now=third.wake_at, limits=LIMITS)
    assert (last.status, last.current_step) == (RunStatus.COMPLETED, "done")
    assert last.effects == (SendEmail("logistics", "consult-logistics"),)
