"""Roles on both databases: what each may do and what it is refused, through the API and
in the services themselves; break-glass access, time-limited and audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carepath.db.schema import audit_log
from carepath.domain.access import ROLE_SCOPES, Principal, Role
from carepath.errors import Forbidden, InvalidInput
from carepath.services import api_keys, catalog_store, contact_records
from carepath.services.access import start_break_glass
from carepath.services.clock import wall_time
from carepath.services.message_log import LogFilter, message_log, timeline
from carepath.services.tasks import list_tasks
from tests.integration.api_support import KeyMaker, is_problem
from tests.integration.harness import Harness

FLOW = """
workflow: w
trigger: manual
steps:
  hello: {email: hello, next: call}
  call: {task: {queue: intake, title: Call about a consult}, next: await}
  await: {wait_for: {event: task.completed, within: 3d}, next: done, on_timeout: done}
  done: {exit: completed}
---
workflow: v
trigger: manual
steps:
  call: {task: {queue: billing, title: Call about a bill}, next: done}
  done: {exit: completed}
---
template: hello
subject: Hello
html: <p>Hello {{ contact.first_name }}</p>
"""


@pytest.fixture
def people(journey: Harness) -> tuple[int, int]:
    """Ann has an open task in `intake`, Bob one in `billing`; both got an email."""
    journey.apply(FLOW)
    ann, bob = journey.contact(first_name="Ann"), journey.contact(first_name="Bob")
    journey.enroll("w", ann)
    journey.enroll("v", bob)
    journey.work()
    return ann, bob


def agent(queues: frozenset[str] = frozenset({"intake"})) -> Principal:
    return Principal("key:jo", Role.AGENT, ROLE_SCOPES[Role.AGENT], queues)


def role(name: Role) -> Principal:
    return Principal(f"key:{name}", name, ROLE_SCOPES[name])


def test_each_role_gets_its_scopes_and_only_agents_name_queues(journey: Harness) -> None:
    with journey.engine.begin() as conn:
        for r in (Role.ADMIN, Role.MARKETER, Role.ANALYST):
            issued = api_keys.create_key(conn, name=f"k-{r}", role=r, now=journey.now)
            assert issued.key.scopes == ROLE_SCOPES[r]
        with pytest.raises(InvalidInput, match="queues"):
            api_keys.create_key(conn, name="k-agent", role=Role.AGENT, now=journey.now)
        with pytest.raises(InvalidInput, match="has its role's scopes"):
            api_keys.create_key(
                conn, name="k-x", role=Role.ANALYST, scopes=["contacts:read"], now=journey.now
            )
        with pytest.raises(InvalidInput, match="only agents"):
            api_keys.create_key(
                conn, name="k-y", scopes=["events:write"], queues=["intake"], now=journey.now
            )


def test_an_agent_reads_and_works_only_the_contacts_of_its_queues(
    journey: Harness, people: tuple[int, int], client: TestClient, key_for: KeyMaker
) -> None:
    ann, bob = people
    jo = key_for(name="jo", role=Role.AGENT, queues=("intake",))
    assert client.get(f"/v1/contacts/{ann}", headers=jo).json()["first_name"] == "Ann"
    assert client.get(f"/v1/contacts/{ann}/timeline", headers=jo).is_success
    refused = is_problem(client.get(f"/v1/contacts/{bob}", headers=jo), 403)
    assert refused["detail"] == "an agent sees only the contacts of open tasks in its queues"
    is_problem(client.patch(f"/v1/contacts/{bob}", json={"last_name": "X"}, headers=jo), 403)
    is_problem(client.get("/v1/contacts", headers=jo), 403)  # no listing of everyone
    tasks = client.get("/v1/tasks", headers=jo).json()
    assert [t["contact_id"] for t in tasks] == [ann]
    is_problem(client.get("/v1/tasks", params={"queue": "billing"}, headers=jo), 403)
    bobs_task = journey.tasks()[1].id
    is_problem(client.post(f"/v1/tasks/{bobs_task}/claim", json={"agent": "x"}, headers=jo), 403)
    claimed = client.post(f"/v1/tasks/{tasks[0]['id']}/claim", json={"agent": "sam"}, headers=jo)
    assert claimed.json()["assignee"] == "key:jo"  # an agent claims for itself
    is_problem(client.get("/v1/reports/messages", headers=jo), 403)
    # Once the task is done, Ann is no longer the agent's to read.
    done = {"outcome": "booked"}
    assert client.post(f"/v1/tasks/{tasks[0]['id']}/complete", json=done, headers=jo).is_success
    is_problem(client.get(f"/v1/contacts/{ann}", headers=jo), 403)


def test_the_service_layer_refuses_the_same_without_any_route(
    journey: Harness, people: tuple[int, int]
) -> None:
    ann, bob = people
    now = journey.now
    with journey.engine.connect() as conn:
        schema = journey.schema()
        assert contact_records.read_contact(conn, ann, schema, who=agent(), now=now)
        with pytest.raises(Forbidden):
            contact_records.read_contact(conn, bob, schema, who=agent(), now=now)
        for r in (Role.MARKETER, Role.ANALYST):
            with pytest.raises(Forbidden, match=f"the {r} role does not allow contacts:read"):
                contact_records.read_contact(conn, ann, schema, who=role(r), now=now)
            with pytest.raises(Forbidden):
                timeline(conn, ann, who=role(r), now=now)
        assert [t.contact_id for t in list_tasks(conn, who=agent(), now=now)] == [ann]


def test_marketers_and_analysts_see_aggregates_with_identities_masked(
    journey: Harness, people: tuple[int, int], client: TestClient, key_for: KeyMaker
) -> None:
    ann, _ = people
    for name in (Role.MARKETER, Role.ANALYST):
        headers = key_for(name=f"k-{name}", role=name)
        log = client.get("/v1/reports/messages", headers=headers).json()["messages"]
        assert [m["contact_id"] for m in log] == [None]
        assert [m["template"] for m in log] == ["hello"]
        one = client.get("/v1/reports/messages", params={"contact_id": ann}, headers=headers)
        is_problem(one, 403)
        assert client.get("/v1/reports/workflows/w/funnel", headers=headers).is_success
        is_problem(client.get(f"/v1/contacts/{ann}", headers=headers), 403)
        is_problem(client.post("/v1/contacts", json={"external_id": "X"}, headers=headers), 403)
    marketer = key_for(name="m2", role=Role.MARKETER)
    analyst = key_for(name="a2", role=Role.ANALYST)
    document = {"source": "list: newsletter\ntitle: News\n"}
    assert client.post("/v1/resources/apply", json=document, headers=marketer).is_success
    is_problem(client.post("/v1/resources/apply", json=document, headers=analyst), 403)
    admin = key_for(name="boss", role=Role.ADMIN)
    log = client.get("/v1/reports/messages", headers=admin).json()["messages"]
    assert [m["contact_id"] for m in log] == [ann]


def test_break_glass_opens_every_contact_for_a_stated_time_and_audits_each_read(
    journey: Harness,
    people: tuple[int, int],
    client: TestClient,
    key_for: KeyMaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, bob = people
    jo = key_for(name="jo", role=Role.AGENT, queues=("intake",))
    is_problem(client.get(f"/v1/contacts/{bob}", headers=jo), 403)
    short = client.post("/v1/break-glass", json={"reason": "why", "minutes": 30}, headers=jo)
    assert is_problem(short, 422)["errors"][0]["pointer"] == "#/reason"  # type: ignore[index]
    reason = "patient in the emergency department, consent unclear"
    opened = client.post("/v1/break-glass", json={"reason": reason, "minutes": 30}, headers=jo)
    assert opened.is_success
    assert client.get(f"/v1/contacts/{bob}", headers=jo).json()["first_name"] == "Bob"
    log = client.get("/v1/reports/messages", headers=key_for(name="a", role=Role.ANALYST))
    assert log.json()["messages"][0]["contact_id"] is None  # someone else's glass is not broken
    with journey.engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.purpose)
            .where(audit_log.c.purpose == "emergency")
            .order_by(audit_log.c.id)
        ).all()
        details = conn.execute(
            sa.select(audit_log.c.detail, audit_log.c.contact_ids).where(
                audit_log.c.action == "break_glass.read"
            )
        ).one()
    assert [tuple(r) for r in rows] == [
        ("key:jo", "break_glass.start", "emergency"),
        ("key:jo", "break_glass.read", "emergency"),
    ]
    assert details == (reason, [bob])
    later = wall_time() + timedelta(minutes=31)  # it ends on its own, by the wall clock
    monkeypatch.setattr("carepath.services.access.wall_time", lambda: later)
    is_problem(client.get(f"/v1/contacts/{bob}", headers=jo), 403)


def test_break_glass_needs_a_reason_and_a_short_time(journey: Harness) -> None:
    with journey.engine.begin() as conn, pytest.raises(InvalidInput) as caught:
        start_break_glass(conn, agent(), reason="  ", minutes=600)
    assert {p.location for p in caught.value.problems} == {"reason", "minutes"}


def test_a_masked_log_cannot_be_asked_for_one_contact_in_the_service_either(
    journey: Harness, people: tuple[int, int]
) -> None:
    ann, _ = people
    with journey.engine.connect() as conn:
        rows = message_log(conn, LogFilter(), who=role(Role.ANALYST), now=journey.now)
        assert [r.contact_id for r in rows] == [None]
        with pytest.raises(Forbidden, match="without contact identities"):
            message_log(conn, LogFilter(contact_id=ann), who=role(Role.ANALYST), now=journey.now)


def test_list_members_are_for_roles_that_see_everyone_and_joins_follow_the_queues(
    journey: Harness, people: tuple[int, int], client: TestClient, key_for: KeyMaker
) -> None:
    ann, bob = people
    journey.apply("list: diabetes-programme\ntitle: Diabetes programme\n")
    jo = key_for(name="jo", role=Role.AGENT, queues=("intake",))
    members = "/v1/lists/diabetes-programme/members"
    assert client.post(members, json={"contact_ids": [ann]}, headers=jo).is_success
    is_problem(client.post(members, json={"contact_ids": [bob]}, headers=jo), 403)
    is_problem(client.delete(f"{members}/{bob}", headers=jo), 403)
    is_problem(client.get(members, headers=jo), 403)  # who is on a list is PHI
    admin = key_for(name="boss", role=Role.ADMIN)
    assert client.get(members, headers=admin).json()["contact_ids"] == [ann]


def test_a_marketer_cannot_apply_a_workflow_that_posts_contact_data_out(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    marketer = key_for(name="m", role=Role.MARKETER)
    leaking = (
        "workflow: leak\ntrigger: manual\nsteps:\n"
        "  post: {webhook: {url: 'https://collector.example', secret_env: CRM_HOOK_SECRET,"
        " fields: [first_name]}, next: done}\n  done: {exit: completed}\n"
    )
    refused = client.post("/v1/resources/apply", json={"source": leaking}, headers=marketer)
    assert is_problem(refused, 403)["detail"] == (
        "the marketer role does not apply workflows with webhook steps"
    )
    with journey.engine.connect() as conn:
        assert "leak" not in catalog_store.build_current(conn).catalog.workflows  # rolled back
    admin = key_for(name="boss", role=Role.ADMIN)
    assert client.post("/v1/resources/apply", json={"source": leaking}, headers=admin).is_success


def test_an_analyst_under_break_glass_sees_identities_and_each_page_is_audited(
    journey: Harness, people: tuple[int, int], client: TestClient, key_for: KeyMaker
) -> None:
    ann, _ = people
    analyst = key_for(name="a", role=Role.ANALYST)
    reason = {"reason": "a patient's complaint about a message, case 4471", "minutes": 15}
    assert client.post("/v1/break-glass", json=reason, headers=analyst).is_success
    log = client.get("/v1/reports/messages", headers=analyst).json()["messages"]
    assert [m["contact_id"] for m in log] == [ann]
    with journey.engine.connect() as conn:
        audited = conn.execute(
            sa.select(audit_log.c.contact_ids, audit_log.c.purpose).where(
                audit_log.c.action == "break_glass.read"
            )
        ).all()
    assert [tuple(r) for r in audited] == [([ann], "emergency")]
