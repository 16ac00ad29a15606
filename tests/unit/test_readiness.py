"""The agent's /-/ready: 503 until the first host collection has landed, 200 from then on."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from agent.collectors.host import HostCollector
from agent.config import parse_config
from agent.daemon import Agent
from harness.processes import free_port
from rules.matchers import Matcher, MatchOp
from rules.model import NAME_LABEL


def test_ready_waits_for_the_first_host_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the first host collection is held, /-/ready answers 503 though /metrics serves; 200 once it landed."""
    entered, release = threading.Event(), threading.Event()
    original = HostCollector.collect

    def held_collect(self: HostCollector, now: float) -> object:
        entered.set()
        release.wait(10)
        return original(self, now)

    monkeypatch.setattr(HostCollector, "collect", held_collect)
    config = parse_config(f"listen: 127.0.0.1:{free_port()}\nstate_path: ':memory:'\n", "agent.yaml")

    async def main() -> None:
        agent = Agent(config)
        await agent.start()
        assert agent.server is not None
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.server.port}", timeout=5) as client:
                async with asyncio.timeout(10):
                    # The agent's own families are in /metrics: its first render pass is done.
                    while not entered.is_set() or b"healwatch_build_info" not in (await client.get("/metrics")).content:
                        await asyncio.sleep(0.01)
                assert (await client.get("/-/ready")).status_code == 503
                release.set()
                async with asyncio.timeout(10):
                    while (await client.get("/-/ready")).status_code != 200:
                        await asyncio.sleep(0.01)
                assert agent.store.select([Matcher(NAME_LABEL, MatchOp.EQ, "node_load1")])
        finally:
            release.set()
            await agent.stop()

    asyncio.run(main())
