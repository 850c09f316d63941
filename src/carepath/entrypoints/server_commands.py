"""`carepath serve` (the HTTP API), `carepath keys` (API keys and the field-encryption
keyring), `carepath workflows`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.table import Table

from carepath.db.connection import read_only
from carepath.domain.access import SCOPES, Role
from carepath.entrypoints.cli_support import (
    DbOption,
    audit_cli,
    audit_cli_change,
    errors_to_exit,
    fail,
    opened_engine,
    out,
    settings_for,
)
from carepath.errors import ConfigurationError
from carepath.protection.keyring import (
    active_keyring,
    generate_keyring,
    keyring_source,
    read_keyring_file,
    with_new_key,
    without_key,
    write_keyring_file,
)
from carepath.services import api_keys
from carepath.services.clock import wall_time
from carepath.services.key_rotation import BATCH, key_usage, rotate_sealed_values
from carepath.services.workflow_states import activate_workflow, pause_workflow

_SCOPES_HELP = f"Comma-separated: {', '.join(sorted(SCOPES))}."
keys_app = typer.Typer(
    help="API keys for the HTTP API, and the keyring that seals PHI.", no_args_is_help=True
)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="What uses the key, e.g. ehr-bridge.")],
    scopes: Annotated[
        str, typer.Option("--scopes", help=f"For an integration key. {_SCOPES_HELP}")
    ] = "",
    role: Annotated[Role, typer.Option("--role", help="What the key may do.")] = Role.INTEGRATION,
    queues: Annotated[
        str, typer.Option("--queues", help="For an agent key: its task queues, comma-separated.")
    ] = "",
    db: DbOption = None,
) -> None:
    """Create a key and print it; it is shown this once and stored only as a hash."""
    with errors_to_exit(), opened_engine(db) as engine, engine.begin() as conn:
        issued = api_keys.create_key(
            conn,
            name=name,
            scopes=scopes.split(","),
            role=role,
            queues=queues.split(","),
            now=wall_time(),
        )
        detail = f"{name} ({role}): {', '.join(sorted(issued.key.scopes))}"
        audit_cli_change(conn, "api_key.create", detail)
    out.print(issued.secret, soft_wrap=True)
    typer.echo(f"key {name}: {', '.join(sorted(issued.key.scopes))} (shown once)", err=True)


@keys_app.command("list")
def keys_list(db: DbOption = None) -> None:
    """The keys, their scopes and whether they are revoked (never the secrets)."""
    with errors_to_exit(), opened_engine(db) as engine, read_only(engine) as conn:
        listing = api_keys.list_keys(conn)
    table = Table("name", "role", "scopes", "created", "revoked")
    for key in listing:
        revoked = key.revoked_at.isoformat() if key.revoked_at else ""
        scopes = ", ".join(sorted(key.scopes))
        table.add_row(key.name, key.role, scopes, key.created_at.isoformat(), revoked)
    out.print(table)


@keys_app.command("new-keyring")
def keys_new_keyring(
    path: Annotated[Path, typer.Argument(help="Where to write it (readable by its owner only).")],
) -> None:
    """Write a new keyring for field encryption (for CAREPATH_KEYRING_FILE)."""
    with errors_to_exit():
        if path.exists():
            raise ConfigurationError(f"{path.name} exists: a keyring is never overwritten")
        write_keyring_file(path, generate_keyring())
    out.print(f"keyring written: {path.name} (current key k1)")


@keys_app.command("add-key")
def keys_add_key(db: DbOption = None) -> None:
    """Add a field-encryption key to the keyring file and make it current (then: rotate)."""
    with errors_to_exit(), opened_engine(db) as engine:
        path = _keyring_file()
        keyring = with_new_key(read_keyring_file(path))
        write_keyring_file(path, keyring)
        audit_cli(engine, "keys.add", detail=f"current key {keyring.current}")
    out.print(f"new current key {keyring.current}: run `carepath keys rotate` to re-seal")


@keys_app.command("rotate")
def keys_rotate(
    db: DbOption = None,
    batch: Annotated[int, typer.Option("--batch", min=1, max=10_000)] = BATCH,
) -> None:
    """Re-seal every stored value under the keyring's current key, in batches, online."""
    with errors_to_exit(), opened_engine(db) as engine:
        current = active_keyring().current
        done = rotate_sealed_values(engine, batch=batch)
        total = sum(done.resealed.values())
        audit_cli(engine, "keys.rotate", detail=f"{total} values re-sealed under {current}")
    table = Table("column", "re-sealed")
    for column, count in sorted(done.resealed.items()):
        table.add_row(column, str(count))
    out.print(table)
    out.print(f"{total} values re-sealed under key {current}")


