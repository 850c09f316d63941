"""Durations as users write them: `90s`, `30m`, `12h`, `7d`, `2w`, `-90d`, `1d12h`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"([0-9]+)([smhdw])")
_WHOLE = re.compile(r"[+-]?([0-9]+[smhdw])+")


class DurationError(ValueError):
    """The text is not a duration."""


def parse_duration(text: object, *, allow_negative: bool = False) -> timedelta:
    """Parse a duration; raise DurationError with a message naming the rule broken."""
    if not isinstance(text, str):
        raise DurationError("a duration is text such as 7d, 12h or 30m")
    value = text.strip().lower()
    if not _WHOLE.fullmatch(value):
        raise DurationError(
            f"{text!r} is not a duration (use a number and a unit s, m, h, d or w, e.g. 7d)"
        )
    sign = -1 if value.startswith("-") else 1
    if sign < 0 and not allow_negative:
        raise DurationError(f"{text!r} must not be negative here")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(value))
    return timedelta(seconds=sign * seconds)


def format_duration(delta: timedelta) -> str:
    """Render a timedelta in the same notation, largest units first."""
    total = int(delta.total_seconds())
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)
