"""Delivering the outbox after commit: claim, send, record; retry, bounce, suppress.

A message is never delivered twice, even if the worker is killed at any
moment: it is recorded as `sending` after the server has its content and
before the final "." that makes the server take it, so a crash before the
record leaves a transaction the server discards (the message is sent again),
and a crash after it leaves the message `unconfirmed`, not sent again. No
protocol can make the server's acceptance and a database commit one atomic
step; this order turns the unavoidable gap into a rare, visible
`unconfirmed` instead of a silent duplicate.

What happens to a message (its `status`):
- `sending`: recorded just before the final "." of DATA (see
  `channels.smtp`); a crashed worker's `sending` messages become
  `unconfirmed`: almost certainly delivered, never sent again.
- `sent`: the server accepted it; `email.sent` is stored.
- `pending` again: a 4xx answer or a connection problem, retried with
  exponential backoff and jitter for `retry_for` after the message was
  created; then `failed`, with `email.bounced` (soft).
- `bounced`: a 5xx answer; `email.bounced` (hard) and the address is suppressed.
- `held`: the server could not be used safely (no STARTTLS under
  `tls=required`, a certificate or credentials problem); nothing was sent,
  the reason is kept, and `carepath outbox release` queues it again.
- `suppressed`: the address is on the suppression list; never sent.
- `skipped`: the contact has no email address.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.pool import PoolProxiedConnection

from carepath.channels.email import DeliveryOutcome, DeliveryResult, OutgoingEmail
from carepath.db.connection import read_only
from carepath.db.dialect import id_in
from carepath.db.schema import contacts, outbox, suppressions
from carepath.services.clock import wall_time
from carepath.services.consents import consent_columns, send_refusal
from carepath.services.context import EngineContext
from carepath.services.events import NewEvent, store_events
from carepath.services.leases import lease_due
from carepath.services.suppressions import suppress

BASE_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True)
class DeliveryStats:
    sent: int
    failed: int  # everything that was not sent in this batch, whatever the reason


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter (between half and all of the step), capped at 6 hours."""
    factor: int = 2 ** max(attempts - 1, 0)
    ceiling = min(BASE_BACKOFF * factor, MAX_BACKOFF)
    return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


def deliver_outbox(ctx: EngineContext, *, now: datetime, limit: int | None = None) -> DeliveryStats:
    """Send one batch of due messages; without a sender, nothing is sent."""
    if ctx.sender is None:
        return DeliveryStats(0, 0)
    with ctx.engine.begin() as conn:
        recovered = _recover_interrupted(conn, now=now)
        rows = _claim(conn, ctx, now=now, limit=limit or ctx.send_batch_size)
    if not rows:
        return DeliveryStats(recovered, 0)
    reachable = [
        r for r in rows if r.email and r.suppressed is None and send_refusal(r, now) is None
    ]
    deferred = _outside_windows(ctx, reachable, now=now)
    sendable = [r for r in reachable if r.id not in deferred]

    headers = ctx.links.unsubscribe_headers if ctx.links else None
    outgoing = [
        OutgoingEmail(
            outbox_id=r.id,
            message_id=r.message_id,
            sender=ctx.mail_from,
            recipient=r.email,
            subject=r.subject,
            html=r.html,
            text=r.text,
            created_at=r.created_at,
            headers=tuple(headers(r.message_id)) if headers else (),
        )
        for r in sendable
    ]
    results = ctx.sender.send(outgoing, _SendingRecords(ctx))
    with ctx.engine.begin() as conn:
        _record(conn, ctx, rows, results, deferred, now=now)
    sent = sum(1 for r in results if r.outcome is DeliveryOutcome.SENT)
    return DeliveryStats(recovered + sent, len(rows) - sent)


def _outside_windows(
    ctx: EngineContext, rows: Sequence[Any], *, now: datetime
) -> dict[int, tuple[datetime, str]]:
    """Messages that must wait: outbox id -> (when they may go, why)."""
    deferred: dict[int, tuple[datetime, str]] = {}
    if ctx.quiet_hours is not None:
        for row in rows:
            resume = ctx.quiet_hours.resume_at(now, row.time_zone)
            if resume is not None:
                deferred[row.id] = (resume, "deferred: quiet hours")
    cap = ctx.marketing_cap
    marketing = [r for r in rows if r.purpose == "marketing" and r.id not in deferred]
    if cap is None or not marketing:
        return deferred
    with read_only(ctx.engine) as conn:  # only when a cap is set: no read otherwise
        sent = _recent_marketing_sends(conn, [r.contact_id for r in marketing], now - cap.period)
    for row in marketing:
        history = sent.setdefault(row.contact_id, [])
        resume = cap.resume_at(history, now)
        if resume is None:
            history.append(now)  # this one counts toward the next in the same batch
        else:
            deferred[row.id] = (resume, "deferred: marketing frequency cap")
    return deferred


