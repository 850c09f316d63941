"""`source:` documents: how a system that posts webhooks maps its payloads to events.

```yaml
source: scheduler
title: Clinic scheduling system
secret_env: CAREPATH_HOOK_SCHEDULER      # the environment variable holding the shared secret
events:
  - when: {payload.kind: appointment.booked}     # every path must have this value
    type: appointment.scheduled
    contact: {external_id: payload.patient.mrn}  # id, external_id or email
    occurred_at: payload.booked_at               # optional
    idempotency_key: payload.id                  # optional (prefixed with the source's name)
    data: {starts_at: payload.appointment.start}
```

A payload that is a JSON array is mapped item by item. The first rule whose
`when` holds makes the event; a payload no rule matches is ignored. The
secret never appears in a document: documents live in git, secrets in the
server's environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carepath.domain.conditions import EVENT_TYPE_CHARS
from carepath.domain.problems import Problems

_PATH = re.compile(r"^payload(\.[A-Za-z0-9_-]+)*$")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,100}$")
_REFERENCES = ("id", "external_id", "email")


@dataclass(frozen=True)
class EventRule:
    when: tuple[tuple[str, object], ...]
    type: str
    contact_kind: str
    contact_path: str
    occurred_at: str | None
    idempotency_key: str | None
    data: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SourceDef:
    name: str
    title: str
    secret_env: str
    rules: tuple[EventRule, ...]


def parse_source(raw: Mapping[str, object], problems: Problems) -> SourceDef | None:
    allowed = {"source", "title", "description", "secret_env", "events"}
    for key in sorted(set(raw) - allowed, key=str):
        problems.add((str(key),), f"unknown key (expected {', '.join(sorted(allowed))})")
    before = len(problems)
    secret_env = raw.get("secret_env")
    if not isinstance(secret_env, str) or not _ENV_NAME.match(secret_env):
        problems.add(("secret_env",), "the name of an environment variable, e.g. HOOK_SECRET")
    rules_raw = raw.get("events")
    if not isinstance(rules_raw, list) or not rules_raw:
        problems.add(("events",), "a list of at least one event rule")
        rules_raw = []
    rules = [_parse_rule(item, ("events", i), problems) for i, item in enumerate(rules_raw)]
    if len(problems) > before:
        return None
    name = str(raw["source"])
    return SourceDef(
        name,
        str(raw.get("title") or name),
        str(secret_env),
        tuple(r for r in rules if r is not None),
    )


def _parse_rule(raw: object, at: tuple[str | int, ...], problems: Problems) -> EventRule | None:
    if not isinstance(raw, Mapping):
        problems.add(at, "an event rule is a mapping with type and contact")
        return None
    allowed = {"when", "type", "contact", "occurred_at", "idempotency_key", "data"}
    for key in sorted(set(raw) - allowed, key=str):
        problems.add((*at, str(key)), f"unknown key (expected {', '.join(sorted(allowed))})")
    before = len(problems)
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind or not set(kind) <= EVENT_TYPE_CHARS:
        problems.add((*at, "type"), "an event type such as appointment.scheduled")
    when = raw.get("when", {})
    if not isinstance(when, Mapping):
        problems.add((*at, "when"), "a mapping of payload paths to the values they must have")
        when = {}
    for path in when:
        _check_path(path, (*at, "when", str(path)), problems)
    contact = raw.get("contact")
    if (
        not isinstance(contact, Mapping)
        or len(contact) != 1
        or next(iter(contact)) not in _REFERENCES
    ):
        problems.add((*at, "contact"), "exactly one of id, external_id or email: a payload path")
        contact = {"id": "payload"}
    (contact_kind, contact_path), *_ = contact.items()
    _check_path(contact_path, (*at, "contact", str(contact_kind)), problems)
    for key in ("occurred_at", "idempotency_key"):
        if raw.get(key) is not None:
            _check_path(raw[key], (*at, key), problems)
    data = raw.get("data", {})
    if not isinstance(data, Mapping):
        problems.add((*at, "data"), "a mapping of names to payload paths")
        data = {}
    for name, path in data.items():
        _check_path(path, (*at, "data", str(name)), problems)
    if len(problems) > before:
        return None
    return EventRule(
        when=tuple((str(p), v) for p, v in when.items()),
        type=str(kind),
        contact_kind=str(contact_kind),
        contact_path=str(contact_path),
        occurred_at=_optional(raw.get("occurred_at")),
        idempotency_key=_optional(raw.get("idempotency_key")),
        data=tuple((str(n), str(p)) for n, p in data.items()),
    )


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


def _check_path(path: object, at: tuple[str | int, ...], problems: Problems) -> None:
    if not isinstance(path, str) or not _PATH.match(path):
        problems.add(at, "a payload path such as payload.patient.mrn")


def read_path(payload: object, path: str) -> object:
    """The value at `payload.a.b` (list items by index), or None if there is none."""
    value: Any = payload
    for part in path.split(".")[1:]:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def map_payload(source: SourceDef, payload: object) -> list[dict[str, object]]:
    """Events (in the format of the events API) that a payload makes; [] if none matches."""
    items = payload if isinstance(payload, list) else [payload]
    found: list[dict[str, object]] = []
    for item in items:
        rule = next(
            (r for r in source.rules if all(read_path(item, p) == v for p, v in r.when)), None
        )
        if rule is None:
            continue
        event: dict[str, object] = {
            "type": rule.type,
            "contact": {rule.contact_kind: read_path(item, rule.contact_path)},
            "data": {name: read_path(item, path) for name, path in rule.data},
        }
        occurred = read_path(item, rule.occurred_at) if rule.occurred_at else None
        if occurred is not None:
            event["occurred_at"] = occurred
        if rule.idempotency_key is not None:
            key = read_path(item, rule.idempotency_key)
            if key is not None:
                event["idempotency_key"] = f"{source.name}:{key}"
        found.append(event)
    return found
