from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from carepath.domain.catalog import Document, build_catalog
from carepath.domain.graph import (
    EnrollEdge,
    enroll_cycles,
    immediate_enrollments,
    strongly_connected,
)

from .builders import valid_workflow

END = {"exit": "completed"}


def workflow_document(name: str, steps: Mapping[str, object]) -> Document:
    return Document(f"{name}.yml", {"workflow": name, "trigger": "manual", "steps": dict(steps)})


def findings(*documents: Document) -> list[tuple[str | None, tuple[object, ...], str]]:
    result = build_catalog(list(documents))
    return [
        (f.document.source if f.document else None, f.problem.path, f.problem.message)
        for f in result.findings
    ]


# ----------------------------------------------------------- enroll cycles


def test_two_workflows_enrolling_each_other_with_no_wait_are_reported() -> None:
    a = workflow_document("a", {"hand-off": {"enroll": "b", "next": "end"}, "end": END})
    b = workflow_document("b", {"start": {"email": "t", "next": "back"},
                                "back": {"enroll": "a"}})  # fmt: skip
    template = Document("t.yml", {"template": "t", "subject": "s", "html": "h"})

    found = findings(a, b, template)

    assert found == [
        (
            "a.yml",
            ("steps", "hand-off", "enroll"),
            "workflows enroll each other with no wait: a -> b -> a",
        )
    ]


def test_workflows_enrolling_each_other_after_a_wait_are_not_a_cycle() -> None:
    a = workflow_document("a", {"pause": {"wait": "30d", "next": "again"},
                                "again": {"enroll": "b"}})  # fmt: skip
    b = workflow_document("b", {"back": {"enroll": "a"}})

    assert findings(a, b) == []


def test_workflow_enrolling_itself_immediately_is_a_cycle() -> None:
    a = workflow_document("a", {"again": {"enroll": "a"}})

    [(source, path, message)] = findings(a)

    assert (source, path) == ("a.yml", ("steps", "again", "enroll"))
    assert message == "workflows enroll each other with no wait: a -> a"


def test_enrolling_an_unknown_workflow_is_reported_not_a_crash() -> None:
    a = workflow_document("a", {"hand-off": {"enroll": "missing"}})

    assert findings(a) == [("a.yml", ("steps", "hand-off", "enroll"), "unknown workflow 'missing'")]


def test_a_workflow_triggered_by_another_ending_closes_a_cycle_with_an_enroll() -> None:
    a = workflow_document("a", {"done": END})
    b = Document(
        "b.yml",
        {
            "workflow": "b",
            "trigger": {
                "event": "workflow.completed",
                "when": {"field": "event.data.workflow", "eq": "c"},
            },
            "steps": {"again": {"enroll": "a"}},
        },
    )
    c = workflow_document("c", {"done": END})
    assert findings(a, b, c) == []  # b starts when c completes, not a

    after_a = {"event": "workflow.completed", "when": {"field": "event.data.workflow", "eq": "a"}}
    b_after_a = Document("b.yml", {**b.raw, "trigger": after_a})
    [(_, path, message)] = findings(a, b_after_a, c)
    assert message == "workflows start each other with no wait: a -> b -> a"
    assert path in {("steps", "done", "exit"), ("steps", "again", "enroll")}


def test_joining_a_list_that_triggers_a_workflow_is_an_edge_for_that_list_only() -> None:
    lists = [Document(f"{n}.yml", {"list": n}) for n in ("leads", "vip")]
    a = workflow_document("a", {"join": {"list": {"add": ["leads"]}, "next": "end"}, "end": END})
    b = Document(
        "b.yml",
        {
            "workflow": "b",
            "trigger": {
                "event": "list.joined",
                "when": {"field": "event.data.list", "eq": "leads"},
            },
            "steps": {"back": {"enroll": "a"}},
        },
    )
    [(_, path, message)] = findings(a, b, *lists)
    assert path == ("steps", "join", "list")
    assert message == "workflows start each other with no wait: a -> b -> a"
    vip_only = Document("b.yml", {**b.raw, "trigger": {**b.raw["trigger"], "when": {  # type: ignore[dict-item]
        "field": "event.data.list", "eq": "vip"}}})  # fmt: skip
    assert findings(a, vip_only, *lists) == []


def test_immediate_enrollments_stop_at_waits() -> None:
    workflow = valid_workflow({
        "first": {"enroll": "x", "next": "hold"},
        "hold": {"wait_for": {"event": "email.opened", "within": "2d"}, "next": "later"},
        "later": {"enroll": "y"},
    })  # fmt: skip

    assert immediate_enrollments(workflow) == [EnrollEdge("journey", "first", "x")]


def test_enroll_cycles_names_every_edge_of_a_three_workflow_ring() -> None:
    ring = [
        replace(valid_workflow({"go": {"enroll": target}}), name=name)
        for name, target in (("a", "b"), ("b", "c"), ("c", "a"))
    ]

    [cycle] = enroll_cycles(ring)

    assert {(e.source, e.target) for e in cycle} == {("a", "b"), ("b", "c"), ("c", "a")}


# ------------------------------------------------------ strongly connected


def reaches(edges: Mapping[str, list[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        for child in edges.get(node, []):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


node_names = st.sampled_from([f"n{i}" for i in range(8)])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(node_names, st.lists(st.one_of(node_names, st.just("outside")), max_size=4)))
def test_strongly_connected_groups_exactly_the_nodes_that_reach_each_other(
    edges: dict[str, list[str]],
) -> None:
    components = strongly_connected(edges)

    members = [node for component in components for node in component]
    assert sorted(set(members)) == sorted(members)  # each node in one component only
    assert set(edges) <= set(members)
    component_of = {node: i for i, component in enumerate(components) for node in component}
    for a in edges:
        for b in edges:
            mutual = a == b or (b in reaches(edges, a) and a in reaches(edges, b))
            assert (component_of[a] == component_of[b]) is mutual
