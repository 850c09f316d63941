"""Field encryption on both databases: ciphertext at rest, blind-index lookups, key rotation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from carepath.db.connection import read_only
from carepath.db.schema import contacts
from carepath.domain.access import SYSTEM
from carepath.domain.fields import ContactSchema
from carepath.protection.keyring import Keyring, active_keyring, use_keyring, with_new_key
from carepath.protection.sealing import sealed_key_id, without_sealed_values
from carepath.services import catalog_store, contact_records
from carepath.services.contacts import find_contact
from carepath.services.key_rotation import key_usage, rotate_sealed_values, sealed_columns
from tests.integration.harness import Harness
from tests.integration.test_segments import members

FIELDS = """
fields:
  member_code: {type: string, class: identifier}
  bmi: number
"""
PEOPLE = [
    {"first_name": "Ann", "last_name": "Example", "phone": "+1 555 0100", "member_code": "GOLD-77"},
    {"first_name": "Bob", "last_name": "Sample", "phone": "+1 555 0101"},
    {"first_name": "Cleo", "last_name": "Other", "bmi": 41},
]
ADMIN = {"who": SYSTEM, "now": datetime(2026, 1, 5, tzinfo=UTC)}
SECRETS = ["Ann", "Example", "Sample", "Cleo", "555 0100", "GOLD-77", "MRN-", "@example.test"]


def raw_values(journey: Harness) -> list[str]:
    """Every value of every sealed table, as the database holds it."""
    found = []
    with journey.engine.connect() as conn:
        for table, _ in sealed_columns():
            for row in conn.execute(sa.select(*(sa.type_coerce(c, sa.Text) for c in table.c))):
                found.extend(str(v) for v in row if v is not None)
    return found


@pytest.fixture
def people(journey: Harness) -> list[int]:
    journey.apply(FIELDS)
    return [journey.contact(**person) for person in PEOPLE]


def schema(journey: Harness) -> ContactSchema:
    with read_only(journey.engine) as conn:
        return catalog_store.build_current(conn).catalog.schema


def test_identifiers_are_ciphertext_at_rest_and_plain_through_the_services(
    journey: Harness, people: list[int]
) -> None:
    stored = raw_values(journey)
    in_clear = [without_sealed_values(v) for v in stored]  # a sealed value may hold "Ann"
    assert not [v for v in in_clear if any(secret in v for secret in SECRETS)]
    with journey.engine.connect() as conn:
        ann = contact_records.read_contact(conn, people[0], schema(journey), **ADMIN)
        assert (ann["first_name"], ann["phone"], ann["member_code"]) == (
            "Ann",
            "+1 555 0100",
            "GOLD-77",
        )
        assert "email_index" not in ann
        assert find_contact(conn, "p2@example.test") == people[1]
        assert find_contact(conn, "ext:MRN-3") == people[2]


def test_conditions_on_identifiers_select_through_the_blind_index(
    journey: Harness, people: list[int]
) -> None:
    journey.apply("""
segment: by-phone
condition: {field: contact.phone, in: ["+1 555 0100", "+1 555 0101"]}
---
segment: by-email
condition: {field: contact.email, eq: p3@example.test}
---
segment: members
condition: {field: contact.member_code, exists: true}
""")
    journey.work()
    assert members(journey, "by-phone") == set(people[:2])
    assert members(journey, "by-email") == {people[2]}
    assert members(journey, "members") == {people[0]}
    with journey.engine.begin() as conn:
        contact_records.change_contact(
            conn, people[2], {"phone": "+1 555 0100"}, schema(journey), now=journey.now, who=SYSTEM
        )
    journey.work()
    assert members(journey, "by-phone") == set(people)


@pytest.fixture
def restored_keyring() -> Iterator[Keyring]:
    original = active_keyring()
    yield original
    use_keyring(None)


def test_rotation_reseals_everything_under_the_new_key_while_writes_go_on(
    journey: Harness, people: list[int], restored_keyring: Keyring
) -> None:
    more = [journey.contact(first_name=f"Extra{n}", phone=f"+1 555 2{n:03}") for n in range(40)]
    rotated = with_new_key(restored_keyring)
    use_keyring(rotated)
    contact_schema = schema(journey)
    stop, started = threading.Event(), threading.Event()
    written: list[str] = []

    now = journey.now

    def keep_writing() -> None:  # the API changing names while the rotation runs
        n = 0
        while not stop.is_set():
            n += 1
            contact_id = more[n % len(more)]
            with journey.engine.begin() as conn:
                contact_records.change_contact(
                    conn,
                    contact_id,
                    {"last_name": f"Changed{n}"},
                    contact_schema,
                    now=now,
                    who=SYSTEM,
                )
            written.append(f"{contact_id}:Changed{n}")
            started.set()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    started.wait(timeout=30)
    try:
        done = rotate_sealed_values(journey.engine, batch=7)
    finally:
        stop.set()
        writer.join()
    assert len(written) > 1
    # The writer re-seals what it writes under k2 itself: the rotation does the rest.
    assert 0 < done.resealed["contacts.first_name"] <= len(PEOPLE) + len(more)
    assert done.resealed["contacts.attributes"] == 1
    assert key_usage(journey.engine) == {"k2": key_usage(journey.engine)["k2"]}
    assert not [v for v in raw_values(journey) if sealed_key_id(v) == "k1"]
    last: dict[int, str] = {}
    for entry in written:
        contact_id, name = entry.split(":")
        last[int(contact_id)] = name
    with journey.engine.connect() as conn:
        for contact_id, name in last.items():
            assert (
                contact_records.read_contact(conn, contact_id, contact_schema, **ADMIN)["last_name"]
                == name
            )
        ann = contact_records.read_contact(conn, people[0], contact_schema, **ADMIN)
        assert ann["member_code"] == "GOLD-77"
        assert find_contact(conn, "ext:MRN-1") == people[0]
        assert conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar() == 43
    use_keyring(restored_keyring)  # without k2 nothing opens: the keyring is what protects
    with journey.engine.connect() as conn, pytest.raises(Exception, match="'k2' is not in"):
        contact_records.read_contact(conn, people[0], contact_schema, **ADMIN)


def test_a_field_declared_an_identifier_later_is_read_then_sealed_by_rotation(
    journey: Harness, restored_keyring: Keyring
) -> None:
    journey.apply("fields:\n  card: {type: string, class: phi}\n  note: string\n")
    ann = journey.contact(card="CARD-9", note="cp1:k1:looks-sealed-but-is-not")
    journey.apply("fields:\n  card: {type: string, class: identifier}\n  note: string\n")
    contact_schema = schema(journey)
    with journey.engine.connect() as conn:
        before = contact_records.read_contact(conn, ann, contact_schema, **ADMIN)
    assert before["card"] == "CARD-9"  # stored in clear before: still readable
    done = rotate_sealed_values(journey.engine)
    assert done.resealed["contacts.attributes"] == 1  # the note is nobody's token
    with journey.engine.connect() as conn:
        after = contact_records.read_contact(conn, ann, contact_schema, **ADMIN)
        stored = conn.execute(sa.select(contacts.c.attributes)).scalar_one()
    assert (after["card"], after["note"]) == ("CARD-9", "cp1:k1:looks-sealed-but-is-not")
    assert "CARD-9" not in str(stored)
