"""The agent's HTTP server, started for real on 127.0.0.1 and asked with httpx."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from agent.http import web
from agent.http.server import HttpServer
from exporters.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Exposition

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
IDENTITY = {"Accept-Encoding": "identity"}
SERVICE_READINESS = {None: True, "api": True, "db": False}


def probe_success(check: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "probe_success", "Whether the probe succeeded.", labels=["service", "check"]
    )
    family.add_metric(["api", check], value)
    return family


def rendered_exposition() -> Exposition:
    """An exposition of two probe sources and a host source, rendered once."""
    exposition = Exposition()
    exposition.update("probe:api/http", [probe_success("http", 1.0)])
    exposition.update("probe:api/tcp", [probe_success("tcp", 0.0)])
    exposition.update(
        "host", [CounterMetricFamily("node_forks", "Processes forked.", value=1234)]
    )
    exposition.render()
    return exposition


@asynccontextmanager
async def serving(
    exposition: Exposition,
    readiness: Callable[[str | None], bool | None] = SERVICE_READINESS.get,
) -> AsyncIterator[httpx.AsyncClient]:
    """A running server on an ephemeral port and a client pointed at it."""
    server = HttpServer(exposition, readiness, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}", timeout=5.0
        ) as client:
            yield client
    finally:
        await server.stop()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


def test_metrics_defaults_to_text_format() -> None:
    """A scrape without Accept gets text format 0.0.4 with the merged probe_success family."""
    exposition = rendered_exposition()

    async def scenario() -> None:
        async with serving(exposition) as client:
            response = await client.get("/metrics", headers=IDENTITY)
        assert response.status_code == 200
        assert response.headers["content-type"] == TEXT_CONTENT_TYPE
        assert "content-encoding" not in response.headers
        assert response.text.count("# TYPE probe_success gauge") == 1
        assert 'probe_success{check="http",service="api"} 1.0\n' in response.text
        assert 'probe_success{check="tcp",service="api"} 0.0\n' in response.text
        assert "node_forks_total 1234.0\n" in response.text

    run(scenario)


def test_metrics_serves_openmetrics_to_prometheus() -> None:
    """Prometheus' own Accept header gets OpenMetrics 1.0.0, terminated by # EOF."""
    exposition = rendered_exposition()

    async def scenario() -> None:
        async with serving(exposition) as client:
            response = await client.get(
                "/metrics", headers={"Accept": PROMETHEUS_ACCEPT, **IDENTITY}
            )
        assert response.headers["content-type"] == OPENMETRICS_CONTENT_TYPE
        assert response.text.endswith("# EOF\n")
        assert "node_forks_total 1234.0\n" in response.text

    run(scenario)


def test_metrics_gzip_decompresses_to_the_plain_body() -> None:
    """With gzip accepted the body is gzip-encoded and inflates to exactly the plain text."""
    exposition = rendered_exposition()

    async def scenario() -> None:
        async with serving(exposition) as client:
            plain = await client.get("/metrics", headers=IDENTITY)
            async with client.stream(
                "GET", "/metrics", headers={"Accept-Encoding": "gzip"}
            ) as response:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["vary"] == "Accept, Accept-Encoding"
        assert gzip.decompress(raw) == plain.content

    run(scenario)


def test_serving_metrics_renders_what_changed_since_the_last_scrape() -> None:
    """A scrape after an update serves the new value, rendering only the format it asked for."""
    exposition = rendered_exposition()
    exposition.update("probe:api/http", [probe_success("http", 0.0)])

    async def scenario() -> None:
        async with serving(exposition) as client:
            response = await client.get("/metrics", headers=IDENTITY)
            assert response.status_code == 200
            assert 'probe_success{check="http",service="api"} 0.0' in response.text

    run(scenario)
    assert not exposition.dirty(TEXT_CONTENT_TYPE) and exposition.rendered(OPENMETRICS_CONTENT_TYPE) is None


def test_head_metrics_sends_headers_only() -> None:
    """HEAD /metrics answers 200 with the negotiated headers and no body."""
    exposition = rendered_exposition()

    async def scenario() -> None:
        async with serving(exposition) as client:
            response = await client.head("/metrics", headers=IDENTITY)
        assert response.status_code == 200
        assert response.headers["content-type"] == TEXT_CONTENT_TYPE
        assert response.content == b""

    run(scenario)


def test_healthy_answers_while_the_agent_runs() -> None:
    """/-/healthy is 200 even when the agent is not ready."""

    async def scenario() -> None:
        async with serving(Exposition(), readiness=lambda service: False) as client:
            response = await client.get("/-/healthy")
        assert (response.status_code, response.text) == (200, "Healthy.\n")

    run(scenario)


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/-/ready", 200, "Ready.\n"),
        ("/-/ready/api", 200, "Ready.\n"),
        ("/-/ready/db", 503, "Not ready.\n"),
        ("/-/ready/cache", 404, "Unknown service 'cache'.\n"),
    ],
)
def test_readiness_reflects_the_callback(path: str, status: int, body: str) -> None:
    """Readiness is 200 for True, 503 for False and 404 for a service the callback does not know."""

    async def scenario() -> None:
        async with serving(Exposition()) as client:
            response = await client.get(path)
        assert (response.status_code, response.text) == (status, body)
        assert response.headers["content-type"].startswith("text/plain")

    run(scenario)


