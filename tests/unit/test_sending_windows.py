"""Quiet hours in the contact's zone and frequency caps."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from carepath.domain.sending_windows import FrequencyCap, QuietHours, WindowError

NIGHT = QuietHours.parse("21:00-08:00")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_quiet_hours_span_midnight_in_the_contacts_zone() -> None:
    # 02:00 UTC is 21:00 the evening before in New York (EST, UTC-5).
    assert NIGHT.resume_at(at("2026-01-06T02:00"), "America/New_York") == at("2026-01-06T13:00")
    assert NIGHT.resume_at(at("2026-01-06T12:59"), "America/New_York") == at("2026-01-06T13:00")
    assert NIGHT.resume_at(at("2026-01-06T13:00"), "America/New_York") is None


def test_quiet_hours_in_berlin_at_three_in_the_morning() -> None:
    assert NIGHT.resume_at(at("2026-01-06T02:00"), "Europe/Berlin") == at("2026-01-06T07:00")


def test_quiet_hours_end_at_local_eight_across_a_dst_change() -> None:
    # 8 March 2026: New York springs forward; 08:00 local is then 12:00 UTC.
    assert NIGHT.resume_at(at("2026-03-08T06:00"), "America/New_York") == at("2026-03-08T12:00")


def test_a_daytime_window_and_unknown_zones() -> None:
    lunch = QuietHours.parse("12:00-13:30")
    assert lunch.resume_at(at("2026-01-06T12:15"), None) == at("2026-01-06T13:30")
    assert lunch.resume_at(at("2026-01-06T12:15"), "Not/AZone") == at("2026-01-06T13:30")
    assert lunch.resume_at(at("2026-01-06T13:30"), None) is None
    assert lunch.start == time(12, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9pm-8am", "look like 21:00-08:00"),
        ("25:00-08:00", "00:00 to 23:59"),
        ("08:00-08:00", "different"),
    ],
)
def test_bad_quiet_hours_are_named(text: str, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        QuietHours.parse(text)


def test_a_cap_lets_through_until_full_then_waits_for_the_oldest_to_age_out() -> None:
    cap = FrequencyCap.parse("3/7d")
    now = at("2026-01-10T10:00")
    sent = [at("2026-01-02T09:00"), at("2026-01-04T09:00"), at("2026-01-08T09:00")]
    assert cap.resume_at(sent, now) is None  # the first is more than 7 days old
    sent.append(at("2026-01-09T09:00"))
    assert cap.resume_at(sent, now) == at("2026-01-04T09:00") + timedelta(days=7)


@pytest.mark.parametrize(
    ("text", "message"), [("3", "looks like 3/7d"), ("0/7d", "count of 1"), ("3/soon", "period")]
)
def test_bad_caps_are_named(text: str, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        FrequencyCap.parse(text)
