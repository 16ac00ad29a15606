"""The agent's HTTP server over TLS (api.tls), with certificates made in the test and a client that verifies them."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from pathlib import Path

import httpx
import pytest

from agent.config import parse_config
from agent.daemon import Agent
from harness.processes import free_port
from harness.tlscerts import TestCA


def test_the_api_and_metrics_are_served_over_tls_with_keep_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With api.tls the agent answers HTTPS verified against its CA (gzip, keep-alive, the token) and no plain HTTP."""
    monkeypatch.setenv("HEALWATCH_TOKEN", "t0k")
    ca = TestCA(tmp_path)
    leaf = ca.issue("agent")
    port = free_port()
    config = parse_config(
        f"listen: 127.0.0.1:{port}\nstate_path: ':memory:'\nhost: {{enabled: false}}\ndefault_rules: false\n"
        f"api: {{tls: {{cert_file: '{leaf.cert}', key_file: '{leaf.key}'}}}}\n", "agent.yaml")

    async def main() -> None:
        agent = Agent(config)
        await agent.start()
        try:
            verify = ssl.create_default_context(cafile=str(ca.cert))
            async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=verify, timeout=10) as client:
                async with client.stream("GET", "/metrics", headers={"Accept-Encoding": "gzip"}) as scrape:
                    raw = b"".join([chunk async for chunk in scrape.aiter_raw()])
                assert scrape.headers["content-encoding"] == "gzip"
                assert b"# TYPE healwatch_" in gzip.decompress(raw)
                assert (await client.get("/api/v1/status")).json()["status"] == "success"
                refused = await client.post("/-/reload")
                assert refused.status_code == 401 and refused.json()["errorType"] == "unauthorized"
                reloaded = await client.post("/-/reload", headers={"Authorization": "Bearer t0k"})
                assert reloaded.json() == {"status": "success", "data": {"reloaded": True}}
                assert agent.server is not None and agent.server.connection_count == 1  # one connection throughout
            async with httpx.AsyncClient(timeout=10) as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get(f"http://127.0.0.1:{port}/-/healthy")
        finally:
            await agent.stop()

    asyncio.run(main())
