"""Which contact fields a workflow reads: identifiers are loaded only when something uses them."""

from __future__ import annotations

from carepath.channels.templates import contact_fields
from carepath.domain.catalog import Document, build_catalog
from carepath.domain.resources import Template
from carepath.services.facts import contact_fields_used


def template(html: str, subject: str = "Hello") -> Template:
    return Template("t", subject, html, None)


def test_template_fields_are_the_contact_attributes_it_reads() -> None:
    assert contact_fields(
        template("<p>{{ contact.first_name }} {{ contact['last_name'] }}</p>")
    ) == {
        "first_name",
        "last_name",
    }
    assert contact_fields(template("<p>{{ event.data.starts_at }}</p>")) == set()


def test_template_using_contact_as_a_whole_needs_every_field() -> None:
    assert contact_fields(template("<p>{{ contact }}</p>")) is None
    assert contact_fields(template("{% for k in contact %}{{ k }}{% endfor %}")) is None


def test_workflow_fields_cover_conditions_waits_and_templates() -> None:
    docs = [
        {"fields": {"seen_on": {"type": "date"}}},
        {"template": "hi", "subject": "Hi", "html": "<p>{{ contact.first_name }}</p>"},
        {
            "workflow": "w",
            "trigger": {"event": "x.y", "when": {"field": "contact.sex", "eq": "F"}},
            "steps": {
                "a": {
                    "branch": [{"when": {"field": "contact.age", "gte": 50}, "goto": "b"}],
                    "otherwise": "b",
                },
                "b": {"wait": {"until": "contact.seen_on"}, "next": "c"},
                "c": {"email": "hi"},
            },
        },
    ]
    result = build_catalog([Document(str(i), d) for i, d in enumerate(docs)])
    assert result.findings == []
    used = contact_fields_used(result.catalog.workflows["w"], result.catalog.templates)
    assert used == {"time_zone", "birth_date", "sex", "seen_on", "first_name"}
    assert "email" not in used
