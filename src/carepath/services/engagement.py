"""Message engagement per step, and A/B split paths compared: SQL aggregates only.

Every event about a message carries its `outbox_id` (sent, bounced, complained,
unsubscribed, opened, clicked). A message is *delivered* when it was sent and
did not bounce. Opens and clicks count people only: machine opens (image
proxies, link scanners, opens within seconds of sending) are shown apart.
Rates are shares of delivered messages.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carepath.db.schema import events, outbox, runs
from carepath.domain.workflow import EmailStep, SplitStep, Workflow

MESSAGE_EVENTS = (
    "email.sent",
    "email.bounced",
    "email.complained",
    "email.unsubscribed",
    "email.opened",
    "email.clicked",
)


@dataclass(frozen=True)
class StepEngagement:
    step: str
    template: str
    messages: int  # written to the outbox for this step
    sent: int
    delivered: int
    deferred: int  # waiting for a retry or a sending window
    skipped: int  # not sent: no address, suppressed address, a repeat
    failed: int
    soft_bounced: int
    hard_bounced: int
    opened: int  # messages opened by a person
    machine_opened: int  # messages opened only by machines
    clicked: int  # messages clicked by a person (unique)
    clicks: int  # clicks by people (total)
    unsubscribed: int
    complained: int

    @property
    def open_rate(self) -> float:
        return _share(self.opened, self.delivered)

    @property
    def click_rate(self) -> float:
        return _share(self.clicked, self.delivered)


@dataclass(frozen=True)
class LinkClicks:
    step: str
    link: int | None  # the link's place in the message (None: not recorded)
    tag: str | None
    clicked: int  # messages
    clicks: int  # total


@dataclass(frozen=True)
class SplitComparison:
    split: str  # the split step
    paths: list[tuple[str, StepEngagement]]  # first email step of each path
    z: float | None  # two-proportion z of click rates, first path against second
    p_value: float | None


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def event_outbox_id(conn: Connection) -> sa.ColumnElement[Any]:
    """The message (outbox id) an event is about, from its data."""
    if conn.dialect.name == "postgresql":
        return sa.cast(events.c.data.op("->>")("outbox_id"), sa.BigInteger)
    return sa.func.json_extract(events.c.data, "$.outbox_id")


def event_data_text(conn: Connection, key: str) -> sa.ColumnElement[Any]:
    """A JSON member of the event's data as text ('true'/'false', 'hard'/'soft', …)."""
    if conn.dialect.name == "postgresql":
        return events.c.data.op("->>")(key)
    kind = sa.func.json_type(events.c.data, f"$.{key}")
    value = sa.func.json_extract(events.c.data, f"$.{key}")
    return sa.case((kind.in_(("true", "false")), kind), else_=sa.cast(value, sa.String))


def _period(
    column: sa.ColumnElement[Any], since: datetime | None, until: datetime | None
) -> list[sa.ColumnElement[bool]]:
    found = []
    if since is not None:
        found.append(column >= since)
    if until is not None:
        found.append(column < until)
    return found


