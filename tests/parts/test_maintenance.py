"""Maintenance: a service's alerts are marked in the API and silenced until maintenance ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from agent.config import parse_config
from agent.daemon import Agent
from harness.processes import free_port
from harness.receivers import RecordingServer


def test_alerts_of_a_service_in_maintenance_are_marked_and_silenced(tmp_path: Path) -> None:
    """While web is in maintenance its alert shows maintenance: true and nothing is sent; afterwards it is sent."""
    (tmp_path / "r.yaml").write_text(
        "groups:\n- name: g\n  rules:\n  - alert: WebSlow\n    expr: vector(1)\n    for: 500ms\n"
        "    labels: {service: web}\n"
    )

    async def main() -> None:
        sink = await RecordingServer().start()
        config = parse_config(
            f"listen: 127.0.0.1:{free_port()}\nstate_path: ':memory:'\nhost: {{enabled: false}}\n"
            "default_rules: false\nrule_files: [r.yaml]\nevaluation: {interval: 100ms}\n"
            "services:\n  web:\n    restart: {exec: ['true']}\n"
            f"notify:\n  receivers: [{{name: hook, webhook: {{url: '{sink.url}/hook'}}}}]\n"
            "  route: {receiver: hook, group_wait: 0s, group_interval: 200ms}\n",
            str(tmp_path / "agent.yaml"),
        )
        agent = Agent(config, config_path=str(tmp_path / "agent.yaml"))
        await agent.start()
        assert agent.server is not None
        base = f"http://127.0.0.1:{agent.server.port}"
        try:
            agent.set_maintenance("web", True)
            async with httpx.AsyncClient(base_url=base) as client:
                async with asyncio.timeout(5):
                    while True:
                        alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
                        if [a["state"] for a in alerts] == ["firing"]:
                            break
                        await asyncio.sleep(0.05)
                assert alerts[0]["maintenance"] is True and alerts[0]["silencedBy"] == ["maintenance-web"]
                (silence,) = agent.notifying.silences.list(agent.clock(), "active")  # type: ignore[union-attr]
                assert (silence.created_by, silence.comment) == ("healwatch", "web is in maintenance")
                await asyncio.sleep(1.0)
                assert sink.received == []
                agent.set_maintenance("web", False)
                (received,) = await sink.wait_for(1, timeout_s=5)
                assert received.json()["alerts"][0]["labels"]["alertname"] == "WebSlow"
                alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
                assert "maintenance" not in alerts[0] and "silencedBy" not in alerts[0]
        finally:
            await agent.stop()
            await sink.stop()

    asyncio.run(main())
