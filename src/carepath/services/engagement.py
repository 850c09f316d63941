"""Message engagement per step, and A/B split paths compared: SQL aggregates only.

What happened to each message is kept on its outbox row as its events are
stored (services/message_events.py), so a report is one scan of the outbox;
only clicks per link read the click events. A message is *delivered* when it
was sent and did not bounce. Opens and clicks count people only: machine opens (image
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
from carepath.services.reports import in_period


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


def engagement(
    conn: Connection,
    workflow: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
) -> list[StepEngagement]:
    """Per email step of a workflow: what happened to its messages (one scan of the outbox)."""
    m = outbox.c

    def messages_where(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.count(sa.case((sa.and_(*conditions), 1)))

    sent = m.sent_at.is_not(None)
    query = (
        sa.select(
            m.step,
            sa.func.min(m.template).label("template"),
            sa.func.count().label("messages"),
            sa.func.count(m.sent_at).label("sent"),
            messages_where(m.status == "pending", m.attempts > 0).label("deferred"),
            messages_where(m.status == "skipped").label("skipped"),
            messages_where(m.status == "failed").label("failed"),
            messages_where(sent, m.bounce == "soft").label("soft"),
            messages_where(sent, m.bounce == "hard").label("hard"),
            sa.func.count(m.opened_at).label("opened"),
            messages_where(m.machine_opened_at.is_not(None), m.opened_at.is_(None)).label(
                "machine_only"
            ),
            sa.func.count(m.clicked_at).label("clicked"),
            sa.func.coalesce(sa.func.sum(m.clicks), 0).label("clicks"),
            sa.func.count(m.unsubscribed_at).label("unsubscribed"),
            sa.func.count(m.complained_at).label("complained"),
        )
        .where(m.workflow == workflow, *in_period(m.created_at, since, until))
        .group_by(m.step)
        .order_by(m.step)
    )
    if version is not None:
        of_version = sa.select(runs.c.id).where(runs.c.workflow_version == version)
        query = query.where(m.run_id.in_(of_version))
    return [
        StepEngagement(
            step=r.step,
            template=r.template,
            messages=r.messages,
            sent=r.sent,
            delivered=r.sent - r.soft - r.hard,
            deferred=r.deferred,
            skipped=r.skipped,
            failed=r.failed,
            soft_bounced=r.soft,
            hard_bounced=r.hard,
            opened=r.opened,
            machine_opened=r.machine_only,
            clicked=r.clicked,
            clicks=int(r.clicks),
            unsubscribed=r.unsubscribed,
            complained=r.complained,
        )
        for r in conn.execute(query)
    ]


def link_clicks(conn: Connection, workflow: str) -> list[LinkClicks]:
    """Clicks by people per link of each step's message, from the counts kept on each
    clicked message (services/message_events.py): no click event is read."""
    o = outbox.c
    if conn.dialect.name == "postgresql":
        each: Any = sa.func.jsonb_each_text(o.link_clicks).table_valued("key", "value")
        tag: Any = o.links.op("->")(_link_index(each.c.key)).op("->>")("tag")
    else:
        each = sa.func.json_each(o.link_clicks).table_valued("key", "value")
        at = sa.func.printf("$[%d].tag", _link_index(each.c.key))
        tag = sa.case((each.c.key != "?", sa.func.json_extract(o.links, at)))
    query = (
        sa.select(
            o.step,
            each.c.key.label("link"),
            sa.func.min(tag).label("tag"),
            sa.func.count().label("clicked"),
            sa.func.sum(sa.cast(each.c.value, sa.Integer)).label("clicks"),
        )
        .select_from(outbox)
        .join(each, sa.true())
        .where(o.workflow == workflow, o.link_clicks.is_not(None))
        .group_by(o.step, each.c.key)
    )
    found = [
        LinkClicks(r.step, _link_number(r.link), r.tag, int(r.clicked), int(r.clicks))
        for r in conn.execute(query)
    ]
    return sorted(found, key=lambda c: (c.step, c.link is None, c.link or 0))


def _link_index(key: Any) -> Any:
    """A link's key as its index in the message's links ("?" gives no link)."""
    return sa.cast(sa.func.nullif(key, "?"), sa.Integer)


def _link_number(key: str) -> int | None:
    return int(key) if key.isdigit() else None


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
    """Messages sent, first opened and first clicked by people, per day (UTC)."""
    counts: dict[str, list[int]] = {}
    for index, column in enumerate((outbox.c.sent_at, outbox.c.opened_at, outbox.c.clicked_at)):
        day = _day(conn, column)
        query = (
            sa.select(day, sa.func.count())
            .where(outbox.c.workflow == workflow, column.is_not(None))
            .group_by(day)
        )
        for when, count in conn.execute(query):
            counts.setdefault(str(when), [0, 0, 0])[index] = int(count)
    return [DayOfEngagement(day, *values) for day, values in sorted(counts.items())]


def _day(conn: Connection, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    if conn.dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.substr(column, 1, 10)
