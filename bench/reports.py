"""Reports on PostgreSQL over a large history: the funnel, engagement, the message log.

On one fresh throw-away database this script loads, with COPY, N runs of a
five-step journey (with their run_steps), 5·N messages in the outbox and
their events (every message sent, a share opened and clicked, a few bounced),
then ANALYZE, and times each report as `carepath report` computes it (best
of three): the funnel, engagement per step, and the message log's first page
for one workflow. The funnel is timed as it stands after the load (every day
noted as changed: counted from history), then after the workers' refresh has
rolled every day up, and with the latest day's runs moved since (one day
counted from history). Results go to bench/results/reports.json and RESULTS.md.

    python bench/reports.py [--runs 1000000] [--messages-per-run 5]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from carepath.db.connection import read_only
from carepath.domain.access import SYSTEM
from carepath.services.catalog_store import apply_documents, build_current
from carepath.services.documents import load_text
from carepath.services.engagement import engagement_report
from carepath.services.funnel_rollup import refresh_funnels
from carepath.services.message_log import LogFilter, message_log
from carepath.services.reports import funnel, run_status_counts
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
RESULTS_JSON = BENCH_DIR / "results" / "reports.json"
MARKERS = (
    "<!-- bench/reports.py: generated results begin -->",
    "<!-- bench/reports.py: generated results end -->",
)
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
DOCUMENTS = """
template: note
subject: A note
html: <p>A note</p>
---
workflow: journey
trigger: manual
goal: {event: visit.booked}
steps:
  first: {email: note, next: second}
  second: {email: note, next: third}
  third: {email: note, next: fourth}
  fourth: {email: note, next: fifth}
  fifth: {email: note, next: done}
  done: {exit: completed}
