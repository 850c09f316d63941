"""The condition language (DESIGN.md §3): parsing into a typed tree and evaluation.

One tree serves triggers, branches, goals and (later) segments. Evaluation
here is the Python side, over one contact's facts; semantics follow SQL so a
compiler can give the same answers: a missing value makes every comparison
false, except `exists`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from carepath.domain.durations import DurationError, parse_duration
from carepath.domain.fields import (
    INDEXED_FIELDS,
    ContactSchema,
    FieldClass,
    FieldSpec,
    FieldType,
    coerce_value,
    parse_datetime,
)
from carepath.domain.problems import Path, Problems
from carepath.domain.scheduling import anniversary_in


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    IN = "in"
    CONTAINS = "contains"
    EXISTS = "exists"
    BETWEEN = "between"
    ANNIVERSARY_WITHIN = "anniversary_within"
    BEFORE = "before"
    AFTER = "after"


class Scope(StrEnum):
    CONTACT = "contact"
    EVENT = "event"
    TRIGGER = "trigger"


@dataclass(frozen=True)
class FieldTest:
    scope: Scope
    path: tuple[str, ...]
    op: Op
    value: object
    spec: FieldSpec | None = None

    @property
    def field(self) -> str:
        return ".".join((self.scope, *self.path))


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class InList:
    name: str


@dataclass(frozen=True)
class InSegment:
    name: str


@dataclass(frozen=True)
class EventHistory:
    """How many of the contact's events of one type (within a window, matching `where`)."""

    type: str
    op: Op  # eq, gte, lte, gt or lt, applied to the count
    count: int
    within: timedelta | None = None
    where: Condition | None = None


Condition = AllOf | AnyOf | Not | FieldTest | InList | InSegment | EventHistory

EVENT_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


@dataclass(frozen=True)
class EventFacts:
    type: str
    occurred_at: datetime
    data: Mapping[str, object]


@dataclass(frozen=True)
class Facts:
    """What a condition may look at, for one contact at one instant."""

    contact: Mapping[str, object]
    now: datetime
    lists: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    trigger: EventFacts | None = None
    event: EventFacts | None = None
    # The contact's events that event-history conditions count (all types they name).
    history: Sequence[EventFacts] = ()


@dataclass(frozen=True)
class ConditionRules:
    """Which references a condition may use where it appears."""

    schema: ContactSchema
    scopes: frozenset[Scope] = field(default_factory=lambda: frozenset(Scope))
    history: bool = False  # whether event-history conditions ({event: TYPE, ...}) may appear


_COMBINATORS = ("all", "any", "not")
_OPS = {op.value for op in Op}


def parse_condition(
    raw: object, path: Path, rules: ConditionRules, problems: Problems
) -> Condition | None:
    """Parse a condition; every problem found is added to `problems`."""
    if not isinstance(raw, Mapping) or not raw:
        problems.add(path, "a condition is a mapping such as {field: contact.age, gte: 50}")
        return None
    keys = set(raw)
    if keys & set(_COMBINATORS):
        return _parse_combinator(raw, path, rules, problems)
    if "field" in keys:
        return _parse_field_test(raw, path, rules, problems)
    if keys in ({"in_list"}, {"in_segment"}):
        (key, name), *_ = raw.items()
        if not isinstance(name, str) or not name:
            problems.add((*path, key), "must name a list or segment")
            return None
        return InList(name) if key == "in_list" else InSegment(name)
    if "event" in keys:
        if not rules.history:
            problems.add(path, "event-history conditions belong in segments (use in_segment)")
            return None
        return _parse_event_history(raw, path, rules, problems)
    problems.add(path, f"unknown condition keys: {', '.join(sorted(map(str, keys)))}")
    return None


