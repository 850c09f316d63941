from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from carepath.domain.catalog import Document, build_catalog
from carepath.domain.conditions import Op
from carepath.domain.json_schema import DIALECT, SCHEMA_KINDS, document_schema
from carepath.domain.resources import Kind
from carepath.domain.workflow import EndStatus, Purpose
from carepath.domain.workflow_parser import _ALLOWED_STEP_KEYS, ACTION_KEYS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "bariatric"

ANY = Draft202012Validator(document_schema())


def example_documents() -> list[Any]:
    """Every document in the examples, as parameters named file#index."""
    params = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        with path.open(encoding="utf-8") as stream:
            for i, doc in enumerate(yaml.safe_load_all(stream)):
                params.append(pytest.param(doc, id=f"{path.relative_to(EXAMPLES)}#{i}"))
    assert params, f"no examples under {EXAMPLES}"
    return params


def refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def errors(doc: object, kind: str | None = None) -> list[str]:
    validator = ANY if kind is None else Draft202012Validator(document_schema(kind))
    return [error.message for error in validator.iter_errors(doc)]


def findings(*docs: Mapping[str, object]) -> list[str]:
    result = build_catalog([Document(f"doc{i}.yaml", doc) for i, doc in enumerate(docs)])
    return [f"{f.problem.dotted}: {f.problem.message}" for f in result.findings]


# ------------------------------------------------------------ the schema itself


@pytest.mark.parametrize("kind", [None, *SCHEMA_KINDS])
def test_schema_is_a_valid_draft_2020_12_schema(kind: str | None) -> None:
    schema = document_schema(kind)

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DIALECT
    json.dumps(schema)  # what `carepath schema` prints


@pytest.mark.parametrize("kind", [None, *SCHEMA_KINDS])
def test_every_reference_resolves_and_every_definition_is_used(kind: str | None) -> None:
    schema = document_schema(kind)

    used = {ref.removeprefix("#/$defs/") for ref in refs(schema)}

    assert all(ref.startswith("#/$defs/") for ref in refs(schema))
    assert used == set(schema["$defs"])


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        document_schema("campaign")


# -------------------------------------------------------------------- examples


@pytest.mark.parametrize("doc", example_documents())
def test_every_example_document_validates(doc: dict[str, object]) -> None:
    kind = next(iter(doc))

    assert errors(doc) == []
    assert errors(doc, kind) == []


def test_the_examples_also_pass_the_parsers() -> None:
    docs = [param.values[0] for param in example_documents()]

    assert findings(*docs) == []


# ------------------------------------------- documents both accept or both refuse

END = {"exit": "completed"}


def workflow(steps: dict[str, object], **top: object) -> dict[str, object]:
    return {"workflow": "journey", "trigger": "manual", **top, "steps": steps}


def branch_on(condition: object) -> dict[str, object]:
    return workflow({"check": {"branch": [{"when": condition, "goto": "end"}]}, "end": END})


