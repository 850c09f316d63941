"""Stored resources: apply new versions atomically, and load the current catalog.

Every resource is immutable once stored; `apply` adds a version only for what
changed. The in-process cache is keyed on the highest resource id, so a
worker sees a new apply at its next batch without re-reading everything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.channels.templates import TemplateRenderer, referenced_templates
from carepath.db.schema import lists, resources
from carepath.domain.catalog import Catalog, Document, build_catalog
from carepath.domain.problems import Problems
from carepath.domain.resources import FIELDS_RESOURCE_NAME, Kind, Template
from carepath.domain.workflow import Workflow
from carepath.domain.workflow_parser import parse_workflow
from carepath.errors import InvalidInput, NotFound, Problem
from carepath.services.date_scans import sync_scans
from carepath.services.documents import SourceDocument
from carepath.services.event_interest import refresh_event_interest
from carepath.services.facts import contact_fields_used
from carepath.services.segment_checks import inputs_of, store_inputs
from carepath.services.template_lint import phi_warnings, templates_in, unknown_allowed_fields


@dataclass(frozen=True)
class StoredVersion:
    id: int
    kind: Kind
    name: str
    version: int
    checksum: str
    body: Mapping[str, object]


@dataclass(frozen=True)
class AppliedResource:
    kind: Kind
    name: str
    version: int
    changed: bool


@dataclass
class CurrentCatalog:
    catalog: Catalog
    versions: dict[tuple[Kind, str], StoredVersion]

    def workflow_version(self, name: str) -> StoredVersion:
        stored = self.versions.get((Kind.WORKFLOW, name))
        if stored is None:
            raise NotFound(f"no workflow named {name!r}")
        return stored

    def template_version(self, name: str) -> int:
        return self.versions[(Kind.TEMPLATE, name)].version

    def template_library(self) -> dict[str, tuple[int, Template]]:
        """Every template with its version: what layouts and partials are found in."""
        templates = self.catalog.templates
        return {name: (self.template_version(name), t) for name, t in templates.items()}


def canonical_body(raw: Mapping[str, object]) -> dict[str, object]:
    """The document as plain JSON (dates as ISO text), as stored and checksummed."""

    def encode(value: object) -> str:
        if isinstance(value, datetime | date):
            return value.isoformat()
        raise TypeError(f"cannot store a {type(value).__name__} value")

    result = json.loads(json.dumps(raw, default=encode))
    assert isinstance(result, dict)
    return result


def checksum(body: Mapping[str, object]) -> str:
    # Order-sensitive on purpose: step order decides the default start step.
    text = json.dumps(body, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def latest_versions(conn: Connection) -> dict[tuple[Kind, str], StoredVersion]:
    newest = (
        sa.select(resources.c.kind, resources.c.name, sa.func.max(resources.c.version).label("v"))
        .group_by(resources.c.kind, resources.c.name)
        .subquery()
    )
    rows = conn.execute(
        sa.select(resources).join(
            newest,
            sa.and_(
                resources.c.kind == newest.c.kind,
                resources.c.name == newest.c.name,
                resources.c.version == newest.c.v,
            ),
        )
    )
    return {
        (Kind(r.kind), r.name): StoredVersion(
            r.id, Kind(r.kind), r.name, r.version, r.checksum, r.body
        )
        for r in rows
    }


def _stored_documents(versions: Mapping[tuple[Kind, str], StoredVersion]) -> list[Document]:
    return [Document(f"stored {v.kind} {v.name}", v.body) for v in versions.values()]


def build_current(conn: Connection) -> CurrentCatalog:
    versions = latest_versions(conn)
    result = build_catalog(_stored_documents(versions))
    return CurrentCatalog(result.catalog, versions)


def _merge_fields(docs: Sequence[SourceDocument]) -> dict[str, object]:
    merged: dict[str, object] = {}
    for doc in docs:
        body = doc.document.raw.get("fields")
        if isinstance(body, Mapping):
            merged.update(body)
    return {"fields": merged}


def check_documents(conn: Connection | None, docs: Sequence[SourceDocument]) -> list[Problem]:
    """Problems in `docs`, checked together with what is stored (when a database is given)."""
    return check_and_lint_documents(conn, docs)[0]


def check_and_lint_documents(
    conn: Connection | None, docs: Sequence[SourceDocument]
) -> tuple[list[Problem], list[Problem]]:
    """Problems in `docs`, and warnings that do not stop them (PHI outside allow-lists)."""
    stored = latest_versions(conn) if conn is not None else {}
    catalog, problems = _check(stored, docs)
    return problems, [] if problems else phi_warnings(catalog, docs)


def _check(
    stored: Mapping[tuple[Kind, str], StoredVersion], docs: Sequence[SourceDocument]
) -> tuple[Catalog, list[Problem]]:
    by_doc = {id(d.document): d for d in docs}
    new_docs = [d.document for d in docs]
    kinds = _declared_kinds(new_docs)
    kept = [
        doc for key, doc in zip(stored, _stored_documents(stored), strict=True) if key not in kinds
    ]
    result = build_catalog([*kept, *new_docs])
    problems = _template_problems(result.catalog, docs)
    for finding in result.findings:
        source = by_doc.get(id(finding.document)) if finding.document else None
        location = (
            source.locate(finding.problem.path)
            if source
            else (finding.document.source if finding.document else "")
        )
        problems.append(Problem(location, finding.problem.message))
    return result.catalog, problems


def _template_problems(catalog: Catalog, docs: Sequence[SourceDocument]) -> list[Problem]:
    """What the template sandbox refuses in the templates being applied, and layout cycles."""
    checker = TemplateRenderer()
    known = set(catalog.templates)
    cyclic = _in_reference_cycles(catalog)
    problems = []
    for source, template in templates_in(catalog, docs):
        for part, message in checker.check(template, known):
            problems.append(Problem(source.locate((part,)), message))
        for name in unknown_allowed_fields(catalog, template):
            problems.append(Problem(source.locate(("phi",)), f"unknown contact field {name!r}"))
        if template.name in cyclic:
            problems.append(
                Problem(source.locate(("html",)), "extends and include go round in a cycle")
            )
    return problems


def _in_reference_cycles(catalog: Catalog) -> set[str]:
    """Templates that reach themselves through extends and include."""
    edges = {name: referenced_templates(t) for name, t in catalog.templates.items()}
    cyclic: set[str] = set()
    for start, targets in edges.items():
        seen: set[str] = set()
        pending = list(targets)
        while pending:
            name = pending.pop()
            if name == start:
                cyclic.add(start)
                break
            if name not in seen:
                seen.add(name)
                pending.extend(edges.get(name, ()))
    return cyclic


def _declared_kinds(docs: Sequence[Document]) -> set[tuple[Kind, str]]:
    found: set[tuple[Kind, str]] = set()
    for doc in docs:
        first = next(iter(doc.raw), None)
        try:
            kind = Kind(str(first))
        except ValueError:
            continue
        name = FIELDS_RESOURCE_NAME if kind is Kind.FIELDS else str(doc.raw[str(first)])
        found.add((kind, name))
    return found


def apply_documents(
    conn: Connection, docs: Sequence[SourceDocument], *, now: datetime
) -> list[AppliedResource]:
    """Validate `docs` with everything stored, then store new versions of what changed.

    The caller owns the transaction: on any problem nothing is written.
    """
    stored = latest_versions(conn)
    catalog, problems = _check(stored, docs)
    if problems:
        raise InvalidInput(problems)
    bodies: dict[tuple[Kind, str], tuple[dict[str, object], str]] = {}
    fields_docs = [d for d in docs if next(iter(d.document.raw)) == Kind.FIELDS.value]
    if fields_docs:
        bodies[(Kind.FIELDS, FIELDS_RESOURCE_NAME)] = (
            _merge_fields(fields_docs),
            fields_docs[0].file,
        )
    for doc in docs:
        kind_key = str(next(iter(doc.document.raw)))
        if kind_key != Kind.FIELDS.value:
            bodies[(Kind(kind_key), str(doc.document.raw[kind_key]))] = (
                canonical_body(doc.document.raw), doc.file,
            )  # fmt: skip
    applied: list[AppliedResource] = []
    for (kind, name), (raw_body, source) in bodies.items():
        body = canonical_body(raw_body)
        digest = checksum(body)
        previous = stored.get((kind, name))
        if previous is not None and previous.checksum == digest:
            applied.append(AppliedResource(kind, name, previous.version, changed=False))
            continue
        version = previous.version + 1 if previous else 1
        conn.execute(
            resources.insert().values(
                kind=kind.value,
                name=name,
                version=version,
                checksum=digest,
                body=body,
                source=source,
                created_at=now,
            )
        )
        applied.append(AppliedResource(kind, name, version, changed=True))
    _sync_lists(conn, catalog, now)
    if any(a.changed and a.kind is Kind.WORKFLOW for a in applied):
        refresh_event_interest(conn)
    if any(a.changed and a.kind is Kind.WORKFLOW for a in applied):
        sync_scans(conn, catalog.workflows, now=now)
    if any(a.changed and a.kind is Kind.SEGMENT for a in applied):
        store_inputs(conn, inputs_of(catalog.segments.values()))
    return applied


def _sync_lists(conn: Connection, catalog: Catalog, now: datetime) -> None:
    existing = {r.name: r.title for r in conn.execute(sa.select(lists.c.name, lists.c.title))}
    for name, list_def in catalog.lists.items():
        if name not in existing:
            conn.execute(lists.insert().values(name=name, title=list_def.title, created_at=now))
        elif existing[name] != list_def.title:
            conn.execute(lists.update().where(lists.c.name == name).values(title=list_def.title))


@dataclass
class CatalogCache:
    """Per-process cache of the current catalog and of workflow versions by id."""

    _marker: int | None = None
    _current: CurrentCatalog | None = None
    _workflows: dict[int, Workflow] = field(default_factory=dict)
    _fields: dict[int, set[str] | None] = field(default_factory=dict)
    _fields_marker: int | None = None

    def contact_fields(
        self, conn: Connection, current: CurrentCatalog, resource_ids: set[int]
    ) -> set[str] | None:
        """Contact fields the workflow versions read (None: all), given `current(conn)`."""
        if self._fields_marker != self._marker:  # a new apply may have changed templates
            self._fields, self._fields_marker = {}, self._marker
        workflows = self.workflows_by_id(conn, resource_ids)
        union: set[str] = set()
        for resource_id, workflow in workflows.items():
            if resource_id not in self._fields:
                used = (
                    contact_fields_used(workflow, current.catalog.templates) if workflow else set()
                )
                self._fields[resource_id] = used
            used = self._fields[resource_id]
            if used is None:
                return None
            union |= used
        return union

    def current(self, conn: Connection) -> CurrentCatalog:
        marker = conn.execute(sa.select(sa.func.max(resources.c.id))).scalar()
        if self._current is None or marker != self._marker:
            self._current = build_current(conn)
            self._marker = marker
        return self._current

    def workflows_by_id(self, conn: Connection, ids: set[int]) -> dict[int, Workflow | None]:
        """Workflow versions by resource id; None when a stored version no longer parses."""
        missing = ids - set(self._workflows)
        if missing:
            current = self.current(conn)
            rows = conn.execute(
                sa.select(resources.c.id, resources.c.body).where(resources.c.id.in_(missing))
            )
            for row in rows:
                problems = Problems()
                parsed = parse_workflow(row.body, current.catalog.schema, problems)
                if parsed is not None:
                    self._workflows[row.id] = parsed
        return {i: self._workflows.get(i) for i in ids}
