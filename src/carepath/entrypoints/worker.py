"""The worker loop: drain due work, sleep, repeat; SIGTERM finishes the batch, then stops.

A round that fails (the database restarting, a network blip) is logged by
the exception's class only (its message may carry values) and retried after
a pause that doubles up to a minute; the first good round resets it. A
failed round leaves nothing half-written: each batch is one transaction,
its runs are due again at once, and messages it had leased are sent once
their lease runs out.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from carepath.services.context import EngineContext
from carepath.services.work import WorkDone, current_time, run_one_round

log = logging.getLogger("carepath.worker")


class StopFlag:
    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s received: finishing the current batch", signum)
        self.event.set()


MAX_PAUSE_SECONDS = 60.0


def run_worker(ctx: EngineContext, *, poll_seconds: float, stop: StopFlag) -> WorkDone:
    """Loop until stopped; sleeps only when a round found nothing to do."""
    total = WorkDone()
    failures = 0
    log.info("worker %s started", ctx.worker_id)
    while not stop.event.is_set():
        try:
            done = run_one_round(ctx, now=current_time(ctx))
        except Exception as exc:  # noqa: BLE001 - the loop outlives a bad round
            failures += 1
            pause = min(poll_seconds * 2**failures, MAX_PAUSE_SECONDS)
            log.error(
                "round failed (%s, %d in a row); retrying in %.1f s",
                exc.__class__.__name__,
                failures,
                pause,
            )
            stop.event.wait(pause)
            continue
        failures = 0
        total += done
        if done.anything:
            log.info(
                "events=%d runs=%d steps=%d sent=%d", done.events, done.runs, done.steps, done.sent
            )
        else:
            stop.event.wait(poll_seconds)
    log.info("worker %s stopped", ctx.worker_id)
    return total
