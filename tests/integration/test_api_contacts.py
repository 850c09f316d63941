"""`/v1/contacts` on both databases: upsert, read, change, erase to a tombstone, pages."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carepath.db.schema import contacts, events, outbox, runs
from carepath.entrypoints.api import problems
from tests.integration.api_support import KeyMaker, is_problem
from tests.integration.harness import Harness

FIELDS = "fields:\n  bmi: {type: number, class: phi}\n"


def test_a_contact_is_created_then_updated_by_external_id(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(FIELDS)
    headers = key_for("contacts:write", "contacts:read")
    record = {"external_id": "MRN-7", "email": "Pat@Example.test", "first_name": "Pat", "bmi": 41}
    first = client.post("/v1/contacts", json=record, headers=headers)
    assert first.status_code == 201
    contact_id = first.json()["id"]
    again = client.post("/v1/contacts", json={"external_id": "MRN-7", "bmi": 39.5}, headers=headers)
    assert again.status_code == 200
    assert again.json() == {"id": contact_id, "created": False}
    body = client.get(f"/v1/contacts/{contact_id}", headers=headers).json()
    assert body["email"] == "pat@example.test"
    assert body["first_name"] == "Pat"
    assert body["bmi"] == 39.5
    assert body["id"] == contact_id


def test_bad_fields_are_named_with_their_paths_and_nothing_is_written(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    headers = key_for("contacts:write")
    record = {"external_id": "MRN-8", "email": "not-an-address", "shoe_size": 9}
    body = is_problem(client.post("/v1/contacts", json=record, headers=headers), 422)
    assert {e["pointer"] for e in body["errors"]} == {"#/email", "#/shoe_size"}  # type: ignore[attr-defined]
    assert "not-an-address" not in str(body)
    with journey.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar() == 0


def test_patch_sets_and_unsets_fields_and_records_which_changed(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    headers = key_for("contacts:write", "contacts:read")
    ann = journey.contact(first_name="Ann", email="ann@example.test", phone="555-0100")
    response = client.patch(
        f"/v1/contacts/{ann}", json={"first_name": "Anne", "phone": None}, headers=headers
    )
    assert response.status_code == 204
    body = client.get(f"/v1/contacts/{ann}", headers=headers).json()
    assert body["first_name"] == "Anne"
    assert "phone" not in body
    (event,) = journey.events("contact.updated")
    assert event.data == {"fields": ["first_name", "phone"]}
    refused = client.patch(
        f"/v1/contacts/{ann}", json={"id": 5, "email": None, "external_id": None}, headers=headers
    )
    body = is_problem(refused, 422)
    assert {e["pointer"] for e in body["errors"]} == {"#/id", "#/"}  # type: ignore[attr-defined]


def test_erasing_keeps_an_anonymous_tombstone_and_ends_live_runs(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(
        "template: t\nsubject: Hello\nhtml: <p>Hi {{ contact.first_name }}</p>\n---\n"
        "workflow: w\ntrigger: manual\nsteps:\n"
        "  send: {email: t, next: pause}\n"
        "  pause: {wait: 7d, next: done}\n"
        "  done: {exit: completed}\n"
    )
    headers = key_for("contacts:write", "contacts:read")
    ann = journey.contact(first_name="Ann", email="ann@example.test", external_id="MRN-9")
    journey.enroll("w", ann)
    journey.work()
    journey.event("visit.done", ann, note="private")
    assert client.delete(f"/v1/contacts/{ann}", headers=headers).status_code == 204
    is_problem(client.get(f"/v1/contacts/{ann}", headers=headers), 404)
    with journey.engine.connect() as conn:
        row = conn.execute(sa.select(contacts).where(contacts.c.id == ann)).one()
        assert (row.email, row.external_id, row.first_name, row.attributes) == (
            None,
            None,
            None,
            {},
        )
        assert row.erased_at is not None
        (message,) = conn.execute(sa.select(outbox)).all()
        assert "Ann" not in message.html + message.text
        assert all(e.data == {} for e in conn.execute(sa.select(events)))
        (run,) = conn.execute(sa.select(runs)).all()
        assert (run.status, run.reason) == ("exited", "contact erased")
    is_problem(client.delete("/v1/contacts/999999", headers=headers), 404)
    event = {"type": "visit.done", "contact": {"id": ann}}
    posted = client.post("/v1/events", json=event, headers=key_for("events:write", name="e"))
    is_problem(posted, 422)


def test_contacts_are_listed_a_page_at_a_time(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    headers = key_for("contacts:read")
    ids = [journey.contact(first_name=f"P{i}", email=f"p{i}@example.test") for i in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/contacts", params=params, headers=headers).json()
        seen += [c["id"] for c in page["contacts"]]
        assert all("first_name" not in c for c in page["contacts"])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ids
    bad = client.get("/v1/contacts", params={"cursor": "nonsense"}, headers=headers)
    assert is_problem(bad, 422)["errors"] == [
        {"pointer": "#/cursor", "detail": "not a cursor this API gave out"}
    ]
    too_big = client.get("/v1/contacts", params={"limit": 5000}, headers=headers)
    assert is_problem(too_big, 422)["errors"][0]["parameter"] == "query.limit"  # type: ignore[index]


def test_reading_needs_contacts_read_and_writing_contacts_write(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    ann = journey.contact(first_name="Ann", email="ann@example.test")
    reader = key_for("contacts:read")
    is_problem(client.delete(f"/v1/contacts/{ann}", headers=reader), 403)
    writer = key_for("contacts:write", name="writer")
    is_problem(client.get(f"/v1/contacts/{ann}", headers=writer), 403)


def test_a_csv_import_is_all_or_nothing_with_line_numbers(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(FIELDS)
    headers = key_for("contacts:write") | {"content-type": "text/csv"}
    bad = "external_id,email,bmi\nMRN-1,a@example.test,31\nMRN-2,not-an-address,heavy\n"
    body = is_problem(client.post("/v1/contacts/import", content=bad, headers=headers), 422)
    assert body["errors"] == [
        {"location": "upload.csv:3", "detail": "email: not an email address"},
        {"location": "upload.csv:3", "detail": "bmi: expected a number"},
    ]
    with journey.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar() == 0
    good = "external_id,email,bmi\nMRN-1,a@example.test,31\nMRN-2,b@example.test,44\n"
    done = client.post("/v1/contacts/import", content=good, headers=headers)
    assert done.json() == {"created": 2, "updated": 0}


def test_a_jsonl_import_updates_by_identifier_and_other_types_are_refused(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    ann = journey.contact(first_name="Ann", external_id="MRN-1")
    writer = key_for("contacts:write")
    lines = '{"external_id": "MRN-1", "first_name": "Anne"}\n{"email": "new@example.test"}\n'
    jsonl = writer | {"content-type": "application/x-ndjson"}
    done = client.post("/v1/contacts/import", content=lines, headers=jsonl)
    assert done.json() == {"created": 1, "updated": 1}
    with journey.engine.connect() as conn:
        name = conn.execute(sa.select(contacts.c.first_name).where(contacts.c.id == ann)).scalar()
    assert name == "Anne"
    xml = writer | {"content-type": "application/xml"}
    is_problem(client.post("/v1/contacts/import", content="<a/>", headers=xml), 415)


def test_contact_files_stream_past_the_body_limit_and_unstorable_lines_are_named(
    journey: Harness, client: TestClient, key_for: KeyMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(problems, "MAX_BODY_BYTES", 200)
    writer = key_for("contacts:write")
    rows = "".join(f"MRN-{n},p{n}@example.test\n" for n in range(40))  # well over 200 bytes
    csv_headers = writer | {"content-type": "text/csv"}
    done = client.post(
        "/v1/contacts/import", content="external_id,email\n" + rows, headers=csv_headers
    )
    assert done.json() == {"created": 40, "updated": 0}
    with_nul = (
        "external_id,email\nMRN-90,a@example.test\nMRN-91\x00,b@example.test\n"
        "MRN-92,not-an-address\nMRN-93,c@exa\x00mple.test\n"
    )
    body = is_problem(
        client.post("/v1/contacts/import", content=with_nul, headers=csv_headers), 422
    )
    assert body["errors"] == [  # every line's problem, in order
        {"location": "upload.csv:3", "detail": "values may not contain NUL characters"},
        {"location": "upload.csv:4", "detail": "email: not an email address"},
        {"location": "upload.csv:5", "detail": "values may not contain NUL characters"},
    ]
    # Any other body is read whole before a route sees it, so it is limited.
    events = key_for("events:write", name="bridge") | {"content-type": "application/json"}
    big = json.dumps({"type": "x.y", "contact": {"id": 1}, "data": {"note": "x" * 300}})
    answer = client.post("/v1/events", content=big, headers=events)
    assert is_problem(answer, 413)["detail"] == "a request body is at most 200 bytes"
    # Only the import streams: a contact file's type elsewhere is read and checked.
    as_csv = events | {"content-type": "text/csv"}
    answer = client.post("/v1/events", content="a,b\nx\x00,y\n", headers=as_csv)
    assert is_problem(answer, 400)["detail"] == "the request may not contain NUL characters"


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        ('{"external_id": "MRN-1", "bmi": NaN}', "NaN is not a JSON number"),
        ('{"external_id": "MRN-1", "bmi": 1e999}', "bmi: expected a number"),  # infinite
        ('{"external_id": "MRN-1\\ud800"}', "values may not hold unpaired surrogates"),
        (
            '{"external_id": "MRN-1", "x": ' + "[" * 5000 + "]" * 5000 + "}",
            "JSON nested too deeply",
        ),
    ],
)
def test_a_contact_line_no_database_can_hold_is_named_with_its_reason(
    journey: Harness, client: TestClient, key_for: KeyMaker, line: str, detail: str
) -> None:
    journey.apply(FIELDS)
    headers = key_for("contacts:write") | {"content-type": "application/x-ndjson"}
    body = is_problem(client.post("/v1/contacts/import", content=line, headers=headers), 422)
    assert body["errors"] == [{"location": "upload.jsonl:1", "detail": detail}]


def test_a_csv_with_a_byte_order_mark_imports_and_a_headerless_one_shows_no_values(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.apply(FIELDS)
    headers = key_for("contacts:write") | {"content-type": "text/csv"}
    marked = "\ufeffexternal_id,bmi\nMRN-1,31\n".encode()
    assert client.post("/v1/contacts/import", content=marked, headers=headers).json() == {
        "created": 1,
        "updated": 0,
    }
    headerless = "MRN-2,ann.smith@example.test,44\nMRN-3,bo@example.test,40\n"
    answer = client.post("/v1/contacts/import", content=headerless, headers=headers)
    assert "ann.smith" not in answer.text
    assert "MRN-2" not in answer.text
    assert is_problem(answer, 422)["errors"][0]["detail"] == (
        "a column named by no field: unknown field"
    )
