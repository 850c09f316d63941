"""Edge cases the validator must refuse, each with the path and reason a user would need."""

from __future__ import annotations

from datetime import date

import pytest

from carepath.domain.catalog import Document, build_catalog
from carepath.domain.durations import DurationError, parse_duration


def problems_of(*docs: dict[str, object]) -> list[tuple[str, str]]:
    result = build_catalog([Document(f"doc{i}", d) for i, d in enumerate(docs)])
    return [(f.problem.dotted, f.problem.message) for f in result.findings]


def workflow(steps: dict[str, object], **extra: object) -> dict[str, object]:
    return {"workflow": "w", "trigger": "manual", **extra, "steps": steps}


def test_segments_and_unknown_lists_in_goal_conditions_are_reported() -> None:
    doc = workflow(
        {"a": {"branch": [{"when": {"in_segment": "nobody"}, "goto": "b"}], "otherwise": "b"},
         "b": {"exit": "completed"}},
        goal={"event": "x.done", "when": {"in_list": "ghosts"}},
    )  # fmt: skip
    assert problems_of(doc) == [
        ("goal.when", "unknown list 'ghosts'"),
        ("steps.a.branch.0.when", "unknown segment 'nobody'"),
    ]


def test_segments_that_contain_each_other_are_refused() -> None:
    first = {"segment": "a", "condition": {"in_segment": "b"}}
    second = {"segment": "b", "condition": {"not": {"in_segment": "a"}}}
    assert problems_of(first, second) == [
        ("condition", "segments contain each other: a -> b -> a"),
        ("condition", "segments contain each other: b -> a -> b"),
    ]


def test_segment_conditions_name_existing_lists() -> None:
    segment = {"segment": "s", "condition": {"in_list": "missing"}}
    assert problems_of(segment) == [("condition", "unknown list 'missing'")]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"field": "contact.sex", "eq": None}, "to test for a missing value use exists: false"),
        ({"field": "contact.sex", "in": []}, "in takes a non-empty list"),
    ],
)
def test_conditions_that_could_never_hold_are_refused(
    condition: dict[str, object], message: str
) -> None:
    doc = workflow(
        {"a": {"branch": [{"when": condition, "goto": "b"}]}, "b": {"exit": "completed"}}
    )
    ((_, found),) = problems_of(doc)
    assert message in found


@pytest.mark.parametrize(
    ("wait", "path", "message"),
    [
        (
            {"duration": "1d", "at": "09:00"},
            "steps.a.wait.at",
            "at goes with until, not with duration",
        ),
        (
            {"until": "event.data.when", "at": "09:00+01:00"},
            "steps.a.wait.at",
            "at is the contact's local time: leave out the UTC offset",
        ),
        ({"until": "event.type"}, "steps.a.wait.until", "event.type is not a date"),
    ],
)
def test_wait_options_that_do_not_fit_are_refused(
    wait: dict[str, object], path: str, message: str
) -> None:
    doc = workflow({"a": {"wait": wait, "next": "b"}, "b": {"exit": "completed"}})
    assert (path, message) in problems_of(doc)


def test_list_step_rejects_unknown_keys() -> None:
    doc = workflow({"a": {"list": {"add": "x", "join": "y"}}})
    assert ("steps.a.list.join", "unknown key (expected add, remove)") in problems_of(
        doc, {"list": "x"}
    )


def test_durations_take_ascii_digits_only() -> None:
    with pytest.raises(DurationError):
        parse_duration("\u0663d")  # Arabic-Indic three
    assert parse_duration("3d").days == 3


def test_update_values_are_typed_as_their_fields_declare() -> None:
    fields = {"fields": {"bmi": {"type": "number"}, "seen_on": {"type": "date"}}}
    bad = workflow({"a": {"update": {"set": {"bmi": "heavy"}}}})
    assert problems_of(fields, bad) == [
        ("steps.a.update.set.bmi", "value does not fit field type: expected a number")
    ]
    good = workflow({"a": {"update": {"set": {"seen_on": "2026-01-02", "bmi": "41.5"}}}})
    result = build_catalog([Document("f", fields), Document("w", good)])
    step = result.catalog.workflows["w"].steps["a"]
    assert step.set == {"seen_on": date(2026, 1, 2), "bmi": 41.5}  # type: ignore[union-attr]
