"""Why, in every message (issue #18, part 7): a real agent, a failing exec check, real receivers' stand-ins.

The agent runs in-process with an exec check whose command prints more than ten lines, one of
them a secret; its alert reaches a webhook and a Slack stand-in (harness.receivers) with the
check's reason and last lines, redacted; its healing notices carry the incident id and a journal
link that answers on the agent's own API.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from agent.config import parse_config
from agent.daemon import Agent
from harness.processes import free_port
from harness.receivers import Received, RecordingServer

pytestmark = pytest.mark.timeout(40)

SECRET = "s3cr3t-probe-token"
PRINTER = "import os\nfor i in range(1, 16): print('line', i)\nprint('token', os.environ['TOKEN'])\nraise SystemExit(3)"


def config_text(tmp_path: Path, port: int, receivers_url: str) -> str:
    rules = tmp_path / "why.rules.yaml"
    rules.write_text(
        "groups:\n  - name: why\n    interval: 200ms\n    rules:\n"
        "      - alert: ServiceCheckFailing\n        expr: healwatch_check_healthy == 0\n"
        "        annotations: {summary: '{{ $labels.service }}: check {{ $labels.check }} is failing'}\n"
    )
    return f"""\
listen: 127.0.0.1:{port}
state_path: ':memory:'
host: {{enabled: false}}
default_rules: false
rule_files: [{rules}]
evaluation: {{external_url: "http://127.0.0.1:{port}"}}
services:
  web:
    checks:
      - name: script
        exec: {{command: [{sys.executable!r}, -c, {PRINTER!r}], env: {{TOKEN: "${{PROBE_TOKEN}}"}}}}
        interval: 200ms
        failure_threshold: 1
    restart: {{exec: [/bin/true]}}
playbooks:
  - name: web-restart
    when: [{{check_failed: {{service: web}}}}]
    steps: [{{restart: {{}}}}]
    backoff: {{initial: 1m}}
notify:
  receivers:
    - {{name: hook, webhook: {{url: "{receivers_url}/hook"}}}}
    - {{name: slack, slack: {{webhook_url: "{receivers_url}/slack"}}}}
  route:
    receiver: hook
    group_wait: 0s
    routes:
      - {{matchers: ['service="web"'], receiver: slack, continue: true}}
      - {{matchers: ['service="web"'], receiver: hook}}
"""


def test_alerts_and_healing_notices_say_why_and_link_to_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alert carries check_reason and the last 10 output lines (secret redacted) to the webhook and Slack;
    each healing notice names its incident and links to /api/v1/incidents/ID, which answers with that incident."""
    monkeypatch.setenv("PROBE_TOKEN", SECRET)
    monkeypatch.setenv("HEALWATCH_TOKEN", "why-token")

    def on(server: RecordingServer, path: str) -> list[Received]:
        return [r for r in server.received if r.path == path]

    def slack_alerts() -> list[str]:
        return [r.body.decode() for r in on(server, "/slack") if "ServiceCheckFailing" in r.body.decode()]

    server = RecordingServer()

    async def main() -> None:
        await server.start()
        port = free_port()
        config = tmp_path / "agent.yaml"
        config.write_text(config_text(tmp_path, port, server.url))
        agent = Agent(parse_config(config.read_text(), str(config)), config_path=str(config))
        await agent.start()
        try:
            async with asyncio.timeout(30):
                while not ([r for r in on(server, "/hook") if r.json()["commonLabels"].get("alertname")
                            == "ServiceCheckFailing"] and slack_alerts()
                           and any("healing" in r.json()["groupKey"] for r in on(server, "/hook"))):
                    await server.wait_for(len(server.received) + 1, timeout_s=30)
            hooks = [r.json() for r in on(server, "/hook")]
            [alert] = [h["alerts"][0] for h in hooks if h["commonLabels"].get("alertname") == "ServiceCheckFailing"][:1]
            reason, output = alert["annotations"]["check_reason"], alert["annotations"]["check_output"]
            assert reason.startswith("exit status 3: ") and "<redacted>" in reason and SECRET not in reason
            assert output.splitlines() == [f"line {i}" for i in range(7, 16)] + ["token <redacted>"]
            slack = slack_alerts()[0]
            assert "Why: exit status 3" in slack and "line 15" in slack and SECRET not in slack

            notices = [h["alerts"][0] for h in hooks if "healing" in h["groupKey"]]
            first = notices[0]
            incident = first["labels"]["incident_id"]
            assert "check web/script failed: exit status 3" in first["annotations"]["summary"]
            assert first["annotations"]["incident_url"] == f"http://127.0.0.1:{port}/api/v1/incidents/{incident}"
            async with httpx.AsyncClient(headers={"Authorization": "Bearer why-token"}) as client:
                journal = await client.get(first["annotations"]["incident_url"])
            assert journal.status_code == 200, journal.text
            assert journal.json()["data"]["id"] == incident
        finally:
            await agent.stop()
            await server.stop()

    asyncio.run(main())
