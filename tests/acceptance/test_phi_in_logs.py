"""No PHI in logs: a whole demo run, every log record at every level, scanned for every value;
and none of its identifiers or message texts in clear in a dump of its database."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from rich.console import Console

from carepath.db.schema import contacts
from carepath.entrypoints.demo import run_demo


def test_a_full_demo_logs_no_contact_value_and_stores_no_identifier_in_clear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "demo.db"
    with (tmp_path / "out").open("w") as screen:
        run_demo(path, contacts_count=60, seed=3, console=Console(file=screen))
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "the run logged nothing: the scan would prove nothing"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        people = conn.execute(
            sa.select(
                contacts.c.email, contacts.c.first_name, contacts.c.last_name,
                contacts.c.birth_date, contacts.c.external_id,
            )
        ).all()  # fmt: skip
    engine.dispose()
    values = set()
    for email, first, last, born, external in people:
        values |= {email, f"{first} {last}", str(born), external}
    leaked = sorted(v for v in values if v and v in logged)
    where = sorted({r.name for r in caplog.records if any(v in r.getMessage() for v in leaked)})
    assert (leaked, where) == ([], [])
    with sqlite3.connect(path) as raw:
        dump = "\n".join(raw.iterdump())
    stored = set()
    for email, first, last, _, external in people:  # as SQL literals, and as a message shows them
        stored |= {f"'{email}'", f"'{first}'", f"'{last}'", f"'{external}'", f"Hello {first}"}
    assert len(people) == 60  # the scan looks at real data...
    assert "cp1:" in dump  # ...sealed
    assert sorted(v for v in stored if v in dump) == []
