"""Source documents: validation of their rules, and payloads mapped to events."""

from __future__ import annotations

from carepath.domain.problems import Problems
from carepath.domain.sources import SourceDef, map_payload, parse_source, read_path

RAW = {
    "source": "lab",
    "secret_env": "LAB_SECRET",
    "events": [
        {
            "when": {"payload.status": "final"},
            "type": "lab.result_available",
            "contact": {"external_id": "payload.patient.mrn"},
            "idempotency_key": "payload.order",
            "data": {"panel": "payload.tests.0.code"},
        }
    ],
}


def _source() -> SourceDef:
    problems = Problems()
    source = parse_source(RAW, problems)
    assert source is not None, problems.items
    return source


def test_paths_read_nested_values_and_list_items_and_give_none_when_absent() -> None:
    payload = {"a": {"b": [10, {"c": "x"}]}}
    assert read_path(payload, "payload.a.b.1.c") == "x"
    assert read_path(payload, "payload.a.b.0") == 10
    assert read_path(payload, "payload.a.missing") is None
    assert read_path(payload, "payload.a.b.7") is None
    assert read_path("text", "payload.a") is None
    assert read_path(payload, "payload") == payload


def test_a_matching_payload_becomes_one_event_with_a_namespaced_key() -> None:
    payload = {"status": "final", "order": 77, "patient": {"mrn": "M1"}, "tests": [{"code": "A1C"}]}
    assert map_payload(_source(), payload) == [
        {
            "type": "lab.result_available",
            "contact": {"external_id": "M1"},
            "data": {"panel": "A1C"},
            "idempotency_key": "lab:77",
        }
    ]


def test_payloads_no_rule_matches_are_ignored_and_arrays_map_item_by_item() -> None:
    final = {"status": "final", "order": 1, "patient": {"mrn": "M1"}}
    draft = {"status": "preliminary", "order": 2, "patient": {"mrn": "M1"}}
    assert map_payload(_source(), draft) == []
    assert len(map_payload(_source(), [final, draft, final])) == 2


def test_bad_rules_are_named_with_their_paths() -> None:
    problems = Problems()
    raw = {
        "source": "lab",
        "secret_env": "lower-case",
        "events": [{"type": "Bad!", "contact": {"phone": "payload.p"}, "data": {"x": "body.x"}}],
    }
    assert parse_source(raw, problems) is None
    found = {(p.path, p.message) for p in problems.items}
    assert (("secret_env",), "the name of an environment variable, e.g. HOOK_SECRET") in found
    assert (("events", 0, "type"), "an event type such as appointment.scheduled") in found
    assert any(path == ("events", 0, "contact") for path, _ in found)
    assert (("events", 0, "data", "x"), "a payload path such as payload.patient.mrn") in found
