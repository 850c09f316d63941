"""`carepath demo --scenario preventive`: the preventive-care examples over a simulated year.

A synthetic panel with a past, on SQLite, over real SMTP: segments recount
daily, birthdays and post-procedure check-ins fire on their dates, reminders
are answered at plausible rates. The result is the enrollments per month.
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from rich.progress import Progress

from carepath.db.connection import read_only
from carepath.db.schema import runs
from carepath.domain.access import SYSTEM
from carepath.entrypoints.demo import examples_dir, fresh_sqlite, load_examples, with_smtp_sink
from carepath.services import catalog_store, contacts, reports
from carepath.services.context import EngineContext
from carepath.services.preventive_simulation import PreventivePanel
from carepath.services.setup import init_database
from carepath.services.work import advance_clock

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
SIMULATED_DAYS = 365
WORKFLOWS = (
    "annual-wellness",
    "mammography-reminder",
    "birthday-greeting",
    "post-procedure-check-ins",
    "re-engagement",
)


@dataclass(frozen=True)
class PreventiveResult:
    enrollments: dict[str, Counter[str]]  # month (YYYY-MM) -> workflow -> runs started
    outbox: dict[str, int]
    smtp_received: int


def run_preventive_demo(
    path: Path, *, contacts_count: int, seed: int, console: Console
) -> PreventiveResult:
    engine = init_database(fresh_sqlite(path), simulated_clock=START)
    with engine.begin() as conn:
        catalog_store.apply_documents(conn, load_examples(examples_dir("preventive")), now=START)
    panel = PreventivePanel(random.Random(seed), START)  # noqa: S311 - seeded simulation
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "patients.csv"
        panel.write_contacts_csv(export, contacts_count)
        with engine.begin() as conn:
            schema = catalog_store.build_current(conn).catalog.schema
            contacts.import_contacts(conn, export, schema, now=START, who=SYSTEM)
            panel.record_history(conn, list(range(1, contacts_count + 1)))

    def live(ctx: EngineContext) -> None:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("simulating a year", total=SIMULATED_DAYS)
            for day in range(SIMULATED_DAYS):
                now, _ = advance_clock(ctx, timedelta(days=1))
                with engine.begin() as conn:
                    panel.live_a_day(conn, now, schema)
                progress.update(bar, completed=day + 1)

    received = with_smtp_sink(engine, live)
    with read_only(engine) as conn:
        started = conn.execute(sa.select(runs.c.workflow, runs.c.started_at)).all()
        outbox_counts = reports.message_counts(conn)
    engine.dispose()
    months: dict[str, Counter[str]] = {}
    for workflow, at in started:
        months.setdefault(at.strftime("%Y-%m"), Counter())[workflow] += 1
    return PreventiveResult(dict(sorted(months.items())), outbox_counts, received)
