"""The event loop lag probe: a callback that holds the loop shows up as lag, an idle loop does not."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from agent.looplag import LoopLag


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None
    return value


async def _probe_while(work: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    lag = LoopLag(registry, interval_s=0.02)
    task = asyncio.create_task(lag.run())
    await asyncio.sleep(0.1)
    if work:
        time.sleep(work)  # holds the loop, as a blocking call in a handler would
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return registry


def test_a_blocked_loop_is_measured_as_lag() -> None:
    """Holding the loop for 300 ms gives one probe at least 250 ms of lag, above the 100 ms bucket."""
    registry = asyncio.run(_probe_while(0.3))
    assert _sample(registry, "healwatch_event_loop_lag_max_seconds") >= 0.25
    count = _sample(registry, "healwatch_event_loop_lag_seconds_count")
    assert count - _sample(registry, "healwatch_event_loop_lag_seconds_bucket", le="0.1") >= 1


def test_probes_are_counted_when_the_loop_is_free() -> None:
    """A free loop is probed every interval (about ten times in 200 ms at 20 ms)."""
    registry = asyncio.run(_probe_while(0.0))
    assert _sample(registry, "healwatch_event_loop_lag_seconds_count") >= 3
