"""Engine throughput: enroll N contacts and advance them through a 5-step workflow.

For each backend and N this script, on one fresh throw-away database:

1. applies the workflow below (no sends), bulk-inserts N contacts, enrolls
   them all (timed: runs/s) and advances them to completion with the real
   engine (`advance_due_runs`): a first pass at T0 (3 step executions per run,
   ending on a 1-day wait), then a second pass past the wait (2 more step
   executions). Each run is claimed and advanced twice; 5 step executions in all.
2. runs a bare SQL claim-and-advance loop over a table of N rows in the same
   database: claim 500 due rows with one UPDATE ... RETURNING (FOR UPDATE SKIP
   LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite), advance them with one
   UPDATE, in two passes shaped like the engine's (due -> waiting 1 day -> done).
3. records runs/s, step executions/s, baseline rows/s and peak RSS of every
   process, in bench/results/engine.json and in bench/RESULTS.md.

Throughput counts claim-and-advance operations: one engine "run advance" (a
run claimed and advanced until it waits or ends) against one baseline "row
advance". Both loops advance every item twice, so N items give 2N of each.

Advancing runs in worker processes (spawned, each with its own SQLAlchemy
engine and EngineContext) so that each one's peak RSS is its own; PostgreSQL
is measured with 1 and with --workers processes, SQLite with 1.

    python bench/engine.py [--sizes 10000,100000] [--backends sqlite,postgresql] [--workers 2]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import platform
import queue
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
import yaml

from carepath.db.connection import make_engine
from carepath.db.dialect import bulk_insert
from carepath.db.schema import contacts, events, run_steps, runs
from carepath.domain.catalog import Document
from carepath.domain.runs import RunStatus
from carepath.protection.identifiers import with_indexes
from carepath.protection.keyring import KEYRING_ENV, generate_keyring, keyring_text
from carepath.services.catalog_store import apply_documents, build_current
from carepath.services.clock import set_simulated_now
from carepath.services.context import EngineContext
from carepath.services.documents import SourceDocument
from carepath.services.enrollment import EnrollRequest, enroll
from carepath.services.runner import advance_due_runs
from carepath.services.setup import init_database

# Fields are sealed as in production: one keyring for this run, in the environment
# so that the worker processes spawned below (and their imports of this module) share it.
os.environ.setdefault(KEYRING_ENV, keyring_text(generate_keyring()))

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
RESULTS_JSON = BENCH_DIR / "results" / "engine.json"
BEGIN_MARK = "<!-- bench/engine.py: generated results begin -->"
END_MARK = "<!-- bench/engine.py: generated results end -->"

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
WAIT = timedelta(days=1)
T1 = T0 + WAIT + timedelta(minutes=1)  # the second pass: just past the wait
BATCH = 500  # runs claimed per batch, engine and baseline alike
ENROLL_BATCH = 1000  # enrollment requests per enroll() call and transaction
STEPS_PER_RUN = 5
BARRIER_TIMEOUT_S = 3600.0

FIELDS_YAML = """\
fields:
  bench_stage: {type: string, class: public}
"""
# update -> branch -> wait 1d -> update -> exit. Pass 1 executes mark, check and
# pause (the wait row stays open); pass 2 closes the wait, executes tag and done.
WORKFLOW_YAML = """\
workflow: bench-five-steps
title: Five steps, no sends
purpose: operations
trigger: manual
reentry: never
start: mark
steps:
  mark:
    update: {set: {bench_stage: marked}}
    next: check
  check:
    branch:
      - {when: {field: contact.bench_stage, eq: marked}, goto: pause}
    otherwise: done
  pause:
    wait: 1d
    next: tag
  tag:
    update: {add_tags: [bench-done]}
    next: done
  done:
    exit: completed
"""
WORKFLOW_NAME = "bench-five-steps"


# ------------------------------------------------------------------ helpers


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (Linux)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_snapshot() -> tuple[int, int, int]:
    """(busy, total) CPU ticks of the whole host, and ticks used by PostgreSQL processes.

    Read from /proc so that each pass can say how much CPU went to the bench's
    own workers, to the PostgreSQL server, and to anything else on the host.
    """
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    postgres = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        if text[text.find("(") + 1 : text.rfind(")")] == "postgres":
            after_comm = text[text.rfind(")") + 2 :].split()
            postgres += int(after_comm[11]) + int(after_comm[12])  # utime, stime
    return sum(fields) - idle, sum(fields), postgres


def per_second(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


@contextmanager
def maybe_profiled(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)


# ------------------------------------------------------------------ databases


@contextmanager
def throwaway_database(backend: str, admin_url: str) -> Iterator[str]:
    """A URL to a brand-new empty database, dropped (or deleted) afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="carepath_bench_") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"carepath_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def libpq_url(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_path(url: str) -> str:
    database = sa.make_url(url).database
    assert database
    return database


