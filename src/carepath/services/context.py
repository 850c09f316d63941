"""What a worker process keeps between batches: engine, caches, limits, identity."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine

from carepath.channels.email import EmailSender
from carepath.channels.links import LinkSigner
from carepath.channels.templates import TemplateRenderer
from carepath.domain.runs import Limits
from carepath.domain.sending_windows import FrequencyCap, QuietHours
from carepath.services.catalog_store import CatalogCache
from carepath.services.clock import Clock, DatabaseClock


def new_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class EngineContext:
    engine: Engine
    sender: EmailSender | None = None
    clock: Clock = field(default_factory=DatabaseClock)
    limits: Limits = field(default_factory=Limits)
    worker_id: str = field(default_factory=new_worker_id)
    lease: timedelta = timedelta(minutes=5)
    batch_size: int = 500
    # Messages claimed for sending at once. Each is leased for `lease` meanwhile, so a
    # batch must be sent well within it, even through a slow relay.
    send_batch_size: int = 500
    mail_from: str = "carepath <no-reply@carepath.invalid>"
    retry_for: timedelta = timedelta(days=3)  # how long failed deliveries are retried
    links: LinkSigner | None = None  # signed unsubscribe links, when a public URL is set
    quiet_hours: QuietHours | None = None  # in each contact's time zone, for every send
    marketing_cap: FrequencyCap | None = None  # per contact, for marketing sends
    # Webhook steps may call private, loopback and link-local addresses (and plain http).
    allow_private_webhooks: bool = False
    webhook_cafile: str | None = None  # a CA bundle to trust for webhook endpoints
    # Segments that move with time alone (ages, windows) are recounted this often.
    segment_refresh_interval: timedelta = timedelta(days=1)
    # Days whose runs moved are counted again into the funnel rollup at most this often
    # (seconds of this process's monotonic clock); reports count them from history meanwhile.
    funnel_refresh_seconds: float = 60.0
    funnel_refreshed_at: float | None = None
    cache: CatalogCache = field(default_factory=CatalogCache)
    renderer: TemplateRenderer = field(default_factory=TemplateRenderer)
