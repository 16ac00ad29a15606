"""A real service dies: the agent's rule fires and the webhook and Slack stand-ins get firing, then resolved."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path

from agent.config import parse_config
from agent.daemon import Agent
from harness.agent import WebApp
from harness.processes import free_port
from harness.receivers import RecordingServer


def test_a_dead_service_is_notified_then_resolved(tmp_path: Path) -> None:
    """Webhook (Alertmanager payload, HMAC-signed) and Slack (Block Kit) see WebDown fire and resolve."""
    web = WebApp(tmp_path / "web.pid")
    (tmp_path / "web.rules.yaml").write_text(
        "groups:\n- name: web\n  rules:\n  - alert: WebDown\n    expr: healwatch_process_up == 0\n"
        "    labels: {severity: critical}\n    annotations: {summary: '{{ $labels.service }} is down'}\n"
    )

    async def main() -> None:
        sink = await RecordingServer().start()
        config = parse_config(
            f"listen: 127.0.0.1:{free_port()}\nstate_path: {tmp_path / 'state.db'}\nhost: {{enabled: false}}\n"
            "default_rules: false\nrule_files: [web.rules.yaml]\ninterval: 200ms\nevaluation: {interval: 200ms}\n"
            f"services:\n  web:\n    process: {{pidfile: {tmp_path / 'web.pid'}}}\n"
            "notify:\n  receivers:\n"
            f"    - {{name: hook, webhook: {{url: '{sink.url}/hook', hmac_secret: k3y}}}}\n"
            f"    - {{name: chat, slack: {{webhook_url: '{sink.url}/slack', send_resolved: true}}}}\n"
            "  route:\n    receiver: hook\n    group_by: [alertname]\n    group_wait: 0s\n    group_interval: 1s\n"
            "    routes:\n      - {matchers: ['severity=\"critical\"'], receiver: chat, continue: true}\n"
            "      - {receiver: hook}\n",
            str(tmp_path / "agent.yaml"),
        )
        agent = Agent(config, config_path=str(tmp_path / "agent.yaml"))
        await agent.start()
        try:
            web.kill()
            await sink.wait_for(2, timeout_s=15)
            revived = WebApp(tmp_path / "web.pid", port=web.port)
            try:
                await sink.wait_for(4, timeout_s=15)
            finally:
                revived.stop()
        finally:
            await agent.stop()
            await sink.stop()
        hooks = [r for r in sink.received if r.path == "/hook"]
        slacks = [r for r in sink.received if r.path == "/slack"]
        assert [h.json()["status"] for h in hooks] == ["firing", "resolved"]
        first = hooks[0].json()
        assert first["version"] == "4" and first["groupLabels"] == {"alertname": "WebDown"}
        assert first["alerts"][0]["labels"] == {"alertname": "WebDown", "service": "web", "severity": "critical"}
        assert first["commonAnnotations"] == {"summary": "web is down"}
        expected = hmac.new(b"k3y", hooks[0].body, hashlib.sha256).hexdigest()
        assert hooks[0].headers["X-Healwatch-Signature"] == f"sha256={expected}"
        assert len(slacks) == 2
        assert "WebDown" in slacks[0].json()["text"] and "blocks" in slacks[0].json()
        assert "resolved" in slacks[1].json()["text"].lower()

    try:
        asyncio.run(main())
    finally:
        web.stop()
