"""Delivering the outbox after commit: claim, send, record; retry with backoff.

A message is marked sent only after the server accepted it; a crash between
the two leaves the lease to expire and the row to be sent again with the same
Message-ID, which receivers use to discard the duplicate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from carepath.channels.email import DeliveryResult, OutgoingEmail
from carepath.db.schema import contacts, outbox
from carepath.services.clock import wall_time
from carepath.services.context import EngineContext
from carepath.services.events import NewEvent, store_events

MAX_ATTEMPTS = 8
BASE_BACKOFF = timedelta(minutes=1)


@dataclass(frozen=True)
class DeliveryStats:
    sent: int
    failed: int


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with full jitter, capped at 6 hours."""
    factor: int = 2 ** max(attempts - 1, 0)
    ceiling = min(BASE_BACKOFF * factor, timedelta(hours=6))
    return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


def deliver_outbox(ctx: EngineContext, *, now: datetime, limit: int | None = None) -> DeliveryStats:
    """Send one batch of due messages; without a sender, nothing is sent."""
    if ctx.sender is None:
        return DeliveryStats(0, 0)
    wall = wall_time()
    with ctx.engine.begin() as conn:
        due = (
            sa.select(outbox.c.id)
            .where(
                outbox.c.status == "pending",
                outbox.c.next_attempt_at <= now,
                sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < wall),
            )
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit or ctx.batch_size)
            .with_for_update(skip_locked=True)
        )
        claimed = (
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(due.scalar_subquery()))
                .values(lease_owner=ctx.worker_id, lease_until=wall + ctx.lease)
                .returning(outbox.c.id)
            )
            .scalars()
            .all()
        )
        if not claimed:
            return DeliveryStats(0, 0)
        rows = conn.execute(
            sa.select(outbox, contacts.c.email)
            .join(contacts, contacts.c.id == outbox.c.contact_id)
            .where(outbox.c.id.in_(claimed))
            .order_by(outbox.c.id)
        ).all()
    messages = [
        OutgoingEmail(
            outbox_id=r.id,
            message_id=r.message_id,
            sender=ctx.mail_from,
            recipient=r.email,
            subject=r.subject,
            html=r.html,
            text=r.text,
            created_at=r.created_at,
        )
        for r in rows
        if r.email
    ]
    results = ctx.sender.send(messages)
    results += [
        DeliveryResult(r.id, False, permanent=True, error="contact has no email address")
        for r in rows
        if not r.email
    ]
    attempts = {r.id: r.attempts for r in rows}
    contact_of = {r.id: r.contact_id for r in rows}
    with ctx.engine.begin() as conn:
        _record_results(conn, ctx, results, attempts, contact_of, now=now)
    sent = sum(1 for r in results if r.ok)
    return DeliveryStats(sent, len(results) - sent)


def _record_results(
    conn: sa.Connection,
    ctx: EngineContext,
    results: list[DeliveryResult],
    attempts: dict[int, int],
    contact_of: dict[int, int],
    *,
    now: datetime,
) -> None:
    updates = []
    new_events = []
    for result in results:
        tries = attempts[result.outbox_id] + 1
        if result.ok:
            status, error, retry_at = "sent", None, now
        elif result.permanent or tries >= MAX_ATTEMPTS:
            status, error, retry_at = "failed", result.error, now
        else:
            status, error, retry_at = "pending", result.error, now + backoff(tries)
        updates.append(
            {
                "b_id": result.outbox_id,
                "status": status,
                "attempts": tries,
                "last_error": error,
                "next_attempt_at": retry_at,
                "sent_at": now if result.ok else None,
            }
        )
        if result.ok:
            new_events.append(
                NewEvent(
                    "email.sent",
                    contact_of[result.outbox_id],
                    now,
                    f"outbox:{result.outbox_id}:sent",
                    {"outbox_id": result.outbox_id},
                    "engine",
                )
            )
    conn.execute(
        outbox.update()
        .where(outbox.c.id == sa.bindparam("b_id"), outbox.c.lease_owner == ctx.worker_id)
        .values(
            status=sa.bindparam("status"),
            attempts=sa.bindparam("attempts"),
            last_error=sa.bindparam("last_error"),
            next_attempt_at=sa.bindparam("next_attempt_at"),
            sent_at=sa.bindparam("sent_at"),
            lease_owner=None,
            lease_until=None,
        ),
        updates,
    )
    store_events(conn, new_events, now=now)