def _recent_marketing_sends(
    conn: sa.Connection, contact_ids: Sequence[int], since: datetime
) -> dict[int, list[datetime]]:
    query = (
        sa.select(outbox.c.contact_id, outbox.c.sent_at)
        .where(
            id_in(conn, outbox.c.contact_id, sorted(set(contact_ids))),
            outbox.c.purpose == "marketing",
            outbox.c.status.in_(("sent", "unconfirmed")),
            outbox.c.sent_at > since,
        )
        .order_by(outbox.c.sent_at)
    )
    found: dict[int, list[datetime]] = {}
    for contact_id, sent_at in conn.execute(query):
        found.setdefault(contact_id, []).append(sent_at)
    return found


class _SendingRecords:
    """What the sender awaits with messages the server holds but for the final dot.

    It records them as `sending`, each group in one commit. On PostgreSQL the
    records go through an asynchronous psycopg connection of their own, in
    autocommit mode, so that the sender's other connections go on while one
    is written, and without waiting for the WAL flush: the record guards
    against the worker dying, not the database, and a commit not yet flushed
    survives any client crash. On SQLite a commit is a local file write, made
    on the pool's driver connection with the statement written out: through
    SQLAlchemy, building the statement and its transaction cost several times
    the write itself.
    """

    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        self._postgres = ctx.engine.dialect.name == "postgresql"
        self._pg: psycopg.AsyncConnection[Any] | None = None
        self._sqlite: PoolProxiedConnection | None = None

    async def record(self, outbox_ids: Sequence[int]) -> None:
        if not outbox_ids:
            return
        ids = [int(i) for i in outbox_ids]
        if self._postgres:
            pg = self._pg or await self._connect_postgres()
            await pg.execute(_SENDING_SQL, {"ids": ids, "owner": self._ctx.worker_id})
            return
        if self._sqlite is None:
            self._sqlite = self._ctx.engine.raw_connection()
        cursor = self._sqlite.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")  # the engine's connections run in autocommit
            try:
                cursor.execute(_SQLITE_SENDING_SQL, (json.dumps(ids), self._ctx.worker_id))
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        finally:
            cursor.close()

    async def _connect_postgres(self) -> psycopg.AsyncConnection[Any]:
        # The engine's own connection arguments, so that the URL is read one way only.
        engine = self._ctx.engine
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._pg = await psycopg.AsyncConnection.connect(*args, **kwargs, autocommit=True)
        await self._pg.execute("SET synchronous_commit = off")
        return self._pg

    async def aclose(self) -> None:
        if self._pg is not None:
            pg, self._pg = self._pg, None
            await pg.close()
        if self._sqlite is not None:
            sqlite, self._sqlite = self._sqlite, None
            sqlite.close()


# Written out for psycopg: the one statement per group of messages in flight, where
# building and compiling a Core statement each time would cost as much as the write.
_SENDING_SQL = (
    "UPDATE outbox SET status = 'sending' "
    "WHERE id = ANY(%(ids)s::bigint[]) AND lease_owner = %(owner)s"
)
_SQLITE_SENDING_SQL = (
    "UPDATE outbox SET status = 'sending' "
    "WHERE id IN (SELECT value FROM json_each(?)) AND lease_owner = ?"
)


UNCONFIRMED = "the worker stopped between recording the message and the server's answer"


def _recover_interrupted(conn: sa.Connection, *, now: datetime) -> int:
    """Messages a crashed worker recorded as `sending`: `unconfirmed`, never sent again.

    `sending` is written just before the final dot, so the server almost
    certainly took the message, and sending it again would deliver it twice.
    "Almost": a crash after the record's commit and before the dot reached the
    server loses it (about one database round trip, see `channels.smtp`), so
    these are kept apart from `sent` and counted as such.
    """
    wall = wall_time()
    recovered = list(
        conn.execute(
            outbox.update()
            .where(outbox.c.status == "sending", outbox.c.lease_until < wall)
            .values(status="unconfirmed", sent_at=now, attempts=outbox.c.attempts + 1)
            .values(lease_owner=None, lease_until=None, last_error=UNCONFIRMED)
            .returning(outbox.c.id, outbox.c.contact_id)
        )
    )
    events = [
        _event(r, "email.sent", {"outbox_id": r.id, "unconfirmed": True}, now) for r in recovered
    ]
    store_events(conn, events, now=now)
    return len(recovered)


