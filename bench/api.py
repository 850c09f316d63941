"""Event ingestion over real HTTP: `carepath serve` on PostgreSQL, next to a trivial endpoint.

For each run, on a fresh throw-away PostgreSQL database:
1. N contacts (one set-based insert) and an API key with `events:write`;
2. `carepath serve --workers W` in its own processes, on a free port;
3. a load client in another process: CONNECTIONS keep-alive HTTP/1.1
   connections, each sending its next request when the previous answer is
   read (a small client written for this bench on asyncio streams: a general
   HTTP library costs more per request than the server being measured);
4. measured, in this order, each for DURATION seconds after a warm-up:
   - `GET /healthz` (no database, no key): the server's trivial rate;
   - `POST /v1/events` with one event per request;
   - `POST /v1/events` with batches of BATCH events.
   Events name contacts by external id, spread over all N, each with a new
   idempotency key. Latency is per request (p50, p99).

Targets on PostgreSQL: batched ingestion >= 25,000 events/s; single-event
POSTs >= 25 % of the trivial endpoint's requests/s; p99 < 50 ms.

    python bench/api.py [--contacts 100000] [--workers 1,2] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from carepath.services.api_keys import create_key
from carepath.services.setup import init_database

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import (  # the engine bench's helpers, beside this file
    DEFAULT_POSTGRES_URL,
    T0,
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
RESULTS_JSON = BENCH_DIR / "results" / "api.json"
BEGIN_MARK = "<!-- bench/api.py: generated results begin -->"
END_MARK = "<!-- bench/api.py: generated results end -->"
CONNECTIONS = 32
BATCH = 1000
DURATION = 10.0
WARMUP = 2.0


# ------------------------------------------------------------------ client


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read the whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status


def request_bytes(method: str, path: str, port: int, body: bytes = b"", key: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def drive(
    port: int, make_request: Callable[[int], bytes], duration: float
) -> tuple[int, list[float], dict[int, int]]:
    """Requests answered in `duration` (after a warm-up), their latencies, status counts."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**12))
    start = time.perf_counter()
    measure_from, stop_at = start + WARMUP, start + WARMUP + duration

    async def lane() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = Connection(reader, writer)
        while (now := time.perf_counter()) < stop_at:
            status = await conn.exchange(make_request(next(counter)))
            done = time.perf_counter()
            if now >= measure_from:
                latencies.append(done - now)
                statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    await asyncio.gather(*(lane() for _ in range(CONNECTIONS)))
    return len(latencies), latencies, statuses


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def client_process(port: int, key: str, n_contacts: int, results: Any) -> None:
    """Runs the three measurements one after the other and hands back the numbers."""

    def health(_: int) -> bytes:
        return request_bytes("GET", "/healthz", port)

    def event(i: int) -> dict[str, object]:
        return {
            "type": "visit.completed",
            "contact": {"external_id": f"bench-{i % n_contacts + 1}"},
            "idempotency_key": f"bench-{os.getpid()}-{i}",
            "data": {"site": "main"},
        }

    pid = os.getpid()

    def event_text(i: int) -> str:
        # The JSON of `event(i)`, written directly: at tens of thousands of events a
        # second, json.dumps in this process would take CPU the server is measured on.
        return (
            f'{{"type": "visit.completed", "contact": {{"external_id": '
            f'"bench-{i % n_contacts + 1}"}}, "idempotency_key": "bench-{pid}-{i}", '
            f'"data": {{"site": "main"}}}}'
        )

    assert json.loads(event_text(7)) == event(7)

    def single(i: int) -> bytes:
        return request_bytes("POST", "/v1/events", port, event_text(i).encode(), key)

    def batch(i: int) -> bytes:
        items = ", ".join(event_text(i * BATCH + j) for j in range(BATCH))
        return request_bytes("POST", "/v1/events", port, f'{{"events": [{items}]}}'.encode(), key)

    out: dict[str, Any] = {}
    for name, make, per_request in (
        ("trivial", health, 1),
        ("single", single, 1),
        ("batch", batch, BATCH),
    ):
        count, latencies, statuses = asyncio.run(drive(port, make, DURATION))
        out[name] = {
            "requests_per_s": count / DURATION,
            "events_per_s": count * per_request / DURATION if name != "trivial" else None,
            "p50_ms": percentile(latencies, 0.50) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "statuses": statuses,
        }
    results.put(out)


