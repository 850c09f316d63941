"""The worker loop: drain due work, sleep, repeat; SIGTERM finishes the batch, then stops."""

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


def run_worker(ctx: EngineContext, *, poll_seconds: float, stop: StopFlag) -> WorkDone:
    """Loop until stopped; sleeps only when a round found nothing to do."""
    total = WorkDone()
    log.info("worker %s started", ctx.worker_id)
    while not stop.event.is_set():
        done = run_one_round(ctx, now=current_time(ctx))
        total += done
        if done.anything:
            log.info(
                "events=%d runs=%d steps=%d sent=%d", done.events, done.runs, done.steps, done.sent
            )
        else:
            stop.event.wait(poll_seconds)
    log.info("worker %s stopped", ctx.worker_id)
    return total
