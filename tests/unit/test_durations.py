from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carepath.domain.durations import DurationError, format_duration, parse_duration
from carepath.domain.fields import parse_datetime

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
whole_seconds = st.integers(min_value=-(10**9), max_value=10**9).map(lambda s: timedelta(seconds=s))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 7D ", timedelta(days=7)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration_reads_each_unit_and_combinations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_parse_duration_reads_negative_durations_only_when_allowed() -> None:
    assert parse_duration("-90d", allow_negative=True) == timedelta(days=-90)
    with pytest.raises(DurationError, match="must not be negative"):
        parse_duration("-90d")


@pytest.mark.parametrize("text", ["7", "d", "7 days", "7x", "1.5d", "", "7d-", "--7d", "d7"])
def test_parse_duration_rejects_text_that_is_not_a_duration(text: str) -> None:
    with pytest.raises(DurationError, match="is not a duration"):
        parse_duration(text, allow_negative=True)


@pytest.mark.parametrize("value", [7, None, 1.5, ["7d"]])
def test_parse_duration_rejects_values_that_are_not_text(value: object) -> None:
    with pytest.raises(DurationError, match="a duration is text"):
        parse_duration(value)


def test_format_duration_writes_largest_units_first() -> None:
    assert format_duration(timedelta(days=1, hours=12, minutes=5, seconds=1)) == "1d12h5m1s"
    assert format_duration(timedelta(weeks=2)) == "14d"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(days=-90)) == "-90d"


@settings(max_examples=300, deadline=None)
@given(whole_seconds)
def test_parsing_a_formatted_duration_gives_back_the_same_duration(delta: timedelta) -> None:
    assert parse_duration(format_duration(delta), allow_negative=True) == delta


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.tuples(st.integers(min_value=0, max_value=10_000), st.sampled_from("smhdw")),
        min_size=1,
        max_size=5,
    ),
    negative=st.booleans(),
)
def test_any_written_duration_means_the_sum_of_its_parts_and_formats_canonically(
    parts: list[tuple[int, str]], negative: bool
) -> None:
    text = ("-" if negative else "") + "".join(f"{n}{unit}" for n, unit in parts)
    seconds = sum(n * UNIT_SECONDS[unit] for n, unit in parts)
    expected = timedelta(seconds=-seconds if negative else seconds)

    parsed = parse_duration(text, allow_negative=True)

    assert parsed == expected
    canonical = format_duration(parsed)
    assert parse_duration(canonical, allow_negative=True) == expected
    assert format_duration(parse_duration(canonical, allow_negative=True)) == canonical


def test_a_moment_with_no_utc_instant_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="years 1 to 9999"):
        parse_datetime("0001-01-01T00:00:01+01:02")
