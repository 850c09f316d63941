"""When a message may go out: quiet hours in the contact's time zone, and frequency caps.

Pure: the outbox asks, for each message about to be sent, whether it must
wait and until when.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from carepath.domain.durations import DurationError, parse_duration
from carepath.domain.scheduling import next_local_time, zone_for

_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_CAP = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


class WindowError(ValueError):
    """A quiet-hours or cap setting that cannot be read."""


@dataclass(frozen=True)
class QuietHours:
    """Local times between which nothing is sent; `start` after `end` spans midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """`21:00-08:00`."""
        found = _HOURS.match(text)
        if not found:
            raise WindowError("quiet hours look like 21:00-08:00")
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise WindowError("quiet hours use times from 00:00 to 23:59")
        if (h1, m1) == (h2, m2):
            raise WindowError("quiet hours must start and end at different times")
        return cls(time(h1, m1), time(h2, m2))

    def _quiet_at(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def resume_at(self, now: datetime, time_zone: str | None) -> datetime | None:
        """None when `now` is outside quiet hours there; else the instant they end."""
        local = now.astimezone(zone_for(time_zone)).time().replace(tzinfo=None)
        if not self._quiet_at(local):
            return None
        return next_local_time(now, self.end, time_zone)


@dataclass(frozen=True)
class FrequencyCap:
    """At most `count` messages per contact in any `period`."""

    count: int
    period: timedelta

    @classmethod
    def parse(cls, text: str) -> FrequencyCap:
        """`3/7d`: three in any seven days."""
        found = _CAP.match(text)
        if not found:
            raise WindowError("a frequency cap looks like 3/7d")
        try:
            period = parse_duration(found.group(2))
        except DurationError as exc:
            raise WindowError(f"frequency cap period: {exc}") from None
        count = int(found.group(1))
        if count < 1 or period <= timedelta(0):
            raise WindowError("a frequency cap needs a count of 1 or more and a positive period")
        return cls(count, period)

    def resume_at(self, sent: Sequence[datetime], now: datetime) -> datetime | None:
        """None when another message fits; else when the oldest counted one ages out.

        `sent` holds when this contact's earlier messages went, in order.
        """
        recent = sent[bisect.bisect_right(sent, now - self.period) :]
        if len(recent) < self.count:
            return None
        return recent[len(recent) - self.count] + self.period
