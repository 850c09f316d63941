"""Blind indexes of contact identifiers, and sealed custom identifier attributes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from carepath.domain.fields import INDEXED_FIELDS, index_column
from carepath.protection.sealing import blind_index, blind_indexes, seal, sealed_key_id, unseal


def identifier_index(name: str, value: object) -> str:
    """The blind index of an identifier's value, as stored beside it and used in lookups."""
    return blind_index(str(value), f"contacts.{name}")


def identifier_indexes(name: str, values: Sequence[str]) -> list[str]:
    """`identifier_index` of each value, in order."""
    return blind_indexes(values, f"contacts.{name}")


def with_indexes(values: Mapping[str, object]) -> dict[str, object]:
    """`values` plus the blind index of each indexed identifier it sets (None when unset)."""
    found = dict(values)
    for name in INDEXED_FIELDS & set(values):
        value = values[name]
        found[index_column(name)] = None if value is None else identifier_index(name, value)
    return found


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and sealed_key_id(value) is not None


def seal_attribute(name: str, value: str) -> str:
    """A custom identifier attribute's value, sealed inside the attributes JSON."""
    return seal(value, f"contacts.attributes.{name}")


def unseal_attribute(name: str, value: str) -> str:
    return unseal(value, f"contacts.attributes.{name}")
