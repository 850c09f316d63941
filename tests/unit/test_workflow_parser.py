from __future__ import annotations

from datetime import time, timedelta

import pytest
import yaml

from carepath.domain.catalog import Document, build_catalog
from carepath.domain.fields import ContactSchema, FieldClass, FieldSpec, FieldType
from carepath.domain.problems import Problems
from carepath.domain.workflow import (
    EventTrigger,
    ManualTrigger,
    Purpose,
    ReentryMode,
    WaitForStep,
    WaitStep,
)
from carepath.domain.workflow_parser import parse_workflow

from .builders import BARIATRIC_YAML, SCHEMA, parse_problems, valid_workflow, workflow_doc

END = {"exit": "completed"}


def paths_and_messages(doc: dict[str, object]) -> list[tuple[tuple[object, ...], str]]:
    return [(p.path, p.message) for p in parse_problems(doc).items]


def only_problem(doc: dict[str, object]) -> tuple[tuple[object, ...], str]:
    found = paths_and_messages(doc)
    assert len(found) == 1, found
    return found[0]


def test_design_example_journey_parses_into_the_model() -> None:
    problems = Problems()
    workflow = parse_workflow(yaml.safe_load(BARIATRIC_YAML), SCHEMA, problems)

    assert not problems, problems.items
    assert workflow is not None
    assert workflow.purpose is Purpose.MARKETING
    assert isinstance(workflow.trigger, EventTrigger)
    assert workflow.trigger.event == "form.submitted"
    assert workflow.reentry.mode is ReentryMode.NEVER
    assert workflow.goal is not None
    assert workflow.goal.event == "surgery.scheduled"
    assert workflow.start == "educate"
    assert workflow.steps["await-click"] == WaitForStep(
        "email.clicked", timedelta(days=7), None, "call", "stories"
    )
    assert workflow.steps["reminders"] == WaitStep(
        None, "event.data.starts_at", timedelta(days=-2), time(9), "logistics"
    )


def test_design_example_journey_validates_with_its_templates() -> None:
    templates = [
        Document(f"{name}.yml", {"template": name, "subject": "Hello", "html": "<p>Hi</p>"})
        for name in ("bariatric-education", "bariatric-stories", "consult-logistics")
    ]
    journey = Document("journey.yml", yaml.safe_load(BARIATRIC_YAML))

    result = build_catalog([journey, *templates])

    assert result.findings == []
    assert "bariatric-journey" in result.catalog.workflows


def test_start_defaults_to_the_first_step_and_trigger_may_be_manual() -> None:
    workflow = valid_workflow({"hello": {"email": "t", "next": "bye"}, "bye": END})

    assert workflow.start == "hello"
    assert workflow.trigger == ManualTrigger()


# -------------------------------------------------------------- graph problems


def test_unknown_next_target_is_reported_at_the_steps_next_key() -> None:
    path, message = only_problem(workflow_doc({"x": {"email": "t", "next": "nowhere"}}))

    assert path == ("steps", "x", "next")
    assert "unknown step 'nowhere'" in message


@pytest.mark.parametrize(
    ("step", "key"),
    [
        ({"branch": [{"when": {"in_list": "a"}, "goto": "nowhere"}], "otherwise": "end"},
         ("branch", 0, "goto")),
        ({"branch": [{"when": {"in_list": "a"}, "goto": "end"}], "otherwise": "nowhere"},
         ("otherwise",)),
        ({"split": [{"weight": 1, "goto": "end"}, {"weight": 1, "goto": "nowhere"}]},
         ("split", 1, "goto")),
        ({"wait_for": {"event": "email.clicked", "within": "1d"}, "next": "end",
          "on_timeout": "nowhere"}, ("on_timeout",)),
        ({"goto": "nowhere"}, ("goto",)),
    ],
)  # fmt: skip
def test_unknown_targets_are_reported_at_the_key_that_names_them(
    step: dict[str, object], key: tuple[object, ...]
) -> None:
    found = paths_and_messages(workflow_doc({"x": step, "end": END}))

    assert [m for p, m in found if p == ("steps", "x", *key)] == ["unknown step 'nowhere'"]
    assert all(p == ("steps", "end") for p, m in found if "nowhere" not in m)  # goto: end unused


def test_unknown_start_step_is_reported_at_start() -> None:
    doc = workflow_doc({"a": END}, start="b")

    assert ((("start",), "unknown step 'b'")) in paths_and_messages(doc)


def test_unreachable_step_is_reported_at_the_step() -> None:
    path, message = only_problem(workflow_doc({"a": END, "orphan": {"email": "t", "next": "a"}}))

    assert path == ("steps", "orphan")
    assert "unreachable" in message


