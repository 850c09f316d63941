"""Shared parameter types: ids the database can hold (a larger number is a 422, not a 500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import Field

MAX_ID = 2**63 - 1

ContactId = Annotated[int, Path(ge=1, le=MAX_ID, description="A contact's id.")]
TaskId = Annotated[int, Path(ge=1, le=MAX_ID, description="A task's id.")]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
