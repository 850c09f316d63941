"""Segments on PostgreSQL: a full recount next to the bare query, and incremental re-checks.

On one fresh throw-away database this script:

1. loads N contacts and 10·N events with COPY (sex, birth date, a custom `bmi`
   attribute; five event types spread over two years), then ANALYZE;
2. times the bare SQL query a person would write for the segment below
   (`SELECT count(*)` over it: the cheapest way to select those contacts),
   best of three;
3. times carepath's full recount of that segment: the first one (everyone
   enters: members and `segment.entered` events written) and a second one
   after 1 % of the contacts changed (the usual daily recount);
4. queues 10,000 changed contacts and times the worker's re-check of the
   queue in batches (contacts/s), then re-checks single contacts one at a
   time (the latency after one event), median and p99.

The segment has four predicates: two core attributes, a custom attribute and
an event-history predicate (lack of engagement):

    {all: [{field: contact.sex, eq: female}, {field: contact.age, gte: 40},
           {field: contact.bmi, gte: 30}, {event: email.opened, count: 0, within: 90d}]}

Results go to bench/results/segments.json and between markers in RESULTS.md.

    python bench/segments.py [--contacts 1000000] [--events-per-contact 10]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from carepath.db.schema import segment_checks
from carepath.services.catalog_store import apply_documents, build_current
from carepath.services.documents import load_text
from carepath.services.segments import StaleSegment, recheck, recount_fully, take_queued
from carepath.services.setup import init_database

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import (  # the engine bench's helpers, beside this file
    DEFAULT_POSTGRES_URL,
    git_revision,
    libpq_url,
    machine_facts,
    throwaway_database,
    write_report,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_JSON = BENCH_DIR / "results" / "segments.json"
MARKERS = (
    "<!-- bench/segments.py: generated results begin -->",
    "<!-- bench/segments.py: generated results end -->",
)
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
DOCUMENTS = """
fields:
  bmi: number
---
segment: screening-due
condition:
  all:
    - {field: contact.sex, eq: female}
    - {field: contact.age, gte: 40}
    - {field: contact.bmi, gte: 30}
    - {event: email.opened, count: 0, within: 90d}
"""
BARE_QUERY = """
SELECT count(*) FROM contacts c
WHERE c.erased_at IS NULL AND c.sex = 'female' AND c.birth_date <= %(born_by)s
  AND jsonb_typeof(c.attributes -> 'bmi') = 'number' AND (c.attributes ->> 'bmi')::numeric >= 30
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.contact_id = c.id
                  AND e.type = 'email.opened' AND e.occurred_at >= %(since)s)
