"""Purpose of use and consent on both databases: what each send needs, checked when it goes."""

from __future__ import annotations

from datetime import timedelta

from starlette.testclient import TestClient

from carepath.domain.access import SYSTEM
from carepath.services.consents import ConsentChange, ConsentKind, set_consent
from tests.integration.api_support import KeyMaker, is_problem
from tests.integration.harness import Harness

DOCUMENTS = """
template: offer
subject: A program for you
html: <p>Our weight-loss program</p>
---
template: reminder
subject: Your appointment
html: <p>See you tomorrow</p>
---
workflow: campaign
purpose: marketing
trigger: {event: campaign.started}
steps:
  first: {email: offer, next: pause}
  pause: {wait: 1d, next: second}
  second: {email: offer, next: done}
  done: {exit: completed}
---
workflow: reminders
purpose: treatment
trigger: {event: appointment.scheduled}
steps:
  remind: {email: reminder, next: done}
  done: {exit: completed}
"""


def grant(journey: Harness, contact_id: int, kind: ConsentKind, **extra: object) -> None:
    with journey.engine.begin() as conn:
        change = ConsentChange(kind, True, "registration form", **extra)  # type: ignore[arg-type]
        set_consent(conn, contact_id, change, now=journey.now, who=SYSTEM)


def revoke(journey: Harness, contact_id: int, kind: ConsentKind) -> None:
    with journey.engine.begin() as conn:
        set_consent(
            conn,
            contact_id,
            ConsentChange(kind, False, "patient portal"),
            now=journey.now,
            who=SYSTEM,
        )


def sent(journey: Harness, contact_id: int) -> list[tuple[str, str, str | None]]:
    return [(m.step, m.status, m.last_error) for m in journey.outbox(contact_id)]


def test_marketing_needs_an_authorization_and_a_revocation_stops_the_next_send(
    journey: Harness,
) -> None:
    journey.apply(DOCUMENTS)
    ann, bob = journey.contact(), journey.contact()
    grant(journey, ann, ConsentKind.MARKETING)
    for contact_id in (ann, bob):
        journey.event("campaign.started", contact_id, key=f"c-{contact_id}")
    journey.work()
    assert sent(journey, ann) == [("first", "sent", None)]
    assert sent(journey, bob) == [("first", "skipped", "no marketing authorization")]
    revoke(journey, ann, ConsentKind.MARKETING)  # mid-campaign
    journey.advance("2d")
    assert sent(journey, ann)[-1] == ("second", "skipped", "no marketing authorization")
    assert [e.data["consent"] for e in journey.events("consent.revoked")] == ["marketing"]


def test_an_expired_authorization_is_no_authorization(journey: Harness) -> None:
    journey.apply(DOCUMENTS)
    ann = journey.contact()
    grant(journey, ann, ConsentKind.MARKETING, expires_at=journey.now + timedelta(hours=12))
    journey.event("campaign.started", ann, key="c1")
    journey.work()
    journey.advance("2d")
    assert sent(journey, ann) == [
        ("first", "sent", None),
        ("second", "skipped", "no marketing authorization"),
    ]


def test_treatment_needs_no_authorization_but_honours_an_email_opt_out(journey: Harness) -> None:
    journey.apply(DOCUMENTS)
    ann, bob = journey.contact(), journey.contact()
    revoke(journey, bob, ConsentKind.EMAIL)
    for contact_id in (ann, bob):
        journey.event("appointment.scheduled", contact_id, key=f"a-{contact_id}")
    journey.work()
    assert sent(journey, ann) == [("remind", "sent", None)]
    assert sent(journey, bob) == [("remind", "skipped", "email opted out")]


def test_consents_over_the_api(journey: Harness, client: TestClient, key_for: KeyMaker) -> None:
    ann = journey.contact()
    writer, reader = key_for("contacts:write"), key_for("contacts:read", name="crm")
    granted = client.put(
        f"/v1/contacts/{ann}/consents/marketing",
        json={"status": "granted", "source": "HRA form", "expires_at": "2027-01-05T00:00:00Z"},
        headers=writer,
    )
    assert granted.status_code == 204
    [consent] = client.get(f"/v1/contacts/{ann}/consents", headers=reader).json()
    assert (consent["kind"], consent["status"], consent["source"]) == (
        "marketing",
        "granted",
        "HRA form",
    )
    past = client.put(
        f"/v1/contacts/{ann}/consents/marketing",
        json={"status": "granted", "source": "x", "expires_at": "2020-01-01T00:00:00Z"},
        headers=writer,
    )
    assert is_problem(past, 422)["errors"] == [
        {"pointer": "#/expires_at", "detail": "an expiry is a future moment of a granted consent"}
    ]
    unknown = client.put(
        "/v1/contacts/999/consents/email", json={"status": "revoked", "source": "x"}, headers=writer
    )
    assert unknown.status_code == 404
    assert (
        client.put(
            f"/v1/contacts/{ann}/consents/fax",
            json={"status": "revoked", "source": "x"},
            headers=writer,
        ).status_code
        == 422
    )
