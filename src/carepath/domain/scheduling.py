"""Scheduling maths: when a `wait` step wakes, in the contact's own time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIME_ZONE = "UTC"


def zone_for(name: str | None) -> ZoneInfo:
    """The IANA zone for a contact, falling back to UTC for unknown or empty names."""
    if not name:
        return ZoneInfo(DEFAULT_TIME_ZONE)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIME_ZONE)


def is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def local_wall_time(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `at` on `day` in `zone`.

    A wall time skipped by a DST jump (02:30 on spring-forward day) moves
    forward by the gap, as a person's alarm clock would; an ambiguous one
    (fall-back) takes the first occurrence.
    """
    naive = datetime.combine(day, at)
    # fold=0 reads the wall time with the offset in force before a transition
    # (PEP 495): an ambiguous time is its first occurrence, and a skipped time
    # lands past the gap, later by the size of the jump. (fold=1 would move a
    # skipped time backwards, before the gap.)
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def resolve_wait_until(
    anchor: datetime | date,
    *,
    offset: timedelta = timedelta(0),
    at: time | None = None,
    time_zone: str | None = None,
) -> datetime:
    """When a wait on a date ends: `anchor` moved by `offset`, then set to `at` local time.

    With `at`, the offset is counted in calendar days in the contact's zone
    (so `-2d` at 09:00 is 09:00 two local days before, across DST changes).
    A calendar date (no time) names that day in the contact's zone: it starts
    at local midnight, not at midnight UTC.
    """
    zone = zone_for(time_zone)
    if not isinstance(anchor, datetime):
        anchor = local_wall_time(anchor, time(0), zone)
    anchor = _as_utc(anchor)
    if at is None:
        return anchor + offset
    local_day = anchor.astimezone(zone).date()
    whole_days = offset.days if offset.seconds == 0 else None
    if whole_days is not None:
        return local_wall_time(local_day + timedelta(days=whole_days), at, zone)
    shifted = (anchor + offset).astimezone(zone).date()
    return local_wall_time(shifted, at, zone)


def date_trigger_fires(
    value: date | datetime,
    *,
    offset: timedelta,
    at: time | None,
    yearly: bool,
    time_zone: str | None,
    after: datetime,
    until: datetime,
) -> list[datetime]:
    """The moments in (after, until] a date trigger fires for one contact's date.

    Yearly, the anniversary of the (local) date, 28 February in common years
    for a 29 February date; either way moved by `offset`, then at `at` local
    time (a date-time without `at` keeps its own time).
    """
    anchors: list[date | datetime] = [value]
    if yearly:  # anniversaries of the local date
        if isinstance(value, datetime):
            value = _as_utc(value).astimezone(zone_for(time_zone)).date()
        years = range(after.year - 1, until.year + 2)
        anchors = [anniversary_in(value, year) for year in years if year >= value.year]
    fires = (
        resolve_wait_until(anchor, offset=offset, at=at, time_zone=time_zone) for anchor in anchors
    )
    return [moment for moment in fires if after < moment <= until]


def schedule_fires(
    starting: datetime, every: timedelta | None, *, after: datetime, until: datetime
) -> list[datetime]:
    """The moments in (after, until] of a schedule: `starting`, then every `every`."""
    if every is None:
        return [starting] if after < starting <= until else []
    first = 0 if after < starting else (after - starting) // every + 1
    moments = []
    moment = starting + first * every
    while moment <= until:
        moments.append(moment)
        moment += every
    return moments


def anniversary_in(day: date, year: int) -> date:
    """`day` in another year; 29 February falls on 28 February in common years."""
    try:
        return day.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def next_local_time(now: datetime, at: time, time_zone: str | None) -> datetime:
    """The first instant at or after `now` whose local wall time is `at`."""
    zone = zone_for(time_zone)
    now = _as_utc(now)
    day = now.astimezone(zone).date()
    candidate = local_wall_time(day, at, zone)
    if candidate < now:
        candidate = local_wall_time(day + timedelta(days=1), at, zone)
    return candidate


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
