"""Validate a set of documents together: each on its own, then across documents."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from carepath.domain.conditions import Condition, referenced_memberships
from carepath.domain.fields import ContactSchema, FieldSpec, parse_fields_document
from carepath.domain.forms import FormDef, parse_form
from carepath.domain.graph import check_workflow_graph, enroll_cycles
from carepath.domain.problems import DocProblem, Problems
from carepath.domain.resources import (
    Kind,
    ListDef,
    SegmentDef,
    Template,
    document_kind,
    parse_list,
    parse_segment,
    parse_template,
)
from carepath.domain.sources import SourceDef, parse_source
from carepath.domain.workflow import (
    BranchStep,
    DateTrigger,
    EmailStep,
    EnrollStep,
    EventTrigger,
    ListStep,
    ScheduleTrigger,
    WaitForStep,
    Workflow,
)
from carepath.domain.workflow_parser import WorkflowDraft, parse_workflow_draft


@dataclass
class Catalog:
    """Everything known by name: stored resources overlaid with the documents at hand."""

    custom_fields: dict[str, FieldSpec] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    templates: dict[str, Template] = field(default_factory=dict)
    lists: dict[str, ListDef] = field(default_factory=dict)
    segments: dict[str, SegmentDef] = field(default_factory=dict)
    sources: dict[str, SourceDef] = field(default_factory=dict)
    forms: dict[str, FormDef] = field(default_factory=dict)

    @property
    def schema(self) -> ContactSchema:
        return ContactSchema(self.custom_fields)


@dataclass(frozen=True)
class Document:
    """One raw document and where it came from (`source` is for messages only)."""

    source: str
    raw: Mapping[str, object]


@dataclass(frozen=True)
class ParsedDocument:
    document: Document
    kind: Kind
    name: str


@dataclass(frozen=True)
class Finding:
    document: Document | None
    problem: DocProblem


@dataclass
class CatalogResult:
    catalog: Catalog
    parsed: list[ParsedDocument]
    findings: list[Finding]


def build_catalog(documents: Sequence[Document], existing: Catalog | None = None) -> CatalogResult:
    """Parse every document over `existing`; collect all problems, in document order."""
    catalog = _copy_catalog(existing or Catalog())
    findings: list[Finding] = []
    kinds = _identify_documents(documents, findings)
    # Fields first: every other document is checked against the contact schema.
    parsed = _parse_fields_documents(catalog, kinds, findings)
    drafts: dict[str, WorkflowDraft] = {}
    parsed += _parse_other_documents(catalog, drafts, kinds, findings)
    _check_workflows(catalog, drafts, kinds, findings)
    return CatalogResult(catalog, parsed, findings)


def _copy_catalog(base: Catalog) -> Catalog:
    return Catalog(
        dict(base.custom_fields),
        dict(base.workflows),
        dict(base.templates),
        dict(base.lists),
        dict(base.segments),
    )


def _record(findings: list[Finding], doc: Document, problems: Problems) -> None:
    findings.extend(Finding(doc, p) for p in problems.items)


def _identify_documents(
    documents: Sequence[Document], findings: list[Finding]
) -> list[tuple[Document, Kind, str]]:
    """Each document's kind and name; a name defined twice is reported and skipped."""
    seen: dict[tuple[Kind, str], Document] = {}
    kinds: list[tuple[Document, Kind, str]] = []
    for doc in documents:
        problems = Problems()
        found = document_kind(doc.raw, problems)
        _record(findings, doc, problems)
        if found is None:
            continue
        kind, name = found
        if (kind, name) in seen and kind is not Kind.FIELDS:
            other = seen[(kind, name)].source
            findings.append(
                Finding(
                    doc, DocProblem((kind.value,), f"{kind} {name!r} is also defined in {other}")
                )
            )
            continue
        seen[(kind, name)] = doc
        kinds.append((doc, kind, name))
    return kinds