def _parse_combinator(
    raw: Mapping[object, object], path: Path, rules: ConditionRules, problems: Problems
) -> Condition | None:
    if len(raw) != 1:
        problems.add(path, "all/any/not must be the only key of its condition")
        return None
    (key, body), *_ = raw.items()
    key = str(key)
    if key == "not":
        inner = parse_condition(body, (*path, "not"), rules, problems)
        return Not(inner) if inner else None
    if not isinstance(body, list) or not body:
        problems.add((*path, key), f"{key} takes a non-empty list of conditions")
        return None
    items = [parse_condition(c, (*path, key, i), rules, problems) for i, c in enumerate(body)]
    if any(item is None for item in items):
        return None
    parsed = tuple(item for item in items if item is not None)
    return AllOf(parsed) if key == "all" else AnyOf(parsed)


def _parse_field_test(
    raw: Mapping[object, object], path: Path, rules: ConditionRules, problems: Problems
) -> FieldTest | None:
    ops = [k for k in raw if k != "field"]
    unknown = [str(k) for k in ops if k not in _OPS]
    if unknown:
        problems.add(path, f"unknown operator {unknown[0]!r} (expected one of {', '.join(Op)})")
        return None
    if len(ops) != 1:
        problems.add(path, "a field condition takes exactly one operator")
        return None
    op = Op(str(ops[0]))
    reference = _parse_reference(raw["field"], (*path, "field"), rules, problems)
    if reference is None:
        return None
    scope, names, spec = reference
    if spec is not None and scope is Scope.CONTACT and spec.klass is FieldClass.IDENTIFIER:
        allowed = identifier_ops(spec)
        if op not in allowed:
            problems.add(
                (*path, op.value),
                f"contact.{spec.name} is an identifier, sealed at rest: conditions test it "
                f"only with {', '.join(sorted(allowed))}",
            )
            return None
    value = _parse_operand(op, raw[op.value], spec, (*path, op.value), problems)
    if value is _INVALID:
        return None
    return FieldTest(scope, names, op, value, spec)


def identifier_ops(spec: FieldSpec) -> frozenset[Op]:
    """What a condition may ask of a sealed identifier: whether it is set, and equality
    for the ones with a blind index (SQL cannot read a sealed value, only compare indexes)."""
    if spec.core and spec.name in INDEXED_FIELDS:
        return frozenset({Op.EXISTS, Op.EQ, Op.IN})
    return frozenset({Op.EXISTS})


def _parse_reference(
    raw: object, path: Path, rules: ConditionRules, problems: Problems
) -> tuple[Scope, tuple[str, ...], FieldSpec | None] | None:
    if not isinstance(raw, str) or "." not in raw:
        problems.add(path, "field must be contact.NAME, event.data.NAME or trigger.data.NAME")
        return None
    head, *rest = raw.split(".")
    try:
        scope = Scope(head)
    except ValueError:
        problems.add(path, f"unknown field scope {head!r} (expected contact, event or trigger)")
        return None
    if scope not in rules.scopes:
        allowed = ", ".join(sorted(rules.scopes))
        problems.add(path, f"{scope}.* cannot be used here (allowed: {allowed})")
        return None
    if any(not part for part in rest):
        problems.add(path, "empty part in field reference")
        return None
    if scope is Scope.CONTACT:
        spec = rules.schema.get(rest[0]) if len(rest) == 1 else None
        if spec is None:
            problems.add(path, f"unknown contact field {'.'.join(rest)!r}")
            return None
        return scope, tuple(rest), spec
    if rest[0] not in {"type", "occurred_at", "data"} or (rest[0] == "data") != (len(rest) > 1):
        problems.add(path, f"{scope} fields are type, occurred_at or data.NAME")
        return None
    spec = FieldSpec("occurred_at", FieldType.DATETIME) if rest == ["occurred_at"] else None
    return scope, tuple(rest), spec


_COUNT_KEYS = {
    "count": Op.EQ,
    "count_gte": Op.GTE,
    "count_lte": Op.LTE,
    "count_gt": Op.GT,
    "count_lt": Op.LT,
}
_HISTORY_KEYS = {"event", "within", "where", *_COUNT_KEYS}
# Inside `where`, event data has no declared type: relative dates cannot be read from it.
_UNTYPED_REFUSED = (Op.BEFORE, Op.AFTER, Op.ANNIVERSARY_WITHIN)


