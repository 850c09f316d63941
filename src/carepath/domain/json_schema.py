"""JSON Schema (draft 2020-12) for every kind of document users write.

`carepath schema [KIND]` prints these so that editors can complete and check
documents as they are written. The schema follows the hand-written parsers
(`workflow_parser`, `conditions`, `durations`, `fields`, `resources`): what they
accept, it accepts, with two deliberate exceptions: templates, lists and
workflows that a step names must follow the name rule (validation requires that
they exist, and every stored one does), and `update.set` is a mapping or null.
What JSON Schema cannot say is left to `carepath validate`: that the kind key
comes first, that named steps and fields exist, and that values fit a field's type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from carepath.domain.conditions import Op
from carepath.domain.fields import CORE_FIELDS, READ_ONLY_FIELDS, FieldClass, FieldType
from carepath.domain.forms import AnswerType
from carepath.domain.workflow import EndStatus, Purpose
from carepath.domain.workflow_parser import ACTION_KEYS

SCHEMA_KINDS = ("workflow", "template", "segment", "list", "fields", "form", "source")

DIALECT = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]

# Durations are matched after the parser strips and lower-cases them.
_UNIT = "[0-9]+[smhdwSMHDW]"
_NONZERO_UNIT = "0*[1-9][0-9]*[smhdwSMHDW]"
_FIELD_NAME = "[a-z][a-z0-9_]{0,62}"
_PAYLOAD_PATH = "^payload(\\.[A-Za-z0-9_-]+)*$"

# Steps whose action key may have these keys beside it.
_STEP_SIBLINGS: dict[str, tuple[str, ...]] = {
    "email": ("next",),
    "update": ("next",),
    "list": ("next",),
    "wait": ("next",),
    "wait_for": ("next", "on_timeout"),
    "branch": ("otherwise",),
    "split": (),
    "task": ("next",),
    "webhook": ("next",),
    "enroll": ("next",),
    "goto": (),
    "exit": (),
}


def document_schema(kind: str | None = None) -> dict[str, Any]:
    """The schema of one kind of document, or of any document when `kind` is None."""
    defs = _definitions()
    if kind is None:
        root: Schema = {
            "$schema": DIALECT,
            "title": "carepath document",
            "description": (
                "A carepath document: a mapping whose first key names its kind "
                f"({', '.join(SCHEMA_KINDS)})."
            ),
            "oneOf": [_ref(f"{k}Document") for k in SCHEMA_KINDS],
        }
    elif kind in SCHEMA_KINDS:
        root = {"$schema": DIALECT, **defs[f"{kind}Document"]}
    else:
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(SCHEMA_KINDS)})")
    root["$defs"] = {name: defs[name] for name in sorted(_reachable(root, defs))}
    return root


def _ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def _reachable(root: Schema, defs: dict[str, Schema]) -> set[str]:
    """Names of the definitions `root` refers to, directly or through other definitions."""
    found: set[str] = set()
    pending: list[object] = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name not in found:
                    found.add(name)
                    pending.append(defs[name])
            pending.extend(v for k, v in node.items() if k != "$defs")
        elif isinstance(node, list):
            pending.extend(node)
    return found


def _definitions() -> dict[str, Schema]:
    return {
        **_name_definitions(),
        **_duration_definitions(),
        **_condition_definitions("condition", "fieldReference"),
        **_condition_definitions("contactCondition", "contactFieldReference", history=True),
        **_condition_definitions("historyCondition", "historyFieldReference"),
        "eventHistory": _event_history(),
        **_step_definitions(),
        **_workflow_definitions(),
        **_resource_definitions(),
    }


# ------------------------------------------------------------------ names


def _contact_refs(names: Iterable[str]) -> list[str]:
    return sorted(f"contact.{name}" for name in names)


def _not_date_fields() -> list[str]:
    """References to the core fields that are not dates."""
    dates = (FieldType.DATE, FieldType.DATETIME)
    return _contact_refs(n for n, spec in CORE_FIELDS.items() if spec.type not in dates)


def _name_definitions() -> dict[str, Schema]:
    read_only = sorted(READ_ONLY_FIELDS)
    return {
        "resourceName": {
            "type": "string",
            "pattern": "^[a-z0-9_-]+$",
            "minLength": 1,
            "maxLength": 100,
            "description": "A name: lower-case letters, digits, - and _ (at most 100).",
            "examples": ["bariatric-journey"],
        },
        "stepName": {
            "type": "string",
            "description": "The name of a step in this workflow's steps.",
        },
        "nonBlank": {"type": "string", "pattern": "\\S"},
        "eventType": {
            "type": "string",
            "pattern": "^[a-z0-9_.-]+$",
            "description": "An event type: lower-case letters, digits, _, . and -.",
            "examples": [
                "form.submitted",
                "email.clicked",
                "appointment.scheduled",
                "contact.opted_out",
                "task.completed",
            ],
        },
        "fieldName": {
            "type": "string",
            "pattern": f"^{_FIELD_NAME}$",
            "description": (
                "A custom field name: a lower-case letter, then lower-case letters, "
                "digits and _ (at most 63)."
            ),
        },
        "contactFieldReference": {
            "type": "string",
            "pattern": f"^contact\\.{_FIELD_NAME}$",
            "description": (
                "contact.NAME, where NAME is a core field "
                f"({', '.join(sorted(CORE_FIELDS))}) or a declared custom field."
            ),
            "examples": _contact_refs(CORE_FIELDS),
        },
        "eventFieldReference": {
            "type": "string",
            "pattern": "^(event|trigger)\\.(type|occurred_at|data(\\.[^.]+)+)$",
            "description": (
                "event.* is the latest event that moved the run, trigger.* the event that "
                "enrolled it: type, occurred_at or data.NAME (data.a.b for nested data)."
            ),
            "examples": ["event.data.starts_at", "trigger.data.form", "event.occurred_at"],
        },
        "historyFieldReference": {
            "type": "string",
            "pattern": "^event\\.(type|occurred_at|data(\\.[^.]+)+)$",
            "description": "A field of the counted event: event.type, event.occurred_at "
            "or event.data.NAME.",
        },
        "fieldReference": {
            "anyOf": [_ref("contactFieldReference"), _ref("eventFieldReference")],
            "description": "contact.NAME, event.type, event.occurred_at, event.data.NAME "
            "or the same under trigger.",
        },
        "writableField": {
            "type": "string",
            "pattern": f"^(contact\\.)?{_FIELD_NAME}$",
            "not": {"enum": [*read_only, *_contact_refs(read_only)]},
            "description": (
                "A contact field a workflow may write (contact. is optional); "
                f"{', '.join(read_only)} are read-only."
            ),
        },
        "nameList": {
            "description": "A name or a list of names.",
            "anyOf": [
                {"type": "null"},
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}},
            ],
        },
        "resourceNameList": {
            "description": "A name or a list of names.",
            "anyOf": [
                {"type": "null"},
                _ref("resourceName"),
                {"type": "array", "items": _ref("resourceName")},
            ],
        },
        "writableFieldList": {
            "description": "A field or a list of fields.",
            "anyOf": [
                {"type": "null"},
                _ref("writableField"),
                {"type": "array", "items": _ref("writableField")},
            ],
        },
        "scalar": {
            "type": ["string", "number", "boolean", "null"],
            "description": "A single value (not a list or mapping); it must fit the field's type.",
        },
    }


# --------------------------------------------------------------- durations


def _duration_definitions() -> dict[str, Schema]:
    return {
        "duration": {
            "type": "string",
            "pattern": f"^\\s*\\+?({_UNIT})*{_NONZERO_UNIT}({_UNIT})*\\s*$",
            "description": (
                "A duration longer than zero: numbers with units s, m, h, d or w, "
                "e.g. 90s, 30m, 12h, 7d, 2w, 1d12h."
            ),
            "examples": ["7d", "12h", "30m", "2w", "1d12h"],
        },
        "offsetDuration": {
            "type": "string",
            "pattern": f"^\\s*[+-]?({_UNIT})+\\s*$",
            "description": "A duration that may be negative or zero, e.g. -2d, 12h, 0s.",
            "examples": ["-2d", "-1d12h", "0s"],
        },
        "nonNegativeDuration": {
            "type": "string",
            "pattern": f"^\\s*\\+?({_UNIT})+\\s*$",
            "description": "A duration that is not negative, e.g. 7d.",
            "examples": ["7d", "30d"],
        },
        "moment": {
            "description": (
                "A duration relative to now (-90d is 90 days ago) or an ISO 8601 date or "
                "date-time (2026-03-01, 2026-03-01T09:00:00Z)."
            ),
            "anyOf": [
                _ref("offsetDuration"),
                {"type": "string", "pattern": "^[0-9]{4}-?([0-9]{2}-?[0-9]{2}|W[0-9]{2})"},
            ],
            "examples": ["-90d", "2026-03-01"],
        },
        "instant": {
            "type": "string",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}",
            "description": "An ISO 8601 date-time (UTC unless it carries an offset).",
            "examples": ["2026-12-01T14:00:00Z"],
        },
        "timeOfDay": {
            "type": "string",
            # time.fromisoformat: HH[:MM[:SS]] (or HHMM[SS]), fraction, offset; T prefix.
            "pattern": (
                "^T?([01][0-9]|2[0-3])(:[0-5][0-9](:[0-5][0-9])?|[0-5][0-9]([0-5][0-9])?)?"
                "([.,][0-9]+)?(Z|[+-]([01][0-9]|2[0-3])(:?[0-9]{2}(:?[0-9]{2}([.,][0-9]+)?)?)?)?$"
            ),
            "description": 'A local time of day, "HH:MM" in the contact\'s time zone.',
            "examples": ["09:00", "17:30"],
        },
    }


# -------------------------------------------------------------- conditions


def _event_history() -> Schema:
    count = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
    counts = {
        "count": "Exactly this many events.",
        "count_gte": "At least this many events (the default is count_gte: 1).",
        "count_lte": "At most this many events.",
        "count_gt": "More than this many events.",
        "count_lt": "Fewer than this many events.",
    }
    return {
        "type": "object",
        "description": (
            "The contact's history of one event type: {event: email.opened, count_gte: 1, "
            "within: 30d}; count: 0 means no such event (lack of engagement)."
        ),
        "properties": {
            "event": {**_ref("eventType"), "description": "The event type counted."},
            "within": {**_ref("duration"), "description": "Only events this recent count."},
            "where": {**_ref("historyCondition"), "description": "Only matching events count."},
            **{key: {**count, "description": text} for key, text in counts.items()},
        },
        "required": ["event"],
        "additionalProperties": False,
        "not": {"anyOf": [{"required": [a, b]} for a in counts for b in counts if a < b]},
    }


def _condition_definitions(
    name: str, reference: str, *, history: bool = False
) -> dict[str, Schema]:
    """A condition whose field tests may use the references `reference` allows."""
    scalar = _ref("scalar")
    not_list_fields = _contact_refs(
        n for n, spec in CORE_FIELDS.items() if spec.type is not FieldType.LIST
    )
    not_date_fields = _not_date_fields()
    operands: dict[Op, Schema] = {
        Op.EQ: {**scalar, "description": "Equal to the value."},
        Op.NE: {**scalar, "description": "Present and not equal to the value."},
        Op.LT: {**scalar, "description": "Less than the value."},
        Op.LTE: {**scalar, "description": "Less than or equal to the value."},
        Op.GT: {**scalar, "description": "Greater than the value."},
        Op.GTE: {**scalar, "description": "Greater than or equal to the value."},
        Op.IN: {
            "type": "array",
            "items": scalar,
            "description": "Equal to one of the values.",
        },
        Op.CONTAINS: {
            "description": "A list field holds the value, or a text field contains it.",
        },
        Op.EXISTS: {
            "type": "boolean",
            "description": "true: the field has a value; false: it has none.",
        },
        Op.BETWEEN: {
            "type": "array",
            "items": scalar,
            "minItems": 2,
            "maxItems": 2,
            "description": "[low, high], both included.",
        },
        Op.ANNIVERSARY_WITHIN: {
            **_ref("nonNegativeDuration"),
            "description": "The next anniversary of a date field falls within this duration.",
        },
        Op.BEFORE: {**_ref("moment"), "description": "A date before this moment."},
        Op.AFTER: {**_ref("moment"), "description": "A date after this moment."},
    }
    field_test: Schema = {
        "type": "object",
        "description": f"A test of one field with exactly one operator: {', '.join(Op)}.",
        "properties": {
            "field": {**_ref(reference), "description": "The field to test."},
            **{op.value: operands[op] for op in Op},
        },
        "required": ["field"],
        "minProperties": 2,
        "maxProperties": 2,
        "additionalProperties": False,
        "allOf": [
            {
                # contains takes any value only for a list field.
                "if": {
                    "required": ["field"],
                    "properties": {
                        "field": {
                            "anyOf": [
                                {"enum": not_list_fields},
                                {"type": "string", "pattern": "^(event|trigger)\\."},
                            ]
                        }
                    },
                },
                "then": {"properties": {"contains": scalar}},
            },
            {
                "if": {"required": ["anniversary_within"]},
                "then": {"properties": {"field": {"not": {"enum": not_date_fields}}}},
            },
        ],
    }
    item = _ref(name)
    items = {"type": "array", "items": item, "minItems": 1}
    return {
        name: {
            "description": (
                "A condition: {all: [...]}, {any: [...]}, {not: {...}}, "
                "{field: contact.age, gte: 50}, {in_list: NAME} or {in_segment: NAME}."
            ),
            "anyOf": [
                _ref(f"{name}FieldTest"),
                _only("all", {**items, "description": "Every condition holds."}),
                _only("any", {**items, "description": "At least one condition holds."}),
                _only("not", {**item, "description": "The condition does not hold."}),
                _only("in_list", {"type": "string", "minLength": 1, "description": "A list."}),
                _only(
                    "in_segment",
                    {"type": "string", "minLength": 1, "description": "A segment."},
                ),
                *([_ref("eventHistory")] if history else []),
            ],
        },
        f"{name}FieldTest": field_test,
    }


def _only(key: str, value: Schema) -> Schema:
    """A mapping with exactly one key."""
    return {
        "type": "object",
        "properties": {key: value},
        "required": [key],
        "additionalProperties": False,
    }


# ------------------------------------------------------------------- steps


def _step_definitions() -> dict[str, Schema]:
    name = _ref("resourceName")
    non_blank = _ref("nonBlank")
    actions: dict[str, Schema] = {
        "email": {**name, "description": "Send the email template with this name."},
        "update": {
            "type": "object",
            "description": "Change the contact: set, unset, add_tags and/or remove_tags.",
            "properties": {
                "set": {
                    "type": ["object", "null"],
                    "propertyNames": _ref("writableField"),
                    "description": "Field: value pairs to write.",
                },
                "unset": {**_ref("writableFieldList"), "description": "Fields to clear."},
                "add_tags": {**_ref("nameList"), "description": "Tags to add."},
                "remove_tags": {**_ref("nameList"), "description": "Tags to remove."},
            },
            "minProperties": 1,
            "additionalProperties": False,
        },
        "list": {
            "type": "object",
            "description": "Add the contact to and/or remove it from lists.",
            "properties": {
                "add": {**_ref("resourceNameList"), "description": "Lists to join."},
                "remove": {**_ref("resourceNameList"), "description": "Lists to leave."},
            },
            "anyOf": [{"required": ["add"]}, {"required": ["remove"]}],
        },
        "wait": {
            "description": (
                "Wait for a duration (3d), or {until: DATE, offset, at} to wait for a date."
            ),
            "anyOf": [
                _ref("duration"),
                {
                    "type": "object",
                    "properties": {
                        "duration": {**_ref("duration"), "description": "How long to wait."},
                        "until": {
                            **_ref("fieldReference"),
                            "not": {"enum": _not_date_fields()},
                            "description": (
                                "The date to wait for: a date field of the contact, "
                                "event.data.NAME or trigger.data.NAME."
                            ),
                        },
                        "offset": {
                            "description": "Shift from the date, e.g. -2d (with until).",
                            "default": "0s",
                        },
                        "at": {"description": 'Local time of day such as "09:00" (with until).'},
                    },
                    "additionalProperties": False,
                    "oneOf": [{"required": ["duration"]}, {"required": ["until"]}],
                    "if": {"required": ["until"]},
                    "then": {
                        "properties": {
                            "offset": _ref("offsetDuration"),
                            "at": {"anyOf": [_ref("timeOfDay"), {"type": "null"}]},
                        }
                    },
                },
            ],
            "examples": ["3d", {"until": "event.data.starts_at", "offset": "-2d", "at": "09:00"}],
        },
        "wait_for": {
            "type": "object",
            "description": "Wait for an event; on_timeout names the step after `within`.",
            "properties": {
                "event": {**_ref("eventType"), "description": "The event type to wait for."},
                "within": {**_ref("duration"), "description": "How long to wait at most."},
                "where": {**_ref("condition"), "description": "The event must also match."},
            },
            "required": ["event", "within"],
            "additionalProperties": False,
        },
        "branch": {
            "type": "array",
            "description": "Cases tried in order; the first whose `when` holds is taken.",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "when": _ref("condition"),
                    "goto": {**non_blank, "description": "The step to go to."},
                },
                "required": ["when", "goto"],
                "additionalProperties": False,
            },
        },
        "split": {
            "type": "array",
            "description": "Weighted random paths (A/B tests), the same for a contact each time.",
            "minItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "weight": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "A positive whole number.",
                    },
                    "goto": {**non_blank, "description": "The step to go to."},
                    "name": {"description": "A label for this path."},
                },
                "required": ["weight", "goto"],
                "additionalProperties": False,
            },
        },
        "task": {
            "type": "object",
            "description": "Create a task for people to do.",
            "properties": {
                "queue": {**non_blank, "description": "The queue that gets the task."},
                "title": {**non_blank, "description": "What to do."},
            },
            "required": ["queue", "title"],
            "additionalProperties": False,
        },
        "webhook": {
            "type": "object",
            "description": (
                "POST the contact's id and the fields named to an endpoint, signed with "
                "the secret in an environment variable; retried with backoff."
            ),
            "properties": {
                "url": {"type": "string", "pattern": "^https?://", "description": "The endpoint."},
                "secret_env": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{2,100}$"},
                "fields": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Contact fields sent (the id always is).",
                },
            },
            "required": ["url", "secret_env"],
            "additionalProperties": False,
        },
        "enroll": {
            "description": "Enroll the contact in another workflow: NAME or "
            "{workflow: NAME, end_current: true}.",
            "anyOf": [
                name,
                {
                    "type": "object",
                    "properties": {
                        "workflow": name,
                        "end_current": {
                            "type": "boolean",
                            "default": False,
                            "description": "End this run as the other starts.",
                        },
                    },
                    "required": ["workflow"],
                    "additionalProperties": False,
                },
            ],
        },
        "goto": {**non_blank, "description": "Go to the step with this name."},
        "exit": {
            "enum": [v.value for v in EndStatus],
            "description": "End the run: completed, converted (goal reached) or exited.",
        },
    }
    siblings: dict[str, Schema] = {
        "next": {
            "type": ["string", "null"],
            "description": "The step after this one; without it the run ends here.",
        },
        "on_timeout": {
            "type": ["string", "null"],
            "description": "The step when the event does not come within the time.",
        },
        "otherwise": {
            "type": ["string", "null"],
            "description": "The step when no case holds; without it the run ends.",
        },
    }
    defs: dict[str, Schema] = {}
    for action in ACTION_KEYS:
        defs[_step_def(action)] = {
            "type": "object",
            "description": f"A {action} step.",
            "properties": {
                action: actions[action],
                **{key: siblings[key] for key in _STEP_SIBLINGS[action]},
            },
            "required": [action],
            "additionalProperties": False,
        }
    defs["step"] = {
        "description": (
            "A step: exactly one action key "
            f"({', '.join(ACTION_KEYS)}) with next, on_timeout or otherwise as it allows. "
            "sms steps are not supported in this version."
        ),
        "oneOf": [_ref(_step_def(action)) for action in ACTION_KEYS],
    }
    return defs


def _step_def(action: str) -> str:
    head, *rest = action.split("_")
    return head + "".join(part.title() for part in rest) + "Step"


# ---------------------------------------------------------------- workflow


def _workflow_definitions() -> dict[str, Schema]:
    event_match: Schema = {
        "type": ["object", "null"],
        "properties": {
            "event": _ref("eventType"),
            "when": {
                **_ref("condition"),
                "description": "The event must also match; alone, a condition checked "
                "before each step and when an event for the run arrives.",
            },
        },
        "anyOf": [{"required": ["event"]}, {"required": ["when"]}],
        "additionalProperties": False,
    }
    return {
        "trigger": {
            "description": (
                "What enrolls a contact: manual, {event: TYPE, when: CONDITION}, "
                "{segment: NAME, when: CONDITION} (on joining the segment) or "
                "{date: contact.FIELD, offset, at, every: year, when: CONDITION} or "
                "{schedule: MOMENT | {starting, every}, audience: CONDITION}."
            ),
            "anyOf": [
                {"const": "manual"},
                _only("manual", {"const": True}),
                {
                    "type": "object",
                    "properties": {
                        "segment": {
                            **_ref("resourceName"),
                            "description": "Enrolls contacts as they join this segment.",
                        },
                        "when": {
                            **_ref("condition"),
                            "description": "The contact must also match.",
                        },
                    },
                    "required": ["segment"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {
                        "date": {
                            **_ref("contactFieldReference"),
                            "not": {"enum": _not_date_fields()},
                            "description": "A date or date-time field of the contact.",
                        },
                        "offset": {
                            **_ref("offsetDuration"),
                            "description": "Shift from the date, e.g. 7d or -2d.",
                        },
                        "at": {
                            **_ref("timeOfDay"),
                            "description": "Local time of day (default: the date's own time).",
                        },
                        "every": {
                            "const": "year",
                            "description": "Every year, on the anniversary.",
                        },
                        "when": {
                            **_ref("contactCondition"),
                            "description": "The contact must also match (checked a day ahead).",
                        },
                    },
                    "required": ["date"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {
                        "schedule": {
                            "description": "A moment, or {starting: MOMENT, every: DURATION}.",
                            "anyOf": [
                                _ref("instant"),
                                {
                                    "type": "object",
                                    "properties": {
                                        "starting": _ref("instant"),
                                        "every": _ref("duration"),
                                    },
                                    "required": ["starting"],
                                    "additionalProperties": False,
                                },
                            ],
                        },
                        "audience": {
                            **_ref("contactCondition"),
                            "description": "Who is enrolled: the contacts matching then.",
                        },
                    },
                    "required": ["schedule", "audience"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {
                        "event": {**_ref("eventType"), "description": "The event that enrolls."},
                        "when": {**_ref("condition"), "description": "The event must also match."},
                    },
                    "required": ["event"],
                    "additionalProperties": False,
                },
            ],
            "examples": ["manual", {"event": "form.submitted"}],
        },
        "reentry": {
            "description": "Whether a contact may run again: never, always or {after: DURATION}.",
            "default": "never",
            "anyOf": [
                {"enum": ["never", "always"]},
                _only("after", {**_ref("duration"), "description": "Since the last run began."}),
            ],
        },
        "workflowDocument": {
            "type": "object",
            "title": "workflow",
            "description": "A workflow: a trigger and named steps a contact moves through.",
            "properties": {
                "workflow": {**_ref("resourceName"), "description": "The workflow's name."},
                "title": {"description": "A title for people (defaults to the name)."},
                "description": {"description": "Free text for people."},
                "purpose": {
                    "enum": [v.value for v in Purpose],
                    "default": Purpose.OPERATIONS.value,
                    "description": "HIPAA purpose of use.",
                },
                "trigger": _ref("trigger"),
                "reentry": _ref("reentry"),
                "goal": {
                    **event_match,
                    "description": "An event (or a condition) that ends the run as converted.",
                },
                "exit_when": {
                    **event_match,
                    "description": "An event (or a condition) that ends the run as exited.",
                },
                "start": {
                    "type": "string",
                    "description": "The first step (defaults to the first one written).",
                },
                "no_repeat": {
                    **_ref("duration"),
                    "description": "Its emails reach a contact at most once per template in "
                    "this window (a template's own no_repeat wins).",
                },
                "steps": {
                    "type": "object",
                    "description": "Steps by name.",
                    "minProperties": 1,
                    "additionalProperties": _ref("step"),
                },
            },
            "required": ["workflow", "trigger", "steps"],
            "additionalProperties": False,
        },
    }


# --------------------------------------------------------------- resources


def _other_kinds(*kinds: str) -> Schema:
    """Matches a document that also has the key of another kind than `kinds`.

    A document's kind is its first key, which JSON Schema cannot see; this keeps
    documents that allow other keys from matching a document of another kind.
    """
    return {"anyOf": [{"required": [other]} for other in SCHEMA_KINDS if other not in kinds]}


def _resource_definitions() -> dict[str, Schema]:
    any_text: Schema = {"description": "Free text for people."}
    field_type: Schema = {
        "enum": [v.value for v in FieldType],
        "description": "How values compare.",
    }
    return {
        "templateDocument": {
            "type": "object",
            "title": "template",
            "description": "An email template; subject, html and text are Jinja templates.",
            "properties": {
                "template": {**_ref("resourceName"), "description": "The template's name."},
                "subject": {
                    "type": "string",
                    "not": {"pattern": "[\\r\\n]"},
                    "description": (
                        "The subject line (a single line). A template without one is a layout "
                        "or partial: other templates extend or include it; it is never sent."
                    ),
                },
                "html": {"type": "string", "description": "The HTML body."},
                "text": {"type": ["string", "null"], "description": "The plain-text body."},
                "no_repeat": {
                    **_ref("duration"),
                    "description": "A contact gets this template at most once in this window.",
                },
                "phi": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,62}$"},
                    "uniqueItems": True,
                    "description": (
                        "The PHI and identifier contact fields this template may show "
                        "(minimum necessary): validation warns about any other it reads."
                    ),
                },
                "description": any_text,
            },
            "required": ["template", "html"],
            "additionalProperties": False,
        },
        "segmentDocument": {
            "type": "object",
            "title": "segment",
            "description": "A segment: the contacts for whom a condition on contact.* holds.",
            "properties": {
                "segment": {**_ref("resourceName"), "description": "The segment's name."},
                "title": {"description": "A title for people."},
                "description": any_text,
                "condition": {
                    **_ref("contactCondition"),
                    "description": "Who is in the segment (contact.* fields only).",
                },
            },
            "required": ["segment", "condition"],
            "additionalProperties": False,
        },
        "listDocument": {
            "type": "object",
            "title": "list",
            "description": "A list contacts join and leave (by workflows or by hand).",
            "properties": {
                "list": {**_ref("resourceName"), "description": "The list's name."},
                "title": {"description": "A title for people (defaults to the name)."},
                "description": any_text,
            },
            "required": ["list"],
            "additionalProperties": False,
        },
        "fieldsDocument": {
            "type": "object",
            "title": "fields",
            "description": "The custom contact fields, each with a type and a class.",
            "properties": {
                "fields": {
                    "type": "object",
                    "description": "Field name: type, or field name: {type, class, description}.",
                    "propertyNames": {
                        **_ref("fieldName"),
                        "not": {"enum": sorted(CORE_FIELDS)},
                    },
                    "additionalProperties": {
                        "anyOf": [
                            field_type,
                            {
                                "type": "object",
                                "properties": {
                                    "type": field_type,
                                    "class": {
                                        "enum": [v.value for v in FieldClass],
                                        "default": FieldClass.PHI.value,
                                        "description": (
                                            "phi (the default), identifier (names a person "
                                            "directly) or public."
                                        ),
                                    },
                                    "description": any_text,
                                },
                                "required": ["type"],
                                "additionalProperties": False,
                            },
                        ]
                    },
                },
            },
            "required": ["fields"],
            "not": _other_kinds("fields"),
        },
        "sourceDocument": {
            "type": "object",
            "title": "source",
            "description": (
                "A system that posts webhooks to /v1/hooks/{source}, and how its payloads "
                "become events."
            ),
            "properties": {
                "source": {**_ref("resourceName"), "description": "The source's name."},
                "title": {"description": "A title for people (defaults to the name)."},
                "description": any_text,
                "secret_env": {
                    "type": "string",
                    "pattern": "^[A-Z][A-Z0-9_]{2,100}$",
                    "description": "The environment variable that holds the shared secret.",
                },
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "when": {
                                "type": "object",
                                "propertyNames": {"pattern": _PAYLOAD_PATH},
                                "description": "Payload paths and the values they must have.",
                            },
                            "type": {"type": "string", "description": "The event type."},
                            "contact": {
                                "type": "object",
                                "minProperties": 1,
                                "maxProperties": 1,
                                "properties": {
                                    k: {"type": "string", "pattern": _PAYLOAD_PATH}
                                    for k in ("id", "external_id", "email")
                                },
                                "additionalProperties": False,
                            },
                            "occurred_at": {"type": "string", "pattern": _PAYLOAD_PATH},
                            "idempotency_key": {"type": "string", "pattern": _PAYLOAD_PATH},
                            "data": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "string",
                                    "pattern": _PAYLOAD_PATH,
                                },
                            },
                        },
                        "required": ["type", "contact"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["source", "secret_env", "events"],
            "additionalProperties": False,
        },
        "formDocument": {
            "type": "object",
            "title": "form",
            "description": (
                "A form served at /f/{form}: questions, where answers go, and a score "
                "computed with conditions on event.data.answers."
            ),
            "properties": {
                "form": {**_ref("resourceName"), "description": "The form's name."},
                "title": {"type": "string"},
                "intro": {"type": "string"},
                "description": any_text,
                "thank_you": {"type": "string"},
                "fields": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": _ref("fieldName"),
                            "label": {"type": "string", "minLength": 1},
                            "type": {"enum": [t.value for t in AnswerType]},
                            "required": {"type": "boolean"},
                            "options": {"type": "array", "items": {"type": "string"}},
                            "min": {"type": "number"},
                            "max": {"type": "number"},
                            "contact": {
                                "type": "string",
                                "description": "The contact field the answer is written to.",
                            },
                        },
                        "required": ["name", "label", "type"],
                        "additionalProperties": False,
                    },
                },
                "score": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"when": _ref("condition"), "points": {"type": "integer"}},
                        "required": ["when", "points"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["form", "fields"],
            "additionalProperties": False,
        },
    }