def analyze(engine: sa.Engine) -> None:
    """Fresh planner statistics after a bulk load, as autovacuum would soon give."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")


def insert_contacts(
    engine: sa.Engine,
    n: int,
    *,
    addressed: bool = False,
    attributes: dict[str, object] | None = None,
) -> None:
    """N contacts, identifiers sealed and indexed as carepath stores them (setup, not measured).

    `addressed` gives each an email address and a first name.
    """
    chunk = 5000
    with engine.begin() as conn:
        for start in range(1, n + 1, chunk):
            rows = []
            for i in range(start, min(n, start + chunk - 1) + 1):
                identifiers: dict[str, object] = {"external_id": f"bench-{i}"}
                if addressed:
                    identifiers |= {"email": f"patient{i}@example.test", "first_name": f"Pat{i}"}
                rows.append(
                    with_indexes(identifiers)
                    | {"tags": [], "attributes": attributes or {}, "created_at": T0}
                    | {"updated_at": T0}
                )
            bulk_insert(conn, contacts, rows)


def prepare_engine_database(url: str, n: int) -> None:
    """Schema, the bench resources and N contacts."""
    engine = init_database(url, simulated_clock=T0)
    try:
        docs = [
            SourceDocument(Document("bench fields", yaml.safe_load(FIELDS_YAML)), "fields"),
            SourceDocument(Document("bench workflow", yaml.safe_load(WORKFLOW_YAML)), "workflow"),
        ]
        with engine.begin() as conn:
            apply_documents(conn, docs, now=T0)
        insert_contacts(engine, n)
        if engine.dialect.name == "postgresql":
            analyze(engine)
        with engine.connect() as conn:
            if WORKFLOW_NAME not in build_current(conn).catalog.workflows:
                raise AssertionError("the stored catalog does not have the bench workflow")
    finally:
        engine.dispose()


def check_engine_outcome(url: str, n: int) -> dict[str, int]:
    """What the engine left behind: every run completed with its 5 history rows."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            by_status: dict[str, int] = dict(
                conn.execute(
                    sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
                ).all()
            )
            count = sa.select(sa.func.count())
            outcome = {
                "runs": sum(by_status.values()),
                "completed": by_status.get(RunStatus.COMPLETED.value, 0),
                "run_steps": conn.execute(count.select_from(run_steps)).scalar_one(),
                "open_steps": conn.execute(
                    count.select_from(run_steps).where(run_steps.c.left_at.is_(None))
                ).scalar_one(),
                "events": conn.execute(count.select_from(events)).scalar_one(),
            }
    finally:
        engine.dispose()
    expected = {
        "runs": n,
        "completed": n,
        "run_steps": STEPS_PER_RUN * n,
        "open_steps": 0,
        "events": n,  # one workflow.completed per run
    }
    wrong = {k: (outcome[k], v) for k, v in expected.items() if outcome[k] != v}
    if wrong:
        raise AssertionError(f"engine outcome is not what the workflow implies: {wrong}")
    return outcome


# ------------------------------------------------------------------ worker processes


def _guarded(barrier: Any, body: Callable[[], None]) -> None:
    """Run a worker body; on failure break the barrier so the parent does not hang."""
    try:
        body()
    except BaseException:
        barrier.abort()
        raise


def enroll_worker(url: str, n: int, profile: str | None, results: Any) -> None:
    """Enroll every contact, ENROLL_BATCH requests per enroll() call and transaction."""
    engine = make_engine(url)
    ctx = EngineContext(engine=engine)
    with engine.connect() as conn:
        ctx.cache.current(conn)
    ready = rss_mb()
    enrolled = 0
    last_id = 0
    started = time.perf_counter()
    with maybe_profiled(Path(profile) if profile else None):
        while True:
            with engine.begin() as conn:
                ids = (
                    conn.execute(
                        sa.select(contacts.c.id)
                        .where(contacts.c.id > last_id)
                        .order_by(contacts.c.id)
                        .limit(ENROLL_BATCH)
                    )
                    .scalars()
                    .all()
                )
                if not ids:
                    break
                outcome = enroll(
                    conn,
                    ctx.cache.current(conn),
                    [EnrollRequest(cid, WORKFLOW_NAME) for cid in ids],
                    now=T0,
                    max_chain_depth=ctx.limits.max_chain_depth,
                )
            if outcome.skipped:
                raise AssertionError(f"enrollment skipped: {outcome.skipped[0].reason}")
            enrolled += len(outcome.run_ids)
            last_id = ids[-1]
    seconds = time.perf_counter() - started
    engine.dispose()
    if enrolled != n:
        raise AssertionError(f"enrolled {enrolled} of {n}")
    results.put(
        {"runs": enrolled, "seconds": seconds, "ready_rss_mb": ready, "peak_rss_mb": peak_rss_mb()}
    )


def advance_worker(
    index: int,
    url: str,
    passes: Sequence[datetime],
    profile: str | None,
    barrier: Any,
    results: Any,
) -> None:
    """Advance due runs batch by batch until none is left, once per pass (at its `now`)."""

    def body() -> None:
        engine = make_engine(url)
        ctx = EngineContext(engine=engine, batch_size=BATCH)
        with engine.connect() as conn:
            ctx.cache.current(conn)
        ready = rss_mb()
        done = []
        barrier.wait()  # everyone is ready
        for number, now in enumerate(passes, start=1):
            barrier.wait()  # go
            runs_done = steps = batches = 0
            started, cpu = time.perf_counter(), time.process_time()
            path = Path(f"{profile}-w{index}-pass{number}.pstats") if profile else None
            with maybe_profiled(path):
                while True:
                    stats = advance_due_runs(ctx, now=now, limit=BATCH)
                    if not stats.runs:
                        break
                    runs_done += stats.runs
                    steps += stats.steps
                    batches += 1
            done.append(
                {
                    "runs": runs_done,
                    "steps": steps,
                    "batches": batches,
                    "seconds": time.perf_counter() - started,
                    "cpu_seconds": time.process_time() - cpu,
                }
            )
            barrier.wait()  # this worker has finished the pass
        barrier.wait()  # the parent has read the CPU counters: connections may close now
        engine.dispose()
        results.put(
            {"worker": index, "passes": done, "ready_rss_mb": ready, "peak_rss_mb": peak_rss_mb()}
        )

    _guarded(barrier, body)