def engagement(
    conn: Connection,
    workflow: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
) -> list[StepEngagement]:
    """Per email step of a workflow: what happened to its messages."""
    messages = sa.select(
        outbox.c.id, outbox.c.step, outbox.c.template, outbox.c.status, outbox.c.attempts
    ).where(outbox.c.workflow == workflow, *_period(outbox.c.created_at, since, until))
    if version is not None:
        messages = messages.where(
            outbox.c.run_id.in_(sa.select(runs.c.id).where(runs.c.workflow_version == version))
        )
    m = messages.subquery("m")
    happened = (
        sa.select(
            event_outbox_id(conn).label("outbox_id"),
            events.c.type,
            event_data_text(conn, "machine").label("machine"),
            event_data_text(conn, "bounce").label("bounce"),
        )
        .where(events.c.type.in_(MESSAGE_EVENTS))
        .subquery("e")
    )
    e = happened

    def messages_where(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.count(sa.distinct(sa.case((sa.and_(*conditions), m.c.id))))

    human = sa.func.coalesce(e.c.machine, "false") != "true"
    query = (
        sa.select(
            m.c.step,
            sa.func.min(m.c.template).label("template"),
            sa.func.count(sa.distinct(m.c.id)).label("messages"),
            messages_where(e.c.type == "email.sent").label("sent"),
            messages_where(m.c.status == "pending", m.c.attempts > 0).label("deferred"),
            messages_where(m.c.status == "skipped").label("skipped"),
            messages_where(m.c.status == "failed").label("failed"),
            messages_where(e.c.type == "email.bounced", e.c.bounce == "soft").label("soft"),
            messages_where(e.c.type == "email.bounced", e.c.bounce == "hard").label("hard"),
            messages_where(e.c.type == "email.bounced").label("bounced"),
            messages_where(e.c.type == "email.opened", human).label("opened"),
            messages_where(e.c.type == "email.clicked", human).label("clicked"),
            sa.func.count(sa.case((sa.and_(e.c.type == "email.clicked", human), 1))).label(
                "clicks"
            ),
            messages_where(e.c.type == "email.unsubscribed").label("unsubscribed"),
            messages_where(e.c.type == "email.complained").label("complained"),
        )
        .select_from(m.outerjoin(e, e.c.outbox_id == m.c.id))
        .group_by(m.c.step)
        .order_by(m.c.step)
    )
    rows = conn.execute(query).all()
    machine_only = _machine_only(conn, m, e)
    return [
        StepEngagement(
            step=r.step,
            template=r.template,
            messages=r.messages,
            sent=r.sent,
            delivered=r.sent - min(r.bounced, r.sent),
            deferred=r.deferred,
            skipped=r.skipped,
            failed=r.failed,
            soft_bounced=r.soft,
            hard_bounced=r.hard,
            opened=r.opened,
            machine_opened=machine_only.get(r.step, 0),
            clicked=r.clicked,
            clicks=r.clicks,
            unsubscribed=r.unsubscribed,
            complained=r.complained,
        )
        for r in rows
    ]


def _machine_only(conn: Connection, m: Any, e: Any) -> dict[str, int]:
    """Messages opened by machines and never by a person, per step."""
    machine = e.c.machine == "true"
    per_message = (
        sa.select(
            m.c.step,
            m.c.id,
            sa.func.max(sa.case((machine, 1), else_=0)).label("by_machine"),
            sa.func.max(sa.case((machine, 0), else_=1)).label("by_person"),
        )
        .select_from(m.join(e, e.c.outbox_id == m.c.id))
        .where(e.c.type == "email.opened")
        .group_by(m.c.step, m.c.id)
        .subquery("opens")
    )
    query = (
        sa.select(per_message.c.step, sa.func.count())
        .where(per_message.c.by_machine == 1, per_message.c.by_person == 0)
        .group_by(per_message.c.step)
    )
    return {str(step): int(count) for step, count in conn.execute(query)}


def link_clicks(conn: Connection, workflow: str) -> list[LinkClicks]:
    """Clicks by people per link of each step's message."""
    link = event_data_text(conn, "link")
    tag = event_data_text(conn, "tag")
    human = sa.func.coalesce(event_data_text(conn, "machine"), "false") != "true"
    query = (
        sa.select(
            outbox.c.step,
            link.label("link"),
            sa.func.min(tag).label("tag"),
            sa.func.count(sa.distinct(outbox.c.id)).label("clicked"),
            sa.func.count().label("clicks"),
        )
        .select_from(outbox.join(events, event_outbox_id(conn) == outbox.c.id))
        .where(outbox.c.workflow == workflow, events.c.type == "email.clicked", human)
        .group_by(outbox.c.step, link)
        .order_by(outbox.c.step, link)
    )
    return [
        LinkClicks(r.step, None if r.link is None else int(r.link), r.tag, r.clicked, r.clicks)
        for r in conn.execute(query)
    ]


def compare_splits(definition: Workflow, rows: list[StepEngagement]) -> list[SplitComparison]:
    """Each split's paths side by side (their first email step), with a two-proportion test."""
    by_step = {r.step: r for r in rows}
    found: list[SplitComparison] = []
    for name, step in definition.steps.items():
        if not isinstance(step, SplitStep):
            continue
        paths = []
        for path in step.paths:
            first = _first_email(definition, path.goto)
            if first is not None and first in by_step:
                paths.append((path.goto, by_step[first]))
        z = p_value = None
        if len(paths) >= 2:
            z, p_value = two_proportion_test(
                paths[0][1].clicked, paths[0][1].delivered, paths[1][1].clicked,
                paths[1][1].delivered,
            )  # fmt: skip
        found.append(SplitComparison(name, paths, z, p_value))
    return found


def _first_email(definition: Workflow, start: str) -> str | None:
    seen: set[str] = set()
    current: str | None = start
    while current is not None and current not in seen:
        seen.add(current)
        step = definition.steps.get(current)
        if isinstance(step, EmailStep):
            return current
        current = getattr(step, "next", None)
    return None


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    """z and the two-sided p-value for p1 = x1/n1 against p2 = x2/n2 (pooled variance)."""
    if not n1 or not n2:
        return None, None
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return None, None
    z = (x1 / n1 - x2 / n2) / spread
    return z, math.erfc(abs(z) / math.sqrt(2))


def engagement_report(
    conn: Connection,
    definition: Workflow,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """The whole engagement report as plain data: the CLI's JSON and the API's answer."""
    rows = engagement(conn, definition.name, since=since, until=until, version=version)
    return {
        "steps": [asdict(r) | {"open_rate": r.open_rate, "click_rate": r.click_rate} for r in rows],
        "links": [asdict(link) for link in link_clicks(conn, definition.name)],
        "splits": [
            {
                "split": s.split,
                "paths": [path for path, _ in s.paths],
                "click_rates": [row.click_rate for _, row in s.paths],
                "z": s.z,
                "p_value": s.p_value,
            }
            for s in compare_splits(definition, rows)
        ],
    }


@dataclass(frozen=True)
class DayOfEngagement:
    day: str  # YYYY-MM-DD (UTC)
    sent: int
    opened: int  # messages opened by a person that day
    clicked: int  # messages clicked by a person that day


def engagement_by_day(conn: Connection, workflow: str) -> list[DayOfEngagement]:
    """Sends, opens and clicks by people per day for a workflow's messages."""
    if conn.dialect.name == "postgresql":
        day: sa.ColumnElement[Any] = sa.func.to_char(
            sa.func.timezone("UTC", events.c.occurred_at), "YYYY-MM-DD"
        )
    else:
        day = sa.func.substr(events.c.occurred_at, 1, 10)
    human = sa.func.coalesce(event_data_text(conn, "machine"), "false") != "true"

    def messages(kind: str) -> sa.ColumnElement[Any]:
        return sa.func.count(
            sa.distinct(sa.case((sa.and_(events.c.type == kind, human), outbox.c.id)))
        )

    query = (
        sa.select(
            day.label("day"),
            messages("email.sent"),
            messages("email.opened"),
            messages("email.clicked"),
        )
        .select_from(outbox.join(events, event_outbox_id(conn) == outbox.c.id))
        .where(
            outbox.c.workflow == workflow,
            events.c.type.in_(("email.sent", "email.opened", "email.clicked")),
        )
        .group_by(day)
        .order_by(day)
    )
    return [DayOfEngagement(str(d), s, o, c) for d, s, o, c in conn.execute(query)]
