from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carepath.domain.scheduling import (
    local_wall_time,
    next_local_time,
    resolve_wait_until,
    zone_for,
)

# Zones with 1 h shifts at 02:00 / 01:00, a 30-minute shift (Lord Howe), shifts at
# midnight (Sao Paulo, historically), odd offsets and no DST at all.
ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Pacific/Chatham",
    "America/St_Johns",
    "Asia/Kolkata",
    "UTC",
]
TRICKY_TIMES = [time(h, m) for h in (0, 1, 2, 3) for m in (0, 15, 30, 45)]

at_times = st.one_of(st.sampled_from(TRICKY_TIMES), st.times())
zones = st.sampled_from(ZONES)
years = st.integers(min_value=2000, max_value=2035)


@cache
def transition_days(zone_name: str, year: int) -> tuple[date, ...]:
    """Local days of `year` on which the zone's UTC offset changes (noon to noon)."""
    zone = ZoneInfo(zone_name)
    found = []
    day = date(year, 1, 1)
    previous = datetime.combine(day - timedelta(days=1), time(12), zone).utcoffset()
    while day.year == year:
        offset = datetime.combine(day, time(12), zone).utcoffset()
        if offset != previous:
            found.append(day)
        previous = offset
        day += timedelta(days=1)
    return tuple(found)


@st.composite
def local_days(draw: st.DrawFn, zone_name: str) -> date:
    """A day in the zone, usually one on which its clocks change."""
    year = draw(years)
    changes = transition_days(zone_name, year)
    if changes and draw(st.booleans()):
        return draw(st.sampled_from(changes))
    return draw(st.dates(min_value=date(year, 1, 1), max_value=date(year, 12, 31)))


def instants_with_wall_time(day: date, at: time, zone: ZoneInfo) -> list[datetime]:
    """Every UTC instant whose wall-clock time in `zone` is `at` on `day` (oracle)."""
    naive = datetime.combine(day, at)
    found = set()
    for fold in (0, 1):
        offset = naive.replace(tzinfo=zone, fold=fold).utcoffset()
        assert offset is not None
        instant = (naive - offset).replace(tzinfo=UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == naive:
            found.add(instant)
    return sorted(found)


def assert_is_wall_time_or_shifted_past_gap(
    result: datetime, day: date, at: time, zone: ZoneInfo
) -> None:
    """`result` is the first instant showing `at` on `day`, or, when that wall time
    does not exist, the instant that time becomes once the clocks have jumped."""
    assert result.tzinfo is UTC
    existing = instants_with_wall_time(day, at, zone)
    if existing:
        assert result == existing[0]
        local = result.astimezone(zone)
        assert (local.date(), local.time(), local.fold) == (day, at, 0)
        return
    shifted = result.astimezone(zone).replace(tzinfo=None)
    assert shifted > datetime.combine(day, at), "a skipped wall time must move forward"
    before = (result - timedelta(hours=3)).astimezone(zone).utcoffset()
    after = result.astimezone(zone).utcoffset()
    assert before is not None
    assert after is not None
    gap = after - before
    assert timedelta(0) < gap <= timedelta(hours=2)
    assert shifted == datetime.combine(day, at) + gap


@settings(max_examples=400, deadline=None)
@given(data=st.data(), zone_name=zones, at=at_times)
def test_local_wall_time_is_that_wall_time_or_moves_forward_by_the_gap(
    data: st.DataObject, zone_name: str, at: time
) -> None:
    zone = ZoneInfo(zone_name)
    day = data.draw(local_days(zone_name))

    result = local_wall_time(day, at, zone)

    assert_is_wall_time_or_shifted_past_gap(result, day, at, zone)


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    zone_name=zones,
    at=at_times,
    offset_days=st.integers(min_value=-400, max_value=400),
    jitter=st.integers(min_value=-14 * 3600, max_value=14 * 3600),
)
def test_resolve_wait_until_lands_offset_local_days_after_the_anchor_at_the_wall_time(
    data: st.DataObject, zone_name: str, at: time, offset_days: int, jitter: int
) -> None:
    zone = ZoneInfo(zone_name)
    target = data.draw(local_days(zone_name))
    # An anchor near the target minus the offset, so that target days with clock
    # changes come up often; the expected day is still computed from the anchor.
    anchor = datetime.combine(target - timedelta(days=offset_days), time(12), UTC)
    anchor += timedelta(seconds=jitter)
    expected_day = anchor.astimezone(zone).date() + timedelta(days=offset_days)

    result = resolve_wait_until(
        anchor, offset=timedelta(days=offset_days), at=at, time_zone=zone_name
    )

    assert_is_wall_time_or_shifted_past_gap(result, expected_day, at, zone)


