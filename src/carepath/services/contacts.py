"""Contacts: typed facts for conditions, and all-or-nothing import from CSV or JSONL."""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carepath.db.dialect import bulk_insert, id_in
from carepath.db.schema import contacts
from carepath.domain.access import Principal
from carepath.domain.fields import (
    COLUMN_FIELDS,
    CORE_FIELDS,
    INDEXED_FIELDS,
    READ_ONLY_FIELDS,
    ContactSchema,
    FieldClass,
    FieldSpec,
    FieldType,
    coerce_value,
    index_column,
    is_field_name,
    json_value,
)
from carepath.domain.scheduling import is_time_zone
from carepath.errors import Forbidden, InvalidInput, NotFound, Problem
from carepath.protection.identifiers import (
    identifier_index,
    is_sealed,
    seal_attribute,
    unseal_attribute,
    with_indexes,
)
from carepath.services.events import NewEvent, store_events
from carepath.services.segment_checks import mark_contacts

IMPORT_BATCH = 1000
# Columns of a contact row that are not facts: the JSON decoded below, and blind indexes.
NOT_FACTS = frozenset({"attributes", *(index_column(name) for name in INDEXED_FIELDS)})
FACT_COLUMNS = ("id", *sorted(COLUMN_FIELDS), "tags", "attributes", "created_at")
IDENTIFIER_COLUMNS = frozenset(
    name for name in COLUMN_FIELDS if CORE_FIELDS[name].klass is FieldClass.IDENTIFIER
)


def contact_facts(
    row: Row[Any] | Mapping[str, Any],
    schema: ContactSchema,
    *,
    custom: Collection[str] | None = None,
) -> dict[str, object]:
    """A contact as conditions and templates see it: core and custom fields, typed.

    `custom` limits the custom fields decoded (None: every one the schema declares).
    """
    data = row._mapping if isinstance(row, Row) else row
    facts: dict[str, object] = {name: data[name] for name in data if name not in NOT_FACTS}
    if "tags" in facts:
        facts["tags"] = list(data["tags"] or [])
    attributes = data.get("attributes") or {}
    for name in schema.custom if custom is None else custom:
        value = attributes.get(name)
        if value is None:
            continue  # unset: absent, as templates expect
        spec = schema.custom[name]
        try:
            if spec.klass is FieldClass.IDENTIFIER and is_sealed(value):
                value = json.loads(unseal_attribute(name, value))
            # else: stored before the field was an identifier, in clear until `keys rotate`
            facts[name] = coerce_value(spec, value)
        except ValueError:
            facts[name] = None
    return facts


def to_storage(facts: Mapping[str, object], schema: ContactSchema) -> dict[str, object]:
    """Column values and the attributes JSON for a contact's facts."""
    values = with_indexes({name: facts.get(name) for name in COLUMN_FIELDS})
    values["tags"] = list(facts.get("tags") or [])  # type: ignore[call-overload]
    values["attributes"] = {
        name: _stored_attribute(spec, facts[name])
        for name, spec in schema.custom.items()
        if facts.get(name) is not None
    }
    return values


def _stored_attribute(spec: FieldSpec, value: object) -> object:
    stored = json_value(value)
    if spec.klass is FieldClass.IDENTIFIER:
        return seal_attribute(spec.name, json.dumps(stored))
    return stored


def lock_contacts(conn: Connection, ids: Collection[int], *, skip_locked: bool) -> set[int]:
    """Lock these contacts for this transaction, in id order; the ids locked.

    Every writer of a contact's runs takes this lock first and in this order
    (event processing waits for it; the runner skips a contact held elsewhere),
    so that no two transactions wait on each other in a cycle.
    """
    query = (
        sa.select(contacts.c.id)
        .where(id_in(conn, contacts.c.id, sorted(ids)))
        .order_by(contacts.c.id)
        .with_for_update(skip_locked=skip_locked)
    )
    return set(conn.execute(query).scalars().all())


