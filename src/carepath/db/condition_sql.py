"""The condition language compiled to SQL over all contacts (DESIGN.md §3).

`evaluate` in domain/conditions.py answers for one contact in Python; this
module gives the same answer for every contact at once, as a WHERE clause on
`contacts`. Both follow the same rules:

- A missing value, or a stored value of another kind than the comparison's,
  makes every comparison false except `exists`; `not` is two-valued (SQL's
  NULL never leaks through a NOT: negated leaves are wrapped in COALESCE).
- Values are always bound parameters. Field names come from the validated
  contact schema; JSON keys are bound too, never spliced into the text.
- Custom attributes are read in their canonical JSON form (what
  `contacts.to_storage` writes): numbers, booleans, strings, and dates and
  date-times as ISO text in UTC, which sorts as the values do.
- Text sorts by code point (COLLATE "C" on PostgreSQL, BINARY on SQLite).
- `contact.age` becomes a range on `birth_date` (an index can serve it), and
  `anniversary_within` a set of month-days, 29 February included.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, FromClause, and_, false, func, or_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from carepath.db.schema import contacts, events, list_members, segment_members
from carepath.domain.conditions import (
    AllOf,
    AnyOf,
    Condition,
    EventHistory,
    FieldTest,
    InList,
    InSegment,
    Not,
    Op,
    Scope,
)
from carepath.domain.fields import FieldClass, FieldType, index_column, json_value
from carepath.domain.scheduling import anniversary_in
from carepath.protection.identifiers import identifier_index

Expr = ColumnElement[Any]
_COMPARE: dict[Op, Callable[[Any, Any], Expr]] = {
    Op.EQ: lambda a, b: a == b,
    Op.NE: lambda a, b: a != b,
    Op.LT: lambda a, b: a < b,
    Op.LTE: lambda a, b: a <= b,
    Op.GT: lambda a, b: a > b,
    Op.GTE: lambda a, b: a >= b,
}
# The SQLite json_type names and PostgreSQL jsonb_typeof names of each kind of value.
_KINDS = {
    "text": (("text",), ("string",)),
    "number": (("integer", "real"), ("number",)),
    "bool": (("true", "false"), ("boolean",)),
}


def compile_condition(
    condition: Condition, *, dialect: str, now: datetime, contact: FromClause = contacts
) -> Expr:
    """A boolean SQL expression, true for exactly the rows of `contact` the condition holds for."""
    return _Compiler(dialect == "postgresql", now, contact).compile(condition, negated=False)


# ------------------------------------------------------------------ values


class _JsonValue:
    """A value inside a JSON document, read as SQL only when it is of the kind asked for."""

    def __init__(self, document: Expr, path: Sequence[str], postgres: bool) -> None:
        self.document = document
        self.path = tuple(path)
        self.postgres = postgres

    def kind(self) -> Expr:
        """The JSON type name (SQLite json_type, PostgreSQL jsonb_typeof); NULL when absent."""
        if self.postgres:
            return func.jsonb_typeof(self._element())
        return func.json_type(self.document, self._sqlite_path())

    def present(self) -> Expr:
        return func.coalesce(self.kind() != "null", false())

    def read(self, kind: str) -> Expr:
        """The value as SQL text, number or boolean; NULL when it is of another kind."""
        sqlite_names, postgres_names = _KINDS[kind]
        if self.postgres:
            value: Expr = self._text()
            if kind == "number":
                value = sa.cast(value, sa.Numeric)
            elif kind == "bool":
                value = sa.cast(value, sa.Boolean)
            return sa.case((self.kind().in_(postgres_names), value))
        if kind == "bool":
            value = self.kind() == "true"
        else:
            value = func.json_extract(self.document, self._sqlite_path())
        return sa.case((self.kind().in_(sqlite_names), value))

    def holds(self, expected: object) -> Expr:
        """The value is an array with an element equal to `expected` (of the same kind)."""
        if self.postgres:
            array = sa.case(
                (self.kind() == "array", self._element()),
                else_=sa.cast(sa.literal("[]"), JSONB),
            )
            table = func.jsonb_array_elements(array).table_valued("value").alias("item")
            item: _Readable = _JsonValue(type_coerce(table.c.value, JSONB), (), postgres=True)
            found = sa.select(sa.literal(1)).select_from(table)
            return sa.exists(found.where(compare_untyped(item, Op.EQ, expected, postgres=True)))
        rows = func.json_each(self.document, self._sqlite_path()).table_valued("value", "type")
        listed = rows.alias("item")
        item = _SqliteItem(listed.c.type, listed.c.value)
        found = sa.select(sa.literal(1)).select_from(listed)
        test = compare_untyped(item, Op.EQ, expected, postgres=False)
        return and_(self.kind() == "array", sa.exists(found.where(test)))

    def _element(self) -> Any:
        element: Any = type_coerce(self.document, JSONB)
        for part in self.path:
            element = element[part]  # `->` with a text key: never an array index
        return element

    def _text(self) -> Expr:
        if not self.path:
            return func.jsonb_build_array(self.document).op("->>", return_type=sa.Text)(0)
        parent: Any = type_coerce(self.document, JSONB)
        for part in self.path[:-1]:
            parent = parent[part]
        key = sa.bindparam(None, self.path[-1], sa.String)
        return parent.op("->>", return_type=sa.Text)(key)  # type: ignore[no-any-return]

    def _sqlite_path(self) -> str:
        return "$" + "".join("." + json.dumps(part) for part in self.path)


class _SqliteItem:
    """An element of a JSON array as SQLite's json_each gives it: its type name and value."""

    def __init__(self, type_: Expr, value: Expr) -> None:
        self.type_ = type_
        self.value = value

    def kind(self) -> Expr:
        return self.type_

    def present(self) -> Expr:
        return func.coalesce(self.type_ != "null", false())

    def read(self, kind: str) -> Expr:
        names, _ = _KINDS[kind]
        value = self.type_ == "true" if kind == "bool" else self.value
        return sa.case((self.type_.in_(names), value))