def _parse_event_history(
    raw: Mapping[object, object], path: Path, rules: ConditionRules, problems: Problems
) -> EventHistory | None:
    unknown = sorted(str(k) for k in set(raw) - _HISTORY_KEYS)
    if unknown:
        expected = ", ".join(sorted(_HISTORY_KEYS))
        problems.add(path, f"unknown event-history key {unknown[0]!r} (expected {expected})")
        return None
    kind = raw["event"]
    if not isinstance(kind, str) or not kind or not set(kind) <= EVENT_TYPE_CHARS:
        problems.add((*path, "event"), "an event type is lower-case text such as email.opened")
        return None
    counts = [k for k in raw if k in _COUNT_KEYS]
    if len(counts) > 1:
        problems.add(path, "an event-history condition takes at most one count operator")
        return None
    op, count = Op.GTE, 1
    if counts:
        key = str(counts[0])
        wanted = raw[key]
        if isinstance(wanted, bool) or not isinstance(wanted, int) or not 0 <= wanted < 2**31:
            problems.add((*path, key), "a count is a whole number, 0 or more")
            return None
        op, count = _COUNT_KEYS[key], wanted
    within = None
    if "within" in raw:
        try:
            within = parse_duration(raw["within"])
        except DurationError as exc:
            problems.add((*path, "within"), str(exc))
            return None
    where = None
    if "where" in raw:
        where_rules = ConditionRules(rules.schema, scopes=frozenset({Scope.EVENT}))
        where = parse_condition(raw["where"], (*path, "where"), where_rules, problems)
        if where is None:
            return None
        if any(t.op in _UNTYPED_REFUSED and t.spec is None for t in _field_tests(where)):
            problems.add((*path, "where"), "before, after and anniversary_within need a date field")
            return None
    return EventHistory(kind, op, count, within, where)


def _field_tests(condition: Condition) -> list[FieldTest]:
    match condition:
        case AllOf(items) | AnyOf(items):
            return [t for c in items for t in _field_tests(c)]
        case Not(item):
            return _field_tests(item)
        case FieldTest():
            return [condition]
    return []


class _Invalid:
    pass


_INVALID = _Invalid()


def _parse_operand(
    op: Op, raw: object, spec: FieldSpec | None, path: Path, problems: Problems
) -> object:
    if op is Op.EXISTS:
        if not isinstance(raw, bool):
            problems.add(path, "exists takes true or false")
            return _INVALID
        return raw
    if op in (Op.BEFORE, Op.AFTER):
        return _parse_moment(raw, path, problems)
    if op is Op.ANNIVERSARY_WITHIN:
        if spec is not None and spec.type not in (FieldType.DATE, FieldType.DATETIME):
            problems.add(path, "anniversary_within needs a date field")
            return _INVALID
        try:
            return parse_duration(raw)
        except DurationError as exc:
            problems.add(path, str(exc))
            return _INVALID
    if op in (Op.IN, Op.BETWEEN):
        if not isinstance(raw, list) or not raw or (op is Op.BETWEEN and len(raw) != 2):
            problems.add(
                path,
                "between takes [low, high]" if op is Op.BETWEEN else "in takes a non-empty list",
            )
            return _INVALID
        values = [_typed(v, spec, path, problems) for v in raw]
        return _INVALID if _INVALID in values else tuple(values)
    if op is Op.CONTAINS and spec is not None and spec.type is FieldType.LIST:
        return raw
    return _typed(raw, spec, path, problems)


def _typed(raw: object, spec: FieldSpec | None, path: Path, problems: Problems) -> object:
    if isinstance(raw, Mapping | list):
        problems.add(path, "a comparison value must be a single value")
        return _INVALID
    if raw is None:
        # Nothing compares equal to a missing value: say what was meant.
        problems.add(path, "compare with a value; to test for a missing value use exists: false")
        return _INVALID
    if spec is None or spec.type is FieldType.LIST:
        return raw
    try:
        return coerce_value(spec, raw)
    except ValueError as exc:
        problems.add(path, f"value does not fit field type: {exc}")
        return _INVALID


