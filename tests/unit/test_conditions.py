from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carepath.domain.conditions import (
    Condition,
    ConditionRules,
    EventFacts,
    Facts,
    Scope,
    evaluate,
    parse_condition,
)
from carepath.domain.problems import Problems
from carepath.domain.scheduling import anniversary_in

from .builders import NOW, SCHEMA

RULES = ConditionRules(SCHEMA)


def parse(raw: object, rules: ConditionRules = RULES) -> Condition:
    problems = Problems()
    condition = parse_condition(raw, ("when",), rules, problems)
    assert condition is not None, problems.items
    assert not problems
    return condition


def problems_for(
    raw: object, rules: ConditionRules = RULES
) -> list[tuple[tuple[object, ...], str]]:
    problems = Problems()
    condition = parse_condition(raw, ("when",), rules, problems)
    assert condition is None
    return [(p.path, p.message) for p in problems.items]


def facts(
    contact: Mapping[str, object] | None = None,
    *,
    now: datetime = NOW,
    lists: frozenset[str] = frozenset(),
    event_data: Mapping[str, object] | None = None,
) -> Facts:
    event = EventFacts("form.submitted", now, dict(event_data or {}))
    return Facts(dict(contact or {}), now, lists=lists, trigger=event, event=event)


def holds(raw: object, contact: Mapping[str, object] | None = None, **kw: object) -> bool:
    return evaluate(parse(raw), facts(contact, **kw))  # type: ignore[arg-type]


# ------------------------------------------------------------------ evaluation


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", 50, True), ("eq", 50.0, True), ("ne", 50, False), ("lt", 51, True),
        ("lte", 50, True), ("gt", 50, False), ("gte", 50, True), ("in", [10, 50], True),
        ("in", [10, 20], False), ("between", [40, 60], True), ("between", [51, 60], False),
    ],
)  # fmt: skip
def test_number_field_operators_compare_the_contacts_value(
    op: str, value: object, expected: bool
) -> None:
    assert holds({"field": "contact.score", op: value}, {"score": 50}) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "lte", "gt", "gte"])
def test_every_comparison_with_a_missing_value_is_false(op: str) -> None:
    assert holds({"field": "contact.score", op: 1}, {}) is False
    assert holds({"field": "contact.score", op: 1}, {"score": None}) is False


def test_exists_tells_a_missing_value_from_a_present_one() -> None:
    assert holds({"field": "contact.plan", "exists": True}, {"plan": "gold"}) is True
    assert holds({"field": "contact.plan", "exists": True}, {}) is False
    assert holds({"field": "contact.plan", "exists": False}, {}) is True


def test_contains_looks_inside_lists_and_text() -> None:
    assert holds({"field": "contact.tags", "contains": "vip"}, {"tags": ["vip", "new"]}) is True
    assert holds({"field": "contact.tags", "contains": "vip"}, {"tags": ["new"]}) is False
    assert holds({"field": "contact.plan", "contains": "old"}, {"plan": "gold"}) is True


def test_values_of_different_types_never_compare_equal() -> None:
    assert holds({"field": "event.data.score", "eq": 40}, event_data={"score": "40"}) is False
    assert holds({"field": "event.data.score", "gte": 40}, event_data={"score": 41}) is True


def test_combinators_all_any_not_combine_their_parts() -> None:
    adult_gold = {
        "all": [{"field": "contact.score", "gte": 18}, {"field": "contact.plan", "eq": "gold"}]
    }
    either = {
        "any": [{"field": "contact.score", "gte": 18}, {"field": "contact.plan", "eq": "gold"}]
    }

    assert holds(adult_gold, {"score": 30, "plan": "gold"}) is True
    assert holds(adult_gold, {"score": 30, "plan": "silver"}) is False
    assert holds(either, {"score": 3, "plan": "gold"}) is True
    assert holds({"not": adult_gold}, {"score": 30, "plan": "silver"}) is True


def test_list_and_segment_membership_read_the_facts() -> None:
    assert holds({"in_list": "newsletter"}, lists=frozenset({"newsletter"})) is True
    assert holds({"in_list": "newsletter"}) is False
    condition = parse({"in_segment": "adults"})
    assert evaluate(condition, Facts({}, NOW, segments=frozenset({"adults"}))) is True


def test_before_a_negative_duration_means_longer_ago_than_that() -> None:
    condition = {"field": "contact.created_at", "before": "-90d"}
    assert holds(condition, {"created_at": datetime(2025, 11, 1, tzinfo=UTC)}) is True
    assert holds(condition, {"created_at": datetime(2026, 2, 1, tzinfo=UTC)}) is False


