"""Throwaway coordination stores (redis-server, etcd) on loopback for the fleet tests and benchmarks."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from harness.processes import free_port, require_binary, stop, until


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
        _resume_and_stop(self.process)


async def _pings(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False


class EtcdServer:
    """A throwaway single-member etcd on free loopback client and peer ports, its data under ``workdir``.

    Heartbeat 10 ms and election timeout 100 ms bring etcd's minimum lease TTL (1.5 election
    timeouts, rounded up to whole seconds) down to 1 s, so lease tests wait seconds, not minutes.
    """

    def __init__(self, workdir: Path) -> None:
        self.port, peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self.process = subprocess.Popen(
            [require_binary("etcd"), "--name", "default", "--data-dir", str(workdir / "etcd"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"default={peer_url}", "--heartbeat-interval", "10", "--election-timeout", "100"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0, trust_env=False) as client:
            await until(lambda: _answers(client), timeout_s=10.0)

    def stop(self) -> None:
        _resume_and_stop(self.process)


async def _answers(client: httpx.AsyncClient) -> bool:
    """Whether the gateway serves a read: etcd is up and has a leader."""
    try:
        return (await client.post("/v3/kv/range", json={"key": "AA=="})).is_success
    except httpx.HTTPError:
        return False


def _resume_and_stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # a stopped (SIGSTOP) server must run to exit
    stop(process)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()
