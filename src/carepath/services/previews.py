"""Rendering one template for one contact without sending it."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from carepath.channels.templates import RenderedEmail, TemplateRenderer, template_context
from carepath.domain.access import Principal
from carepath.domain.conditions import Facts
from carepath.errors import NotFound
from carepath.services.access import authorize
from carepath.services.catalog_store import build_current
from carepath.services.contacts import find_contact, load_facts


def preview(
    conn: sa.Connection,
    template_name: str,
    contact_reference: str,
    *,
    now: datetime,
    who: Principal,
) -> RenderedEmail:
    """The message `template_name` would give this contact now (no trigger or event)."""
    current = build_current(conn)
    template = current.catalog.templates.get(template_name)
    if template is None:
        raise NotFound(f"no template named {template_name}")
    contact_id = find_contact(conn, contact_reference)
    authorize(conn, who, "contacts:read", now=now, contact_ids=[contact_id])
    facts = load_facts(conn, [contact_id], current.catalog.schema)[contact_id]
    context = template_context(Facts(contact=facts, now=now), "preview", "Preview")
    renderer = TemplateRenderer()
    renderer.use_library(current.template_library())
    return renderer.render(template, current.template_version(template_name), context)