@keys_app.command("usage")
def keys_usage(db: DbOption = None) -> None:
    """How many stored values each field-encryption key seals."""
    with errors_to_exit(), opened_engine(db) as engine:
        keyring = active_keyring()
        used = key_usage(engine, keyring)
    table = Table("key", "values", "current")
    for key_id in sorted(set(keyring.keys) | set(used)):
        table.add_row(key_id, str(used.get(key_id, 0)), "yes" if key_id == keyring.current else "")
    out.print(table)


@keys_app.command("remove-key")
def keys_remove_key(
    key_id: Annotated[str, typer.Argument(help="The old key's id.")], db: DbOption = None
) -> None:
    """Remove an old key from the keyring file, once nothing is sealed with it."""
    with errors_to_exit(), opened_engine(db) as engine:
        path = _keyring_file()
        keyring = read_keyring_file(path)
        still = key_usage(engine, keyring).get(key_id, 0)
        if still:
            raise ConfigurationError(f"{still} values are still sealed with {key_id}: rotate first")
        write_keyring_file(path, without_key(keyring, key_id))
        audit_cli(engine, "keys.remove", detail=key_id)
    out.print(f"removed key {key_id}")


def _keyring_file() -> Path:
    source, path = keyring_source()
    if path is None:
        raise ConfigurationError(f"the keyring comes from {source}: change it there")
    return path


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")], db: DbOption = None
) -> None:
    """Revoke a key: refused everywhere within the API's key cache time (30 s)."""
    with errors_to_exit(), opened_engine(db) as engine, engine.begin() as conn:
        api_keys.revoke_key(conn, name, now=wall_time())
        audit_cli_change(conn, "api_key.revoke", name)
    out.print(f"revoked {name}")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    db: DbOption = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)."""
    settings = settings_for(db)
    with errors_to_exit(), opened_engine(db):
        pass  # refuse to start on a database that is missing or not migrated
    if not settings.public_url:
        typer.echo(
            "note: CAREPATH_PUBLIC_URL is not set: no tracking or unsubscribe links", err=True
        )
    # The server processes build their app from the environment.
    os.environ["CAREPATH_DATABASE_URL"] = settings.database_url
    try:
        uvicorn.run(
            "carepath.entrypoints.api.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,  # paths carry tokens; request logs are not needed to run
            server_header=False,
            log_level="info",
        )
    except OSError as exc:
        fail(f"error: cannot serve on {host}:{port} ({exc.__class__.__name__})")


workflows_app = typer.Typer(help="Pause and activate workflows.", no_args_is_help=True)


@workflows_app.command("pause")
def workflows_pause(
    name: Annotated[str, typer.Argument(help="Workflow name.")], db: DbOption = None
) -> None:
    """No new enrollments; the workflow's runs wait where they are until it is activated."""
    with errors_to_exit(), opened_engine(db) as engine, engine.begin() as conn:
        changed = pause_workflow(conn, name, now=wall_time())
        audit_cli_change(conn, "workflow.pause", name)
    out.print(f"paused {name}" if changed else f"{name} was paused already")


@workflows_app.command("activate")
def workflows_activate(
    name: Annotated[str, typer.Argument(help="Workflow name.")], db: DbOption = None
) -> None:
    """The workflow enrolls again and its runs go on."""
    with errors_to_exit(), opened_engine(db) as engine, engine.begin() as conn:
        changed = activate_workflow(conn, name)
        audit_cli_change(conn, "workflow.activate", name)
    out.print(f"activated {name}" if changed else f"{name} was not paused")
