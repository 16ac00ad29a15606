"""How late the event loop runs what is due: the agent's own measure of "nothing blocks the loop"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, Histogram

# Often enough to catch a block of 100 ms most of the time, rarely enough to cost nothing when idle.
PROBE_INTERVAL_S = 0.25
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoopLag:
    """Sleeps ``interval_s`` over and over and records how much later than asked it woke up."""

    def __init__(self, registry: CollectorRegistry, *, interval_s: float = PROBE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self.lag = Histogram(
            "healwatch_event_loop_lag_seconds",
            "How much later than due the event loop woke a periodic probe (anything holding the loop shows here).",
            buckets=LAG_BUCKETS, registry=registry,
        )
        self.max_lag = Gauge(
            "healwatch_event_loop_lag_max_seconds", "The largest event loop lag seen since the agent started.",
            registry=registry,
        )
        self._max = 0.0

    def observe(self, lag_s: float) -> None:
        """Record one probe's lag."""
        lag_s = max(lag_s, 0.0)
        self.lag.observe(lag_s)
        if lag_s > self._max:
            self._max = lag_s
            self.max_lag.set(lag_s)

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            due = self._clock() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.observe(self._clock() - due)
