"""Heals put off until a time (backoff, cooldown, a fleet slot): one pending retry per service, on the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from healers.clock import Clock


class Deferrals:
    """Runs ``retry()`` once its delay has passed on ``clock``; a service has at most one retry pending."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._pending: dict[str, asyncio.Task[None]] = {}  # waiting for their time
        self._tasks: set[asyncio.Task[None]] = set()  # waiting or retrying

    def pending(self, service: str) -> bool:
        return service in self._pending

    def defer(self, service: str, not_before: float, retry: Callable[[], Awaitable[None]]) -> bool:
        """Schedule ``retry`` at ``not_before``; False (and nothing scheduled) when one is already pending."""
        if service in self._pending:
            return False
        delay = max(not_before - self.clock.now(), 0.0)
        task = asyncio.create_task(self._later(service, delay, retry))
        self._pending[service] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _later(self, service: str, delay: float, retry: Callable[[], Awaitable[None]]) -> None:
        await self.clock.sleep(delay)
        # No longer pending once due: the retry itself may defer again.
        self._pending.pop(service, None)
        await retry()

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        self._pending.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
