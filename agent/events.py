"""An in-process publish/subscribe channel for events such as check state changes."""

from __future__ import annotations

import asyncio
from typing import Any


class EventChannel:
    """Fans each published event out to every subscriber's queue; never blocks the publisher."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Any]] = []

    def subscribe(self) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Any]) -> None:
        self._queues.remove(queue)

    def publish(self, event: Any) -> None:
        for queue in self._queues:
            queue.put_nowait(event)
