"""`carepath worker` as a process: it works through what is due and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from carepath.db.connection import make_engine
from carepath.db.schema import runs

FLOW = """
workflow: w
trigger: manual
steps:
  mark: {update: {add_tags: [seen]}, next: done}
  done: {exit: completed}
"""


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carepath", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_worker_processes_due_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    env = {**os.environ, "CAREPATH_DATABASE_URL": f"sqlite:///{db}", "CAREPATH_POLL_SECONDS": "0.2"}
    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "people.csv").write_text("external_id\nMRN-1\nMRN-2\n")
    assert cli("init", env=env).returncode == 0
    assert cli("apply", str(tmp_path / "flow.yaml"), env=env).returncode == 0
    assert cli("contacts", "import", str(tmp_path / "people.csv"), env=env).returncode == 0
    enrolled = cli("enroll", "w", "--contact", "MRN-1", "--contact", "MRN-2", env=env)
    assert enrolled.stdout.strip() == "2 enrolled"
    worker = subprocess.Popen(
        [sys.executable, "-m", "carepath", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    engine = make_engine(f"sqlite:///{db}")
    try:
        deadline = time.monotonic() + 30
        statuses: list[str] = []
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                statuses = list(conn.execute(sa.select(runs.c.status)).scalars())
            if statuses == ["completed", "completed"]:
                break
            time.sleep(0.2)
        assert statuses == ["completed", "completed"]
    finally:
        engine.dispose()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "stopped" in err
    assert "runs 2" in out
    assert "MRN" not in err + out  # logs carry ids, never identifiers