# ------------------------------------------------------------------ the bare SQL baseline

PG_BASELINE_SETUP = (
    "CREATE TABLE bench_items (id bigserial PRIMARY KEY, state text NOT NULL, "
    "step integer NOT NULL DEFAULT 0, wake_at timestamptz, lease_owner text, "
    "lease_until timestamptz)",
    "CREATE INDEX ix_bench_items_due ON bench_items (wake_at) WHERE state IN ('active', 'waiting')",
    "INSERT INTO bench_items (state, wake_at) "
    "SELECT 'active', %(t0)s FROM generate_series(1, %(n)s)",
    "ANALYZE bench_items",
)
# `id = ANY(ARRAY(subquery))` rather than `id IN (subquery)`: PostgreSQL 15 plans the
# IN spelling as a hash semi-join over a sequential scan of the whole table, so every
# claim costs O(N) (68 ms instead of 15 ms per 500-row claim at N = 100k).
PG_CLAIM = """
UPDATE bench_items SET lease_owner = %(me)s, lease_until = %(until)s
WHERE id = ANY(ARRAY(
    SELECT id FROM bench_items
    WHERE state IN ('active', 'waiting') AND wake_at <= %(now)s
      AND (lease_until IS NULL OR lease_until < %(wall)s)
    ORDER BY wake_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED))
RETURNING id
"""
PG_ADVANCE = """
UPDATE bench_items SET step = step + 1,
    state = CASE WHEN step = 0 THEN 'waiting' ELSE 'done' END,
    wake_at = CASE WHEN step = 0 THEN %(next)s END,
    lease_owner = NULL, lease_until = NULL
WHERE id = ANY(%(ids)s) AND lease_owner = %(me)s
"""
SQLITE_BASELINE_SETUP = (
    "CREATE TABLE bench_items (id INTEGER PRIMARY KEY, state TEXT NOT NULL, "
    "step INTEGER NOT NULL DEFAULT 0, wake_at TEXT, lease_owner TEXT, lease_until TEXT)",
    "CREATE INDEX ix_bench_items_due ON bench_items (wake_at) WHERE state IN ('active', 'waiting')",
    "INSERT INTO bench_items (state, wake_at) "
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
    "SELECT 'active', :t0 FROM s",
    "ANALYZE bench_items",
)
SQLITE_CLAIM = """
UPDATE bench_items SET lease_owner = :me, lease_until = :until
WHERE id IN (
    SELECT id FROM bench_items
    WHERE state IN ('active', 'waiting') AND wake_at <= :now
      AND (lease_until IS NULL OR lease_until < :wall)
    ORDER BY wake_at LIMIT :limit)
RETURNING id
"""
SQLITE_ADVANCE = """
UPDATE bench_items SET step = step + 1,
    state = CASE WHEN step = 0 THEN 'waiting' ELSE 'done' END,
    wake_at = CASE WHEN step = 0 THEN :next END,
    lease_owner = NULL, lease_until = NULL
WHERE id IN (SELECT value FROM json_each(:ids)) AND lease_owner = :me
"""


