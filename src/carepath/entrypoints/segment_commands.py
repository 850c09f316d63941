"""`carepath segments`: recount, count and list the members of segments."""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from typing import Annotated

import typer

from carepath.db.connection import read_only
from carepath.domain.exports import spreadsheet_cell
from carepath.domain.resources import Kind
from carepath.entrypoints.cli_support import (
    DbOption,
    audit_cli,
    errors_to_exit,
    opened_engine,
    out,
)
from carepath.errors import NotFound
from carepath.services.access import cli_principal
from carepath.services.catalog_store import build_current
from carepath.services.clock import DatabaseClock, wall_time
from carepath.services.segments import (
    Moves,
    StaleSegment,
    member_count,
    members_query,
    recheck,
    recount_fully,
    take_queued,
)

segments_app = typer.Typer(help="Segments: who is in them now.", no_args_is_help=True)


class MemberFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


@segments_app.command("refresh")
def segments_refresh(
    name: Annotated[str | None, typer.Argument(help="One segment (default: all).")] = None,
    db: DbOption = None,
) -> None:
    """Recount segments in full now, then re-check every queued contact."""
    with errors_to_exit(), opened_engine(db) as engine:
        with engine.connect() as conn:
            current = build_current(conn)
            now = DatabaseClock().now(conn)
        segments = current.catalog.segments
        if name is not None and name not in segments:
            raise NotFound(f"no segment named {name!r}")
        moves = Moves()
        for segment_name in [name] if name else sorted(segments):
            version = current.versions[(Kind.SEGMENT, segment_name)].version
            with engine.begin() as conn:
                stale = StaleSegment(segments[segment_name], version)
                recount_fully(conn, stale, now=now, moves=moves)
        while True:
            with engine.begin() as conn:
                ids = take_queued(conn, 1000)
                if not ids:
                    break
                recheck(conn, segments, ids, now=now)
    for segment_name in sorted(moves.entered):
        entered, left = len(moves.entered[segment_name]), len(moves.left[segment_name])
        out.print(f"{segment_name}: {entered} entered, {left} left")


@segments_app.command("count")
def segments_count(
    name: Annotated[str, typer.Argument(help="The segment.")], db: DbOption = None
) -> None:
    """How many contacts are in a segment now."""
    with errors_to_exit(), opened_engine(db) as engine, read_only(engine) as conn:
        out.print(str(member_count(conn, build_current(conn), name)))


@segments_app.command("members")
def segments_members(
    name: Annotated[str, typer.Argument(help="The segment.")],
    format_: Annotated[
        MemberFormat, typer.Option("--format", help="csv (spreadsheet-safe) or jsonl.")
    ] = MemberFormat.CSV,
    db: DbOption = None,
) -> None:
    """The members' ids and identifiers (id, external_id, email), in id order."""
    with errors_to_exit(), opened_engine(db) as engine:
        with read_only(engine) as conn:
            query = members_query(
                conn, build_current(conn), name, who=cli_principal(), now=wall_time()
            )
            rows = conn.execute(query).all()
        audit_cli(engine, "segment.members", [r.id for r in rows], detail=name)
        columns = ["id", "external_id", "email"]
        if format_ is MemberFormat.CSV:
            writer = csv.writer(sys.stdout)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([spreadsheet_cell(v) for v in row])
        else:
            for row in rows:
                sys.stdout.write(json.dumps(dict(zip(columns, row, strict=True))) + "\n")
