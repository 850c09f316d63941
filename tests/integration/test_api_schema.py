"""The API against its own OpenAPI schema (schemathesis): no 5xx, answers as documented.

Requests generated from the schema for every operation, with a key that
holds every scope, on both databases. Refusals (4xx) are fine; a server
error or an answer that contradicts the schema is not. Schema-valid
requests may still be refused: whether a contact, a task or a workflow
exists is not something a schema can say, so that check is left out.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.testclient import TestClient

from carepath.services.api_keys import SCOPES
from tests.integration.api_support import KeyMaker
from tests.integration.harness import Harness


@schemathesis.serializer("message/rfc822", "text/csv", "application/x-ndjson")
def _as_text(_: object, value: object) -> bytes:
    """Bodies the schema types as strings: a report, a CSV or a JSON Lines upload."""
    return value if isinstance(value, bytes) else str(value).encode()


def test_every_operation_keeps_to_the_schema(
    journey: Harness, client: TestClient, key_for: KeyMaker
) -> None:
    journey.contact(first_name="Ann", email="ann@example.test", external_id="MRN-1")
    headers = key_for(*sorted(SCOPES), name="schemathesis")
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def keeps_to_the_schema(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        keeps_to_the_schema()