def sqlite_time(value: datetime) -> str:
    """The engine's SQLite spelling of a UTC instant: sortable naive ISO text."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")


def sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def prepare_baseline(url: str, n: int) -> None:
    if url.startswith("sqlite"):
        conn = sqlite_connect(sqlite_path(url))
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in SQLITE_BASELINE_SETUP:
                conn.execute(statement, {"n": n, "t0": sqlite_time(T0)})
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for statement in PG_BASELINE_SETUP:
            conn.execute(statement, {"n": n, "t0": T0})


def check_baseline_outcome(url: str, n: int) -> None:
    query = "SELECT count(*) FROM bench_items WHERE state = 'done' AND step = 2"
    if url.startswith("sqlite"):
        conn = sqlite_connect(sqlite_path(url))
        try:
            done = conn.execute(query).fetchone()[0]
        finally:
            conn.close()
    else:
        with psycopg.connect(libpq_url(url)) as pg:
            row = pg.execute(query).fetchone()
            done = row[0] if row else 0
    if done != n:
        raise AssertionError(f"baseline advanced {done} of {n} rows to the end")


def _baseline_pass_pg(conn: psycopg.Connection[Any], _number: int, now: datetime) -> int:
    me = f"baseline-{os.getpid()}"
    rows = 0
    lease = timedelta(minutes=5)
    while True:
        wall = datetime.now(UTC)
        with conn.transaction():
            claim = {"me": me, "until": wall + lease, "now": now, "wall": wall, "limit": BATCH}
            ids = [r[0] for r in conn.execute(PG_CLAIM, claim).fetchall()]
        if not ids:
            return rows
        with conn.transaction():
            conn.execute(PG_ADVANCE, {"ids": ids, "me": me, "next": now + WAIT})
        rows += len(ids)


def _baseline_pass_sqlite(conn: sqlite3.Connection, _number: int, now: datetime) -> int:
    me = f"baseline-{os.getpid()}"
    rows = 0
    lease = timedelta(minutes=5)
    while True:
        wall = datetime.now(UTC)
        claim = {
            "me": me,
            "until": sqlite_time(wall + lease),
            "now": sqlite_time(now),
            "wall": sqlite_time(wall),
            "limit": BATCH,
        }
        conn.execute("BEGIN IMMEDIATE")
        ids = [r[0] for r in conn.execute(SQLITE_CLAIM, claim).fetchall()]
        conn.execute("COMMIT")
        if not ids:
            return rows
        conn.execute("BEGIN IMMEDIATE")
        advance = {"ids": json.dumps(ids), "me": me, "next": sqlite_time(now + WAIT)}
        conn.execute(SQLITE_ADVANCE, advance)
        conn.execute("COMMIT")
        rows += len(ids)


def _bare_sql_passes(
    index: int,
    url: str,
    passes: Sequence[datetime],
    barrier: Any,
    results: Any,
    run_passes: tuple[Callable[..., int], Callable[..., int]],
) -> None:
    """One bare SQL worker: `run_passes` (SQLite, PostgreSQL) take (conn, pass number, now)
    and return the rows advanced."""
    sqlite = url.startswith("sqlite")
    conn: Any = sqlite_connect(sqlite_path(url)) if sqlite else psycopg.connect(libpq_url(url))
    if sqlite:
        conn.execute("PRAGMA foreign_keys=ON")  # as the engine's connections have it
    run_pass = run_passes[0] if sqlite else run_passes[1]
    ready = rss_mb()
    done = []
    barrier.wait()
    for number, now in enumerate(passes, start=1):
        barrier.wait()
        started, cpu = time.perf_counter(), time.process_time()
        rows = run_pass(conn, number, now)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        batches = -(-rows // BATCH)  # every batch but the last is full
        done.append({"rows": rows, "batches": batches, "seconds": seconds, "cpu_seconds": cpu})
        barrier.wait()
    barrier.wait()
    conn.close()
    results.put(
        {"worker": index, "passes": done, "ready_rss_mb": ready, "peak_rss_mb": peak_rss_mb()}
    )


# ------------------------------------------------------------------ the same rows, bare

# A second yardstick: a bare SQL loop that writes exactly the rows the engine
# writes for this workflow (the runs, their history, the contact changes, the
# closed waits and the completion events), through the same tables with their
# indexes and triggers, set-oriented, with no decision made in Python. What the
# engine spends beyond it is the engine's own cost; what it spends below the
# one-row loop above is the journey's data.
RESET_ENGINE_TABLES = (
    "DELETE FROM run_steps",
    "DELETE FROM events",
    "DELETE FROM funnel_changes",
    "UPDATE runs SET status = 'active', current_step = 'mark', wake_at = :t0, "
    "visits = '{}', revision = 0, reason = NULL, ended_at = NULL, updated_at = :t0",
    "UPDATE contacts SET tags = '[]', attributes = '{}', updated_at = :t0",
)
SAME_ROWS_PASS_1 = {
    "postgresql": (
        "UPDATE runs SET status = 'waiting', current_step = 'pause', wake_at = %(wake)s, "
        'visits = \'{"mark": 1, "check": 1, "pause": 1}\', revision = revision + 1, '
        "updated_at = %(now)s WHERE id = ANY(%(ids)s)",
        "INSERT INTO run_steps (run_id, contact_id, workflow, workflow_version, step, kind, "
        "outcome, next_step, detail, entered_at, left_at) "
        "SELECT m.run_id, m.contact_id, %(workflow)s, 1, s.step, s.kind, s.outcome, s.next_step, "
        "s.detail, %(now)s, CASE WHEN s.open THEN NULL ELSE %(now)s END "
        "FROM unnest(%(ids)s, %(contacts)s) AS m(run_id, contact_id) CROSS JOIN (VALUES "
        "(1, 'mark', 'update', 'done', 'check', NULL, false), "
        "(2, 'check', 'branch', 'done', 'pause', 'case 1', false), "
        "(3, 'pause', 'wait', 'waiting', 'tag', NULL, true)"
        ") AS s(n, step, kind, outcome, next_step, detail, open) ORDER BY s.n, m.run_id",
        'UPDATE contacts SET attributes = attributes || \'{"bench_stage": "marked"}\', '
        "updated_at = %(now)s WHERE id = ANY(%(contacts)s)",
    ),
    "sqlite": (
        "UPDATE runs SET status = 'waiting', current_step = 'pause', wake_at = :wake, "
        'visits = \'{"mark":1,"check":1,"pause":1}\', revision = revision + 1, '
        "updated_at = :now WHERE id IN (SELECT value FROM json_each(:ids))",
        "INSERT INTO run_steps (run_id, contact_id, workflow, workflow_version, step, kind, "
        "outcome, next_step, detail, entered_at, left_at) "
        "SELECT json_extract(m.value, '$[0]'), json_extract(m.value, '$[1]'), :workflow, 1, "
        "s.step, s.kind, s.outcome, s.next_step, s.detail, :now, "
        "CASE WHEN s.open THEN NULL ELSE :now END "
        "FROM (SELECT 1 AS n, 'mark' AS step, 'update' AS kind, 'done' AS outcome, "
        "'check' AS next_step, NULL AS detail, 0 AS open "
        "UNION ALL SELECT 2, 'check', 'branch', 'done', 'pause', 'case 1', 0 "
        "UNION ALL SELECT 3, 'pause', 'wait', 'waiting', 'tag', NULL, 1) AS s, "
        "json_each(:members) AS m ORDER BY s.n, m.key",
        'UPDATE contacts SET attributes = json_patch(attributes, \'{"bench_stage":"marked"}\'), '
        "updated_at = :now WHERE id IN (SELECT value FROM json_each(:contacts))",
    ),
}
SAME_ROWS_PASS_2 = {
    "postgresql": (
        "UPDATE run_steps SET left_at = %(now)s, outcome = 'elapsed', next_step = 'tag' "
        "WHERE run_id = ANY(%(ids)s) AND left_at IS NULL",
        "UPDATE runs SET status = 'completed', current_step = 'done', wake_at = NULL, "
        'visits = \'{"mark": 1, "check": 1, "pause": 1, "tag": 1, "done": 1}\', '
        "reason = 'exit step done', ended_at = %(now)s, revision = revision + 1, "
        "updated_at = %(now)s WHERE id = ANY(%(ids)s)",
        "INSERT INTO run_steps (run_id, contact_id, workflow, workflow_version, step, kind, "
        "outcome, next_step, detail, entered_at, left_at) "
        "SELECT m.run_id, m.contact_id, %(workflow)s, 1, s.step, s.kind, s.outcome, s.next_step, "
        "s.detail, %(now)s, %(now)s "
        "FROM unnest(%(ids)s, %(contacts)s) AS m(run_id, contact_id) CROSS JOIN (VALUES "
        "(1, 'tag', 'update', 'done', 'done', NULL), "
        "(2, 'done', 'exit', 'ended', NULL, 'completed')"
        ") AS s(n, step, kind, outcome, next_step, detail) ORDER BY s.n, m.run_id",
        "UPDATE contacts SET tags = tags || '[\"bench-done\"]', updated_at = %(now)s "
        "WHERE id = ANY(%(contacts)s)",
        "INSERT INTO events (idempotency_key, type, contact_id, occurred_at, received_at, data, "
        "source, chain_depth, processed_at) "
        "SELECT 'run:' || m.run_id || ':completed', 'workflow.completed', m.contact_id, "
        "%(now)s, %(now)s, jsonb_build_object('workflow', %(workflow)s::text, "
        "'status', 'completed'), 'engine', 1, %(now)s "
        "FROM unnest(%(ids)s, %(contacts)s) AS m(run_id, contact_id) "
        "ON CONFLICT DO NOTHING",
    ),
    "sqlite": (
        "UPDATE run_steps SET left_at = :now, outcome = 'elapsed', next_step = 'tag' "
        "WHERE run_id IN (SELECT value FROM json_each(:ids)) AND left_at IS NULL",
        "UPDATE runs SET status = 'completed', current_step = 'done', wake_at = NULL, "
        'visits = \'{"mark":1,"check":1,"pause":1,"tag":1,"done":1}\', '
        "reason = 'exit step done', ended_at = :now, revision = revision + 1, "
        "updated_at = :now WHERE id IN (SELECT value FROM json_each(:ids))",
        "INSERT INTO run_steps (run_id, contact_id, workflow, workflow_version, step, kind, "
        "outcome, next_step, detail, entered_at, left_at) "
        "SELECT json_extract(m.value, '$[0]'), json_extract(m.value, '$[1]'), :workflow, 1, "
        "s.step, s.kind, s.outcome, s.next_step, s.detail, :now, :now "
        "FROM (SELECT 1 AS n, 'tag' AS step, 'update' AS kind, 'done' AS outcome, "
        "'done' AS next_step, NULL AS detail "
        "UNION ALL SELECT 2, 'done', 'exit', 'ended', NULL, 'completed') AS s, "
        "json_each(:members) AS m ORDER BY s.n, m.key",
        "UPDATE contacts SET tags = json_insert(tags, '$[#]', 'bench-done'), updated_at = :now "
        "WHERE id IN (SELECT value FROM json_each(:contacts))",
        "INSERT INTO events (idempotency_key, type, contact_id, occurred_at, received_at, data, "
        "source, chain_depth, processed_at) "
        "SELECT 'run:' || json_extract(m.value, '$[0]') || ':completed', 'workflow.completed', "
        "json_extract(m.value, '$[1]'), :now, :now, "
        "json_object('workflow', :workflow, 'status', 'completed'), 'engine', 1, :now "
        "FROM json_each(:members) AS m WHERE true ON CONFLICT DO NOTHING",
    ),
}
PG_SAME_ROWS_CLAIM = (
    "SELECT id, contact_id FROM runs WHERE status IN ('active', 'waiting') "
    "AND wake_at <= %(now)s ORDER BY wake_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)
SQLITE_SAME_ROWS_CLAIM = (
    "SELECT id, contact_id FROM runs WHERE status IN ('active', 'waiting') "
    "AND wake_at <= :now ORDER BY wake_at LIMIT :limit"
)


def reset_engine_tables(url: str) -> None:
    """Back to the state right after enrollment (setup, not measured), compacted."""
    engine = make_engine(url)
    try:
        t0 = T0 if engine.dialect.name == "postgresql" else sqlite_time(T0)
        with engine.begin() as conn:
            for statement in RESET_ENGINE_TABLES:
                conn.execute(sa.text(statement), {"t0": t0})
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM FULL ANALYZE runs, run_steps, events, contacts")
    finally:
        engine.dispose()
    if url.startswith("sqlite"):
        raw = sqlite_connect(sqlite_path(url))
        try:
            raw.execute("VACUUM")
        finally:
            raw.close()


def _same_rows_pass_pg(conn: psycopg.Connection[Any], number: int, now: datetime) -> int:
    statements = (SAME_ROWS_PASS_1 if number == 1 else SAME_ROWS_PASS_2)["postgresql"]
    rows = 0
    while True:
        with conn.transaction():
            claimed = conn.execute(PG_SAME_ROWS_CLAIM, {"now": now, "limit": BATCH}).fetchall()
            if not claimed:
                return rows
            values = {
                "ids": [r[0] for r in claimed],
                "contacts": [r[1] for r in claimed],
                "now": now,
                "wake": now + WAIT,
                "workflow": WORKFLOW_NAME,
            }
            for statement in statements:
                conn.execute(statement, values)
        rows += len(claimed)


def _same_rows_pass_sqlite(conn: sqlite3.Connection, number: int, now: datetime) -> int:
    statements = (SAME_ROWS_PASS_1 if number == 1 else SAME_ROWS_PASS_2)["sqlite"]
    rows = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        claim = {"now": sqlite_time(now), "limit": BATCH}
        claimed = conn.execute(SQLITE_SAME_ROWS_CLAIM, claim).fetchall()
        if not claimed:
            conn.execute("COMMIT")
            return rows
        values = {
            "ids": json.dumps([r[0] for r in claimed]),
            "contacts": json.dumps([r[1] for r in claimed]),
            "members": json.dumps(sorted([r[0], r[1]] for r in claimed)),
            "now": sqlite_time(now),
            "wake": sqlite_time(now + WAIT),
            "workflow": WORKFLOW_NAME,
        }
        for statement in statements:
            conn.execute(statement, values)
        conn.execute("COMMIT")
        rows += len(claimed)


# Per kind of bare loop: its pass on SQLite and on PostgreSQL.
BARE_SQL_PASSES = {
    "one_row": (_baseline_pass_sqlite, _baseline_pass_pg),
    "same_rows": (_same_rows_pass_sqlite, _same_rows_pass_pg),
}


def bare_sql_worker(
    index: int, url: str, passes: Sequence[datetime], barrier: Any, results: Any, kind: str
) -> None:
    """A bare SQL loop (`BARE_SQL_PASSES`), same barriers as the engine workers."""
    run_passes = BARE_SQL_PASSES[kind]
    _guarded(barrier, lambda: _bare_sql_passes(index, url, passes, barrier, results, run_passes))


# ------------------------------------------------------------------ orchestration


class Coordinator:
    """Starts worker processes and times each pass from the parent, between barriers."""

    def __init__(self, workers: int) -> None:
        self.context = mp.get_context("spawn")
        self.workers = workers

    def run_phased(
        self,
        target: Callable[..., None],
        make_args: Callable[[int, Any, Any], tuple[Any, ...]],
        passes: Sequence[datetime],
        between: Callable[[datetime], None],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Per pass: wall seconds and host CPU ticks; then each worker's own report."""
        barrier = self.context.Barrier(self.workers + 1, timeout=BARRIER_TIMEOUT_S)
        results = self.context.Queue()
        processes = [
            self.context.Process(target=target, args=make_args(i, barrier, results))
            for i in range(self.workers)
        ]
        for process in processes:
            process.start()
        try:
            barrier.wait()  # all workers ready
            timings = []
            for now in passes:
                between(now)
                barrier.wait()
                started, before = time.perf_counter(), cpu_snapshot()
                barrier.wait()
                seconds, after = time.perf_counter() - started, cpu_snapshot()
                busy, total, postgres = (a - b for a, b in zip(after, before, strict=True))
                timings.append(
                    {
                        "seconds": seconds,
                        "busy_ticks": busy,
                        "total_ticks": total,
                        "pg_ticks": postgres,
                    }
                )
            barrier.wait()  # let the workers close their connections (PostgreSQL backends)
            reports = collect(results, processes)
        finally:
            for process in processes:
                process.join(timeout=60)
        failed = [p.exitcode for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"worker processes failed with exit codes {failed}")
        return timings, sorted(reports, key=lambda r: r["worker"])

    def run_once(self, target: Callable[..., None], args: tuple[Any, ...]) -> dict[str, Any]:
        results = self.context.Queue()
        process = self.context.Process(target=target, args=(*args, results))
        process.start()
        try:
            (report,) = collect(results, [process])
        finally:
            process.join(timeout=60)
        if process.exitcode != 0:
            raise RuntimeError(f"worker process failed with exit code {process.exitcode}")
        return report


