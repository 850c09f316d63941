"""Cohort keys: runs share a key only when their turn cannot differ."""

from __future__ import annotations

from datetime import date

from carepath.domain.cohorts import turn_inputs
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


def test_inputs_name_what_branches_and_dated_waits_read() -> None:
    inputs = turn_inputs(BRANCHY)
    assert inputs.fields == ("score", "surgery_date", "time_zone")
    assert inputs.lists == ("vip",)
    assert not inputs.events
    assert not inputs.per_contact


def test_a_split_makes_every_contact_its_own_cohort() -> None:
    assert turn_inputs(SPLIT).per_contact


def test_conditions_on_event_data_make_events_part_of_the_key() -> None:
    inputs = turn_inputs(EVENTED)
    assert inputs.events
    assert inputs.fields == ()


def test_runs_that_agree_on_the_inputs_get_the_same_decision() -> None:
    """Fields outside the inputs (names, sex, the trigger here) never change a decision."""
    inputs = turn_inputs(BRANCHY)
    base = {"score": 80, "surgery_date": date(2026, 3, 9)}
    contacts = [
        base | {"first_name": "Ann"},
        base | {"sex": "f", "smoker": True},
    ]
    facts = [
        make_facts(contacts[0], trigger_data={"kind": "a"}),
        Facts(contact=contacts[1], now=NOW),
    ]
    assert {tuple(f.contact.get(n) for n in inputs.fields) for f in facts} == {
        (80, date(2026, 3, 9), None)
    }
    decisions = [
        advance_run(new_run(BRANCHY, contact_id=i, facts=f), now=NOW, limits=Limits())
        for i, f in enumerate(facts)
    ]
    assert len({(d.status, d.records, d.wake_at, d.effects) for d in decisions}) == 1
