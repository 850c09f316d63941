"""Layouts and partials: templates that extend and include others by name."""

from __future__ import annotations

from pathlib import Path

from carepath.services.catalog_store import check_documents
from carepath.services.documents import load_paths
from tests.integration.harness import Harness

SHARED = """
template: clinic-layout
html: |
  <html><body><header>Riverside Clinic</header>
  {% block content %}{% endblock %}
  {% include "clinic-footer" %}</body></html>
---
template: clinic-footer
html: "<footer>Questions? Call us. {{ contact.first_name }}, you can unsubscribe any time.</footer>"
---
template: welcome
subject: Welcome
html: |
  {% extends "clinic-layout" %}
  {% block content %}<p>Hello {{ contact.first_name }}</p>{% endblock %}
---
workflow: w
trigger: manual
reentry: always
steps:
  hello: {email: welcome}
"""


def test_a_template_extends_a_layout_that_includes_a_partial(journey: Harness) -> None:
    journey.apply(SHARED)
    ann = journey.contact(first_name="Ann")
    journey.enroll("w", ann)
    journey.work()
    (row,) = journey.outbox(ann)
    assert "<header>Riverside Clinic</header>" in row.html
    assert "<p>Hello Ann</p>" in row.html
    assert "<footer>Questions? Call us. Ann, you can unsubscribe" in row.html
    assert "Riverside Clinic" in row.text


def test_a_changed_layout_is_used_by_the_next_message(journey: Harness) -> None:
    journey.apply(SHARED)
    ann = journey.contact(first_name="Ann")
    journey.enroll("w", ann)
    journey.work()
    journey.apply(SHARED.replace("Riverside Clinic", "Riverside Health"))
    journey.enroll("w", ann)
    journey.work()
    first, second = journey.outbox(ann)
    assert "Riverside Clinic" in first.html
    assert "Riverside Health" in second.html


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    docs, problems = load_paths([path])
    assert not problems
    return [str(p) for p in check_documents(None, docs)]


def test_layouts_are_not_sent_and_references_are_checked(tmp_path: Path) -> None:
    found = _problems(
        tmp_path,
        """
template: a
html: '{% extends "b" %}'
---
template: b
html: '{% include "a" %}{% include "missing" %}'
---
template: c
subject: 'Hi {% include "a" %}'
html: '{% include name_from_data %}'
---
workflow: w
trigger: manual
steps:
  s: {email: a}
""",
    )
    assert any("unknown template 'missing' in extends or include" in p for p in found)
    assert any("extends and include go round in a cycle" in p for p in found)
    assert any("the subject may not extend or include other templates" in p for p in found)
    assert any("must name a template, not compute one" in p for p in found)
    assert any("template 'a' has no subject: a layout or partial is not sent" in p for p in found)