def collect(results: Any, processes: Sequence[Any]) -> list[dict[str, Any]]:
    """One report per process; fails fast if a process dies before sending its report."""
    reports: list[dict[str, Any]] = []
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(reports) < len(processes):
        try:
            reports.append(results.get(timeout=1))
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"worker processes failed (exit codes {dead})") from None
    return reports


def set_clock(url: str) -> Callable[[datetime], None]:
    def move(now: datetime) -> None:
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                set_simulated_now(conn, now)
        finally:
            engine.dispose()

    return move


def cpu_shares(timing: dict[str, Any], client_cpu_s: float) -> dict[str, float]:
    """Where the host's CPU went during one pass: our workers, PostgreSQL, everything else."""
    total = timing["total_ticks"] or 1
    others = timing["busy_ticks"] - timing["pg_ticks"] - client_cpu_s * CLOCK_TICKS
    return {
        "client_cpu_s": client_cpu_s,
        "postgres_cpu_s": timing["pg_ticks"] / CLOCK_TICKS,
        "host_cpu_busy_pct": 100 * timing["busy_ticks"] / total,
        "other_load_pct": max(0.0, 100 * others / total),
    }


def summarise_passes(
    walls: list[dict[str, Any]], reports: list[dict[str, Any]], count_key: str
) -> dict[str, Any]:
    passes = []
    for number, wall in enumerate(walls):
        done = [r["passes"][number] for r in reports]
        passes.append(
            {
                "seconds": wall["seconds"],
                **cpu_shares(wall, sum(d["cpu_seconds"] for d in done)),
                count_key: sum(d[count_key] for d in done),
                "batches": sum(d["batches"] for d in done),
                **({"steps": sum(d["steps"] for d in done)} if count_key == "runs" else {}),
                "per_worker": done,
            }
        )
    seconds = sum(w["seconds"] for w in walls)
    count = sum(p[count_key] for p in passes)
    summary: dict[str, Any] = {
        "seconds": seconds,
        "client_cpu_s": sum(p["client_cpu_s"] for p in passes),
        "postgres_cpu_s": sum(p["postgres_cpu_s"] for p in passes),
        "other_load_pct": sum(p["other_load_pct"] * p["seconds"] for p in passes) / seconds,
        "passes": passes,
        f"{count_key}_per_s": per_second(count, seconds),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in reports),
        "ready_rss_mb": max(r["ready_rss_mb"] for r in reports),
        "workers": [
            {"ready_rss_mb": r["ready_rss_mb"], "peak_rss_mb": r["peak_rss_mb"]} for r in reports
        ],
    }
    if count_key == "runs":
        steps = sum(p["steps"] for p in passes)
        summary["steps_per_s"] = per_second(steps, seconds)
        summary["completed_runs_per_s"] = per_second(count / len(walls), seconds)
    return summary


