"""The HTTP server under abuse (issue #12): expensive anonymous queries, odd Authorization headers, idle sockets."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.config import parse_config
from agent.daemon import Agent
from agent.http.server import HttpServer
from exporters.exposition import Exposition
from harness.agent import AgentProcess
from harness.processes import free_port, require_binary, wait_for

ABUSIVE_QUERY = "sum_over_time(vector(1)[1h:1ms])"
CONFIG = "state_path: ':memory:'\nhost: {enabled: false}\ndefault_rules: false\n"


def loop_lag_during(agent: Agent, request: httpx.Request) -> tuple[httpx.Response, float]:
    """Send ``request`` to the started in-process ``agent`` and return its answer and the event loop's worst lag."""

    async def main() -> tuple[httpx.Response, float]:
        await agent.start()
        assert agent.server is not None
        worst = 0.0
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal worst
            while not done.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                worst = max(worst, time.perf_counter() - before - 0.001)

        watcher = asyncio.create_task(watch())
        try:
            url = request.url.copy_with(scheme="http", host="127.0.0.1", port=agent.server.port)
            async with httpx.AsyncClient(timeout=60) as client:
                response = await client.send(httpx.Request(request.method, url, headers=request.headers))
        finally:
            done.set()
            await watcher
            await agent.stop()
        return response, worst

    return asyncio.run(main())


# -- item 3: bounded queries that never hold the event loop --------------------------------------


def test_an_abusive_query_is_refused_without_stalling_the_event_loop() -> None:
    """A subquery of millions of steps gets Prometheus' execution error, and the loop never stalls 250 ms meanwhile."""
    agent = Agent(parse_config(CONFIG + f"listen: 127.0.0.1:{free_port()}\n", "agent.yaml"))
    started = time.monotonic()
    response, lag_s = loop_lag_during(agent, httpx.Request("GET", "http://x/api/v1/query",
                                                           params={"query": ABUSIVE_QUERY}))
    assert time.monotonic() - started < 30
    assert response.status_code == 422
    assert response.json() == {"status": "error", "errorType": "execution", "error":
                               "query processing would load too many samples into memory in query execution"}
    assert lag_s < 0.25  # GC pauses and GIL hand-offs on a busy 2-core machine; unbounded it was 20+ s


def test_a_slow_query_times_out_with_prometheus_timeout_error() -> None:
    """A query running past api.query_timeout (50,000 subquery steps take far longer than 1 ms) is a 503 timeout."""
    config = CONFIG + f"listen: 127.0.0.1:{free_port()}\napi: {{query_timeout: 1ms}}\n"
    agent = Agent(parse_config(config, "agent.yaml"))
    response, _ = loop_lag_during(agent, httpx.Request("GET", "http://x/api/v1/query", params={
        "query": "sum_over_time(vector(1)[50s:1ms])"}))
    assert response.status_code == 503
    assert response.json() == {"status": "error", "errorType": "timeout",
                               "error": "query timed out in query execution"}


@pytest.mark.integration
def test_the_agent_stays_healthy_while_an_anonymous_abusive_query_runs(tmp_path: Path) -> None:
    """While the abusive query runs, /-/healthy answers within 500 ms each time and the query ends in a 4xx/503."""
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG)
    agent = AgentProcess(config, tmp_path)
    try:
        answer: list[httpx.Response] = []
        query = threading.Thread(target=lambda: answer.append(httpx.get(
            f"{agent.url}/api/v1/query", params={"query": ABUSIVE_QUERY}, timeout=120)))
        started = time.monotonic()
        query.start()
        slowest = 0.0
        while query.is_alive():
            before = time.monotonic()
            assert httpx.get(f"{agent.url}/-/healthy", timeout=5).status_code == 200
            slowest = max(slowest, time.monotonic() - before)
        query.join()
        elapsed = time.monotonic() - started
        (response,) = answer
        assert response.status_code in (422, 503) and response.json()["status"] == "error"
        assert elapsed < 30 and slowest < 0.5
    finally:
        agent.stop()


# -- item 11: the Authorization header ----------------------------------------------------------


