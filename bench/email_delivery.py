"""Email throughput: render N personalised messages into the outbox and deliver them over SMTP.

For each backend and N, on a fresh throw-away database:

1. applies a template and a one-step workflow, bulk-inserts N contacts with
   addresses and names, enrolls them and advances them with the engine: every
   run renders its message into the outbox (timed: *render msg/s*);
2. delivers the outbox with `deliver_outbox` and the pooled aiosmtplib sender
   (16 connections, `pool=16`) to an aiosmtpd sink running in another
   process (timed: *deliver msg/s*; every message must end `sent`);
3. sends N messages of the same size with a bare aiosmtplib loop over 8
   reused connections to the same sink, in the same run (*raw msg/s*): the
   ceiling for this machine, client and server. (More connections do not
   raise it: the sink, one Python process, is the bottleneck.)

4. on a second fresh database prepared the same way, starts the worker
   processes a deployment would run (WORKERS: one per CPU on PostgreSQL; one
   on SQLite, whose file has a single writer, so that a second worker only
   waits for the first's locks), each running the worker's own loop
   (`run_one_round`: events, runs, outbox, as `carepath worker` does) until
   all N messages are sent (timed: *end to end msg/s*).

The target is end-to-end throughput >= 50 % of the raw rate; the raw rate
is measured right before and right after the carepath phases and averaged
(the sink's speed drifts on a shared host). Results go to
bench/results/email.json and between the markers in bench/RESULTS.md. (The
file is not called email.py: run as a script, that name would hide the
standard library's `email` package from everything it imports.)

    python bench/email_delivery.py [--sizes 10000,100000] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import sqlalchemy as sa
import yaml

from carepath.channels.email import OutgoingEmail, message_bytes
from carepath.channels.smtp import PooledSmtpSender
from carepath.db.connection import make_engine
from carepath.db.schema import contacts, outbox
from carepath.domain.catalog import Document
from carepath.services.catalog_store import apply_documents, build_current
from carepath.services.context import EngineContext
from carepath.services.documents import SourceDocument
from carepath.services.enrollment import EnrollRequest, enroll
from carepath.services.outbox import deliver_outbox
from carepath.services.runner import advance_due_runs
from carepath.services.setup import init_database
from carepath.services.work import run_one_round

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import (  # the engine bench's helpers, beside this file
    DEFAULT_POSTGRES_URL,
    analyze,
    free_port,
    git_revision,
    insert_contacts,
    machine_facts,
    throwaway_database,
    write_report,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
RESULTS_JSON = BENCH_DIR / "results" / "email.json"
BEGIN_MARK = "<!-- bench/email_delivery.py: generated results begin -->"
END_MARK = "<!-- bench/email_delivery.py: generated results end -->"

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
BATCH = 500
RAW_POOL = 8  # the bare loop's connections, as the target names them
# carepath records each message between its content and its final dot (see
# channels/smtp.py); with more connections in flight that commit is hidden.
POOL = 16
# Worker processes in the end-to-end phase: one per CPU here on PostgreSQL; one on
# SQLite (two measured slower than one: one renders under the write lock while the
# other's delivery records wait for it, with every SMTP connection idle).
WORKERS = {"sqlite": 1, "postgresql": 2}
WORKER_TIMEOUT_S = 1800
DOCUMENTS = """\
fields:
  plan: {type: string, class: phi}
---
template: reminder
subject: Your appointment is coming up
html: |
  <h1>Hello {{ contact.first_name }}</h1>
  <p>This is a reminder of your upcoming visit. Please bring your insurance
  card, a list of your medicines and arrive 15 minutes early.</p>
  <p>Your plan: {{ contact.plan }}.</p>
  <p><a href="https://clinic.example.org/visit">Directions and parking</a></p>
---
workflow: bench-reminder
title: One reminder
purpose: treatment
trigger: manual
steps:
  remind: {email: reminder}
