"""Cohort execution writes exactly what advancing the same runs one by one writes.

The runner decides once for runs whose turns cannot differ and writes the
decision with set-oriented statements. Each scenario runs twice on a fresh
database of the same backend, once with cohorts and once with every run
advanced alone, and the two end states must be identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from carepath.db import migrate
from carepath.db.connection import make_engine, read_only
from carepath.db.schema import contacts, events, run_steps, runs
from carepath.services import runner
from carepath.services.cohort_reads import Cohort
from tests.integration.conftest import START, truncate_all
from tests.integration.harness import Harness

JOURNEY = """
fields:
  stage: {type: string}
  score: {type: number}
  old_note: {type: string}
  smoker: {type: bool}
  conditions: {type: list}
---
list: vip
title: VIP
---
workflow: join
trigger: manual
steps:
  join: {list: {add: vip}, next: done}
  done: {exit: completed}
---
workflow: cohort
trigger: manual
steps:
  mark:
    update:
      set: {stage: marked, contact.sex: unknown}
      unset: [old_note]
      add_tags: [seen, b]
      remove_tags: [z]
    next: check
  check:
    branch:
      - {when: {field: contact.score, gte: 50}, goto: high}
      - {when: {in_list: vip}, goto: high}
      - {when: {field: contact.smoker, eq: true}, goto: high}
      - {when: {field: contact.conditions, contains: asthma}, goto: high}
    otherwise: low
  high: {wait: 1d, next: tidy}
  tidy: {update: {add_tags: [high], remove_tags: [seen]}, next: done}
  low: {update: {add_tags: [low]}, next: done}
  done: {exit: completed}
---
workflow: other
trigger: manual
steps:
  note: {update: {set: {stage: other}}, next: done}
  done: {exit: converted}
"""

TAG_SETS: list[list[str]] = [[], ["z"], ["b", "z", "x"], ["seen"], ["x", "low"]]


def _scenario(journey: Harness) -> None:
    journey.apply(JOURNEY)
    people = [
        journey.contact(
            score=10 if i % 3 else 80,
            tags=TAG_SETS[i % len(TAG_SETS)],
            old_note="n",
            smoker=[True, False, None][i % 3 if i % 4 else 2],
            conditions=[["asthma"], ["gerd"], []][i % 3 if i % 5 else 1],
        )
        for i in range(60)
    ]
    journey.enroll("join", *people[40:45])
    journey.work()
    journey.enroll("cohort", *people)
    journey.enroll("other", people[0], people[1])  # two runs of one contact in one batch
    journey.work()
    journey.advance("1d")
    journey.work()


COMPARED: dict[str, tuple[sa.Table, str, str]] = {
    # table: (columns, order); ids are comparable, each database starting empty
    "runs": (
        runs,
        "id contact_id status current_step wake_at visits reason ended_at revision",
        "id",
    ),
    "history": (
        run_steps,
        "run_id contact_id workflow workflow_version step kind outcome next_step detail error"
        " entered_at left_at",
        "run_id id",
    ),
    "contacts": (contacts, "id sex tags attributes", "id"),
    "events": (
        events,
        "idempotency_key type contact_id occurred_at data source chain_depth processed_at",
        "idempotency_key",
    ),
}


def _state(engine: sa.Engine) -> dict[str, list[Any]]:
    state: dict[str, list[Any]] = {}
    with read_only(engine) as conn:
        for name, (table, columns, order) in COMPARED.items():
            query = sa.select(*(table.c[c] for c in columns.split()))
            state[name] = conn.execute(query.order_by(*(table.c[c] for c in order.split()))).all()
    return state


@pytest.fixture
def fresh_journey(engine: sa.Engine, tmp_path: Path) -> Iterator[Callable[[str], Harness]]:
    """A new harness on an empty database of the same backend, each call."""
    engines: list[sa.Engine] = []

    def make(name: str) -> Harness:
        if engine.dialect.name == "sqlite":
            other = make_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
            migrate.upgrade(other)
            engines.append(other)
        else:
            truncate_all(engine)
            other = engine
        folder = tmp_path / name
        folder.mkdir()
        return Harness(other, folder, start=START)

    yield make
    for e in engines:
        e.dispose()


def test_cohorts_write_what_one_by_one_writes(
    fresh_journey: Callable[[str], Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[int] = []
    write_cohort = runner.write_cohort

    def counting(conn: sa.Connection, cohort: Cohort, *args: Any, **kwargs: Any) -> None:
        written.append(len(cohort.ids))
        write_cohort(conn, cohort, *args, **kwargs)

    monkeypatch.setattr(runner, "write_cohort", counting)
    grouped = fresh_journey("grouped")
    _scenario(grouped)
    with_cohorts = _state(grouped.engine)
    # Most runs were decided in cohorts; the two contacts with two runs, and
    # groups smaller than MIN_COHORT, went one by one.
    assert len(written) >= 4
    assert sum(written) >= 50

    monkeypatch.setattr(runner, "MIN_COHORT", 10**9)
    alone = fresh_journey("alone")
    _scenario(alone)
    one_by_one = _state(alone.engine)

    for table in COMPARED:
        assert with_cohorts[table] == one_by_one[table], table
    statuses = {r.status for r in with_cohorts["runs"]}
    assert statuses == {"completed", "converted"}
    tags = {tuple(c.tags) for c in with_cohorts["contacts"]}
    assert ("b", "x", "seen", "low") in tags  # z removed, seen and b added once, low at the end
    assert ("x", "low", "seen", "b") in tags  # low already there: kept in place
