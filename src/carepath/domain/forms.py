"""`form:` documents: questions, their checks, where answers go, and a score.

```yaml
form: bariatric-hra
title: Weight-loss surgery health assessment
intro: A few questions to see whether surgery could be right for you.
fields:
  - {name: email, label: Email address, type: email, required: true, contact: email}
  - {name: first_name, label: First name, type: text, contact: first_name}
  - {name: bmi, label: Body mass index, type: number, min: 10, max: 90, required: true}
  - {name: diabetes, label: Do you have type 2 diabetes?, type: yes_no}
  - {name: attempts, label: Earlier weight-loss attempts, type: choice,
     options: [none, one, several]}
score:
  - {when: {field: event.data.answers.bmi, gte: 40}, points: 40}
  - {when: {field: event.data.answers.diabetes, eq: true}, points: 15}
thank_you: Thank you. Our team will be in touch.
```

Scoring rules are conditions in the one condition language, on the
submission as the `form.submitted` event will carry it (`event.data.answers`),
so that the workflows triggered by that event read the same names. Answers
are PHI: they go to the contact's fields named by `contact:` and into the
event, never into a log or a URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from carepath.domain.conditions import (
    Condition,
    ConditionRules,
    EventFacts,
    Facts,
    Scope,
    evaluate,
    parse_condition,
)
from carepath.domain.fields import READ_ONLY_FIELDS, ContactSchema, FieldType
from carepath.domain.problems import Problems

SUBMITTED = "form.submitted"
MAX_ANSWER = 2000  # characters of one answer
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AnswerType(StrEnum):
    TEXT = "text"
    EMAIL = "email"
    NUMBER = "number"
    YES_NO = "yes_no"
    CHOICE = "choice"
    DATE = "date"


# What a contact field must be to take an answer of each type.
_FITS: dict[AnswerType, frozenset[FieldType]] = {
    AnswerType.TEXT: frozenset({FieldType.STRING}),
    AnswerType.EMAIL: frozenset({FieldType.STRING}),
    AnswerType.NUMBER: frozenset({FieldType.NUMBER}),
    AnswerType.YES_NO: frozenset({FieldType.BOOL}),
    AnswerType.CHOICE: frozenset({FieldType.STRING}),
    AnswerType.DATE: frozenset({FieldType.DATE}),
}


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    type: AnswerType
    required: bool = False
    options: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    contact: str | None = None  # the contact field the answer is written to


@dataclass(frozen=True)
class ScoreRule:
    when: Condition
    points: int


@dataclass(frozen=True)
class FormDef:
    name: str
    title: str
    intro: str
    fields: tuple[FormField, ...]
    score: tuple[ScoreRule, ...]
    thank_you: str


def parse_form(
    raw: Mapping[str, object], schema: ContactSchema, problems: Problems
) -> FormDef | None:
    allowed = {"form", "title", "intro", "description", "fields", "score", "thank_you"}
    for key in sorted(set(raw) - allowed, key=str):
        problems.add((str(key),), f"unknown key (expected {', '.join(sorted(allowed))})")
    before = len(problems)
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, list) or not fields_raw:
        problems.add(("fields",), "a list of at least one field")
        fields_raw = []
    fields = [
        _parse_field(item, ("fields", i), schema, problems) for i, item in enumerate(fields_raw)
    ]
    names = [f.name for f in fields if f is not None]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add(("fields",), f"field {name!r} appears twice")
    if not any(
        f is not None and f.contact in ("email", "external_id") and f.required for f in fields
    ):
        problems.add(("fields",), "a required field must go to contact email or external_id")
    score = _parse_score(raw.get("score", []), schema, problems)
    if len(problems) > before:
        return None
    name = str(raw["form"])
    return FormDef(
        name=name,
        title=str(raw.get("title") or name),
        intro=str(raw.get("intro") or ""),
        fields=tuple(f for f in fields if f is not None),
        score=tuple(score),
        thank_you=str(raw.get("thank_you") or "Thank you."),
    )


def _parse_field(
    raw: object, at: tuple[str | int, ...], schema: ContactSchema, problems: Problems
) -> FormField | None:
    if not isinstance(raw, Mapping):
        problems.add(at, "a field is a mapping with name, label and type")
        return None
    allowed = {"name", "label", "type", "required", "options", "min", "max", "contact"}
    for key in sorted(set(raw) - allowed, key=str):
        problems.add((*at, str(key)), f"unknown key (expected {', '.join(sorted(allowed))})")
    before = len(problems)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.add((*at, "name"), "lower-case letters, digits and _, starting with a letter")
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip():
        problems.add((*at, "label"), "the question people see")
    try:
        kind = AnswerType(str(raw.get("type")))
    except ValueError:
        problems.add((*at, "type"), f"one of {', '.join(AnswerType)}")
        return None
    options = raw.get("options", [])
    if kind is AnswerType.CHOICE and (
        not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options)
    ):
        problems.add((*at, "options"), "a choice needs a list of options (text)")
        options = []
    bounds = {k: raw.get(k) for k in ("min", "max")}
    for key, value in bounds.items():
        if value is not None and (
            kind is not AnswerType.NUMBER or not isinstance(value, int | float)
        ):
            problems.add((*at, key), f"{key} is a number, for number fields")
    contact = raw.get("contact")
    if contact is not None:
        spec = schema.get(str(contact))
        if spec is None or str(contact) in READ_ONLY_FIELDS:
            problems.add((*at, "contact"), f"unknown or read-only contact field {contact!r}")
        elif spec.type not in _FITS[kind]:
            problems.add((*at, "contact"), f"contact field {contact!r} cannot hold a {kind} answer")
    if len(problems) > before:
        return None
    return FormField(
        name=str(name),
        label=str(label),
        type=kind,
        required=bool(raw.get("required", False)),
        options=tuple(str(o) for o in options) if kind is AnswerType.CHOICE else (),
        minimum=_number(bounds["min"]),
        maximum=_number(bounds["max"]),
        contact=str(contact) if contact is not None else None,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _parse_score(raw: object, schema: ContactSchema, problems: Problems) -> list[ScoreRule]:
    if not isinstance(raw, list):
        problems.add(("score",), "a list of {when: CONDITION, points: N}")
        return []
    rules = ConditionRules(schema, scopes=frozenset({Scope.EVENT}))
    found: list[ScoreRule] = []
    for i, item in enumerate(raw):
        at = ("score", i)
        if not isinstance(item, Mapping) or set(item) != {"when", "points"}:
            problems.add(at, "a rule is {when: CONDITION, points: N}")
            continue
        points = item["points"]
        if not isinstance(points, int) or isinstance(points, bool):
            problems.add((*at, "points"), "a whole number")
            continue
        condition = parse_condition(item["when"], (*at, "when"), rules, problems)
        if condition is not None:
            found.append(ScoreRule(condition, points))
    return found


def check_answers(
    form: FormDef, submitted: Mapping[str, str]
) -> tuple[dict[str, object], dict[str, str]]:
    """Typed answers, and a message per field that is wrong (none: the submission is good)."""
    answers: dict[str, object] = {}
    errors: dict[str, str] = {}
    for field in form.fields:
        text = submitted.get(field.name, "").strip()
        if not text:
            if field.required:
                errors[field.name] = "This answer is required."
            elif field.type is AnswerType.YES_NO:
                answers[field.name] = False  # an unticked box
            continue
        try:
            answers[field.name] = _typed(field, text)
        except ValueError as exc:
            errors[field.name] = str(exc)
    return answers, errors


def _typed(field: FormField, text: str) -> object:
    if len(text) > MAX_ANSWER:
        raise ValueError(f"Please keep this under {MAX_ANSWER} characters.")
    match field.type:
        case AnswerType.EMAIL:
            if not _EMAIL.match(text):
                raise ValueError("Please enter an email address.")
            return text.lower()
        case AnswerType.NUMBER:
            return _typed_number(field, text)
        case AnswerType.YES_NO:
            if text not in ("yes", "no"):
                raise ValueError("Please answer yes or no.")
            return text == "yes"
        case AnswerType.CHOICE:
            if text not in field.options:
                raise ValueError("Please choose one of the options.")
            return text
        case AnswerType.DATE:
            try:
                return date.fromisoformat(text).isoformat()
            except ValueError:
                raise ValueError("Please enter a date as YYYY-MM-DD.") from None
    return text


def _typed_number(field: FormField, text: str) -> int | float:
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise ValueError("Please enter a number.") from None
    if field.minimum is not None and value < field.minimum:
        raise ValueError(f"Please enter at least {field.minimum:g}.")
    if field.maximum is not None and value > field.maximum:
        raise ValueError(f"Please enter at most {field.maximum:g}.")
    return int(value) if value.is_integer() else value


def score_answers(form: FormDef, answers: Mapping[str, object], *, now: datetime) -> int:
    """The sum of the points of every rule whose condition holds."""
    event = EventFacts(SUBMITTED, now, {"form": form.name, "answers": dict(answers)})
    facts = Facts(contact={}, now=now, event=event)
    return sum(rule.points for rule in form.score if evaluate(rule.when, facts))
