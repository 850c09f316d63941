"""Cohort keys: runs share a key only when their turn cannot differ."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from carepath.domain.cohorts import RunPosition, cohort_key, turn_inputs
from carepath.domain.conditions import Facts
from carepath.domain.engine import advance_run
from carepath.domain.runs import Limits
from tests.unit.builders import NOW, make_facts, new_run, valid_workflow

BRANCHY = valid_workflow(
    {
        "check": {
            "branch": [
                {"when": {"field": "contact.score", "gte": 50}, "goto": "later"},
                {"when": {"in_list": "vip"}, "goto": "later"},
            ],
            "otherwise": "done",
        },
        "later": {"wait": {"until": "contact.surgery_date", "offset": "1d"}, "next": "done"},
        "done": {"exit": "completed"},
    }
)
SPLIT = valid_workflow(
    {
        "s": {"split": [{"weight": 1, "goto": "done"}, {"weight": 1, "goto": "done"}]},
        "done": {"exit": "completed"},
    }
)
EVENTED = valid_workflow(
    {
        "b": {
            "branch": [{"when": {"field": "trigger.data.kind", "eq": "x"}, "goto": "done"}],
            "otherwise": "done",
        },
        "done": {"exit": "completed"},
    }
)


def _position(contact_id: int, **changes: object) -> RunPosition:
    position = RunPosition(contact_id, 1, "active", None, {}, 0, None, None)
    return replace(position, **changes)  # type: ignore[arg-type]


def _facts(**contact: object) -> Facts:
    return Facts(contact=contact, now=NOW)


def test_inputs_name_what_branches_and_dated_waits_read() -> None:
    inputs = turn_inputs(BRANCHY)
    assert inputs.fields == ("score", "surgery_date", "time_zone")
    assert inputs.lists
    assert not inputs.events
    assert not inputs.per_contact


def test_a_split_makes_every_contact_its_own_cohort() -> None:
    inputs = turn_inputs(SPLIT)
    assert inputs.per_contact
    assert cohort_key(inputs, _position(1), _facts()) != cohort_key(inputs, _position(2), _facts())


def test_conditions_on_event_data_keep_runs_of_different_events_apart() -> None:
    inputs = turn_inputs(EVENTED)
    assert inputs.events
    first = cohort_key(inputs, _position(1, trigger_event_id=5), _facts())
    assert first != cohort_key(inputs, _position(2, trigger_event_id=6), _facts())
    assert first == cohort_key(inputs, _position(3, trigger_event_id=5), _facts())


def test_equal_inputs_share_a_key_and_fields_not_read_do_not_matter() -> None:
    inputs = turn_inputs(BRANCHY)
    a = cohort_key(inputs, _position(1), _facts(score=80, first_name="Ann"))
    assert a == cohort_key(inputs, _position(2), _facts(score=80, first_name="Bea"))
    assert a != cohort_key(inputs, _position(3), _facts(score=10))
    assert a != cohort_key(inputs, _position(4, visits={"check": 1}), _facts(score=80))
    assert a != cohort_key(inputs, _position(5, current_step="later"), _facts(score=80))


def test_values_equal_in_python_but_different_facts_stay_apart() -> None:
    inputs = turn_inputs(BRANCHY)
    assert cohort_key(inputs, _position(1), _facts(score=1)) != cohort_key(
        inputs, _position(1), _facts(score=True)
    )
    day = date(2026, 3, 2)
    instant = datetime(2026, 3, 2, tzinfo=UTC)
    assert cohort_key(inputs, _position(1), _facts(surgery_date=day)) != cohort_key(
        inputs, _position(1), _facts(surgery_date=instant)
    )


def test_runs_with_one_key_get_the_same_decision() -> None:
    inputs = turn_inputs(BRANCHY)
    contacts = [
        {"score": 80, "surgery_date": date(2026, 3, 9), "first_name": "Ann"},
        {"score": 80, "surgery_date": date(2026, 3, 9), "sex": "f"},
    ]
    facts = [make_facts(c) for c in contacts]
    keys = {cohort_key(inputs, _position(i), f) for i, f in enumerate(facts)}
    assert len(keys) == 1
    decisions = [
        advance_run(new_run(BRANCHY, contact_id=i, facts=f), now=NOW, limits=Limits())
        for i, f in enumerate(facts)
    ]
    assert len({(d.status, d.records, d.wake_at) for d in decisions}) == 1
