"""The HTTP API (FastAPI): events, keys, health; tracking links and unsubscribe pages.

`create_app` takes what the app needs (tests build it around their own
engine); `app_from_environment` is what `carepath serve` runs, one per
uvicorn worker process.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from carepath.channels.links import LinkSigner
from carepath.config import Settings
from carepath.db.connection import read_only
from carepath.db.migrate import is_current
from carepath.entrypoints.api import (
    access,
    consents,
    contacts,
    events,
    form_pages,
    hooks,
    lists,
    pages,
    reports_in,
    reports_out,
    resources,
    tasks,
)
from carepath.entrypoints.api.auth import KeyRing
from carepath.entrypoints.api.coalescing import Coalescer
from carepath.entrypoints.api.event_lane import SingleEventLane
from carepath.entrypoints.api.problems import (
    PROBLEM_RESPONSES,
    install_problem_handlers,
    problem_response,
)
from carepath.entrypoints.tracking_app import tracking_app
from carepath.services.catalog_store import CatalogCache
from carepath.services.clock import Clock, DatabaseClock
from carepath.services.events import ItemOutcome
from carepath.services.setup import open_database


@dataclass(frozen=True)
class ApiState:
    engine: Engine
    clock: Clock
    links: LinkSigner | None
    # POST /v1/events with one event: stored together with concurrent ones
    single_events: Coalescer[tuple[str, object], ItemOutcome]
    cache: CatalogCache = field(default_factory=CatalogCache)
    max_chain_depth: int = 5
    secret: bytes | None = None  # CAREPATH_SECRET_KEY: signs the forms' CSRF tokens


def create_app(
    engine: Engine,
    *,
    links: LinkSigner | None = None,
    clock: Clock | None = None,
    rate_per_second: float = 1000.0,
    max_chain_depth: int = 5,
    secret: str | None = None,
) -> FastAPI:
    app = FastAPI(
        title="carepath",
        summary="Patient-journey automation: events, contacts, workflows.",
        version="1",
        # Problem responses replace FastAPI's default error bodies.
        responses=PROBLEM_RESPONSES,
    )
    clock = clock or DatabaseClock()
    app.state.api = ApiState(
        engine,
        clock,
        links,
        events.single_events_coalescer(engine, clock),
        max_chain_depth=max_chain_depth,
        secret=secret.encode() if secret else None,
    )
    app.state.keys = KeyRing(engine, rate_per_second=rate_per_second, burst=rate_per_second * 2)
    # Innermost of the middleware: requests reach it checked by `RefuseHostileRequests`.
    app.add_middleware(SingleEventLane)
    install_problem_handlers(app)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", tags=["health"], summary="The database is reachable and migrated")
    def readyz(request: Request) -> JSONResponse:
        engine = request.app.state.api.engine
        try:
            with read_only(engine):
                pass
            current = is_current(engine)
        except Exception:  # noqa: BLE001 - any failure means "not ready", said without detail
            return problem_response(503, detail="the database is not reachable")
        if not current:
            return problem_response(503, detail="the database schema is not current")
        return JSONResponse({"status": "ready"})

    app.include_router(access.router)
    app.include_router(events.router)
    app.include_router(hooks.router)
    app.include_router(reports_in.router)
    app.include_router(reports_out.router)
    app.include_router(contacts.router)
    app.include_router(consents.router)
    app.include_router(tasks.router)
    app.include_router(lists.router)
    app.include_router(resources.router)
    app.include_router(pages.router)
    app.include_router(form_pages.router)
    if links is not None:  # /c/{token} and /o/{token}, where the links in messages point
        app.router.routes.extend(tracking_app(engine, links, clock).routes)
    return app


def app_from_environment() -> FastAPI:
    """The app `carepath serve` runs, configured from CAREPATH_* settings."""
    settings = Settings()
    links = LinkSigner.from_settings(
        settings.public_url, settings.secret_key, settings.unsubscribe_mailto
    )
    engine = open_database(settings.database_url)
    app = create_app(
        engine,
        links=links,
        rate_per_second=settings.api_rate_per_second,
        max_chain_depth=settings.max_chain_depth,
        secret=settings.secret_key,
    )
    # What is loaded by now lives as long as the process: kept out of the collector's
    # full passes, which would otherwise walk it all and stall requests for tens of ms.
    gc.collect()
    gc.freeze()
    return app