def _parse_moment(raw: object, path: Path, problems: Problems) -> object:
    """`before`/`after` take a duration relative to now (-90d) or an absolute date."""
    if isinstance(raw, datetime | date):
        return parse_datetime(raw)
    if isinstance(raw, str):
        try:
            return parse_duration(raw, allow_negative=True)
        except DurationError:
            pass
        try:
            return parse_datetime(raw)
        except ValueError:
            pass
    problems.add(path, "takes a relative duration such as -90d or an ISO date")
    return _INVALID


# ---------------------------------------------------------------- evaluation


def evaluate(condition: Condition, facts: Facts) -> bool:
    match condition:
        case AllOf(items):
            return all(evaluate(c, facts) for c in items)
        case AnyOf(items):
            return any(evaluate(c, facts) for c in items)
        case Not(item):
            return not evaluate(item, facts)
        case InList(name):
            return name in facts.lists
        case InSegment(name):
            return name in facts.segments
        case FieldTest():
            return _evaluate_test(condition, facts)
        case EventHistory():
            return _ORDERINGS_AND_EQ[condition.op](
                _history_count(condition, facts), condition.count
            )
    raise TypeError(f"not a condition: {type(condition).__name__}")


def _history_count(history: EventHistory, facts: Facts) -> int:
    since = facts.now - history.within if history.within is not None else None
    count = 0
    for event in facts.history:
        if event.type != history.type or (since is not None and event.occurred_at < since):
            continue
        if history.where is None or evaluate(history.where, Facts({}, facts.now, event=event)):
            count += 1
    return count


def resolve(test_scope: Scope, path: Sequence[str], facts: Facts) -> object:
    """The value a reference names, or None when it is absent."""
    if test_scope is Scope.CONTACT:
        if path[0] == "age":
            return age_on(facts.contact.get("birth_date"), facts.now)
        return facts.contact.get(path[0])
    source = facts.event if test_scope is Scope.EVENT else facts.trigger
    if source is None:
        return None
    if path[0] == "type":
        return source.type
    if path[0] == "occurred_at":
        return source.occurred_at
    value: object = source.data
    for part in path[1:]:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def age_on(birth: object, now: datetime) -> int | None:
    if not isinstance(birth, date):
        return None
    today = now.date()
    before_birthday = (today.month, today.day) < (birth.month, birth.day)
    return today.year - birth.year - int(before_birthday)


def _evaluate_test(test: FieldTest, facts: Facts) -> bool:
    actual = resolve(test.scope, test.path, facts)
    if test.op is Op.EXISTS:
        return (actual is not None) is test.value
    if actual is None:
        return False
    expected = test.value
    try:
        match test.op:
            case Op.EQ:
                return bool(_comparable(actual, expected) and actual == expected)
            case Op.NE:
                return bool(_comparable(actual, expected) and actual != expected)
            case Op.LT | Op.LTE | Op.GT | Op.GTE:
                return _ordered(test.op, actual, expected)
            case Op.IN:
                assert isinstance(expected, tuple)
                return any(_comparable(actual, v) and actual == v for v in expected)
            case Op.BETWEEN:
                assert isinstance(expected, tuple)
                low, high = expected
                return _ordered(Op.GTE, actual, low) and _ordered(Op.LTE, actual, high)
            case Op.CONTAINS:
                if isinstance(actual, list):  # as eq does: True is not 1
                    return any(_comparable(item, expected) and item == expected for item in actual)
                return isinstance(actual, str) and isinstance(expected, str) and expected in actual
            case Op.BEFORE | Op.AFTER:
                return _relative(test.op, actual, expected, facts.now)
            case Op.ANNIVERSARY_WITHIN:
                assert isinstance(expected, timedelta)
                return _anniversary_within(actual, expected, facts.now)
    except (TypeError, ValueError):
        return False
    return False


def _comparable(a: object, b: object) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return True
    if isinstance(a, datetime) or isinstance(b, datetime):
        return isinstance(a, datetime) and isinstance(b, datetime)
    return type(a) is type(b)