def test_agent_not_ready_answers_503() -> None:
    """/-/ready is 503 when readiness(None) is False, as when a playbook cut traffic off."""

    async def scenario() -> None:
        async with serving(Exposition(), readiness=lambda service: False) as client:
            response = await client.get("/-/ready")
        assert (response.status_code, response.text) == (503, "Not ready.\n")

    run(scenario)


def test_port_in_use_gives_a_clear_error() -> None:
    """Binding a port another socket holds fails with an OSError naming host and port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def scenario() -> None:
            server = HttpServer(Exposition(), SERVICE_READINESS.get, "127.0.0.1", port)
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
                await server.start()
            with pytest.raises(RuntimeError, match="not running"):
                _ = server.port

        run(scenario)


# -- HTTP/1.1 on the wire: keep-alive, pipelining, bodies, errors ---------------------------------------


async def exchange(port: int, data: bytes, *, until: bytes | None = None) -> bytes:
    """Send raw bytes and read until ``until`` has come back, or else until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    answer = b""
    while until is None or until not in answer:
        chunk = await reader.read(65536)
        if not chunk:
            break
        answer += chunk
    writer.close()
    return answer


def app_server(**options: Any) -> HttpServer:
    """A server with extra routes: an echo of the POSTed body, and one that fails."""
    server = HttpServer(Exposition(), SERVICE_READINESS.get, "127.0.0.1", 0, **options)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    server.app.router.add_post("/echo", echo)
    server.app.router.add_get("/broken", broken)
    return server


def test_requests_share_one_keep_alive_connection_and_may_be_pipelined() -> None:
    """Two pipelined requests on one connection are both answered in order, the connection left open between them."""

    async def scenario() -> None:
        server = app_server()
        await server.start()
        try:
            answer = await exchange(server.port, b"GET /-/ready HTTP/1.1\r\nHost: x\r\n\r\n"
                                    b"GET /-/ready/db HTTP/1.1\r\nHost: x\r\n\r\n", until=b"Not ready.\n")
            assert server.connection_count == 1
        finally:
            await server.stop()
        first, second = answer.split(b"HTTP/1.1 ")[1:]
        assert first.startswith(b"200 OK\r\n") and first.endswith(b"Ready.\n") and b"connection: close" not in first
        assert second.startswith(b"503 Service Unavailable\r\n")

    run(scenario)


def test_post_bodies_within_the_limit_arrive_whole_and_larger_ones_are_refused() -> None:
    """A body at the limit reaches the handler (also after ``Expect: 100-continue``); one byte more is a 413."""

    async def scenario() -> None:
        server = app_server(max_body_bytes=1024)
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                assert (await client.post("/echo", content=b"x" * 1024)).content == b"x" * 1024
                too_big = await client.post("/echo", content=b"x" * 1025)
                assert (too_big.status_code, too_big.text) == (413, "413: request body larger than 1024 bytes")
                assert too_big.headers["connection"] == "close"
            continued = await exchange(server.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                       b"Expect: 100-continue\r\n\r\nhello", until=b"hello")
            assert continued.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        finally:
            await server.stop()

    run(scenario)


@pytest.mark.parametrize(("request_line", "status"), [
    (b"GET /nope HTTP/1.1", b"404 Not Found"),
    (b"DELETE /metrics HTTP/1.1", b"405 Method Not Allowed"),
    (b"GET /broken HTTP/1.1", b"500 Internal Server Error"),
    (b"GET /metrics HTTP/9", b"400 Bad Request"),
])
def test_errors_are_answered_in_plain_text(request_line: bytes, status: bytes) -> None:
    """Unknown paths, wrong methods, failing handlers and malformed requests get their status, no traceback."""

    async def scenario() -> None:
        server = app_server()
        await server.start()
        try:
            answer = await exchange(server.port, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        finally:
            await server.stop()
        assert answer.startswith(b"HTTP/1.1 " + status + b"\r\n")
        assert b"Traceback" not in answer and b"a bug" not in answer

    run(scenario)


def test_stop_lets_a_request_in_flight_finish_and_closes_idle_connections_at_once() -> None:
    """A slow handler answering during stop() gets its response out; an idle keep-alive connection is closed."""

    async def scenario() -> None:
        server = app_server()
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow(request: web.Request) -> web.Response:
            entered.set()
            await release.wait()
            return web.Response(text="done")

        server.app.router.add_get("/slow", slow)
        await server.start()
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        idle_writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await idle_reader.readuntil(b"Healthy.\n")).startswith(b"HTTP/1.1 200 OK")
        in_flight = asyncio.create_task(exchange(server.port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", until=b"done"))
        await entered.wait()
        stopping = asyncio.create_task(server.stop())
        assert await idle_reader.read() == b""  # closed while the slow request still runs
        release.set()
        await stopping
        assert (await in_flight).endswith(b"done")

    run(scenario)


def test_an_encoded_slash_stays_inside_its_path_segment() -> None:
    """``/-/ready/a%2Fb`` asks for the service ``a/b`` (404 with its name), as ``..%2Fx`` reaches an id check whole."""

    async def scenario() -> None:
        async with serving(Exposition()) as client:
            response = await client.get("/-/ready/a%2Fb")
        assert (response.status_code, response.text) == (404, "Unknown service 'a/b'.\n")

    run(scenario)
