"""`healwatch notify test RECEIVER` against a real running agent, whose outbox delivers to a PagerDuty stand-in."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from harness.agent import ROOT, AgentProcess
from harness.receivers import PagerDutyStandIn, Received, RecordingServer, run_with_receiver

pytestmark = pytest.mark.timeout(60)

TOKEN = "notify-test-token"
ROUTING_KEY = "e93facc04764012d7bfb002500d5d1a6"


async def cli(agent: AgentProcess, *args: str) -> tuple[int, str, str]:
    """The CLI in a child process, while this event loop keeps serving the stand-in."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HEALWATCH_TOKEN=TOKEN)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", *args, "--url", agent.url, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(child.communicate(), 50)
    assert child.returncode is not None
    return child.returncode, stdout.decode(), stderr.decode()


def test_notify_test_goes_through_the_outbox_and_prints_each_answer(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """PagerDuty answers the first attempt 503: the outbox retries, the CLI shows the retry and the 202s, and the
    stand-in saw one alert opened and resolved. A refusing receiver exits 1; an unknown one is named."""
    monkeypatch.setenv("HEALWATCH_TOKEN", TOKEN)
    pd = PagerDutyStandIn()
    answers = [web.Response(status=503, text="try later")]

    def handler(received: Received) -> web.Response:
        return answers.pop() if answers else pd(received)

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        config = tmp_path / "agent.yaml"
        config.write_text(
            f"state_path: {tmp_path / 's.db'}\nhost: {{enabled: false}}\ndefault_rules: false\n"
            "notify:\n  receivers:\n"
            f"    - {{name: oncall, pagerduty: {{routing_key: {ROUTING_KEY}, url: '{server.url}/v2/enqueue'}}}}\n"
            f"    - {{name: teams, msteams: {{webhook_url: '{server.url}/not-a-flow'}}}}\n"
            "  route: {receiver: oncall}\n")
        agent = AgentProcess(config, tmp_path)
        try:
            code, out, err = await cli(agent, "notify", "test", "oncall", "--labels", "severity=critical", "team=db")
            assert code == 0, err
            lines = out.splitlines()
            assert lines[:3] == ["firing -> oncall: ok (HTTP 202)", "  attempt 1: retry (HTTP 503: try later)",
                                 "  attempt 2: ok (HTTP 202)"]
            assert lines[3:] == ["resolved -> oncall: ok (HTTP 202)", "  attempt 1: ok (HTTP 202)"]
            assert pd.opened == 1 and pd.open == set()
            trigger = server.received[0].json()
            assert "team = db" in trigger["payload"]["custom_details"]["firing"]

            code, out, _ = await cli(agent, "notify", "test", "teams")
            assert code == 1 and out.splitlines()[0] == "firing -> teams: fail (HTTP 404: not found)"

            code, _, err = await cli(agent, "notify", "test", "nobody")
            assert code == 1 and "404: no receiver named 'nobody' (receivers: oncall, teams)" in err
            assert ROUTING_KEY not in agent.log_path.read_text()
        finally:
            agent.stop()

    run_with_receiver(scenario, handler)