"""


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    """aiosmtpd's own discarding handler, in another process."""
    port = free_port()
    command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
    sink = subprocess.Popen(
        [*command, "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return sink, port
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise RuntimeError("the SMTP sink did not start")


def prepare(url: str, n: int) -> None:
    engine = init_database(url, simulated_clock=T0)
    try:
        docs = [
            SourceDocument(Document(f"bench {i}", doc), "yaml")
            for i, doc in enumerate(yaml.safe_load_all(DOCUMENTS))
        ]
        with engine.begin() as conn:
            apply_documents(conn, docs, now=T0)
        insert_contacts(engine, n, addressed=True, attributes={"plan": "gold"})
        with engine.begin() as conn:
            ids = list(conn.execute(sa.select(contacts.c.id)).scalars())
        for start in range(0, n, 1000):
            with engine.begin() as conn:
                current = build_current(conn)
                requests = [EnrollRequest(i, "bench-reminder") for i in ids[start : start + 1000]]
                enroll(conn, current, requests, now=T0, max_chain_depth=5)
        if engine.dialect.name == "postgresql":
            analyze(engine)
    finally:
        engine.dispose()


def render_and_deliver(url: str, n: int, smtp_url: str) -> dict[str, float]:
    engine = make_engine(url)
    sender = PooledSmtpSender(smtp_url)
    ctx = EngineContext(engine=engine, sender=sender, batch_size=BATCH)
    try:
        started = time.perf_counter()
        while advance_due_runs(ctx, now=T0).runs:
            pass
        render_s = time.perf_counter() - started
        started = time.perf_counter()
        while deliver_outbox(ctx, now=T0).sent:
            pass
        deliver_s = time.perf_counter() - started
        with engine.connect() as conn:
            count = sa.func.count().label("count")
            query = sa.select(outbox.c.status, count).group_by(outbox.c.status)
            statuses = {row.status: row.count for row in conn.execute(query)}
        if statuses != {"sent": n}:
            raise AssertionError(f"outbox after delivery: {statuses}")
        return {"render_s": render_s, "deliver_s": deliver_s}
    finally:
        sender.close()
        engine.dispose()


def raw_rate(n: int, port: int) -> float:
    """A bare aiosmtplib loop: RAW_POOL reused connections, pre-built messages like ours."""
    sample = OutgoingEmail(
        outbox_id=1,
        message_id="<raw@carepath.invalid>",
        sender="carepath <no-reply@carepath.invalid>",
        recipient="patient1@example.test",
        subject="Your appointment is coming up",
        html="<h1>Hello Pat1</h1>" + "<p>x</p>" * 40,
        text="Hello Pat1 " * 40,
        created_at=T0,
    )
    body = message_bytes(sample)

    async def lane(count: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        for _ in range(count):
            await client.sendmail("no-reply@carepath.invalid", ["patient1@example.test"], body)
        await client.quit()

    async def run() -> None:
        share = [n // RAW_POOL + (1 if i < n % RAW_POOL else 0) for i in range(RAW_POOL)]
        await asyncio.gather(*(lane(c) for c in share))

    started = time.perf_counter()
    asyncio.run(run())
    return n / (time.perf_counter() - started)


def end_to_end_worker(url: str, n: int, smtp_url: str, barrier: Any) -> None:
    """The worker's loop, until every message is sent (checked whenever a round finds nothing)."""
    engine = make_engine(url)
    sender = PooledSmtpSender(smtp_url)
    # Funnel upkeep off: this server runs without autovacuum, so the history's
    # statistics go stale as the run writes it, and a day's count then takes the
    # planner's worst path (bench/reports.py measures the funnel).
    ctx = EngineContext(engine=engine, sender=sender, batch_size=BATCH, funnel_refresh_seconds=1e9)
    sent_count = sa.select(sa.func.count()).where(outbox.c.status == "sent")
    try:
        barrier.wait()
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        while time.monotonic() < deadline:
            if run_one_round(ctx, now=T0).anything:
                continue
            with engine.connect() as conn:
                if conn.execute(sent_count).scalar_one() >= n:
                    return
            time.sleep(0.01)  # another worker holds what is left
        raise TimeoutError("end-to-end workers did not finish")
    finally:
        sender.close()
        engine.dispose()


def end_to_end(url: str, n: int, smtp_url: str, workers: int) -> float:
    """Seconds for `workers` worker processes to render and send all N messages."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers + 1, timeout=120)
    processes = [
        context.Process(target=end_to_end_worker, args=(url, n, smtp_url, barrier))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    barrier.wait()
    started = time.perf_counter()
    for process in processes:
        process.join(WORKER_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if any(p.exitcode != 0 for p in processes):
        raise AssertionError(f"end-to-end worker exit codes: {[p.exitcode for p in processes]}")
    with closing_engine(url) as engine, engine.connect() as conn:
        count = sa.func.count().label("count")
        query = sa.select(outbox.c.status, count).group_by(outbox.c.status)
        statuses = {row.status: row.count for row in conn.execute(query)}
    if statuses != {"sent": n}:
        raise AssertionError(f"outbox after end-to-end delivery: {statuses}")
    return elapsed


@contextlib.contextmanager
def closing_engine(url: str) -> Iterator[sa.Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def bench_one(backend: str, n: int, admin_url: str, port: int) -> dict[str, Any]:
    smtp_url = f"smtp://127.0.0.1:{port}?tls=none&pool={POOL}"
    print(f"[{backend} N={n}] raw loop", flush=True)
    raw_before = raw_rate(n, port)
    print(f"[{backend} N={n}] preparing", flush=True)
    with throwaway_database(backend, admin_url) as url:
        prepare(url, n)
        print(f"[{backend} N={n}] rendering, then delivering", flush=True)
        timing = render_and_deliver(url, n, smtp_url)
    print(f"[{backend} N={n}] preparing again", flush=True)
    with throwaway_database(backend, admin_url) as url:
        prepare(url, n)
        print(f"[{backend} N={n}] end to end with {WORKERS[backend]} workers", flush=True)
        timing["end_to_end_s"] = end_to_end(url, n, smtp_url, WORKERS[backend])
    print(f"[{backend} N={n}] raw loop again", flush=True)
    raw_after = raw_rate(n, port)
    raw = (raw_before + raw_after) / 2
    end_to_end_rate = n / timing["end_to_end_s"]
    result = {
        "backend": backend,
        "n": n,
        "render_msgs_per_s": n / timing["render_s"],
        "deliver_msgs_per_s": n / timing["deliver_s"],
        "one_worker_msgs_per_s": n / (timing["render_s"] + timing["deliver_s"]),
        "end_to_end_msgs_per_s": end_to_end_rate,
        "workers": WORKERS[backend],
        "raw_msgs_per_s": raw,
        "raw_before_msgs_per_s": raw_before,
        "raw_after_msgs_per_s": raw_after,
        "end_to_end_share_of_raw": end_to_end_rate / raw,
        "pool": POOL,
        "raw_pool": RAW_POOL,
        **timing,
    }
    print(f"[{backend} N={n}] {json.dumps(result)}", flush=True)
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Run on {report['started']} with `{report['command']}`.",
        "",
        f"Machine: {report['machine']}. carepath at {report['revision']}.",
        "",
        "| backend | N | render msg/s | deliver msg/s | one worker, render then deliver msg/s "
        "| end to end msg/s (workers) | raw aiosmtplib msg/s (before / after) "
        "| end to end % of raw |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['backend']} | {r['n']:,} | {r['render_msgs_per_s']:,.0f} "
            f"| {r['deliver_msgs_per_s']:,.0f} | {r['one_worker_msgs_per_s']:,.0f} "
            f"| {r['end_to_end_msgs_per_s']:,.0f} ({r['workers']}) "
            f"| {r['raw_msgs_per_s']:,.0f} ({r['raw_before_msgs_per_s']:,.0f} / "
            f"{r['raw_after_msgs_per_s']:,.0f}) | {r['end_to_end_share_of_raw']:.0%} |"
        )
    lines += [
        "",
        f"SMTP connections: {POOL} per carepath worker, {RAW_POOL} for the raw loop. "
        "Render and deliver: one process, one phase after the other.",
    ]
    return "\n".join(lines)


def write_results(report: dict[str, Any]) -> None:
    write_report(
        report,
        json_path=RESULTS_JSON,
        markers=(BEGIN_MARK, END_MARK),
        heading="## Email throughput (`bench/email_delivery.py`)",
        block=markdown(report),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    sink, port = start_sink()
    try:
        report = {
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python bench/email_delivery.py " + " ".join(sys.argv[1:]),
            "machine": _machine(args.postgres_url, backends),
            "revision": git_revision(),
            "platform": platform.platform(),
            "results": [bench_one(b, n, args.postgres_url, port) for b in backends for n in sizes],
        }
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    print(markdown(report))
    if not args.no_write:
        write_results(report)


def _machine(admin_url: str, backends: list[str]) -> str:
    facts = machine_facts(admin_url, backends)
    return ", ".join(f"{k} {v}" for k, v in facts.items() if isinstance(v, str | int | float))


if __name__ == "__main__":
    main()
