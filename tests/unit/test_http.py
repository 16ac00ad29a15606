"""The agent's HTTP server, started for real on 127.0.0.1 and asked with httpx."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