def test_loop_with_no_wait_is_reported_at_its_first_step_naming_the_loop() -> None:
    doc = workflow_doc({
        "a": {"email": "t", "next": "b"},
        "b": {"branch": [{"when": {"in_list": "x"}, "goto": "end"}], "otherwise": "a"},
        "end": END,
    })  # fmt: skip

    path, message = only_problem(doc)

    assert path == ("steps", "a")
    assert message == "loop with no wait: a -> b -> a"


def test_step_going_to_itself_is_a_loop_with_no_wait() -> None:
    path, message = only_problem(workflow_doc({"a": {"goto": "a"}}))

    assert path == ("steps", "a")
    assert "loop with no wait" in message


@pytest.mark.parametrize(
    "wait",
    [{"wait": "1d", "next": "a"},
     {"wait_for": {"event": "email.opened", "within": "3d"}, "next": "a", "on_timeout": "a"}],
)  # fmt: skip
def test_loop_through_a_wait_is_allowed(wait: dict[str, object]) -> None:
    valid_workflow({"a": {"email": "t", "next": "w"}, "w": wait})


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("step", "path"),
    [
        ({"wait": "3 days", "next": "end"}, ("steps", "w", "wait")),
        ({"wait": {"duration": "soon"}, "next": "end"}, ("steps", "w", "wait", "duration")),
        ({"wait": {"until": "contact.surgery_date", "offset": "-2days"}, "next": "end"},
         ("steps", "w", "wait", "offset")),
        ({"wait_for": {"event": "email.opened", "within": "a week"}, "next": "end"},
         ("steps", "w", "wait_for", "within")),
    ],
)  # fmt: skip
def test_bad_durations_in_steps_are_reported_at_their_key(
    step: dict[str, object], path: tuple[object, ...]
) -> None:
    found_path, message = only_problem(workflow_doc({"w": step, "end": END}))

    assert found_path == path
    assert "is not a duration" in message


def test_bad_reentry_duration_is_reported_at_reentry_after() -> None:
    path, message = only_problem(workflow_doc({"a": END}, reentry={"after": "half a year"}))

    assert path == ("reentry", "after")
    assert "is not a duration" in message


def test_negative_wait_is_refused() -> None:
    path, message = only_problem(workflow_doc({"w": {"wait": "-1d", "next": "end"}, "end": END}))

    assert path == ("steps", "w", "wait")
    assert "must not be negative" in message


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        (workflow_doc({"w": {"wait": "0s", "next": "end"}, "end": END}), ("steps", "w", "wait")),
        (workflow_doc({"w": {"wait": {"duration": "0d"}, "next": "end"}, "end": END}),
         ("steps", "w", "wait", "duration")),
        (workflow_doc({"w": {"wait_for": {"event": "email.opened", "within": "0h"},
                             "next": "end"}, "end": END}), ("steps", "w", "wait_for", "within")),
        (workflow_doc({"a": END}, reentry={"after": "0d"}), ("reentry", "after")),
    ],
)  # fmt: skip
def test_zero_length_waits_and_reentry_periods_are_reported_not_dropped(
    doc: dict[str, object], path: tuple[object, ...]
) -> None:
    found_path, message = only_problem(doc)

    assert found_path == path
    assert "longer than zero" in message


def test_zero_offset_on_a_date_wait_is_allowed() -> None:
    workflow = valid_workflow(
        {"w": {"wait": {"until": "contact.surgery_date", "offset": "0d", "at": "09:00"},
               "next": "end"}, "end": END}
    )  # fmt: skip

    step = workflow.steps["w"]
    assert isinstance(step, WaitStep)
    assert step.offset == timedelta(0)


# ------------------------------------------------------- conditions and fields


def test_unknown_operator_in_trigger_is_reported_at_trigger_when() -> None:
    doc = workflow_doc(
        {"a": END},
        trigger={"event": "form.submitted", "when": {"field": "contact.age", "over": 50}},
    )

    path, message = only_problem(doc)

    assert path == ("trigger", "when")
    assert "unknown operator 'over'" in message


def test_unknown_operator_in_a_branch_is_reported_at_the_case() -> None:
    doc = workflow_doc({
        "b": {"branch": [{"when": {"field": "contact.score", "morethan": 3}, "goto": "end"}]},
        "end": END,
    })  # fmt: skip

    path, message = only_problem(doc)

    assert path == ("steps", "b", "branch", 0, "when")
    assert "unknown operator 'morethan'" in message


