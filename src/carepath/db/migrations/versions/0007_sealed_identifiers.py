"""Sealed identifiers and message bodies, with blind indexes for the identifiers looked up.

Contacts' identifiers (external id, email, phone, names), rendered message
bodies and suppressed addresses are sealed with the keyring's current key; the
unique constraints move to the blind indexes. Rows already stored are sealed
here, in batches, so a database that has data needs its keyring to upgrade.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types
from carepath.protection.sealing import blind_index, seal, unseal

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IDENTIFIERS = ("external_id", "email", "phone", "first_name", "last_name")
_INDEXED = ("external_id", "email", "phone")
_LENGTHS = {"external_id": 200, "email": 320, "phone": 40, "first_name": 200, "last_name": 200}
_SUPPRESSION = ("reason", "source", "created_at")
_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_constraint("uq_contacts_email", type_="unique")
        batch.drop_constraint("uq_contacts_external_id", type_="unique")
        for name, length in _LENGTHS.items():
            batch.alter_column(
                name,
                type_=sa.Text(),
                existing_type=sa.String(length=length),
                existing_nullable=True,
            )
        batch.add_column(sa.Column("external_id_index", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("email_index", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("phone_index", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("uq_contacts_external_id_index", ["external_id_index"])
        batch.create_unique_constraint("uq_contacts_email_index", ["email_index"])
        batch.create_index("ix_contacts_phone_index", ["phone_index"])
    _convert_rows(
        "contacts",
        _IDENTIFIERS,
        lambda name, value: {
            name: seal(value, f"contacts.{name}"),
            **(
                {f"{name}_index": blind_index(value, f"contacts.{name}")}
                if name in _INDEXED
                else {}
            ),
        },
    )
    _convert_rows(
        "outbox",
        ("html", "text"),
        lambda name, value: {name: seal(value, f"outbox.{name}")},
    )
    with op.batch_alter_table("webhook_calls") as batch:
        batch.alter_column(
            "body", type_=sa.Text(), existing_nullable=False, postgresql_using="body::text"
        )
    _convert_rows(
        "webhook_calls",
        ("body",),
        lambda name, value: {name: seal(_compact(value), "webhook_calls.body")},
    )
    _rebuild_suppressions()


def _convert_rows(
    table: str, columns: Sequence[str], convert: Callable[[str, str], dict[str, object]]
) -> None:
    """Convert every stored value of `columns` (seal or unseal), one batch of rows at a time."""
    bind = op.get_bind()
    extra = [f"{c}_index" for c in columns if table == "contacts" and c in _INDEXED]
    target = sa.table(table, sa.column("id"), *(sa.column(c) for c in (*columns, *extra)))
    last = 0
    while True:
        rows = bind.execute(
            sa.select(target.c.id, *(target.c[c] for c in columns))
            .where(target.c.id > last)
            .order_by(target.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            values: dict[str, object] = {}
            for name in columns:
                value = row._mapping[name]
                if value is not None:
                    values.update(convert(name, value))
            if values:
                bind.execute(target.update().where(target.c.id == row.id).values(values))
        last = rows[-1].id


def _compact(stored: str) -> str:
    """Stored JSON text in the form SealedJson seals."""
    return json.dumps(json.loads(stored), separators=(",", ":"))


def _rebuild_suppressions() -> None:
    """Keyed by the address's blind index now, the address itself sealed."""
    bind = op.get_bind()
    raw = sa.table(  # untyped: values pass through as stored
        "suppressions",
        sa.column("email_index"),
        sa.column("email"),
        sa.column("reason"),
        sa.column("source"),
        sa.column("created_at"),
    )
    kept = [
        dict(row._mapping)
        for row in bind.execute(sa.select(raw.c.email, *(raw.c[c] for c in _SUPPRESSION)))
    ]
    op.drop_table("suppressions")
    op.create_table(
        "suppressions",
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.Column("email_index", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("email_index", name=op.f("pk_suppressions")),
    )
    rows = [
        {
            **row,
            "email_index": blind_index(row["email"], "contacts.email"),
            "email": seal(row["email"], "suppressions.email"),
        }
        for row in kept
    ]
    if rows:
        bind.execute(raw.insert(), rows)


def downgrade() -> None:
    """Back to plaintext identifiers (this needs the keyring, like the upgrade)."""
    bind = op.get_bind()
    raw = sa.table("suppressions", sa.column("email"), *(sa.column(c) for c in _SUPPRESSION))
    kept = [dict(row._mapping) for row in bind.execute(sa.select(raw))]
    op.drop_table("suppressions")
    op.create_table(
        "suppressions",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("created_at", carepath.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_suppressions")),
    )
    opened = [{**row, "email": unseal(row["email"], "suppressions.email")} for row in kept]
    if opened:
        bind.execute(raw.insert(), opened)
    _convert_rows(
        "outbox", ("html", "text"), lambda name, value: {name: unseal(value, f"outbox.{name}")}
    )
    _convert_rows(
        "webhook_calls",
        ("body",),
        lambda name, value: {name: unseal(value, "webhook_calls.body")},
    )
    with op.batch_alter_table("webhook_calls") as batch:
        batch.alter_column(
            "body",
            type_=carepath.db.types.Json,
            existing_nullable=False,
            postgresql_using="body::jsonb",
        )
    _convert_rows(
        "contacts",
        _IDENTIFIERS,
        lambda name, value: {name: unseal(value, f"contacts.{name}")},
    )
    with op.batch_alter_table("contacts") as batch:
        batch.drop_index("ix_contacts_phone_index")
        batch.drop_constraint("uq_contacts_email_index", type_="unique")
        batch.drop_constraint("uq_contacts_external_id_index", type_="unique")
        for name in ("phone_index", "email_index", "external_id_index"):
            batch.drop_column(name)
        for name, length in _LENGTHS.items():
            batch.alter_column(
                name,
                type_=sa.String(length=length),
                existing_type=sa.Text(),
                existing_nullable=True,
            )
        batch.create_unique_constraint("uq_contacts_email", ["email"])
        batch.create_unique_constraint("uq_contacts_external_id", ["external_id"])
