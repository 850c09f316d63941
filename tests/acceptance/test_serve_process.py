"""`carepath serve` as a process, with a key from `carepath keys create`: events over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from tests.acceptance.test_worker_process import cli
from tests.support.smtp_peers import free_port


def test_serve_answers_health_and_accepts_events_with_a_key_from_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "api.db"
    env = {**os.environ, "CAREPATH_DATABASE_URL": f"sqlite:///{db}"}
    assert cli("init", env=env).returncode == 0
    (tmp_path / "people.csv").write_text("external_id,email\nMRN-1,ann@example.test\n")
    assert cli("contacts", "import", str(tmp_path / "people.csv"), env=env).returncode == 0
    created = cli("keys", "create", "--name", "ehr", "--scopes", "events:write", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("cpk_")
    refused = cli("keys", "create", "--name", "other", "--scopes", "events:delete", env=env)
    assert refused.returncode == 2
    assert "unknown scope 'events:delete'" in refused.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "carepath", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("carepath serve did not become ready")
        event = {"type": "visit.done", "contact": {"external_id": "MRN-1"}, "idempotency_key": "a"}
        headers = {"authorization": f"Bearer {secret}"}
        response = httpx.post(f"{base}/v1/events", json=event, headers=headers)
        assert response.status_code == 202
        assert httpx.post(f"{base}/v1/events", json=event).status_code == 401
        assert "server" not in response.headers
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert "ann@example.test" not in errors
    listed = cli("keys", "list", env=env)
    assert "ehr" in listed.stdout
    assert secret not in listed.stdout
    assert cli("keys", "revoke", "ehr", env=env).returncode == 0
    assert cli("keys", "revoke", "ehr", env=env).returncode == 2