def test_after_an_absolute_date_compares_against_that_date() -> None:
    condition = {"field": "contact.surgery_date", "after": "2026-01-01"}
    assert holds(condition, {"surgery_date": date(2026, 2, 1)}) is True
    assert holds(condition, {"surgery_date": date(2025, 12, 1)}) is False


def test_nested_event_data_is_reached_by_its_path() -> None:
    condition = {"field": "event.data.appointment.kind", "eq": "consult"}
    assert holds(condition, event_data={"appointment": {"kind": "consult"}}) is True
    assert holds(condition, event_data={"appointment": "consult"}) is False


# ------------------------------------------------------------ anniversaries


@pytest.mark.parametrize(
    ("today", "window", "expected"),
    [
        (datetime(2025, 2, 27, tzinfo=UTC), "1d", True),  # common year: kept on 28 Feb
        (datetime(2025, 2, 27, tzinfo=UTC), "0d", False),
        (datetime(2025, 2, 28, tzinfo=UTC), "0d", True),
        (datetime(2028, 2, 28, tzinfo=UTC), "0d", False),  # leap year: on 29 Feb itself
        (datetime(2028, 2, 28, tzinfo=UTC), "1d", True),
        (datetime(2028, 2, 29, tzinfo=UTC), "0d", True),
        (datetime(2025, 3, 1, tzinfo=UTC), "7d", False),  # just passed; next is 28 Feb 2026
        (datetime(2025, 3, 1, tzinfo=UTC), "364d", True),
    ],
)
def test_29_february_anniversary_falls_on_28_february_in_common_years(
    today: datetime, window: str, expected: bool
) -> None:
    condition = {"field": "contact.birth_date", "anniversary_within": window}

    assert holds(condition, {"birth_date": date(2000, 2, 29)}, now=today) is expected


def test_anniversary_in_keeps_29_february_in_leap_years() -> None:
    assert anniversary_in(date(2000, 2, 29), 2028) == date(2028, 2, 29)
    assert anniversary_in(date(2000, 2, 29), 2027) == date(2027, 2, 28)


def test_anniversary_within_a_week_crosses_the_new_year() -> None:
    condition = {"field": "contact.birth_date", "anniversary_within": "7d"}
    now = datetime(2026, 12, 28, tzinfo=UTC)

    assert holds(condition, {"birth_date": date(1970, 1, 2)}, now=now) is True
    assert holds(condition, {"birth_date": date(1970, 1, 5)}, now=now) is False


# -------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(
    actual=st.one_of(st.none(), st.integers(-1000, 1000), st.floats(-1e6, 1e6)),
    value=st.integers(-1000, 1000),
)
def test_present_numbers_compare_exactly_one_way_and_missing_ones_no_way(
    actual: float | None, value: int
) -> None:
    contact = {"score": actual}
    answers = [holds({"field": "contact.score", op: value}, contact) for op in ("lt", "eq", "gt")]

    assert sum(answers) == (0 if actual is None else 1)


@settings(max_examples=200, deadline=None)
@given(
    actual=st.one_of(st.none(), st.integers(-100, 100)),
    low=st.integers(-100, 100),
    high=st.integers(-100, 100),
)
def test_between_is_gte_low_and_lte_high(actual: int | None, low: int, high: int) -> None:
    contact = {"score": actual}
    between = holds({"field": "contact.score", "between": [low, high]}, contact)
    both = holds(
        {"all": [{"field": "contact.score", "gte": low}, {"field": "contact.score", "lte": high}]},
        contact,
    )

    assert between is both


# ------------------------------------------------------------------ parsing


def test_unknown_operator_is_reported_at_the_condition_path() -> None:
    found = problems_for({"all": [{"field": "contact.age", "gte": 50},
                                   {"field": "contact.age", "greater": 50}]})  # fmt: skip

    assert len(found) == 1
    path, message = found[0]
    assert path == ("when", "all", 1)
    assert "unknown operator 'greater'" in message


def test_unknown_contact_field_is_reported_at_the_field_key() -> None:
    [(path, message)] = problems_for({"field": "contact.favourite_colour", "eq": "red"})

    assert path == ("when", "field")
    assert "unknown contact field 'favourite_colour'" in message


def test_value_that_does_not_fit_the_field_type_is_reported_at_the_operator() -> None:
    [(path, message)] = problems_for({"field": "contact.score", "gte": "lots"})

    assert path == ("when", "gte")
    assert "does not fit field type" in message


