"""First-party page views, both databases: known visitors' views are events, others counted."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carepath.db.schema import page_view_counts, visitors
from carepath.domain.access import SYSTEM
from carepath.entrypoints.api.app import create_app
from carepath.entrypoints.tracking_app import VISITOR_COOKIE
from carepath.services.contact_records import erase_contact
from carepath.services.page_views import page_view_report
from tests.integration.api_support import LINKS, KeyMaker, is_problem
from tests.integration.harness import Harness
from tests.integration.tracked_mail import mail_tracked

FLOW = """
template: guide
subject: Your guide
html: |
  <p>Hello {{ contact.first_name }}, <a href="https://hospital.example/bariatric">read on</a></p>
---
workflow: mail-guide
trigger: manual
steps:
  send: {email: guide}
---
workflow: guide-readers
trigger:
  event: page.viewed
  when: {field: event.data.path, eq: /bariatric/guide}
steps:
  tag: {update: {add_tags: [read-guide]}, next: done}
  done: {exit: completed}
"""
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"}


@pytest.fixture
def mailed(journey: Harness) -> tuple[Harness, int, str]:
    """Ann, sent a message with a tracked link; the link's token."""
    ann, (click,), _ = mail_tracked(journey, LINKS, FLOW, "mail-guide")
    return journey, ann, click


def _browser(journey: Harness) -> TestClient:
    app = create_app(journey.engine, links=LINKS)
    return TestClient(app, base_url="https://care.example.org", follow_redirects=False)


def _view(browser: TestClient, path: object, **headers: str) -> int:
    body = {"path": path}
    sent = browser.post(
        "/t/pv", json=body, headers={**BROWSER, "content-type": "text/plain", **headers}
    )
    return sent.status_code


def _counts(journey: Harness) -> list[tuple[str, int, int]]:
    query = sa.select(
        page_view_counts.c.path, page_view_counts.c.anonymous, page_view_counts.c.identified
    )
    with journey.engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(query))  # type: ignore[misc]


def test_a_click_makes_a_known_visitor_whose_page_views_are_events(
    mailed: tuple[Harness, int, str],
) -> None:
    journey, ann, click = mailed
    browser = _browser(journey)
    clicked = browser.get(f"/c/{click}", headers=BROWSER)
    assert clicked.status_code == 302
    cookie = clicked.headers["set-cookie"]
    assert cookie.startswith(f"{VISITOR_COOKIE}=")
    for attribute in ("HttpOnly", "Path=/t/", "SameSite=lax", "Secure", "Max-Age=7776000"):
        assert attribute in cookie
    assert "Ann" not in cookie
    assert _view(browser, "/bariatric/guide?utm_source=mail&mrn=42#top") == 204
    assert _view(browser, "/bariatric/guide") == 204
    views = journey.events("page.viewed")
    assert [(e.contact_id, e.data) for e in views] == [(ann, {"path": "/bariatric/guide"})] * 2
    assert _counts(journey) == [("/bariatric/guide", 0, 2)]
    journey.work()  # the page-visits trigger
    assert journey.run(ann, "guide-readers").status == "completed"


def test_views_of_unknown_browsers_are_only_counted(mailed: tuple[Harness, int, str]) -> None:
    journey, _, click = mailed
    stranger = _browser(journey)
    assert _view(stranger, "/bariatric/guide") == 204
    forged = _browser(journey)
    forged.cookies.set(VISITOR_COOKIE, "aGVsbG8.AAAAAAAAAAAAAAAAAAAAAA", domain="care.example.org")
    assert _view(forged, "/bariatric/guide") == 204
    private = _browser(journey)
    private.get(f"/c/{click}", headers=BROWSER)  # known, but asks not to be tracked on the site
    assert _view(private, "/bariatric/guide", **{"sec-gpc": "1"}) == 204
    assert journey.events("page.viewed") == []
    assert _counts(journey) == [("/bariatric/guide", 3, 0)]