@settings(max_examples=200, deadline=None)
@given(
    anchor=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    seconds=st.integers(min_value=-(10**8), max_value=10**8),
    zone_name=zones,
)
def test_resolve_wait_until_without_a_time_of_day_is_the_anchor_plus_the_offset(
    anchor: datetime, seconds: int, zone_name: str
) -> None:
    offset = timedelta(seconds=seconds)

    result = resolve_wait_until(anchor, offset=offset, time_zone=zone_name)

    assert result == anchor + offset
    assert result.utcoffset() == timedelta(0)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    zone_name=zones,
    at=at_times,
    jitter=st.integers(min_value=-36 * 3600, max_value=12 * 3600),
)
def test_next_local_time_is_the_first_matching_wall_time_at_or_after_now(
    data: st.DataObject, zone_name: str, at: time, jitter: int
) -> None:
    near = data.draw(local_days(zone_name))
    now = datetime.combine(near, time(12), UTC) + timedelta(seconds=jitter)
    zone = ZoneInfo(zone_name)

    result = next_local_time(now, at, zone_name)

    assert now <= result < now + timedelta(hours=27)
    today = now.astimezone(zone).date()
    day = result.astimezone(zone).date()
    assert day in (today, today + timedelta(days=1))  # no gap here crosses midnight
    assert_is_wall_time_or_shifted_past_gap(result, day, at, zone)
    if day == today + timedelta(days=1):
        assert local_wall_time(today, at, zone) < now


def test_wall_time_skipped_by_spring_forward_in_new_york_moves_an_hour_later() -> None:
    result = local_wall_time(date(2026, 3, 8), time(2, 30), ZoneInfo("America/New_York"))

    assert result == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT


def test_wall_time_skipped_by_lord_howe_half_hour_shift_moves_thirty_minutes_later() -> None:
    zone = ZoneInfo("Australia/Lord_Howe")

    result = local_wall_time(date(2025, 10, 5), time(2, 15), zone)

    assert result.astimezone(zone).replace(tzinfo=None) == datetime(2025, 10, 5, 2, 45)
    assert result == datetime(2025, 10, 4, 15, 45, tzinfo=UTC)


def test_wall_time_skipped_in_london_moves_an_hour_later() -> None:
    result = local_wall_time(date(2026, 3, 29), time(1, 30), ZoneInfo("Europe/London"))

    assert result == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 02:30 BST


def test_wall_time_repeated_by_fall_back_takes_the_first_occurrence() -> None:
    result = local_wall_time(date(2025, 11, 2), time(1, 30), ZoneInfo("America/New_York"))

    assert result == datetime(2025, 11, 2, 5, 30, tzinfo=UTC)  # 01:30 EDT, not EST


def test_two_days_before_an_appointment_at_nine_lands_on_the_spring_forward_day() -> None:
    appointment = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # 10:00 EDT

    result = resolve_wait_until(
        appointment, offset=timedelta(days=-2), at=time(9), time_zone="America/New_York"
    )

    assert result == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)  # 09:00 EDT on 8 March


def test_offset_counts_days_from_the_contacts_local_date_not_the_utc_date() -> None:
    late_evening = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 22:00 on 9 March in New York

    result = resolve_wait_until(
        late_evening, offset=timedelta(days=-2), at=time(9), time_zone="America/New_York"
    )

    assert result == datetime(2026, 3, 7, 14, 0, tzinfo=UTC)  # 09:00 EST on 7 March


def test_offset_with_hours_and_a_time_of_day_uses_the_local_date_of_the_shifted_instant() -> None:
    anchor = datetime(2026, 6, 10, 20, 0, tzinfo=UTC)  # 21:00 BST

    result = resolve_wait_until(
        anchor, offset=timedelta(hours=-36), at=time(8), time_zone="Europe/London"
    )

    # 21:00 on 10 June minus 36 h is 09:00 on 9 June; at 08:00 BST that day.
    assert result == datetime(2026, 6, 9, 7, 0, tzinfo=UTC)


def test_a_calendar_date_anchor_names_the_day_in_the_contacts_zone() -> None:
    result = resolve_wait_until(
        date(2026, 3, 10), offset=timedelta(days=-2), at=time(9), time_zone="America/New_York"
    )

    assert result == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_naive_anchor_is_taken_as_utc() -> None:
    result = resolve_wait_until(datetime(2026, 1, 1, 12), offset=timedelta(hours=1))

    assert result == datetime(2026, 1, 1, 13, tzinfo=UTC)


@pytest.mark.parametrize("name", [None, "", "Mars/Olympus_Mons", "../etc/passwd"])
def test_unknown_or_missing_time_zone_falls_back_to_utc(name: str | None) -> None:
    assert zone_for(name) == ZoneInfo("UTC")
    result = resolve_wait_until(
        datetime(2026, 5, 1, 15, tzinfo=UTC), offset=timedelta(days=1), at=time(9), time_zone=name
    )
    assert result == datetime(2026, 5, 2, 9, tzinfo=UTC)
