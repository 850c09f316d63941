"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import operators
from sqlalchemy.types import TypeDecorator

from carepath.protection.sealing import seal, unseal

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
# Documents users wrote keep their key order (JSONB would sort it): the first
# key names the kind, and step order is how the author reads the workflow.
OrderedJson = JSON()


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out: timestamptz on PostgreSQL, sortable text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Sealed(TypeDecorator[str]):
    """Text sealed with the keyring (AES-256-GCM) on the way in, opened on the way out.

    `purpose` (table.column) is bound into each value. A sealed column cannot be
    compared in SQL, since every sealing differs: look values up through their
    blind index column instead. Only IS NULL / IS NOT NULL are allowed.
    """

    impl = Text
    cache_ok = True

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.purpose = purpose

    class comparator_factory(TypeDecorator.Comparator[str]):  # noqa: N801 - SQLAlchemy's name
        def operate(self, op: Any, *other: Any, **kwargs: Any) -> Any:
            if op not in (operators.is_, operators.is_not):
                raise TypeError("a sealed column is compared through its blind index")
            return super().operate(op, *other, **kwargs)

    def seal_value(self, value: object) -> str | None:
        return None if value is None else seal(str(value), self.purpose)

    def process_bind_param(self, value: object, dialect: Dialect) -> str | None:
        return self.seal_value(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else unseal(value, self.purpose)


class SealedJson(Sealed):
    """A JSON document sealed whole (it is only ever read back whole, never queried)."""

    cache_ok = True

    def seal_value(self, value: object) -> str | None:
        if value is None:
            return None
        return seal(json.dumps(value, separators=(",", ":")), self.purpose)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.loads(unseal(value, self.purpose))