# ------------------------------------------------------------------ server


def start_server(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    # The per-key rate limit (1,000 requests/s by default) would cap what is measured.
    env = {**os.environ, "CAREPATH_DATABASE_URL": url, "CAREPATH_API_RATE_PER_SECOND": "1000000"}
    command = [
        sys.executable,
        "-m",
        "carepath",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request_bytes("GET", "/readyz", port))
                if b" 200 " in sock.recv(200):
                    time.sleep(1.0)  # let every worker process finish starting
                    return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("carepath serve did not become ready")


def bench(admin_url: str, n_contacts: int, workers: int) -> dict[str, Any]:
    with throwaway_database("postgresql", admin_url) as url:
        engine = init_database(url, simulated_clock=None)
        try:
            insert_contacts(engine, n_contacts)
            with engine.begin() as conn:
                key = create_key(conn, name="bench", scopes=["events:write"], now=T0).secret
            analyze(engine)
        finally:
            engine.dispose()
        port = free_port()
        server = start_server(url, port, workers)
        try:
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            client = context.Process(target=client_process, args=(port, key, n_contacts, results))
            client.start()
            measured: dict[str, Any] = results.get(timeout=600)
            client.join(60)
        finally:
            server.terminate()
            server.wait(timeout=30)
        check = sa.create_engine(url)
        try:
            with check.connect() as conn:
                stored = conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
        finally:
            check.dispose()
    measured["events_stored"] = stored
    single, trivial = measured["single"], measured["trivial"]
    measured["single_share_of_trivial"] = single["requests_per_s"] / trivial["requests_per_s"]
    return measured


# ------------------------------------------------------------------ report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Run on {report['started']} with `{report['command']}`.",
        "",
        f"Machine: {report['machine']}. carepath at {report['revision']}.",
        "",
        f"PostgreSQL, {report['contacts']:,} contacts, `carepath serve --workers W`, "
        f"{CONNECTIONS} keep-alive connections, {DURATION:.0f} s each.",
        "",
        "| W | request | requests/s | events/s | p50 ms | p99 ms | statuses |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    shares = []
    for workers, r in report["results"].items():
        rows = [
            ("`GET /healthz` (trivial)", r["trivial"], "-"),
            ("`POST /v1/events`, 1 event", r["single"], f"{r['single']['events_per_s']:,.0f}"),
            (
                f"`POST /v1/events`, {BATCH} events",
                r["batch"],
                f"{r['batch']['events_per_s']:,.0f}",
            ),
        ]
        for name, row, events in rows:
            statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(row["statuses"].items()))
            lines.append(
                f"| {workers} | {name} | {row['requests_per_s']:,.0f} | {events} "
                f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {statuses} |"
            )
        shares.append(
            f"- W = {workers}: single-event POSTs at {r['single_share_of_trivial']:.0%} of the "
            f"trivial endpoint's rate; events stored: {r['events_stored']:,}."
        )
    return "\n".join([*lines, "", *shares])


def write_results(report: dict[str, Any]) -> None:
    write_report(
        report,
        json_path=RESULTS_JSON,
        markers=(BEGIN_MARK, END_MARK),
        heading="## Event ingestion over HTTP (`bench/api.py`)",
        block=markdown(report),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2", help="server processes, comma-separated")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    facts = machine_facts(args.postgres_url, ["postgresql"])
    report = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/api.py " + " ".join(sys.argv[1:]),
        "machine": ", ".join(
            f"{k} {v}" for k, v in facts.items() if isinstance(v, str | int | float)
        ),
        "revision": git_revision(),
        "contacts": args.contacts,
        "results": {
            workers: bench(args.postgres_url, args.contacts, workers)
            for workers in (int(w) for w in args.workers.split(","))
        },
    }
    print(markdown(report))
    if not args.no_write:
        write_results(report)


if __name__ == "__main__":
    main()
