"""Throwaway coordination stores on loopback for the fleet tests and benchmarks."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.realparts import free_port, require_binary
from tests.test_healing_e2e import until


class RedisServer:
    """A throwaway redis-server on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [require_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        client = aioredis.Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            await until(lambda: _pings(client), timeout_s=5.0)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped (SIGSTOP) server must run to exit
            self.process.terminate()
            self.process.wait(timeout=5)


async def _pings(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()