_Readable = _JsonValue | _SqliteItem


def compare_untyped(value: _Readable, op: Op, expected: object, *, postgres: bool) -> Expr:
    """Compare a JSON value of no declared type, reading it as the kind of `expected`."""
    if isinstance(expected, bool):
        return _COMPARE[op](value.read("bool"), expected) if op in (Op.EQ, Op.NE) else false()
    if isinstance(expected, int | float):
        return _COMPARE[op](value.read("number"), expected)
    if isinstance(expected, str):
        text = value.read("text")
        return _COMPARE[op](
            text if op in (Op.EQ, Op.NE) else _by_code_point(text, postgres), expected
        )
    return false()  # JSON holds no other kind of scalar


def _by_code_point(text: Expr, postgres: bool) -> Expr:
    return text.collate("C") if postgres else text


@dataclass(frozen=True)
class _Typed:
    """A value of a declared field type: a column, or a JSON attribute in canonical form."""

    type: FieldType
    postgres: bool
    column: Expr | None = None
    json: _JsonValue | None = None

    def present(self) -> Expr:
        if self.column is not None:
            return self.column.is_not(None)
        assert self.json is not None
        return self.json.present()

    def value(self) -> Expr:
        if self.column is not None:
            return self.column
        assert self.json is not None
        match self.type:
            case FieldType.NUMBER:
                return self.json.read("number")
            case FieldType.BOOL:
                return self.json.read("bool")
        return self.json.read("text")  # strings, and dates as ISO text

    def compare(self, op: Op, expected: object) -> Expr:
        value = self.value()
        as_text = self.column is None and self.type in (FieldType.DATE, FieldType.DATETIME)
        if as_text:
            expected = json_value(expected)  # compared with the ISO text stored
        if op not in (Op.EQ, Op.NE) and (as_text or self.type is FieldType.STRING):
            value = _by_code_point(value, self.postgres)
        return _COMPARE[op](value, expected)

    def month_day(self) -> Expr:
        """MM-DD of a date, or of a date-time in UTC."""
        value = self.value()
        if self.postgres and self.column is not None:
            if self.type is FieldType.DATETIME:
                value = func.timezone("UTC", value)
            return func.to_char(value, "MM-DD")
        return func.substr(value, 6, 5)  # ISO text: YYYY-MM-DD…


# --------------------------------------------------------------- compiler