def bench_one(
    backend: str, n: int, workers: int, admin_url: str, profile_dir: Path | None
) -> dict[str, Any]:
    label = f"{backend} N={n} workers={workers}"
    with throwaway_database(backend, admin_url) as url:
        print(f"[{label}] preparing database", flush=True)
        prepare_engine_database(url, n)
        profile = str(profile_dir / f"{backend}-{n}-w{workers}") if profile_dir else None
        coordinator = Coordinator(workers)

        enrolled = coordinator.run_once(
            enroll_worker, (url, n, f"{profile}-enroll.pstats" if profile else None)
        )
        enrolled["runs_per_s"] = per_second(enrolled["runs"], enrolled["seconds"])
        print(f"[{label}] enrolled {n} in {enrolled['seconds']:.1f}s", flush=True)
        if backend == "postgresql":
            analyze_url(url)

        passes = (T0, T1)
        walls, reports = coordinator.run_phased(
            advance_worker,
            lambda i, barrier, results: (i, url, passes, profile, barrier, results),
            passes,
            set_clock(url),
        )
        advanced = summarise_passes(walls, reports, "runs")
        advanced["outcome"] = check_engine_outcome(url, n)
        print(f"[{label}] engine advanced in {advanced['seconds']:.1f}s", flush=True)

        reset_engine_tables(url)
        walls, reports = coordinator.run_phased(
            bare_sql_worker,
            lambda i, barrier, results: (i, url, passes, barrier, results, "same_rows"),
            passes,
            lambda _now: None,
        )
        check_engine_outcome(url, n)  # the very rows the engine wrote, counted the same way
        same_rows = summarise_passes(walls, reports, "rows")
        print(f"[{label}] same rows, bare, in {same_rows['seconds']:.1f}s", flush=True)

        prepare_baseline(url, n)
        walls, reports = coordinator.run_phased(
            bare_sql_worker,
            lambda i, barrier, results: (i, url, passes, barrier, results, "one_row"),
            passes,
            lambda _now: None,
        )
        check_baseline_outcome(url, n)
        baseline = summarise_passes(walls, reports, "rows")
        print(f"[{label}] baseline in {baseline['seconds']:.1f}s", flush=True)

    return {
        "backend": backend,
        "n": n,
        "workers": workers,
        "enroll": enrolled,
        "engine": advanced,
        "baseline": baseline,
        "engine_pct_of_baseline": 100 * per_second(advanced["runs_per_s"], baseline["rows_per_s"]),
        "same_rows": same_rows,
        "engine_pct_of_same_rows": 100
        * per_second(advanced["runs_per_s"], same_rows["rows_per_s"]),
        "same_rows_pct_of_baseline": 100
        * per_second(same_rows["rows_per_s"], baseline["rows_per_s"]),
    }