def load_facts(
    conn: Connection,
    ids: Iterable[int],
    schema: ContactSchema,
    *,
    fields: Collection[str] | None = None,
) -> dict[int, dict[str, object]]:
    """Facts for many contacts; identifiers only when `fields` names them (None: all)."""
    columns = [
        n for n in FACT_COLUMNS if fields is None or n not in IDENTIFIER_COLUMNS or n in fields
    ]
    rows = conn.execute(
        sa.select(*(contacts.c[n] for n in columns)).where(id_in(conn, contacts.c.id, list(ids)))
    )
    return {row.id: contact_facts(row, schema) for row in rows}


def with_email(conn: Connection, ids: Iterable[int]) -> set[int]:
    """Which of these contacts have an email address (ids only, no addresses)."""
    query = sa.select(contacts.c.id).where(
        id_in(conn, contacts.c.id, list(ids)), contacts.c.email.is_not(None)
    )
    return set(conn.execute(query).scalars())


# ------------------------------------------------------------------ import


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int


def _unstorable(record: Mapping[str, object]) -> str | None:
    """What no database text can hold: NUL characters, unpaired surrogates (NaN and
    Infinity are refused as the JSON is parsed)."""
    texts = list(_texts(record))
    if any("\x00" in text for text in texts):
        return "values may not contain NUL characters"
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return "values may not hold unpaired surrogates"
    return None


def _texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def read_records(path: Path) -> Iterator[tuple[int, Mapping[str, object]]]:
    """(line number, record) pairs from a .csv or .jsonl file."""
    if path.suffix == ".csv":
        # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark before the header.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            for record in reader:
                yield reader.line_num, {k: v for k, v in record.items() if v not in ("", None)}
        return
    if path.suffix not in (".jsonl", ".ndjson"):
        raise InvalidInput([Problem(path.name, "contacts are imported from .csv or .jsonl files")])
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line, parse_constant=_no_constants)
            except json.JSONDecodeError as exc:
                raise InvalidInput(
                    [Problem(f"{path.name}:{number}", f"invalid JSON: {exc.msg}")]
                ) from None
            except ValueError as exc:  # NaN or Infinity
                raise InvalidInput([Problem(f"{path.name}:{number}", str(exc))]) from None
            except RecursionError:
                problem = Problem(f"{path.name}:{number}", "JSON nested too deeply")
                raise InvalidInput([problem]) from None
            if not isinstance(record, dict):
                raise InvalidInput([Problem(f"{path.name}:{number}", "each line is a JSON object")])
            yield number, record


def check_record(
    record: Mapping[str, object], schema: ContactSchema
) -> tuple[dict[str, object], list[str]]:
    """A record's typed values, or messages naming the fields that are wrong."""
    values: dict[str, object] = {}
    errors: list[str] = []
    for name, raw in record.items():
        spec = schema.get(name)
        if spec is None:
            # Echoed only when shaped like a field name: a file without its header
            # line would otherwise put a patient's values into the error.
            shown = name if is_field_name(str(name)) else "a column named by no field"
            errors.append(f"{shown}: unknown field")
            continue
        if name in READ_ONLY_FIELDS and name != "tags":
            errors.append(f"{name}: cannot be imported")
            continue
        try:
            values[name] = coerce_field(spec, raw)
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
    if not values.get("external_id") and not values.get("email"):
        errors.append("external_id or email is required to identify the contact")
    return values, errors


def coerce_field(spec: FieldSpec, raw: object) -> object:
    if spec.type is FieldType.LIST and isinstance(raw, str):
        raw = [part.strip() for part in raw.split(";") if part.strip()]
    value = coerce_value(spec, raw)
    if spec.name == "email" and (not isinstance(value, str) or "@" not in value):
        raise ValueError("not an email address")
    if spec.name == "email" and isinstance(value, str):
        value = value.strip().lower()
    if spec.name == "time_zone" and (not isinstance(value, str) or not is_time_zone(value)):
        raise ValueError("not an IANA time zone name")
    return value


