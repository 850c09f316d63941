"""The small ASGI app behind tracking links: `/c/{token}` redirects, `/o/{token}` is a pixel.

The HTTP API mounts it; it can also run on its own. Unknown or tampered
tokens get 404 with no detail; nothing in a response or a log names a
contact.
"""

from __future__ import annotations

import base64

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from carepath.channels.links import LinkSigner
from carepath.services.clock import Clock, DatabaseClock
from carepath.services.tracking import UnknownLinkError, Visit, record_click, record_open

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def tracking_app(engine: Engine, links: LinkSigner, clock: Clock | None = None) -> Starlette:
    clock = clock or DatabaseClock()

    def click(request: Request) -> Response:
        visit = Visit(request.method, request.headers.get("user-agent"))
        try:
            with engine.begin() as conn:
                url = record_click(
                    conn, links, request.path_params["token"], visit, now=clock.now(conn)
                )
        except UnknownLinkError:
            return PlainTextResponse("not found", status_code=404, headers=NO_STORE)
        return RedirectResponse(url, status_code=302, headers=NO_STORE)

    def open_pixel(request: Request) -> Response:
        visit = Visit(request.method, request.headers.get("user-agent"))
        try:
            with engine.begin() as conn:
                record_open(conn, links, request.path_params["token"], visit, now=clock.now(conn))
        except UnknownLinkError:
            pass  # an image is answered either way: a broken image would tell nothing more
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    return Starlette(
        routes=[
            Route("/c/{token}", click, methods=["GET", "HEAD"]),
            Route("/o/{token}", open_pixel, methods=["GET", "HEAD"]),
        ]
    )