"""
EVENT_TYPES = ["email.sent", "email.delivered", "email.opened", "email.clicked", "page.visited"]
QUEUED = 10_000
SINGLES = 300


def load(url: str, n: int, per_contact: int, rng: random.Random) -> None:
    """N contacts and per_contact·N events with COPY, in chunks of preformatted text."""
    stamp = NOW.isoformat()
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur:
        columns = "external_id, email, sex, birth_date, tags, attributes, created_at, updated_at"
        with cur.copy(f"COPY contacts ({columns}) FROM STDIN") as copy:
            for start in range(0, n, 100_000):
                chunk = io.StringIO()
                for i in range(start, min(n, start + 100_000)):
                    sex = "female" if rng.random() < 0.5 else "male"
                    born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 65))
                    bmi = round(rng.uniform(18, 45), 1)
                    chunk.write(
                        f"MRN-{i}\tp{i}@example.test\t{sex}\t{born}\t[]\t"
                        f'{{"bmi": {bmi}}}\t{stamp}\t{stamp}\n'
                    )
                copy.write(chunk.getvalue())
        columns = (
            "idempotency_key, type, contact_id, occurred_at, received_at, data, source, "
            "chain_depth, processed_at"
        )
        total = n * per_contact
        with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
            for start in range(0, total, 200_000):
                chunk = io.StringIO()
                for i in range(start, min(total, start + 200_000)):
                    kind = EVENT_TYPES[rng.randrange(len(EVENT_TYPES))]
                    at = NOW - timedelta(seconds=rng.randrange(730 * 86_400))
                    contact = rng.randrange(1, n + 1)
                    chunk.write(
                        f"e{i}\t{kind}\t{contact}\t{at.isoformat()}\t{stamp}\t{{}}\tbench\t0\t"
                        f"{stamp}\n"
                    )
                copy.write(chunk.getvalue())
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")


def bare_query_seconds(url: str) -> tuple[float, int]:
    born_by = NOW.date().replace(year=NOW.year - 40)
    since = NOW - timedelta(days=90)
    timings: list[float] = []
    count = 0
    with psycopg.connect(libpq_url(url)) as conn:
        for _ in range(3):
            started = time.perf_counter()
            row = conn.execute(BARE_QUERY, {"born_by": born_by, "since": since}).fetchone()
            timings.append(time.perf_counter() - started)
            count = int(row[0]) if row else 0
    return min(timings), count


def change_contacts(engine: sa.Engine, share: float, rng: random.Random, n: int) -> list[int]:
    """Give a share of the contacts a new bmi (the attribute flips across 30)."""
    ids = rng.sample(range(1, n + 1), int(n * share))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE contacts SET attributes = jsonb_build_object('bmi', "
                "CASE WHEN (attributes->>'bmi')::numeric >= 30 THEN 25 ELSE 35 END) "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        )
    return ids


def trace_slow_statements(engine: sa.Engine, threshold_s: float) -> None:
    """Print every statement slower than the threshold (where the time goes)."""

    @sa.event.listens_for(engine, "before_cursor_execute")
    def started(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault("started", []).append(time.perf_counter())

    @sa.event.listens_for(engine, "after_cursor_execute")
    def ended(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        took = time.perf_counter() - conn.info["started"].pop()
        if took >= threshold_s:
            print(f"{took:8.2f} s  {' '.join(statement.split())[:160]}", file=sys.stderr)


def bench(admin_url: str, n: int, per_contact: int, trace: float | None) -> dict[str, Any]:
    rng = random.Random(20261129)
    with throwaway_database("postgresql", admin_url) as url:
        engine = init_database(url, simulated_clock=None)
        if trace is not None:
            trace_slow_statements(engine, trace)
        try:
            docs, problems = load_text(DOCUMENTS, "bench.yaml")
            assert not problems, problems
            with engine.begin() as conn:
                apply_documents(conn, docs, now=NOW)
            started = time.perf_counter()
            load(url, n, per_contact, rng)
            load_s = time.perf_counter() - started
            bare_s, bare_count = bare_query_seconds(url)
            with engine.connect() as conn:
                current = build_current(conn)
            segment = current.catalog.segments["screening-due"]
            stale = StaleSegment(segment, 1)

            started = time.perf_counter()
            with engine.begin() as conn:
                first = recount_fully(conn, stale, now=NOW)
            first_s = time.perf_counter() - started
            entered = len(first.entered["screening-due"])

            change_contacts(engine, 0.01, rng, n)
            started = time.perf_counter()
            with engine.begin() as conn:
                second = recount_fully(conn, stale, now=NOW + timedelta(hours=1))
            second_s = time.perf_counter() - started
            moved = second.count()

            queued = rng.sample(range(1, n + 1), QUEUED)
            with engine.begin() as conn:
                conn.execute(
                    segment_checks.insert(), [{"contact_id": i, "marked_at": NOW} for i in queued]
                )
            segments = current.catalog.segments
            started = time.perf_counter()
            checked = 0
            while True:
                with engine.begin() as conn:
                    ids = take_queued(conn, 1000)
                    if not ids:
                        break
                    recheck(conn, segments, ids, now=NOW + timedelta(hours=2))
                    checked += len(ids)
            queue_s = time.perf_counter() - started

            latencies: list[float] = []
            for contact_id in rng.sample(range(1, n + 1), SINGLES):
                started = time.perf_counter()
                with engine.begin() as conn:
                    recheck(conn, segments, [contact_id], now=NOW + timedelta(hours=3))
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            engine.dispose()
    latencies.sort()
    return {
        "load_s": load_s,
        "bare_query_s": bare_s,
        "bare_query_count": bare_count,
        "first_recount_s": first_s,
        "first_recount_entered": entered,
        "recount_after_churn_s": second_s,
        "recount_after_churn_moves": moved,
        "first_recount_ratio": first_s / bare_s,
        "recount_after_churn_ratio": second_s / bare_s,
        "queue_contacts": checked,
        "queue_contacts_per_s": checked / queue_s,
        "single_recheck_ms_p50": statistics.median(latencies),
        "single_recheck_ms_p99": latencies[int(len(latencies) * 0.99) - 1],
    }


def markdown(report: dict[str, Any]) -> str:
    r = report["result"]
    return "\n".join(
        [
            f"Run on {report['started']} with `{report['command']}`.",
            "",
            f"Machine: {report['machine']}. carepath at {report['revision']}.",
            "",
            f"PostgreSQL, {report['contacts']:,} contacts and {report['events']:,} events "
            f"(loaded with COPY in {r['load_s']:.0f} s). Segment: 4 predicates (sex, age, "
            "a custom number, no email opened in 90 days).",
            "",
            "| measure | time | vs bare query | detail |",
            "|---|---:|---:|---|",
            f"| bare query (`SELECT count(*)`, best of 3) | {r['bare_query_s']:.2f} s | 1.0x "
            f"| {r['bare_query_count']:,} contacts |",
            f"| first full recount (all enter) | {r['first_recount_s']:.2f} s "
            f"| {r['first_recount_ratio']:.1f}x | {r['first_recount_entered']:,} members and "
            "`segment.entered` events written |",
            f"| full recount after 1 % of contacts changed | {r['recount_after_churn_s']:.2f} s "
            f"| {r['recount_after_churn_ratio']:.1f}x | {r['recount_after_churn_moves']:,} moves |",
            "",
            f"Queued re-checks: {r['queue_contacts']:,} contacts at "
            f"{r['queue_contacts_per_s']:,.0f} contacts/s (batches of 1,000). "
            f"One contact re-checked alone: p50 {r['single_recheck_ms_p50']:.2f} ms, p99 "
            f"{r['single_recheck_ms_p99']:.2f} ms (transaction included).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events-per-contact", type=int, default=10)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--trace", type=float, metavar="SECONDS", help="print statements slower than this"
    )
    args = parser.parse_args()
    facts = machine_facts(args.postgres_url, ["postgresql"])
    report = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/segments.py " + " ".join(sys.argv[1:]),
        "machine": ", ".join(
            f"{k} {v}" for k, v in facts.items() if isinstance(v, str | int | float)
        ),
        "revision": git_revision(),
        "contacts": args.contacts,
        "events": args.contacts * args.events_per_contact,
        "result": bench(args.postgres_url, args.contacts, args.events_per_contact, args.trace),
    }
    print(markdown(report))
    if not args.no_write:
        write_report(
            report,
            json_path=RESULTS_JSON,
            markers=MARKERS,
            heading="## Segments (`bench/segments.py`)",
            block=markdown(report),
        )


if __name__ == "__main__":
    main()
