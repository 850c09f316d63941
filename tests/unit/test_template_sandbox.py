"""Templates: the known ways out of the Jinja sandbox are closed; validation names what is wrong."""

from __future__ import annotations

import itertools

import pytest

from carepath.channels.templates import RenderError, TemplateRenderer
from carepath.domain.resources import Template

CONTEXT = {
    "contact": {"first_name": "Ann", "bmi": 41},
    "trigger": {"type": "form.submitted", "data": {"score": 44}},
    "event": {},
    "workflow": {"name": "w", "title": "W"},
}
_versions = itertools.count(1)

ESCAPES = [
    "{{ contact.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ contact|attr('__class__') }}",
    "{{ '%s'|format(contact) }}",
    "{{ '{0.__class__}'.format(contact) }}",
    "{{ '{0.__init__.__globals__}'.format(contact) }}",
    "{{ '{x.__class__}'.format_map({'x': contact}) }}",
    "{{ range(3) }}",
    "{{ lipsum.__globals__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ contact.update({'first_name': 'Eve'}) }}",
    "{{ contact.items.__self__.__class__ }}",
    "{{ trigger.data.__class__.__base__ }}",
]


def _render(html: str) -> str:
    template = Template(name="t", subject="Hello", html=html, text=None)
    return TemplateRenderer().render(template, next(_versions), CONTEXT).html


@pytest.mark.parametrize("payload", ESCAPES)
def test_known_sandbox_escapes_fail_with_a_clear_error(payload: str) -> None:
    with pytest.raises(RenderError) as caught:
        _render(payload)
    message = str(caught.value)
    assert message.startswith("template t: ")
    assert "Ann" not in message
    assert "41" not in message


@pytest.mark.parametrize("payload", ESCAPES)
def test_validation_catches_what_it_can_see_of_them(payload: str) -> None:
    """Filters outside the allow-list and unknown names are refused before anything runs."""
    template = Template(name="t", subject="Hello", html=payload, text=None)
    problems = TemplateRenderer().check(template)
    if "attr(" in payload or "|format(" in payload:
        assert any("filter not allowed" in p for _, p in problems)
    if any(name in payload for name in ("range(", "lipsum", "cycler")):
        assert any("unknown variable" in p for _, p in problems)


def test_ordinary_templates_render() -> None:
    html = "<p>Hello {{ contact.first_name|title }}, score {{ trigger.data.score|default(0) }}</p>"
    assert _render(html) == "<p>Hello Ann, score 44</p>"
    assert _render("{{ '<b>' }}") == "&lt;b&gt;"  # autoescaped


@pytest.mark.parametrize(
    ("subject", "html", "expected"),
    [
        ("Hi {{ contact.first_name }}", "<p>x</p>", ("subject", "contact data may not appear")),
        ("Result {{ event.data.test }}", "<p>x</p>", ("subject", "event data may not appear")),
        (
            "Hi",
            '<a href="https://x.example/p?id={{ contact.external_id }}">go</a>',
            ("html", "may not appear in a URL"),
        ),
        ("Hi", "<img src='https://x.example/{{ trigger.data.lab }}.png'>", ("html", "in a URL")),
        ("Hi", "{{ patient.name }}", ("html", "unknown variable patient")),
        ("Hi", "{{ contact.first_name|pprint }}", ("html", "filter not allowed: pprint")),
        ("Hi {{ ", "<p>x</p>", ("subject", "template syntax error")),
    ],
)
def test_check_names_the_part_and_the_problem(
    subject: str, html: str, expected: tuple[str, str]
) -> None:
    problems = TemplateRenderer().check(Template("t", subject, html, None))
    part, fragment = expected
    assert any(p == part and fragment in message for p, message in problems), problems


def test_a_clean_template_has_no_problems() -> None:
    template = Template(
        "t",
        "Your visit with {{ workflow.title }}",
        '<p>Hello {{ contact.first_name }}</p><a href="https://x.example/visit">Map</a>',
        "Hello {{ contact.first_name }}",
    )
    assert TemplateRenderer().check(template) == []


def test_style_blocks_are_inlined_without_fetching_remote_stylesheets() -> None:
    html = (
        '<html><head><link rel="stylesheet" href="https://elsewhere.example/x.css">'
        "<style>p { color: #333 } @media (max-width: 600px) { p { color: #000 } }</style>"
        "</head><body><p>Hello {{ contact.first_name }}</p></body></html>"
    )
    body = _render(html)
    assert '<p style="color: #333;">Hello Ann</p>' in body
    assert "@media (max-width: 600px)" in body  # kept for the clients that honour it
    assert _render("<p>plain</p>") == "<p>plain</p>"  # no <style>: left as written
