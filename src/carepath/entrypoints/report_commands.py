"""`carepath report engagement|messages|contact`: engagement per step, the message log,
one contact's timeline — as tables, CSV (spreadsheet-safe) or JSON."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from carepath.db.connection import read_only
from carepath.domain.exports import spreadsheet_cell
from carepath.domain.fields import parse_datetime
from carepath.entrypoints.charts import engagement_chart, funnel_chart
from carepath.entrypoints.cli_support import (
    DbOption,
    audit_cli,
    errors_to_exit,
    fail,
    opened_engine,
    out,
)
from carepath.services.access import cli_principal
from carepath.services.catalog_store import build_current
from carepath.services.clock import wall_time
from carepath.services.engagement import engagement_by_day, engagement_report
from carepath.services.message_log import LogFilter, timeline, whole_log
from carepath.services.page_views import page_view_report
from carepath.services.reports import (
    FunnelRow,
    RunFilter,
    conversion,
    funnel,
    run_status_counts,
)


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


FormatOption = Annotated[Format, typer.Option("--format", help="table, csv or json")]
ChartOption = Annotated[
    Path | None, typer.Option("--chart", help="Also draw a chart to this .png or .svg file.")
]
ENGAGEMENT_COLUMNS = [
    "step", "template", "messages", "sent", "delivered", "deferred", "skipped", "failed",
    "soft_bounced", "hard_bounced", "opened", "machine_opened", "clicked", "clicks",
    "unsubscribed", "complained",
]  # fmt: skip
LOG_COLUMNS = [
    "id", "created_at", "contact_id", "workflow", "step", "template", "status", "sent_at",
    "opened", "clicked", "last_error",
]  # fmt: skip


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_datetime(text)
    except ValueError:
        fail(f"error: {option} takes an ISO 8601 date or date-time")


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _write_csv(columns: list[str], rows: list[dict[str, Any]]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([spreadsheet_cell(_plain(row[c])) for c in columns])


FUNNEL_COLUMNS = [
    "step", "kind", "entered", "completed", "waiting", "converted", "dropped", "exited",
    "failed", "median_seconds",
]  # fmt: skip


def report_funnel(
    workflow: Annotated[str, typer.Argument()],
    *,
    since: Annotated[str | None, typer.Option(help="Runs started from (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Runs started before (ISO 8601).")] = None,
    version: Annotated[int | None, typer.Option(help="One workflow version only.")] = None,
    fmt: FormatOption = Format.TABLE,
    chart: ChartOption = None,
    db: DbOption = None,
) -> None:
    """Per step: entered, completed, waiting, converted, dropped, exited, failed, median time."""
    which = RunFilter(version, _moment(since, "--since"), _moment(until, "--until"))
    with errors_to_exit(), opened_engine(db) as engine, read_only(engine) as conn:
        definition = build_current(conn).catalog.workflows.get(workflow)
        if definition is None:
            fail(f"error: no workflow named {workflow!r}")
        rows = funnel(conn, definition, which)
        statuses = run_status_counts(conn, workflow, which)
        if chart is not None:
            funnel_chart(f"{workflow}: contacts per step", rows, chart)
    print_funnel(rows, statuses, fmt=fmt)


def print_funnel(rows: list[FunnelRow], statuses: dict[str, int], *, fmt: str = "table") -> None:
    if fmt == "json":
        document = {
            "steps": [asdict(r) for r in rows],
            "runs": statuses,
            "conversion": conversion(statuses),
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    if fmt == "csv":
        _write_csv(FUNNEL_COLUMNS, [asdict(r) for r in rows])
        return
    table = Table(*FUNNEL_COLUMNS[:-1], "median time", title="journey funnel")
    for r in rows:
        counts = (r.entered, r.completed, r.waiting, r.converted, r.dropped, r.exited, r.failed)
        table.add_row(r.step, r.kind, *map(str, counts), _duration(r.median_seconds))
    out.print(table)
    runs_line = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    out.print(f"runs: {runs_line}; conversion {conversion(statuses):.1%}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def report_engagement(
    workflow: Annotated[str, typer.Argument()],
    *,
    since: Annotated[str | None, typer.Option(help="Messages written from (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Messages written before (ISO 8601).")] = None,
    version: Annotated[int | None, typer.Option(help="One workflow version only.")] = None,
    fmt: FormatOption = Format.TABLE,
    chart: ChartOption = None,
    db: DbOption = None,
) -> None:
    """Per email step: sent, delivered, bounces, opens and clicks by people, rates; A/B paths."""
    with errors_to_exit(), opened_engine(db) as engine, read_only(engine) as conn:
        definition = build_current(conn).catalog.workflows.get(workflow)
        if definition is None:
            fail(f"error: no workflow named {workflow!r}")
        report = engagement_report(
            conn, definition, since=_moment(since, "--since"), until=_moment(until, "--until"),
            version=version,
        )  # fmt: skip
        if chart is not None:
            days = engagement_by_day(conn, workflow)
            engagement_chart(f"{workflow}: engagement per day", days, chart)
    if fmt is Format.JSON:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    if fmt is Format.CSV:
        _write_csv([*ENGAGEMENT_COLUMNS, "open_rate", "click_rate"], report["steps"])
        return
    headers = ["step", "template", "sent", "delivered", "bounced", "opened", "clicked"]
    headers += ["clicks", "unsub", "open %", "click %"]
    table = Table(*headers, title=f"{workflow}: engagement")
    for r in report["steps"]:
        table.add_row(
            r["step"], r["template"], str(r["sent"]), str(r["delivered"]),
            f"{r['hard_bounced']} hard, {r['soft_bounced']} soft",
            f"{r['opened']} (+{r['machine_opened']} machine)", str(r["clicked"]),
            str(r["clicks"]), str(r["unsubscribed"]), f"{r['open_rate']:.1%}",
            f"{r['click_rate']:.1%}",
        )  # fmt: skip
    out.print(table)
    for split in report["splits"]:
        rates = zip(split["paths"], split["click_rates"], strict=True)
        paths = " vs ".join(f"{path} {rate:.1%}" for path, rate in rates)
        verdict = "" if split["p_value"] is None else f"; p = {split['p_value']:.3f}"
        out.print(f"split {split['split']}: click rate {paths}{verdict}")


def report_messages(
    *,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    step: Annotated[str | None, typer.Option(help="Only this step.")] = None,
    template: Annotated[str | None, typer.Option(help="Only this template.")] = None,
    contact: Annotated[int | None, typer.Option(help="Only this contact id.")] = None,
    since: Annotated[str | None, typer.Option(help="Written from (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Written before (ISO 8601).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or jsonl")] = "table",
    db: DbOption = None,
) -> None:
    """Who received which message when, and what happened to it (templates, never content)."""
    if fmt not in ("table", "csv", "jsonl"):
        fail("error: --format is table, csv or jsonl")
    which = LogFilter(
        workflow, step, template, contact, _moment(since, "--since"), _moment(until, "--until")
    )
    with errors_to_exit(), opened_engine(db) as engine:
        with read_only(engine) as conn:
            log = whole_log(conn, which, who=cli_principal(), now=wall_time())
            messages = [asdict(m) for m in log]
        audit_cli(engine, "messages.export", {int(m["contact_id"]) for m in messages})
    if fmt == "jsonl":
        for row in messages:
            sys.stdout.write(json.dumps({k: _plain(v) for k, v in row.items()}) + "\n")
    elif fmt == "csv":
        _write_csv(LOG_COLUMNS, messages)
    else:
        table = Table(*LOG_COLUMNS[:-1], title="messages")
        for row in messages:
            table.add_row(*(str(_plain(row[c]) or "") for c in LOG_COLUMNS[:-1]))
        out.print(table)


def report_page_views(
    *,
    since: Annotated[str | None, typer.Option(help="First day counted (YYYY-MM-DD, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day counted (YYYY-MM-DD, UTC).")] = None,
    fmt: FormatOption = Format.TABLE,
    db: DbOption = None,
) -> None:
    """Page views per path on the site: by known visitors, and counted for everyone else."""
    first, last = _day(since, "--since"), _day(until, "--until")
    with errors_to_exit(), opened_engine(db) as engine, read_only(engine) as conn:
        pages = page_view_report(conn, since=first, until=last)
    if fmt is Format.JSON:
        sys.stdout.write(json.dumps({"pages": pages}, indent=2) + "\n")
        return
    if fmt is Format.CSV:
        _write_csv(["path", "views", "identified", "anonymous"], pages)
        return
    table = Table("path", "views", "known visitors", "others", title="page views")
    for page in pages:
        table.add_row(*(str(page[c]) for c in ("path", "views", "identified", "anonymous")))
    out.print(table)


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"error: {option} is a day such as 2026-01-31")


def report_contact(
    contact_id: Annotated[int, typer.Argument(help="The contact's id.")],
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    db: DbOption = None,
) -> None:
    """Every event, run, step and message of one contact, in order."""
    with errors_to_exit(), opened_engine(db) as engine:
        with read_only(engine) as conn:
            entries = timeline(conn, contact_id, who=cli_principal(), now=wall_time())
        if not entries:
            fail(f"error: nothing recorded for contact {contact_id}")
        audit_cli(engine, "contact.timeline", [contact_id])
    if fmt == "json":
        rows = [{"at": e.at.isoformat(), "what": e.what, "summary": e.summary, **e.detail}
                for e in entries]  # fmt: skip
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("at", "what", "summary", "detail", title=f"contact {contact_id}")
    for e in entries:
        detail = ", ".join(f"{k} {v}" for k, v in e.detail.items())
        table.add_row(e.at.strftime("%Y-%m-%d %H:%M"), e.what, e.summary, detail)
    out.print(table)
