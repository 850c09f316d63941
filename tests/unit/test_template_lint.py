"""Minimum necessary: validation warns about PHI a template shows outside its allow-list."""

from __future__ import annotations

from carepath.services.catalog_store import check_and_lint_documents
from carepath.services.documents import load_text

FIELDS = """
fields:
  bmi: {type: number, class: phi}
  member_code: {type: string, class: identifier}
  plan: {type: string, class: public}
---
"""


def lint(text: str) -> tuple[list[str], list[str]]:
    docs, problems = load_text(FIELDS + text, "t.yaml")
    assert not problems, problems
    found, warnings = check_and_lint_documents(None, docs)
    return [str(p) for p in found], [str(w) for w in warnings]


def test_phi_outside_the_allow_list_is_named_and_public_fields_never_are() -> None:
    problems, warnings = lint("""
template: result
subject: Your results
phi: [first_name]
html: "{{ contact.first_name }} {{ contact.bmi }} {{ contact.member_code }} {{ contact.plan }}"
""")
    assert problems == []
    assert warnings == [
        "t.yaml:10: warning: shows PHI outside its allow-list (phi): bmi, member_code"
    ]


def test_a_template_without_an_allow_list_is_warned_about_every_phi_field() -> None:
    _, warnings = lint('template: hi\nsubject: Hi\nhtml: "{{ contact.first_name }}"\n')
    assert warnings == ["t.yaml:9: warning: shows PHI outside its allow-list (phi): first_name"]
    _, none = lint('template: hi\nsubject: Hi\nhtml: "{{ contact.plan }} {{ workflow.title }}"\n')
    assert none == []


def test_layouts_and_partials_count_for_the_templates_that_use_them() -> None:
    _, warnings = lint("""
template: layout
html: "{% block content %}{% endblock %}{% include 'footer' %}"
---
template: footer
html: "<footer>{{ contact.last_name }}</footer>"
---
template: welcome
subject: Welcome
phi: [first_name]
html: "{% extends 'layout' %}{% block content %}{{ contact.first_name }}{% endblock %}"
""")
    assert warnings == ["t.yaml:16: warning: shows PHI outside its allow-list (phi): last_name"]


def test_reading_contact_as_a_whole_cannot_be_checked_and_says_so() -> None:
    _, warnings = lint("""
template: dump
subject: Everything
phi: [first_name]
html: "{{ contact }}"
""")
    assert warnings == [
        "t.yaml:10: warning: reads contact as a whole: its PHI allow-list (phi) cannot be checked"
    ]


def test_an_allow_list_naming_an_unknown_field_is_an_error() -> None:
    problems, warnings = lint('template: hi\nsubject: Hi\nphi: [shoe_size]\nhtml: "Hi"\n')
    assert problems == ["t.yaml:9: unknown contact field 'shoe_size'"]
    assert warnings == []
    problems, _ = lint('template: hi\nsubject: Hi\nphi: first_name\nhtml: "Hi"\n')
    assert problems == ["t.yaml:9: phi must be a list of contact field names"]
