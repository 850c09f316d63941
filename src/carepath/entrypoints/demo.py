"""`carepath demo`: the bariatric journey end to end.

It runs on SQLite, over real SMTP, in simulated time.
"""

from __future__ import annotations

import random
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import Engine

from carepath.channels.smtp import PooledSmtpSender
from carepath.channels.smtp_sink import SmtpSink
from carepath.db.connection import read_only
from carepath.domain.access import SYSTEM
from carepath.entrypoints.charts import funnel_chart
from carepath.errors import ConfigurationError
from carepath.services import catalog_store, contacts, reports
from carepath.services.clock import simulated_now
from carepath.services.context import EngineContext
from carepath.services.documents import SourceDocument, load_paths
from carepath.services.reports import FunnelRow
from carepath.services.setup import init_database
from carepath.services.simulation import Population
from carepath.services.work import advance_clock

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
SIMULATED_DAYS = 150
MAX_STEP = timedelta(days=1)
# What the population does within this window is carried out together.
GROUPING = timedelta(hours=2)
WORKFLOWS = ("bariatric-journey", "surgery-nurture")


@dataclass(frozen=True)
class DemoResult:
    funnels: dict[str, tuple[list[FunnelRow], dict[str, int]]]
    outbox: dict[str, int]
    smtp_received: int
    chart: Path  # the first journey's funnel, drawn next to the database


def examples_dir(name: str = "bariatric") -> Path:
    """examples/NAME from a source checkout, or as shipped inside the package."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "examples" / name, here.parents[1] / "examples" / name):
        if candidate.is_dir():
            return candidate
    raise ConfigurationError(f"the {name} example resources were not found")


def load_examples(folder: Path) -> list[SourceDocument]:
    docs, problems = load_paths([folder])
    if problems:
        raise ConfigurationError(
            "the example resources do not load: " + "; ".join(map(str, problems))
        )
    return docs


def fresh_sqlite(path: Path) -> str:
    """A URL for a new SQLite file at `path`, after removing any old one."""
    if re.match(r"[a-z][a-z0-9+.-]*:/", str(path)):  # Path folds "sqlite:///x" to "sqlite:/x"
        raise ConfigurationError("--db takes a file path for the demo's SQLite file, not a URL")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigurationError(f"--db: the folder {folder} does not exist")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def with_smtp_sink(engine: Engine, live: Callable[[EngineContext], None]) -> int:
    """Run `live` with an engine context that sends to a local SMTP sink; messages received."""
    with SmtpSink() as sink:
        sender = PooledSmtpSender(sink.url)
        try:
            live(EngineContext(engine=engine, sender=sender))
        finally:
            sender.close()
        return len(sink.messages)


def run_demo(path: Path, *, contacts_count: int, seed: int, console: Console) -> DemoResult:
    engine = init_database(fresh_sqlite(path), simulated_clock=START)
    with engine.begin() as conn:
        catalog_store.apply_documents(conn, load_examples(examples_dir()), now=START)
    population = Population(random.Random(seed), START)  # noqa: S311 - seeded simulation, not security
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "contacts.csv"
        population.write_contacts_csv(export, contacts_count)
        with engine.begin() as conn:
            schema = catalog_store.build_current(conn).catalog.schema
            contacts.import_contacts(conn, export, schema, now=START, who=SYSTEM)
    received = with_smtp_sink(engine, lambda ctx: _simulate(ctx, population, console))
    with read_only(engine) as conn:
        current = catalog_store.build_current(conn)
        funnels = {
            name: (
                reports.funnel(conn, current.catalog.workflows[name]),
                reports.run_status_counts(conn, name),
            )
            for name in WORKFLOWS
        }
        outbox_counts = reports.message_counts(conn)
    engine.dispose()
    chart = path.with_name(f"{path.stem}-funnel.png")
    funnel_chart(f"{WORKFLOWS[0]}: contacts per step", funnels[WORKFLOWS[0]][0], chart)
    return DemoResult(funnels, outbox_counts, received, chart)


def _simulate(ctx: EngineContext, population: Population, console: Console) -> None:
    end = START + timedelta(days=SIMULATED_DAYS)
    now = START
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("simulating 150 days", total=SIMULATED_DAYS)
        while now < end:
            planned = population.next_time()
            target = min(end, now + MAX_STEP, max(planned, now) if planned else end)
            target = min(end, max(target, now + GROUPING))
            now, _ = advance_clock(ctx, target - now)
            with ctx.engine.begin() as conn:
                population.act_until(conn, now)
            with ctx.engine.begin() as conn:
                population.react(conn, now)
            progress.update(bar, completed=(now - START).total_seconds() / 86400)
    with read_only(ctx.engine) as conn:
        assert simulated_now(conn) == end