EVERY_STEP = workflow(
    {
        "mark": {
            "update": {"set": {"contact.plan": "gold"}, "unset": "score", "add_tags": ["a"]},
            "next": "join",
        },
        "join": {"list": {"add": "leads", "remove": ["others"]}, "next": "hello"},
        "hello": {"email": "hello", "next": "pause"},
        "pause": {"wait": " 1D12h ", "next": "until"},
        "until": {
            "wait": {"until": "contact.surgery_date", "offset": "-2d", "at": "09:00"},
            "next": "click",
        },
        "click": {
            "wait_for": {
                "event": "email.clicked",
                "within": "7d",
                "where": {"field": "event.data.link", "contains": "guide"},
            },
            "next": "route",
            "on_timeout": "ab",
        },
        "route": {
            "branch": [
                {
                    "when": {
                        "all": [
                            {"field": "contact.age", "between": [50, 64]},
                            {"not": {"in_list": "leads"}},
                            {"field": "contact.birth_date", "anniversary_within": "7d"},
                            {"field": "trigger.occurred_at", "after": "-90d"},
                            {"field": "contact.tags", "contains": "vip"},
                            {"field": "contact.plan", "in": ["gold", "silver"]},
                            {"field": "contact.email", "exists": True},
                        ]
                    },
                    "goto": "call",
                }
            ],
            "otherwise": "ab",
        },
        "ab": {
            "split": [{"weight": 1, "goto": "call", "name": "A"}, {"weight": 3, "goto": "other"}]
        },
        "other": {"enroll": {"workflow": "other-journey", "end_current": True}},
        "call": {"task": {"queue": "contact-center", "title": "Call"}, "next": "loop"},
        "loop": {"goto": "end"},
        "end": {"exit": "converted"},
    },
    trigger={
        "event": "form.submitted",
        "when": {"all": [{"in_list": "others"}, {"in_segment": "adults"}]},
    },
    reentry={"after": "180d"},
    goal={"event": "surgery.scheduled"},
    exit_when={"event": "contact.opted_out", "when": {"field": "event.data.all", "eq": True}},
    purpose="treatment",
)
CONTEXT: list[dict[str, object]] = [
    {
        "fields": {
            "score": "number",
            "plan": {"type": "string", "class": "public", "description": "Plan"},
            "surgery_date": {"type": "date"},
        }
    },
    {"template": "hello", "subject": "Hello", "html": "<p>Hi</p>", "text": None},
    {"list": "leads"},
    {"list": "others", "title": "Others"},
    workflow({"end": END}, workflow="other-journey"),
    workflow(
        {"end": END},
        workflow="birthdays",
        trigger={
            "date": "contact.birth_date",
            "offset": "-1d",
            "at": "09:00",
            "every": "year",
            "when": {"event": "email.opened", "count_gte": 1, "within": "365d"},
        },
    ),
    workflow(
        {"end": END},
        workflow="newsletter",
        trigger={
            "schedule": {"starting": "2026-12-07T14:00:00Z", "every": "7d"},
            "audience": {"in_list": "leads"},
        },
    ),
    workflow(
        {"end": END},
        workflow="on-joining",
        trigger={"segment": "adults", "when": {"in_segment": "silent"}},
    ),
    {"segment": "adults", "condition": {"field": "contact.age", "gte": 18}},
    {
        "segment": "silent",
        "condition": {
            "all": [
                {"event": "email.opened", "count": 0, "within": "90d"},
                {
                    "event": "form.submitted",
                    "count_lte": 2,
                    "where": {"not": {"field": "event.data.form", "in": ["hra", "bmi"]}},
                },
                {"in_segment": "adults"},
            ]
        },
    },
]


def test_a_document_set_using_every_construct_passes_both() -> None:
    docs = [EVERY_STEP, *CONTEXT]

    assert findings(*docs) == []
    for doc in docs:
        assert errors(doc) == []


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        pytest.param(
            workflow({"hello": {"email": "hello", "nxt": "end"}, "end": END}),
            "unknown key for a email step",
            id="unknown-step-key",
        ),
        pytest.param(
            workflow({"hello": {"email": "hello", "goto": "end"}, "end": END}),
            "a step has exactly one action key",
            id="two-action-keys",
        ),
        pytest.param(
            workflow({"hello": {"sms": "hello"}}),
            "sms steps are not supported",
            id="later-action",
        ),
        pytest.param(
            workflow({"pause": {"wait": "3 days", "next": "end"}, "end": END}),
            "is not a duration",
            id="bad-duration",
        ),
        pytest.param(
            workflow({"pause": {"wait": "0d", "next": "end"}, "end": END}),
            "must be longer than zero",
            id="zero-duration",
        ),
        pytest.param(
            workflow({"pause": {"wait": "-1d", "next": "end"}, "end": END}),
            "must not be negative",
            id="negative-duration",
        ),
        pytest.param(
            branch_on({"field": "contact.age", "greater": 50}),
            "unknown operator 'greater'",
            id="unknown-operator",
        ),
        pytest.param(
            branch_on({"field": "contact.age", "gte": 50, "lte": 64}),
            "exactly one operator",
            id="two-operators",
        ),
        pytest.param(
            branch_on({"field": "age", "gte": 50}),
            "field must be contact.NAME",
            id="bad-field-reference",
        ),
        pytest.param(
            branch_on({"all": [{"in_list": "leads"}], "any": [{"in_list": "leads"}]}),
            "must be the only key",
            id="two-combinators",
        ),
        pytest.param(
            branch_on({"field": "contact.age", "between": [1, 2, 3]}),
            "between takes [low, high]",
            id="between-three",
        ),
        pytest.param(
            branch_on({"event": "email.opened", "count_gte": 1, "within": "30d"}),
            "event-history conditions belong in segments",
            id="event-history",
        ),
        pytest.param(
            {"template": "hello", "subject": "Two\nlines", "html": "<p>Hi</p>"},
            "subject must be a single line",
            id="template-two-line-subject",
        ),
        pytest.param(
            {"template": "Hello World", "subject": "Hi", "html": "<p>Hi</p>"},
            "a name uses lower-case letters",
            id="bad-name",
        ),
        pytest.param(
            workflow({"end": END}, trigger={"event": "Form Submitted"}),
            "an event type is lower-case text",
            id="bad-event-type",
        ),
        pytest.param(
            workflow({"end": END}, trigger={"date": "contact.sex"}),
            "date names a date field",
            id="date-trigger-on-text",
        ),
        pytest.param(
            workflow({"end": END}, trigger={"date": "contact.birth_date", "every": "month"}),
            "every takes year",
            id="date-trigger-monthly",
        ),
        pytest.param(
            workflow({"end": END}, trigger={"schedule": "daily", "audience": {"in_list": "leads"}}),
            "schedule is a moment",
            id="schedule-not-a-moment",
        ),
        pytest.param(
            workflow({"end": END}, trigger={"schedule": "2026-12-01T09:00:00Z"}),
            "names its audience",
            id="schedule-without-audience",
        ),
        pytest.param(
            workflow({"end": END}, reentry="sometimes"),
            "reentry is never, always",
            id="bad-reentry",
        ),
        pytest.param(
            workflow({"end": {"exit": "done"}}),
            "exit takes one of",
            id="bad-exit-status",
        ),
        pytest.param(
            workflow(
                {
                    "a": {"split": [{"weight": 0, "goto": "end"}, {"weight": 1, "goto": "end"}]},
                    "end": END,
                }
            ),
            "weight must be a positive whole number",
            id="zero-weight",
        ),
        pytest.param(
            workflow({"a": {"update": {"set": {"age": 40}}, "next": "end"}, "end": END}),
            "'age' cannot be set by a workflow",
            id="read-only-field",
        ),
        pytest.param(
            workflow({"a": {"wait": {"until": "contact.email"}, "next": "end"}, "end": END}),
            "contact.email is not a date field",
            id="until-not-a-date",
        ),
        pytest.param(
            {"segment": "s", "condition": {"field": "event.data.x", "eq": 1}},
            "event.* cannot be used here",
            id="segment-event-field",
        ),
        pytest.param(
            {"fields": {"email": "string"}},
            "'email' is a core field",
            id="redeclared-core-field",
        ),
        pytest.param(
            {"fields": {"bmi": {"type": "float"}}},
            "type must be one of",
            id="unknown-field-type",
        ),
        pytest.param(
            {"template": "hello", "subject": "Hi", "html": "<p>Hi</p>", "fields": {}},
            "unknown key",
            id="template-with-a-second-kind-key",
        ),
        pytest.param(
            {"title": "no kind"},
            "unknown kind 'title'",
            id="no-kind",
        ),
    ],
)
def test_documents_the_parser_refuses_are_refused_by_the_schema(
    doc: dict[str, object], problem: str
) -> None:
    assert any(problem in finding for finding in findings(doc, *CONTEXT)), findings(doc)
    assert errors(doc) != []