"""
STEPS = ["first", "second", "third", "fourth", "fifth"]


def _copy(cur: psycopg.Cursor[Any], table: str, columns: str, lines: Callable[[], Any]) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for chunk in lines():
            copy.write(chunk)


def load(url: str, runs: int, per_run: int, rng: random.Random) -> None:
    stamp = NOW.isoformat()
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur:
        resource = cur.execute(
            "SELECT id FROM resources WHERE kind = 'workflow' AND name = 'journey'"
        ).fetchone()
        assert resource is not None

        def contacts() -> Any:  # no identifiers: reports never read them
            for start in range(0, runs, 200_000):
                yield "".join(
                    f"[]\t{{}}\t{stamp}\t{stamp}\n"
                    for _ in range(start, min(runs, start + 200_000))
                )

        columns = "tags, attributes, created_at, updated_at"
        _copy(cur, "contacts", columns, contacts)
        starts = [NOW - timedelta(seconds=rng.randrange(90 * 86_400)) for _ in range(runs)]
        statuses = rng.choices(
            ["completed", "converted", "waiting", "exited"], [6, 1, 2, 1], k=runs
        )

        def run_rows() -> Any:
            for start in range(0, runs, 200_000):
                chunk = io.StringIO()
                for i in range(start, min(runs, start + 200_000)):
                    status = statuses[i]
                    ended = (
                        "\\N"
                        if status == "waiting"
                        else (starts[i] + timedelta(days=5)).isoformat()
                    )
                    chunk.write(
                        f"{i + 1}\tjourney\t{resource[0]}\t1\t{status}\t{{}}\t0\t0\t"
                        f"{starts[i].isoformat()}\t{ended}\t{stamp}\n"
                    )
                yield chunk.getvalue()

        columns = (
            "contact_id, workflow, resource_id, workflow_version, status, visits, chain_depth, "
            "revision, started_at, ended_at, updated_at"
        )
        _copy(cur, "runs", columns, run_rows)

        def step_rows() -> Any:
            for start in range(0, runs, 100_000):
                chunk = io.StringIO()
                for i in range(start, min(runs, start + 100_000)):
                    reached = per_run if statuses[i] != "waiting" else rng.randrange(1, per_run)
                    for n in range(reached):
                        at = (starts[i] + timedelta(days=n)).isoformat()
                        left = (starts[i] + timedelta(days=n + 1)).isoformat()
                        chunk.write(
                            f"{i + 1}\t{i + 1}\tjourney\t1\t{STEPS[n]}\temail\tdone\t{at}\t{left}\n"
                        )
                yield chunk.getvalue()

        columns = (
            "run_id, contact_id, workflow, workflow_version, step, kind, outcome, entered_at, "
            "left_at"
        )
        _copy(cur, "run_steps", columns, step_rows)

        total = runs * per_run
        # What happens to each message, decided once: the outbox row and its events agree.
        fates = rng.choices(["sent", "opened", "clicked", "bounced"], [63, 24.5, 10.5, 2], k=total)

        def message_rows() -> Any:
            n = 0
            for start in range(0, runs, 100_000):
                chunk = io.StringIO()
                for i in range(start, min(runs, start + 100_000)):
                    for step in STEPS[:per_run]:
                        fate = fates[n]
                        n += 1
                        at = (starts[i] + timedelta(days=STEPS.index(step))).isoformat()
                        opened = at if fate in ("opened", "clicked") else "\\N"
                        clicked, clicks = (at, 1) if fate == "clicked" else ("\\N", 0)
                        per_link = '{"0": 1}' if fate == "clicked" else "\\N"
                        bounce = "hard" if fate == "bounced" else "\\N"
                        chunk.write(
                            f"{i + 1}\t{i + 1}\tjourney\t{step}\temail\tnote\t1\t<m{n}@bench>"
                            f"\t\t\t\tsent\t1\t{at}\t{at}\t{at}\tmarketing\t{opened}\t{clicked}"
                            f"\t{clicks}\t{bounce}\t{per_link}\n"
                        )
                yield chunk.getvalue()

        columns = (
            "contact_id, run_id, workflow, step, channel, template, template_version, message_id, "
            "subject, html, text, status, attempts, next_attempt_at, created_at, sent_at, purpose, "
            "opened_at, clicked_at, clicks, bounce, link_clicks"
        )
        _copy(cur, "outbox", columns, message_rows)

        def event_rows() -> Any:
            n = 0
            for start in range(1, total + 1, 200_000):
                chunk = io.StringIO()
                for outbox_id in range(start, min(total + 1, start + 200_000)):
                    contact = (outbox_id - 1) // per_run + 1
                    fate = fates[outbox_id - 1]
                    happened = [("email.sent", "")]
                    if fate in ("opened", "clicked"):
                        happened.append(("email.opened", ', "machine": false'))
                    if fate == "clicked":
                        happened.append(("email.clicked", ', "link": 0, "machine": false'))
                    if fate == "bounced":
                        happened.append(("email.bounced", ', "bounce": "hard"'))
                    for kind, extra in happened:
                        n += 1
                        chunk.write(
                            f"e{n}\t{kind}\t{contact}\t{stamp}\t{stamp}\t"
                            f'{{"outbox_id": {outbox_id}{extra}}}\tbench\t0\t{stamp}\n'
                        )
                yield chunk.getvalue()

        columns = (
            "idempotency_key, type, contact_id, occurred_at, received_at, data, source, "
            "chain_depth, processed_at"
        )
        _copy(cur, "events", columns, event_rows)
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")


def best_of(times: int, work: Callable[[], object]) -> float:
    timings = []
    for _ in range(times):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def _move_latest_day(engine: Any) -> int:
    """Touch the runs that started on the latest day, as workers advancing them would."""
    with engine.begin() as conn:
        return int(
            conn.exec_driver_sql(
                "UPDATE runs SET updated_at = updated_at + interval '1 second' WHERE started_at >= "
                "(SELECT date_trunc('day', max(started_at)) FROM runs)"
            ).rowcount
        )


def bench(admin_url: str, runs: int, per_run: int) -> dict[str, Any]:
    rng = random.Random(20261129)
    with throwaway_database("postgresql", admin_url) as url:
        engine = init_database(url, simulated_clock=None)
        try:
            docs, problems = load_text(DOCUMENTS, "bench.yaml")
            assert not problems, problems
            with engine.begin() as conn:
                apply_documents(conn, docs, now=NOW)
            started = time.perf_counter()
            load(url, runs, per_run, rng)
            load_s = time.perf_counter() - started
            with read_only(engine) as conn:
                definition = build_current(conn).catalog.workflows["journey"]

                def report() -> object:
                    return funnel(conn, definition), run_status_counts(conn, "journey")

                cold_s = best_of(1, report)
                refresh_s = best_of(1, lambda: refresh_funnels(engine, limit=100_000))
                funnel_s = best_of(3, report)
                moved = _move_latest_day(engine)
                one_changed_s = best_of(3, report)
                refresh_day_s = best_of(1, lambda: refresh_funnels(engine, limit=1))
                engagement_s = best_of(3, lambda: engagement_report(conn, definition))
                links = engagement_report(conn, definition)["links"]
                assert links, "no clicks per link: the load differs from what carepath keeps"
                which = LogFilter(workflow="journey")
                log_s = best_of(3, lambda: message_log(conn, which, who=SYSTEM, now=NOW))
                counts = conn.exec_driver_sql(
                    "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM outbox), "
                    "(SELECT count(*) FROM events), (SELECT count(*) FROM run_steps)"
                ).one()
        finally:
            engine.dispose()
    return {
        "load_s": load_s,
        "runs": counts[0],
        "messages": counts[1],
        "events": counts[2],
        "run_steps": counts[3],
        "funnel_cold_s": cold_s,
        "refresh_all_s": refresh_s,
        "funnel_s": funnel_s,
        "moved_runs": moved,
        "funnel_one_changed_day_s": one_changed_s,
        "refresh_one_day_s": refresh_day_s,
        "engagement_s": engagement_s,
        "message_log_page_s": log_s,
    }


def markdown(report: dict[str, Any]) -> str:
    r = report["result"]
    return "\n".join(
        [
            f"Run on {report['started']} with `{report['command']}`.",
            "",
            f"Machine: {report['machine']}. carepath at {report['revision']}.",
            "",
            f"PostgreSQL: {r['runs']:,} runs, {r['run_steps']:,} steps, {r['messages']:,} "
            f"messages, {r['events']:,} events (loaded with COPY in {r['load_s']:.0f} s). "
            "Best of three, target 2 s each:",
            "",
            "| report | time |",
            "|---|---:|",
            f"| funnel (`carepath report funnel`), every day rolled up | {r['funnel_s']:.3f} s |",
            f"| funnel, the latest day's {r['moved_runs']:,} runs moved since "
            f"| {r['funnel_one_changed_day_s']:.3f} s |",
            f"| funnel right after loading, every day counted from history "
            f"| {r['funnel_cold_s']:.2f} s |",
            f"| engagement per step, links, A/B (`report engagement`) "
            f"| {r['engagement_s']:.2f} s |",
            f"| message log, first page (`report messages`) | {r['message_log_page_s']:.3f} s |",
            "",
            "The workers' side of the funnel: rolling up every day after the load took "
            f"{r['refresh_all_s']:.1f} s (once); counting one moved day again, "
            f"{r['refresh_one_day_s']:.2f} s.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--messages-per-run", type=int, default=5, choices=range(1, 6))
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    facts = machine_facts(args.postgres_url, ["postgresql"])
    report = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/reports.py " + " ".join(sys.argv[1:]),
        "machine": ", ".join(
            f"{k} {v}" for k, v in facts.items() if isinstance(v, str | int | float)
        ),
        "revision": git_revision(),
        "result": bench(args.postgres_url, args.runs, args.messages_per_run),
    }
    print(markdown(report))
    if not args.no_write:
        write_report(
            report,
            json_path=RESULTS_JSON,
            markers=MARKERS,
            heading="## Reports (`bench/reports.py`)",
            block=markdown(report),
        )


if __name__ == "__main__":
    main()