def test_unknown_field_in_a_condition_is_reported_at_its_field_key() -> None:
    doc = workflow_doc({
        "b": {"branch": [{"when": {"all": [{"field": "contact.score", "gt": 1},
                                           {"field": "contact.shoe_size", "gt": 9}]},
                          "goto": "end"}]},
        "end": END,
    })  # fmt: skip

    path, message = only_problem(doc)

    assert path == ("steps", "b", "branch", 0, "when", "all", 1, "field")
    assert "unknown contact field 'shoe_size'" in message


def test_unknown_field_in_an_update_is_reported_at_the_field() -> None:
    doc = workflow_doc({"u": {"update": {"set": {"shoe_size": 9}}, "next": "end"}, "end": END})

    path, message = only_problem(doc)

    assert path == ("steps", "u", "update", "set", "shoe_size")
    assert "unknown contact field 'shoe_size'" in message


def test_computed_fields_cannot_be_written_by_an_update() -> None:
    doc = workflow_doc({"u": {"update": {"unset": ["age"]}, "next": "end"}, "end": END})

    path, message = only_problem(doc)

    assert path == ("steps", "u", "update", "unset", "age")
    assert "cannot be set by a workflow" in message


def test_identifiers_cannot_be_written_by_an_update() -> None:
    doc = workflow_doc({"u": {"update": {"set": {"email": "x@y.z"}}, "next": "end"}, "end": END})

    path, message = only_problem(doc)

    assert path == ("steps", "u", "update", "set", "email")
    assert message == "'email' is an identifier: workflows do not change it"


def test_a_date_trigger_on_a_sealed_identifier_is_refused() -> None:
    sealed = FieldSpec("admitted_on", FieldType.DATE, FieldClass.IDENTIFIER)
    schema = ContactSchema({**SCHEMA.custom, "admitted_on": sealed})
    doc = workflow_doc({"end": END}, trigger={"date": "contact.admitted_on"})
    problems = Problems()

    assert parse_workflow(doc, schema, problems) is None
    assert [(p.path, p.message) for p in problems.items] == [
        (("trigger", "date"), "admitted_on is an identifier, sealed: no date trigger")
    ]


def test_wait_until_a_field_that_is_not_a_date_is_reported_at_until() -> None:
    doc = workflow_doc({"w": {"wait": {"until": "contact.plan"}, "next": "end"}, "end": END})

    path, message = only_problem(doc)

    assert path == ("steps", "w", "wait", "until")
    assert "not a date field" in message


def test_bad_time_of_day_is_reported_at_at() -> None:
    doc = workflow_doc(
        {"w": {"wait": {"until": "event.data.starts_at", "at": "9am"}, "next": "end"}, "end": END}
    )

    path, _message = only_problem(doc)

    assert path == ("steps", "w", "wait", "at")


# ------------------------------------------------------------- step shapes


def test_step_with_two_actions_is_reported_at_the_step() -> None:
    path, message = only_problem(workflow_doc({"a": {"email": "t", "exit": "completed"}}))

    assert path == ("steps", "a")
    assert "exactly one action key" in message


def test_unknown_key_on_a_step_is_reported_at_that_key() -> None:
    path, message = only_problem(workflow_doc({"a": {"exit": "completed", "next": "a"}}))

    assert path == ("steps", "a", "next")
    assert "unknown key for a exit step" in message


def test_sms_steps_are_reported_as_not_yet_supported() -> None:
    path, message = only_problem(workflow_doc({"a": {"sms": "t"}}))

    assert path == ("steps", "a", "sms")
    assert "not supported" in message


def test_split_weights_must_be_positive_whole_numbers() -> None:
    doc = workflow_doc(
        {"s": {"split": [{"weight": 0, "goto": "end"}, {"weight": 1.5, "goto": "end"}]}, "end": END}
    )

    assert [p for p, _ in paths_and_messages(doc)] == [
        ("steps", "s", "split", 0, "weight"),
        ("steps", "s", "split", 1, "weight"),
    ]


def test_every_problem_in_a_document_is_reported_at_once() -> None:
    doc = {
        "workflow": "journey",
        "trigger": {"event": "Form Submitted"},
        "purpose": "sales",
        "colour": "blue",
        "steps": {"a": {"wait": "soon", "next": "b"}, "b": {"exit": "done"}},
    }

    paths = {p for p, _ in paths_and_messages(doc)}

    assert paths == {
        ("colour",),
        ("purpose",),
        ("trigger", "event"),
        ("steps", "a", "wait"),
        ("steps", "b", "exit"),
    }