def _claim(conn: sa.Connection, ctx: EngineContext, *, now: datetime, limit: int) -> list[Any]:
    """Lease due messages; each with its address and whether that address is suppressed."""
    leased = lease_due(
        conn,
        outbox,
        now=now,
        wall=wall_time(),
        owner=ctx.worker_id,
        lease=ctx.lease,
        limit=limit,
        returning=outbox.c.id,
    )
    claimed = [row.id for row in leased]
    if not claimed:
        return []
    (marketing, email), consent = consent_columns()
    return list(
        conn.execute(
            sa.select(
                outbox,
                contacts.c.email,
                contacts.c.time_zone,
                suppressions.c.reason.label("suppressed"),
                *consent,
            )
            .join(contacts, contacts.c.id == outbox.c.contact_id)
            .outerjoin(suppressions, suppressions.c.email_index == contacts.c.email_index)
            .outerjoin(
                marketing,
                sa.and_(
                    marketing.c.contact_id == outbox.c.contact_id, marketing.c.kind == "marketing"
                ),
            )
            .outerjoin(
                email, sa.and_(email.c.contact_id == outbox.c.contact_id, email.c.kind == "email")
            )
            .where(id_in(conn, outbox.c.id, claimed))
            .order_by(outbox.c.id)
        )
    )


def _record(
    conn: sa.Connection,
    ctx: EngineContext,
    rows: Sequence[Any],
    results: Sequence[DeliveryResult],
    deferred: dict[int, tuple[datetime, str]],
    *,
    now: datetime,
) -> None:
    by_id = {r.outbox_id: r for r in results}
    updates: list[dict[str, Any]] = []
    new_events: list[NewEvent] = []
    bounced: list[str] = []
    for row in rows:
        if row.id in deferred:  # not an attempt: nothing was sent
            resume, reason = deferred[row.id]
            values = {
                "status": "pending",
                "attempts": row.attempts,
                "last_error": reason,
                "next_attempt_at": resume,
                "sent_at": None,
            }
        else:
            values = _outcome(ctx, row, by_id.get(row.id), now=now)
        updates.append({"b_id": row.id, **values})
        status = values["status"]
        if status == "sent":
            new_events.append(_event(row, "email.sent", {"outbox_id": row.id}, now))
        elif status in ("bounced", "failed"):
            bounce = "hard" if status == "bounced" else "soft"
            data = {"outbox_id": row.id, "bounce": bounce}
            new_events.append(_event(row, "email.bounced", data, now))
            if status == "bounced":
                bounced.append(row.email)
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
    suppress(conn, bounced, reason="hard_bounce", source="smtp", now=now)
    store_events(conn, new_events, now=now)


def _outcome(
    ctx: EngineContext, row: Any, result: DeliveryResult | None, *, now: datetime
) -> dict[str, Any]:
    """The row's new status, error, attempt count and next attempt."""
    tries = row.attempts
    status, error, retry_at, sent_at = "pending", None, row.next_attempt_at, None
    if not row.email:
        status, error = "skipped", "contact has no email address"
    elif row.suppressed is not None:
        status, error = "suppressed", f"address suppressed ({row.suppressed})"
    elif (refusal := send_refusal(row, now)) is not None:
        status, error = "skipped", refusal
    elif result is None:  # the sender returned nothing for it: try again soon
        error, retry_at = "no result from the sender", now + backoff(1)
    else:
        tries += 1
        match result.outcome:
            case DeliveryOutcome.SENT:
                status, sent_at = "sent", now
            case DeliveryOutcome.BOUNCED:
                status, error = "bounced", result.error
            case DeliveryOutcome.HELD:
                status, error = "held", result.error
            case DeliveryOutcome.INVALID:
                status, error = "failed", result.error
            case DeliveryOutcome.DEFERRED:
                error = result.error
                if now - row.created_at >= ctx.retry_for:
                    status = "failed"
                    error = f"gave up after {tries} attempts: {result.error}"
                else:
                    retry_at = now + backoff(tries)
    return {
        "status": status,
        "attempts": tries,
        "last_error": error,
        "next_attempt_at": retry_at,
        "sent_at": sent_at,
    }


def _event(row: Any, kind: str, data: dict[str, object], now: datetime) -> NewEvent:
    return NewEvent(kind, row.contact_id, now, f"outbox:{row.id}:{kind}", data, "engine")


def release_held(conn: sa.Connection, *, now: datetime) -> int:
    """Queue held messages again (after the SMTP configuration was fixed); how many."""
    result = conn.execute(
        outbox.update()
        .where(outbox.c.status == "held")
        .values(status="pending", next_attempt_at=now, last_error=None)
    )
    return int(result.rowcount or 0)


def outbox_counts(conn: sa.Connection) -> dict[str, int]:
    """How many messages are in each status."""
    query = sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)
    return {status: int(count) for status, count in conn.execute(query)}