class _Compiler:
    def __init__(
        self, postgres: bool, now: datetime, contact: FromClause, event: FromClause | None = None
    ) -> None:
        self.postgres = postgres
        self.now = now
        self.contact = contact
        self.event = event  # the event an event-history `where` looks at

    def compile(self, condition: Condition, *, negated: bool) -> Expr:
        match condition:
            case AllOf(items) | AnyOf(items):
                parts = [self.compile(item, negated=negated) for item in items]
                conjunction = isinstance(condition, AllOf) != negated
                return and_(*parts) if conjunction else or_(*parts)
            case Not(item):
                return self.compile(item, negated=not negated)
            case InList() | InSegment() | EventHistory():
                test = self._membership(condition)  # EXISTS or a count: never NULL
                return ~test if negated else test
            case FieldTest():
                leaf = self._field_test(condition)
                return ~func.coalesce(leaf, false()) if negated else leaf
        raise TypeError(f"not a condition: {type(condition).__name__}")

    def _membership(self, condition: InList | InSegment | EventHistory) -> Expr:
        contact_id = self.contact.c.id
        match condition:
            case InList(name):
                return sa.exists().where(
                    list_members.c.contact_id == contact_id, list_members.c.list_name == name
                )
            case InSegment(name):
                return sa.exists().where(
                    segment_members.c.contact_id == contact_id,
                    segment_members.c.segment_name == name,
                )
            case EventHistory():
                return self._history(condition)

    def _history(self, history: EventHistory) -> Expr:
        counted = events.alias("counted")
        where = [counted.c.contact_id == self.contact.c.id, counted.c.type == history.type]
        if history.within is not None:
            where.append(counted.c.occurred_at >= self.now - history.within)
        if history.where is not None:
            inner = _Compiler(self.postgres, self.now, self.contact, counted)
            where.append(inner.compile(history.where, negated=False))
        # Correlated by hand: the count below nests it in a derived table.
        found = sa.select(sa.literal(1)).select_from(counted).where(*where).correlate(self.contact)
        op, count = history.op, history.count
        if (op, count) in ((Op.GTE, 1), (Op.GT, 0)):
            return sa.exists(found)
        if (op, count) in ((Op.EQ, 0), (Op.LT, 1), (Op.LTE, 0)):
            return ~sa.exists(found)
        # Counting can stop at count + 1: enough to decide any comparison with `count`.
        limited = found.limit(count + 1).subquery("limited")
        return _COMPARE[op](sa.select(func.count()).select_from(limited).scalar_subquery(), count)

    def _field_test(self, test: FieldTest) -> Expr:
        if test.scope is Scope.CONTACT:
            name = test.path[0]
            if name == "age":
                return _age(self.contact.c.birth_date, self.now.date(), test.op, test.value)
            assert test.spec is not None
            if test.spec.klass is FieldClass.IDENTIFIER:
                return self._identifier(test)
            if test.spec.core:
                typed = _Typed(test.spec.type, self.postgres, column=self.contact.c[name])
            else:
                document = _JsonValue(self.contact.c.attributes, (name,), self.postgres)
                typed = _Typed(test.spec.type, self.postgres, json=document)
            return self._typed(typed, test.op, test.value)
        if self.event is None or test.scope is not Scope.EVENT:
            return false()  # validation keeps trigger.* out of what is compiled
        head = test.path[0]
        if head in ("type", "occurred_at"):
            kind = FieldType.DATETIME if head == "occurred_at" else FieldType.STRING
            return self._typed(
                _Typed(kind, self.postgres, column=self.event.c[head]), test.op, test.value
            )
        data = _JsonValue(self.event.c.data, test.path[1:], self.postgres)
        return self._untyped(data, test.op, test.value)

    def _identifier(self, test: FieldTest) -> Expr:
        """Sealed identifiers: set or not, or equal through the blind index (validation
        allows nothing else)."""
        assert test.spec is not None
        name = test.path[0]
        if test.op is Op.EXISTS:
            present: Expr
            if test.spec.core:
                present = self.contact.c[name].is_not(None)
            else:
                present = _JsonValue(self.contact.c.attributes, (name,), self.postgres).present()
            return present if test.value else ~present
        wanted = test.value if test.op is Op.IN else (test.value,)
        assert isinstance(wanted, tuple)
        indexes = [identifier_index(name, v) for v in wanted if isinstance(v, str)]
        return self.contact.c[index_column(name)].in_(indexes) if indexes else false()

    def _typed(self, value: _Typed, op: Op, expected: object) -> Expr:
        if op is Op.EXISTS:
            return value.present() if expected else ~value.present()
        if value.type is FieldType.LIST:
            json = value.json or _JsonValue(value.column, (), self.postgres)  # type: ignore[arg-type]
            return json.holds(expected) if op is Op.CONTAINS else false()
        if op is Op.CONTAINS:
            if value.type is not FieldType.STRING or not isinstance(expected, str):
                return false()
            return self._contains_text(value.value(), expected)
        if op in (Op.BEFORE, Op.AFTER):
            return self._relative(value, op, expected)
        if op is Op.ANNIVERSARY_WITHIN:
            if value.type not in (FieldType.DATE, FieldType.DATETIME):
                return false()
            assert isinstance(expected, timedelta)
            return value.month_day().in_(sorted(anniversary_days(self.now.date(), expected)))
        if op is Op.IN:
            assert isinstance(expected, tuple)
            return or_(*(self._typed(value, Op.EQ, v) for v in expected))
        if op is Op.BETWEEN:
            assert isinstance(expected, tuple)
            low, high = expected
            return and_(self._typed(value, Op.GTE, low), self._typed(value, Op.LTE, high))
        if not _fits(value.type, expected) or (
            value.type is FieldType.BOOL and op not in (Op.EQ, Op.NE)
        ):
            return false()  # as in Python: values of different kinds never compare
        return value.compare(op, expected)

    def _untyped(self, value: _JsonValue, op: Op, expected: object) -> Expr:
        match op:
            case Op.EXISTS:
                return value.present() if expected else ~value.present()
            case Op.IN:
                assert isinstance(expected, tuple)
                return or_(*(self._untyped(value, Op.EQ, v) for v in expected))
            case Op.BETWEEN:
                assert isinstance(expected, tuple)
                low, high = expected
                return and_(self._untyped(value, Op.GTE, low), self._untyped(value, Op.LTE, high))
            case Op.CONTAINS:
                held = value.holds(expected)
                if not isinstance(expected, str):
                    return held
                return or_(held, self._contains_text(value.read("text"), expected))
            case Op.EQ | Op.NE | Op.LT | Op.LTE | Op.GT | Op.GTE:
                return compare_untyped(value, op, expected, postgres=self.postgres)
        return false()  # relative dates need a declared date type: refused by validation

    def _contains_text(self, text: Expr, expected: str) -> Expr:
        if self.postgres:
            return func.strpos(text, expected) > 0
        return func.instr(text, expected) > 0

    def _relative(self, value: _Typed, op: Op, expected: object) -> Expr:
        bound = self.now + expected if isinstance(expected, timedelta) else expected
        assert isinstance(bound, datetime)
        if value.type is FieldType.DATE:
            moment: object = bound.date()
        elif value.type is FieldType.DATETIME:
            moment = bound
        else:
            return false()
        return value.compare(Op.LT if op is Op.BEFORE else Op.GT, moment)