def test_bad_anniversary_window_is_reported_at_the_operator() -> None:
    [(path, message)] = problems_for(
        {"field": "contact.birth_date", "anniversary_within": "a week"}
    )

    assert path == ("when", "anniversary_within")
    assert "is not a duration" in message


def test_anniversary_within_rejects_a_field_that_is_not_a_date() -> None:
    [(path, message)] = problems_for({"field": "contact.score", "anniversary_within": "7d"})

    assert path == ("when", "anniversary_within")
    assert "needs a date field" in message


def test_event_fields_are_refused_where_only_contact_fields_are_allowed() -> None:
    contact_only = ConditionRules(SCHEMA, scopes=frozenset({Scope.CONTACT}))

    [(path, message)] = problems_for({"field": "event.data.x", "eq": 1}, contact_only)

    assert path == ("when", "field")
    assert "cannot be used here" in message


def test_a_field_condition_takes_exactly_one_operator() -> None:
    [(path, message)] = problems_for({"field": "contact.score", "gte": 1, "lte": 5})

    assert path == ("when",)
    assert "exactly one operator" in message


def test_every_problem_in_a_condition_is_reported_not_only_the_first() -> None:
    found = problems_for({"any": [{"field": "contact.nope", "eq": 1},
                                   {"field": "contact.score", "bogus": 1}]})  # fmt: skip

    assert [path for path, _ in found] == [("when", "any", 0, "field"), ("when", "any", 1)]


# ------------------------------------------------------------------ event history

HISTORY = ConditionRules(SCHEMA, scopes=frozenset({Scope.CONTACT}), history=True)


def history_holds(raw: object, events: list[tuple[str, int, dict[str, object]]]) -> bool:
    """`events`: (type, days before NOW, data)."""
    past = [EventFacts(kind, NOW - timedelta(days=ago), data) for kind, ago, data in events]
    return evaluate(parse(raw, HISTORY), Facts({}, NOW, history=past))


OPENS = [("email.opened", 1, {}), ("email.opened", 40, {}), ("email.clicked", 2, {})]


def test_event_history_counts_one_type_within_the_window() -> None:
    assert history_holds({"event": "email.opened"}, OPENS)
    assert history_holds({"event": "email.opened", "count": 2}, OPENS)
    assert history_holds({"event": "email.opened", "count": 1, "within": "30d"}, OPENS)
    assert not history_holds({"event": "email.opened", "count_gte": 3}, OPENS)
    assert history_holds({"event": "email.opened", "count_lt": 3}, OPENS)


def test_no_such_event_in_the_window_is_lack_of_engagement() -> None:
    silent = {"event": "email.opened", "count": 0, "within": "30d"}
    assert not history_holds(silent, OPENS)
    assert history_holds(silent, [("email.opened", 31, {})])
    assert history_holds(silent, [])


def test_event_history_where_filters_on_the_counted_events_data() -> None:
    forms = [("form.submitted", 3, {"form": "hra", "score": 45}), ("form.submitted", 5, {})]
    high = {"event": "form.submitted", "where": {"field": "event.data.score", "gte": 40}}
    assert history_holds(high, forms)
    assert not history_holds({**high, "count_gte": 2}, forms)
    other = {"event": "form.submitted", "where": {"field": "event.data.form", "eq": "bmi"}}
    assert not history_holds(other, forms)


def test_event_history_belongs_in_segments_not_in_workflow_conditions() -> None:
    [(path, message)] = problems_for({"event": "email.opened", "count": 0})
    assert path == ("when",)
    assert "belong in segments" in message


@pytest.mark.parametrize(
    ("raw", "where", "message"),
    [
        ({"event": "Email Opened"}, ("when", "event"), "an event type is lower-case"),
        ({"event": "a", "count": -1}, ("when", "count"), "whole number"),
        ({"event": "a", "count": True}, ("when", "count"), "whole number"),
        ({"event": "a", "count": 1, "count_gte": 2}, ("when",), "at most one count"),
        ({"event": "a", "within": "soon"}, ("when", "within"), "duration"),
        ({"event": "a", "since": "1d"}, ("when",), "unknown event-history key 'since'"),
        (
            {"event": "a", "where": {"field": "contact.age", "gt": 1}},
            ("when", "where", "field"),
            "cannot be used here",
        ),
        (
            {"event": "a", "where": {"field": "event.data.at", "before": "-1d"}},
            ("when", "where"),
            "need a date field",
        ),
    ],
)
def test_event_history_problems_name_the_key_at_fault(
    raw: object, where: tuple[object, ...], message: str
) -> None:
    found = problems_for(raw, HISTORY)
    assert any(path == where and message in text for path, text in found), found