def raw_request(port: int, head: bytes) -> bytes:
    """Send a raw HTTP/1.1 request head and return everything the server answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def token_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An agent with api.auth: all and the token ``s3cret`` serving on a thread's loop; yields its port."""
    monkeypatch.setenv("HEALWATCH_TOKEN", "s3cret")
    port = free_port()
    agent = Agent(parse_config(CONFIG + f"listen: 127.0.0.1:{port}\napi: {{auth: all}}\n", "agent.yaml"))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(agent.start())
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(agent.stop())
        loop.close()


@pytest.mark.parametrize(("authorization", "status"), [
    ("Bearer s3cret", 200),
    ("bearer s3cret", 200),
    ("BEARER   s3cret", 200),
    ("s3cret", 401),
    ("Basic s3cret", 401),
    ("Bearer", 401),
    ("Bearer wrong", 401),
])
def test_the_bearer_scheme_is_case_insensitive_and_required(token_agent: int, authorization: str, status: int) -> None:
    """Any case of ``Bearer`` is accepted (RFC 7235); a bare token or another scheme is 401 with a challenge."""
    response = httpx.get(f"http://127.0.0.1:{token_agent}/api/v1/status", headers={"Authorization": authorization})
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer <token>" in response.json()["error"]
        assert "HEALWATCH_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("value", [b"Bearer \xff\xfe\x80", b"\xc3\x28 s3cret", b"Bearer s3cret\xe9"])
def test_non_utf8_authorization_bytes_are_a_client_error_not_a_crash(token_agent: int, value: bytes) -> None:
    """Undecodable bytes in Authorization (sent on a raw socket) get a 400 or 401, never a 500 or a traceback."""
    answer = raw_request(token_agent, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: " + value
                         + b"\r\nConnection: close\r\n\r\n")
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 401 Unauthorized")
    assert b"Traceback" not in answer


# -- item 4: idle connections and slow clients -------------------------------------------------


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connected sockets that never send a byte."""
    sockets = []
    for _ in range(count):
        sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
    return sockets


def test_idle_connections_beyond_the_limit_never_lock_out_a_fresh_client() -> None:
    """With 3x max_connections idle sockets open, a fresh /metrics request is answered and at most the limit stay open."""

    async def main() -> None:
        exposition = Exposition()
        exposition.render()
        server = HttpServer(exposition, lambda service: True, "127.0.0.1", 0, max_connections=8)
        await server.start()
        try:
            idle = await asyncio.to_thread(open_idle, server.port, 24)
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
            assert response.status_code == 200
            assert server.connection_count <= 8
            for sock in idle:
                sock.close()
        finally:
            await server.stop()

    asyncio.run(main())


@pytest.mark.parametrize("trickle", [b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"])
def test_silent_and_trickling_clients_are_dropped_after_the_idle_timeout(trickle: bytes) -> None:
    """A client that sends nothing, or an unfinished request head, is disconnected once idle_timeout passes."""

    async def main() -> None:
        server = HttpServer(Exposition(), lambda service: True, "127.0.0.1", 0, idle_timeout_s=0.5)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            started = time.monotonic()
            writer.write(trickle)
            async with asyncio.timeout(10):
                assert await reader.read() == b""
            assert time.monotonic() - started >= 0.4
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())


@pytest.mark.integration
def test_the_agent_keeps_serving_metrics_with_more_idle_sockets_than_its_fd_limit(tmp_path: Path) -> None:
    """Under a 1,024 fd limit, 1,100 idle sockets neither block /metrics from a fresh connection nor exhaust fds."""
    prlimit = require_binary("prlimit")
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG)
    agent = AgentProcess(config, tmp_path)
    try:
        pid = agent.process.pid
        subprocess.run([prlimit, f"--pid={pid}", "--nofile=1024:1024"], check=True)
        idle = open_idle(agent.port, 1100)
        try:
            response = wait_for(lambda: httpx.get(f"{agent.url}/metrics", timeout=2), timeout_s=20)
            assert isinstance(response, httpx.Response) and response.status_code == 200
            assert httpx.get(f"{agent.url}/-/healthy", timeout=2).status_code == 200
            open_fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
            assert open_fds < 512
        finally:
            for sock in idle:
                sock.close()
    finally:
        agent.stop()
