"""Rendering templates in Jinja2's immutable sandbox, strict about undefined names."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import css_inline
from jinja2 import BaseLoader, FunctionLoader, StrictUndefined, TemplateError, meta, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from carepath.domain.conditions import EventFacts, Facts
from carepath.domain.resources import Template


class RenderError(Exception):
    """A template could not be rendered; the message names no contact data."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


# Filters a template may use. Left out on purpose: `attr` and `format`, the
# classic ways around the sandbox, and those that reach into objects by name
# (`map`, `select`, `groupby`… with attributes), print internals (`pprint`) or
# produce markup from data (`xmlattr`, `urlize`, `safe`).
ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "center", "default", "d", "escape", "e", "filesizeformat",
        "first", "float", "indent", "int", "join", "last", "length", "count", "list",
        "lower", "max", "min", "replace", "reverse", "round", "sort", "string",
        "striptags", "sum", "title", "trim", "truncate", "unique", "upper", "urlencode",
        "wordcount", "wordwrap",
    }
)  # fmt: skip
# What a template can name: the contact, the event that started the run, the
# event that woke it, and the workflow.
TEMPLATE_VARIABLES = frozenset({"contact", "trigger", "event", "workflow"})


PERSONAL_VARIABLES = frozenset({"contact", "trigger", "event"})
# An href, src or action whose value has an expression reading personal data.
_URL_WITH_DATA = re.compile(
    r"""\b(?:href|src|action)\s*=\s*["']?[^"'>]*\{\{[^}]*\b(?:contact|trigger|event)\b""",
    re.IGNORECASE,
)


def _environment(
    *, autoescape: bool, loader: BaseLoader | None = None
) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        loader=loader,
        auto_reload=True,
    )
    env.filters = {k: v for k, v in env.filters.items() if k in ALLOWED_FILTERS}
    env.globals.clear()  # no range(), dict(), lipsum(), cycler(), namespace()…
    return env


_TAGS = re.compile(r"<[^>]+>")
_BREAKS = re.compile(r"<\s*(br|/p|/div|/h[1-6]|/li|/tr)\s*/?>", re.IGNORECASE)
_BLANKS = re.compile(r"\n{3,}")


# Mail clients drop <style> blocks; rules move into style attributes. Remote
# stylesheets are never fetched (no request leaves for a message being built);
# media queries stay in a <style> block for the clients that honour them.
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)


def _inline_css(html: str) -> str:
    if "<style" not in html.lower():
        return html  # most bodies: nothing to do, no parse
    try:
        return str(_INLINER.inline(html))
    except ValueError:  # CSS it cannot read: send the body as written
        return html


def _reference_problems(
    part: str, tree: nodes.Template, known: Collection[str]
) -> list[tuple[str, str]]:
    """`extends` and `include` must name, literally, a template that exists; not in subjects."""
    referenced = list(meta.find_referenced_templates(tree))
    if not referenced:
        return []
    if part == "subject":
        return [(part, "the subject may not extend or include other templates")]
    if None in referenced:
        return [(part, "extends and include must name a template, not compute one")]
    unknown = sorted({str(r) for r in referenced} - set(known))
    return [(part, f"unknown template {name!r} in extends or include") for name in unknown]


def referenced_templates(template: Template) -> set[str]:
    """The templates a template extends or includes, by name (for cycle checks)."""
    env = _environment(autoescape=False)
    found: set[str] = set()
    for source in (template.html, template.text):
        if source is None:
            continue
        try:
            tree = env.parse(source)
        except TemplateError:
            continue
        found |= {str(r) for r in meta.find_referenced_templates(tree) if r is not None}
    return found


def _event_context(event: EventFacts | None) -> dict[str, object]:
    if event is None:
        return {}
    return {"type": event.type, "occurred_at": event.occurred_at, "data": dict(event.data)}


def template_context(facts: Facts, workflow: str, title: str) -> dict[str, object]:
    """What a template sees: the contact, the run's trigger and waking events, the workflow."""
    return {
        "contact": dict(facts.contact),
        "trigger": _event_context(facts.trigger),
        "event": _event_context(facts.event),
        "workflow": {"name": workflow, "title": title},
    }


