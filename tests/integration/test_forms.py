"""Forms on both databases: an accessible page, CSRF, checked answers, a score, an enrollment."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carepath.db.schema import contacts
from carepath.entrypoints.api.app import create_app
from carepath.entrypoints.tracking_app import VISITOR_COOKIE
from carepath.errors import InvalidInput
from tests.integration.api_support import LINKS
from tests.integration.harness import Harness

SECRET = "f" * 40
HRA = """
fields:
  bmi: {type: number, class: phi}
---
form: bariatric-hra
title: Weight-loss surgery health assessment
intro: A few questions to see whether surgery could be right for you.
fields:
  - {name: email, label: Email address, type: email, required: true, contact: email}
  - {name: first_name, label: First name, type: text, contact: first_name}
  - {name: bmi, label: Body mass index, type: number, min: 10, max: 90, required: true,
     contact: bmi}
  - {name: diabetes, label: "Do you have type 2 diabetes?", type: yes_no}
  - {name: attempts, label: Earlier attempts, type: choice, options: [none, one, several]}
score:
  - {when: {field: event.data.answers.bmi, gte: 40}, points: 40}
  - when: {all: [{field: event.data.answers.bmi, gte: 35}, {field: event.data.answers.bmi, lt: 40}]}
    points: 25
  - {when: {field: event.data.answers.diabetes, eq: true}, points: 15}
  - {when: {field: event.data.answers.attempts, eq: several}, points: 10}
---
workflow: bariatric-leads
trigger:
  event: form.submitted
  when: {all: [{field: event.data.form, eq: bariatric-hra}, {field: event.data.score, gte: 40}]}
steps:
  tag: {update: {add_tags: [qualified]}, next: done}
  done: {exit: completed}
"""


@pytest.fixture
def browser(journey: Harness) -> TestClient:
    journey.apply(HRA)
    app = create_app(journey.engine, links=LINKS, secret=SECRET)
    return TestClient(app, raise_server_exceptions=False)


def _open(browser: TestClient) -> str:
    page = browser.get("/f/bariatric-hra")
    assert page.status_code == 200
    (token,) = re.findall(r'name="csrf_token" value="([^"]+)"', page.text)
    return token


def _answers(token: str, **answers: str) -> dict[str, str]:
    base = {"email": "Pat@Example.test", "first_name": "Pat", "bmi": "42", "diabetes": "yes"}
    return {"csrf_token": token, **base, **answers}


def test_the_page_is_labelled_and_protected(browser: TestClient) -> None:
    page = browser.get("/f/bariatric-hra")
    assert '<label for="bmi">Body mass index (required)</label>' in page.text
    assert 'type="number"' in page.text
    assert 'min="10"' in page.text
    assert "<legend>Do you have type 2 diabetes?</legend>" in page.text
    assert page.headers["cache-control"] == "no-store, private"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "carepath_form_bariatric-hra" in page.headers["set-cookie"]
    assert "samesite=strict" in page.headers["set-cookie"].lower()
    assert browser.get("/f/nope").status_code == 404


def test_a_qualifying_submission_is_scored_saved_and_enrolls_the_contact(
    journey: Harness, browser: TestClient
) -> None:
    token = _open(browser)
    sent = browser.post("/f/bariatric-hra", data=_answers(token, attempts="several"))
    assert sent.status_code == 200
    assert "Thank you" in sent.text or "thank" in sent.text.lower()
    (event,) = journey.events("form.submitted")
    assert event.data == {  # identifiers are on the contact, sealed, not in the event
        "form": "bariatric-hra",
        "answers": {"bmi": 42, "diabetes": True, "attempts": "several"},
        "score": 65,
    }
    with journey.engine.connect() as conn:
        row = conn.execute(sa.select(contacts).where(contacts.c.id == event.contact_id)).one()
    assert (row.email, row.first_name, row.attributes) == ("pat@example.test", "Pat", {"bmi": 42})
    journey.work()
    run = journey.run(event.contact_id, "bariatric-leads")
    assert run.status == "completed"
    again = browser.post("/f/bariatric-hra", data=_answers(token, attempts="several"))
    assert again.status_code == 200
    assert len(journey.events("form.submitted")) == 1  # the same page sent twice: one event


def test_a_submission_makes_the_browser_a_known_visitor_of_the_site(
    journey: Harness, browser: TestClient
) -> None:
    sent = browser.post("/f/bariatric-hra", data=_answers(_open(browser)))
    (cookie,) = [c for c in sent.headers.get_list("set-cookie") if c.startswith(VISITOR_COOKIE)]
    site = TestClient(browser.app, base_url="https://care.example.org")
    site.cookies.set(VISITOR_COOKIE, cookie.split(";")[0].split("=", 1)[1])
    viewed = site.post("/t/pv", content=b'{"path": "/bariatric"}')
    assert viewed.status_code == 204
    (view,) = journey.events("page.viewed")
    assert view.contact_id == journey.events("form.submitted")[0].contact_id


def test_a_low_score_does_not_enroll(journey: Harness, browser: TestClient) -> None:
    token = _open(browser)
    browser.post("/f/bariatric-hra", data=_answers(token, bmi="31", diabetes="no"))
    (event,) = journey.events("form.submitted")
    assert event.data["score"] == 0
    journey.work()
    assert journey.runs(event.contact_id) == []


def test_wrong_answers_are_shown_back_and_nothing_is_saved(
    journey: Harness, browser: TestClient
) -> None:
    token = _open(browser)
    page = browser.post("/f/bariatric-hra", data=_answers(token, email="nope", bmi="7"))
    assert page.status_code == 422
    assert 'role="alert"' in page.text
    assert 'aria-invalid="true" aria-describedby="email-error"' in page.text
    assert "Please enter at least 10." in page.text
    assert journey.events("form.submitted") == []
    with journey.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar() == 0


def test_a_post_without_the_pages_token_and_cookie_is_refused(
    journey: Harness, browser: TestClient
) -> None:
    token = _open(browser)
    stranger = TestClient(browser.app)  # no cookie: another site's page posting here
    assert stranger.post("/f/bariatric-hra", data=_answers(token)).status_code == 403
    flood = "&".join(f"f{i}=x" for i in range(300))
    too_many = browser.post(
        "/f/bariatric-hra",
        content=flood,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert too_many.status_code == 413
    altered = token[:-1] + ("0" if token[-1] != "0" else "1")  # always another signature
    forged = browser.post("/f/bariatric-hra", data=_answers(altered))
    assert forged.status_code == 403
    assert journey.events("form.submitted") == []


def test_form_documents_are_validated(journey: Harness) -> None:
    bad = HRA.replace("contact: email}", "}").replace("type: yes_no", "type: checkbox")
    with pytest.raises(InvalidInput) as caught:
        journey.apply(bad)
    text = str(caught.value)
    assert "a required field must go to contact email or external_id" in text
    assert "one of text, email, number, yes_no, choice, date" in text


def test_an_answer_with_an_encoded_nul_is_refused_and_nothing_is_saved(
    journey: Harness, browser: TestClient
) -> None:
    token = _open(browser)
    sent = browser.post("/f/bariatric-hra", data=_answers(token, first_name="P\x00at"))
    assert sent.status_code == 400
    assert journey.events("form.submitted") == []
