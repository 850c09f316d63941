"""The database schema: one MetaData for SQLite and PostgreSQL.

Per-contact tables (runs, run_steps, events, outbox, tasks, list_members)
carry `contact_id` so they can later be distributed by contact.
Identifiers (email, phone, names, external id) have their own columns, sealed
field by field, and rendered message bodies are sealed too.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from carepath.db.types import Id, Json, OrderedJson, Sealed, SealedJson, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

LIVE_RUN = text("status IN ('active', 'waiting')")

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Json, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Identifiers are sealed (AES-256-GCM, carepath.protection); the ones looked up
    # by value have a keyed blind index beside them, which is what is unique.
    Column("external_id", Sealed("contacts.external_id")),
    Column("email", Sealed("contacts.email")),
    Column("phone", Sealed("contacts.phone")),
    Column("first_name", Sealed("contacts.first_name")),
    Column("last_name", Sealed("contacts.last_name")),
    Column("birth_date", Date),
    Column("sex", String(20)),
    Column("time_zone", String(64)),
    Column("tags", Json, nullable=False, default=list),
    Column("attributes", Json, nullable=False, default=dict),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Set when a person's data was erased: the row stays as an anonymous tombstone.
    Column("erased_at", UtcDateTime),
    Column("external_id_index", String(64), unique=True),
    Column("email_index", String(64), unique=True),
    Column("phone_index", String(64), index=True),
    # Room on each page for updated rows: contacts are updated often, their indexed
    # columns rarely, so most updates touch no index (migration 0013).
    postgresql_with={"fillfactor": 80},
)

resources = Table(
    "resources",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("name", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("body", OrderedJson, nullable=False),
    Column("source", String(500)),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "name", "version"),
)

lists = Table(
    "lists",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

list_members = Table(
    "list_members",
    metadata,
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("list_name", String(100), ForeignKey("lists.name"), primary_key=True),
    Column("joined_at", UtcDateTime, nullable=False),
    Index(None, "list_name"),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("type", String(100), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("data", Json, nullable=False, default=dict),
    Column("source", String(40), nullable=False),
    Column("chain_depth", Integer, nullable=False, default=0),
    Column("processed_at", UtcDateTime),
    Index(None, "contact_id", "type", "occurred_at"),
    Index(
        "ix_events_unprocessed",
        "id",
        postgresql_where=text("processed_at IS NULL"),
        sqlite_where=text("processed_at IS NULL"),
    ),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("workflow", String(100), nullable=False),
    Column("resource_id", Id, ForeignKey("resources.id"), nullable=False),
    Column("workflow_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("current_step", String(100)),
    Column("wake_at", UtcDateTime),
    Column("waiting_for", String(100)),
    Column("visits", Json, nullable=False, default=dict),
    Column("chain_depth", Integer, nullable=False, default=0),
    Column("parent_run_id", Id),
    Column("trigger_event_id", Id),
    Column("event_id", Id),
    Column("revision", Integer, nullable=False, default=0),
    Column("reason", Text),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_runs_due", "wake_at", postgresql_where=LIVE_RUN, sqlite_where=LIVE_RUN),
    Index(None, "contact_id", "workflow"),
    Index(None, "workflow", "workflow_version", "started_at"),  # a day's runs, for the funnel
    Index(
        "ix_runs_waiting_for",
        "contact_id",
        "waiting_for",
        postgresql_where=text("status = 'waiting'"),
        sqlite_where=text("status = 'waiting'"),
    ),
    Index(None, "workflow", "workflow_version", "status"),
)

# The funnel kept per day of run starts (services/funnel_rollup.py): per workflow
# version, day and step, the counts the funnel adds up and a histogram of the time
# spent in the step. `funnel_changes` names the days whose runs moved since they
# were counted (written by triggers on `runs`, migration 0009); reports count those
# days from the history itself until the rollup catches up.
funnel_rollup = Table(
    "funnel_rollup",
    metadata,
    Column("workflow", String(100), primary_key=True),
    Column("workflow_version", Integer, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("step", String(100), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("totals", Json, nullable=False),
    Column("spent", Json, nullable=False),
)
funnel_changes = Table(
    "funnel_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("workflow", String(100), nullable=False),
    Column("workflow_version", Integer, nullable=False),
    Column("day", Date, nullable=False),
    Index(None, "workflow", "workflow_version", "day"),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # No foreign key: only the engine writes history, for runs it holds locked, and
    # runs are never deleted; checking the run cost a lookup per row (migration 0015).
    Column("run_id", Id, nullable=False),
    Column("contact_id", Id, nullable=False),
    Column("workflow", String(100), nullable=False),
    Column("workflow_version", Integer, nullable=False),
    Column("step", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("next_step", String(100)),
    Column("detail", String(200)),
    Column("error", Text),
    Column("entered_at", UtcDateTime, nullable=False),
    Column("left_at", UtcDateTime),
    Index(None, "run_id"),
    # A waiting run's open row, which resuming it closes (migration 0016).
    Index(
        "ix_run_steps_open",
        "run_id",
        postgresql_where=text("left_at IS NULL"),
        sqlite_where=text("left_at IS NULL"),
    ),
    Index(None, "workflow", "workflow_version", "step"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", Id, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("workflow", String(100)),
    Column("step", String(100)),
    Column("channel", String(16), nullable=False),
    Column("template", String(100), nullable=False),
    Column("template_version", Integer, nullable=False),
    Column("message_id", String(200), nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    Column("html", Sealed("outbox.html"), nullable=False),  # rendered: it may hold PHI
    Column("text", Sealed("outbox.text"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    Column("purpose", String(16)),  # the workflow's: marketing sends count toward caps
    Column("links", Json),  # the tracked links' targets and tags, in order
    # What happened to the message since, kept by event storage (services/message_events.py)
    # so that reports aggregate one table instead of joining every event.
    Column("opened_at", UtcDateTime),  # first open by a person
    Column("machine_opened_at", UtcDateTime),  # first open by a machine
    Column("clicked_at", UtcDateTime),  # first click by a person
    Column("complained_at", UtcDateTime),
    Column("unsubscribed_at", UtcDateTime),
    Column("clicks", Integer, nullable=False, default=0, server_default="0"),  # by people
    Column("bounce", String(8)),  # hard or soft (hard is kept once seen)
    # Clicks by people per link, by the link's place in the message: {"0": 2, "3": 1}.
    Column("link_clicks", Json),
    Index(
        "ix_outbox_link_clicks",
        "workflow",
        postgresql_where=text("link_clicks IS NOT NULL"),
        sqlite_where=text("link_clicks IS NOT NULL"),
    ),
    Index(  # in the claim's order (services/leases.py), so a claim reads only what it takes
        "ix_outbox_pending",
        "next_attempt_at",
        "id",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
    Index(
        "ix_outbox_sending",
        "lease_until",
        postgresql_where=text("status = 'sending'"),
        sqlite_where=text("status = 'sending'"),
    ),
    Index(None, "contact_id"),
    Index(None, "run_id"),
)

# Addresses that must never be mailed again (hard bounces, complaints,
# unsubscribes), kept apart from contacts so that they outlive an erased contact.
suppressions = Table(
    "suppressions",
    metadata,
    Column("email", Sealed("suppressions.email"), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("source", String(40), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("email_index", String(64), primary_key=True),  # the address's blind index
)

# API keys: only a SHA-256 of each secret is kept (the secret is shown once, when
# created); `public_id` is the part of the key that names it, for the lookup.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("public_id", String(24), nullable=False, unique=True),
    Column("name", String(80), nullable=False, unique=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("scopes", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    # The role (carepath.domain.access); an integration holds `scopes`, the others their
    # role's. An agent's key names the task queues it serves.
    Column("role", String(20), nullable=False, server_default="integration"),
    Column("queues", Json),
)

# Emergency access: a principal opened it, said why, and it ends on its own.
break_glass = Table(
    "break_glass",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("principal", String(120), nullable=False),
    Column("reason", String(300), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index(None, "principal", "expires_at"),
)

# Signed webhook deliveries seen lately (within the signature tolerance): a replay is refused.
hook_receipts = Table(
    "hook_receipts",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("signature", String(64), primary_key=True),
    Column("received_at", UtcDateTime, nullable=False, index=True),
)

# Calls of `webhook` steps, delivered after commit like the outbox; the body is
# built when the step runs (the contact as it was then, only the fields named).
webhook_calls = Table(
    "webhook_calls",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", Id, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("workflow", String(100), nullable=False),
    Column("step", String(100), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret_env", String(100), nullable=False),
    Column("body", SealedJson("webhook_calls.body"), nullable=False),  # PHI: sealed
    Column("status", String(16), nullable=False),  # pending, sent, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", Text),
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    Index(
        "ix_webhook_calls_due",
        "next_attempt_at",
        "id",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
)

# Paused workflows (a row each): no new enrollments, and their runs are not advanced.
paused_workflows = Table(
    "paused_workflows",
    metadata,
    Column("workflow", String(100), primary_key=True),
    Column("paused_at", UtcDateTime, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", Id, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("workflow", String(100)),
    Column("step", String(100)),
    Column("queue", String(100), nullable=False),
    Column("title", String(300), nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", String(100)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
    Column("assignee", String(80)),  # the agent who claimed it
    Column("claimed_at", UtcDateTime),
    Index(None, "queue", "status"),
    Index(None, "contact_id"),
)

# Who is in each segment now; refreshed incrementally and on schedule (services/segments.py).
segment_members = Table(
    "segment_members",
    metadata,
    Column("segment_name", String(100), primary_key=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("entered_at", UtcDateTime, nullable=False),
    Index(None, "contact_id"),
)

# Contacts whose facts changed since segments last looked at them.
segment_checks = Table(
    "segment_checks",
    metadata,
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("marked_at", UtcDateTime, nullable=False),
)

# When each segment's membership was last recounted in full, and from which version.
segment_refreshes = Table(
    "segment_refreshes",
    metadata,
    Column("segment_name", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    # Whether membership moves with time alone (ages, windows): then it is recounted on schedule.
    Column("time_relative", Boolean, nullable=False),
    Column("refreshed_at", UtcDateTime, nullable=False),
)

# How far ahead each date-triggered workflow has scheduled its enrollments.
date_trigger_scans = Table(
    "date_trigger_scans",
    metadata,
    Column("workflow", String(100), primary_key=True),
    Column("scanned_through", UtcDateTime, nullable=False),
)

# Who read or changed what, hash-chained: each row's hash covers the one before it.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(120), nullable=False),  # key:NAME, cli:USER, engine
    Column("action", String(60), nullable=False),  # contact.read, resources.apply, …
    Column("contact_ids", Json, nullable=False),  # whose data, by id only
    Column("purpose", String(20)),
    Column("detail", String(300)),  # names and counts, never values
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# What a contact agreed to: a HIPAA marketing authorization (164.508(a)(3)), channel opt-ins.
consents = Table(
    "consents",
    metadata,
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(20), primary_key=True),  # marketing, email, sms
    Column("status", String(10), nullable=False),  # granted or revoked
    Column("source", String(100), nullable=False),  # where it was given: a form, the EHR, STOP
    Column("granted_at", UtcDateTime),
    Column("expires_at", UtcDateTime),  # an authorization's expiry, if it has one
    Column("revoked_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Browsers identified for first-party page-view tracking (services/page_views.py):
# a visitor cookie holds a random token, signed; only its hash is kept here. Set
# when someone arrives from a tracked link or submits a form; erasing the contact
# removes them.
visitors = Table(
    "visitors",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index(None, "contact_id"),
    Index(None, "expires_at"),  # expired ones are pruned as new ones are made
)

# Page views per day and path, identified or not: anonymous views are counted
# here and stored nowhere else.
page_view_counts = Table(
    "page_view_counts",
    metadata,
    Column("day", Date, primary_key=True),
    Column("path", String(300), primary_key=True),
    Column("anonymous", Integer, nullable=False),
    Column("identified", Integer, nullable=False),
)