def html_to_text(markup: str) -> str:
    """A readable plain-text alternative for an HTML body."""
    text = _BREAKS.sub("\n", markup)
    text = _TAGS.sub("", text)
    text = html_lib.unescape(text)
    lines = [line.strip() for line in text.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip() + "\n"


def contact_fields(template: Template) -> set[str] | None:
    """The contact fields a template reads, or None when it uses `contact` as a whole."""
    return _contact_fields(template, allow_references=False)


def contact_fields_in_source(template: Template) -> set[str] | None:
    """The contact fields a template's own text reads (not its layouts' or partials'),
    or None when it uses `contact` as a whole."""
    return _contact_fields(template, allow_references=True)


def _contact_fields(template: Template, *, allow_references: bool) -> set[str] | None:
    env = _environment(autoescape=False)
    found: set[str] = set()
    for source in (template.subject, template.html, template.text):
        if source is None:
            continue
        try:
            tree = env.parse(source)
        except TemplateError:
            return None
        if not allow_references and any(True for _ in meta.find_referenced_templates(tree)):
            return None  # a layout or partial reads fields too: load them all
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
    """Compiles each template version once and renders it for many contacts.

    Templates may `{% extends %}` a layout or `{% include %}` a partial: other
    templates of the catalog, by name, given with `use_library`. A layout or
    partial that changes is compiled again (Jinja asks the loader whether
    what it cached is still up to date).
    """

    def __init__(self) -> None:
        self._library: dict[str, tuple[int, str]] = {}  # name -> (version, html)
        loader = FunctionLoader(self._load)
        self._html_env = _environment(autoescape=True, loader=loader)
        self._text_env = _environment(autoescape=False, loader=loader)
        self._introspection_env = ImmutableSandboxedEnvironment(autoescape=True)
        self._introspection_env.globals.clear()  # a global is an unknown variable here
        self._compiled: dict[
            tuple[str, int], tuple[JinjaTemplate, JinjaTemplate, JinjaTemplate | None]
        ] = {}

    def use_library(self, templates: Mapping[str, tuple[int, Template]]) -> None:
        """The templates `extends` and `include` may name: name -> (version, template)."""
        self._library = {name: (v, t.html) for name, (v, t) in templates.items()}

    def _load(self, name: str) -> tuple[str, str, Callable[[], bool]] | None:
        found = self._library.get(name)
        if found is None:
            return None  # Jinja raises TemplateNotFound, reported as a render error
        version, source = found
        return source, name, lambda: self._library.get(name, (None, ""))[0] == version

    def check(self, template: Template, known: Collection[str] = ()) -> list[tuple[str, str]]:
        """(part, problem) found without rendering.

        Syntax, unknown variables, filters not allowed, and PHI where it would
        leave the message body: contact, trigger or event data in the subject
        (shown in inbox lists and notifications, kept in mail logs), or in a
        link or image URL (kept in browser histories, proxies and server logs).
        """
        problems: list[tuple[str, str]] = []
        for part, source in (
            ("subject", template.subject),
            ("html", template.html),
            ("text", template.text),
        ):
            if source is None:
                continue
            try:
                # Parsed with every built-in filter known, so that one outside the
                # allow-list is named as such rather than as a syntax error.
                tree = self._introspection_env.parse(source)
                names = meta.find_undeclared_variables(tree)
            except TemplateError as exc:
                problems.append((part, f"template syntax error: {exc.message}"))
                continue
            unknown = sorted(names - TEMPLATE_VARIABLES)
            if unknown:
                listed = ", ".join(unknown)
                problems.append(
                    (part, f"unknown variable {listed} (use contact, trigger, event or workflow)")
                )
            problems += _reference_problems(part, tree, known)
            refused = sorted({f.name for f in tree.find_all(nodes.Filter)} - ALLOWED_FILTERS)
            if refused:
                problems.append((part, f"filter not allowed: {', '.join(refused)}"))
            personal = sorted(names & PERSONAL_VARIABLES)
            if part == "subject" and personal:
                problems.append(
                    (part, f"{', '.join(personal)} data may not appear in the subject (PHI)")
                )
            if part != "subject" and _URL_WITH_DATA.search(source):
                problems.append(
                    (part, "contact, trigger or event data may not appear in a URL (PHI)")
                )
        return problems

    def render(
        self, template: Template, version: int, context: Mapping[str, object]
    ) -> RenderedEmail:
        key = (template.name, version)
        if key not in self._compiled:
            try:
                if template.subject is None:
                    raise RenderError(f"template {template.name} has no subject")
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
            body = _inline_css(html_t.render(context))
            text = text_t.render(context) if text_t else html_to_text(body)
        except SecurityError:
            raise RenderError(f"template {template.name}: refused by the sandbox") from None
        except TemplateError as exc:
            # Jinja's messages name variables and attributes, never their values.
            raise RenderError(f"template {template.name}: {exc.message}") from None
        return RenderedEmail(subject, body, text)
