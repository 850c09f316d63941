"""`carepath audit verify|export`: check the audit log's chain, or write it out."""

from __future__ import annotations

import json
import sys

import typer

from carepath.db.connection import read_only
from carepath.entrypoints.cli_support import DbOption, errors_to_exit, fail, opened_engine, out
from carepath.services.audit import rows_in_order, verify

audit_app = typer.Typer(help="The audit log of reads and changes.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(db: DbOption = None) -> None:
    """Check every row's hash and link; name the first row that was changed, removed or moved."""
    with errors_to_exit(), opened_engine(db) as engine, read_only(engine) as conn:
        verdict = verify(conn)
    if not verdict.intact:
        fail(f"audit log broken at row {verdict.first_bad}: {verdict.reason}", code=1)
    out.print(f"audit log intact: {verdict.rows} rows")


@audit_app.command("export")
def audit_export(db: DbOption = None) -> None:
    """Every row as JSON lines, in order, with its hashes (for an archive or a SIEM)."""
    with errors_to_exit(), opened_engine(db) as engine, read_only(engine) as conn:
        for row in rows_in_order(conn):
            sys.stdout.write(json.dumps(row) + "\n")
