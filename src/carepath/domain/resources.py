"""The kinds of documents users write, other than workflows, and their models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from carepath.domain.conditions import Condition, ConditionRules, Scope, parse_condition
from carepath.domain.durations import DurationError, parse_duration
from carepath.domain.fields import ContactSchema
from carepath.domain.problems import Problems


class Kind(StrEnum):
    WORKFLOW = "workflow"
    TEMPLATE = "template"
    SEGMENT = "segment"
    LIST = "list"
    FIELDS = "fields"
    FORM = "form"
    SOURCE = "source"


FIELDS_RESOURCE_NAME = "contact"
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Template:
    name: str
    subject: str | None  # None: a layout or partial, used by others, never sent itself
    html: str
    text: str | None
    # A contact gets this template at most once within this window, whichever workflow sends.
    no_repeat: timedelta | None = None
    # The PHI and identifier fields it may show (None: no allow-list declared).
    phi: frozenset[str] | None = None


@dataclass(frozen=True)
class ListDef:
    name: str
    title: str


@dataclass(frozen=True)
class SegmentDef:
    name: str
    condition: Condition


def document_kind(raw: object, problems: Problems) -> tuple[Kind, str] | None:
    """The kind a document declares by its first key, and its name."""
    if not isinstance(raw, Mapping) or not raw:
        problems.add((), "a document is a mapping whose first key names its kind")
        return None
    first = next(iter(raw))
    try:
        kind = Kind(str(first))
    except ValueError:
        problems.add((str(first),), f"unknown kind {first!r} (expected one of {', '.join(Kind)})")
        return None
    if kind is Kind.FIELDS:
        return kind, FIELDS_RESOURCE_NAME
    name = raw[first]
    if not isinstance(name, str) or not name or not set(name) <= NAME_CHARS or len(name) > 100:
        problems.add((kind.value,), "a name uses lower-case letters, digits, - and _")
        return None
    return kind, name


def _text(raw: Mapping[str, object], key: str, problems: Problems, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            problems.add((key,), f"{key} is required")
        return None
    if not isinstance(value, str):
        problems.add((key,), f"{key} must be text")
        return None
    return value


def _unknown_keys(raw: Mapping[str, object], allowed: set[str], problems: Problems) -> None:
    for key in sorted(set(raw) - allowed, key=str):
        problems.add((str(key),), f"unknown key (expected {', '.join(sorted(allowed))})")


def parse_template(raw: Mapping[str, object], problems: Problems) -> Template | None:
    _unknown_keys(
        raw, {"template", "subject", "html", "text", "description", "no_repeat", "phi"}, problems
    )
    before = len(problems)
    no_repeat = _window(raw, "no_repeat", problems)
    phi = _names(raw, "phi", problems)
    subject = _text(raw, "subject", problems, required=False)
    html = _text(raw, "html", problems, required=True)
    text = _text(raw, "text", problems, required=False)
    if subject is not None and ("\r" in subject or "\n" in subject):
        problems.add(("subject",), "subject must be a single line")
    if len(problems) > before or html is None:
        return None
    return Template(str(raw["template"]), subject, html, text, no_repeat, phi)


def _names(raw: Mapping[str, object], key: str, problems: Problems) -> frozenset[str] | None:
    if key not in raw:
        return None
    value = raw[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add((key,), f"{key} must be a list of contact field names")
        return None
    return frozenset(value)


def _window(raw: Mapping[str, object], key: str, problems: Problems) -> timedelta | None:
    if key not in raw:
        return None
    try:
        window = parse_duration(raw[key])
    except DurationError as exc:
        problems.add((key,), str(exc))
        return None
    if not window:
        problems.add((key,), f"{key} must be longer than zero")
        return None
    return window


def parse_list(raw: Mapping[str, object], problems: Problems) -> ListDef | None:
    _unknown_keys(raw, {"list", "title", "description"}, problems)
    title = raw.get("title") or raw["list"]
    return ListDef(str(raw["list"]), str(title))


def parse_segment(
    raw: Mapping[str, object], schema: ContactSchema, problems: Problems
) -> SegmentDef | None:
    _unknown_keys(raw, {"segment", "title", "description", "condition"}, problems)
    if "condition" not in raw:
        problems.add(("condition",), "condition is required")
        return None
    rules = ConditionRules(schema, scopes=frozenset({Scope.CONTACT}), history=True)
    condition = parse_condition(raw["condition"], ("condition",), rules, problems)
    return SegmentDef(str(raw["segment"]), condition) if condition else None
