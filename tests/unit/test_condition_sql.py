"""The SQL compiler's date arithmetic (the answers themselves are proved against Python
in tests/integration/test_condition_equivalence.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.dialects import postgresql, sqlite

from carepath.db.condition_sql import anniversary_days, compile_condition
from carepath.domain.conditions import ConditionRules, Scope, parse_condition
from carepath.domain.fields import EMPTY_SCHEMA, ContactSchema, FieldSpec, FieldType
from carepath.domain.problems import Problems
from carepath.protection.identifiers import identifier_index


def test_anniversary_days_cover_today_through_the_window() -> None:
    assert anniversary_days(date(2026, 12, 30), timedelta(days=3)) == {
        "12-30",
        "12-31",
        "01-01",
        "01-02",
    }


def test_29_february_counts_on_28_february_of_a_common_year_only() -> None:
    assert "02-29" in anniversary_days(date(2027, 2, 28), timedelta(0))
    assert "02-29" not in anniversary_days(date(2028, 2, 28), timedelta(0))
    assert anniversary_days(date(2028, 2, 29), timedelta(0)) == {"02-29"}


def test_a_window_of_a_year_and_more_holds_every_day() -> None:
    assert len(anniversary_days(date(2026, 3, 1), timedelta(days=400))) == 366


HOSTILE = "x' OR 1=1 --"


def test_values_and_json_keys_are_bound_parameters_never_sql_text() -> None:
    schema = ContactSchema({"plan": FieldSpec("plan", FieldType.STRING)})
    rules = ConditionRules(schema, scopes=frozenset({Scope.CONTACT}), history=True)
    raw = {
        "any": [
            {"field": "contact.plan", "eq": HOSTILE},
            {"field": "contact.sex", "in": [HOSTILE, "$.plan"]},
            {"event": "form.submitted", "where": {"field": f"event.data.{HOSTILE}", "eq": 1}},
        ]
    }
    problems = Problems()
    condition = parse_condition(raw, (), rules, problems)
    assert condition is not None, problems.items
    for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect())):
        compiled = compile_condition(condition, dialect=name, now=datetime(2026, 1, 1, tzinfo=UTC))
        statement = compiled.compile(dialect=dialect)
        assert HOSTILE not in str(statement)
        assert "$.plan" not in str(statement)
        bound = [str(v) for v in statement.params.values()]
        assert HOSTILE in bound or any(HOSTILE in v for v in bound)


def test_field_names_outside_the_schema_never_reach_the_compiler() -> None:
    for name in ["contact.plan'--", "contact.a.b", 'contact."x"', "contact.$.x"]:
        problems = Problems()
        assert (
            parse_condition({"field": name, "eq": 1}, (), ConditionRules(EMPTY_SCHEMA), problems)
            is None
        )
        assert problems


def test_identifiers_are_tested_only_for_presence_or_through_their_blind_index() -> None:
    rules = ConditionRules(EMPTY_SCHEMA)
    for raw, message in [
        ({"field": "contact.last_name", "eq": "Doe"}, "contact.last_name is an identifier"),
        ({"field": "contact.email", "contains": "@x.org"}, "only with eq, exists, in"),
    ]:
        problems = Problems()
        assert parse_condition(raw, (), rules, problems) is None
        assert message in str(problems.items[0])
    problems = Problems()
    condition = parse_condition({"field": "contact.email", "eq": "ann@x.org"}, (), rules, problems)
    assert condition is not None, problems.items
    statement = compile_condition(
        condition, dialect="sqlite", now=datetime(2026, 1, 1, tzinfo=UTC)
    ).compile(dialect=sqlite.dialect())
    assert "email_index" in str(statement)
    assert [identifier_index("email", "ann@x.org")] in statement.params.values()
    assert "ann@x.org" not in str(statement.params)