def analyze_url(url: str) -> None:
    engine = make_engine(url)
    try:
        analyze(engine)
    finally:
        engine.dispose()


# ------------------------------------------------------------------ machine facts and reports


def postgres_version(admin_url: str) -> str | None:
    try:
        engine = sa.create_engine(admin_url)
        try:
            with engine.connect() as conn:
                return str(conn.exec_driver_sql("SHOW server_version").scalar())
        finally:
            engine.dispose()
    except sa.exc.OperationalError:
        return None


def machine_facts(admin_url: str, backends: Sequence[str]) -> dict[str, Any]:
    cpu = "unknown"
    memory_gib = None
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                cpu,
            )
        with open("/proc/meminfo") as handle:
            total_kib = int(handle.readline().split()[1])
            memory_gib = round(total_kib / 2**20, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(admin_url) if "postgresql" in backends else None,
        "sqlalchemy": sa.__version__,
        "psycopg": psycopg.__version__,
        "git": git_revision(),
        "load_average": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def git_revision() -> str:
    """The commit measured, and whether src/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=BENCH_DIR.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"{head} (src/ modified)" if dirty else head


def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def markdown_block(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        BEGIN_MARK,
        f"Run on {report['date']} with `{report['command']}` "
        f"({report['total_seconds'] / 60:.1f} min in all).",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB RAM, "
        f"{machine['os']}; Python {machine['python']}, SQLite {machine['sqlite']}, "
        f"PostgreSQL {machine['postgresql'] or 'n/a'} (same host), "
        f"SQLAlchemy {machine['sqlalchemy']}, psycopg {machine['psycopg']}. "
        f"carepath at {machine['git']}; host load average {machine['load_average']} at the start.",
        "",
        "| backend | N | workers | enroll runs/s | engine runs/s | engine steps/s "
        "| baseline rows/s | engine % of baseline | same rows, bare: runs/s "
        "| engine % of same rows | same rows % of baseline | peak RSS MiB (advance / enroll) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        engine, baseline, enrolled = r["engine"], r["baseline"], r["enroll"]
        lines.append(
            f"| {r['backend']} | {r['n']:,} | {r['workers']} | {_fmt(enrolled['runs_per_s'])} "
            f"| {_fmt(engine['runs_per_s'])} | {_fmt(engine['steps_per_s'])} "
            f"| {_fmt(baseline['rows_per_s'])} | {r['engine_pct_of_baseline']:.1f}% "
            f"| {_fmt(r['same_rows']['rows_per_s'])} | {r['engine_pct_of_same_rows']:.0f}% "
            f"| {r['same_rows_pct_of_baseline']:.0f}% "
            f"| {engine['peak_rss_mb']:.0f} / {enrolled['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "Per pass: wall seconds measured by the parent between barriers. Pass 1 = 3 steps "
        "per run; pass 2 = 2 steps per run and a `workflow.completed` event. CPU seconds "
        "over both passes, read from /proc: the engine's worker processes (SQLite's work "
        "included) and the PostgreSQL server processes. Other load = the share of the host's "
        "CPUs busy with anything else (other jobs on this shared machine) during the passes.",
        "",
        "| backend | N | workers | enroll s | engine pass 1 s | engine pass 2 s "
        "| engine CPU s (workers / PostgreSQL) | other load | same rows, bare: pass 1 s "
        "| pass 2 s | CPU s (client / PostgreSQL) | baseline pass 1 s "
        "| baseline pass 2 s | advance RSS MiB ready → peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        engine, baseline, same = r["engine"], r["baseline"], r["same_rows"]
        e1, e2 = (p["seconds"] for p in engine["passes"])
        s1, s2 = (p["seconds"] for p in same["passes"])
        b1, b2 = (p["seconds"] for p in baseline["passes"])
        lines.append(
            f"| {r['backend']} | {r['n']:,} | {r['workers']} | {r['enroll']['seconds']:.1f} "
            f"| {e1:.1f} | {e2:.1f} "
            f"| {engine['client_cpu_s']:.0f} / {engine['postgres_cpu_s']:.0f} "
            f"| {engine['other_load_pct']:.0f}% | {s1:.1f} | {s2:.1f} "
            f"| {same['client_cpu_s']:.0f} / {same['postgres_cpu_s']:.0f} | {b1:.2f} | {b2:.2f} "
            f"| {engine['ready_rss_mb']:.0f} → {engine['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        f"Workflow (with a `fields` document declaring `bench_stage`), batches of {BATCH} runs, "
        f"enrollment in calls of {ENROLL_BATCH}:",
        "",
        "```yaml",
        WORKFLOW_YAML.rstrip("\n"),
        "```",
        END_MARK,
    ]
    return "\n".join(lines)


RESULTS_HEADER = """\
# Benchmark results

## Engine throughput (`bench/engine.py`)

Regenerate with `python bench/engine.py` (the block between the markers is
rewritten; the rest of this file is kept).
"""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_report(
    report: dict[str, Any], *, json_path: Path, markers: tuple[str, str], heading: str, block: str
) -> None:
    """Raw numbers to `json_path`; `block` between `markers` in RESULTS.md (added under
    `heading` the first time), the rest of the file kept."""
    json_path.parent.mkdir(exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    begin, end = markers
    text = RESULTS_MD.read_text(encoding="utf-8")
    marked = f"{begin}\n{block}\n{end}"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + marked + rest.split(end, 1)[1]
    else:
        text = f"{text.rstrip()}\n\n{heading}\n\n{marked}\n"
    RESULTS_MD.write_text(text, encoding="utf-8")


def write_markdown(report: dict[str, Any]) -> None:
    block = markdown_block(report)
    text = RESULTS_MD.read_text(encoding="utf-8") if RESULTS_MD.exists() else RESULTS_HEADER
    if BEGIN_MARK in text and END_MARK in text:
        head, rest = text.split(BEGIN_MARK, 1)
        tail = rest.split(END_MARK, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS_MD.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated N values")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--workers", type=int, default=2, help="PostgreSQL worker processes (also run with 1)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CAREPATH_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a server database to connect to; the bench creates and drops its own database",
    )
    parser.add_argument("--profile-dir", type=Path, help="write cProfile stats of every phase here")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone"
    )
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.profile_dir:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_facts(args.postgres_url, args.backends)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    started = time.perf_counter()
    results = []
    for backend in args.backends:
        worker_counts = sorted({1, args.workers}) if backend == "postgresql" else [1]
        for n in args.sizes:
            for workers in worker_counts:
                results.append(bench_one(backend, n, workers, args.postgres_url, args.profile_dir))
    report = {
        "date": date,
        "command": " ".join(["python", "bench/engine.py", *sys.argv[1:]]),
        "machine": machine,
        "workflow": yaml.safe_load(WORKFLOW_YAML),
        "batch_size": BATCH,
        "enroll_batch": ENROLL_BATCH,
        "postgres_baseline_claim": PG_CLAIM.strip(),
        "total_seconds": time.perf_counter() - started,
        "results": results,
    }
    print(markdown_block(report))
    if not args.no_write:
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        write_markdown(report)


if __name__ == "__main__":
    main()
