"""Migrations: an empty database upgraded to head is exactly the metadata, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from carepath.db import migrate
from carepath.db.connection import make_engine
from carepath.db.schema import contacts, metadata, outbox, suppressions, webhook_calls
from carepath.protection.sealing import without_sealed_values
from carepath.services.contacts import find_contact

VERSION_TABLE = "alembic_version"


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(empty_database_url)
    yield engine
    engine.dispose()


def _metadata_diff(engine: sa.Engine) -> list[Any]:
    # compare_type=True and no callback: with the same type objects on both
    # sides there are no spurious variant diffs (JSON/JSONB, BIGINT/INTEGER,
    # timestamptz all compare equal), and a real mismatch on PostgreSQL (say
    # JSON for JSONB, or TIMESTAMP without time zone) is reported.
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def _plain(value: Any, dialect: sa.Dialect) -> Any:
    if isinstance(value, sa.types.TypeEngine):
        return value.compile(dialect=dialect)
    if isinstance(value, sa.sql.ClauseElement):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v, dialect) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_plain(v, dialect) for v in value]
    return value


def _by_name(items: list[Any], dialect: sa.Dialect) -> list[Any]:
    return sorted((_plain(item, dialect) for item in items), key=lambda d: str(d.get("name")))


def _reflected(engine: sa.Engine) -> dict[str, Any]:
    """Everything reflection reports about the schema, in comparable form.

    compare_metadata does not look at an index's WHERE clause, so the partial
    indexes are only proven by comparing this against `metadata.create_all`.
    """
    inspector = sa.inspect(engine)
    dialect = engine.dialect
    tables: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        if name == VERSION_TABLE:
            continue
        tables[name] = {
            "columns": [_plain(c, dialect) for c in inspector.get_columns(name)],
            "pk": _plain(inspector.get_pk_constraint(name), dialect),
            "fks": _by_name(inspector.get_foreign_keys(name), dialect),
            "indexes": _by_name(inspector.get_indexes(name), dialect),
            "uniques": _by_name(inspector.get_unique_constraints(name), dialect),
            "checks": _by_name(inspector.get_check_constraints(name), dialect),
            "options": _plain(inspector.get_table_options(name), dialect),  # fillfactor
        }
    if engine.dialect.name == "postgresql":
        tables["<sequences>"] = sorted(inspector.get_sequence_names())
    return tables


def _schema_of_create_all(engine: sa.Engine) -> dict[str, Any]:
    """Reflect what metadata.create_all builds in this (otherwise empty) database."""
    with engine.begin() as conn:
        metadata.create_all(conn)
    try:
        return _reflected(engine)
    finally:
        with engine.begin() as conn:
            metadata.drop_all(conn)


def _user_tables(engine: sa.Engine) -> list[str]:
    return sorted(set(sa.inspect(engine).get_table_names()) - {VERSION_TABLE})


def test_upgrade_head_on_empty_database_gives_exactly_the_metadata(engine: sa.Engine) -> None:
    expected = _schema_of_create_all(engine)
    assert _user_tables(engine) == []

    migrate.upgrade(engine)

    assert _metadata_diff(engine) == []
    assert _reflected(engine) == expected
    assert sorted(expected) == sorted(
        [*metadata.tables, *(["<sequences>"] if engine.dialect.name == "postgresql" else [])]
    )


def test_downgrade_base_drops_everything_and_upgrade_again_round_trips(
    engine: sa.Engine,
) -> None:
    migrate.upgrade(engine)
    first = _reflected(engine)

    migrate.downgrade(engine, "base")

    inspector = sa.inspect(engine)
    assert inspector.get_table_names() == [VERSION_TABLE]
    if engine.dialect.name == "postgresql":
        assert inspector.get_sequence_names() == []
    assert migrate.current_revision(engine) is None

    migrate.upgrade(engine)

    assert _metadata_diff(engine) == []
    assert _reflected(engine) == first


def test_is_current_is_false_before_upgrade_and_true_after(engine: sa.Engine) -> None:
    assert migrate.current_revision(engine) is None
    assert not migrate.is_current(engine)

    migrate.upgrade(engine)

    assert migrate.current_revision(engine) == migrate.head_revision()
    assert migrate.is_current(engine)

    migrate.downgrade(engine, "base")

    assert not migrate.is_current(engine)


AT = "2026-01-05 08:00:00"


def _insert(conn: sa.Connection, table: str, **values: object) -> None:
    """A row as an older schema takes it (values are test constants, written as SQL)."""
    literals = ", ".join("NULL" if v is None else repr(v) for v in values.values())
    conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({literals})")


def _contact(conn: sa.Connection, **identifiers: object) -> None:
    row = {"id": 1, **identifiers, "tags": "[]", "attributes": "{}"}
    _insert(conn, "contacts", **row, created_at=AT, updated_at=AT)


def _message(conn: sa.Connection, outbox_id: int, **values: object) -> None:
    row: dict[str, object] = {"id": outbox_id, "contact_id": 1, "channel": "email"}
    row |= {"template": "t", "template_version": 1, "message_id": f"<m{outbox_id}@x>"}
    row |= {"subject": "", "html": "", "text": "", "status": "sent", "attempts": 1}
    _insert(conn, "outbox", **row | {"next_attempt_at": AT, "created_at": AT} | values)


def _event(conn: sa.Connection, key: str, kind: str, data: str, when: str = AT) -> None:
    row = {"idempotency_key": key, "type": kind, "contact_id": 1, "occurred_at": when}
    _insert(conn, "events", **row, received_at=when, data=data, source="test", chain_depth=0)


def test_messages_sent_before_0005_get_their_engagement_from_their_events(
    engine: sa.Engine,
) -> None:
    migrate.upgrade(engine, "0004")
    with engine.begin() as conn:
        _contact(conn)
        _message(conn, 7, sent_at=AT)
        happened = [
            ("email.opened", '{"outbox_id": 7, "machine": true}', "2026-01-05 08:00:01"),
            ("email.opened", '{"outbox_id": 7, "machine": false}', "2026-01-05 09:00:00"),
            (
                "email.clicked",
                '{"outbox_id": 7, "link": 0, "machine": false}',
                "2026-01-05 09:01:00",
            ),
            (
                "email.clicked",
                '{"outbox_id": 7, "link": 1, "machine": false}',
                "2026-01-05 09:02:00",
            ),
            ("email.bounced", '{"outbox_id": 7, "bounce": "soft"}', "2026-01-05 10:00:00"),
        ]
        for n, (kind, data, when) in enumerate(happened):
            _event(conn, f"k{n}", kind, data, when)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT opened_at, machine_opened_at, clicked_at, clicks, bounce FROM outbox"
        ).one()
    opened, machine, clicked, clicks, bounce = (str(v)[:19] if v else v for v in row)
    assert (opened, machine, clicked) == (
        "2026-01-05 09:00:00",
        "2026-01-05 08:00:01",
        "2026-01-05 09:01:00",
    )
    assert (clicks, bounce) == ("2", "soft")


def test_identifiers_bodies_and_suppressions_stored_before_0007_are_sealed_and_indexed(
    engine: sa.Engine,
) -> None:
    migrate.upgrade(engine, "0006")
    with engine.begin() as conn:
        _contact(conn, external_id="MRN-1", email="ann@example.org", first_name="Ann")
        _message(conn, 7, subject="Hello", html="<p>Dear Ann</p>", text="Dear Ann")
        suppressed = {"email": "ann@example.org", "reason": "manual", "source": "test"}
        _insert(conn, "suppressions", **suppressed, created_at=AT)
        call = {"contact_id": 1, "workflow": "w", "step": "s", "url": "https://crm.test"}
        call |= {"secret_env": "S", "body": '{"contact": {"first_name": "Ann"}}'}
        call |= {"status": "pending", "attempts": 0, "next_attempt_at": AT, "created_at": AT}
        _insert(conn, "webhook_calls", **call)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        raw = [
            str(value)
            for table in ("contacts", "outbox", "suppressions", "webhook_calls")
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}")
            for value in row
        ]
        in_clear = [without_sealed_values(v) for v in raw]  # a sealed value may hold "Ann"
        assert not [v for v in in_clear if "Ann" in v or "ann@" in v or "MRN-1" in v]
        contact = conn.execute(sa.select(contacts)).one()
        assert (contact.email, contact.external_id, contact.first_name) == (
            "ann@example.org",
            "MRN-1",
            "Ann",
        )
        assert find_contact(conn, "ann@example.org") == find_contact(conn, "ext:MRN-1") == 1
        assert conn.execute(sa.select(outbox.c.html, outbox.c.text)).one() == (
            "<p>Dear Ann</p>",
            "Dear Ann",
        )
        assert conn.execute(sa.select(webhook_calls.c.body)).scalar_one() == {
            "contact": {"first_name": "Ann"}
        }
        suppressed = conn.execute(sa.select(suppressions)).one()
        assert suppressed.email == "ann@example.org"
        assert suppressed.email_index == contact.email_index


def test_clicks_before_0010_are_counted_per_link_on_their_messages(engine: sa.Engine) -> None:
    migrate.upgrade(engine, "0009")
    with engine.begin() as conn:
        _contact(conn)
        _message(conn, 7, clicked_at=AT)
        _message(conn, 8)
        clicks = [
            '{"outbox_id": 7, "link": 0, "machine": false}',
            '{"outbox_id": 7, "link": 0, "machine": false}',
            '{"outbox_id": 7, "link": 1, "machine": false}',
            '{"outbox_id": 7, "link": 1, "machine": true}',
            '{"outbox_id": 7}',
            '{"outbox_id": 7, "link": -1, "machine": false}',
        ]
        for n, data in enumerate(clicks):
            _event(conn, f"c{n}", "email.clicked", data)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        found = dict(conn.execute(sa.select(outbox.c.id, outbox.c.link_clicks)).all())
    assert found == {7: {"0": 2, "1": 1, "?": 2}, 8: None}