# `_comparable` has checked both sides are of one ordered kind; the operators take Any.
_ORDERINGS: Mapping[Op, Callable[[Any, Any], bool]] = {
    Op.LT: operator.lt,
    Op.LTE: operator.le,
    Op.GT: operator.gt,
    Op.GTE: operator.ge,
}


_ORDERINGS_AND_EQ: Mapping[Op, Callable[[Any, Any], bool]] = {**_ORDERINGS, Op.EQ: operator.eq}


def _ordered(op: Op, actual: object, expected: object) -> bool:
    if not _comparable(actual, expected) or isinstance(actual, bool | list):
        return False
    return _ORDERINGS.get(op, _ORDERINGS[Op.GTE])(actual, expected)


def _relative(op: Op, actual: object, expected: object, now: datetime) -> bool:
    bound = now + expected if isinstance(expected, timedelta) else expected
    assert isinstance(bound, datetime)
    if isinstance(actual, str):
        actual = parse_datetime(actual)
    if isinstance(actual, datetime):
        return actual < bound if op is Op.BEFORE else actual > bound
    if isinstance(actual, date):
        return actual < bound.date() if op is Op.BEFORE else actual > bound.date()
    return False


def _anniversary_within(actual: object, window: timedelta, now: datetime) -> bool:
    """True when the next anniversary of the date falls within `window` from today.

    29 February is celebrated on 28 February in common years.
    """
    if isinstance(actual, str):
        actual = date.fromisoformat(actual[:10])
    if isinstance(actual, datetime):
        actual = actual.date()
    if not isinstance(actual, date):
        return False
    today = now.date()
    for year in (today.year, today.year + 1):
        day = anniversary_in(actual, year)
        if day >= today:
            return (day - today) <= window
    return False


def referenced_contact_fields(condition: Condition) -> set[str]:
    """Contact fields a condition reads (`age` reads `birth_date`)."""
    match condition:
        case AllOf(items) | AnyOf(items):
            return set().union(*(referenced_contact_fields(c) for c in items))
        case Not(item):
            return referenced_contact_fields(item)
        case FieldTest(scope=Scope.CONTACT, path=path):
            return {"birth_date" if path[0] == "age" else path[0]}
    return set()


def referenced_scopes(condition: Condition) -> set[Scope]:
    """The scopes (contact, trigger, event) whose fields a condition reads."""
    match condition:
        case AllOf(items) | AnyOf(items):
            return set().union(*(referenced_scopes(c) for c in items))
        case Not(item):
            return referenced_scopes(item)
        case FieldTest(scope=scope):
            return {scope}
    return set()


def referenced_event_types(condition: Condition) -> set[str]:
    """The event types whose history a condition counts."""
    match condition:
        case AllOf(items) | AnyOf(items):
            return set().union(*(referenced_event_types(c) for c in items))
        case Not(item):
            return referenced_event_types(item)
        case EventHistory(type=kind):
            return {kind}
    return set()


def referenced_memberships(condition: Condition) -> set[tuple[str, str]]:
    """The lists and segments a condition names, as ("list" | "segment", name) pairs."""
    match condition:
        case AllOf(items) | AnyOf(items):
            return set().union(*(referenced_memberships(c) for c in items))
        case Not(item):
            return referenced_memberships(item)
        case InList(name):
            return {("list", name)}
        case InSegment(name):
            return {("segment", name)}
    return set()


def depends_on_time(condition: Condition) -> bool:
    """Whether the answer can change with time alone: ages, relative dates, windows."""
    match condition:
        case AllOf(items) | AnyOf(items):
            return any(depends_on_time(c) for c in items)
        case Not(item):
            return depends_on_time(item)
        case EventHistory(within=within):
            return within is not None
        case FieldTest(op=op, value=value, path=path):
            relative = op in (Op.BEFORE, Op.AFTER) and isinstance(value, timedelta)
            return relative or op is Op.ANNIVERSARY_WITHIN or path == ("age",)
    return False
