"""One condition language, two evaluators: Python for one contact, SQL for all of them.

Hypothesis generates a small population (typed attributes, missing values,
list and segment memberships, event histories with data), an instant, and
conditions over every predicate of DESIGN.md §3. For each condition the
contacts the compiled SQL selects must be exactly those the Python evaluator
accepts, on SQLite and on PostgreSQL. Values include hostile text (quotes,
`--`, JSON-path syntax) that must stay data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carepath.db.condition_sql import compile_condition
from carepath.db.schema import contacts, events, list_members, lists, segment_members
from carepath.domain.conditions import (
    Condition,
    ConditionRules,
    EventFacts,
    Facts,
    Scope,
    evaluate,
    parse_condition,
)
from carepath.domain.fields import ContactSchema, FieldSpec, FieldType
from carepath.domain.problems import Problems
from carepath.services.contacts import load_facts, to_storage

SCHEMA = ContactSchema(
    {
        "score": FieldSpec("score", FieldType.NUMBER),
        "active": FieldSpec("active", FieldType.BOOL),
        "plan": FieldSpec("plan", FieldType.STRING),
        "visit_on": FieldSpec("visit_on", FieldType.DATE),
        "seen_at": FieldSpec("seen_at", FieldType.DATETIME),
        "labels": FieldSpec("labels", FieldType.LIST),
    }
)
SEGMENT_RULES = ConditionRules(SCHEMA, scopes=frozenset({Scope.CONTACT}), history=True)
LISTS = ("news", "vip")
EVENT_TYPES = ("email.opened", "form.submitted")
HOSTILE = ["", "a", "A", "ab", "b", "é", "Z", "it's", "x'--", '"q"', "$.plan", "a%", "_", "{}"]

texts = st.sampled_from(HOSTILE)
numbers = st.one_of(st.sampled_from([0, 1, 2.5, -3, 40, 50, 65]), st.integers(-100, 100))
days = st.dates(date(1925, 1, 1), date(2031, 12, 31)) | st.sampled_from(
    [date(1960, 2, 29), date(1984, 2, 29), date(1990, 2, 28), date(1990, 3, 1)]
)
moments = st.datetimes(
    datetime(2020, 1, 1), datetime(2031, 12, 31), timezones=st.just(UTC)
) | st.builds(lambda d: datetime(d.year, d.month, d.day, tzinfo=UTC), days)
LEAP_EDGES = [
    datetime(2027, 2, 28, 12, tzinfo=UTC),
    datetime(2028, 2, 28, 12, tzinfo=UTC),
    datetime(2028, 2, 29, 12, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
]
scalars = st.one_of(texts, numbers, st.booleans())


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


person = st.fixed_dictionaries(
    {
        "first_name": _maybe(texts),
        "phone": _maybe(texts),
        "sex": _maybe(st.sampled_from(["female", "male", "F"])),
        "birth_date": _maybe(days),
        "tags": st.lists(texts, max_size=3),
        "score": _maybe(numbers),
        "active": _maybe(st.booleans()),
        "plan": _maybe(texts),
        "visit_on": _maybe(days),
        "seen_at": _maybe(moments),
        "labels": _maybe(st.lists(texts, max_size=3)),
        "lists": st.sets(st.sampled_from(LISTS)),
        "in_segment": st.booleans(),
        "events": st.lists(
            st.tuples(
                st.sampled_from(EVENT_TYPES),
                st.integers(-400, 5),  # days from now
                st.dictionaries(st.sampled_from(["form", "score", "ok", "tags"]), scalars),
            ),
            max_size=4,
        ),
    }
)

# ---------------------------------------------------------------- conditions

FIELDS_BY_TYPE = {
    FieldType.NUMBER: ["contact.score", "contact.age", "contact.id"],
    FieldType.BOOL: ["contact.active"],
    FieldType.STRING: ["contact.plan", "contact.first_name", "contact.phone", "contact.sex"],
    FieldType.DATE: ["contact.visit_on", "contact.birth_date"],
    FieldType.DATETIME: ["contact.seen_at", "contact.created_at"],
    FieldType.LIST: ["contact.labels", "contact.tags"],
}
VALUES = {
    FieldType.NUMBER: numbers,
    FieldType.BOOL: st.booleans(),
    FieldType.STRING: texts,
    FieldType.DATE: days.map(date.isoformat),
    FieldType.DATETIME: moments.map(datetime.isoformat),
    FieldType.LIST: texts,
}
ORDER_OPS = ["eq", "ne", "lt", "lte", "gt", "gte"]
# Sealed identifiers: set or not, and equality through the blind index where there is one.
IDENTIFIER_OPS = {"contact.first_name": ["exists"], "contact.phone": ["exists", "eq", "in"]}
DURATIONS = ["0d", "1d", "7d", "30d", "59d", "365d", "366d"]


@st.composite
def field_test(draw: st.DrawFn) -> dict[str, object]:
    type_ = draw(st.sampled_from(list(FIELDS_BY_TYPE)))
    name = draw(st.sampled_from(FIELDS_BY_TYPE[type_]))
    values = VALUES[type_]
    ops = ["exists"]
    if type_ is FieldType.LIST:
        ops.append("contains")
    elif type_ is FieldType.BOOL:
        ops += ["eq", "ne", "in"]
    else:
        ops += [*ORDER_OPS, "in", "between"]
    if type_ is FieldType.STRING:
        ops.append("contains")
    if type_ in (FieldType.DATE, FieldType.DATETIME):
        ops += ["before", "after", "anniversary_within"]
    op = draw(st.sampled_from(IDENTIFIER_OPS.get(name, ops)))
    if op == "exists":
        value: object = draw(st.booleans())
    elif op == "in":
        value = draw(st.lists(values, min_size=1, max_size=3))
    elif op == "between":
        value = sorted(draw(st.lists(values, min_size=2, max_size=2)), key=str)
    elif op in ("before", "after"):
        relative = st.sampled_from(["-90d", "-1d", "0d", "30d", "-3650d"])
        value = draw(relative | days.map(date.isoformat))
    elif op == "anniversary_within":
        value = draw(st.sampled_from(DURATIONS))
    else:
        value = draw(values)
    return {"field": name, op: value}


@st.composite
def data_test(draw: st.DrawFn) -> dict[str, object]:
    name = draw(st.sampled_from(["event.data.form", "event.data.score", "event.data.ok"]))
    name = draw(st.sampled_from([name, "event.data.tags", "event.data.missing", "event.type"]))
    op = draw(st.sampled_from([*ORDER_OPS, "exists", "in", "between", "contains"]))
    if op == "exists":
        return {"field": name, op: draw(st.booleans())}
    if op in ("in", "between"):
        size = 2 if op == "between" else draw(st.integers(1, 3))
        return {"field": name, op: draw(st.lists(scalars, min_size=size, max_size=size))}
    return {"field": name, op: draw(scalars)}


@st.composite
def history(draw: st.DrawFn) -> dict[str, object]:
    raw: dict[str, object] = {"event": draw(st.sampled_from(EVENT_TYPES))}
    count = draw(st.sampled_from([None, "count", "count_gte", "count_lte", "count_gt", "count_lt"]))
    if count:
        raw[count] = draw(st.integers(0, 3))
    if draw(st.booleans()):
        raw["within"] = draw(st.sampled_from(["1d", "30d", "90d", "365d"]))
    if draw(st.booleans()):
        raw["where"] = draw(
            st.recursive(
                data_test(), lambda inner: st.fixed_dictionaries({"not": inner}), max_leaves=2
            )
        )
    return raw


leaves = st.one_of(
    field_test(),
    field_test(),
    history(),
    st.sampled_from([{"in_list": "news"}, {"in_list": "vip"}, {"in_segment": "chosen"}]),
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"all": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"any": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"not": inner}),
    ),
    max_leaves=6,
)


def parsed(raw: Mapping[str, object]) -> Condition | None:
    problems = Problems()
    condition = parse_condition(raw, (), SEGMENT_RULES, problems)
    return None if problems else condition


# ---------------------------------------------------------------- the test


def _store(engine: sa.Engine, population: list[dict[str, Any]], now: datetime) -> list[int]:
    with engine.begin() as conn:
        for table in (segment_members, list_members, events, contacts, lists):
            conn.execute(table.delete())
        conn.execute(lists.insert(), [{"name": n, "title": n, "created_at": now} for n in LISTS])
        ids: list[int] = []
        for number, person_ in enumerate(population):
            row = to_storage(person_, SCHEMA)
            row |= {"email": f"p{number}@example.test", "created_at": now - timedelta(days=number)}
            row["updated_at"] = now
            ids.append(conn.execute(contacts.insert().values(row)).inserted_primary_key[0])
        for contact_id, person_ in zip(ids, population, strict=True):
            for name in person_["lists"]:
                conn.execute(
                    list_members.insert().values(
                        contact_id=contact_id, list_name=name, joined_at=now
                    )
                )
            if person_["in_segment"]:
                conn.execute(
                    segment_members.insert().values(
                        segment_name="chosen", contact_id=contact_id, entered_at=now
                    )
                )
            for number, (kind, offset, data) in enumerate(person_["events"]):
                conn.execute(
                    events.insert().values(
                        idempotency_key=f"{contact_id}-{number}",
                        type=kind,
                        contact_id=contact_id,
                        occurred_at=now + timedelta(days=offset, minutes=number),
                        received_at=now,
                        data=data,
                        source="test",
                    )
                )
    return ids


def _python_answer(
    engine: sa.Engine, condition: Condition, ids: list[int], now: datetime
) -> set[int]:
    with engine.connect() as conn:
        facts = load_facts(conn, ids, SCHEMA)
        histories: dict[int, list[EventFacts]] = defaultdict(list)
        for row in conn.execute(
            sa.select(events.c.contact_id, events.c.type, events.c.occurred_at, events.c.data)
        ):
            histories[row.contact_id].append(EventFacts(row.type, row.occurred_at, row.data))
        memberships: dict[int, set[str]] = defaultdict(set)
        for row in conn.execute(sa.select(list_members.c.contact_id, list_members.c.list_name)):
            memberships[row.contact_id].add(row.list_name)
        chosen = set(conn.execute(sa.select(segment_members.c.contact_id)).scalars())
    return {
        i
        for i in ids
        if evaluate(
            condition,
            Facts(
                contact=facts[i],
                now=now,
                lists=frozenset(memberships[i]),
                segments=frozenset({"chosen"} if i in chosen else ()),
                history=histories[i],
            ),
        )
    }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    population=st.lists(person, min_size=1, max_size=6),
    now=moments | st.sampled_from(LEAP_EDGES),
    raws=st.lists(conditions, min_size=4, max_size=8),
)
def test_sql_and_python_select_the_same_contacts(
    engine: sa.Engine,
    population: list[dict[str, Any]],
    now: datetime,
    raws: list[dict[str, object]],
) -> None:
    ids = _store(engine, population, now)
    for raw in raws:
        condition = parsed(raw)
        assert condition is not None, raw  # the generators write valid conditions only
        query = sa.select(contacts.c.id).where(
            compile_condition(condition, dialect=engine.dialect.name, now=now)
        )
        with engine.connect() as conn:
            from_sql = set(conn.execute(query).scalars())
        assert from_sql == _python_answer(engine, condition, ids, now), raw