def _parse_fields_documents(
    catalog: Catalog, kinds: Sequence[tuple[Document, Kind, str]], findings: list[Finding]
) -> list[ParsedDocument]:
    """Replace the catalog's custom fields with those the fields documents declare."""
    fields_docs = [(d, n) for d, k, n in kinds if k is Kind.FIELDS]
    if fields_docs:
        catalog.custom_fields = {}
    parsed: list[ParsedDocument] = []
    for doc, name in fields_docs:
        problems = Problems()
        specs = parse_fields_document(doc.raw, problems)
        for fname in sorted(set(specs) & set(catalog.custom_fields)):
            problems.add(("fields", fname), f"field {fname!r} is declared twice")
        catalog.custom_fields.update(specs)
        _record(findings, doc, problems)
        parsed.append(ParsedDocument(doc, Kind.FIELDS, name))
    return parsed


def _parse_other_documents(
    catalog: Catalog,
    drafts: dict[str, WorkflowDraft],
    kinds: Sequence[tuple[Document, Kind, str]],
    findings: list[Finding],
) -> list[ParsedDocument]:
    schema = catalog.schema
    parsed: list[ParsedDocument] = []
    for doc, kind, name in kinds:
        if kind is Kind.FIELDS:
            continue
        problems = Problems()
        ok = _parse_into(catalog, drafts, doc, kind, schema=schema, problems=problems)
        _record(findings, doc, problems)
        if ok:
            parsed.append(ParsedDocument(doc, kind, name))
    return parsed


def _check_workflows(
    catalog: Catalog,
    drafts: Mapping[str, WorkflowDraft],
    kinds: Sequence[tuple[Document, Kind, str]],
    findings: list[Finding],
) -> None:
    """Graph and reference checks per workflow, then enroll cycles across workflows."""
    by_workflow = {name: doc for doc, kind, name in kinds if kind is Kind.WORKFLOW}
    every_workflow = {**catalog.workflows, **{n: d.workflow for n, d in drafts.items()}}
    for name, doc in by_workflow.items():
        draft = drafts.get(name)
        if draft is not None:
            problems = Problems()
            check_workflow_graph(draft.workflow, problems, broken=draft.broken_steps)
            check_references(draft.workflow, catalog, problems, workflows=set(every_workflow))
            _record(findings, doc, problems)
    for doc, kind, name in kinds:
        segment = catalog.segments.get(name) if kind is Kind.SEGMENT else None
        if segment is not None:
            problems = Problems()
            check_memberships(segment.condition, ("condition",), catalog, problems)
            loop = segment_cycle(catalog, name)
            if loop:
                problems.add(("condition",), f"segments contain each other: {' -> '.join(loop)}")
            _record(findings, doc, problems)
    for cycle in enroll_cycles(every_workflow.values()):
        names = " -> ".join([*(e.source for e in cycle), cycle[0].source])
        first = cycle[0]
        verb = "enroll" if all(e.via == "enroll" for e in cycle) else "start"
        message = f"workflows {verb} each other with no wait: {names}"
        findings.append(
            Finding(
                by_workflow.get(first.source),
                DocProblem(("steps", first.step, first.via), message),
            )
        )


def _parse_into(
    catalog: Catalog,
    drafts: dict[str, WorkflowDraft],
    doc: Document,
    kind: Kind,
    *,
    schema: ContactSchema,
    problems: Problems,
) -> bool:
    raw = doc.raw
    if kind is Kind.WORKFLOW:
        draft = parse_workflow_draft(raw, schema, problems)
        if draft is not None:
            drafts[draft.workflow.name] = draft
            if draft.complete:
                catalog.workflows[draft.workflow.name] = draft.workflow
        return draft is not None and draft.complete
    if kind not in _NAMED:
        return False
    attribute, parse = _NAMED[kind]
    parsed = parse(raw, schema, problems)
    if parsed is not None:
        getattr(catalog, attribute)[parsed.name] = parsed
    return parsed is not None