def test_forms_and_sources_are_checked_by_the_schema_and_the_parser_alike() -> None:
    form = {
        "form": "intake",
        "fields": [
            {"name": "email", "label": "Email", "type": "email", "required": True,
             "contact": "email"},
        ],
        "score": [{"when": {"field": "event.data.answers.email", "exists": True}, "points": 1}],
    }  # fmt: skip
    assert errors(form) == []
    assert findings(form) == []
    bad = {"form": "intake", "fields": [{"name": "email"}]}
    assert errors(bad) != []
    assert findings(bad) != []
    source = {
        "source": "lab",
        "secret_env": "LAB_SECRET",
        "events": [{"type": "lab.ready", "contact": {"external_id": "payload.mrn"}}],
    }
    assert errors(source) == []
    assert findings(source) == []
    assert errors({**source, "secret_env": "lower"}) != []


# ------------------------------------------------------------- kept in step


def test_every_operator_is_in_the_schema() -> None:
    defs = document_schema()["$defs"]

    for name in ("conditionFieldTest", "contactConditionFieldTest"):
        assert set(defs[name]["properties"]) == {"field", *(op.value for op in Op)}


def test_every_action_key_is_a_step_with_the_keys_the_parser_allows() -> None:
    defs = document_schema()["$defs"]
    variants = [defs[ref["$ref"].removeprefix("#/$defs/")] for ref in defs["step"]["oneOf"]]

    allowed = {
        variant["required"][0]: set(variant["properties"]) - set(variant["required"])
        for variant in variants
    }

    assert list(allowed) == list(ACTION_KEYS)
    assert allowed == _ALLOWED_STEP_KEYS
    assert all(variant["additionalProperties"] is False for variant in variants)


def test_kinds_and_enumerations_match_the_domain() -> None:
    defs = document_schema()["$defs"]
    properties = defs["workflowDocument"]["properties"]

    assert tuple(Kind) == SCHEMA_KINDS
    assert [ref["$ref"] for ref in document_schema()["oneOf"]] == [
        f"#/$defs/{kind}Document" for kind in SCHEMA_KINDS
    ]
    assert properties["purpose"]["enum"] == list(Purpose)
    assert defs["exitStep"]["properties"]["exit"]["enum"] == list(EndStatus)
