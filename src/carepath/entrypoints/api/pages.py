"""Pages patients reach from a message: unsubscribe (RFC 8058 one-click, and by hand).

`GET /u/{token}` only shows a page with a button: mail scanners and link
previews fetch every URL in a message, and a GET must never unsubscribe
anyone. `POST /u/{token}` unsubscribes, whether the mail client sends
`List-Unsubscribe=One-Click` or the person presses the button. The pages
name no one: the token is all they know.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from carepath.errors import InvalidInput
from carepath.services.unsubscribes import unsubscribe

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
def unsubscribe_page(token: str) -> HTMLResponse:
    form = (
        "<p>Stop receiving these emails?</p>"
        f'<form method="post" action="/u/{escape(token, quote=True)}">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", form)


@router.post("/u/{token}")
def unsubscribe_now(request: Request, token: str) -> HTMLResponse:
    state = request.app.state.api
    if state.links is None:
        return _page("Unsubscribe", "<p>This link is not valid.</p>", status=404)
    try:
        with state.engine.begin() as conn:
            unsubscribe(conn, state.links, token, now=state.clock.now(conn), source="one-click")
    except InvalidInput:
        return _page("Unsubscribe", "<p>This link is not valid.</p>", status=404)
    return _page("Unsubscribed", "<p>You will not receive these emails any more.</p>")
