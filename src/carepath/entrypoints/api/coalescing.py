"""Items from concurrent requests, stored together: one transaction for what arrived meanwhile.

While a group is being stored (in a worker thread, the database calls being
synchronous; by default one group at a time per event loop), the items that
arrive wait and go together into the next group. Storing two groups at once
overlapped their round trips to the database but halved the groups: each
event then paid more of a group's fixed cost (transaction, lookups, commit)
than the overlap saved, 6,240 against 5,555 single events/s with one server
process, 5,801 against 4,612 with two (`bench/api.py`).

A lone item is stored at once, so grouping adds no delay to a quiet server;
under load, one commit serves many requests instead of one each. Every
request is answered only after the transaction holding its item committed.

If storing a group fails with an error that one item may have caused (not a
lost connection or a timeout: `splittable`), the group is halved and each half
stored again, down to the item at fault, so that it cannot fail the requests
it happened to share a group with. Other errors fail the whole group at once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class Coalescer(Generic[Item, Outcome]):
    """`submit` an item, get its outcome; `store` takes a group and returns one outcome per item.

    One per app; at most `concurrency` groups are stored at once per event loop
    (a server runs one loop per process; a test client may run several).
    """

    def __init__(
        self,
        store: Callable[[Sequence[Item]], Sequence[Outcome]],
        *,
        max_group: int = 1000,
        concurrency: int = 1,
        splittable: Callable[[Exception], bool] = lambda _: True,
    ) -> None:
        self._store = store
        self._max_group = max_group
        self._concurrency = concurrency
        self._splittable = splittable
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane[Item, Outcome]] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, item: Item) -> Outcome:
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane()
        answer: asyncio.Future[Outcome] = loop.create_future()
        lane.waiting.append((item, answer))
        if len(lane.storing) < self._concurrency:
            lane.storing.add(asyncio.create_task(self._store_waiting(lane)))
        return await answer

    async def _store_waiting(self, lane: _Lane[Item, Outcome]) -> None:
        try:
            while lane.waiting:
                group = lane.waiting[: self._max_group]
                del lane.waiting[: self._max_group]
                try:
                    await self._store_group(group)
                except BaseException as exc:  # cancelled, or the process stopping
                    _fail(group, exc)
                    raise
        finally:
            lane.storing.discard(asyncio.current_task())
            if lane.waiting and not lane.storing:  # left behind by a task that did not finish
                stranded, lane.waiting[:] = list(lane.waiting), []
                _fail(stranded, RuntimeError("storing stopped before this item"))

    async def _store_group(self, group: list[tuple[Item, asyncio.Future[Outcome]]]) -> None:
        try:
            outcomes = await run_in_threadpool(self._store, [item for item, _ in group])
        except Exception as exc:  # noqa: BLE001 - handed to the requests that wait for it
            if len(group) == 1 or not self._splittable(exc):
                _fail(group, exc)
                return
            half = len(group) // 2  # halves: an item at fault costs a few groups, not one each
            await self._store_group(group[:half])
            await self._store_group(group[half:])
            return
        if len(outcomes) != len(group):
            _fail(group, RuntimeError("a stored group must give one outcome per item"))
            return
        for (_, answer), outcome in zip(group, outcomes, strict=True):
            if not answer.done():  # its request may have been cancelled meanwhile
                answer.set_result(outcome)


@dataclass
class _Lane(Generic[Item, Outcome]):
    """The items waiting in one event loop, and the tasks storing them."""

    waiting: list[tuple[Item, asyncio.Future[Outcome]]] = field(default_factory=list)
    storing: set[asyncio.Task[None]] = field(default_factory=set)


def _fail(group: list[tuple[Item, asyncio.Future[Outcome]]], error: BaseException) -> None:
    """Answer every request of `group` that still waits with `error`."""
    for _, answer in group:
        if not answer.done():
            answer.set_exception(error)
