"""The small ASGI app behind tracking: links and pixels in messages, and page views on the site.

`/c/{token}` redirects to a link that was in a message, `/o/{token}` is an
open pixel. `/t/pv.js` is the page-view script a site includes, and
`/t/pv` is where it reports the path of each page viewed (see
`services/page_views.py`). The HTTP API mounts it; it can also run on its
own. Unknown or tampered tokens get 404 with no detail; nothing in a
response or a log names a contact.
"""

from __future__ import annotations

import base64
import json

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from carepath.channels.links import LinkSigner
from carepath.services.clock import Clock, DatabaseClock
from carepath.services.page_views import (
    VISITOR_LIFETIME,
    new_visitor,
    page_path,
    record_view,
    visitor_contact,
)
from carepath.services.tracking import UnknownLinkError, Visit, record_click, record_open

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
VISITOR_COOKIE = "carepath_visitor"
MAX_VIEW_BODY = 2048
# Reports the path (never the query string) of the page it is on, to the carepath
# that served it; `sendBeacon` with a text body needs no CORS preflight.
PAGE_VIEW_SCRIPT = """\
(function () {
  var script = document.currentScript;
  if (!script || !navigator.sendBeacon) return;
  var endpoint = new URL("pv", script.src).href;
  navigator.sendBeacon(endpoint, JSON.stringify({path: location.pathname}));
})();
"""


def tracking_app(engine: Engine, links: LinkSigner, clock: Clock | None = None) -> Starlette:
    clock = clock or DatabaseClock()

    def click(request: Request) -> Response:
        visit = Visit(request.method, request.headers.get("user-agent"))
        token = None
        try:
            with engine.begin() as conn:
                now = clock.now(conn)
                found = record_click(conn, links, request.path_params["token"], visit, now=now)
                if not found.machine and not opted_out(request):
                    token = new_visitor(conn, links, found.contact_id, now=now)
        except UnknownLinkError:
            return PlainTextResponse("not found", status_code=404, headers=NO_STORE)
        response = RedirectResponse(found.url, status_code=302, headers=NO_STORE)
        if token is not None:
            set_visitor_cookie(response, token)
        return response

    def open_pixel(request: Request) -> Response:
        visit = Visit(request.method, request.headers.get("user-agent"))
        try:
            with engine.begin() as conn:
                record_open(conn, links, request.path_params["token"], visit, now=clock.now(conn))
        except UnknownLinkError:
            pass  # an image is answered either way: a broken image would tell nothing more
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    def page_view_script(_: Request) -> Response:
        cache = {"Cache-Control": "public, max-age=3600"}
        return Response(PAGE_VIEW_SCRIPT, media_type="text/javascript", headers=cache)

    async def page_view(request: Request) -> Response:
        body = await request.body()
        try:
            reported = json.loads(body) if len(body) <= MAX_VIEW_BODY else None
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            reported = None
        path = page_path(reported.get("path")) if isinstance(reported, dict) else None
        if path is None:
            return PlainTextResponse("not a page view", status_code=400, headers=NO_STORE)
        cookie = None if opted_out(request) else request.cookies.get(VISITOR_COOKIE)

        def store() -> None:
            with engine.begin() as conn:
                now = clock.now(conn)
                contact = visitor_contact(conn, links, cookie, now=now) if cookie else None
                record_view(conn, path, contact, now=now)

        await run_in_threadpool(store)
        return Response(status_code=204, headers=NO_STORE)

    return Starlette(
        routes=[
            Route("/c/{token}", click, methods=["GET", "HEAD"]),
            Route("/o/{token}", open_pixel, methods=["GET", "HEAD"]),
            Route("/t/pv.js", page_view_script, methods=["GET"]),
            Route("/t/pv", page_view, methods=["POST"]),
        ]
    )


def opted_out(request: Request) -> bool:
    """The browser asks not to be tracked (Global Privacy Control, or Do Not Track)."""
    return request.headers.get("sec-gpc") == "1" or request.headers.get("dnt") == "1"


def set_visitor_cookie(response: Response, token: str) -> None:
    """The visitor cookie: sent back only to the page-view endpoint, never readable by scripts."""
    response.set_cookie(
        VISITOR_COOKIE,
        token,
        max_age=int(VISITOR_LIFETIME.total_seconds()),
        path="/t/",
        secure=True,
        httponly=True,
        samesite="lax",
    )
