"""Pages patients reach from a message: email preferences and unsubscribing (RFC 8058).

`GET /u/{token}` only shows the preference page: mail scanners and link
previews fetch every URL in a message, and a GET must never unsubscribe
anyone. `POST /u/{token}` saves the choices (all email, marketing only, lists
to leave; see `services/unsubscribes.py`); the one-click POST of mail
clients (`List-Unsubscribe=One-Click`) stops all email. The pages name no
one: the token is all they know. They show the titles of the lists the
recipient is on, to whoever holds a link from a message sent to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from carepath.db.connection import read_only
from carepath.errors import InvalidInput
from carepath.services.unsubscribes import Scope, Subscriptions, subscriptions, unsubscribe

router = APIRouter(include_in_schema=False)
_NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def html_page(
    title: str, body: str, *, status: int = 200, headers: Mapping[str, str] = _NO_STORE
) -> HTMLResponse:
    """A plain, accessible page: a title, a heading, `body` (already escaped HTML)."""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head><body><main><h1>{escape(title)}</h1>{body}"
        "</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=dict(headers))


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return html_page(title, body, status=status)


@router.get("/u/{token}")
def preferences_page(request: Request, token: str) -> HTMLResponse:
    """What the recipient can stop; reading it changes nothing."""
    state = request.app.state.api
    try:
        with read_only(state.engine) as conn:
            offered = subscriptions(conn, state.links, token) if state.links else None
    except InvalidInput:
        offered = None
    if offered is None:
        return _not_valid()
    return _page("Email preferences", _preferences_form(token, offered))


def _preferences_form(token: str, offered: Subscriptions) -> str:
    choices = "".join(
        f'<p><label><input type="radio" name="scope" value="{value}"{checked}> {label}</label></p>'
        for value, label, checked in (
            (Scope.ALL.value, "All emails from us, appointment reminders included", " checked"),
            (Scope.MARKETING.value, "Only news and offers; keep appointment reminders", ""),
            (Scope.NONE.value, "None of these", ""),
        )
    )
    lists = "".join(
        f'<p><label><input type="checkbox" name="leave" value="{escape(name, quote=True)}">'
        f" Leave the list {escape(title)}</label></p>"
        for name, title in offered.lists
    )
    list_set = f"<fieldset><legend>Lists you are on</legend>{lists}</fieldset>" if lists else ""
    return (
        f'<form method="post" action="/u/{escape(token, quote=True)}">'
        f"<fieldset><legend>Which emails should we stop?</legend>{choices}</fieldset>"
        f'{list_set}<p><button type="submit">Save</button></p></form>'
    )


@router.post("/u/{token}")
async def unsubscribe_now(request: Request, token: str) -> HTMLResponse:
    """RFC 8058's one-click POST (`List-Unsubscribe=One-Click`) stops all email, as does a
    POST with no choices; the preference page's form says what to stop."""
    state = request.app.state.api
    fields = parse_qsl((await request.body()).decode("utf-8", "replace"), max_num_fields=100)
    chosen = dict(fields)
    one_click = chosen.get("List-Unsubscribe") == "One-Click"
    try:
        scope = Scope.ALL if one_click else Scope(chosen.get("scope", Scope.ALL.value))
    except ValueError:
        return _not_offered()
    leave = [] if one_click else [value for name, value in fields if name == "leave"]
    source = "one-click" if one_click else "preferences"

    def save() -> None:
        with state.engine.begin() as conn:
            now = state.clock.now(conn)
            unsubscribe(conn, state.links, token, now=now, source=source, scope=scope, leave=leave)

    if state.links is None:
        return _not_valid()
    try:
        await run_in_threadpool(save)
    except InvalidInput as refused:
        if any(p.location == "leave" for p in refused.problems):
            return _not_offered()
        return _not_valid()
    return _page("Saved", f"<p>{_DONE[scope]}</p>")


def _not_valid() -> HTMLResponse:
    return _page("Email preferences", "<p>This link is not valid.</p>", status=404)


def _not_offered() -> HTMLResponse:
    return _page("Email preferences", "<p>That choice is not offered.</p>", status=400)


_DONE = {
    Scope.ALL: "You will not receive emails from us any more.",
    Scope.MARKETING: "You will not receive news and offers any more. Appointment reminders "
    "and other messages about your care still come.",
    Scope.NONE: "Your choices are saved.",
}
