"""Killed with SIGKILL at any moment, a worker never sends a message twice nor loses one silently.

Real processes on both sides: `carepath worker` delivering to the
`tests.support.smtp_peer` server process, which logs every message it
accepts. The worker is killed several times while it sends; workers started
afterwards finish the outbox. Counted by Message-ID, no message reaches the
server twice, and every message reaches it once, except messages the outbox
marks `unconfirmed`: those recorded in the instant between the record and
the final dot when the worker died (at most one round of connections per
kill; usually none on SQLite, whose commit is in-process).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Harness
from tests.support.smtp_peers import ROOT, SmtpPeer, start_peer

FLOW = """
template: note
subject: A note from your care team
html: "<p>Hello {{ contact.first_name }}, here is your note.</p>"
---
workflow: w
trigger: manual
steps:
  note: {email: note}
"""
MESSAGES = 1000  # enough that three kills land before the worker is done
KILLS = 3
POOL = 8
BATCH = 40
LEASE_SECONDS = 5


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[SmtpPeer]:
    started = start_peer(tmp_path / "peer", starttls=False)
    yield started
    started.stop()


def _worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "carepath", "worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_progress(peer: SmtpPeer, seen: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        count = len(peer.accepted())
        if count > seen:
            return count
        time.sleep(0.01)
    raise AssertionError("the worker sent nothing")


def test_sigkill_at_any_moment_delivers_every_message_exactly_once(
    journey: Harness, peer: SmtpPeer
) -> None:
    journey.apply(FLOW)
    people = [journey.contact(first_name=f"Pat{i}") for i in range(MESSAGES)]
    journey.ctx.sender = None  # here the outbox only fills
    journey.enroll("w", *people)
    journey.work()
    assert {r.status for r in journey.outbox()} == {"pending"}
    env = {
        **os.environ,
        "CAREPATH_DATABASE_URL": journey.engine.url.render_as_string(hide_password=False),
        "CAREPATH_SMTP_URL": peer.url(tls="none", pool=str(POOL)),
        "CAREPATH_BATCH_SIZE": str(BATCH),
        "CAREPATH_SEND_BATCH_SIZE": str(BATCH),
        "CAREPATH_LEASE_SECONDS": str(LEASE_SECONDS),
        "CAREPATH_POLL_SECONDS": "0.05",
    }
    chance = random.Random(os.getpid())
    seen = 0
    for _ in range(KILLS):
        worker = _worker(env)
        try:
            seen = _wait_for_progress(peer, seen, time.monotonic() + 60)
            time.sleep(chance.uniform(0.0, 0.15))  # somewhere in the middle of a round
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.communicate(timeout=30)
        assert worker.returncode == -signal.SIGKILL
        seen = len(peer.accepted())
    assert seen < MESSAGES, "the worker finished before it could be killed: send more"
    time.sleep(LEASE_SECONDS + 0.5)  # the killed workers' leases run out
    finisher = _worker(env, "--once")
    _, err = finisher.communicate(timeout=120)
    assert finisher.returncode == 0, err

    rows = journey.outbox()
    delivered = Counter(str(a["message_id"]) for a in peer.accepted())
    assert max(delivered.values()) == 1  # never twice
    assert set(delivered) <= {r.message_id for r in rows}
    assert {r.status for r in rows} <= {"sent", "unconfirmed"}
    missing = [r for r in rows if r.message_id not in delivered]
    assert all(r.status == "unconfirmed" for r in missing)  # never lost silently
    assert len(missing) <= KILLS * POOL  # at most the round in flight at each kill
    # The rest of a killed worker's batch was delivered but not yet recorded as sent.
    unconfirmed = [r for r in rows if r.status == "unconfirmed"]
    assert len(unconfirmed) <= KILLS * BATCH
    assert len(journey.events("email.sent")) == MESSAGES