def _fits(type_: FieldType, value: object) -> bool:
    match type_:
        case FieldType.NUMBER:
            return isinstance(value, int | float) and not isinstance(value, bool)
        case FieldType.BOOL:
            return isinstance(value, bool)
        case FieldType.STRING:
            return isinstance(value, str)
        case FieldType.DATETIME:
            return isinstance(value, datetime)
        case FieldType.DATE:
            return isinstance(value, date) and not isinstance(value, datetime)
    return False


# ------------------------------------------------------------ date arithmetic


def _age(birth: Expr, today: date, op: Op, expected: object) -> Expr:
    """`contact.age` as a range on the birth date: age >= n iff birth <= today n years ago."""
    if op is Op.EXISTS:
        return birth.is_not(None) if expected else birth.is_(None)
    if op is Op.IN:
        assert isinstance(expected, tuple)
        return or_(*(_age(birth, today, Op.EQ, v) for v in expected))
    if op is Op.BETWEEN:
        assert isinstance(expected, tuple)
        return and_(
            _age(birth, today, Op.GTE, expected[0]), _age(birth, today, Op.LTE, expected[1])
        )
    if isinstance(expected, bool) or not isinstance(expected, int | float):
        return false()
    if op is Op.NE:
        return and_(
            birth.is_not(None), ~func.coalesce(_age(birth, today, Op.EQ, expected), false())
        )
    at_least = _AgeAtLeast(birth, today)
    match op:
        case Op.GTE:
            return at_least(math.ceil(expected))
        case Op.GT:
            return at_least(math.floor(expected) + 1)
        case Op.LTE:
            return at_least.below(math.floor(expected) + 1)
        case Op.LT:
            return at_least.below(math.ceil(expected))
        case Op.EQ if float(expected).is_integer():
            return and_(at_least(int(expected)), at_least.below(int(expected) + 1))
    return false()  # a fractional age, or an operator that never holds for a number


@dataclass(frozen=True)
class _AgeAtLeast:
    birth: Expr
    today: date

    def __call__(self, years: int) -> Expr:
        """age >= years."""
        year = self.today.year - years
        if year < 1:
            return false()
        if year > 9999:
            return self.birth.is_not(None)
        return self.birth <= anniversary_in(self.today, year)

    def below(self, years: int) -> Expr:
        """age < years (and a birth date is known)."""
        year = self.today.year - years
        if year < 1:
            return self.birth.is_not(None)
        if year > 9999:
            return false()
        return self.birth > anniversary_in(self.today, year)


def anniversary_days(today: date, window: timedelta) -> set[str]:
    """Month-days (MM-DD) whose next anniversary from `today` falls within `window`.

    29 February is celebrated on 28 February in common years (`anniversary_in`),
    so a common year's 28 February in the window admits 02-29 too.
    """
    days: set[str] = set()
    for offset in range(min(window // timedelta(days=1), 400) + 1):
        day = today + timedelta(days=offset)
        days.add(day.strftime("%m-%d"))
        if anniversary_in(date(2000, 2, 29), day.year) == day:
            days.add("02-29")
    return days
