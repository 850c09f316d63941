"""Rendering templates in Jinja2's immutable sandbox, strict about undefined names."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from carepath.domain.resources import Template


class RenderError(Exception):
    """A template could not be rendered; the message names no contact data."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def _environment(*, autoescape: bool) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        autoescape=autoescape, undefined=StrictUndefined, keep_trailing_newline=True
    )


_TAGS = re.compile(r"<[^>]+>")
_BREAKS = re.compile(r"<\s*(br|/p|/div|/h[1-6]|/li|/tr)\s*/?>", re.IGNORECASE)
_BLANKS = re.compile(r"\n{3,}")


def html_to_text(markup: str) -> str:
    """A readable plain-text alternative for an HTML body."""
    text = _BREAKS.sub("\n", markup)
    text = _TAGS.sub("", text)
    text = html_lib.unescape(text)
    lines = [line.strip() for line in text.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip() + "\n"


def contact_fields(template: Template) -> set[str] | None:
    """The contact fields a template reads, or None when it uses `contact` as a whole."""
    env = _environment(autoescape=False)
    found: set[str] = set()
    for source in (template.subject, template.html, template.text):
        if source is None:
            continue
        try:
            tree = env.parse(source)
        except TemplateError:
            return None
        names = sum(1 for n in tree.find_all(nodes.Name) if n.name == "contact")
        reads = 0
        for node in tree.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name == "contact":
                found.add(node.attr)
                reads += 1
        for item in tree.find_all(nodes.Getitem):
            if isinstance(item.node, nodes.Name) and item.node.name == "contact":
                if not isinstance(item.arg, nodes.Const) or not isinstance(item.arg.value, str):
                    return None
                found.add(item.arg.value)
                reads += 1
        if reads != names:
            return None
    return found


class TemplateRenderer:
    """Compiles each template version once and renders it for many contacts."""

    def __init__(self) -> None:
        self._html_env = _environment(autoescape=True)
        self._text_env = _environment(autoescape=False)
        self._compiled: dict[
            tuple[str, int], tuple[JinjaTemplate, JinjaTemplate, JinjaTemplate | None]
        ] = {}

    def check(self, template: Template) -> list[str]:
        """Syntax problems in a template, without rendering it."""
        problems = []
        for part, source in (
            ("subject", template.subject),
            ("html", template.html),
            ("text", template.text),
        ):
            if source is None:
                continue
            try:
                self._html_env.parse(source)
            except TemplateError as exc:
                problems.append(f"{part}: template syntax error: {exc.message}")
        return problems

    def render(
        self, template: Template, version: int, context: Mapping[str, object]
    ) -> RenderedEmail:
        key = (template.name, version)
        if key not in self._compiled:
            try:
                self._compiled[key] = (
                    self._text_env.from_string(template.subject),
                    self._html_env.from_string(template.html),
                    self._text_env.from_string(template.text) if template.text else None,
                )
            except TemplateError as exc:
                raise RenderError(
                    f"template {template.name}: syntax error: {exc.message}"
                ) from None
        subject_t, html_t, text_t = self._compiled[key]
        try:
            subject = " ".join(subject_t.render(context).split())
            body = html_t.render(context)
            text = text_t.render(context) if text_t else html_to_text(body)
        except SecurityError:
            raise RenderError(f"template {template.name}: refused by the sandbox") from None
        except TemplateError as exc:
            # Jinja's messages name variables and attributes, never their values.
            raise RenderError(f"template {template.name}: {exc.message}") from None
        return RenderedEmail(subject, body, text)
