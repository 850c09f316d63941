"""Shared parameter types: ids the database can hold (a larger number is a 422, not a 500)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, Field

MAX_ID = 2**63 - 1

ContactId = Annotated[int, Path(ge=1, le=MAX_ID, description="A contact's id.")]
TaskId = Annotated[int, Path(ge=1, le=MAX_ID, description="A task's id.")]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _in_utc(value: datetime) -> datetime:
    """A moment the database can hold: naive means UTC; it must exist in UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("a moment between the years 1 and 9999 in UTC") from None


Moment = Annotated[datetime, AfterValidator(_in_utc)]
