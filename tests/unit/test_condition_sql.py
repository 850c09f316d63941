"""The SQL compiler's date arithmetic (the answers themselves are proved against Python
in tests/integration/test_condition_equivalence.py)."""

from __future__ import annotations

from datetime import date, timedelta

from carepath.db.condition_sql import anniversary_days


def test_anniversary_days_cover_today_through_the_window() -> None:
    assert anniversary_days(date(2026, 12, 30), timedelta(days=3)) == {
        "12-30",
        "12-31",
        "01-01",
        "01-02",
    }


def test_29_february_counts_on_28_february_of_a_common_year_only() -> None:
    assert "02-29" in anniversary_days(date(2027, 2, 28), timedelta(0))
    assert "02-29" not in anniversary_days(date(2028, 2, 28), timedelta(0))
    assert anniversary_days(date(2028, 2, 29), timedelta(0)) == {"02-29"}


def test_a_window_of_a_year_and_more_holds_every_day() -> None:
    assert len(anniversary_days(date(2026, 3, 1), timedelta(days=400))) == 366
