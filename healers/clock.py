"""The one time source of the healing runtime: what time it is, and waiting for a while.

Backoff, deferral, fleet-slot renewals, heartbeats, health ticks, ``wait_healthy`` and ``sleep``
steps all read ``now()`` and wait with ``sleep()`` of the same clock, so a test steps them with a
``ManualClock`` instead of waiting. The hard bound on one backend call (``asyncio.timeout`` in the
runner) stays on the event loop's clock: it must cut off an action stuck on I/O whatever time says.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """Seconds since the epoch, and a wait measured on the same clock."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """``time_fn`` (wall-clock time by default; the agent passes its injected clock) and ``asyncio.sleep``."""

    def __init__(self, time_fn: Callable[[], float] = time.time) -> None:
        self._time = time_fn

    def now(self) -> float:
        return self._time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when a test calls ``advance``; sleepers wake in deadline order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(seconds, 0.0), next(self._order), waiter))
        await waiter

    def sleeping(self) -> int:
        """How many waits are pending."""
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its deadline and letting it run before the next."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, waiter = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not waiter.done():
                waiter.set_result(None)
                await settle()
        self._now = target
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run (and the tasks they start) without letting any time pass."""
    for _ in range(rounds):
        await asyncio.sleep(0)
