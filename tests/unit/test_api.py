"""The JSON API in-process: Prometheus-shaped alerts and rules, status, token protection and errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from agent.http.openapi import OPENAPI
from agent.config import parse_config
from agent.daemon import Agent
from harness.processes import free_port

RULES = """groups:
  - name: always
    rules:
      - alert: AlwaysOn
        expr: vector(1) > 0
        labels: {severity: info}
        annotations: {summary: "value {{ $value }}"}
      - record: one
        expr: vector(1)
"""


def run_agent(
    tmp_path: Path, body: Callable[[Agent, httpx.AsyncClient], Awaitable[None]], api: str = "{}", token: str = ""
) -> None:
    (tmp_path / "always.yaml").write_text(RULES)
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{free_port()}\nstate_path: ':memory:'\nhost: {{enabled: false}}\ndefault_rules: false\n"
        f"rule_files: [always.yaml]\nevaluation: {{interval: 100ms}}\napi: {api}\n"
        "services:\n  db:\n    checks:\n      - {name: port, tcp: {address: '127.0.0.1:1'}, interval: 100ms, timeout: 100ms}\n"
    )

    async def main() -> None:
        agent = Agent(parse_config(config.read_text(), str(config)), config_path=str(config))
        await agent.start()
        assert agent.server is not None
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.server.port}", headers=headers) as client:
                async with asyncio.timeout(10):
                    while not (await client.get("/api/v1/alerts")).json()["data"]["alerts"]:
                        await asyncio.sleep(0.05)
                await body(agent, client)
        finally:
            await agent.stop()

    asyncio.run(main())


def test_alerts_and_rules_have_prometheus_shapes(tmp_path: Path) -> None:
    """/api/v1/alerts and /api/v1/rules answer like Prometheus' API, so its tools can read them."""

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        (alert,) = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
        assert alert["labels"] == {"alertname": "AlwaysOn", "severity": "info"}
        assert alert["annotations"] == {"summary": "value 1"}
        assert alert["state"] == "firing" and alert["value"] == "1e+00" and alert["activeAt"].endswith("Z")
        (group,) = (await client.get("/api/v1/rules")).json()["data"]["groups"]
        assert (group["name"], group["file"], group["interval"]) == ("always", str(tmp_path / "always.yaml"), 0.1)
        alerting, recording = group["rules"]
        assert {k: alerting[k] for k in ("name", "type", "health", "state", "query")} == {
            "name": "AlwaysOn", "type": "alerting", "health": "ok", "state": "firing", "query": "vector(1) > 0"}
        assert (recording["name"], recording["type"]) == ("one", "recording")
        only_alerts = (await client.get("/api/v1/rules", params={"type": "alert"})).json()["data"]["groups"][0]
        assert [rule["name"] for rule in only_alerts["rules"]] == ["AlwaysOn"]

    run_agent(tmp_path, body)


def test_status_shows_services_alerts_and_load_state(tmp_path: Path) -> None:
    """/api/v1/status lists each service's checks with their health, the active alerts and config state."""

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        async with asyncio.timeout(5):
            while agent.ready("db") is not False:
                await asyncio.sleep(0.05)
        data = (await client.get("/api/v1/status")).json()["data"]
        assert data["build"]["version"] == "0.1.0"
        assert data["config"] == {"file": agent.config_path, "lastReloadSuccessful": True, "errors": []}
        (check,) = data["services"]["db"]["checks"]
        assert (check["name"], check["kind"], check["healthy"]) == ("port", "tcp", False)
        assert "refused" in check["lastError"]
        assert [a["labels"]["alertname"] for a in data["alerts"]] == ["AlwaysOn"]

    run_agent(tmp_path, body)


def test_mutations_are_disabled_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no token configured, POST /-/reload is refused with 403 and an explanation."""
    monkeypatch.delenv("HEALWATCH_TOKEN", raising=False)

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        response = await client.post("/-/reload")
        assert response.status_code == 403
        assert "no API token is configured" in response.json()["error"]

    run_agent(tmp_path, body)


def test_the_token_guards_reload_and_a_broken_reload_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong token is 401 and never logged; the right one reloads; a broken config is 422 with its errors."""
    monkeypatch.setenv("HEALWATCH_TOKEN", "s3cret-token")

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        with capture_logs() as logs:
            wrong = await client.post("/-/reload", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert logs and "nope" not in str(logs) and "s3cret-token" not in str(logs)
        ok = await client.post("/-/reload", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json()["data"] == {"reloaded": True}
        config = Path(agent.config_path or "")
        config.write_text(config.read_text() + "bogus: 1\n")
        broken = await client.post("/-/reload", headers={"Authorization": "Bearer s3cret-token"})
        assert broken.status_code == 422
        assert "unknown key 'bogus'" in broken.json()["error"]
        status = (await client.get("/api/v1/status")).json()["data"]
        assert status["config"]["lastReloadSuccessful"] is False
        assert "db" in status["services"]

    run_agent(tmp_path, body)


def test_auth_all_protects_reads_and_bodies_are_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """api.auth: all needs the token for GETs too; an oversized body is refused with 413 JSON."""
    monkeypatch.setenv("HEALWATCH_TOKEN", "t")

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        async with httpx.AsyncClient(base_url=client.base_url) as anonymous:
            assert (await anonymous.get("/api/v1/status")).status_code == 401
            assert (await anonymous.get("/metrics")).status_code == 200  # scrapes stay open
        assert (await client.get("/api/v1/status")).status_code == 200
        big = await client.post("/-/reload", content=b"x" * 2048)
        assert big.status_code == 413 and big.json()["errorType"] == "bad_data"
        missing = await client.get("/api/v1/nope")
        assert missing.status_code == 404 and missing.json()["status"] == "error"

    run_agent(tmp_path, body, api="{auth: all, max_body_bytes: 1024}", token="t")


def test_the_openapi_document_lists_every_api_route(tmp_path: Path) -> None:
    """Each API route the server registers is described in /api/v1/openapi.json."""

    async def body(agent: Agent, client: httpx.AsyncClient) -> None:
        assert agent.server is not None
        served = {
            path for path in agent.server.app.router.paths
            if path.startswith(("/api/", "/-/reload")) or path in ("/", "/graph")
        }
        document = (await client.get("/api/v1/openapi.json")).json()
        assert document["info"] == OPENAPI["info"]
        assert served == set(document["paths"])

    run_agent(tmp_path, body)
