"""The contact schema: core fields every contact has, plus declared custom fields.

Each field has a type (how values compare) and a class: `phi` (default),
`identifier` (names a person directly) or `public`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from carepath.domain.problems import Path, Problems


class FieldType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"
    LIST = "list"


class FieldClass(StrEnum):
    PHI = "phi"
    IDENTIFIER = "identifier"
    PUBLIC = "public"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    klass: FieldClass = FieldClass.PHI
    core: bool = False


def _core(name: str, type_: FieldType, klass: FieldClass) -> FieldSpec:
    return FieldSpec(name, type_, klass, core=True)


CORE_FIELDS: Mapping[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        _core("id", FieldType.NUMBER, FieldClass.PUBLIC),
        _core("external_id", FieldType.STRING, FieldClass.IDENTIFIER),
        _core("email", FieldType.STRING, FieldClass.IDENTIFIER),
        _core("phone", FieldType.STRING, FieldClass.IDENTIFIER),
        _core("first_name", FieldType.STRING, FieldClass.IDENTIFIER),
        _core("last_name", FieldType.STRING, FieldClass.IDENTIFIER),
        _core("birth_date", FieldType.DATE, FieldClass.PHI),
        _core("sex", FieldType.STRING, FieldClass.PHI),
        _core("time_zone", FieldType.STRING, FieldClass.PUBLIC),
        _core("tags", FieldType.LIST, FieldClass.PHI),
        _core("created_at", FieldType.DATETIME, FieldClass.PUBLIC),
        _core("age", FieldType.NUMBER, FieldClass.PHI),
    )
}

# Core fields that the update step may not set: computed or managed by carepath.
READ_ONLY_FIELDS = frozenset({"id", "age", "created_at", "tags"})
# Core fields stored in their own columns (identifiers stay separable for encryption).
COLUMN_FIELDS = frozenset(
    {"external_id", "email", "phone", "first_name", "last_name", "birth_date", "sex", "time_zone"}
)

# Identifiers with a blind index beside them: looked up and compared for equality.
INDEXED_FIELDS = frozenset({"external_id", "email", "phone"})


def index_column(name: str) -> str:
    """The column holding the blind index of an indexed identifier."""
    return f"{name}_index"


_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class ContactSchema:
    custom: Mapping[str, FieldSpec]

    def get(self, name: str) -> FieldSpec | None:
        return CORE_FIELDS.get(name) or self.custom.get(name)

    def names(self) -> list[str]:
        return sorted([*CORE_FIELDS, *self.custom])


EMPTY_SCHEMA = ContactSchema(custom={})


def is_field_name(name: str) -> bool:
    return bool(name) and name[0].isalpha() and set(name) <= _NAME_OK and len(name) <= 63


def parse_fields_document(raw: Mapping[str, object], problems: Problems) -> dict[str, FieldSpec]:
    """Parse the body of a `fields:` document (a mapping of name -> {type, class})."""
    specs: dict[str, FieldSpec] = {}
    for key in sorted(set(raw) - {"fields", "description"}, key=str):
        problems.add((str(key),), "unknown key (expected fields, description)")
    body = raw.get("fields")
    if not isinstance(body, Mapping):
        problems.add(("fields",), "must be a mapping of field name to {type, class}")
        return specs
    for name, spec in body.items():
        path: Path = ("fields", str(name))
        if not isinstance(name, str) or not is_field_name(name):
            problems.add(path, "field names use lower-case letters, digits and _")
            continue
        if name in CORE_FIELDS:
            problems.add(path, f"{name!r} is a core field and cannot be redeclared")
            continue
        parsed = _parse_field_spec(name, spec, path, problems)
        if parsed:
            specs[name] = parsed
    return specs


def _parse_field_spec(name: str, spec: object, path: Path, problems: Problems) -> FieldSpec | None:
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping):
        problems.add(path, "must be a type name or a mapping with type and class")
        return None
    unknown = set(spec) - {"type", "class", "description"}
    for key in sorted(unknown, key=str):
        problems.add((*path, str(key)), "unknown key (expected type, class, description)")
    type_ = _field_type(spec.get("type"))
    if type_ is None:
        problems.add((*path, "type"), f"type must be one of {', '.join(FieldType)}")
        return None
    try:
        klass = FieldClass(spec.get("class", FieldClass.PHI))
    except ValueError:
        problems.add((*path, "class"), f"class must be one of {', '.join(FieldClass)}")
        return None
    return FieldSpec(name, type_, klass)


def _field_type(raw: object) -> FieldType | None:
    if not isinstance(raw, str):
        return None
    try:
        return FieldType(raw)
    except ValueError:
        return None


def coerce_value(spec: FieldSpec, value: object) -> object:
    """Coerce a stored or written value to the field's Python type; ValueError if impossible.

    The error names the expected type only: the value may be PHI, and Python's
    own messages (`Invalid isoformat string: '…'`) would repeat it.
    """
    try:
        return _coerce(spec, value)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"expected a {spec.type}") from None


def _coerce(spec: FieldSpec, value: object) -> object:
    if value is None:
        return None
    match spec.type:
        case FieldType.STRING if isinstance(value, str):
            return value
        case FieldType.NUMBER:
            return _coerce_number(value)
        case FieldType.BOOL:
            return _coerce_bool(value)
        case FieldType.DATE:
            return _coerce_date(value)
        case FieldType.DATETIME:
            return parse_datetime(value)
        case FieldType.LIST if isinstance(value, list | tuple):
            return list(value)
    raise ValueError(f"expected a {spec.type}")


def _coerce_number(value: object) -> int | float:
    number: int | float
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        number = float(value) if "." in value or "e" in value.lower() else int(value)
    else:
        raise ValueError(f"expected a {FieldType.NUMBER}")
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"expected a finite {FieldType.NUMBER}")
    return number


def _coerce_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise ValueError(f"expected a {FieldType.BOOL}")


def _coerce_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise ValueError(f"expected a {FieldType.DATE}")


def parse_datetime(value: object) -> datetime:
    """An aware datetime from an ISO string or datetime; naive values are taken as UTC."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        result = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise ValueError("expected an ISO 8601 date-time")
    if result.tzinfo is None:
        result = result.replace(tzinfo=UTC)
    try:
        return result.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC instant
        raise ValueError("outside the years 1 to 9999 in UTC") from None


def json_value(value: object) -> object:
    """A typed value as stored in the attributes JSON (dates as ISO text)."""
    return value.isoformat() if isinstance(value, date | datetime) else value
