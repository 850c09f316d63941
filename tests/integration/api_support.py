"""What the API tests share: a client around the test's database, keys, problem checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from carepath.channels.links import LinkSigner
from carepath.domain.access import Role
from carepath.entrypoints.api.app import create_app
from carepath.services.api_keys import create_key
from tests.integration.harness import Harness

LINKS = LinkSigner.from_settings("https://care.example.org", "k" * 40, None)
KeyMaker = Callable[..., dict[str, str]]


@pytest.fixture
def client(journey: Harness) -> TestClient:
    return TestClient(create_app(journey.engine, links=LINKS), raise_server_exceptions=False)


@pytest.fixture
def key_for(journey: Harness) -> KeyMaker:
    """Creates a key with the given scopes (or a role, and an agent's queues); returns the
    request headers that present it."""

    def make(
        *scopes: str,
        name: str = "ehr-bridge",
        role: Role = Role.INTEGRATION,
        queues: tuple[str, ...] = (),
    ) -> dict[str, str]:
        with journey.engine.begin() as conn:
            issued = create_key(
                conn, name=name, scopes=scopes, role=role, queues=queues, now=journey.now
            )
        return {"authorization": f"Bearer {issued.secret}"}

    return make


def is_problem(response: object, status: int) -> dict[str, object]:
    assert getattr(response, "status_code", None) == status
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert "traceback" not in str(body).lower()
    return body