# The other kinds: where the catalog keeps them, and how each is read.
_NAMED: dict[Kind, tuple[str, Callable[[Mapping[str, object], ContactSchema, Problems], Any]]] = {
    Kind.TEMPLATE: ("templates", lambda raw, _, problems: parse_template(raw, problems)),
    Kind.LIST: ("lists", lambda raw, _, problems: parse_list(raw, problems)),
    Kind.SEGMENT: ("segments", parse_segment),
    Kind.SOURCE: ("sources", lambda raw, _, problems: parse_source(raw, problems)),
    Kind.FORM: ("forms", parse_form),
}


def check_references(
    workflow: Workflow, catalog: Catalog, problems: Problems, *, workflows: set[str] | None = None
) -> None:
    """Templates, lists, segments and workflows a workflow names must exist."""
    _check_trigger_segment(workflow, catalog, problems)
    conditions = _trigger_conditions(workflow)
    for key, match in (("goal", workflow.goal), ("exit_when", workflow.exit_when)):
        if match is not None and match.when is not None:
            conditions.append(((key, "when"), match.when))
    for name, step in workflow.steps.items():
        path = ("steps", name)
        match step:
            case EmailStep(template=template):
                _check_sendable(template, catalog, (*path, "email"), problems)
            case EnrollStep(workflow=target) if target not in (
                workflows if workflows is not None else catalog.workflows
            ):
                problems.add((*path, "enroll"), f"unknown workflow {target!r}")
            case ListStep(add=add, remove=remove):
                for list_name in (*add, *remove):
                    if list_name not in catalog.lists:
                        problems.add((*path, "list"), f"unknown list {list_name!r}")
            case BranchStep(cases=cases):
                conditions.extend(
                    ((*path, "branch", i, "when"), c.when) for i, c in enumerate(cases)
                )
            case WaitForStep(where=where) if where is not None:
                conditions.append(((*path, "wait_for", "where"), where))
    for condition_path, condition in conditions:
        check_memberships(condition, condition_path, catalog, problems)


def _trigger_conditions(workflow: Workflow) -> list[tuple[tuple[str | int, ...], Condition]]:
    trigger = workflow.trigger
    if isinstance(trigger, DateTrigger | EventTrigger) and trigger.when:
        return [(("trigger", "when"), trigger.when)]
    if isinstance(trigger, ScheduleTrigger):
        return [(("trigger", "audience"), trigger.audience)]
    return []


def _check_trigger_segment(workflow: Workflow, catalog: Catalog, problems: Problems) -> None:
    trigger = workflow.trigger
    segment = trigger.segment if isinstance(trigger, EventTrigger) else None
    if segment is not None and segment not in catalog.segments:
        problems.add(("trigger", "segment"), f"unknown segment {segment!r}")


def _check_sendable(
    template: str, catalog: Catalog, path: tuple[str | int, ...], problems: Problems
) -> None:
    found = catalog.templates.get(template)
    if found is None:
        problems.add(path, f"unknown template {template!r}")
    elif found.subject is None:
        problems.add(path, f"template {template!r} has no subject: a layout or partial is not sent")


def check_memberships(
    condition: Condition, path: tuple[str | int, ...], catalog: Catalog, problems: Problems
) -> None:
    """Lists and segments named by `in_list` and `in_segment` must exist."""
    for kind, name in sorted(referenced_memberships(condition)):
        known = catalog.segments if kind == "segment" else catalog.lists
        if name not in known:
            problems.add(path, f"unknown {kind} {name!r}")


def segment_cycle(catalog: Catalog, start: str) -> list[str] | None:
    """A chain of in_segment references that leads from `start` back to it, if any."""

    def names(segment: str) -> list[str]:
        found = catalog.segments.get(segment)
        if found is None:
            return []
        return sorted(n for k, n in referenced_memberships(found.condition) if k == "segment")

    pending = [[start, n] for n in names(start)]
    seen: set[str] = set()
    while pending:
        chain = pending.pop()
        if chain[-1] == start:
            return chain
        if chain[-1] not in seen:
            seen.add(chain[-1])
            pending.extend([*chain, n] for n in names(chain[-1]))
    return None


__all__ = ["Catalog", "CatalogResult", "Document", "Finding", "build_catalog"]