def test_scanners_and_browsers_that_opt_out_get_no_visitor_cookie(
    mailed: tuple[Harness, int, str],
) -> None:
    journey, _, click = mailed
    browser = _browser(journey)
    scanner = browser.get(f"/c/{click}", headers={"user-agent": "Mimecast URL Protect"})
    private = browser.get(f"/c/{click}", headers={**BROWSER, "sec-gpc": "1"})
    assert "set-cookie" not in scanner.headers
    assert "set-cookie" not in private.headers
    with journey.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(visitors)).scalar() == 0


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"page": "/a"}', b'{"path": 7}', b'{"path": "https://x.example/a"}',
     b'{"path": "//x.example/a"}', b'{"path": "/a\\u0007"}', b'{"path": "/' + b"a" * 300 + b'"}',
     b'{"path": "/a", "pad": "' + b"x" * 3000 + b'"}', b"[" * 1020 + b"]" * 1020],
)  # fmt: skip
def test_what_is_not_a_page_view_is_refused_and_not_counted(journey: Harness, body: bytes) -> None:
    browser = _browser(journey)
    answer = browser.post("/t/pv", content=body, headers={"content-type": "text/plain"})
    assert answer.status_code == 400
    assert _counts(journey) == []


def test_erasing_a_contact_forgets_its_browsers(mailed: tuple[Harness, int, str]) -> None:
    journey, ann, click = mailed
    browser = _browser(journey)
    browser.get(f"/c/{click}", headers=BROWSER)
    with journey.engine.begin() as conn:
        erase_contact(conn, ann, now=journey.now, who=SYSTEM)
        assert conn.execute(sa.select(sa.func.count()).select_from(visitors)).scalar() == 0
    assert _view(browser, "/bariatric/guide") == 204
    assert journey.events("page.viewed") == []
    assert _counts(journey) == [("/bariatric/guide", 1, 0)]


def test_the_script_is_served_by_carepath_and_calls_nothing_else(journey: Harness) -> None:
    script = _browser(journey).get("/t/pv.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "sendBeacon" in script.text
    assert "location.pathname" in script.text  # never location.href: no query string leaves
    assert "http" not in script.text  # the endpoint is beside the script, no other host


def test_the_report_adds_up_views_per_path_over_the_days_asked(
    mailed: tuple[Harness, int, str], key_for: KeyMaker
) -> None:
    journey, _, click = mailed
    known, stranger = _browser(journey), _browser(journey)
    known.get(f"/c/{click}", headers=BROWSER)
    first_day = journey.now.date()
    for browser, path in ((known, "/a"), (stranger, "/a"), (stranger, "/b")):
        assert _view(browser, path) == 204
    journey.shift(timedelta(days=1))
    assert _view(stranger, "/b") == 204
    assert _view(stranger, "/b") == 204
    with journey.engine.connect() as conn:
        everything = page_view_report(conn)
        first = page_view_report(conn, since=first_day, until=first_day)
    assert everything == [
        {"path": "/b", "identified": 0, "anonymous": 3, "views": 3},
        {"path": "/a", "identified": 1, "anonymous": 1, "views": 2},
    ]
    assert [(p["path"], p["views"]) for p in first] == [("/a", 2), ("/b", 1)]
    headers = key_for("reports:read")
    asked = known.get(f"/v1/reports/page-views?until={first_day.isoformat()}", headers=headers)
    assert asked.status_code == 200
    assert asked.json() == {"pages": first}
    is_problem(known.get("/v1/reports/page-views", params={"since": "soon"}, headers=headers), 422)


def test_a_visitor_expires_and_expired_visitors_are_pruned(
    mailed: tuple[Harness, int, str],
) -> None:
    journey, _, click = mailed
    old = _browser(journey)
    old.get(f"/c/{click}", headers=BROWSER)
    journey.shift(timedelta(days=91))
    assert _view(old, "/a") == 204  # counted, no longer known
    assert journey.events("page.viewed") == []
    _browser(journey).get(f"/c/{click}", headers=BROWSER)  # a new visitor prunes the old one
    with journey.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(visitors)).scalar() == 1
