"""Grouping claimed runs into cohorts in SQL: one row per decision, not per run.

The query groups the runs by everything their turn can read (see
`domain.cohorts`): position, counters, and only the contact fields, list
memberships and events their workflows look at. Each group comes back with
its members' run and contact ids and the values of its key, from which one
`RunSnapshot` stands for all of them. No per-run row ever reaches Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.dialect import aggregated_pairs, id_in, json_member, json_member_value
from carepath.db.schema import LIVE_RUN, contacts, list_members, runs, segment_members
from carepath.domain.cohorts import turn_inputs
from carepath.domain.conditions import Facts
from carepath.domain.fields import ContactSchema
from carepath.domain.runs import RunSnapshot, RunStatus
from carepath.domain.workflow import Workflow
from carepath.services.contacts import FACT_COLUMNS, contact_facts
from carepath.services.facts import load_events


@dataclass(frozen=True)
class Cohort:
    ids: list[int]  # member runs, in id order
    contact_ids: list[int]  # each member run's contact, in the same order
    workflow: str
    workflow_version: int
    snapshot: RunSnapshot  # stands for every member


def due_by(now: Any) -> sa.ColumnElement[bool]:
    """Runs that are due at `now` (a time or a bind parameter): live, their wake-up come."""
    return sa.and_(LIVE_RUN, runs.c.wake_at <= now)


def read_cohorts(
    conn: Connection,
    ids: Sequence[int],
    workflows: dict[int, Workflow],
    schema: ContactSchema,
    *,
    now: datetime,
) -> Iterator[Cohort]:
    """The runs of `ids`, grouped by what their turns read.

    The runs are locked by this transaction, so they are still due: asking again
    would also lead the planner to scan every due run instead of taking `ids`.
    """
    used = [turn_inputs(w) for w in workflows.values()]
    names = sorted(set().union(*(i.fields for i in used)))
    core = [n for n in names if n in FACT_COLUMNS and n != "attributes"]
    custom = [n for n in names if n in schema.custom]
    lists = sorted(set().union(*(i.lists for i in used)))
    segments = sorted(set().union(*(i.segments for i in used)))
    events = any(i.events for i in used)
    per_contact = any(i.per_contact for i in used)

    # A workflow's name and version follow from its resource id: they split no group.
    position = (runs.c.resource_id, runs.c.workflow, runs.c.workflow_version, runs.c.status)
    key: dict[str, Any] = {c.name: c for c in (*position, runs.c.current_step, runs.c.visits)}
    key["chain_depth"] = runs.c.chain_depth
    if events:
        key |= {"trigger_event_id": runs.c.trigger_event_id, "event_id": runs.c.event_id}
    if per_contact:
        key["contact_id"] = runs.c.contact_id
    source: Any = runs
    if core or custom:
        source = source.join(contacts, contacts.c.id == runs.c.contact_id)
    key |= {f"core_{i}": contacts.c[n] for i, n in enumerate(core)}
    members = {n: json_member(conn, contacts.c.attributes, n) for n in custom}
    for i, columns in enumerate(members.values()):
        key |= {f"custom_{i}_{j}": c for j, c in enumerate(columns)}
    for prefix, table, names in (
        ("list", list_members, lists),
        ("segment", segment_members, segments),
    ):
        named_by = table.c.list_name if table is list_members else table.c.segment_name
        for i, name in enumerate(names):
            member = table.alias(f"{prefix}_{i}")
            on = sa.and_(member.c.contact_id == runs.c.contact_id, member.c[named_by.name] == name)
            source = source.outerjoin(member, on)
            key[f"{prefix}_{i}"] = member.c.contact_id.is_not(None)
    query = (
        sa.select(
            *(expr.label(label) for label, expr in key.items()),
            aggregated_pairs(conn, runs.c.id, runs.c.contact_id).label("members"),
        )
        .select_from(source)
        .where(id_in(conn, runs.c.id, ids))
        .group_by(*key.values())
    )
    groups = conn.execute(query).all()
    known = {}
    if events:
        wanted = [g.trigger_event_id for g in groups] + [g.event_id for g in groups]
        known = load_events(conn, wanted)
    for group in groups:
        values = group._mapping
        contact: dict[str, Any] = {n: values[f"core_{i}"] for i, n in enumerate(core)}
        contact["attributes"] = {
            n: json_member_value([values[f"custom_{i}_{j}"] for j in range(len(columns))])
            for i, (n, columns) in enumerate(members.items())
        }
        facts = Facts(
            contact=contact_facts(contact, schema, custom=custom),
            now=now,
            lists=frozenset(n for i, n in enumerate(lists) if values[f"list_{i}"]),
            segments=frozenset(n for i, n in enumerate(segments) if values[f"segment_{i}"]),
            trigger=known.get(group.trigger_event_id) if events else None,
            event=known.get(group.event_id) if events else None,
        )
        pairs = sorted((int(run), int(contact)) for run, contact in group.members)
        run_ids = [run for run, _ in pairs]
        contact_ids = [contact for _, contact in pairs]
        yield Cohort(
            run_ids,
            contact_ids,
            group.workflow,
            group.workflow_version,
            RunSnapshot(
                id=run_ids[0],
                contact_id=group.contact_id if per_contact else min(contact_ids),
                workflow=workflows[group.resource_id],
                status=RunStatus(group.status),
                current_step=group.current_step,
                visits=group.visits or {},
                chain_depth=group.chain_depth,
                facts=facts,
            ),
        )
