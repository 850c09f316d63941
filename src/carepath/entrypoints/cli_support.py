"""What every `carepath` command shares: output, the --db option, errors as exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from sqlalchemy import Connection, Engine

from carepath.config import Settings
from carepath.errors import CarepathError, InvalidInput, Problem
from carepath.services import audit
from carepath.services.audit import AuditEntry, cli_actor
from carepath.services.clock import wall_time
from carepath.services.setup import open_database

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL or SQLite file (default: CAREPATH_DATABASE_URL or carepath.db)."
    ),
]


def settings_for(db: str | None) -> Settings:
    settings = Settings()
    if db:
        settings.database_url = db if "://" in db else f"sqlite:///{db}"
    return settings


def fail(problems: list[Problem] | str, code: int = 2) -> NoReturn:
    # Plain writes: one problem per line, never wrapped, so editors and CI can parse them.
    for problem in [problems] if isinstance(problems, str) else problems:
        sys.stderr.write(f"{problem}\n")
    raise typer.Exit(code)


def warn(warnings: list[Problem]) -> None:
    """`location: warning: message` lines on stderr; the command goes on."""
    for warning in warnings:
        sys.stderr.write(f"{warning}\n")


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """CarepathError → `location: message` lines on stderr and exit code 2."""
    try:
        yield
    except InvalidInput as exc:
        fail(exc.problems)
    except CarepathError as exc:
        fail(f"error: {exc}")


@contextmanager
def opened_engine(db: str | None) -> Iterator[Engine]:
    """An engine on the current database, disposed when the command ends."""
    engine = open_database(settings_for(db).database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def audit_cli(
    engine: Engine, action: str, contact_ids: Iterable[int] = (), detail: str | None = None
) -> None:
    """Append to the audit log what this command read or changed (its own transaction)."""
    audit.record_now(engine, AuditEntry(cli_actor(), action, tuple(contact_ids), detail=detail))


def audit_cli_change(conn: Connection, action: str, detail: str | None = None) -> None:
    """Append to the audit log, in the transaction of the change it records (both or neither)."""
    audit.record(conn, AuditEntry(cli_actor(), action, detail=detail), now=wall_time())
