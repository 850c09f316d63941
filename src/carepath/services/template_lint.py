"""Minimum necessary in templates: warnings for PHI a template shows without declaring it.

A template lists in `phi` the PHI and identifier contact fields it may show.
Validation warns (it does not refuse) when a template that is sent reads one
outside that list, through its own text or the layouts and partials it uses,
or reads `contact` as a whole so that the list cannot be checked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from carepath.channels.templates import contact_fields_in_source, referenced_templates
from carepath.domain.catalog import Catalog
from carepath.domain.fields import FieldClass
from carepath.domain.resources import Kind, Template
from carepath.errors import Problem
from carepath.services.documents import SourceDocument

PROTECTED = (FieldClass.PHI, FieldClass.IDENTIFIER)


def unknown_allowed_fields(catalog: Catalog, template: Template) -> list[str]:
    """Names in a template's `phi` list that are not contact fields."""
    return sorted((template.phi or frozenset()) - set(catalog.schema.names()))


def templates_in(
    catalog: Catalog, docs: Sequence[SourceDocument]
) -> Iterator[tuple[SourceDocument, Template]]:
    """The templates `docs` define, each with the document it comes from."""
    for source in docs:
        raw = source.document.raw
        if next(iter(raw), None) != Kind.TEMPLATE.value:
            continue
        template = catalog.templates.get(str(raw[Kind.TEMPLATE.value]))
        if template is not None:
            yield source, template


def phi_warnings(catalog: Catalog, docs: Sequence[SourceDocument]) -> list[Problem]:
    """A warning per sent template in `docs` that shows PHI outside its allow-list."""
    warnings = []
    for source, template in templates_in(catalog, docs):
        if template.subject is None:
            continue  # layouts and partials are checked through the templates using them
        read = _fields_read(catalog, template)
        where = source.locate(("phi",) if template.phi is not None else ("html",))
        if read is None:
            message = "reads contact as a whole: its PHI allow-list (phi) cannot be checked"
            warnings.append(Problem(where, f"warning: {message}"))
            continue
        protected = {f for f in read if (spec := catalog.schema.get(f)) and spec.klass in PROTECTED}
        outside = sorted(protected - (template.phi or frozenset()))
        if outside:
            message = f"shows PHI outside its allow-list (phi): {', '.join(outside)}"
            warnings.append(Problem(where, f"warning: {message}"))
    return warnings


def _fields_read(catalog: Catalog, template: Template) -> set[str] | None:
    """The contact fields a template reads, with those of its layouts and partials."""
    found: set[str] = set()
    pending, seen = [template.name], set()
    while pending:
        name = pending.pop()
        current = catalog.templates.get(name)
        if name in seen or current is None:
            continue
        seen.add(name)
        read = contact_fields_in_source(current)
        if read is None:
            return None
        found |= read
        pending.extend(referenced_templates(current))
    return found
