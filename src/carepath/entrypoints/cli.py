"""The `carepath` command line (Typer + Rich)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.table import Table

from carepath.channels.dkim_signing import DkimSigner
from carepath.channels.links import LinkSigner
from carepath.channels.smtp import PooledSmtpSender
from carepath.db.connection import read_only
from carepath.db.schema import run_steps, runs
from carepath.domain.durations import DurationError, parse_duration
from carepath.domain.fields import parse_datetime
from carepath.domain.json_schema import SCHEMA_KINDS, document_schema
from carepath.domain.runs import Limits
from carepath.domain.sending_windows import FrequencyCap, QuietHours, WindowError
from carepath.entrypoints.audit_commands import audit_app
from carepath.entrypoints.cli_support import (
    DbOption,
    audit_cli,
    audit_cli_change,
    errors_to_exit,
    fail,
    opened_engine,
    out,
    settings_for,
    warn,
)
from carepath.entrypoints.report_commands import (
    print_funnel,
    report_contact,
    report_engagement,
    report_funnel,
    report_messages,
    report_page_views,
)
from carepath.entrypoints.segment_commands import segments_app
from carepath.entrypoints.server_commands import keys_app, serve, workflows_app
from carepath.entrypoints.worker import StopFlag, run_worker
from carepath.errors import ConfigurationError, Problem
from carepath.services import (
    bounces,
    catalog_store,
    contacts,
    outbox,
    previews,
    tasks,
    unsubscribes,
)
from carepath.services.access import cli_principal
from carepath.services.clock import simulated_now, wall_time
from carepath.services.context import EngineContext
from carepath.services.documents import load_paths
from carepath.services.enrollment import EnrollRequest, enroll
from carepath.services.events import ingest_events, read_jsonl
from carepath.services.setup import init_database
from carepath.services.work import advance_clock, drain

# Tracebacks never show local variables: they may hold contact data.
app = typer.Typer(
    help="carepath: patient-journey automation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
clock_app = typer.Typer(help="Show or move the simulated clock.", no_args_is_help=True)
contacts_app = typer.Typer(help="Import contacts.", no_args_is_help=True)
events_app = typer.Typer(help="Ingest events.", no_args_is_help=True)
tasks_app = typer.Typer(help="Contact-center tasks.", no_args_is_help=True)
runs_app = typer.Typer(help="Inspect runs.", no_args_is_help=True)
report_app = typer.Typer(help="Reports.", no_args_is_help=True)
outbox_app = typer.Typer(help="Outgoing messages.", no_args_is_help=True)
bounces_app = typer.Typer(help="Bounce and complaint reports.", no_args_is_help=True)
template_app = typer.Typer(help="Templates.", no_args_is_help=True)
for sub, name in (
    (clock_app, "clock"), (contacts_app, "contacts"), (events_app, "events"),
    (tasks_app, "tasks"), (runs_app, "runs"), (report_app, "report"), (outbox_app, "outbox"),
    (bounces_app, "bounces"), (template_app, "template"), (keys_app, "keys"),
    (workflows_app, "workflows"), (segments_app, "segments"), (audit_app, "audit"),
):  # fmt: skip
    app.add_typer(sub, name=name)


@contextmanager
def engine_context(db: str | None, *, with_smtp: bool = True) -> Iterator[EngineContext]:
    """What a command needs to run the engine; engine and SMTP connection closed at the end."""
    settings = settings_for(db)
    try:
        retry_for = parse_duration(settings.retry_for)
    except DurationError as exc:
        raise ConfigurationError(f"CAREPATH_RETRY_FOR: {exc}") from None
    try:
        quiet = QuietHours.parse(settings.quiet_hours) if settings.quiet_hours else None
    except WindowError as exc:
        raise ConfigurationError(f"CAREPATH_QUIET_HOURS: {exc}") from None
    try:
        cap = FrequencyCap.parse(settings.marketing_cap) if settings.marketing_cap else None
    except WindowError as exc:
        raise ConfigurationError(f"CAREPATH_MARKETING_CAP: {exc}") from None
    links = LinkSigner.from_settings(
        settings.public_url, settings.secret_key, settings.unsubscribe_mailto
    )
    sender = None
    if with_smtp and settings.smtp_url:
        dkim = DkimSigner.from_settings(
            settings.dkim_domain, settings.dkim_selector, settings.dkim_key_file
        )
        sender = PooledSmtpSender(settings.smtp_url, dkim=dkim)
    with opened_engine(db) as engine:
        try:
            yield EngineContext(
                engine=engine,
                sender=sender,
                limits=Limits(
                    max_step_visits=settings.max_step_visits,
                    max_chain_depth=settings.max_chain_depth,
                ),
                lease=timedelta(seconds=settings.lease_seconds),
                batch_size=settings.batch_size,
                send_batch_size=settings.send_batch_size,
                mail_from=settings.mail_from,
                retry_for=retry_for,
                links=links,
                quiet_hours=quiet,
                marketing_cap=cap,
                allow_private_webhooks=settings.webhook_allow_private,
                webhook_cafile=settings.webhook_cafile,
            )
        finally:
            if sender is not None:
                sender.close()


def _parse_moment(text: str) -> datetime:
    try:
        return parse_datetime(text)
    except ValueError:
        fail(f"error: {text!r} is not an ISO 8601 date-time such as 2026-01-05T08:00:00Z")


@app.command()
def init(
    db: DbOption = None,
    simulated_clock: Annotated[
        str | None, typer.Option(help="Start a simulated clock at this UTC time (ISO 8601).")
    ] = None,
) -> None:
    """Create or migrate the database."""
    start = _parse_moment(simulated_clock) if simulated_clock else None
    with errors_to_exit():
        init_database(settings_for(db).database_url, simulated_clock=start).dispose()
    out.print("database ready" + (f"; simulated clock at {start.isoformat()}" if start else ""))


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories of resources.")],
    db: Annotated[
        str | None, typer.Option("--db", help="Also check against what this database stores.")
    ] = None,
) -> None:
    """Check resource files; print each problem as file:line: message."""
    docs, problems = load_paths(paths)
    warnings: list[Problem] = []
    with errors_to_exit():
        if not problems:
            if db:
                with opened_engine(db) as engine, read_only(engine) as conn:
                    problems, warnings = catalog_store.check_and_lint_documents(conn, docs)
            else:
                problems, warnings = catalog_store.check_and_lint_documents(None, docs)
    if problems:
        fail(problems)
    warn(warnings)
    out.print(f"{len(docs)} documents valid")


@app.command()
def apply(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories.")], db: DbOption = None
) -> None:
    """Validate, then store a new version of every resource that changed (all or nothing)."""
    docs, problems = load_paths(paths)
    if problems:
        fail(problems)
    with errors_to_exit(), opened_engine(db) as engine, engine.begin() as conn:
        now = wall_time()
        warnings = catalog_store.check_and_lint_documents(conn, docs)[1]
        applied = catalog_store.apply_documents(conn, docs, now=now)
        changed = [f"{a.kind.value} {a.name} v{a.version}" for a in applied if a.changed]
        if changed:
            detail = ", ".join(changed)
            audit_cli_change(conn, "resources.apply", detail)
    warn(warnings)
    table = Table("kind", "name", "version", "status")
    for item in applied:
        table.add_row(
            item.kind.value,
            item.name,
            str(item.version),
            "new version" if item.changed else "unchanged",
        )
    out.print(table)


@app.command()
def schema(
    kind: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(SCHEMA_KINDS)}.")] = None,
) -> None:
    """Print the JSON Schema of the documents users write."""
    if kind is not None and kind not in SCHEMA_KINDS:
        fail(f"error: unknown kind {kind!r} (expected one of {', '.join(SCHEMA_KINDS)})")
    sys.stdout.write(json.dumps(document_schema(kind), indent=2) + "\n")


@contacts_app.command("import")
def contacts_import(
    file: Annotated[Path, typer.Argument(help=".csv or .jsonl file")], db: DbOption = None
) -> None:
    """Import contacts (upsert by external_id, then email); nothing is written on any error."""
    if not file.is_file():
        fail(f"{file}: no such file")
    with errors_to_exit(), engine_context(db, with_smtp=False) as ctx, ctx.engine.begin() as conn:
        schema_ = ctx.cache.current(conn).catalog.schema
        now = ctx.clock.now(conn)
        result = contacts.import_contacts(conn, file, schema_, now=now, who=cli_principal())
        detail = f"{result.created} created, {result.updated} updated"
        audit_cli_change(conn, "contacts.import", detail)
    out.print(f"{result.created} created, {result.updated} updated")


@events_app.command("ingest")
def events_ingest(
    file: Annotated[Path, typer.Argument(help=".jsonl file, one event per line")],
    db: DbOption = None,
) -> None:
    """Store events (processing happens in the worker); nothing is written on any error."""
    if not file.is_file():
        fail(f"{file}: no such file")
    with errors_to_exit(), engine_context(db, with_smtp=False) as ctx:
        items = read_jsonl(file)
        with ctx.engine.begin() as conn:
            result = ingest_events(conn, items, now=ctx.clock.now(conn), source="cli")
    out.print(f"{result.accepted} accepted, {result.duplicates} duplicates ignored")


@bounces_app.command("ingest")
def bounces_ingest(
    files: Annotated[list[Path], typer.Argument(help="DSN or ARF reports, one message per .eml")],
    db: DbOption = None,
) -> None:
    """Apply bounce (RFC 3464) and complaint (ARF) reports; nothing is written on any error."""
    missing = [f for f in files if not f.is_file()]
    if missing:
        fail(f"{missing[0]}: no such file")
    with errors_to_exit(), engine_context(db, with_smtp=False) as ctx:
        reports = [(f.name, f.read_bytes()) for f in files]
        with ctx.engine.begin() as conn:
            done = bounces.ingest_reports(conn, reports, now=ctx.clock.now(conn))
    out.print(
        f"hard bounces {done.hard_bounces}, soft bounces {done.soft_bounces}, "
        f"complaints {done.complaints}, unmatched {done.unmatched}; "
        f"{done.suppressed} addresses suppressed"
    )


@template_app.command("preview")
def template_preview(
    name: Annotated[str, typer.Argument(help="Template name.")],
    contact: Annotated[str, typer.Option("--contact", help="Contact id, ext:ID or email.")],
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part too.")] = False,
    db: DbOption = None,
) -> None:
    """Render a template for one contact without sending it (shows that contact's data)."""
    with (
        errors_to_exit(),
        engine_context(db, with_smtp=False) as ctx,
        read_only(ctx.engine) as conn,
    ):
        now = ctx.clock.now(conn)
        contact_id = contacts.find_contact(conn, contact)
        mail = previews.preview(conn, name, str(contact_id), now=now, who=cli_principal())
        audit_cli(ctx.engine, "template.preview", [contact_id], detail=name)
    out.print(f"Subject: {mail.subject}\n", markup=False)
    out.print(mail.text, markup=False)
    if html:
        out.print(mail.html, markup=False)


@app.command("unsubscribe")
def unsubscribe_command(
    token: Annotated[str, typer.Argument(help="The token of a List-Unsubscribe link or mailto.")],
    db: DbOption = None,
) -> None:
    """Unsubscribe the address a message went to (e.g. from a mailto unsubscribe)."""
    with errors_to_exit(), engine_context(db, with_smtp=False) as ctx:
        if ctx.links is None:
            raise ConfigurationError("set CAREPATH_PUBLIC_URL and CAREPATH_SECRET_KEY first")
        with ctx.engine.begin() as conn:
            added = unsubscribes.unsubscribe(
                conn, ctx.links, token, now=ctx.clock.now(conn), source="cli"
            )
    out.print("unsubscribed" if added else "already unsubscribed")


@app.command("enroll")
def enroll_command(
    workflow: Annotated[str, typer.Argument(help="Workflow name.")],
    contact: Annotated[
        list[str], typer.Option("--contact", help="Contact id, external id or email.")
    ],
    db: DbOption = None,
) -> None:
    """Enroll contacts into a workflow by hand (re-entry rules apply)."""
    with errors_to_exit(), engine_context(db, with_smtp=False) as ctx, ctx.engine.begin() as conn:
        current = ctx.cache.current(conn)
        current.workflow_version(workflow)
        ids = [contacts.find_contact(conn, ref) for ref in contact]
        outcome = enroll(
            conn, current, [EnrollRequest(cid, workflow) for cid in ids],
            now=ctx.clock.now(conn), max_chain_depth=ctx.limits.max_chain_depth,
        )  # fmt: skip
    out.print(f"{len(outcome.run_ids)} enrolled")
    for skipped in outcome.skipped:
        out.print(f"contact {skipped.request.contact_id} skipped: {skipped.reason}")


@app.command()
def worker(
    db: DbOption = None,
    once: Annotated[bool, typer.Option("--once", help="Drain what is due now and exit.")] = False,
) -> None:
    """Process events, advance due runs and deliver the outbox."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with errors_to_exit(), engine_context(db) as ctx:
        if once:
            done = drain(ctx)
        else:
            stop = StopFlag()
            stop.install()
            done = run_worker(ctx, poll_seconds=settings_for(db).poll_seconds, stop=stop)
    out.print(f"events {done.events}, runs {done.runs}, steps {done.steps}, sent {done.sent}")


@clock_app.command("show")
def clock_show(db: DbOption = None) -> None:
    """Print business time (simulated or system)."""
    with (
        errors_to_exit(),
        engine_context(db, with_smtp=False) as ctx,
        read_only(ctx.engine) as conn,
    ):
        simulated = simulated_now(conn)
    out.print(
        f"simulated {simulated.isoformat()}" if simulated else f"system {wall_time().isoformat()}"
    )


@clock_app.command("advance")
def clock_advance(
    duration: Annotated[str, typer.Argument(help="How far, e.g. 3d or 12h.")], db: DbOption = None
) -> None:
    """Move the simulated clock, running everything that falls due in between, in order."""
    try:
        delta = parse_duration(duration)
    except DurationError as exc:
        fail(f"error: {exc}")
    with errors_to_exit(), engine_context(db) as ctx:
        now, done = advance_clock(ctx, delta)
    out.print(
        f"clock at {now.isoformat()}: events {done.events}, runs {done.runs}, "
        f"steps {done.steps}, sent {done.sent}"
    )


@outbox_app.command("status")
def outbox_status(db: DbOption = None) -> None:
    """How many messages are pending, sent, held, bounced, failed, suppressed or skipped."""
    with errors_to_exit(), opened_engine(db) as engine, read_only(engine) as conn:
        counts = outbox.outbox_counts(conn)
    table = Table("status", "messages")
    for status, count in sorted(counts.items()):
        table.add_row(status, str(count))
    out.print(table)


@outbox_app.command("release")
def outbox_release(db: DbOption = None) -> None:
    """Queue held messages again, once the SMTP settings that held them are fixed."""
    with errors_to_exit(), engine_context(db, with_smtp=False) as ctx, ctx.engine.begin() as conn:
        released = outbox.release_held(conn, now=ctx.clock.now(conn))
    out.print(f"released {released} held messages")


@tasks_app.command("list")
def tasks_list(
    db: DbOption = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    status: Annotated[str, typer.Option(help="open, completed or all.")] = "open",
) -> None:
    """List tasks (ids and titles; no contact details)."""
    with (
        errors_to_exit(),
        engine_context(db, with_smtp=False) as ctx,
        read_only(ctx.engine) as conn,
    ):
        wanted = None if status == "all" else status
        now = ctx.clock.now(conn)
        rows = tasks.list_tasks(conn, who=cli_principal(), now=now, queue=queue, status=wanted)
    table = Table("task", "contact", "queue", "title", "status", "created")
    for r in rows:
        table.add_row(
            str(r.id), str(r.contact_id), r.queue, r.title, r.status, r.created_at.isoformat()
        )
    out.print(table)


@tasks_app.command("complete")
def tasks_complete(
    task_id: Annotated[int, typer.Argument()],
    outcome: Annotated[str, typer.Option(help="What happened, e.g. booked or no-answer.")] = "done",
    db: DbOption = None,
) -> None:
    """Complete a task; emits task.completed for journeys waiting on it."""
    with errors_to_exit(), engine_context(db, with_smtp=False) as ctx, ctx.engine.begin() as conn:
        now = ctx.clock.now(conn)
        tasks.complete_task(conn, task_id, outcome=outcome, now=now, who=cli_principal())
        audit_cli_change(conn, "task.complete", f"task {task_id}: {outcome}")
    out.print(f"task {task_id} completed: {outcome}")


@runs_app.command("show")
def runs_show(
    contact: Annotated[str, typer.Argument(help="Contact id, external id or email.")],
    db: DbOption = None,
) -> None:
    """A contact's runs and their step history."""
    with (
        errors_to_exit(),
        engine_context(db, with_smtp=False) as ctx,
        read_only(ctx.engine) as conn,
    ):
        contact_id = contacts.find_contact(conn, contact)
        run_rows = conn.execute(
            sa.select(runs).where(runs.c.contact_id == contact_id).order_by(runs.c.id)
        ).all()
        step_rows = conn.execute(
            sa.select(run_steps)
            .where(run_steps.c.contact_id == contact_id)
            .order_by(run_steps.c.id)
        ).all()
        audit_cli(ctx.engine, "contact.runs", [contact_id])
    for run in run_rows:
        out.print(
            f"[bold]run {run.id}[/bold] {run.workflow} v{run.workflow_version}: {run.status}"
            + (f" at {run.current_step}" if run.current_step else "")
            + (
                f" until {run.wake_at.isoformat()}"
                if run.wake_at and run.status == "waiting"
                else ""
            )
            + (f" ({run.reason})" if run.reason else "")
        )
        table = Table("step", "kind", "outcome", "next", "entered", "left", "detail")
        for s in (s for s in step_rows if s.run_id == run.id):
            table.add_row(
                s.step, s.kind, s.outcome, s.next_step or "", s.entered_at.isoformat(),
                s.left_at.isoformat() if s.left_at else "", s.error or s.detail or "",
            )  # fmt: skip
        out.print(table)


report_app.command("funnel")(report_funnel)
report_app.command("engagement")(report_engagement)
report_app.command("messages")(report_messages)
report_app.command("page-views")(report_page_views)
report_app.command("contact")(report_contact)


class Scenario(StrEnum):
    BARIATRIC = "bariatric"
    PREVENTIVE = "preventive"


@app.command()
def demo(
    db: Annotated[
        Path, typer.Option("--db", help="SQLite file to create (replaced if present).")
    ] = Path("carepath-demo.db"),
    contacts_count: Annotated[
        int, typer.Option("--contacts", min=1, max=100_000, help="Synthetic contacts.")
    ] = 300,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same run.")] = 7,
    scenario: Annotated[
        Scenario,
        typer.Option(help="bariatric (150 days) or preventive (a year of preventive care)."),
    ] = Scenario.BARIATRIC,
) -> None:
    """Run example journeys end to end on a fresh SQLite database with simulated time."""
    if scenario is Scenario.PREVENTIVE:
        _preventive_demo(db, contacts_count, seed)
        return
    from carepath.entrypoints.demo import run_demo  # noqa: PLC0415 - heavy, only for this command

    with errors_to_exit():
        result = run_demo(db, contacts_count=contacts_count, seed=seed, console=out)
    for name, (rows, statuses) in result.funnels.items():
        out.print(f"\n[bold]{name}[/bold]")
        print_funnel(rows, statuses)
    messages = ", ".join(f"{k} {v}" for k, v in sorted(result.outbox.items()))
    out.print(f"\nmessages: {messages}; received by the SMTP sink: {result.smtp_received}")
    out.print(f"database: {db}")
    out.print(f"funnel chart: {result.chart}")


def _preventive_demo(db: Path, contacts_count: int, seed: int) -> None:
    from carepath.entrypoints.preventive_demo import (  # noqa: PLC0415 - heavy, demo only
        WORKFLOWS,
        run_preventive_demo,
    )

    with errors_to_exit():
        result = run_preventive_demo(db, contacts_count=contacts_count, seed=seed, console=out)
    table = Table(title="Enrollments per month")
    table.add_column("month")
    for name in WORKFLOWS:
        table.add_column(name, justify="right", min_width=len(name))
    for month, counts in result.enrollments.items():
        table.add_row(month, *(str(counts.get(name, 0)) for name in WORKFLOWS))
    out.print(table)
    messages = ", ".join(f"{k} {v}" for k, v in sorted(result.outbox.items()))
    out.print(f"\nmessages: {messages}; received by the SMTP sink: {result.smtp_received}")
    out.print(f"database: {db}")


app.command()(serve)


def main() -> None:
    app()


__all__ = ["app", "main"]
