"""Graph checks on workflows: targets, reachability, loops with no wait, enroll cycles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from carepath.domain.conditions import AllOf, FieldTest, Op, Scope
from carepath.domain.problems import Problems
from carepath.domain.workflow import (
    WAITING_STEPS,
    BranchStep,
    EnrollStep,
    EventTrigger,
    ExitStep,
    GotoStep,
    ListStep,
    SplitStep,
    Step,
    WaitForStep,
    Workflow,
    step_kind,
    successors,
)


def check_workflow_graph(
    workflow: Workflow, problems: Problems, *, broken: frozenset[str] = frozenset()
) -> None:
    """Unknown targets, unreachable steps and cycles that contain no wait.

    `broken` names steps that exist but failed to parse: they are not unknown,
    and reachability is not judged, since their successors are not known.
    """
    steps = workflow.steps
    for name, step in steps.items():
        for key, target in _named_targets(step):
            if target not in steps and target not in broken:
                problems.add(("steps", name, *key), f"unknown step {target!r}")
    if not broken:
        reachable = _reachable(workflow.start, steps)
        for name in steps:
            if name not in reachable:
                problems.add(("steps", name), "step is unreachable from start")
    for cycle in _cycles_without_wait(steps):
        loop = " -> ".join([*cycle, cycle[0]])
        problems.add(("steps", cycle[0]), f"loop with no wait: {loop}")


def _named_targets(step: object) -> list[tuple[tuple[str | int, ...], str]]:
    """(key path inside the step, target) pairs, for messages that point at the key."""
    match step:
        case BranchStep(cases, otherwise):
            found: list[tuple[tuple[str | int, ...], str]] = [
                (("branch", i, "goto"), c.goto) for i, c in enumerate(cases)
            ]
            return [*found, (("otherwise",), otherwise)] if otherwise else found
        case SplitStep(paths):
            return [(("split", i, "goto"), p.goto) for i, p in enumerate(paths)]
        case GotoStep(target):
            return [(("goto",), target)]
        case WaitForStep(next=nxt, on_timeout=timeout):
            pairs = [(("next",), nxt), (("on_timeout",), timeout)]
            return [(k, t) for k, t in pairs if t]
    nxt = getattr(step, "next", None)
    return [(("next",), nxt)] if nxt else []


def _reachable(start: str, steps: Mapping[str, Step]) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        if name in seen or name not in steps:
            continue
        seen.add(name)
        stack.extend(successors(steps[name]))
    return seen


def _cycles_without_wait(steps: Mapping[str, Step]) -> list[list[str]]:
    """Strongly connected components of the graph where waits cut their out-edges."""
    edges = {
        name: [] if isinstance(step, WAITING_STEPS) else [t for t in successors(step) if t in steps]
        for name, step in steps.items()
    }
    return [scc for scc in strongly_connected(edges) if len(scc) > 1 or scc[0] in edges[scc[0]]]


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so deep graphs cannot overflow the stack.

    Targets that are not keys (an unknown workflow, say) are nodes with no edges.
    """
    order = {name: i for i, name in enumerate(edges)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(sorted(component, key=lambda n: order.get(n, len(order))))
    return result


@dataclass(frozen=True)
class EnrollEdge:
    """`source` starts `target` at `step`: an enroll step, or an event that triggers it."""

    source: str
    step: str
    target: str
    via: str = "enroll"  # the step's key: enroll, list (list.joined) or exit (workflow.completed)


def immediate_enrollments(
    workflow: Workflow, triggered: Mapping[str, list[tuple[str, str | None]]] | None = None
) -> list[EnrollEdge]:
    """Enrollments reachable from start without passing a wait.

    `triggered` maps an event type to the workflows it triggers, each with the
    list or workflow name its `when` requires (None: any). Joining a list
    (`list.joined`) and ending (`workflow.completed`) start those at once.
    """
    triggered = triggered or {}
    found: list[EnrollEdge] = []
    seen: set[str] = set()
    stack = [workflow.start]
    while stack:
        name = stack.pop()
        if name in seen or name not in workflow.steps:
            continue
        seen.add(name)
        step = workflow.steps[name]
        if isinstance(step, EnrollStep):
            found.append(EnrollEdge(workflow.name, name, step.workflow))
        if isinstance(step, ListStep):
            for target, wanted in triggered.get("list.joined", []):
                if wanted is None or wanted in step.add:
                    found.append(EnrollEdge(workflow.name, name, target, "list"))
        if isinstance(step, ExitStep) or not successors(step):
            for target, wanted in triggered.get("workflow.completed", []):
                if wanted in (None, workflow.name):
                    found.append(EnrollEdge(workflow.name, name, target, step_kind(step)))
        if not isinstance(step, WAITING_STEPS):
            stack.extend(successors(step))
    return found


def triggered_by(workflows: Iterable[Workflow]) -> dict[str, list[tuple[str, str | None]]]:
    """Event type -> (workflow it triggers, the list or workflow its `when` requires)."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for workflow in workflows:
        trigger = workflow.trigger
        if isinstance(trigger, EventTrigger):
            found.setdefault(trigger.event, []).append((workflow.name, _required_name(trigger)))
    return found


def _required_name(trigger: EventTrigger) -> str | None:
    """The list or workflow name a trigger's `when` requires (event.data.list/workflow eq)."""
    tests = trigger.when.items if isinstance(trigger.when, AllOf) else (trigger.when,)
    for test in tests:
        match test:
            case FieldTest(
                scope=Scope.EVENT, path=("data", "list" | "workflow"), op=Op.EQ, value=str(name)
            ):
                return name
    return None


def enroll_cycles(workflows: Iterable[Workflow]) -> list[list[EnrollEdge]]:
    """Cycles of workflows starting each other (enroll steps, triggers) with no wait between."""
    every = list(workflows)
    triggered = triggered_by(every)
    edges_by_source: dict[str, list[EnrollEdge]] = {}
    for wf in every:
        edges_by_source[wf.name] = immediate_enrollments(wf, triggered)
    graph = {src: [e.target for e in es] for src, es in edges_by_source.items()}
    cycles: list[list[EnrollEdge]] = []
    for scc in strongly_connected(graph):
        members = set(scc)
        if len(scc) == 1 and scc[0] not in graph.get(scc[0], []):
            continue
        cycles.append(
            [e for src in scc for e in edges_by_source.get(src, []) if e.target in members]
        )
    return cycles