def import_contacts(
    conn: Connection, path: Path, schema: ContactSchema, *, now: datetime, who: Principal
) -> ImportResult:
    """Validate every record first; write only if all are valid (caller owns the transaction)."""
    if "contacts:write" not in who.scopes or who.limited_to_queues:
        raise Forbidden(f"the {who.role} role does not import contacts")
    checked: list[dict[str, object]] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, record in read_records(path):
        if (unstorable := _unstorable(record)) is not None:
            problems.append(Problem(f"{path.name}:{line}", unstorable))
            continue
        values, errors = check_record(record, schema)
        key = str(values.get("external_id") or values.get("email"))
        if key in seen:
            errors.append(f"same contact as line {seen[key]}")
        seen[key] = line
        problems.extend(Problem(f"{path.name}:{line}", message) for message in errors)
        checked.append(values)
    if problems:
        raise InvalidInput(problems)
    created = updated = 0
    for start in range(0, len(checked), IMPORT_BATCH):
        c, u = upsert_contacts(conn, checked[start : start + IMPORT_BATCH], schema, now=now)
        created += c
        updated += u
    return ImportResult(created, updated)


def upsert_contacts(
    conn: Connection,
    records: Sequence[Mapping[str, object]],
    schema: ContactSchema,
    *,
    now: datetime,
) -> tuple[int, int]:
    """Insert or update a batch of checked records, matched by external_id, then email."""
    existing = _match_existing(conn, records)
    ids = list(existing.values())
    current = load_facts(conn, ids, schema) if ids else {}
    inserts: list[dict[str, object]] = []
    updates: list[dict[str, object]] = []
    for index, record in enumerate(records):
        contact_id = existing.get(index)
        if contact_id is None:
            facts = {name: record.get(name) for name in CORE_FIELDS} | dict(record)
            row = to_storage(facts, schema) | {"created_at": now, "updated_at": now}
            inserts.append(row)
        else:
            facts = current[contact_id] | dict(record)
            updates.append({"b_id": contact_id, **to_storage(facts, schema), "updated_at": now})
    if updates:
        columns = [c for c in updates[0] if c != "b_id"]
        conn.execute(
            contacts.update()
            .where(contacts.c.id == sa.bindparam("b_id"))
            .values({c: sa.bindparam(c) for c in columns}),
            updates,
        )
        mark_contacts(conn, [int(u["b_id"]) for u in updates], now=now)  # type: ignore[call-overload]
    if inserts:
        new_ids = bulk_insert(conn, contacts, inserts, returning="id")
        created = [
            NewEvent("contact.created", cid, now, f"contact:{cid}:created", {}, "import")
            for cid in new_ids
        ]
        store_events(conn, created, now=now)
    return len(inserts), len(updates)


def _match_existing(conn: Connection, records: Sequence[Mapping[str, object]]) -> dict[int, int]:
    """Record index -> existing contact id, by external_id first, then email."""
    external = {str(r["external_id"]): i for i, r in enumerate(records) if r.get("external_id")}
    emails = {str(r["email"]): i for i, r in enumerate(records) if r.get("email")}
    found: dict[int, int] = {}
    for name, wanted in (("external_id", external), ("email", emails)):
        if not wanted:
            continue
        by_index = {identifier_index(name, value): i for value, i in wanted.items()}
        column = contacts.c[index_column(name)]
        for r in conn.execute(sa.select(contacts.c.id, column).where(column.in_(by_index))):
            found.setdefault(by_index[r[1]], r.id)
    return found


def find_contact(conn: Connection, reference: str) -> int:
    """A contact id from `id`, `external_id` or `email` (as `123`, `ext:MRN-1`, `a@b.c`)."""
    if reference.isdigit():
        query = sa.select(contacts.c.id).where(contacts.c.id == int(reference))
        found = conn.execute(query).scalar()
    elif "@" in reference:
        found = contact_with(conn, "email", reference.strip().lower())
    else:
        found = contact_with(conn, "external_id", reference.removeprefix("ext:"))
    if found is None:
        raise NotFound("no contact matches that reference")
    return int(found)


def contact_with(conn: Connection, name: str, value: object) -> int | None:
    """The contact whose indexed identifier `name` (email, external_id, phone) is `value`,
    found through its blind index; None if there is none."""
    if value is None or value == "":
        return None
    column = contacts.c[index_column(name)]
    found = conn.execute(sa.select(contacts.c.id).where(column == identifier_index(name, value)))
    contact_id = found.scalar()
    return None if contact_id is None else int(contact_id)
