"""One error hierarchy; entrypoints map `code` to exit codes and HTTP problems.

Messages name fields and reasons, never values: a value may be PHI.
"""

# `InvalidInput`, `NotFound` and `Conflict` are the API's vocabulary (their codes name them
# the same way), so they keep their names without an `Error` suffix.
# ruff: noqa: N818

from __future__ import annotations

from dataclasses import dataclass


class CarepathError(Exception):
    """Base of every error carepath raises on purpose."""

    code = "carepath_error"


@dataclass(frozen=True)
class Problem:
    """One problem found in user input; `location` is a file:line or a field path."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message

    @classmethod
    def at_field(cls, message: str) -> Problem:
        """A check's "field: reason" message as a problem located at that field."""
        field, sep, reason = message.partition(": ")
        if sep and " " not in field:
            return cls(field, reason)
        return cls("", message)


class InvalidInput(CarepathError):
    """User input (a resource file, an import, an event) is not acceptable."""

    code = "invalid_input"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        summary = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(summary + more)


class NotFound(CarepathError):
    """A named thing (contact, workflow, task) does not exist."""

    code = "not_found"


class Forbidden(CarepathError):
    """The principal's role does not allow this (the message names the rule, never data)."""

    code = "forbidden"


class Conflict(CarepathError):
    """The request contradicts the current state (e.g. completing a closed task)."""

    code = "conflict"


class ConfigurationError(CarepathError):
    """Settings or the database are not in a usable state."""

    code = "configuration"
