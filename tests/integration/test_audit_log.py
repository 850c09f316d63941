"""The audit log on both databases: reads and changes recorded, any tampering named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carepath.db.connection import read_only
from carepath.db.schema import audit_log
from carepath.domain.access import Role
from carepath.services.audit import AuditEntry, record, rows_in_order, verify
from tests.integration.api_support import KeyMaker
from tests.integration.harness import Harness

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def rows(journey: Harness) -> list[dict[str, object]]:
    with read_only(journey.engine) as conn:
        return list(rows_in_order(conn))


def test_api_reads_and_changes_of_contacts_are_recorded_with_ids_only(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    ann = journey.contact(first_name="Ann")
    reader, writer = key_for("contacts:read"), key_for("contacts:write", name="crm")
    assert client.get(f"/v1/contacts/{ann}", headers=reader).status_code == 200
    patched = client.patch(f"/v1/contacts/{ann}", json={"first_name": "Anne"}, headers=writer)
    assert patched.status_code == 204
    assert client.get("/v1/contacts", headers=reader).status_code == 200
    logged = [(r["actor"], r["action"], r["contact_ids"], r["detail"]) for r in rows(journey)]
    assert logged == [
        ("key:ehr-bridge", "api_key.use", [], None),  # once per key within the cache time
        ("key:ehr-bridge", "contact.read", [ann], None),
        ("key:crm", "api_key.use", [], None),
        ("key:crm", "contact.change", [ann], "fields: first_name"),
        ("key:ehr-bridge", "contact.list", [ann], None),
    ]
    assert "Ann" not in str(logged)  # values never reach the log
    with read_only(journey.engine) as conn:
        assert verify(conn).intact


@pytest.fixture
def chain(journey: Harness) -> Harness:
    with journey.engine.begin() as conn:
        for n in range(5):
            entry = AuditEntry("cli:ops", "contact.read", (n + 1,), detail=f"row {n + 1}")
            record(conn, entry, now=T0 + timedelta(minutes=n))
    return journey


def test_an_edited_row_is_named(chain: Harness) -> None:
    with chain.engine.begin() as conn:
        conn.execute(audit_log.update().where(audit_log.c.id == 3).values(contact_ids=[99]))
        verdict = verify(conn)
    assert (verdict.first_bad, verdict.reason) == (3, "its content was changed")


def test_a_removed_row_is_named(chain: Harness) -> None:
    with chain.engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.id == 2))
        verdict = verify(conn)
    assert (verdict.first_bad, verdict.reason) == (3, "row 2 is missing")


def test_a_removed_row_renumbered_to_hide_the_gap_is_named(chain: Harness) -> None:
    with chain.engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.id == 2))
        for n in (3, 4, 5):
            conn.execute(audit_log.update().where(audit_log.c.id == n).values(id=n - 1))
        verdict = verify(conn)
    assert verdict.first_bad == 2
    assert verdict.reason == "does not follow the row before it (removed or reordered)"


def test_reordered_rows_are_named(chain: Harness) -> None:
    with chain.engine.begin() as conn:
        swapped = {
            r.id: r for r in conn.execute(sa.select(audit_log).where(audit_log.c.id.in_([2, 4])))
        }
        for target, source in ((2, 4), (4, 2)):
            names = [c.name for c in audit_log.c if c.name != "id"]
            values = {name: getattr(swapped[source], name) for name in names}
            conn.execute(audit_log.update().where(audit_log.c.id == target).values(values))
        verdict = verify(conn)
    assert verdict.first_bad == 2
    assert not verdict.intact


def test_an_untouched_chain_verifies(chain: Harness) -> None:
    with read_only(chain.engine) as conn:
        verdict = verify(conn)
    assert (verdict.intact, verdict.rows) == (True, 5)


def test_configuration_changes_enrollments_task_work_and_run_reads_are_recorded(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    ann = journey.contact()
    admin = key_for(name="ops", role=Role.ADMIN)
    flow = (
        "workflow: w\ntrigger: manual\nsteps:\n"
        "  call: {task: {queue: q, title: Call}, next: done}\n  done: {exit: completed}\n"
    )
    assert client.post("/v1/resources/apply", json={"source": flow}, headers=admin).is_success
    assert client.post("/v1/workflows/w/pause", headers=admin).is_success
    assert client.post("/v1/workflows/w/activate", headers=admin).is_success
    enrolled = client.post("/v1/workflows/w/enroll", json={"contact_ids": [ann]}, headers=admin)
    assert enrolled.is_success
    journey.work()
    assert client.get(f"/v1/contacts/{ann}/runs", headers=admin).is_success
    (task,) = journey.tasks()
    done = client.post(f"/v1/tasks/{task.id}/complete", json={"outcome": "ok"}, headers=admin)
    assert done.status_code == 204
    logged = [(r["action"], r["contact_ids"], r["detail"]) for r in rows(journey)]
    assert logged == [
        ("api_key.use", [], None),
        ("resources.apply", [], "workflow w v1"),
        ("workflow.pause", [], "w"),
        ("workflow.activate", [], "w"),
        ("workflow.enroll", [ann], "w"),
        ("contact.runs", [ann], None),
        ("task.complete", [ann], f"task {task.id}: ok"),
    ]
